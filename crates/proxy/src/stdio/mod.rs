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
//! - `bridge`: routing, the upstream session and its recovery; what the gate makes of a
//!   request comes from [`crate::mcp::gatekeeper`], which this face frames as lines.
//! - `sse`: the incremental SSE parser.

mod bridge;
mod sse;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use self::bridge::{Bridge, ClientNotice, ClientRequest};
use crate::config::WaitMode;
use crate::events::ProxyEvents;
use crate::gate::GateState;
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gatekeeper::{CallContext, Gatekeeper, Verdict};
use crate::mcp::message::{self, Body, Message, parse_body};
use crate::mcp::policy::AllPending;
use crate::upstream::{UpstreamClient, UpstreamTarget, UpstreamTimeouts};

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
    /// How long the upstream may take to answer (the same bound as the HTTP face's).
    pub upstream_timeouts: UpstreamTimeouts,
    /// Most client requests held at once (waiting for the gate, the upstream or their answer).
    /// When reached, stdin is not read until one finishes: a client pipelining thousands of
    /// requests is slowed down, never buffered without bound, and nothing is dropped.
    pub max_in_flight: usize,
    /// Most requests talking to the upstream at once. Each holds one pooled connection while
    /// its answer streams, so this bounds the upstream connections (and file descriptors)
    /// whatever the client sends.
    pub max_upstream_requests: usize,
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
            upstream_timeouts: UpstreamTimeouts::default(),
            max_in_flight: 256,
            max_upstream_requests: 32,
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
/// through `gate_rx`, with the default tool policy and [`StdioConfig::wait`]; `events` observes
/// requests for metrics. Tests pass `tokio::io::duplex` halves; the binary passes stdin and
/// stdout.
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
    let keeper = Gatekeeper::new(
        gate_rx,
        upstream_rx,
        config.wait,
        Arc::new(AllPending),
        events,
    );
    run_stdio_with(reader, writer, config, keeper, shutdown).await
}

/// [`run_stdio`] with a gatekeeper of the caller's (its own tool policy, wait mode, upstream
/// and events); [`StdioConfig::wait`] is not used, the gatekeeper's wait mode is.
pub async fn run_stdio_with<R, W>(
    reader: R,
    writer: W,
    config: StdioConfig,
    keeper: Gatekeeper,
    shutdown: impl Future<Output = ()>,
) -> Result<StdioExit, StdioError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let http = UpstreamClient::new(config.connect_timeout);
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (finish_tx, finish_rx) = oneshot::channel();
    let mut writer_task = tokio::spawn(write_lines(writer, out_rx, finish_rx));
    let bridge = Arc::new(Bridge::new(config.clone(), http, keeper, out_tx));
    // Bounded: a client flooding notifications at a slow upstream is slowed down, not buffered.
    let (notice_tx, notice_rx) = mpsc::channel(256);
    let mut notice_lane = tokio::spawn(Arc::clone(&bridge).run_notice_lane(notice_rx));
    let elicitation_lane = tokio::spawn(Arc::clone(&bridge).run_elicitation_lane());

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
                    let limit = config.max_message_bytes;
                    let error = McpError::new(None, ErrorKind::TooLarge { limit });
                    let _ = bridge.emit(error.to_json()).await;
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
    elicitation_lane.abort();
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

/// Answers a line that cannot be routed: there is no id to echo, so the error carries `null`.
async fn emit_error(bridge: &Bridge, kind: ErrorKind) {
    let _ = bridge.emit(McpError::new(None, kind).to_json()).await;
}

/// Routes one stdin line: requests get their own task, notifications and responses go to the
/// ordered lane, a batch is routed element by element (each answer on its own line: clients
/// match answers by id), garbage gets a JSON-RPC error.
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
    let line = line.slice_ref(trimmed);
    match parse_body(&line) {
        Ok(Body::Single(view)) => route(bridge, notices, &line, &view, next_seq).await,
        Ok(Body::Batch(elements)) if elements.is_empty() => {
            emit_error(bridge, ErrorKind::EmptyBatch).await;
        }
        Ok(Body::Batch(elements)) => {
            for (raw, view) in elements {
                let element = line.slice_ref(raw.get().as_bytes());
                route(bridge, notices, &element, &view, next_seq).await;
            }
        }
        Ok(Body::Other) => emit_error(bridge, ErrorKind::NotAMessage).await,
        Err(kind) => emit_error(bridge, kind).await,
    }
}

/// Routes one message (`line` is its bytes).
async fn route(
    bridge: &Arc<Bridge>,
    notices: &mpsc::Sender<ClientNotice>,
    line: &Bytes,
    view: &Message<'_>,
    next_seq: &mut u64,
) {
    match (view.method(), view.id) {
        (Some(_), Some(_)) => start_request(bridge, line, view, next_seq).await,
        (Some(method), None) => {
            let params = view.params();
            if method == "notifications/cancelled"
                && let Some(request_id) = params.request_id
            {
                bridge.cancel(&message::id_key(request_id));
            }
            if view.is_tools_call()
                && matches!(
                    bridge
                        .keeper()
                        .check_call(line, view, &CallContext::default()),
                    Verdict::Drop
                )
            {
                tracing::debug!("dropped a tools/call notification the gate blocks");
                return;
            }
            tracing::debug!(method, "client → upstream notification");
            let notice = ClientNotice {
                method: Some(method.to_owned()),
                line: line.clone(),
            };
            let _ = notices.send(notice).await;
        }
        (None, _) if view.is_response() => {
            tracing::debug!("client → upstream response");
            let notice = ClientNotice {
                method: None,
                line: line.clone(),
            };
            let _ = notices.send(notice).await;
        }
        (None, id) => {
            let _ = bridge
                .emit(McpError::new(id, ErrorKind::NotAMessage).to_json())
                .await;
        }
    }
}

/// Starts the task answering one request, once there is room for it (until then stdin is not
/// read further).
async fn start_request(bridge: &Arc<Bridge>, line: &Bytes, view: &Message<'_>, next_seq: &mut u64) {
    let (Some(method), Some(id)) = (view.method(), view.id) else {
        return;
    };
    // Before `begin_initialize`: an `initialize` holding the handshake lock while waiting for
    // a slot held by requests waiting for that handshake would never get one.
    let slot = bridge.request_slot().await;
    let params = view.params();
    let request = ClientRequest {
        id: id.to_owned(),
        method: method.to_owned(),
        name: params.mcp_name(method).map(str::to_owned),
        meta_protocol_version: params.meta_protocol_version().map(str::to_owned),
        declares_url_elicitation: params.declares_url_elicitation(),
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
    // Boxed at once: the request's future is large, and the wrapper below, `abortable` and
    // the spawn would each move all of it again (callgrind: ~5 % of a call's instructions in
    // those copies); boxed, they move a pointer.
    let work = Box::pin(Arc::clone(bridge).handle_request(request, seq, initialize_guard));
    let (task, abort) = futures_util::future::abortable(async move {
        // Released when the request ends, however it ends (an abort drops it too).
        let _slot = slot;
        work.await;
    });
    bridge.track(key, seq, abort);
    tokio::spawn(task);
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
