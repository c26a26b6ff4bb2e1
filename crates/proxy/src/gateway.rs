//! The Streamable HTTP gateway: one MCP endpoint that checks each request's body, consults
//! the gate on `tools/call`, and otherwise forwards the request byte for byte to the
//! upstream, streaming the answer back frame by frame. Who may call it (Host, Origin, token,
//! CORS) is decided in front of it, by [`crate::access`].
//!
//! [`Gateway::handle`] answers one request for the MCP endpoint and is all a router needs:
//! the binary mounts it at [`Gateway::mcp_path`] next to its own routes (`/healthz`,
//! `/connections`, ...) on one listener, using [`crate::server::serve_with`]; or
//! [`crate::server::serve`] runs the gateway alone (other paths get 404).
//!
//! # Decisions
//! - Only `tools/call` is ever gated, and it is recognised from the body, never from the
//!   `Mcp-Method` header (clients on older versions do not send it, and the upstream rejects a
//!   mismatch anyway).
//! - A body that cannot be read unambiguously (invalid JSON, a non-string or duplicated
//!   `method`, a batch element that is not an object) is answered locally and never
//!   forwarded, so nothing can be smuggled past the gate.
//! - Batches (2025-03-26): without a blocked `tools/call` the batch is forwarded unchanged.
//!   With one, nothing in it is forwarded: the whole batch is answered locally with an array
//!   holding the blocked answer for each `tools/call` and an "invalid request" error for every
//!   other request asking the client to send it on its own. Splitting a batch and merging two
//!   answer streams would be the only alternative, and batches disappeared in 2025-06-18.
//!   Wait mode does not hold batches.
//! - The only per-session state is whether a session's client declared URL elicitation at
//!   `initialize`, in a bounded map; losing it only changes the form of a blocked answer.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::config::{ConfigError, ProxyConfig, WaitMode};
use crate::events::{ProxyEvents, RequestKind, RequestRecord, UpstreamErrorKind};
use crate::gate::{BlockStyle, Decision, GateState, PendingToolkit, blocked_response, decide};
use crate::jsonrpc::{self, Body as RpcBody, MessageView, RequestDetails};
use crate::upstream::{
    ClientBuildError, UpstreamTarget, build_client, copy_response_headers, forward_request_headers,
    mark_unbuffered_if_sse, redacted_url,
};

/// The error type of [`ProxyBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of every gateway answer: a local JSON body, or the upstream's body
/// streamed frame by frame.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

const MCP_SESSION_ID: &str = "mcp-session-id";
const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
const APPLICATION_JSON: &str = "application/json";
const TEXT_EVENT_STREAM: &str = "text/event-stream";
/// Largest plain-JSON upstream answer re-framed into a held call's SSE stream; beyond it the
/// client gets an error event instead.
const MAX_HELD_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why a gateway could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A configuration value cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The upstream HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

/// The Streamable HTTP gateway. Cheap to clone: clones share the client, the state watches and
/// the session map.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProxyConfig,
    client: reqwest::Client,
    upstream: watch::Receiver<Option<UpstreamTarget>>,
    gate: watch::Receiver<GateState>,
    events: Arc<dyn ProxyEvents>,
    url_elicitation_sessions: SessionSet,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("mcp_path", &self.inner.config.mcp_path)
            .field("upstream", &*self.inner.upstream.borrow())
            .finish_non_exhaustive()
    }
}

/// Outcome of one request, before it is reported to the events hook.
struct Outcome {
    response: Response<ProxyBody>,
    kind: RequestKind,
    rpc_method: Option<String>,
}

impl Outcome {
    fn rejected(response: Response<ProxyBody>) -> Self {
        Self {
            response,
            kind: RequestKind::Rejected,
            rpc_method: None,
        }
    }
}

impl Gateway {
    /// A gateway forwarding to whatever `upstream` holds (answering "not ready" while it holds
    /// `None`), gated by `gate`, reporting to `events` (use [`crate::events::NoEvents`] for
    /// none).
    pub fn new(
        config: ProxyConfig,
        upstream: watch::Receiver<Option<UpstreamTarget>>,
        gate: watch::Receiver<GateState>,
        events: Arc<dyn ProxyEvents>,
    ) -> Result<Self, ProxyError> {
        config.validate()?;
        let client = build_client(config.connect_timeout)?;
        let url_elicitation_sessions = SessionSet::new(config.elicitation_sessions_capacity);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                client,
                upstream,
                gate,
                events,
                url_elicitation_sessions,
            }),
        })
    }

    /// The path this gateway answers on (e.g. `/mcp`), for routers that mount it.
    pub fn mcp_path(&self) -> &str {
        &self.inner.config.mcp_path
    }

    /// Answers one request to the MCP endpoint (the caller has routed it here by path).
    ///
    /// Never fails: every problem becomes an HTTP status with a JSON-RPC error body carrying
    /// the caller's id when it is known.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let http_method = request.method().clone();
        let outcome = self.route(request).await;
        self.inner.events.request_finished(&RequestRecord {
            http_method: &http_method,
            kind: outcome.kind,
            rpc_method: outcome.rpc_method.as_deref(),
            status: outcome.response.status(),
            elapsed: started.elapsed(),
        });
        outcome.response
    }

    /// The configuration this gateway runs with (the access rules in front of it are built
    /// from the same one, see [`crate::access::Access::new`]).
    pub fn config(&self) -> &ProxyConfig {
        &self.inner.config
    }

    /// The events hook this gateway reports to.
    pub fn events(&self) -> Arc<dyn ProxyEvents> {
        Arc::clone(&self.inner.events)
    }

    async fn route<B>(&self, request: Request<B>) -> Outcome
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        // Host, Origin and token were checked in front of the gateway (crate::access).
        match *request.method() {
            Method::POST => self.post(request).await,
            Method::GET => {
                let response = self.forward_bodyless(&request).await;
                Outcome {
                    response,
                    kind: RequestKind::Stream,
                    rpc_method: None,
                }
            }
            Method::DELETE => {
                let response = self.forward_bodyless(&request).await;
                if response.status().is_success()
                    && let Some(session) = session_id(request.headers())
                {
                    self.inner.url_elicitation_sessions.remove(session);
                }
                Outcome {
                    response,
                    kind: RequestKind::EndSession,
                    rpc_method: None,
                }
            }
            _ => {
                let mut response = json_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    None,
                    jsonrpc::SERVER_ERROR,
                    "Method not allowed: the MCP endpoint accepts POST, GET and DELETE",
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                Outcome::rejected(response)
            }
        }
    }

    async fn post<B>(&self, request: Request<B>) -> Outcome
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        if !is_json_content_type(&parts.headers) {
            return Outcome::rejected(json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                jsonrpc::SERVER_ERROR,
                "Unsupported Media Type: POST bodies must be Content-Type: application/json",
            ));
        }
        let cap = self.inner.config.max_body_bytes;
        let declared_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > cap as u64) {
            return Outcome::rejected(too_large(cap));
        }
        let bytes = match Limited::new(body, cap).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                if error.is::<http_body_util::LengthLimitError>() {
                    return Outcome::rejected(too_large(cap));
                }
                return Outcome::rejected(json_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    jsonrpc::SERVER_ERROR,
                    "Bad Request: the request body could not be read",
                ));
            }
        };
        let parsed = match jsonrpc::parse_body(&bytes) {
            Ok(parsed) => parsed,
            Err(error) => {
                return Outcome::rejected(json_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    error.code(),
                    &error.to_string(),
                ));
            }
        };
        match parsed {
            RpcBody::Single(view) => self.post_single(&parts, &bytes, &view).await,
            RpcBody::Batch(views) => self.post_batch(&parts, &bytes, &views).await,
            RpcBody::Other => {
                let response = match self.not_ready_reason() {
                    Some(reason) => not_ready(None, &reason),
                    None => self.forward(&parts, Some(bytes.clone()), None).await,
                };
                Outcome {
                    response,
                    kind: RequestKind::OtherRequest,
                    rpc_method: None,
                }
            }
        }
    }

    /// Why nothing can be forwarded right now, if that is the case.
    fn not_ready_reason(&self) -> Option<String> {
        if let GateState::Starting { reason } = &*self.inner.gate.borrow() {
            return Some(reason.clone());
        }
        if self.inner.upstream.borrow().is_none() {
            return Some("the upstream MCP endpoint is not known yet".to_owned());
        }
        None
    }

    fn decision(&self, method: Option<&str>) -> Decision {
        let decision = decide(&self.inner.gate.borrow(), method);
        if decision == Decision::Forward && self.inner.upstream.borrow().is_none() {
            return Decision::NotReady("the upstream MCP endpoint is not known yet".to_owned());
        }
        decision
    }

    async fn post_single(
        &self,
        parts: &http::request::Parts,
        bytes: &Bytes,
        view: &MessageView<'_>,
    ) -> Outcome {
        let kind = match view.method() {
            Some("tools/call") if view.id.is_some() => RequestKind::ToolsCall,
            Some(_) if view.id.is_some() => RequestKind::OtherRequest,
            _ => RequestKind::NotificationOrResponse,
        };
        let rpc_method = view.method().map(str::to_owned);
        let response = match self.decision(view.method()) {
            Decision::NotReady(reason) => not_ready(view.id, &reason),
            Decision::Forward => {
                let is_initialize = view.method() == Some("initialize");
                let response = self.forward(parts, Some(bytes.clone()), view.id).await;
                if is_initialize
                    && response.status().is_success()
                    && view.details().url_elicitation
                    && let Some(session) = session_id(response.headers())
                {
                    self.inner.url_elicitation_sessions.insert(session);
                }
                response
            }
            Decision::Block(pending) => self.blocked(parts, bytes, view, pending).await,
        };
        Outcome {
            response,
            kind,
            rpc_method,
        }
    }

    async fn blocked(
        &self,
        parts: &http::request::Parts,
        bytes: &Bytes,
        view: &MessageView<'_>,
        pending: Vec<PendingToolkit>,
    ) -> Response<ProxyBody> {
        let details = view.details();
        let Some(id) = view.id else {
            // A tools/call notification has nobody to answer; it is dropped, not forwarded.
            self.inner
                .events
                .call_blocked(details.tool_name.as_deref(), Duration::ZERO);
            return empty(StatusCode::ACCEPTED);
        };
        let WaitMode::Hold {
            timeout,
            progress_interval,
        } = self.inner.config.wait
        else {
            self.inner
                .events
                .call_blocked(details.tool_name.as_deref(), Duration::ZERO);
            return json_ok(self.blocked_answer(&parts.headers, id, &details, &pending));
        };
        self.inner.events.call_held(details.tool_name.as_deref());
        let accepts_sse = accepts(&parts.headers, TEXT_EVENT_STREAM);
        match (&details.progress_token, accepts_sse) {
            (Some(token), true) => self.hold_with_progress(
                HeldCall {
                    parts: parts.clone(),
                    body: bytes.clone(),
                    id: id.to_owned(),
                    details: details.clone(),
                    token: token.clone(),
                },
                pending,
                timeout,
                progress_interval,
            ),
            _ => {
                let started = Instant::now();
                match self.wait_for_open(timeout).await {
                    Ok(()) => self.forward(parts, Some(bytes.clone()), Some(id)).await,
                    Err(Some(latest)) => {
                        self.inner
                            .events
                            .call_blocked(details.tool_name.as_deref(), started.elapsed());
                        json_ok(self.blocked_answer(&parts.headers, id, &details, &latest))
                    }
                    Err(None) => not_ready(Some(id), "toolgate is restarting its upstream"),
                }
            }
        }
    }

    /// Waits until `tools/call` would be forwarded. `Err(Some(pending))` on timeout (with the
    /// latest pending list), `Err(None)` if the gate went back to "starting".
    async fn wait_for_open(&self, timeout: Duration) -> Result<(), Option<Vec<PendingToolkit>>> {
        let mut gate = self.inner.gate.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.decision(Some("tools/call")) {
                Decision::Forward => return Ok(()),
                Decision::NotReady(_) => return Err(None),
                Decision::Block(pending) => {
                    let changed = tokio::time::timeout_at(deadline, gate.changed()).await;
                    match changed {
                        Ok(Ok(())) => continue,
                        // Timed out, or the gate's sender is gone (it will never open).
                        Ok(Err(_)) | Err(_) => return Err(Some(pending)),
                    }
                }
            }
        }
    }

    fn blocked_answer(
        &self,
        headers: &HeaderMap,
        id: &RawValue,
        details: &RequestDetails,
        pending: &[PendingToolkit],
    ) -> Vec<u8> {
        let version = details.meta_protocol_version.as_deref().or_else(|| {
            headers
                .get(MCP_PROTOCOL_VERSION)
                .and_then(|value| value.to_str().ok())
        });
        let url_capable = details.url_elicitation
            || session_id(headers)
                .is_some_and(|session| self.inner.url_elicitation_sessions.contains(session));
        // An elicitation without a URL would tell the client nothing: fall back to the text.
        let style = if url_capable && pending.iter().any(|toolkit| toolkit.connect_url.is_some()) {
            BlockStyle::UrlElicitation
        } else {
            BlockStyle::ToolError
        };
        blocked_response(id, pending, style, version)
    }

    async fn post_batch(
        &self,
        parts: &http::request::Parts,
        bytes: &Bytes,
        views: &[MessageView<'_>],
    ) -> Outcome {
        let mut blocked = None;
        for view in views {
            match self.decision(view.method()) {
                Decision::Forward => {}
                Decision::NotReady(reason) => {
                    return Outcome {
                        response: not_ready(None, &reason),
                        kind: RequestKind::Batch,
                        rpc_method: None,
                    };
                }
                Decision::Block(pending) => blocked = Some(pending),
            }
        }
        let response = match blocked {
            None => self.forward(parts, Some(bytes.clone()), None).await,
            Some(pending) => {
                let mut answers = Vec::new();
                for view in views {
                    let Some(id) = view.id.filter(|_| view.method.is_some()) else {
                        continue;
                    };
                    if view.method() == Some("tools/call") {
                        let details = view.details();
                        self.inner
                            .events
                            .call_blocked(details.tool_name.as_deref(), Duration::ZERO);
                        let answer = self.blocked_answer(&parts.headers, id, &details, &pending);
                        answers
                            .push(serde_json::from_slice::<Value>(&answer).unwrap_or(Value::Null));
                    } else {
                        answers.push(jsonrpc::error_value(
                            Some(id),
                            jsonrpc::INVALID_REQUEST,
                            "Not forwarded: this batch contained a tools/call blocked by toolgate; \
                             send this request on its own",
                        ));
                    }
                }
                json_ok(serde_json::to_vec(&answers).unwrap_or_default())
            }
        };
        Outcome {
            response,
            kind: RequestKind::Batch,
            rpc_method: None,
        }
    }

    async fn forward_bodyless<B>(&self, request: &Request<B>) -> Response<ProxyBody> {
        if let Some(reason) = self.not_ready_reason() {
            return not_ready(None, &reason);
        }
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = request.method().clone();
        parts.uri = request.uri().clone();
        parts.headers = request.headers().clone();
        self.forward(&parts, None, None).await
    }

    /// Sends the request upstream and turns the answer (or the failure) into the client's
    /// response. `id` is the caller's JSON-RPC id, used in locally built error bodies.
    async fn forward(
        &self,
        parts: &http::request::Parts,
        body: Option<Bytes>,
        id: Option<&RawValue>,
    ) -> Response<ProxyBody> {
        match self.send_upstream(parts, body).await {
            Ok(upstream) => self.relay(upstream, id),
            Err(failure) => failure.into_response(id),
        }
    }

    async fn send_upstream(
        &self,
        parts: &http::request::Parts,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, UpstreamFailure> {
        let request = {
            let target = self.inner.upstream.borrow();
            let Some(target) = target.as_ref() else {
                return Err(UpstreamFailure::NotReady);
            };
            let headers = forward_request_headers(&parts.headers, target);
            let mut builder = self
                .inner
                .client
                .request(parts.method.clone(), target.url.clone())
                .headers(headers);
            if let Some(body) = body {
                builder = builder.body(body);
            }
            builder
        };
        let send = request.send();
        let result = match self.inner.config.response_header_timeout {
            Some(limit) => match tokio::time::timeout(limit, send).await {
                Ok(result) => result,
                Err(_) => {
                    self.inner.events.upstream_error(UpstreamErrorKind::Timeout);
                    return Err(UpstreamFailure::Timeout);
                }
            },
            None => send.await,
        };
        result.map_err(|error| {
            let kind = if error.is_timeout() {
                UpstreamErrorKind::Timeout
            } else if error.is_connect() {
                UpstreamErrorKind::Unreachable
            } else {
                UpstreamErrorKind::Other
            };
            let url = error.url().map(redacted_url).unwrap_or_default();
            // reqwest's Display may include the URL; log only the redacted form and the kind.
            tracing::warn!(upstream = %url, ?kind, "upstream request failed");
            self.inner.events.upstream_error(kind);
            match kind {
                UpstreamErrorKind::Timeout => UpstreamFailure::Timeout,
                UpstreamErrorKind::Unreachable => UpstreamFailure::Unreachable,
                UpstreamErrorKind::Other => UpstreamFailure::Other,
            }
        })
    }

    /// The upstream's answer for the client: status, end-to-end headers and the body streamed
    /// frame by frame; a 401/403 becomes a 502 the client will not try to authenticate against.
    fn relay(&self, upstream: reqwest::Response, id: Option<&RawValue>) -> Response<ProxyBody> {
        let status = upstream.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            tracing::warn!(%status, "the upstream MCP server refused toolgate's credentials");
            self.inner.events.upstream_credentials_refused(status);
            return json_error(
                StatusCode::BAD_GATEWAY,
                id,
                jsonrpc::SERVER_ERROR,
                &format!(
                    "The upstream MCP server refused toolgate's credentials (HTTP {}); \
                     toolgate will re-verify its session, retry shortly",
                    status.as_u16()
                ),
            );
        }
        let upstream: http::Response<reqwest::Body> = upstream.into();
        let (upstream_parts, upstream_body) = upstream.into_parts();
        let mut response = Response::new(upstream_body.map_err(BoxError::from).boxed_unsync());
        *response.status_mut() = status;
        copy_response_headers(&upstream_parts.headers, response.headers_mut());
        mark_unbuffered_if_sse(response.headers_mut());
        response
    }

    /// Wait mode with a progress token: answer at once with an SSE stream that carries progress
    /// notifications naming the links, then either the upstream's answer (once the gate opens)
    /// or the blocked answer (on timeout).
    fn hold_with_progress(
        &self,
        call: HeldCall,
        pending: Vec<PendingToolkit>,
        timeout: Duration,
        progress_interval: Duration,
    ) -> Response<ProxyBody> {
        let (sender, receiver) = mpsc::channel::<Bytes>(8);
        let gateway = self.clone();
        tokio::spawn(async move {
            gateway
                .run_held_call(call, pending, timeout, progress_interval, sender)
                .await;
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(receiver)
            .map(|chunk| Ok::<_, BoxError>(Frame::data(chunk)));
        let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(TEXT_EVENT_STREAM),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }

    async fn run_held_call(
        &self,
        call: HeldCall,
        mut pending: Vec<PendingToolkit>,
        timeout: Duration,
        progress_interval: Duration,
        sender: mpsc::Sender<Bytes>,
    ) {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut gate = self.inner.gate.clone();
        let mut gate_alive = true;
        let mut progress = 0u64;
        loop {
            progress += 1;
            let note = progress_event(&call.token, progress, &pending);
            if sender.send(note).await.is_err() {
                return; // The client went away: nothing to forward, nothing to answer.
            }
            let next_note = tokio::time::Instant::now() + progress_interval;
            tokio::select! {
                changed = gate.changed(), if gate_alive => gate_alive = changed.is_ok(),
                () = tokio::time::sleep_until(next_note.min(deadline)) => {}
                () = sender.closed() => return,
            }
            match self.decision(Some("tools/call")) {
                Decision::Forward => break,
                Decision::NotReady(reason) => {
                    let answer = jsonrpc::error_response(
                        Some(&call.id),
                        jsonrpc::SERVER_ERROR,
                        &format!("toolgate is not ready: {reason}"),
                    );
                    let _ = sender.send(sse_message(&answer)).await;
                    return;
                }
                Decision::Block(latest) => pending = latest,
            }
            if tokio::time::Instant::now() >= deadline {
                self.inner
                    .events
                    .call_blocked(call.details.tool_name.as_deref(), started.elapsed());
                let answer =
                    self.blocked_answer(&call.parts.headers, &call.id, &call.details, &pending);
                let _ = sender.send(sse_message(&answer)).await;
                return;
            }
        }
        // The gate opened: forward the call and splice the upstream's answer into our stream.
        let upstream = match self
            .send_upstream(&call.parts, Some(call.body.clone()))
            .await
        {
            Ok(upstream) => upstream,
            Err(failure) => {
                let _ = sender
                    .send(sse_message(&failure.body(Some(&call.id))))
                    .await;
                return;
            }
        };
        let status = upstream.status();
        let is_sse = upstream
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim_start().starts_with(TEXT_EVENT_STREAM));
        if status.is_success() && is_sse {
            let mut frames = upstream.bytes_stream();
            loop {
                tokio::select! {
                    frame = frames.next() => match frame {
                        Some(Ok(chunk)) => {
                            if sender.send(chunk).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    () = sender.closed() => return,
                }
            }
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            self.inner.events.upstream_credentials_refused(status);
        }
        // A JSON answer has to be whole to be re-framed as one SSE event; bound what is held.
        let upstream: http::Response<reqwest::Body> = upstream.into();
        let body = Limited::new(upstream.into_body(), MAX_HELD_ANSWER_BYTES)
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        // A JSON-RPC answer (a result, or the upstream's own error) is relayed as it is; anything
        // else becomes an error naming the upstream status.
        let relayed = serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(|value| value.get("jsonrpc").is_some())
            .filter(|_| status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN)
            .map(|_| body.to_vec())
            .unwrap_or_else(|| {
                jsonrpc::error_response(
                    Some(&call.id),
                    jsonrpc::SERVER_ERROR,
                    &format!("The upstream MCP server answered HTTP {}", status.as_u16()),
                )
            });
        let _ = sender.send(sse_message(&relayed)).await;
    }
}

/// A `tools/call` held in wait mode, owned so the holding task can outlive the handler.
struct HeldCall {
    parts: http::request::Parts,
    body: Bytes,
    id: Box<RawValue>,
    details: RequestDetails,
    token: Value,
}

/// Why the upstream gave no answer.
#[derive(Clone, Copy, Debug)]
enum UpstreamFailure {
    NotReady,
    Unreachable,
    Timeout,
    Other,
}

impl UpstreamFailure {
    fn status(self) -> StatusCode {
        match self {
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable | Self::Other => StatusCode::BAD_GATEWAY,
        }
    }

    fn body(self, id: Option<&RawValue>) -> Vec<u8> {
        let message = match self {
            Self::NotReady => "toolgate is not ready: the upstream MCP endpoint is not known yet",
            Self::Unreachable => "toolgate could not connect to the upstream MCP server",
            Self::Timeout => "the upstream MCP server did not answer in time",
            Self::Other => "the connection to the upstream MCP server failed",
        };
        jsonrpc::error_response(id, jsonrpc::SERVER_ERROR, message)
    }

    fn into_response(self, id: Option<&RawValue>) -> Response<ProxyBody> {
        json_bytes(self.status(), self.body(id))
    }
}

/// Session ids whose client declared URL elicitation, bounded: the oldest entry is forgotten
/// first once `capacity` is reached.
struct SessionSet {
    capacity: usize,
    entries: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl SessionSet {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    fn insert(&self, session: &str) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut guard) = self.entries.lock() else {
            return;
        };
        let (set, order) = &mut *guard;
        if !set.insert(session.to_owned()) {
            return;
        }
        order.push_back(session.to_owned());
        while order.len() > self.capacity {
            if let Some(oldest) = order.pop_front() {
                set.remove(&oldest);
            }
        }
    }

    fn contains(&self, session: &str) -> bool {
        self.entries
            .lock()
            .is_ok_and(|guard| guard.0.contains(session))
    }

    fn remove(&self, session: &str) {
        if let Ok(mut guard) = self.entries.lock() {
            let (set, order) = &mut *guard;
            if set.remove(session) {
                order.retain(|entry| entry != session);
            }
        }
    }
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(MCP_SESSION_ID)
        .and_then(|value| value.to_str().ok())
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(APPLICATION_JSON))
}

fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.split(';').next())
        .any(|entry| entry.trim().eq_ignore_ascii_case(media_type))
}

/// One SSE `message` event whose data is `json` (split over `data:` lines if it has newlines).
fn sse_message(json: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(json);
    let mut event = String::with_capacity(json.len() + 32);
    event.push_str("event: message\n");
    for line in text.lines() {
        event.push_str("data: ");
        event.push_str(line);
        event.push('\n');
    }
    event.push('\n');
    Bytes::from(event)
}

fn progress_event(token: &Value, progress: u64, pending: &[PendingToolkit]) -> Bytes {
    let mut message = String::from("Waiting for the user to connect");
    for (index, toolkit) in pending.iter().enumerate() {
        message.push_str(if index == 0 { " " } else { "; " });
        message.push_str(&toolkit.name);
        if let Some(url) = &toolkit.connect_url {
            message.push_str(": ");
            message.push_str(url);
        }
    }
    let note = json!({
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": { "progressToken": token, "progress": progress, "message": message },
    });
    sse_message(&serde_json::to_vec(&note).unwrap_or_default())
}

fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn empty(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(APPLICATION_JSON),
    );
    response
}

fn json_ok(body: Vec<u8>) -> Response<ProxyBody> {
    json_bytes(StatusCode::OK, body)
}

/// A local JSON-RPC error answer with `status`.
pub(crate) fn json_error(
    status: StatusCode,
    id: Option<&RawValue>,
    code: i64,
    message: &str,
) -> Response<ProxyBody> {
    json_bytes(status, jsonrpc::error_response(id, code, message))
}

fn too_large(cap: usize) -> Response<ProxyBody> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
        jsonrpc::SERVER_ERROR,
        &format!("Payload Too Large: the request body exceeds {cap} bytes"),
    )
}

fn not_ready(id: Option<&RawValue>, reason: &str) -> Response<ProxyBody> {
    let mut response = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        id,
        jsonrpc::SERVER_ERROR,
        &format!("toolgate is not ready: {reason}"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A plain 404 for paths the gateway does not serve.
pub fn not_found() -> Response<ProxyBody> {
    let mut response = Response::new(full("Not Found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_set_forgets_oldest_first() {
        let set = SessionSet::new(2);
        set.insert("a");
        set.insert("b");
        set.insert("a");
        set.insert("c");
        assert!(!set.contains("a") && set.contains("b") && set.contains("c"));
        set.remove("b");
        assert!(!set.contains("b"));
        let none = SessionSet::new(0);
        none.insert("a");
        assert!(!none.contains("a"));
    }

    #[test]
    fn sse_message_splits_lines() {
        assert_eq!(
            sse_message(b"{\n\"a\":1}"),
            Bytes::from_static(b"event: message\ndata: {\ndata: \"a\":1}\n\n")
        );
    }

    #[test]
    fn content_type_and_accept_matching() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;q=0.9, text/event-stream"),
        );
        assert!(is_json_content_type(&headers));
        assert!(accepts(&headers, TEXT_EVENT_STREAM));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json_content_type(&headers));
    }
}
