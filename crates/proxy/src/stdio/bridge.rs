//! The bridge proper: routes each stdin message, owns the upstream MCP session, and relays the
//! upstream's answers and server-initiated messages to stdout.
//!
//! Requests each run in their own task so a slow `tools/call` never holds up a `tools/list`.
//! Notifications and the client's responses (answers to sampling, elicitation, roots) keep
//! their order through one sequential lane: `notifications/initialized` must reach the upstream
//! before anything that follows it, and a `notifications/cancelled` must not overtake its
//! request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::AbortHandle;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use url::Url;

use super::StdioConfig;
use super::sse::SseParser;
use crate::events::{ProxyEvents, RequestKind, RequestRecord};
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gatekeeper::{Call, CallContext, Gatekeeper, HoldStep, Verdict};
use crate::mcp::message::{self, Message, same_id};
use crate::upstream::{TransportError, UpstreamClient, UpstreamRequest, UpstreamTarget};

/// `Accept` on every POST: the upstream may answer with JSON or an SSE stream.
const ACCEPT_POST: &str = "application/json, text/event-stream";
/// Largest error body read from the upstream (it only feeds an error message).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Ceiling of the GET stream's reconnection backoff.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// A request from the client, with the routing fields copied out of its line.
#[derive(Debug)]
pub(crate) struct ClientRequest {
    /// The line exactly as received, forwarded unchanged.
    pub(crate) line: Bytes,
    /// The caller's id, echoed by every local answer.
    pub(crate) id: Box<RawValue>,
    /// The JSON-RPC method.
    pub(crate) method: String,
    /// `params.name` / `params.uri`, for the `Mcp-Name` header and the events hook.
    pub(crate) name: Option<String>,
    /// 2026-07-28: `_meta` protocol version of this request.
    pub(crate) meta_protocol_version: Option<String>,
    /// The request (its `_meta` on 2026-07-28, or `params.capabilities` on `initialize`)
    /// declares URL-mode elicitation.
    pub(crate) declares_url_elicitation: bool,
}

/// A notification or a response from the client, sent upstream in arrival order.
#[derive(Debug)]
pub(crate) struct ClientNotice {
    /// The line exactly as received.
    pub(crate) line: Bytes,
    /// The method of a notification; `None` for a response.
    pub(crate) method: Option<String>,
}

/// A transport failure talking to `target`, classified.
fn transport(error: TransportError, target: &UpstreamTarget) -> ErrorKind {
    ErrorKind::from_transport(error, target.shown().to_owned())
}

/// The upstream took longer than its timeout.
fn timed_out(target: &UpstreamTarget) -> ErrorKind {
    ErrorKind::Timeout {
        url: target.shown().to_owned(),
        source: None,
    }
}

/// What the gate made of a `tools/call`.
enum Gated {
    /// Forward it.
    Forward,
    /// It was answered locally.
    Answered,
}

/// What a relayed answer stream is awaited for.
#[derive(Clone, Copy)]
struct Awaited<'a> {
    /// The caller's id.
    id: &'a RawValue,
    /// The request is the client's `initialize` (its answer names the protocol version).
    is_initialize: bool,
    /// The tool policy reviews this call's answer before the client sees it.
    review: Option<&'a Call>,
}

/// The upstream MCP session this bridge owns on the client's behalf.
#[derive(Debug, Default)]
struct Session {
    /// `Mcp-Session-Id` the upstream issued, sent on every later request.
    id: Option<String>,
    /// Protocol version the upstream chose at `initialize`.
    protocol_version: Option<String>,
    /// The client's `initialize` line, replayed when the upstream forgets the session.
    initialize: Option<Bytes>,
    /// The client's `notifications/initialized` line, replayed after `initialize`.
    initialized: Option<Bytes>,
    /// The upstream the session lives on: a new target (e.g. a re-created Composio session)
    /// means a new upstream session.
    target_url: Option<Url>,
    /// Bumped whenever the session is replaced, so concurrent failures re-initialise once.
    generation: u64,
    /// The client declared URL-mode elicitation at `initialize`.
    url_elicitation: bool,
    /// The task holding the GET stream of this session, if any.
    listener: Option<tokio::task::AbortHandle>,
}

/// What a request saw of the session when it was sent.
#[derive(Clone, Debug)]
struct SessionSnapshot {
    /// `Mcp-Session-Id` to send.
    id: Option<String>,
    /// `MCP-Protocol-Version` to send.
    protocol_version: Option<String>,
    /// The session generation, to detect that another task already replaced it.
    generation: u64,
    /// Set when the session lives on another upstream than the current target.
    needs_replay_for: Option<Url>,
}

/// Outcome of relaying one answer stream.
enum Relayed {
    /// The awaited answer reached stdout (or nothing was awaited and the stream ended).
    Done,
    /// The stream ended first; resume from this event id after this delay.
    Ended {
        /// The stream's last event id, the `Last-Event-ID` to resume from.
        last_event_id: Option<String>,
        /// The stream's `retry:` hint.
        retry: Option<Duration>,
    },
}

/// State shared by every task of one bridge run.
pub(crate) struct Bridge {
    /// The bridge's settings.
    pub(crate) config: StdioConfig,
    /// The one pooled upstream client.
    http: UpstreamClient,
    /// Where MCP traffic goes; `None` until known.
    upstream_rx: watch::Receiver<Option<UpstreamTarget>>,
    /// The gate policy every `tools/call` goes through.
    keeper: Gatekeeper,
    /// Metrics and re-verification hooks.
    events: Arc<dyn ProxyEvents>,
    /// Lines for the writer task; the only way anything reaches stdout.
    out: mpsc::Sender<Vec<u8>>,
    /// The upstream session owned on the client's behalf.
    session: Mutex<Session>,
    /// Serialises re-initialisation so a burst of failures replays `initialize` once.
    reinit: tokio::sync::Mutex<()>,
    /// In-flight requests by id, so `notifications/cancelled` can stop a held or streaming call.
    in_flight: Mutex<HashMap<String, (u64, AbortHandle)>>,
    /// Signalled whenever a request leaves `in_flight`.
    request_done: tokio::sync::Notify,
    /// Held for writing while the client's `initialize` is on its way: every later message
    /// waits for it, so a client that pipelines (or a script piping lines in) does not race
    /// its own handshake. Readers take it only momentarily.
    initializing: Arc<tokio::sync::RwLock<()>>,
    /// One per request the bridge may hold at once; the stdin reader waits for one before it
    /// starts a request, which is the backpressure on a client that pipelines.
    request_slots: Arc<Semaphore>,
    /// One per request that may be talking to the upstream at once: each holds a pooled
    /// connection until its answer ends, so this bounds the upstream connections.
    upstream_slots: Semaphore,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these plain-data states half-updated in a
    // way that matters more than stopping the bridge would.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Bridge {
    pub(crate) fn new(
        config: StdioConfig,
        http: UpstreamClient,
        keeper: Gatekeeper,
        out: mpsc::Sender<Vec<u8>>,
    ) -> Self {
        Self {
            http,
            upstream_rx: keeper.upstream(),
            events: Arc::clone(keeper.events()),
            keeper,
            out,
            session: Mutex::new(Session::default()),
            reinit: tokio::sync::Mutex::new(()),
            in_flight: Mutex::new(HashMap::new()),
            request_done: tokio::sync::Notify::new(),
            initializing: Arc::new(tokio::sync::RwLock::new(())),
            request_slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            upstream_slots: Semaphore::new(config.max_upstream_requests.max(1)),
            config,
        }
    }

    /// The gate policy of this bridge.
    pub(crate) fn keeper(&self) -> &Gatekeeper {
        &self.keeper
    }

    /// Queues one line for stdout.
    pub(crate) async fn emit(&self, line: Vec<u8>) -> Result<(), ()> {
        if line.is_empty() {
            return Ok(());
        }
        self.out.send(line).await.map_err(|_| ())
    }

    // === in-flight bookkeeping ===

    /// Waits for room for one more request (never closed: the semaphore lives as long as the
    /// bridge).
    pub(crate) async fn request_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.request_slots).acquire_owned().await.ok()
    }

    pub(crate) fn track(&self, key: String, seq: u64, handle: AbortHandle) {
        lock(&self.in_flight).insert(key, (seq, handle));
    }

    fn untrack(&self, key: &str, seq: u64) {
        let mut in_flight = lock(&self.in_flight);
        if in_flight.get(key).is_some_and(|(s, _)| *s == seq) {
            in_flight.remove(key);
        }
        drop(in_flight);
        self.request_done.notify_waiters();
    }

    /// Stops the local work for a request the client cancelled. Dropping its upstream response
    /// stream is also the cancellation signal of 2026-07-28; the forwarded
    /// `notifications/cancelled` covers earlier versions.
    pub(crate) fn cancel(&self, key: &str) {
        let cancelled = lock(&self.in_flight).remove(key);
        if let Some((_, handle)) = cancelled {
            handle.abort();
            self.request_done.notify_waiters();
        }
    }

    /// Completes once no request is in flight.
    pub(crate) async fn idle(&self) {
        loop {
            let done = self.request_done.notified();
            if lock(&self.in_flight).is_empty() {
                return;
            }
            done.await;
        }
    }

    /// Aborts every background task of this bridge (requests, the GET stream).
    pub(crate) fn abort_all(&self) {
        for (_, (_, handle)) in lock(&self.in_flight).drain() {
            handle.abort();
        }
        if let Some(listener) = lock(&self.session).listener.take() {
            listener.abort();
        }
    }

    // === requests ===

    /// Answers one client request: locally (gate, readiness) or through the upstream.
    /// Called at dispatch time, in stdin order, for an `initialize`: the returned guard holds
    /// back every message read after it until the handshake is answered.
    pub(crate) fn begin_initialize(&self) -> Option<tokio::sync::OwnedRwLockWriteGuard<()>> {
        Arc::clone(&self.initializing).try_write_owned().ok()
    }

    /// Waits while an `initialize` read earlier is still on its way.
    async fn after_initialize(&self) {
        drop(self.initializing.read().await);
    }

    pub(crate) async fn handle_request(
        self: Arc<Self>,
        request: ClientRequest,
        seq: u64,
        initialize_guard: Option<tokio::sync::OwnedRwLockWriteGuard<()>>,
    ) {
        let started = Instant::now();
        let key = message::id_key(&request.id);
        if initialize_guard.is_none() {
            self.after_initialize().await;
        }
        let outcome = self.answer(&request).await;
        drop(initialize_guard);
        let status = match outcome {
            Ok(status) => status,
            Err(kind) => self.failed(&request, kind).await,
        };
        let kind = if request.method == "tools/call" {
            RequestKind::ToolsCall
        } else {
            RequestKind::OtherRequest
        };
        self.events.request_finished(&RequestRecord {
            http_method: &Method::POST,
            kind,
            rpc_method: Some(&request.method),
            status,
            elapsed: started.elapsed(),
        });
        self.untrack(&key, seq);
    }

    /// Reports a failed request and answers it with its error; returns the status recorded.
    async fn failed(&self, request: &ClientRequest, kind: ErrorKind) -> StatusCode {
        match &kind {
            ErrorKind::Unreachable { .. }
            | ErrorKind::Timeout { .. }
            | ErrorKind::Transport { .. } => {
                self.events.upstream_error(&kind);
            }
            ErrorKind::CredentialsRefused { status } => {
                self.events.upstream_credentials_refused(*status);
            }
            _ => {}
        }
        tracing::warn!(method = %request.method, error = %kind, "request failed");
        let status = kind.http_status();
        if !matches!(kind, ErrorKind::ClientGone) {
            let error = McpError::new(Some(&request.id), kind);
            let _ = self.emit(error.to_json()).await;
        }
        status
    }

    async fn answer(self: &Arc<Self>, request: &ClientRequest) -> Result<StatusCode, ErrorKind> {
        let target = self.keeper.ready_within(self.config.upstream_wait).await?;
        let review = if request.method == "tools/call" {
            match self.gate_call(request).await? {
                (Gated::Answered, _) => return Ok(StatusCode::OK),
                (Gated::Forward, review) => review,
            }
        } else {
            None
        };
        // The target may have changed while the call was held.
        let target = self.upstream_rx.borrow().clone().unwrap_or(target);
        self.forward_request(&target, request, review.as_ref())
            .await
    }

    /// What the gatekeeper needs to know about this client for `request`.
    fn call_context(&self, request: &ClientRequest) -> CallContext {
        let session = lock(&self.session);
        CallContext {
            url_elicitation: request.declares_url_elicitation || session.url_elicitation,
            protocol_version: request
                .meta_protocol_version
                .clone()
                .or_else(|| session.protocol_version.clone()),
            // stdout is one stream: progress and completions always have a way to the client.
            progress: true,
            channel: None,
        }
    }

    /// Puts a `tools/call` through the gate: answered locally, or to forward (with the call to
    /// review when the tool policy wants its result).
    async fn gate_call(&self, request: &ClientRequest) -> Result<(Gated, Option<Call>), ErrorKind> {
        let context = self.call_context(request);
        let (verdict, review) = match Message::parse(&request.line) {
            Ok(view) => (
                self.keeper.check_call(&request.line, &view, &context),
                self.keeper.review_for(&request.line, &view, &context),
            ),
            // Parsed once already at dispatch: cannot fail.
            Err(kind) => return Err(kind),
        };
        let gated = match verdict {
            Verdict::Forward => Gated::Forward,
            Verdict::Drop => Gated::Answered,
            Verdict::Answer(answer) => {
                let _ = self.emit(answer).await;
                Gated::Answered
            }
            Verdict::Fail(error) => return Err(error.kind),
            Verdict::Hold(mut hold) => loop {
                match hold.next().await {
                    HoldStep::Progress(note) | HoldStep::Notify(note) => {
                        let _ = self.emit(note).await;
                    }
                    HoldStep::Forward => break Gated::Forward,
                    HoldStep::Answer(answer) => {
                        let _ = self.emit(answer).await;
                        break Gated::Answered;
                    }
                    HoldStep::Fail(error) => return Err(error.kind),
                }
            },
        };
        Ok((gated, review))
    }

    /// Sends `notifications/elicitation/complete` for every URL elicitation this client got
    /// once its toolkit connects, for as long as the bridge runs.
    pub(crate) async fn run_elicitation_lane(self: Arc<Self>) {
        let mut gate = self.keeper.gate_changes();
        while gate.changed().await.is_ok() {
            for note in self.keeper.take_completed(None) {
                if self.emit(note).await.is_err() {
                    return;
                }
            }
        }
    }

    fn snapshot(&self, target: &UpstreamTarget) -> SessionSnapshot {
        let session = lock(&self.session);
        let needs_replay_for = (session.initialize.is_some()
            && session.target_url.as_ref() != Some(&target.url))
        .then(|| target.url.clone());
        SessionSnapshot {
            id: session.id.clone(),
            protocol_version: session.protocol_version.clone(),
            generation: session.generation,
            needs_replay_for,
        }
    }

    /// The POST carrying `request` on the session as `snapshot` saw it.
    fn request_builder(
        &self,
        target: &UpstreamTarget,
        request: &ClientRequest,
        snapshot: &SessionSnapshot,
    ) -> UpstreamRequest {
        let mut builder = self
            .post_builder(target, request.line.clone(), Some(&request.method))
            .header(header::ACCEPT, ACCEPT_POST);
        if request.method != "initialize" {
            builder =
                with_session_headers(builder, snapshot, request.meta_protocol_version.as_deref());
        }
        if let Some(value) = request
            .name
            .as_deref()
            .and_then(|name| HeaderValue::from_str(&message::header_safe(name)).ok())
        {
            builder = builder.header("mcp-name", value);
        }
        builder
    }

    async fn forward_request(
        self: &Arc<Self>,
        target: &UpstreamTarget,
        request: &ClientRequest,
        review: Option<&Call>,
    ) -> Result<StatusCode, ErrorKind> {
        let is_initialize = request.method == "initialize";
        // Held until the answer has been relayed: the connection is busy until then.
        let _upstream_slot = self.upstream_slots.acquire().await;
        let mut retried = false;
        loop {
            let snapshot = self.snapshot(target);
            if !is_initialize && snapshot.needs_replay_for.is_some() {
                if retried {
                    return Err(ErrorKind::SessionLost);
                }
                retried = true;
                self.replay_initialize(target, snapshot.generation).await?;
                continue;
            }
            let builder = self.request_builder(target, request, &snapshot);
            let response = self.send(builder, target).await?;
            let status = response.status();
            if status.is_success() {
                if is_initialize {
                    self.start_session(target, request, &response);
                }
                let awaited = Awaited {
                    id: &request.id,
                    is_initialize,
                    review,
                };
                return self
                    .relay_answer(target, response, awaited)
                    .await
                    .map(|()| status);
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(ErrorKind::CredentialsRefused { status });
            }
            let body = read_bounded(response, MAX_ERROR_BODY, self.body_idle()).await;
            if !is_initialize && !retried && session_lost(status, &body, snapshot.id.is_some()) {
                retried = true;
                tracing::info!(%status, "the upstream forgot the MCP session; re-initialising");
                self.replay_initialize(target, snapshot.generation).await?;
                continue;
            }
            return Err(ErrorKind::Status { status, body });
        }
    }

    /// Records the client's own `initialize` as the session to keep alive.
    fn start_session(
        &self,
        target: &UpstreamTarget,
        request: &ClientRequest,
        response: &Response<Incoming>,
    ) {
        let mut session = lock(&self.session);
        if let Some(listener) = session.listener.take() {
            listener.abort();
        }
        session.id = session_id_of(response);
        session.protocol_version = None;
        session.initialize = Some(request.line.clone());
        session.initialized = None;
        session.target_url = Some(target.url.clone());
        session.generation += 1;
        session.url_elicitation = request.declares_url_elicitation;
    }

    /// Relays the answer to one POST: a JSON body or an SSE stream (resumed with
    /// `Last-Event-ID` if it ends before the awaited answer).
    async fn relay_answer(
        &self,
        target: &UpstreamTarget,
        mut response: Response<Incoming>,
        awaited: Awaited<'_>,
    ) -> Result<(), ErrorKind> {
        let mut resumptions = 0;
        loop {
            let relayed = if is_sse(&response) {
                self.relay_stream(response, Some(awaited)).await?
            } else {
                let limit = self.config.max_message_bytes + 1;
                let body = read_body(response, limit, self.body_idle())
                    .await
                    .map_err(|BodyStalled| timed_out(target))?;
                if body.len() > self.config.max_message_bytes {
                    return Err(ErrorKind::AnswerTooLarge {
                        limit: self.config.max_message_bytes,
                    });
                }
                if !self.relay_message(&body, Some(awaited)).await? {
                    // Empty, not JSON, or an answer to something else: the caller must not
                    // wait for an answer that will never come.
                    return Err(ErrorKind::NoAnswer);
                }
                Relayed::Done
            };
            let (last_event_id, retry) = match relayed {
                Relayed::Done => return Ok(()),
                Relayed::Ended {
                    last_event_id: Some(id),
                    retry,
                } => (id, retry),
                Relayed::Ended {
                    last_event_id: None,
                    ..
                } => return Err(ErrorKind::NoAnswer),
            };
            if resumptions >= self.config.max_stream_resumptions {
                return Err(ErrorKind::NoAnswer);
            }
            resumptions += 1;
            tokio::time::sleep(retry.unwrap_or(self.config.default_reconnect_delay)).await;
            let snapshot = self.snapshot(target);
            let resumed = with_session_headers(self.get_builder(target), &snapshot, None)
                .header("last-event-id", last_event_id);
            let resumed = self.send(resumed, target).await?;
            if !resumed.status().is_success() {
                let status = resumed.status();
                let body = read_bounded(resumed, MAX_ERROR_BODY, self.body_idle()).await;
                tracing::warn!(%status, "resuming the answer stream failed");
                return Err(ErrorKind::Status { status, body });
            }
            response = resumed;
        }
    }

    /// Relays every message of an SSE stream until it ends. With `awaited`, reports whether that
    /// answer came through.
    async fn relay_stream(
        &self,
        mut response: Response<Incoming>,
        awaited: Option<Awaited<'_>>,
    ) -> Result<Relayed, ErrorKind> {
        let mut parser = SseParser::new(self.config.max_message_bytes);
        let mut events = Vec::new();
        let mut answered = false;
        let mut oversized = false;
        loop {
            let chunk = match next_chunk(&mut response).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "upstream stream broke");
                    break;
                }
            };
            parser.push(&chunk, &mut events);
            for event in events.drain(..) {
                if event.oversized {
                    tracing::warn!(
                        limit = self.config.max_message_bytes,
                        "dropped an upstream message over the size limit"
                    );
                    oversized = true;
                    continue;
                }
                if self.relay_message(event.data.as_bytes(), awaited).await? {
                    answered = true;
                }
            }
        }
        if answered || awaited.is_none() {
            return Ok(Relayed::Done);
        }
        if oversized {
            // The dropped message was most likely the answer: say so rather than resume.
            return Err(ErrorKind::AnswerTooLarge {
                limit: self.config.max_message_bytes,
            });
        }
        Ok(Relayed::Ended {
            last_event_id: parser.last_event_id().map(str::to_owned),
            retry: parser.retry(),
        })
    }

    /// Writes one upstream message (or each message of a batch) to stdout; returns whether the
    /// answer to `awaited` was among them.
    async fn relay_message(
        &self,
        data: &[u8],
        awaited: Option<Awaited<'_>>,
    ) -> Result<bool, ErrorKind> {
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(false); // a priming event
        }
        if data.first() != Some(&b'[') {
            return self.relay_one(data, awaited).await;
        }
        // A batch answer (2025-03-26): its elements are ordinary messages. Batches do not nest,
        // so an element that is an array is dropped like any other non-message, never
        // recursed into.
        let Ok(elements) = serde_json::from_slice::<Vec<&RawValue>>(data) else {
            tracing::warn!("dropping an upstream batch that is not valid JSON");
            return Ok(false);
        };
        let mut answered = false;
        for element in elements {
            answered |= self.relay_one(element.get().as_bytes(), awaited).await?;
        }
        Ok(answered)
    }

    /// Writes one upstream message to stdout; returns whether it was the answer to `awaited`.
    async fn relay_one(
        &self,
        data: &[u8],
        awaited: Option<Awaited<'_>>,
    ) -> Result<bool, ErrorKind> {
        let view = match Message::parse(data) {
            Ok(view) if view.is_json_rpc() => view,
            // Writing it would break the client's framing or feed it something that is not
            // MCP; stdout carries only JSON-RPC 2.0 messages.
            _ => {
                tracing::warn!(
                    bytes = data.len(),
                    "dropping an upstream message that is not a JSON-RPC 2.0 message"
                );
                return Ok(false);
            }
        };
        let answer_to = awaited.filter(|awaited| {
            view.is_response() && view.id.is_some_and(|id| same_id(id, awaited.id))
        });
        let mut line = None;
        if let Some(awaited) = answer_to {
            if awaited.is_initialize {
                lock(&self.session).protocol_version = message::result_protocol_version(&view);
            }
            if let Some(call) = awaited.review {
                line = self.keeper.review(call, data).await;
            }
        }
        tracing::trace!(method = view.method().unwrap_or(""), "upstream → client");
        let line = line.unwrap_or_else(|| message::single_line(data));
        self.emit(line).await.map_err(|()| ErrorKind::ClientGone)?;
        Ok(answer_to.is_some())
    }

    // === notifications and responses, in order ===

    /// Sends the client's notifications and responses upstream, one at a time, in order.
    pub(crate) async fn run_notice_lane(
        self: Arc<Self>,
        mut notices: mpsc::Receiver<ClientNotice>,
    ) {
        while let Some(notice) = notices.recv().await {
            self.send_notice(&notice).await;
        }
    }

    async fn send_notice(self: &Arc<Self>, notice: &ClientNotice) {
        if notice.method.is_some() {
            // Not for responses: the upstream may ask something (a ping) during initialize,
            // and holding back the client's answer would deadlock the handshake.
            self.after_initialize().await;
        }
        let Ok(target) = self.keeper.ready_within(self.config.upstream_wait).await else {
            tracing::warn!(
                method = notice.method.as_deref().unwrap_or("response"),
                "no upstream: dropping a client notification"
            );
            return;
        };
        let kind = notice.method.as_deref().unwrap_or("response");
        let started = Instant::now();
        let mut retried = false;
        let status = loop {
            let snapshot = self.snapshot(&target);
            let builder = self
                .post_builder(&target, notice.line.clone(), notice.method.as_deref())
                .header(header::ACCEPT, ACCEPT_POST);
            let builder = with_session_headers(builder, &snapshot, None);
            let response = match self.send(builder, &target).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!(kind, %error, "sending a client notification upstream failed");
                    break error.http_status();
                }
            };
            let status = response.status();
            if status.is_success() {
                if notice.method.as_deref() == Some("notifications/initialized") {
                    self.session_initialized(&target, &notice.line, snapshot.generation);
                }
                if is_sse(&response) {
                    // Not expected for a notification, but whatever the upstream says is the
                    // client's to read.
                    let _ = self.relay_stream(response, None).await;
                } else {
                    let body =
                        read_bounded(response, self.config.max_message_bytes, self.body_idle())
                            .await;
                    if !body.trim_ascii().is_empty() {
                        let _ = self.relay_message(&body, None).await;
                    }
                }
                break status;
            }
            let body = read_bounded(response, MAX_ERROR_BODY, self.body_idle()).await;
            if !retried && session_lost(status, &body, snapshot.id.is_some()) {
                retried = true;
                if self
                    .replay_initialize(&target, snapshot.generation)
                    .await
                    .is_ok()
                {
                    continue;
                }
            }
            tracing::warn!(kind, %status, "the upstream rejected a client notification");
            break status;
        };
        self.events.request_finished(&RequestRecord {
            http_method: &Method::POST,
            kind: RequestKind::NotificationOrResponse,
            rpc_method: notice.method.as_deref(),
            status,
            elapsed: started.elapsed(),
        });
    }

    /// The client finished the handshake: remember the line for replays and open the GET stream.
    fn session_initialized(
        self: &Arc<Self>,
        target: &UpstreamTarget,
        line: &Bytes,
        generation: u64,
    ) {
        let mut session = lock(&self.session);
        if session.generation != generation {
            return;
        }
        session.initialized = Some(line.clone());
        self.open_listener(&mut session, target);
    }

    fn open_listener(self: &Arc<Self>, session: &mut Session, target: &UpstreamTarget) {
        if let Some(old) = session.listener.take() {
            old.abort();
        }
        if session.id.is_none() && session.protocol_version.is_none() {
            return;
        }
        let task = tokio::spawn(Arc::clone(self).listen(target.clone(), session.generation));
        session.listener = Some(task.abort_handle());
    }

    // === session recovery ===

    /// Replays the client's `initialize` and `notifications/initialized` on a fresh upstream
    /// session, unless another task already did since `seen_generation`.
    async fn replay_initialize(
        self: &Arc<Self>,
        target: &UpstreamTarget,
        seen_generation: u64,
    ) -> Result<(), ErrorKind> {
        let _one_at_a_time = self.reinit.lock().await;
        let (initialize, initialized) = {
            let session = lock(&self.session);
            if session.generation != seen_generation {
                return Ok(());
            }
            (session.initialize.clone(), session.initialized.clone())
        };
        let Some(initialize) = initialize else {
            return Err(ErrorKind::SessionLost);
        };
        let builder = self
            .post_builder(target, initialize.clone(), Some("initialize"))
            .header(header::ACCEPT, ACCEPT_POST);
        let response = self.send(builder, target).await?;
        let status = response.status();
        if !status.is_success() {
            let body = read_bounded(response, MAX_ERROR_BODY, self.body_idle()).await;
            return Err(ErrorKind::Status { status, body });
        }
        let new_id = session_id_of(&response);
        let version =
            initialize_version(response, self.config.max_message_bytes, self.body_idle()).await;
        let snapshot = {
            let mut session = lock(&self.session);
            if let Some(listener) = session.listener.take() {
                listener.abort();
            }
            session.id = new_id;
            if version.is_some() {
                session.protocol_version = version;
            }
            session.target_url = Some(target.url.clone());
            session.generation += 1;
            SessionSnapshot {
                id: session.id.clone(),
                protocol_version: session.protocol_version.clone(),
                generation: session.generation,
                needs_replay_for: None,
            }
        };
        if let Some(initialized) = initialized {
            let builder = self
                .post_builder(target, initialized, Some("notifications/initialized"))
                .header(header::ACCEPT, ACCEPT_POST);
            let response = self
                .send(with_session_headers(builder, &snapshot, None), target)
                .await?;
            drop(read_bounded(response, MAX_ERROR_BODY, self.body_idle()).await);
            let mut session = lock(&self.session);
            if session.generation == snapshot.generation {
                self.open_listener(&mut session, target);
            }
        }
        tracing::info!("re-initialised the upstream MCP session");
        Ok(())
    }

    // === the GET stream ===

    /// Holds the session's GET stream (server-initiated requests and notifications), resuming
    /// with `Last-Event-ID` and honouring `retry:` when it drops.
    async fn listen(self: Arc<Self>, target: UpstreamTarget, generation: u64) {
        let mut last_event_id: Option<String> = None;
        let mut retry = self.config.default_reconnect_delay;
        let mut failures = 0_u32;
        // Whether this session's stream ever opened: only then does a later 404/400 mean the
        // upstream forgot the session (rather than that it refuses GET streams for it).
        let mut streamed = false;
        loop {
            let snapshot = self.snapshot(&target);
            if snapshot.generation != generation {
                return;
            }
            let mut builder = with_session_headers(self.get_builder(&target), &snapshot, None);
            if let Some(id) = &last_event_id {
                builder = builder.header("last-event-id", id.as_str());
            }
            match self.send(builder, &target).await {
                Ok(response) if response.status().is_success() && is_sse(&response) => {
                    failures = 0;
                    streamed = true;
                    if !self
                        .relay_get_stream(response, &mut last_event_id, &mut retry)
                        .await
                    {
                        return;
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let body = read_bounded(response, MAX_ERROR_BODY, self.body_idle()).await;
                    if streamed && session_lost(status, &body, snapshot.id.is_some()) {
                        // The upstream restarted or expired the session while the client may
                        // only be listening: restore it now rather than at the next request,
                        // so server messages keep flowing. The replay opens a new stream.
                        tracing::info!(%status, "the upstream forgot the MCP session; re-initialising");
                        self.listener_gone(generation);
                        if let Err(failure) = self.replay_initialize(&target, generation).await {
                            tracing::warn!(?failure, "re-initialising the upstream session failed");
                        }
                        return;
                    }
                    match status {
                        // No server-initiated stream offered, or the session is gone (the next
                        // POST re-initialises and reopens it), or another stream holds it.
                        StatusCode::METHOD_NOT_ALLOWED
                        | StatusCode::NOT_FOUND
                        | StatusCode::BAD_REQUEST
                        | StatusCode::CONFLICT => {
                            tracing::debug!(%status, "no GET stream");
                            self.listener_gone(generation);
                            return;
                        }
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            self.events.upstream_credentials_refused(status);
                            self.listener_gone(generation);
                            return;
                        }
                        // A 2xx that is not an event stream carries no server messages.
                        _ if status.is_success() => {
                            self.listener_gone(generation);
                            return;
                        }
                        _ => failures += 1,
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "GET stream connection failed");
                    failures += 1;
                }
            }
            let backoff = retry
                .saturating_mul(1 << failures.min(5))
                .min(MAX_RECONNECT_DELAY);
            tokio::time::sleep(if failures == 0 { retry } else { backoff }).await;
        }
    }

    /// Relays one GET stream until it ends, updating the resumption cursor and `retry:` hint;
    /// `false` when stdout is gone.
    async fn relay_get_stream(
        &self,
        mut response: Response<Incoming>,
        last_event_id: &mut Option<String>,
        retry: &mut Duration,
    ) -> bool {
        let mut parser = SseParser::new(self.config.max_message_bytes);
        let mut events = Vec::new();
        while let Ok(Some(chunk)) = next_chunk(&mut response).await {
            parser.push(&chunk, &mut events);
            for event in events.drain(..) {
                if event.oversized {
                    tracing::warn!("dropped an upstream message over the size limit");
                    continue;
                }
                if self
                    .relay_message(event.data.as_bytes(), None)
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
        if let Some(id) = parser.last_event_id() {
            *last_event_id = Some(id.to_owned());
        }
        if let Some(hint) = parser.retry() {
            *retry = hint;
        }
        true
    }

    fn listener_gone(&self, generation: u64) {
        let mut session = lock(&self.session);
        if session.generation == generation {
            session.listener = None;
        }
    }

    /// Ends the upstream session (DELETE), bounded by `close_timeout`.
    pub(crate) async fn close_session(&self) {
        let (id, version) = {
            let session = lock(&self.session);
            (session.id.clone(), session.protocol_version.clone())
        };
        let Some(id) = id else { return };
        let Some(target) = self.upstream_rx.borrow().clone() else {
            return;
        };
        let mut builder = self
            .http
            .request(Method::DELETE, &target)
            .header("mcp-session-id", id);
        if let Some(version) = version {
            builder = builder.header("mcp-protocol-version", version);
        }
        match tokio::time::timeout(self.config.close_timeout, builder.send()).await {
            Ok(Ok(response)) => {
                tracing::debug!(status = %response.status(), "closed the upstream session")
            }
            Ok(Err(error)) => tracing::debug!(%error, "closing the upstream session failed"),
            Err(_) => tracing::debug!("closing the upstream session timed out"),
        }
    }

    // === request builders ===

    /// Sends one upstream request; its response head must come within
    /// [`UpstreamTimeouts::response`](crate::upstream::UpstreamTimeouts::response).
    async fn send(
        &self,
        builder: UpstreamRequest,
        target: &UpstreamTarget,
    ) -> Result<Response<Incoming>, ErrorKind> {
        match tokio::time::timeout(self.config.upstream_timeouts.response, builder.send()).await {
            Ok(sent) => sent.map_err(|error| transport(error, target)),
            Err(_) => Err(timed_out(target)),
        }
    }

    /// Longest silence between two chunks of a non-SSE upstream body.
    fn body_idle(&self) -> Duration {
        self.config.upstream_timeouts.body_idle
    }

    fn post_builder(
        &self,
        target: &UpstreamTarget,
        body: Bytes,
        method: Option<&str>,
    ) -> UpstreamRequest {
        let mut builder = self
            .http
            .request(Method::POST, target)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(value) =
            method.and_then(|method| HeaderValue::from_str(&message::header_safe(method)).ok())
        {
            builder = builder.header("mcp-method", value);
        }
        builder
    }

    fn get_builder(&self, target: &UpstreamTarget) -> UpstreamRequest {
        self.http
            .request(Method::GET, target)
            .header(header::ACCEPT, "text/event-stream")
    }
}

/// Adds `Mcp-Session-Id` and `MCP-Protocol-Version` (the request's own 2026-07-28 version wins
/// over the negotiated one).
fn with_session_headers(
    mut builder: UpstreamRequest,
    snapshot: &SessionSnapshot,
    request_version: Option<&str>,
) -> UpstreamRequest {
    if let Some(id) = &snapshot.id {
        builder = builder.header("mcp-session-id", id.as_str());
    }
    if let Some(version) = request_version.or(snapshot.protocol_version.as_deref()) {
        builder = builder.header("mcp-protocol-version", version);
    }
    builder
}

fn session_id_of(response: &Response<Incoming>) -> Option<String> {
    response
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn is_sse(response: &Response<Incoming>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/event-stream"))
}

/// Whether an error status means the upstream no longer knows the session: 404 per the spec, or
/// a 400 that names the session (server-everything's "No valid session ID provided").
fn session_lost(status: StatusCode, body: &[u8], sent_session: bool) -> bool {
    if !sent_session {
        return false;
    }
    status == StatusCode::NOT_FOUND
        || (status == StatusCode::BAD_REQUEST
            && String::from_utf8_lossy(body)
                .to_ascii_lowercase()
                .contains("session"))
}

/// The next data chunk of an upstream body (trailers skipped); `Ok(None)` at its end.
async fn next_chunk(response: &mut Response<Incoming>) -> Result<Option<Bytes>, hyper::Error> {
    while let Some(frame) = response.body_mut().frame().await {
        if let Ok(data) = frame?.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// The upstream went quiet for longer than `body_idle` in the middle of a body.
struct BodyStalled;

/// Reads a body up to `limit` bytes (the rest is discarded); errors end it early, and so does a
/// silence longer than `idle` between two chunks (then `Err`).
async fn read_body(
    mut response: Response<Incoming>,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, BodyStalled> {
    let mut body = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(idle, next_chunk(&mut response)).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None) | Err(_)) => break,
            Err(_) => return Err(BodyStalled),
        };
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(Bytes::from(body))
}

/// [`read_body`] for bodies that only feed a log line or an error message: a stalled body
/// counts as empty.
async fn read_bounded(response: Response<Incoming>, limit: usize, idle: Duration) -> Bytes {
    read_body(response, limit, idle).await.unwrap_or_default()
}

/// The protocol version in a replayed `initialize` answer (JSON or SSE), which is consumed here
/// and never shown to the client.
async fn initialize_version(
    response: Response<Incoming>,
    limit: usize,
    idle: Duration,
) -> Option<String> {
    let sse = is_sse(&response);
    let body = read_bounded(response, limit, idle).await;
    let mut candidates = Vec::new();
    if sse {
        let mut parser = SseParser::new(limit);
        let mut events = Vec::new();
        parser.push(&body, &mut events);
        parser.push(b"\n\n", &mut events);
        candidates.extend(events.into_iter().map(|event| event.data.into_bytes()));
    } else {
        candidates.push(body.to_vec());
    }
    candidates
        .iter()
        .filter_map(|data| Message::parse(data).ok())
        .find_map(|view| message::result_protocol_version(&view))
}
