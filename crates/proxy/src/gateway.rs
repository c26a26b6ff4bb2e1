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
//! - What the gate makes of a request is the [`crate::mcp::gatekeeper::Gatekeeper`]'s; this
//!   face only frames it: a JSON body, or for a call held with a progress token an SSE stream
//!   carrying the progress notifications and then the answer. Batches with a blocked call are
//!   answered whole (splitting a batch and merging two answer streams would be the only
//!   alternative, and batches disappeared in 2025-06-18).
//! - The only per-session state is whether a session's client declared URL elicitation at
//!   `initialize`, in a bounded map; losing it only changes the form of a blocked answer. A
//!   front that seals session ids carries it in the sealed id and restores it here
//!   ([`Gateway::remember_url_elicitation`]), so every replica answers alike.
//! - A body over the cap is read on and discarded up to [`DRAIN_LIMIT_FACTOR`] times the cap
//!   before the 413 JSON-RPC error is sent, so a client still sending does not get a broken
//!   pipe and loses nothing but that request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};

use crate::config::{ConfigError, ProxyConfig};
use crate::events::{ProxyEvents, RequestKind, RequestRecord};
use crate::gate::GateState;
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gatekeeper::{
    BatchVerdict, Call, CallContext, ContextSource, Gatekeeper, Hold, HoldStep, NO_UPSTREAM,
    Verdict,
};
use crate::mcp::message::{Body as RpcBody, Message, Params, parse_body};
use crate::mcp::policy::AllPending;
use crate::recent::Recent;
use crate::upstream::{
    UpstreamClient, UpstreamTarget, end_to_end_response_headers, forward_request_headers,
    mark_unbuffered_if_sse,
};

mod relay;
mod review;

/// The error type of [`ProxyBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of every gateway answer: a local JSON body, or the upstream's body
/// streamed frame by frame.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

const MCP_SESSION_ID: &str = "mcp-session-id";
const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
const APPLICATION_JSON: &str = "application/json";
const TEXT_EVENT_STREAM: &str = "text/event-stream";
/// Largest upstream answer buffered whole: a plain-JSON answer re-framed into a held call's SSE
/// stream, or an answer the tool policy reviews. Beyond it the client gets an error instead.
const MAX_BUFFERED_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// An over-cap body is read and discarded up to this many times the cap before the 413 goes
/// out; a client sending even more gets its connection closed.
pub const DRAIN_LIMIT_FACTOR: usize = 16;

/// Why a gateway could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A configuration value cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The Streamable HTTP gateway. Cheap to clone: clones share the client, the state watches and
/// the session map.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProxyConfig,
    client: UpstreamClient,
    upstream: watch::Receiver<Option<UpstreamTarget>>,
    keeper: Gatekeeper,
    events: Arc<dyn ProxyEvents>,
    /// Upstream session ids whose client declared URL elicitation.
    url_elicitation_sessions: Recent<()>,
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
    /// `None`), gated by `gate` with the default tool policy ([`AllPending`]) and the
    /// configured wait mode, reporting to `events` (use [`crate::events::NoEvents`] for none).
    pub fn new(
        config: ProxyConfig,
        upstream: watch::Receiver<Option<UpstreamTarget>>,
        gate: watch::Receiver<GateState>,
        events: Arc<dyn ProxyEvents>,
    ) -> Result<Self, ProxyError> {
        let keeper = Gatekeeper::new(gate, upstream, config.wait, Arc::new(AllPending), events);
        Self::with_gatekeeper(config, keeper)
    }

    /// A gateway whose gate policy is `keeper` (which also holds the upstream, the tool policy
    /// and the events hook); `config.wait` is not used, the gatekeeper's wait mode is.
    pub fn with_gatekeeper(config: ProxyConfig, keeper: Gatekeeper) -> Result<Self, ProxyError> {
        let client = UpstreamClient::new(config.connect_timeout);
        Self::with_client(config, keeper, client)
    }

    /// Like [`Gateway::with_gatekeeper`], forwarding through `client`: one pooled client
    /// shared by many gateways (a multi-user gateway has one per user) instead of one each.
    pub fn with_client(
        config: ProxyConfig,
        keeper: Gatekeeper,
        client: UpstreamClient,
    ) -> Result<Self, ProxyError> {
        config.validate()?;
        let upstream = keeper.upstream();
        let events = Arc::clone(keeper.events());
        let url_elicitation_sessions = Recent::new(config.elicitation_sessions_capacity);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                client,
                upstream,
                keeper,
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

    /// Waits up to `bound` until this gateway can forward (its upstream exists and the gate
    /// has left `Starting`), for a front whose first request may come while the upstream is
    /// still being created; true when it can. The gatekeeper's own wait
    /// ([`Gatekeeper::ready_within`]), the one the stdio face uses.
    pub async fn ready_within(&self, bound: std::time::Duration) -> bool {
        self.inner.keeper.ready_within(bound).await.is_ok()
    }

    /// Whether the client of upstream session `session` declared URL elicitation at
    /// `initialize`, as far as this gateway remembers.
    pub fn declares_url_elicitation(&self, session: &str) -> bool {
        self.inner.url_elicitation_sessions.contains(session)
    }

    /// Records that the client of upstream session `session` declared URL elicitation (a
    /// front restoring what a sealed session id carries, on a replica that never saw the
    /// session's `initialize`).
    pub fn remember_url_elicitation(&self, session: &str) {
        self.inner.url_elicitation_sessions.insert(session, ());
    }

    /// The pooled upstream client this gateway forwards through, for a front that builds
    /// more gateways beside it (they then share its connections).
    pub fn client(&self) -> &UpstreamClient {
        &self.inner.client
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
                let mut response =
                    error_response(&McpError::new(None, ErrorKind::MethodNotAllowed));
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
            let error = McpError::new(None, ErrorKind::UnsupportedMediaType);
            return Outcome::rejected(error_response(&error));
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let bytes = match read_body(body, self.inner.config.max_body_bytes, declared).await {
            Ok(bytes) => bytes,
            Err(kind) => return Outcome::rejected(error_response(&McpError::new(None, kind))),
        };
        let parsed = match parse_body(&bytes) {
            Ok(parsed) => parsed,
            Err(kind) => return Outcome::rejected(error_response(&McpError::new(None, kind))),
        };
        match parsed {
            RpcBody::Single(view) => self.post_single(&parts, &bytes, &view).await,
            RpcBody::Batch(elements) => Box::pin(self.post_batch(&parts, &bytes, &elements)).await,
            RpcBody::Other => {
                let response = match self.inner.keeper.ready() {
                    Ok(()) => {
                        self.forward(&parts, Some(bytes.clone()), None, Vec::new())
                            .await
                    }
                    Err(kind) => error_response(&McpError::new(None, kind)),
                };
                Outcome {
                    response,
                    kind: RequestKind::OtherRequest,
                    rpc_method: None,
                }
            }
        }
    }

    /// What the gatekeeper needs to know about the client of a blocked call.
    fn call_context(&self, headers: &HeaderMap, params: &Params<'_>) -> CallContext {
        let session = session_id(headers);
        let version = params.meta_protocol_version().or_else(|| {
            headers
                .get(MCP_PROTOCOL_VERSION)
                .and_then(|value| value.to_str().ok())
        });
        CallContext {
            url_elicitation: params.declares_url_elicitation()
                || session.is_some_and(|id| self.inner.url_elicitation_sessions.contains(id)),
            protocol_version: version.map(str::to_owned),
            progress: accepts(headers, TEXT_EVENT_STREAM),
            channel: session.map(str::to_owned),
        }
    }

    async fn post_single(
        &self,
        parts: &http::request::Parts,
        bytes: &Bytes,
        view: &Message<'_>,
    ) -> Outcome {
        let kind = match view.method() {
            Some("tools/call") if view.id.is_some() => RequestKind::ToolsCall,
            Some(_) if view.id.is_some() => RequestKind::OtherRequest,
            _ => RequestKind::NotificationOrResponse,
        };
        let rpc_method = view.method().map(str::to_owned);
        let response = self.answer_single(parts, bytes, view).await;
        Outcome {
            response,
            kind,
            rpc_method,
        }
    }

    async fn answer_single(
        &self,
        parts: &http::request::Parts,
        bytes: &Bytes,
        view: &Message<'_>,
    ) -> Response<ProxyBody> {
        if let Err(kind) = self.inner.keeper.ready() {
            return error_response(&McpError::new(view.id, kind));
        }
        if !view.is_tools_call() {
            let pending = awaited([view]);
            let response = self
                .forward(parts, Some(bytes.clone()), view.id, pending)
                .await;
            if view.method() == Some("initialize")
                && response.status().is_success()
                && view.params().declares_url_elicitation()
                && let Some(session) = session_id(response.headers())
            {
                self.inner.url_elicitation_sessions.insert(session, ());
            }
            return response;
        }
        let verdict = self.inner.keeper.check_call(
            bytes,
            view,
            &HttpContext {
                gateway: self,
                headers: &parts.headers,
            },
        );
        match verdict {
            Verdict::Forward => self.forward_call(parts, bytes, view).await,
            Verdict::Drop => empty(StatusCode::ACCEPTED),
            Verdict::Answer(answer) => json_ok(answer),
            Verdict::Fail(error) => error_response(&error),
            Verdict::Hold(hold) if hold.streams() => self.hold_with_progress(parts.clone(), hold),
            // Boxed, like batches in `post`: rare paths whose state would otherwise enlarge every
            // request's future (each request's future is allocated and moved whole).
            Verdict::Hold(hold) => Box::pin(self.hold_quietly(parts, hold)).await,
        }
    }

    /// Forwards a `tools/call` the gate lets through, reviewing its answer when the tool policy
    /// asks to.
    async fn forward_call(
        &self,
        parts: &http::request::Parts,
        bytes: &Bytes,
        view: &Message<'_>,
    ) -> Response<ProxyBody> {
        let review = self.inner.keeper.review_for(
            bytes,
            view,
            &HttpContext {
                gateway: self,
                headers: &parts.headers,
            },
        );
        let pending = awaited([view]);
        match review {
            None => {
                self.forward(parts, Some(bytes.clone()), view.id, pending)
                    .await
            }
            Some(call) => {
                let response = self
                    .forward(parts, Some(bytes.clone()), view.id, pending)
                    .await;
                review::reviewed(&self.inner.keeper, call, response).await
            }
        }
    }

    /// Forwards a held call once the gate let it through.
    async fn forward_held(&self, parts: &http::request::Parts, call: &Call) -> Response<ProxyBody> {
        match Message::parse(call.message()) {
            Ok(view) => self.forward_call(parts, call.message(), &view).await,
            // The bytes parsed when the call arrived; they cannot fail now.
            Err(kind) => error_response(&McpError::new(Some(call.id()), kind)),
        }
    }

    /// Wait mode without a stream to the client: the request stays open until the hold ends.
    async fn hold_quietly(
        &self,
        parts: &http::request::Parts,
        mut hold: Box<Hold>,
    ) -> Response<ProxyBody> {
        loop {
            match hold.next().await {
                // Nothing can carry these without a stream.
                HoldStep::Progress(_) | HoldStep::Notify(_) => {}
                HoldStep::Forward => return self.forward_held(parts, hold.call()).await,
                HoldStep::Answer(answer) => return json_ok(answer),
                HoldStep::Fail(error) => return error_response(&error),
            }
        }
    }

    async fn post_batch(
        &self,
        parts: &http::request::Parts,
        bytes: &Bytes,
        elements: &[(&RawValue, Message<'_>)],
    ) -> Outcome {
        let response = match self.inner.keeper.ready() {
            Err(kind) => error_response(&McpError::new(None, kind)),
            Ok(()) => {
                let verdict = self.inner.keeper.check_batch(
                    elements,
                    &HttpContext {
                        gateway: self,
                        headers: &parts.headers,
                    },
                );
                match verdict {
                    BatchVerdict::Forward => {
                        let pending = awaited(elements.iter().map(|(_, view)| view));
                        self.forward(parts, Some(bytes.clone()), None, pending)
                            .await
                    }
                    BatchVerdict::Answer(answers) => json_ok(answers),
                    BatchVerdict::Fail(error) => error_response(&error),
                }
            }
        };
        Outcome {
            response,
            kind: RequestKind::Batch,
            rpc_method: None,
        }
    }

    async fn forward_bodyless<B>(&self, request: &Request<B>) -> Response<ProxyBody> {
        if let Err(kind) = self.inner.keeper.ready() {
            return error_response(&McpError::new(None, kind));
        }
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = request.method().clone();
        parts.uri = request.uri().clone();
        parts.headers = request.headers().clone();
        self.forward(&parts, None, None, Vec::new()).await
    }

    /// Sends the request upstream and turns the answer (or the failure) into the client's
    /// response. `id` is the caller's JSON-RPC id, used in locally built error bodies;
    /// `pending` are the ids the answer must cover (each gets an error if an SSE answer breaks
    /// off first).
    async fn forward(
        &self,
        parts: &http::request::Parts,
        body: Option<Bytes>,
        id: Option<&RawValue>,
        pending: Vec<Box<RawValue>>,
    ) -> Response<ProxyBody> {
        match self.send_upstream(parts, body).await {
            Ok((upstream, url)) => self.relay(upstream, url, id, pending).await,
            Err(kind) => error_response(&McpError::new(id, kind)),
        }
    }

    /// Sends the request upstream; the response head and the upstream's URL as safe to log.
    async fn send_upstream(
        &self,
        parts: &http::request::Parts,
        body: Option<Bytes>,
    ) -> Result<(Response<Incoming>, String), ErrorKind> {
        let (request, url) = {
            let target = self.inner.upstream.borrow();
            let Some(target) = target.as_ref() else {
                return Err(ErrorKind::NotReady {
                    reason: NO_UPSTREAM.to_owned(),
                });
            };
            let headers = forward_request_headers(&parts.headers, target);
            let request = self
                .inner
                .client
                .request_with(parts.method.clone(), target, headers)
                .body(body.unwrap_or_default());
            (request, target.shown().to_owned())
        };
        let send = request.send();
        let limit = self.inner.config.upstream_timeouts.response;
        let Ok(result) = tokio::time::timeout(limit, send).await else {
            return Err(self.upstream_failed(ErrorKind::Timeout { url, source: None }));
        };
        match result {
            Ok(response) => Ok((response, url)),
            Err(error) => Err(self.upstream_failed(ErrorKind::from_transport(error, url))),
        }
    }

    fn upstream_failed(&self, kind: ErrorKind) -> ErrorKind {
        // The kind's Display names only the redacted URL, never the query.
        tracing::warn!(error = %kind, kind = kind.label(), "upstream request failed");
        self.inner.events.upstream_error(&kind);
        kind
    }

    /// The upstream's answer for the client: status, end-to-end headers and the body (an SSE
    /// stream event by event, anything else held until complete: see [`relay`]); a 401/403
    /// becomes a 502 the client will not try to authenticate against.
    async fn relay(
        &self,
        upstream: Response<Incoming>,
        url: String,
        id: Option<&RawValue>,
        pending: Vec<Box<RawValue>>,
    ) -> Response<ProxyBody> {
        let status = upstream.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            tracing::warn!(%status, "the upstream MCP server refused toolgate's credentials");
            self.inner.events.upstream_credentials_refused(status);
            return error_response(&McpError::new(id, ErrorKind::CredentialsRefused { status }));
        }
        let (upstream_parts, upstream_body) = upstream.into_parts();
        let body = upstream_body.map_err(BoxError::from).boxed_unsync();
        let idle = self.inner.config.upstream_timeouts.body_idle;
        let body = if content_type_is(&upstream_parts.headers, TEXT_EVENT_STREAM) {
            relay::sse(body, pending, url, idle).await
        } else {
            match relay::hold(body, idle, &url).await {
                Ok(body) => body,
                Err(kind) => return error_response(&McpError::new(id, self.upstream_failed(kind))),
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = end_to_end_response_headers(upstream_parts.headers);
        mark_unbuffered_if_sse(response.headers_mut());
        response
    }

    /// Wait mode with a progress token: answer at once with an SSE stream that carries progress
    /// notifications naming the links, then either the upstream's answer (once the gate opens)
    /// or the local answer (at the wait bound).
    fn hold_with_progress(
        &self,
        parts: http::request::Parts,
        hold: Box<Hold>,
    ) -> Response<ProxyBody> {
        let (sender, receiver) = mpsc::channel::<Bytes>(8);
        let gateway = self.clone();
        tokio::spawn(async move { gateway.run_held_call(parts, hold, sender).await });
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
        parts: http::request::Parts,
        mut hold: Box<Hold>,
        sender: mpsc::Sender<Bytes>,
    ) {
        let last = loop {
            let step = tokio::select! {
                step = hold.next() => step,
                // The client went away: nothing to forward, nothing to answer.
                () = sender.closed() => return,
            };
            match step {
                HoldStep::Progress(note) | HoldStep::Notify(note) => {
                    if sender.send(sse_message(&note)).await.is_err() {
                        return;
                    }
                }
                HoldStep::Answer(answer) => break answer,
                HoldStep::Fail(error) => break error.to_json(),
                HoldStep::Forward => {
                    let response = self.forward_held(&parts, hold.call()).await;
                    return splice(response, hold.call().id(), sender).await;
                }
            }
        };
        let _ = sender.send(sse_message(&last)).await;
    }
}

/// The [`ContextSource`] of a request on this face: its headers and the session it names.
struct HttpContext<'a> {
    gateway: &'a Gateway,
    headers: &'a HeaderMap,
}

impl ContextSource for HttpContext<'_> {
    fn context(&self, params: &Params<'_>) -> CallContext {
        self.gateway.call_context(self.headers, params)
    }
}

/// Streams `response` (the upstream's answer to a held call, or a local error) into the held
/// call's SSE stream: an event stream frame by frame, a JSON-RPC body as one event, anything
/// else as an error event naming the upstream status.
async fn splice(response: Response<ProxyBody>, id: &RawValue, sender: mpsc::Sender<Bytes>) {
    let status = response.status();
    let is_sse = content_type_is(response.headers(), TEXT_EVENT_STREAM);
    let mut body = response.into_body();
    if status.is_success() && is_sse {
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(chunk) = frame.into_data()
                            && sender.send(chunk).await.is_err()
                        {
                            return;
                        }
                    }
                    _ => return,
                },
                () = sender.closed() => return,
            }
        }
    }
    // A JSON answer has to be whole to be re-framed as one SSE event; bound what is held.
    let bytes = match collect_bounded(body, MAX_BUFFERED_ANSWER_BYTES).await {
        Ok(bytes) => bytes,
        Err(kind) => Bytes::from(McpError::new(Some(id), kind).to_json()),
    };
    let is_json_rpc = Message::parse(&bytes).is_ok_and(|view| view.is_response());
    let event = if is_json_rpc {
        bytes.to_vec()
    } else {
        McpError::new(
            Some(id),
            ErrorKind::Status {
                status,
                body: bytes,
            },
        )
        .to_json()
    };
    let _ = sender.send(sse_message(&event)).await;
}

/// The ids of the requests among `messages` (notifications and responses get no answer).
fn awaited<'a, 'b: 'a>(messages: impl IntoIterator<Item = &'a Message<'b>>) -> Vec<Box<RawValue>> {
    messages
        .into_iter()
        .filter(|view| view.method().is_some())
        .filter_map(|view| view.id.map(ToOwned::to_owned))
        .collect()
}

/// Collects a response body up to `limit` bytes.
async fn collect_bounded(mut body: ProxyBody, limit: usize) -> Result<Bytes, ErrorKind> {
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(ErrorKind::NoAnswer);
        };
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(ErrorKind::AnswerTooLarge { limit });
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// Reads a POST body up to `cap` bytes. A larger body is read on and discarded up to
/// [`DRAIN_LIMIT_FACTOR`] times the cap, so the 413 reaches a client that is still sending
/// (otherwise it gets a broken pipe and may drop its whole session); beyond that, or when the
/// declared length is already beyond it, the answer goes out at once and the connection closes.
async fn read_body<B>(body: B, cap: usize, declared: Option<u64>) -> Result<Bytes, ErrorKind>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let too_large = ErrorKind::TooLarge { limit: cap };
    let drain_limit = cap.saturating_mul(DRAIN_LIMIT_FACTOR);
    if declared.is_some_and(|length| length > drain_limit as u64) {
        return Err(too_large);
    }
    let mut body = std::pin::pin!(body);
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0_usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| ErrorKind::BodyUnreadable(error.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > drain_limit {
            return Err(too_large);
        }
        if seen <= cap {
            kept.extend_from_slice(&data);
        } else if !kept.is_empty() {
            kept = bytes::BytesMut::new();
        }
    }
    if seen > cap {
        return Err(too_large);
    }
    Ok(kept.freeze())
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

fn content_type_is(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with(media_type))
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

/// The HTTP answer for a local error: its status and its JSON-RPC body (`Retry-After` when
/// toolgate is not ready yet or at a limit).
pub(crate) fn error_response(error: &McpError) -> Response<ProxyBody> {
    let mut response = json_bytes(error.kind.http_status(), error.to_json());
    if matches!(
        error.kind,
        ErrorKind::NotReady { .. } | ErrorKind::Overloaded(_)
    ) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
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
