//! The stdio face: a bridge between one MCP client speaking newline-delimited JSON-RPC on
//! stdin/stdout (Claude Desktop launches servers this way) and an upstream Streamable HTTP MCP
//! endpoint.
//!
//! stdio is one multiplexed channel while Streamable HTTP is one POST per message, so unlike
//! the HTTP face this is not a byte pass-through: toolgate is the HTTP client here. It owns the
//! upstream session (captures `Mcp-Session-Id`, sends `MCP-Protocol-Version`, opens the GET
//! stream after `notifications/initialized`, resumes dropped SSE streams with `Last-Event-ID`,
//! replays the client's `initialize` when the upstream forgets the session, DELETEs it on exit).
//! Messages themselves are relayed as raw JSON: only routing fields are read, so unknown fields
//! and `_meta` pass unchanged. 2026-07-28 clients (`server/discover`, no session) pass too; the
//! bridge sets `Mcp-Method`/`Mcp-Name` from each body, as that version requires.
//!
//! stdout carries only MCP messages: one writer task owns it and everything it writes is a
//! JSON-RPC message the bridge has parsed. Logs go wherever the binary points `tracing`
//! (stderr).
//!
//! # Layout
//! - `bridge`: routing, the gate, the upstream session and its recovery.
//! - `message`: borrowed views of messages and the few messages written locally.
//! - `sse`: the incremental SSE parser.

mod bridge;
mod message;
mod sse;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use self::bridge::{Bridge, ClientNotice, ClientRequest};
use self::message::{INVALID_REQUEST, MessageView, PARSE_ERROR, error_response};
use crate::config::WaitMode;
use crate::events::ProxyEvents;
use crate::gate::GateState;
use crate::upstream::{ClientBuildError, UpstreamTarget, build_client};

/// How the stdio bridge behaves. [`StdioConfig::default`] suits Claude Desktop.
#[derive(Clone, Debug)]
pub struct StdioConfig {
    /// Longest stdin line (one message) accepted, and the largest upstream answer relayed, in
    /// bytes. A longer line is answered with a JSON-RPC error and skipped.
    pub max_message_bytes: usize,
    /// How long a message waits for the upstream to become known (for example while the
    /// Composio session is being created) before the client gets an error with its id.
    pub upstream_wait: Duration,
    /// Upper bound on opening a connection to the upstream.
    pub connect_timeout: Duration,
    /// Whether a blocked `tools/call` is held until the gate opens (the same setting as the
    /// HTTP face's).
    pub wait: WaitMode,
    /// After stdin ends, how long requests still in flight may take to be answered before the
    /// bridge stops anyway.
    pub input_closed_grace: Duration,
    /// How long the `DELETE` that ends the upstream session may take at exit.
    pub close_timeout: Duration,
    /// Reconnection delay for a dropped SSE stream when the upstream sent no `retry:`.
    pub default_reconnect_delay: Duration,
    /// How many times one answer stream is resumed with `Last-Event-ID` before the request
    /// fails.
    pub max_stream_resumptions: u32,
}

impl Default for StdioConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            upstream_wait: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            wait: WaitMode::Off,
            input_closed_grace: Duration::from_secs(2),
            close_timeout: Duration::from_secs(2),
            default_reconnect_delay: Duration::from_secs(1),
            max_stream_resumptions: 5,
        }
    }
}

/// Why the bridge stopped with an error (a normal end is stdin EOF or the shutdown signal).
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// Reading stdin failed.
    #[error("reading MCP messages from stdin failed: {0}")]
    Read(#[source] io::Error),
    /// Writing stdout failed (usually: the client went away).
    #[error("writing MCP messages to stdout failed: {0}")]
    Write(#[source] io::Error),
    /// The upstream HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

/// Why [`run_stdio`] returned normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdioExit {
    /// The client closed stdin.
    InputClosed,
    /// The shutdown future completed (SIGTERM/SIGINT in the binary).
    Shutdown,
}

/// Bridges the MCP client on `reader`/`writer` to the upstream until stdin ends or `shutdown`
/// completes, then ends the upstream session and returns promptly.
///
/// The upstream arrives through `upstream_rx` (`None` until known: messages then wait up to
/// [`StdioConfig::upstream_wait`], then get JSON-RPC errors with their ids) and the gate state
/// through `gate_rx`; `events` observes requests for metrics. Tests pass
/// `tokio::io::duplex` halves; the binary passes stdin and stdout.
pub async fn run_stdio<R, W>(
    reader: R,
    writer: W,
    config: StdioConfig,
    upstream_rx: watch::Receiver<Option<UpstreamTarget>>,
    gate_rx: watch::Receiver<GateState>,
    events: Arc<dyn ProxyEvents>,
    shutdown: impl Future<Output = ()>,
) -> Result<StdioExit, StdioError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let http = build_client(config.connect_timeout)?;
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (finish_tx, finish_rx) = oneshot::channel();
    let mut writer_task = tokio::spawn(write_lines(writer, out_rx, finish_rx));
    let bridge = Arc::new(Bridge::new(
        config.clone(),
        http,
        upstream_rx,
        gate_rx,
        events,
        out_tx,
    ));
    // Bounded: a client flooding notifications at a slow upstream is slowed down, not buffered.
    let (notice_tx, notice_rx) = mpsc::channel(256);
    let mut notice_lane = tokio::spawn(Arc::clone(&bridge).run_notice_lane(notice_rx));

    let mut lines = LineReader::new(BufReader::new(reader), config.max_message_bytes);
    let mut next_seq = 0_u64;
    tokio::pin!(shutdown);
    let outcome = loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break Ok(StdioExit::Shutdown),
            finished = &mut writer_task => {
                break Err(match finished {
                    Ok(Err(error)) => StdioError::Write(error),
                    _ => StdioError::Write(io::Error::other("the stdout writer stopped")),
                });
            }
            line = lines.next_line() => match line {
                Ok(Line::Message(line)) => {
                    // Routing can wait (backpressure from a slow upstream or client); a signal
                    // must still stop the bridge meanwhile.
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break Ok(StdioExit::Shutdown),
                        () = dispatch(&bridge, &notice_tx, line, &mut next_seq) => {}
                    }
                }
                Ok(Line::TooLong) => {
                    let text = format!(
                        "message longer than {} bytes skipped",
                        config.max_message_bytes
                    );
                    let _ = bridge.emit(error_response(None, INVALID_REQUEST, &text, None)).await;
                }
                Ok(Line::End) => break Ok(StdioExit::InputClosed),
                Err(error) => break Err(StdioError::Read(error)),
            },
        }
    };

    tracing::debug!(?outcome, "stdio bridge stopping");
    if matches!(outcome, Ok(StdioExit::InputClosed)) {
        // A client piping a few messages and closing stdin (a script, `printf ... |`) still
        // gets its answers, within a bound: real MCP clients close stdin with nothing in
        // flight, so this costs them nothing.
        drop(notice_tx);
        let drained = async {
            let _ = (&mut notice_lane).await;
            bridge.idle().await;
        };
        let _ = tokio::time::timeout(config.input_closed_grace, drained).await;
    }
    notice_lane.abort();
    bridge.abort_all();
    bridge.close_session().await;
    drop(bridge);
    let _ = finish_tx.send(());
    if !writer_task.is_finished() {
        // The writer flushes what is queued and stops; bounded so a stuck stdout cannot hold
        // the exit.
        let _ = tokio::time::timeout(config.close_timeout, &mut writer_task).await;
        writer_task.abort();
    }
    outcome
}

/// Answers a line that is not JSON: there is no id to echo, so the error carries `null`.
async fn emit_parse_error(bridge: &Bridge) {
    let _ = bridge
        .emit(error_response(
            None,
            PARSE_ERROR,
            "parse error: invalid JSON",
            None,
        ))
        .await;
}

/// Routes one stdin line: requests get their own task, notifications and responses go to the
/// ordered lane, garbage gets a JSON-RPC error.
async fn dispatch(
    bridge: &Arc<Bridge>,
    notices: &mpsc::Sender<ClientNotice>,
    line: Bytes,
    next_seq: &mut u64,
) {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return;
    }
    if trimmed.first() == Some(&b'[') {
        // A 2025-03-26 batch: each element is handled as if it had its own line, and each
        // answer comes back on its own line (clients match answers by id).
        match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(trimmed) {
            Ok(elements) if !elements.is_empty() => {
                for element in elements {
                    let element = Bytes::copy_from_slice(element.get().as_bytes());
                    Box::pin(dispatch(bridge, notices, element, next_seq)).await;
                }
            }
            Ok(_) => {
                let _ = bridge
                    .emit(error_response(None, INVALID_REQUEST, "empty batch", None))
                    .await;
            }
            Err(_) => emit_parse_error(bridge).await,
        }
        return;
    }
    let Some(view) = MessageView::parse(trimmed) else {
        emit_parse_error(bridge).await;
        return;
    };
    let line = if trimmed.len() == line.len() {
        line.clone()
    } else {
        line.slice_ref(trimmed)
    };
    match (view.method.as_deref(), view.id) {
        (Some(method), Some(id)) => {
            let params = view.params();
            let declares_url_elicitation = if method == "initialize" {
                message::declares_url_elicitation(params.capabilities)
            } else {
                message::meta_declares_url_elicitation(&params)
            };
            let request = ClientRequest {
                id: id.to_owned(),
                method: method.to_owned(),
                name: message::mcp_name(method, &params).map(str::to_owned),
                progress_token: params
                    .meta
                    .as_ref()
                    .and_then(|meta| meta.progress_token)
                    .map(ToOwned::to_owned),
                meta_protocol_version: message::meta_protocol_version(&params).map(str::to_owned),
                declares_url_elicitation,
                line: line.clone(),
            };
            tracing::debug!(method, "client → upstream request");
            *next_seq += 1;
            let seq = *next_seq;
            let key = message::id_key(id);
            // Tracked before it starts, so a quick answer cannot finish before it is tracked.
            let initialize_guard = if method == "initialize" {
                bridge.begin_initialize()
            } else {
                None
            };
            let (task, abort) = futures_util::future::abortable(Arc::clone(bridge).handle_request(
                request,
                seq,
                initialize_guard,
            ));
            bridge.track(key, seq, abort);
            tokio::spawn(task);
        }
        (Some(method), None) => {
            let cancelled = (method == "notifications/cancelled")
                .then(|| view.params().request_id)
                .flatten();
            if let Some(request_id) = cancelled {
                bridge.cancel(&message::id_key(request_id));
            }
            tracing::debug!(method, "client → upstream notification");
            let _ = notices
                .send(ClientNotice {
                    method: Some(method.to_owned()),
                    line: line.clone(),
                })
                .await;
        }
        (None, _) if view.is_response() => {
            tracing::debug!("client → upstream response");
            let _ = notices.send(ClientNotice { method: None, line }).await;
        }
        (None, id) => {
            let _ = bridge
                .emit(error_response(
                    id,
                    INVALID_REQUEST,
                    "invalid request: neither a request, a notification nor a response",
                    None,
                ))
                .await;
        }
    }
}

/// One read from stdin.
enum Line {
    /// A complete line (without its terminator).
    Message(Bytes),
    /// A line longer than the limit was skipped.
    TooLong,
    /// stdin ended.
    End,
}

/// Newline-delimited reader with a line length limit. Its state lives outside the read future,
/// so the future is cancel-safe inside `select!`.
struct LineReader<R> {
    reader: R,
    buffer: Vec<u8>,
    max_len: usize,
    /// The current line went over the limit: skip to its end.
    discarding: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    fn new(reader: R, max_len: usize) -> Self {
        Self {
            reader,
            buffer: Vec::new(),
            max_len,
            discarding: false,
        }
    }

    async fn next_line(&mut self) -> io::Result<Line> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if self.discarding {
                    self.discarding = false;
                    return Ok(Line::TooLong);
                }
                if self.buffer.is_empty() {
                    return Ok(Line::End);
                }
                return Ok(Line::Message(Bytes::from(std::mem::take(&mut self.buffer))));
            }
            let (part, consumed, complete) = match available.iter().position(|b| *b == b'\n') {
                Some(end) => (&available[..end], end + 1, true),
                None => (available, available.len(), false),
            };
            if !self.discarding {
                if self.buffer.len() + part.len() > self.max_len {
                    self.discarding = true;
                    self.buffer.clear();
                } else {
                    self.buffer.extend_from_slice(part);
                }
            }
            self.reader.consume(consumed);
            if complete {
                if self.discarding {
                    self.discarding = false;
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Message(Bytes::from(std::mem::take(&mut self.buffer))));
            }
        }
    }
}

/// The only code that writes stdout: one line per message. Whatever is queued is written as
/// one batch and flushed, so a burst costs one write, and a lone message is never held back.
/// On `finish` it writes what is already queued and stops.
async fn write_lines<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut lines: mpsc::Receiver<Vec<u8>>,
    mut finish: oneshot::Receiver<()>,
) -> io::Result<()> {
    let mut batch = Vec::new();
    loop {
        batch.clear();
        let line = tokio::select! {
            line = lines.recv() => line,
            _ = &mut finish => None,
        };
        let Some(line) = line else {
            while let Ok(line) = lines.try_recv() {
                batch.extend_from_slice(&line);
                batch.push(b'\n');
            }
            writer.write_all(&batch).await?;
            writer.flush().await?;
            return Ok(());
        };
        batch.extend_from_slice(&line);
        batch.push(b'\n');
        while let Ok(line) = lines.try_recv() {
            batch.extend_from_slice(&line);
            batch.push(b'\n');
        }
        writer.write_all(&batch).await?;
        writer.flush().await?;
    }
}

#[cfg(test)]
mod tests;
