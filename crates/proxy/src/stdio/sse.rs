//! An incremental Server-Sent Events parser for upstream response bodies.
//!
//! Hand-written rather than taken from `sse-stream` because that crate rejects lines the
//! WHATWG algorithm says to ignore (unknown fields, lines without a colon) and would turn a
//! harmless server quirk into a dropped stream. The bridge needs three things from a stream:
//! each event's `data` (one JSON-RPC message), the last event id (for `Last-Event-ID` on
//! resume, including ids on data-less priming events) and the latest `retry:` hint.

use std::time::Duration;

/// One dispatched event that carried data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The event's data lines joined with `\n`; empty when `oversized`.
    pub(crate) data: String,
    /// The event went over the parser's size limit and its data was dropped.
    pub(crate) oversized: bool,
}

/// Parser state carried across body chunks.
#[derive(Debug)]
pub(crate) struct SseParser {
    /// Largest event (and line) kept, in bytes: an upstream cannot make the bridge buffer
    /// without bound.
    max_event_bytes: usize,
    /// The event being assembled went over the limit: skip to its end.
    oversized: bool,
    /// Bytes of a line whose terminator has not arrived yet.
    partial_line: Vec<u8>,
    /// A chunk ended in `\r`: a `\n` at the start of the next chunk belongs to that line end.
    skip_next_lf: bool,
    /// Data lines of the event being assembled, each followed by `\n`.
    data: String,
    /// Whether the event being assembled has any `data:` field (even an empty one).
    has_data: bool,
    /// `id:` seen in the event being assembled; becomes the last event id on dispatch.
    pending_id: Option<String>,
    /// The stream's last event id (what `Last-Event-ID` carries on resume).
    last_event_id: Option<String>,
    /// The latest `retry:` hint.
    retry: Option<Duration>,
}

impl SseParser {
    /// A parser that keeps events up to `max_event_bytes`.
    pub(crate) fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            oversized: false,
            partial_line: Vec::new(),
            skip_next_lf: false,
            data: String::new(),
            has_data: false,
            pending_id: None,
            last_event_id: None,
            retry: None,
        }
    }

    /// Feeds one body chunk and appends every event it completes to `out`.
    pub(crate) fn push(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) {
        if self.skip_next_lf {
            self.skip_next_lf = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let terminator = chunk[end];
            let line = if self.partial_line.is_empty() {
                self.process_line(&chunk[..end], out);
                None
            } else {
                let mut line = std::mem::take(&mut self.partial_line);
                line.extend_from_slice(&chunk[..end]);
                Some(line)
            };
            if let Some(line) = line {
                self.process_line(&line, out);
            }
            chunk = &chunk[end + 1..];
            if terminator == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.skip_next_lf = true,
                }
            }
        }
        if self.partial_line.len() + chunk.len() + self.data.len() > self.max_event_bytes {
            self.overflow();
        } else {
            self.partial_line.extend_from_slice(chunk);
        }
    }

    /// Drops what the current event holds; it is reported as oversized when it ends.
    fn overflow(&mut self) {
        self.oversized = true;
        self.partial_line.clear();
        self.data.clear();
    }

    /// The last event id the stream announced, if any.
    pub(crate) fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref().filter(|id| !id.is_empty())
    }

    /// The reconnection delay the server asked for, if any.
    pub(crate) fn retry(&self) -> Option<Duration> {
        self.retry
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // a comment, e.g. a keep-alive
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.has_data = true;
                if self.oversized || self.data.len() + value.len() >= self.max_event_bytes {
                    self.overflow();
                } else {
                    self.data.push_str(&String::from_utf8_lossy(value));
                    self.data.push('\n');
                }
            }
            b"id" if !value.contains(&0) => {
                self.pending_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Some(ms) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            // `event:` names only matter to browsers' listeners; MCP sends every message
            // as the default `message` event. Unknown fields are ignored, per the spec.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if let Some(id) = self.pending_id.take() {
            self.last_event_id = Some(id);
        }
        if !self.has_data && !self.oversized {
            return;
        }
        self.has_data = false;
        let oversized = std::mem::take(&mut self.oversized);
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        if oversized {
            data.clear();
        }
        out.push(SseEvent { data, oversized });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<String>, SseParser) {
        let mut parser = SseParser::new(1024);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut out);
        }
        (out.into_iter().map(|e| e.data).collect(), parser)
    }

    #[test]
    fn events_split_anywhere_across_chunks() {
        let stream =
            b"event: message\nid: 7\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\n\n";
        for split in 0..stream.len() {
            let (events, parser) = parse_chunks(&[&stream[..split], &stream[split..]]);
            assert_eq!(events, vec!["{\"a\":1}", "{\"b\":2}"], "split at {split}");
            assert_eq!(parser.last_event_id(), Some("7"));
        }
    }

    #[test]
    fn crlf_and_cr_line_ends() {
        let (events, _) = parse_chunks(&[b"data: x\r", b"\n\r\ndata: y\rdata: z\r\r"]);
        assert_eq!(events, vec!["x", "y\nz"]);
    }

    #[test]
    fn priming_event_sets_id_and_retry_without_data() {
        let (events, parser) = parse_chunks(&[b"id: 0\nretry: 3000\ndata:\n\n"]);
        // `data:` with an empty value is still an event with empty data.
        assert_eq!(events, vec![""]);
        assert_eq!(parser.last_event_id(), Some("0"));
        assert_eq!(parser.retry(), Some(Duration::from_millis(3000)));

        let (events, parser) = parse_chunks(&[b"id: 0/1\nretry: 500\n\n"]);
        assert!(events.is_empty());
        assert_eq!(parser.last_event_id(), Some("0/1"));
        assert_eq!(parser.retry(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn unknown_fields_bad_retry_and_colonless_lines_are_ignored() {
        let (events, parser) = parse_chunks(&[b"foo: bar\nretry: soon\ndata\nweird\ndata: 1\n\n"]);
        assert_eq!(events, vec!["\n1"]);
        assert_eq!(parser.retry(), None);
    }

    #[test]
    fn oversized_events_are_reported_without_their_data() {
        let big = format!("data: {}\n\n", "x".repeat(2000));
        let mut parser = SseParser::new(1024);
        let mut out = Vec::new();
        for chunk in big.as_bytes().chunks(100) {
            parser.push(chunk, &mut out);
        }
        parser.push(b"data: small\n\n", &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].oversized && out[0].data.is_empty());
        assert_eq!((out[1].data.as_str(), out[1].oversized), ("small", false));
        // Many data lines that only add up to too much are caught too.
        let mut out = Vec::new();
        let lines = "data: 0123456789\n".repeat(200) + "\n";
        parser.push(lines.as_bytes(), &mut out);
        assert!(out[0].oversized);
    }

    #[test]
    fn unterminated_event_is_not_dispatched() {
        let (events, _) = parse_chunks(&[b"data: {\"partial\":true}\n"]);
        assert!(events.is_empty());
    }
}
