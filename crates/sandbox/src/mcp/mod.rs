//! The sandbox's MCP upstream: one rmcp Streamable HTTP endpoint per tool-router session, at
//! `/tool_router/{trs_id}/mcp`, serving the meta tools a real session exposes.
//!
//! The REST side (`crate::api`) owns authentication and routing; it hands requests for a
//! session's MCP URL to [`McpEndpoint::handle`] together with a [`McpWorld`], through which the
//! tools read live state (is this toolkit connected for this user right now?).
//!
//! # How the REST side wires this
//! - Build one `McpEndpoint::new(world, shutdown_token)` at startup (`world`: your store as
//!   `Arc<dyn McpWorld>`; `shutdown_token`: cancelled when the sandbox stops, which ends every
//!   open MCP stream). If the sandbox is reached by a name other than `localhost`/`127.0.0.1`/
//!   `::1` (e.g. `public_base_url` = `http://sandbox:9900`), pass that host (or `host:port`)
//!   through [`McpEndpoint::with_allowed_hosts`], else rmcp's DNS-rebinding check answers 403.
//! - For every method (POST, GET, DELETE) on `/tool_router/{trs_id}/mcp`, after your 404
//!   (unknown session) and 401 (x-api-key) checks, return
//!   `endpoint.handle(trs_id, request).await` as is (its status codes — 202, 400, 404 for an
//!   unknown `Mcp-Session-Id`, 405, 406, 413, 415 — are MCP's, not Composio's envelope).
//! - On `DELETE /tool_router/session/{id}` call `endpoint.close_session(id)` so open MCP
//!   sessions of that trs session end at once (stale ones are also pruned lazily).
//! - `McpWorld::toolkits` must list the catalog; the demo app tools are offered only for
//!   toolkits present there: gmail, github, slack, notion, linear, and `hackernews` (the
//!   no-auth demo tool `HACKERNEWS_GET_FRONTPAGE`; name your no-auth toolkit `hackernews` so
//!   it has a tool). `is_connected` must return true for no-auth toolkits.
//! - `SessionView::tool_router_tools` is the tool list as is: names the sandbox cannot
//!   emulate (e.g. `COMPOSIO_REMOTE_WORKBENCH`) are listed and answer a clear tool error.
//!
//! # Design
//! One `StreamableHttpService` per trs session, created on first use and kept in a map: each
//! trs session gets its own rmcp session manager, so an `Mcp-Session-Id` minted under one
//! session's URL is unknown (404) under another's, and dropping a trs session terminates
//! exactly its MCP sessions (its child cancellation token is cancelled). Legacy session mode
//! is on (Mcp-Session-Id, GET stream, resumption via Last-Event-ID from rmcp's in-memory
//! cache); 2026-07-28 clients are served statelessly by rmcp automatically.

mod catalog;
mod tools;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    convert::Infallible,
    fmt::Display,
    sync::{Arc, Mutex, PoisonError},
};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use self::tools::SessionTools;

/// The body type every sandbox response uses.
pub(crate) type ResponseBody = BoxBody<Bytes, Infallible>;

/// What the MCP tools may ask of the sandbox's state. Implemented by the REST side's store.
pub(crate) trait McpWorld: Send + Sync + 'static {
    /// The session's view, or `None` when it does not exist (or was deleted).
    fn session(&self, session_id: &str) -> Option<SessionView>;
    /// Whether `toolkit` is connected for this session right now: the account the session
    /// sees for it (its pinned account, else the user's newest ACTIVE one, within the
    /// session's project) is ACTIVE. No-auth toolkits count as connected.
    fn is_connected(&self, session_id: &str, toolkit: &str) -> bool;
    /// Mints a Connect Link for `toolkit` in this session, as `POST .../link` would, and
    /// returns its `redirect_url`; `Err` carries the message the real API would give.
    fn connect_link(&self, session_id: &str, toolkit: &str) -> Result<String, String>;
    /// The toolkit catalog: `(slug, name)` of every toolkit the sandbox knows.
    fn toolkits(&self) -> Vec<(String, String)>;
}

/// What the MCP side needs to know about one session.
#[derive(Clone, Debug)]
pub(crate) struct SessionView {
    /// The session's user.
    pub(crate) user_id: String,
    /// The meta tools the session exposes (`tool_router_tools` in the REST response).
    pub(crate) tool_router_tools: Vec<String>,
    /// The toolkits this session may use (`None` means every toolkit).
    pub(crate) enabled_toolkits: Option<Vec<String>>,
}

/// The rmcp service of one trs session.
type SessionService = StreamableHttpService<SessionTools, LocalSessionManager>;

/// A running per-session service and the token that ends its streams.
struct ServedSession {
    service: SessionService,
    /// Child of the endpoint's shutdown token; cancelled when the trs session goes away.
    cancel: CancellationToken,
}

/// Serves the MCP URL of every tool-router session (see the module docs for the design).
pub(crate) struct McpEndpoint {
    world: Arc<dyn McpWorld>,
    shutdown: CancellationToken,
    allowed_hosts: Vec<String>,
    services: Mutex<HashMap<String, ServedSession>>,
}

// === impl McpEndpoint ===

impl McpEndpoint {
    /// An endpoint reading state from `world`; cancelling `shutdown` ends every MCP session
    /// and stream. Accepts the loopback `Host` names only until
    /// [`with_allowed_hosts`](Self::with_allowed_hosts) adds more.
    pub(crate) fn new(world: Arc<dyn McpWorld>, shutdown: CancellationToken) -> Self {
        Self {
            world,
            shutdown,
            allowed_hosts: StreamableHttpServerConfig::default().allowed_hosts,
            services: Mutex::new(HashMap::new()),
        }
    }

    /// Also accept requests whose `Host` is one of `hosts` (a bare host matches any port,
    /// `host:port` only that port), e.g. the host of a configured public base URL.
    pub(crate) fn with_allowed_hosts(
        mut self,
        hosts: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.allowed_hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Answers one HTTP request (POST, GET or DELETE) to the MCP URL of `session_id`. The
    /// caller has already checked that the session exists and the `x-api-key` matches.
    pub(crate) async fn handle<B>(
        &self,
        session_id: &str,
        request: http::Request<B>,
    ) -> http::Response<ResponseBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send + 'static,
        B::Error: Display,
    {
        let mut request = request;
        if request.method() == http::Method::GET {
            resume_after_last_event(request.headers_mut());
        }
        let service = self.service_for(session_id);
        service.handle(request).await
    }

    /// Ends every MCP session and open stream of `session_id` (call it when the tool-router
    /// session is deleted). Harmless for an unknown id.
    pub(crate) fn close_session(&self, session_id: &str) {
        let removed = self.lock_services().remove(session_id);
        if let Some(served) = removed {
            served.cancel.cancel();
        }
    }

    /// The service of `session_id`, created on first use. Creating one also drops the
    /// services of sessions that no longer exist, so a deleted session's streams end even if
    /// nobody called [`close_session`](Self::close_session).
    fn service_for(&self, session_id: &str) -> SessionService {
        if let Some(served) = self.lock_services().get(session_id) {
            return served.service.clone();
        }
        // Ask the world without holding our lock: its store may call `close_session` while
        // holding its own lock, and taking the two locks in both orders could deadlock.
        let others: Vec<String> = self.lock_services().keys().cloned().collect();
        let gone: Vec<String> = others
            .into_iter()
            .filter(|id| self.world.session(id).is_none())
            .collect();
        let mut services = self.lock_services();
        for id in gone {
            if let Some(served) = services.remove(&id) {
                served.cancel.cancel();
            }
        }
        services
            .entry(session_id.to_owned())
            .or_insert_with(|| self.build_service(session_id))
            .service
            .clone()
    }

    fn build_service(&self, session_id: &str) -> ServedSession {
        let cancel = self.shutdown.child_token();
        let config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(self.allowed_hosts.clone())
            .with_legacy_session_mode(true)
            .with_cancellation_token(cancel.clone());
        let world = Arc::clone(&self.world);
        let session_id: Arc<str> = Arc::from(session_id);
        let service = StreamableHttpService::new(
            move || {
                Ok(SessionTools::new(
                    Arc::clone(&world),
                    Arc::clone(&session_id),
                ))
            },
            Arc::new(LocalSessionManager::default()),
            config,
        );
        ServedSession { service, cancel }
    }

    fn lock_services(&self) -> std::sync::MutexGuard<'_, HashMap<String, ServedSession>> {
        // The map stays consistent even if a holder panicked (every update is one call).
        self.services.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for McpEndpoint {
    fn drop(&mut self) {
        for served in self.lock_services().values() {
            served.cancel.cancel();
        }
    }
}

/// Makes rmcp resume *after* the event named by `Last-Event-ID`, as the MCP spec says
/// ("replay messages that would have been sent after the last event ID"). rmcp 3.11's local
/// session manager replays from that event inclusive, so without this every resumed stream
/// would start with a duplicate of the last event the client already has. Its event ids are
/// `index` (the GET stream) or `index/request` (a POST's stream); we bump the index by one.
/// Ids of any other shape are left alone for rmcp to judge.
fn resume_after_last_event(headers: &mut http::HeaderMap) {
    let Some(value) = headers.get(LAST_EVENT_ID).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let (index, stream) = match value.split_once('/') {
        Some((index, request)) => (index, Some(request)),
        None => (value, None),
    };
    let Some(next) = index.parse::<usize>().ok().and_then(|i| i.checked_add(1)) else {
        return;
    };
    if stream.is_some_and(|request| request.parse::<u64>().is_err()) {
        return;
    }
    let bumped = match stream {
        Some(request) => format!("{next}/{request}"),
        None => next.to_string(),
    };
    if let Ok(bumped) = http::HeaderValue::from_str(&bumped) {
        headers.insert(LAST_EVENT_ID, bumped);
    }
}

/// The SSE resumption header (lower-case, as `http` stores names).
const LAST_EVENT_ID: http::HeaderName = http::HeaderName::from_static("last-event-id");
