//! [`ComposioClient`]: the calls of Composio's "manually authenticating users" flow over one
//! pooled HTTP client, with the SDKs' retry rules, and the session's MCP endpoint.
//!
//! Idempotency note: every call, including `POST .../link`, is retried on the retryable
//! answers. A retried link request can leave one extra INITIATED account behind when the first
//! attempt did reach the server; that account is never shown to anyone and Composio expires it
//! (about 10 minutes), which is cheaper than failing the user's connect flow. Tool execution,
//! which the backend does not deduplicate, never goes through this client.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{ApiError, ComposioError, WaitError, scrub_secret};
use crate::retry;
use crate::types::{
    AccountStatus, AccountsPage, AccountsQuery, AuthConfig, ConnectedAccount, ConnectionRequest,
    CreateSessionRequest, DeleteAccountResponse, LinkRequest, Session, SessionToolkit,
    ToolkitsPage, ToolkitsQuery,
};

/// Composio's production API.
pub const DEFAULT_BASE_URL: &str = "https://backend.composio.dev";

/// The header that carries the project API key, on the API and on the session's MCP URL.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Upper bound on pages walked by [`ComposioClient::list_toolkits`]: the whole catalog is about
/// 1000 toolkits (20 pages of 50), so this only stops a server that never ends the listing.
const MAX_PAGES: usize = 1000;

/// How to reach Composio. The library never reads environment variables: the binary fills this.
#[derive(Clone)]
pub struct ClientConfig {
    /// API base URL (scheme, host, port and an optional path prefix); `/api/v3.1/...` is
    /// appended. Default `https://backend.composio.dev`. Checked by [`ComposioClient::new`].
    pub base_url: String,
    /// Project API key, sent as `x-api-key` to the API origin only.
    pub api_key: SecretString,
    /// TCP/TLS connect timeout; `None` disables it. Default 5 s.
    pub connect_timeout: Option<Duration>,
    /// Whole-request timeout (per attempt, including the body); `None` disables it. Default 60 s.
    pub request_timeout: Option<Duration>,
    /// Retries after the first attempt on 408/409/429/5xx and network errors. Default 2.
    pub max_retries: u32,
    /// Pause between polls in [`ComposioClient::wait_for_connection`]. Default 1 s, like the SDKs.
    pub connection_poll_interval: Duration,
    /// How long an unused pooled connection is kept open; `None` keeps it until the server
    /// closes it (and starts no idle-sweep timer, which paused-clock tests need). Default 90 s.
    pub pool_idle_timeout: Option<Duration>,
    /// Told about every HTTP attempt (retries included), for metrics. Default none.
    pub observer: Option<Arc<dyn CallObserver>>,
}

/// How one HTTP attempt against Composio ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// A 2xx answer.
    Ok,
    /// 429: the organization's rate limit.
    RateLimited,
    /// Any other 4xx.
    ClientError,
    /// A 5xx.
    ServerError,
    /// No answer: connect failure, reset, timeout.
    Network,
}

impl CallOutcome {
    /// A short label (`ok`, `rate_limited`, `client_error`, `server_error`, `network`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RateLimited => "rate_limited",
            Self::ClientError => "client_error",
            Self::ServerError => "server_error",
            Self::Network => "network",
        }
    }

    fn of(status: http::StatusCode) -> Self {
        if status.is_success() {
            Self::Ok
        } else if status == http::StatusCode::TOO_MANY_REQUESTS {
            Self::RateLimited
        } else if status.is_server_error() {
            Self::ServerError
        } else {
            Self::ClientError
        }
    }
}

/// Sees every Composio call the client makes (the binary counts them into metrics). Called
/// synchronously on the calling task: keep it cheap.
pub trait CallObserver: Send + Sync + 'static {
    /// One HTTP attempt of `operation` (e.g. `list toolkits`) ended with `outcome`.
    fn call_finished(&self, operation: &'static str, outcome: CallOutcome);
}

/// What the last answers said about the organization's rate limit (`X-RateLimit-*`,
/// `Retry-After`). Composio's limit is per organization and shared by every client of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitView {
    /// `X-RateLimit`: requests per window, when the server said.
    pub limit: Option<u64>,
    /// `X-RateLimit-Remaining` of the newest answer that carried it.
    pub remaining: Option<u64>,
    /// How long background work should hold off: until a `Retry-After` passes, or until the
    /// window turns over when the remaining budget is nearly used up. `None`: go ahead.
    pub pause: Option<Duration>,
}

/// Below this fraction of the window's limit left, background work waits for the next window.
const LOW_BUDGET_FRACTION: u64 = 10;
/// ... and never below this many requests left, whatever the limit.
const LOW_BUDGET_FLOOR: u64 = 5;
/// Window length assumed when the server names none (Composio's documented 60 s).
const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct RateState {
    limit: Option<u64>,
    remaining: Option<u64>,
    /// When background work may resume, from `Retry-After` or a nearly spent window.
    resume_at: Option<tokio::time::Instant>,
}

impl RateState {
    fn observe(&mut self, headers: &HeaderMap, status: http::StatusCode) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.trim().parse::<u64>().ok())
        };
        let now = tokio::time::Instant::now();
        if let Some(limit) = number("x-ratelimit") {
            self.limit = Some(limit);
        }
        if let Some(remaining) = number("x-ratelimit-remaining") {
            self.remaining = Some(remaining);
            let low = self
                .limit
                .map_or(LOW_BUDGET_FLOOR, |limit| limit / LOW_BUDGET_FRACTION)
                .max(LOW_BUDGET_FLOOR);
            if remaining <= low {
                let window = headers
                    .get("x-ratelimit-window-size")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|text| humantime_seconds(text.trim()))
                    .unwrap_or(DEFAULT_RATE_WINDOW);
                self.push_resume(now + window);
            }
        }
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            // Any Retry-After counts here (not only the ≤60 s the retry loop honours): it is
            // the server saying when the organization has budget again.
            let delay = headers
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.trim().parse::<u64>().ok())
                .map_or(DEFAULT_RATE_WINDOW, Duration::from_secs);
            self.push_resume(now + delay);
        }
    }

    fn push_resume(&mut self, at: tokio::time::Instant) {
        self.resume_at = Some(self.resume_at.map_or(at, |current| current.max(at)));
    }

    fn view(&self) -> RateLimitView {
        let now = tokio::time::Instant::now();
        RateLimitView {
            limit: self.limit,
            remaining: self.remaining,
            pause: self
                .resume_at
                .filter(|at| *at > now)
                .map(|at| at.saturating_duration_since(now)),
        }
    }
}

/// `60s`, `60` or `1m` as a duration (the window-size header's forms).
fn humantime_seconds(text: &str) -> Option<Duration> {
    if let Some(seconds) = text.strip_suffix('s') {
        return seconds.trim().parse::<u64>().ok().map(Duration::from_secs);
    }
    if let Some(minutes) = text.strip_suffix('m') {
        return minutes
            .trim()
            .parse::<u64>()
            .ok()
            .map(|minutes| Duration::from_secs(minutes.saturating_mul(60)));
    }
    text.parse::<u64>().ok().map(Duration::from_secs)
}

impl ClientConfig {
    /// The SDK defaults against production with this API key.
    pub fn new(api_key: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            connect_timeout: Some(Duration::from_secs(5)),
            request_timeout: Some(Duration::from_secs(60)),
            max_retries: 2,
            connection_poll_interval: Duration::from_secs(1),
            pool_idle_timeout: Some(Duration::from_secs(90)),
            observer: None,
        }
    }

    /// Same as [`ClientConfig::new`] with another base URL (e.g. the sandbox's).
    pub fn with_base_url(api_key: SecretString, base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..Self::new(api_key)
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"[REDACTED]")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("connection_poll_interval", &self.connection_poll_interval)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// The session's MCP server: URL plus the headers to send with every MCP request.
#[derive(Clone)]
pub struct McpEndpoint {
    /// `mcp.url` exactly as the API returned it.
    pub url: Url,
    /// `x-api-key` (marked sensitive). Attached only because the URL's origin is the API's.
    pub headers: HeaderMap,
}

impl fmt::Debug for McpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.keys().map(|name| name.as_str()).collect();
        f.debug_struct("McpEndpoint")
            .field("url", &self.url.as_str())
            .field("header_names", &names)
            .finish()
    }
}

/// Composio REST client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct ComposioClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    /// The key as a header value, built once and marked sensitive so `http`'s own Debug hides it.
    api_key_header: HeaderValue,
    max_retries: u32,
    connection_poll_interval: Duration,
    observer: Option<Arc<dyn CallObserver>>,
    rate: Mutex<RateState>,
}

impl fmt::Debug for ComposioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComposioClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("api_key", &"[REDACTED]")
            .field("max_retries", &self.inner.max_retries)
            .finish()
    }
}

// === impl ComposioClient ===

impl ComposioClient {
    /// Builds the client. Fails on an unusable configuration (non-http(s) base URL, empty key
    /// or a key that cannot be a header value); the error never contains the key.
    pub fn new(config: ClientConfig) -> Result<Self, ComposioError> {
        let base_url = Url::parse(config.base_url.trim()).map_err(|error| {
            ComposioError::InvalidConfig(format!(
                "base URL {:?} is not a URL: {error}",
                config.base_url
            ))
        })?;
        if !matches!(base_url.scheme(), "http" | "https") || !base_url.has_host() {
            return Err(ComposioError::InvalidConfig(format!(
                "base URL {base_url} must be an http(s) URL with a host"
            )));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(ComposioError::InvalidConfig(format!(
                "base URL {base_url} must not have a query or fragment"
            )));
        }
        let key = config.api_key.expose_secret();
        if key.trim().is_empty() {
            return Err(ComposioError::InvalidConfig(
                "the API key is empty".to_owned(),
            ));
        }
        let mut api_key_header = HeaderValue::from_str(key).map_err(|_| {
            ComposioError::InvalidConfig(
                "the API key contains characters not allowed in an HTTP header".to_owned(),
            )
        })?;
        api_key_header.set_sensitive(true);

        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("toolgate/", env!("CARGO_PKG_VERSION")))
            // The key must never follow a redirect to another host, and the API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(config.pool_idle_timeout);
        if let Some(timeout) = config.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(timeout) = config.request_timeout {
            builder = builder.timeout(timeout);
        }
        let http = builder.build().map_err(|error| {
            ComposioError::InvalidConfig(format!("cannot build the HTTP client: {error}"))
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                api_key: config.api_key,
                api_key_header,
                max_retries: config.max_retries,
                connection_poll_interval: config.connection_poll_interval,
                observer: config.observer,
                rate: Mutex::new(RateState::default()),
            }),
        })
    }

    /// The configured API base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// What the latest answers said about the organization's rate limit.
    pub fn rate_limit(&self) -> RateLimitView {
        self.lock_rate().view()
    }

    fn lock_rate(&self) -> std::sync::MutexGuard<'_, RateState> {
        // One small struct updated in one step: a poisoned lock still holds a usable state.
        self.inner
            .rate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn observe(&self, operation: &'static str, outcome: CallOutcome) {
        if let Some(observer) = &self.inner.observer {
            observer.call_finished(operation, outcome);
        }
    }

    /// `PATCH /api/v3.1/tool_router/session/{id}`: applies a changed configuration to an
    /// existing session (Composio bumps `config_version`).
    pub async fn patch_session(
        &self,
        session_id: &str,
        request: &CreateSessionRequest,
    ) -> Result<Session, ComposioError> {
        self.call(
            "patch session",
            Method::PATCH,
            &["tool_router", "session", session_id],
            &[],
            Some(request),
        )
        .await
    }

    /// `GET /api/v3.1/auth_configs/{id}`: which OAuth app an auth config is.
    pub async fn get_auth_config(&self, auth_config_id: &str) -> Result<AuthConfig, ComposioError> {
        self.call::<AuthConfig, ()>(
            "get auth config",
            Method::GET,
            &["auth_configs", auth_config_id],
            &[],
            None,
        )
        .await
    }

    /// Every connected account matching `query` (`GET /api/v3.1/connected_accounts`, all
    /// pages, newest first).
    pub async fn list_connected_accounts(
        &self,
        query: &AccountsQuery,
    ) -> Result<Vec<ConnectedAccount>, ComposioError> {
        let mut params: Vec<(&str, String)> = vec![
            ("limit", "100".to_owned()),
            ("order_by", "created_at".to_owned()),
            ("order_direction", "desc".to_owned()),
        ];
        for (name, values) in [
            ("user_ids", &query.user_ids),
            ("toolkit_slugs", &query.toolkit_slugs),
            ("statuses", &query.statuses),
            ("connected_account_ids", &query.connected_account_ids),
        ] {
            if !values.is_empty() {
                params.push((name, values.join(",")));
            }
        }
        let mut items = Vec::new();
        let mut seen_cursors = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let page: AccountsPage = self
                .call::<AccountsPage, ()>(
                    "list connected accounts",
                    Method::GET,
                    &["connected_accounts"],
                    &params,
                    None,
                )
                .await?;
            items.extend(page.items);
            match page.next_cursor.filter(|next| !next.is_empty()) {
                None => return Ok(items),
                Some(next) => {
                    if !seen_cursors.insert(next.clone()) {
                        return Err(ComposioError::Pagination {
                            operation: "list connected accounts",
                            reason: "the server repeated a cursor".to_owned(),
                        });
                    }
                    params.retain(|(name, _)| *name != "cursor");
                    params.push(("cursor", next));
                }
            }
        }
        Err(ComposioError::Pagination {
            operation: "list connected accounts",
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// `POST /api/v3.1/tool_router/session`: creates a session for a user.
    pub async fn create_session(
        &self,
        request: &CreateSessionRequest,
    ) -> Result<Session, ComposioError> {
        self.call(
            "create session",
            Method::POST,
            &["tool_router", "session"],
            &[],
            Some(request),
        )
        .await
    }

    /// `GET /api/v3.1/tool_router/session/{id}`: an existing session (reuse by id, like
    /// `composio.use(id)`).
    pub async fn get_session(&self, session_id: &str) -> Result<Session, ComposioError> {
        self.call::<Session, ()>(
            "get session",
            Method::GET,
            &["tool_router", "session", session_id],
            &[],
            None,
        )
        .await
    }

    /// One page of the session's toolkits; `cursor` is the previous page's `next_cursor`.
    pub async fn list_toolkits_page(
        &self,
        session_id: &str,
        query: &ToolkitsQuery,
        cursor: Option<&str>,
    ) -> Result<ToolkitsPage, ComposioError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = cursor {
            params.push(("cursor", cursor.to_owned()));
        }
        if !query.toolkits.is_empty() {
            // Array query parameters are comma-joined, as the SDKs send them.
            params.push(("toolkits", query.toolkits.join(",")));
        }
        if let Some(is_connected) = query.is_connected {
            params.push(("is_connected", is_connected.to_string()));
        }
        if let Some(search) = &query.search {
            params.push(("search", search.clone()));
        }
        self.call::<ToolkitsPage, ()>(
            "list toolkits",
            Method::GET,
            &["tool_router", "session", session_id, "toolkits"],
            &params,
            None,
        )
        .await
    }

    /// Every toolkit matching `query`, following `next_cursor` to the last page.
    pub async fn list_toolkits(
        &self,
        session_id: &str,
        query: &ToolkitsQuery,
    ) -> Result<Vec<SessionToolkit>, ComposioError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen_cursors = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let page = self
                .list_toolkits_page(session_id, query, cursor.as_deref())
                .await?;
            items.extend(page.items);
            match page.next_cursor.filter(|next| !next.is_empty()) {
                None => return Ok(items),
                Some(next) => {
                    if !seen_cursors.insert(next.clone()) {
                        return Err(ComposioError::Pagination {
                            operation: "list toolkits",
                            reason: "the server repeated a cursor".to_owned(),
                        });
                    }
                    cursor = Some(next);
                }
            }
        }
        Err(ComposioError::Pagination {
            operation: "list toolkits",
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// `POST /api/v3.1/tool_router/session/{id}/link`: starts connecting a toolkit and returns
    /// the Connect Link (the session's `authorize`).
    pub async fn authorize(
        &self,
        session_id: &str,
        request: &LinkRequest,
    ) -> Result<ConnectionRequest, ComposioError> {
        self.call(
            "create connect link",
            Method::POST,
            &["tool_router", "session", session_id, "link"],
            &[],
            Some(request),
        )
        .await
    }

    /// `GET /api/v3.1/connected_accounts/{id}`.
    pub async fn get_connected_account(
        &self,
        account_id: &str,
    ) -> Result<ConnectedAccount, ComposioError> {
        self.call::<ConnectedAccount, ()>(
            "get connected account",
            Method::GET,
            &["connected_accounts", account_id],
            &[],
            None,
        )
        .await
    }

    /// `DELETE /api/v3.1/connected_accounts/{id}`; with `revoke` Composio also revokes the
    /// upstream credentials in the background.
    pub async fn delete_connected_account(
        &self,
        account_id: &str,
        revoke: bool,
    ) -> Result<DeleteAccountResponse, ComposioError> {
        let params = [("revoke_on_delete", revoke.to_string())];
        self.call::<DeleteAccountResponse, ()>(
            "delete connected account",
            Method::DELETE,
            &["connected_accounts", account_id],
            &params,
            None,
        )
        .await
    }

    /// Polls the account every `connection_poll_interval` (like the SDKs) until it is ACTIVE.
    /// FAILED, EXPIRED and REVOKED end the wait with [`WaitError::Terminal`]; INACTIVE,
    /// INITIALIZING, INITIATED (and unknown statuses) keep waiting until `timeout`.
    pub async fn wait_for_connection(
        &self,
        account_id: &str,
        timeout: Duration,
    ) -> Result<ConnectedAccount, WaitError> {
        // A deadline checked between polls, not a timer around the whole loop: no timer is
        // pending while a request is in flight, so paused-clock tests stay exact.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let account = self.get_connected_account(account_id).await?;
            if account.status == AccountStatus::Active {
                return Ok(account);
            }
            if account.status.is_terminal_failure() {
                return Err(WaitError::Terminal {
                    account_id: account.id,
                    status: account.status,
                    status_reason: account.status_reason,
                });
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout {
                    account_id: account.id,
                    last_status: account.status,
                    waited: timeout,
                });
            }
            let pause = self.inner.connection_poll_interval.min(deadline - now);
            tokio::time::sleep(pause).await;
        }
    }

    /// The session's MCP URL with the headers the SDKs attach (`x-api-key`). The key is
    /// attached only when the MCP URL's origin equals the API's; otherwise this is an error,
    /// so the key never goes to a foreign host and no unauthenticated MCP calls are made.
    pub fn mcp_endpoint(&self, session: &Session) -> Result<McpEndpoint, ComposioError> {
        let url = Url::parse(&session.mcp.url).map_err(|error| {
            ComposioError::InvalidMcpUrl(format!("{}: {error}", session.mcp.url))
        })?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(ComposioError::InvalidMcpUrl(session.mcp.url.clone()));
        }
        let mcp_origin = url.origin();
        let api_origin = self.inner.base_url.origin();
        if mcp_origin != api_origin {
            return Err(ComposioError::McpOriginMismatch {
                mcp_origin: mcp_origin.ascii_serialization(),
                api_origin: api_origin.ascii_serialization(),
            });
        }
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY_HEADER, self.inner.api_key_header.clone());
        Ok(McpEndpoint { url, headers })
    }

    /// `base_url` + `/api/v3.1/` + the segments, each percent-encoded (ids cannot smuggle `/`).
    fn endpoint(&self, segments: &[&str]) -> Result<Url, ComposioError> {
        let mut url = self.inner.base_url.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                ComposioError::InvalidConfig("the base URL cannot have a path".to_owned())
            })?;
            path.pop_if_empty().push("api").push("v3.1");
            for segment in segments {
                path.push(segment);
            }
        }
        Ok(url)
    }

    /// One API call with the retry policy: retryable statuses and network errors are retried
    /// up to `max_retries` times, waiting what the server asked for or jittered backoff.
    async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        operation: &'static str,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ComposioError> {
        let url = self.endpoint(segments)?;
        let body = match body {
            Some(body) => Some(
                serde_json::to_vec(body)
                    .map_err(|source| ComposioError::Decode { operation, source })?,
            ),
            None => None,
        };
        let mut retry_index: u32 = 0;
        loop {
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .header(API_KEY_HEADER, self.inner.api_key_header.clone())
                .header(ACCEPT, "application/json");
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let can_retry = retry_index < self.inner.max_retries;
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    self.lock_rate().observe(&headers, status);
                    match response.bytes().await {
                        Ok(bytes) => Ok((status, headers, bytes)),
                        Err(source) => Err(source),
                    }
                }
                Err(source) => Err(source),
            };
            self.observe(
                operation,
                match &outcome {
                    Ok((status, _, _)) => CallOutcome::of(*status),
                    Err(_) => CallOutcome::Network,
                },
            );
            match outcome {
                Err(source) => {
                    if can_retry {
                        tracing::debug!(operation, retry_index, error = %source, "Composio call failed on the network; retrying");
                        tokio::time::sleep(retry::retry_delay(None, retry_index)).await;
                        retry_index += 1;
                        continue;
                    }
                    return Err(ComposioError::Network { operation, source });
                }
                Ok((status, _, bytes)) if status.is_success() => {
                    return serde_json::from_slice(&bytes)
                        .map_err(|source| ComposioError::Decode { operation, source });
                }
                Ok((status, headers, bytes)) => {
                    if can_retry && retry::should_retry(status, &headers) {
                        let delay = retry::retry_delay(Some(&headers), retry_index);
                        tracing::debug!(operation, retry_index, %status, ?delay, "Composio call failed; retrying");
                        tokio::time::sleep(delay).await;
                        retry_index += 1;
                        continue;
                    }
                    let retry_after =
                        retry::server_requested_delay(&headers, std::time::SystemTime::now());
                    let error = ApiError::from_response(
                        operation,
                        status,
                        &headers,
                        &bytes,
                        self.inner.api_key.expose_secret(),
                        retry_after,
                    );
                    return Err(error.into());
                }
            }
        }
    }

    /// Replaces the key in text that will be shown (used by the tracker for error summaries).
    pub(crate) fn scrub(&self, text: String) -> String {
        scrub_secret(text, self.inner.api_key.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk_test_very_secret_key";

    fn client(base: &str) -> ComposioClient {
        let config = ClientConfig::with_base_url(SecretString::from(KEY), base);
        match ComposioClient::new(config) {
            Ok(client) => client,
            Err(error) => panic!("client: {error}"),
        }
    }

    fn session(mcp_url: &str) -> Session {
        Session {
            session_id: "trs_1".to_owned(),
            mcp: crate::types::SessionMcp {
                transport: "http".to_owned(),
                url: mcp_url.to_owned(),
            },
            tool_router_tools: Vec::new(),
            config: serde_json::Value::Null,
            config_version: None,
        }
    }

    #[test]
    fn endpoint_paths_keep_a_prefix_and_encode_ids() {
        let plain = client("https://backend.composio.dev");
        assert_eq!(
            plain
                .endpoint(&["tool_router", "session"])
                .map(String::from)
                .ok(),
            Some("https://backend.composio.dev/api/v3.1/tool_router/session".to_owned())
        );
        let prefixed = client("http://127.0.0.1:9/prefix/");
        assert_eq!(
            prefixed
                .endpoint(&["connected_accounts", "ca_1/../x?y"])
                .map(String::from)
                .ok(),
            Some(
                "http://127.0.0.1:9/prefix/api/v3.1/connected_accounts/ca_1%2F..%2Fx%3Fy"
                    .to_owned()
            )
        );
    }

    #[test]
    fn mcp_endpoint_attaches_the_key_only_on_the_same_origin() {
        let client = client("https://backend.composio.dev");
        let endpoint = client.mcp_endpoint(&session(
            "https://backend.composio.dev:443/tool_router/trs_1/mcp",
        ));
        let endpoint = match endpoint {
            Ok(endpoint) => endpoint,
            Err(error) => panic!("same origin refused: {error}"),
        };
        assert_eq!(
            endpoint
                .headers
                .get(API_KEY_HEADER)
                .map(HeaderValue::as_bytes),
            Some(KEY.as_bytes())
        );
        assert!(
            endpoint
                .headers
                .get(API_KEY_HEADER)
                .is_some_and(HeaderValue::is_sensitive)
        );
        let debug = format!("{endpoint:?}");
        assert!(!debug.contains(KEY), "{debug}");

        for foreign in [
            "https://evil.example/tool_router/trs_1/mcp",
            "http://backend.composio.dev/tool_router/trs_1/mcp",
            "https://backend.composio.dev:8443/tool_router/trs_1/mcp",
            "https://app.composio.dev/tool_router/v3/trs_1/mcp",
        ] {
            match client.mcp_endpoint(&session(foreign)) {
                Err(error @ ComposioError::McpOriginMismatch { .. }) => {
                    assert_eq!(error.fault(), crate::Fault::Ours);
                    assert!(!error.to_string().contains(KEY));
                }
                other => panic!("{foreign}: expected an origin error, got {other:?}"),
            }
        }
        assert!(matches!(
            client.mcp_endpoint(&session("not a url")),
            Err(ComposioError::InvalidMcpUrl(_))
        ));
        assert!(matches!(
            client.mcp_endpoint(&session("ftp://backend.composio.dev/x")),
            Err(ComposioError::InvalidMcpUrl(_))
        ));
    }

    #[test]
    fn debug_output_never_contains_the_key() {
        let config = ClientConfig::new(SecretString::from(KEY));
        let client = client("https://backend.composio.dev");
        let text = format!("{config:?} {client:?} {config:#?} {client:#?}");
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("REDACTED"));
    }

    #[test]
    fn bad_configurations_are_clear_errors_without_the_key() {
        let cases = [
            ClientConfig::with_base_url(SecretString::from(KEY), "ftp://host"),
            ClientConfig::with_base_url(SecretString::from(KEY), "http://host/?q=1"),
            ClientConfig::with_base_url(SecretString::from(""), "http://host"),
            ClientConfig::with_base_url(SecretString::from("sk_bad\nkey"), "http://host"),
        ];
        for case in cases {
            let error = match ComposioClient::new(case) {
                Ok(client) => panic!("accepted: {client:?}"),
                Err(error) => error,
            };
            assert!(
                matches!(error, ComposioError::InvalidConfig(_)),
                "{error:?}"
            );
            assert!(!error.to_string().contains("sk_bad"), "{error}");
        }
        assert!(
            ComposioClient::new(ClientConfig::with_base_url(
                SecretString::from(KEY),
                "not a url"
            ))
            .is_err()
        );
    }
}
