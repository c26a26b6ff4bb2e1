//! The HTTP face's half of result review (see [`crate::mcp::policy`]): buffering the upstream's
//! answer to a call the tool policy wants to see, and relaying it or its replacement.
//!
//! A JSON answer is buffered whole (bounded). An SSE answer streams through event by event until
//! the event carrying the answer for the call's id: that one is held for the review and sent
//! either unchanged or with its data replaced, keeping its `id:`/`event:` lines so the stream's
//! resumption cursor is the upstream's. Everything after it passes untouched.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::Response;
use http::header;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use super::{
    BoxError, MAX_BUFFERED_ANSWER_BYTES, ProxyBody, TEXT_EVENT_STREAM, collect_bounded,
    content_type_is, error_response, full,
};
use crate::mcp::error::McpError;
use crate::mcp::gatekeeper::{Call, Gatekeeper};
use crate::mcp::message::{Message, same_id};

/// `response` (the upstream's answer to `call`, already framed for the client) after review.
pub(super) async fn reviewed(
    keeper: &Gatekeeper,
    call: Call,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    if !response.status().is_success() {
        return response;
    }
    if content_type_is(response.headers(), TEXT_EVENT_STREAM) {
        return review_stream(keeper.clone(), call, response);
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match collect_bounded(body, MAX_BUFFERED_ANSWER_BYTES).await {
        Ok(bytes) => bytes,
        Err(kind) => return error_response(&McpError::new(Some(call.id()), kind)),
    };
    let bytes = match keeper.review(&call, &bytes).await {
        Some(replacement) => Bytes::from(replacement),
        None => bytes,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, full(bytes))
}

fn review_stream(
    keeper: Gatekeeper,
    call: Call,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    let (sender, receiver) = mpsc::channel::<Result<Bytes, BoxError>>(8);
    tokio::spawn(async move { pump(keeper, call, body, sender).await });
    parts.headers.remove(header::CONTENT_LENGTH);
    let stream =
        tokio_stream::wrappers::ReceiverStream::new(receiver).map(|item| item.map(Frame::data));
    Response::from_parts(parts, StreamBody::new(stream).boxed_unsync())
}

/// Relays `body` event by event into `sender`, reviewing the event that answers `call`.
async fn pump(
    keeper: Gatekeeper,
    call: Call,
    mut body: ProxyBody,
    sender: mpsc::Sender<Result<Bytes, BoxError>>,
) {
    let mut buffer = BytesMut::new();
    let mut reviewing = true;
    while let Some(frame) = body.frame().await {
        let chunk = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(chunk) => chunk,
                Err(_) => continue,
            },
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        if !reviewing {
            if sender.send(Ok(chunk)).await.is_err() {
                return;
            }
            continue;
        }
        buffer.extend_from_slice(&chunk);
        while let Some(end) = event_end(&buffer) {
            let event = buffer.split_to(end).freeze();
            let (out, answered) = review_event(&keeper, &call, event).await;
            reviewing &= !answered;
            if sender.send(Ok(out)).await.is_err() {
                return;
            }
            if !reviewing {
                break;
            }
        }
        // An event too large to hold is passed on unreviewed rather than buffered without bound.
        if !reviewing || buffer.len() > MAX_BUFFERED_ANSWER_BYTES {
            reviewing = false;
            if !buffer.is_empty() && sender.send(Ok(buffer.split().freeze())).await.is_err() {
                return;
            }
        }
    }
    if !buffer.is_empty() {
        let _ = sender.send(Ok(buffer.freeze())).await;
    }
}

/// One raw event, reviewed when it is the answer to `call`: what to send, and whether it was
/// the answer.
async fn review_event(keeper: &Gatekeeper, call: &Call, event: Bytes) -> (Bytes, bool) {
    let data = event_data(&event);
    let answers_call = Message::parse(data.as_bytes())
        .is_ok_and(|view| view.is_response() && view.id.is_some_and(|id| same_id(id, call.id())));
    if !answers_call {
        return (event, false);
    }
    match keeper.review(call, data.as_bytes()).await {
        Some(replacement) => (replace_data(&event, &replacement), true),
        None => (event, true),
    }
}

/// The lines of a raw event (terminators dropped).
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

fn is_data_line(line: &[u8]) -> bool {
    line == b"data" || line.starts_with(b"data:")
}

/// The event's data lines joined with `\n`, as an SSE client would see them.
///
/// Every event of every answer passes here, and nearly all have one data line of valid UTF-8:
/// that one is borrowed from the event, not copied.
pub(super) fn event_data(event: &[u8]) -> Cow<'_, str> {
    let mut values = data_values(event);
    if let (Some(only), None) = (values.next(), values.next())
        && let Ok(text) = std::str::from_utf8(only)
    {
        return Cow::Borrowed(text);
    }
    let parts: Vec<Cow<'_, str>> = data_values(event).map(String::from_utf8_lossy).collect();
    Cow::Owned(parts.join("\n"))
}

/// The values of the event's data lines: each after `data:` and one optional space.
fn data_values(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    lines(event).filter(|line| is_data_line(line)).map(|line| {
        let value = line.get(5..).unwrap_or_default();
        value.strip_prefix(b" ").unwrap_or(value)
    })
}

/// The event with its data replaced by `data` (one line), every other field kept.
fn replace_data(event: &[u8], data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(event.len() + data.len());
    for line in lines(event).filter(|line| !line.is_empty() && !is_data_line(line)) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&crate::mcp::message::single_line(data));
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The end (exclusive) of the first complete event in `buffer`: just after the empty line that
/// ends it. Line ends are `\n`, `\r\n` or `\r`; a trailing `\r` waits for the next chunk.
pub(super) fn event_end(buffer: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    let mut index = 0;
    while index < buffer.len() {
        let byte = buffer[index];
        if byte != b'\n' && byte != b'\r' {
            index += 1;
            continue;
        }
        let empty = index == line_start;
        let mut next = index + 1;
        if byte == b'\r' {
            match buffer.get(next) {
                Some(b'\n') => next += 1,
                Some(_) => {}
                None => return None,
            }
        }
        if empty {
            return Some(next);
        }
        line_start = next;
        index = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_an_empty_line_whatever_the_line_ends() {
        assert_eq!(event_end(b"id: 1\ndata: x\n\nrest"), Some(15));
        assert_eq!(event_end(b"id: 1\r\ndata: x\r\n\r\n"), Some(18));
        assert_eq!(event_end(b"data: x\r\rdata"), Some(9));
        assert_eq!(event_end(b"data: x\n"), None);
        assert_eq!(event_end(b"data: x\r"), None);
    }

    #[test]
    fn replacing_data_keeps_the_other_fields() {
        let event = b"event: message\r\nid: ev-2\ndata: {\"a\":\ndata: 1}\n\n";
        assert_eq!(event_data(event), "{\"a\":\n1}");
        assert!(matches!(
            event_data(b"id: 1\ndata:{}\n\n"),
            Cow::Borrowed("{}")
        ));
        assert!(matches!(
            event_data(b"data: \nid: 0\n\n"),
            Cow::Borrowed("")
        ));
        assert_eq!(event_data(b"data: a\xffb\n\n"), "a\u{fffd}b");
        assert_eq!(event_data(b"id: 1\n\n"), "");
        assert_eq!(
            replace_data(event, b"{\"b\":2}"),
            Bytes::from_static(b"event: message\nid: ev-2\ndata: {\"b\":2}\n\n")
        );
    }
}
