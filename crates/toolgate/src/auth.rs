//! Many users through one gateway: the `auth`, `users` and `session_key` settings, building
//! the [`Authenticator`] (reading the tokens or JWKS file — the libraries never read files),
//! re-reading the tokens file on SIGHUP or when it changes, and the [`Router`] over the
//! per-user pool, where each user gets the same wiring a single-user gateway has (a Composio
//! session, its tracker and gate, a gateway) on their first request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use http::HeaderName;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use toolgate_proxy::gateway::Gateway;
use toolgate_proxy::identity::jwt::{JwksSource, JwtSettings, JwtVerifier, parse_jwks};
use toolgate_proxy::identity::tokens::TokenTable;
use toolgate_proxy::identity::{AuthMode, Authenticator, TokenStore, UserId};
use toolgate_proxy::router::{Route, RouteError, Router};
use toolgate_proxy::seal::SessionKeys;
use toolgate_proxy::upstream::UpstreamTarget;
use toolgate_session::{PoolConfig, PoolEntry, UserPool};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::runtime::{self, TrackerSlot};
use crate::web::signed::{LinkSigner, Purpose, unix_now};

/// Sessions from other replicas kept open per user.
const MAX_PINNED_ROUTES: usize = 4;

/// How often the active-users gauge is refreshed (evictions happen in the background).
const GAUGE_REFRESH: Duration = Duration::from_secs(5);

/// How long a user's signed callback URL stays valid, in seconds (longer than any Connect
/// Link lives; a user's wiring is recreated, with a fresh one, after idling out).
const CALLBACK_LINK_TTL: u64 = 7 * 24 * 3600;

/// How long the signed link to a user's connections page in a blocked answer stays valid, in
/// seconds (the answer may be read a while after the call).
const PAGE_LINK_TTL: u64 = 24 * 3600;

/// How often the tokens file is checked for a change (besides SIGHUP).
const TOKENS_POLL: Duration = Duration::from_secs(2);

/// `[auth]`: how a request's user is determined.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthSection {
    /// `single` (every request is `user_id`), `tokens`, `jwt` or `header`.
    pub(crate) mode: AuthMode,
    /// `tokens` mode: the file of `USER_ID TOKEN` lines.
    pub(crate) tokens_file: Option<PathBuf>,
    /// `header` mode settings.
    pub(crate) header: HeaderSection,
    /// `jwt` mode settings.
    pub(crate) jwt: JwtSection,
}

/// `[auth.header]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HeaderSection {
    /// The request header naming the user (accepted only with the shared `token`).
    pub(crate) name: String,
}

impl Default for HeaderSection {
    fn default() -> Self {
        Self {
            name: "x-toolgate-user".to_owned(),
        }
    }
}

/// `[auth.jwt]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct JwtSection {
    /// URL of the authorization server's JWKS.
    pub(crate) jwks_url: Option<String>,
    /// A JWKS file instead of a URL.
    pub(crate) jwks_file: Option<PathBuf>,
    /// The required `iss`; default: the only authorization server.
    pub(crate) issuer: Option<String>,
    /// This server's resource URL (the required `aud`); default: the MCP endpoint on the
    /// listen address.
    pub(crate) resource: Option<String>,
    /// The claim naming the user.
    pub(crate) user_claim: String,
    /// Authorization servers named in the protected-resource metadata.
    #[serde(deserialize_with = "crate::config::list_or_comma_string")]
    pub(crate) authorization_servers: Vec<String>,
}

impl Default for JwtSection {
    fn default() -> Self {
        Self {
            jwks_url: None,
            jwks_file: None,
            issuer: None,
            resource: None,
            user_claim: "sub".to_owned(),
            authorization_servers: Vec::new(),
        }
    }
}

/// `[users]`: bounds of the per-user pool.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct UsersSection {
    /// The most users with a live Composio session and tracker in this process.
    #[serde(deserialize_with = "number_or_string")]
    pub(crate) max_active: usize,
    /// How long an unused user's session and tracker are kept.
    #[serde(with = "humantime_serde")]
    pub(crate) idle_timeout: Duration,
}

impl Default for UsersSection {
    fn default() -> Self {
        let pool = PoolConfig::default();
        Self {
            max_active: pool.max_active,
            idle_timeout: pool.idle_timeout,
        }
    }
}

/// Environment values arrive as strings.
fn number_or_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(usize),
        Text(String),
    }
    match NumberOrString::deserialize(deserializer)? {
        NumberOrString::Number(number) => Ok(number),
        NumberOrString::Text(text) => text.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// True when this configuration runs the multi-user front (another mode than `single`).
pub(crate) fn multi_user(config: &Config) -> bool {
    config.auth.mode.is_multi_user()
}

/// Single-user mode with `session_key` (replicas): the front that seals session ids around
/// the one gateway. `None` without a session key (session ids pass through).
pub(crate) fn single_front(
    config: &Config,
    gateway: Gateway,
    wiring: &runtime::Wiring,
) -> anyhow::Result<Option<Arc<toolgate_proxy::router::MultiUser>>> {
    let Some(keys) = session_keys(config)? else {
        return Ok(None);
    };
    let authenticator = Authenticator::Single {
        user: UserId::new(config.user_id.as_deref().unwrap_or("user")).context("user_id")?,
        token: None,
    };
    // Routes pinned to another replica's session share the gateway's connection pool.
    let http = gateway.client().clone();
    let router = SingleRouter(UserRoutes::new(config, gateway, wiring, http));
    Ok(Some(Arc::new(toolgate_proxy::router::MultiUser::new(
        Arc::new(authenticator),
        Arc::new(router),
        Some(keys),
    ))))
}

/// Checks the multi-user settings; `Err((key, message))`.
pub(crate) fn validate(config: &Config) -> Result<(), (&'static str, String)> {
    if !config.session_key.is_empty() {
        SessionKeys::new(&config.session_key).map_err(|e| ("session_key", e.to_string()))?;
    }
    if config.users.max_active == 0 {
        return Err(("users.max_active", "must be at least 1".to_owned()));
    }
    match config.auth.mode {
        AuthMode::Single => {}
        AuthMode::Tokens if config.auth.tokens_file.is_none() => {
            return Err((
                "auth.tokens_file",
                "required when auth.mode = \"tokens\"".to_owned(),
            ));
        }
        AuthMode::Tokens => {}
        AuthMode::Header => {
            HeaderName::from_bytes(config.auth.header.name.as_bytes())
                .map_err(|_| ("auth.header.name", "not a valid header name".to_owned()))?;
            if config.token.is_none() {
                return Err(("token", "required when auth.mode = \"header\"".to_owned()));
            }
        }
        AuthMode::Jwt => validate_jwt(&config.auth.jwt)?,
    }
    if config.auth.mode.is_multi_user() && config.upstream.url.is_some() {
        return Err((
            "auth.mode",
            "multi-user modes need Composio mode (no upstream)".to_owned(),
        ));
    }
    Ok(())
}

fn validate_jwt(jwt: &JwtSection) -> Result<(), (&'static str, String)> {
    match (&jwt.jwks_url, &jwt.jwks_file) {
        (None, None) => {
            return Err((
                "auth.jwt.jwks_url",
                "jwt mode needs jwks_url or jwks_file".to_owned(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err((
                "auth.jwt.jwks_file",
                "give jwks_url or jwks_file, not both".to_owned(),
            ));
        }
        (Some(url), None) => {
            url::Url::parse(url).map_err(|e| ("auth.jwt.jwks_url", e.to_string()))?;
        }
        (None, Some(_)) => {}
    }
    for server in &jwt.authorization_servers {
        url::Url::parse(server).map_err(|e| ("auth.jwt.authorization_servers", e.to_string()))?;
    }
    if jwt.issuer.is_none() && jwt.authorization_servers.len() != 1 {
        return Err((
            "auth.jwt.issuer",
            "required unless exactly one authorization server is named".to_owned(),
        ));
    }
    if let Some(resource) = &jwt.resource {
        url::Url::parse(resource).map_err(|e| ("auth.jwt.resource", e.to_string()))?;
    }
    Ok(())
}

/// The session keys, when `session_key` is set.
pub(crate) fn session_keys(config: &Config) -> anyhow::Result<Option<SessionKeys>> {
    if config.session_key.is_empty() {
        return Ok(None);
    }
    Ok(Some(SessionKeys::new(&config.session_key)?))
}

/// The authenticator of `config.auth.mode`, its files read now. In tokens mode the returned
/// store is the one [`watch_tokens_file`] keeps current.
pub(crate) async fn authenticator(config: &Config) -> anyhow::Result<Authenticator> {
    Ok(match config.auth.mode {
        AuthMode::Single => Authenticator::Single {
            user: UserId::new(config.user_id.as_deref().unwrap_or_default()).context("user_id")?,
            token: config.token.clone(),
        },
        AuthMode::Tokens => {
            let path = config
                .auth
                .tokens_file
                .as_deref()
                .context("auth.tokens_file")?;
            Authenticator::Tokens(TokenStore::new(read_tokens(path)?))
        }
        AuthMode::Header => Authenticator::Header {
            name: HeaderName::from_bytes(config.auth.header.name.as_bytes())?,
            token: config.token.clone().context("token")?,
        },
        AuthMode::Jwt => Authenticator::Jwt(Arc::new(jwt_verifier(config).await?)),
    })
}

async fn jwt_verifier(config: &Config) -> anyhow::Result<JwtVerifier> {
    let jwt = &config.auth.jwt;
    let jwks = match (&jwt.jwks_url, &jwt.jwks_file) {
        (Some(url), _) => JwksSource::Url(url::Url::parse(url)?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("auth.jwt.jwks_file: cannot read {}", path.display()))?;
            JwksSource::Static(parse_jwks(&text).context("auth.jwt.jwks_file")?)
        }
        (None, None) => anyhow::bail!("auth.jwt.jwks_url: not set"),
    };
    let resource = match &jwt.resource {
        Some(resource) => url::Url::parse(resource)?,
        None => url::Url::parse(&format!("http://{}{}", config.listen, config.path))?,
    };
    let issuer = match (&jwt.issuer, jwt.authorization_servers.first()) {
        (Some(issuer), _) => issuer.clone(),
        (None, Some(server)) => server.clone(),
        (None, None) => anyhow::bail!("auth.jwt.issuer: not set"),
    };
    let mut settings = JwtSettings::new(resource, issuer, jwks);
    settings.user_claim = jwt.user_claim.clone();
    // Verbatim: issuer identifiers are compared as strings (validated as URLs above).
    settings.authorization_servers = jwt.authorization_servers.clone();
    let client = toolgate_proxy::identity::jwt::jwks_client(Duration::from_secs(10))?;
    let verifier = JwtVerifier::new(settings, client).context("auth.jwt")?;
    if let Err(error) = verifier.refresh().await {
        // Not fatal: readiness stays false and requests get 503 until the keys load.
        tracing::warn!(%error, "JWKS not loaded yet");
    }
    Ok(verifier)
}

fn read_tokens(path: &Path) -> anyhow::Result<TokenTable> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("auth.tokens_file: cannot read {}", path.display()))?;
    TokenTable::parse(&text).with_context(|| format!("auth.tokens_file {}", path.display()))
}

/// Re-reads the tokens file on SIGHUP and whenever its contents change, until `shutdown`. A
/// file that does not parse is reported and the previous table kept: a typo never locks
/// everyone out.
pub(crate) async fn watch_tokens_file(
    path: PathBuf,
    store: TokenStore,
    shutdown: CancellationToken,
) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; the tokens file is still polled");
            None
        }
    };
    let mut last = std::fs::read(&path).ok();
    let mut poll = tokio::time::interval(TOKENS_POLL);
    loop {
        let forced = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = poll.tick() => false,
            Some(()) = async { match hangups.as_mut() { Some(h) => h.recv().await, None => None } } => true,
        };
        let current = std::fs::read(&path).ok();
        if !forced && current == last {
            continue;
        }
        last = current;
        match read_tokens(&path) {
            Ok(table) => {
                tracing::info!(users = table.len(), "tokens file reloaded");
                store.replace(table);
            }
            Err(error) => tracing::error!("{error:#}; keeping the previous tokens"),
        }
    }
}

/// One user's routes on this replica: their own session's gateway, and gateways to their
/// sessions made by other replicas.
pub(crate) struct UserRoutes {
    proxy: toolgate_proxy::config::ProxyConfig,
    /// The upstream HTTP client every gateway of this process shares.
    http: toolgate_proxy::upstream::UpstreamClient,
    gateway: Gateway,
    upstream_rx: watch::Receiver<Option<UpstreamTarget>>,
    gate_rx: watch::Receiver<toolgate_proxy::gate::GateState>,
    events: Arc<runtime::GatewayEvents>,
    /// Route key → gateway, oldest first, at most [`MAX_PINNED_ROUTES`].
    pinned: std::sync::Mutex<Vec<(String, Gateway)>>,
}

impl UserRoutes {
    /// Routes over one user's wiring.
    pub(crate) fn new(
        config: &Config,
        gateway: Gateway,
        wiring: &runtime::Wiring,
        http: toolgate_proxy::upstream::UpstreamClient,
    ) -> Self {
        Self {
            proxy: config.proxy_config(),
            http,
            gateway,
            upstream_rx: wiring.upstream_rx.clone(),
            gate_rx: wiring.gate_rx.clone(),
            events: wiring.events.clone(),
            pinned: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The route for a request, `pinned` to a sealed session's route key when it has one.
    ///
    /// The route key is the session's MCP URL (no credential in it; the API key travels in a
    /// header), so any replica can reach a session another one made. Empty while this replica
    /// is still creating the user's session.
    fn route(&self, pinned: Option<&str>) -> Route {
        let current = self.upstream_rx.borrow().clone();
        let Some(current) = current else {
            return Route {
                gateway: self.gateway.clone(),
                route_key: String::new(),
            };
        };
        if let Some(pinned) = pinned.filter(|key| *key != current.url.as_str())
            && let Some(gateway) = self.pinned_gateway(&current, pinned)
        {
            return Route {
                gateway,
                route_key: pinned.to_owned(),
            };
        }
        Route {
            gateway: self.gateway.clone(),
            route_key: current.url.as_str().to_owned(),
        }
    }

    /// A gateway to `pinned`: the same Composio origin and credentials as the user's session
    /// here, another session's MCP URL. `None` off that origin (never send the key elsewhere).
    fn pinned_gateway(&self, current: &UpstreamTarget, pinned: &str) -> Option<Gateway> {
        let url = url::Url::parse(pinned).ok()?;
        if url.origin() != current.url.origin() {
            return None;
        }
        let mut cache = self
            .pinned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, gateway)) = cache.iter().find(|(key, _)| key == pinned) {
            return Some(gateway.clone());
        }
        let target = UpstreamTarget::new(url, current.headers.clone());
        let (_fixed, upstream_rx) = watch::channel(Some(target));
        let keeper = toolgate_proxy::mcp::gatekeeper::Gatekeeper::new(
            self.gate_rx.clone(),
            upstream_rx,
            self.proxy.wait,
            Arc::new(toolgate_proxy::mcp::policy::AllPending),
            self.events.clone(),
        );
        let gateway = Gateway::with_client(self.proxy.clone(), keeper, self.http.clone()).ok()?;
        if cache.len() >= MAX_PINNED_ROUTES {
            cache.remove(0);
        }
        cache.push((pinned.to_owned(), gateway.clone()));
        Some(gateway)
    }
}

/// The router of a single-user gateway with sealed session ids (replicas).
pub(crate) struct SingleRouter(pub(crate) UserRoutes);

impl Router for SingleRouter {
    fn route<'a>(
        &'a self,
        _user: &'a UserId,
        pinned: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Route, RouteError>> {
        Box::pin(async move { Ok(self.0.route(pinned)) })
    }
}

/// One user's wiring in the pool.
struct UserEntry {
    /// This user's share of the gate gauges.
    metrics: Metrics,
    routes: UserRoutes,
    tracker: Arc<TrackerSlot>,
    status: watch::Receiver<crate::status::StatusView>,
    task: tokio::task::JoinHandle<Result<(), runtime::FatalError>>,
}

impl PoolEntry for UserEntry {
    fn close(&self) {
        if let Some(tracker) = self.tracker.get() {
            tracker.shutdown();
        }
        self.task.abort();
        self.metrics.release_user();
    }
}

/// Routes each user to their own wiring, made on first use.
pub(crate) struct PoolRouter {
    config: Config,
    metrics: Metrics,
    pool: UserPool<UserEntry>,
    /// Signs the user into each user's callback URL.
    signer: LinkSigner,
    /// The one Composio client of every user (same key and origin, one connection pool).
    composio: toolgate_session::ComposioClient,
    /// The one upstream HTTP client of every user's gateways.
    http: toolgate_proxy::upstream::UpstreamClient,
}

impl PoolRouter {
    /// A router for `config` (listen address already bound), bounded by `config.users`.
    pub(crate) fn new(
        config: Config,
        metrics: Metrics,
        composio: toolgate_session::ComposioClient,
    ) -> anyhow::Result<Self> {
        let pool = UserPool::new(PoolConfig {
            max_active: config.users.max_active,
            idle_timeout: config.users.idle_timeout,
        });
        let signer = LinkSigner::new(&config.session_key);
        let http =
            toolgate_proxy::upstream::UpstreamClient::new(config.proxy_config().connect_timeout);
        Ok(Self {
            config,
            metrics,
            pool,
            signer,
            composio,
            http,
        })
    }

    /// Runs the idle sweeper until `shutdown`, keeping the active-users gauge current.
    pub(crate) fn sweep_until(
        &self,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + use<> {
        let (pool, metrics) = (self.pool.clone(), self.metrics.clone());
        async move {
            let gauge = async {
                let mut ticks = tokio::time::interval(GAUGE_REFRESH);
                loop {
                    ticks.tick().await;
                    metrics.set_active_users(pool.len());
                }
            };
            tokio::select! {
                () = pool.clone().run_sweeper(shutdown) => {}
                () = gauge => {}
            }
        }
    }

    fn start_user(&self, user: &UserId) -> anyhow::Result<UserEntry> {
        let mut config = self.config.clone();
        config.user_id = Some(user.as_str().to_owned());
        // The callback carries the user, signed, so its hint reaches this user's tracker and a
        // forged one is refused. Composio keeps our query and appends its own parameters.
        let base = config.effective_callback_url();
        let separator = if base.contains('?') { '&' } else { '?' };
        let signed = self.signer.query(
            Purpose::Callback,
            user.as_str(),
            unix_now() + CALLBACK_LINK_TTL,
        );
        config.callback_url = Some(format!("{base}{separator}{signed}"));
        let metrics = self.metrics.for_user();
        let wiring = runtime::start_with(
            &config,
            metrics.clone(),
            config.require.clone(),
            Some(self.composio.clone()),
        )?;
        let proxy = config.proxy_config();
        let keeper = wiring
            .gatekeeper(proxy.wait)
            .with_page_link(self.page_link(&base, user));
        let gateway = Gateway::with_client(proxy, keeper, self.http.clone())?;
        Ok(UserEntry {
            metrics,
            routes: UserRoutes::new(&config, gateway, &wiring, self.http.clone()),
            tracker: wiring.actions,
            status: wiring.status_rx,
            task: wiring.task,
        })
    }

    /// Makes `user`'s signed connections-page link, valid for [`PAGE_LINK_TTL`] from each
    /// blocked answer: the page sits next to the callback (`…/callback` → `…/connections`).
    fn page_link(
        &self,
        callback: &str,
        user: &UserId,
    ) -> toolgate_proxy::mcp::gatekeeper::PageLink {
        let page = url::Url::parse(callback)
            .and_then(|url| url.join("connections"))
            .map_or_else(
                |_| "/connections".to_owned(),
                |mut url| {
                    url.set_query(None);
                    url.to_string()
                },
            );
        let (signer, user) = (self.signer.clone(), user.as_str().to_owned());
        Arc::new(move || {
            let query = signer.query(Purpose::Page, &user, unix_now() + PAGE_LINK_TTL);
            format!("{page}?{query}")
        })
    }

    /// `user`'s entry, made on first use.
    async fn entry(&self, user: &UserId) -> Result<Arc<UserEntry>, RouteError> {
        let entry = self
            .pool
            .get_or_create(user.as_str(), || async { self.start_user(user) })
            .await
            .map_err(|error| RouteError(format!("{error:#}")))?;
        self.metrics.set_active_users(self.pool.len());
        Ok(entry)
    }
}

impl Router for PoolRouter {
    fn route<'a>(
        &'a self,
        user: &'a UserId,
        pinned: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Route, RouteError>> {
        Box::pin(async move {
            let entry = self.entry(user).await?;
            // A new user's first request arrives while their session is being made: it waits
            // as the stdio face does, since an MCP client does not retry an `initialize`
            // answered 503. Past the bound the gateway answers "not ready".
            entry
                .routes
                .gateway
                .ready_within(crate::config::COMPOSIO_UPSTREAM_WAIT)
                .await;
            Ok(entry.routes.route(pinned))
        })
    }
}

impl crate::web::users::Scopes for PoolRouter {
    fn scope<'a>(
        &'a self,
        user: &'a UserId,
    ) -> BoxFuture<'a, Result<crate::web::users::UserScope, String>> {
        Box::pin(async move {
            let entry = self.entry(user).await.map_err(|error| error.0)?;
            let actions: Arc<dyn crate::web::Actions> = entry.tracker.clone();
            Ok((entry.status.clone(), actions))
        })
    }
}

/// A user id no one has: the readiness probe lists its connected accounts (none), which
/// needs only a working API key.
const PROBE_USER: &str = "toolgate-readiness-probe";

/// Keeps the multi-user front's readiness ("can serve") on `/readyz` and `toolgate_ready`:
/// Composio answers with the API key and, in JWT mode, the JWKS has a usable key. Probes with
/// backoff until both hold, naming the cause meanwhile; a refused key ends the gateway, as in
/// single-user mode. Once keys are loaded they are kept (an unreachable JWKS endpoint later
/// does not stop tokens signed by known keys), so readiness stays.
async fn keep_ready(
    config: Config,
    client: toolgate_session::ComposioClient,
    verifier: Option<Arc<JwtVerifier>>,
    status: watch::Sender<crate::status::StatusView>,
    metrics: Metrics,
) -> Result<(), runtime::FatalError> {
    let mut attempt = 0u32;
    loop {
        let reason = match probe(&config, &client, verifier.as_deref()).await {
            Ok(()) => {
                status.send_modify(|view| {
                    view.ready = true;
                    view.not_ready_reason = None;
                    view.last_error = None;
                });
                metrics.set_ready(true);
                tracing::info!("ready: Composio answers and users are served");
                return Ok(());
            }
            Err(NotReady::Fatal(error)) => return Err(error),
            Err(NotReady::Retry(reason)) => reason,
        };
        let delay = runtime::startup_backoff(attempt);
        attempt += 1;
        tracing::warn!(
            reason,
            retry_in_ms = delay.as_millis() as u64,
            "not ready yet"
        );
        status.send_modify(|view| {
            view.ready = false;
            view.not_ready_reason = Some(reason);
        });
        metrics.set_ready(false);
        tokio::time::sleep(delay).await;
    }
}

/// Why a readiness probe failed.
enum NotReady {
    /// It may pass: probe again later (the reason is shown on `/readyz`).
    Retry(String),
    /// It will not: stop the gateway.
    Fatal(runtime::FatalError),
}

/// One readiness probe: Composio first, then the JWT keys.
async fn probe(
    config: &Config,
    client: &toolgate_session::ComposioClient,
    verifier: Option<&JwtVerifier>,
) -> Result<(), NotReady> {
    let query = toolgate_session::AccountsQuery {
        user_ids: vec![PROBE_USER.to_owned()],
        ..toolgate_session::AccountsQuery::default()
    };
    if let Err(error) = client.list_connected_accounts(&query).await {
        return Err(match runtime::classify(error, config) {
            runtime::OpenError::Retry(error) => {
                NotReady::Retry(format!("Composio is not reachable: {error}"))
            }
            runtime::OpenError::Fatal(error) => NotReady::Fatal(error),
        });
    }
    match verifier {
        Some(verifier) if !verifier.has_keys() => verifier.refresh().await.map_err(|error| {
            NotReady::Retry(format!("the JWT signing keys are not loaded: {error}"))
        }),
        _ => Ok(()),
    }
}

/// Runs the multi-user HTTP face on `listening` until SIGINT/SIGTERM.
pub(crate) async fn serve_multi(
    config: Config,
    listening: crate::commands::gateway::Listening,
) -> std::process::ExitCode {
    match serve_multi_inner(config, listening).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("toolgate: invalid configuration: {error:#}");
            std::process::ExitCode::from(crate::commands::EXIT_CONFIG)
        }
    }
}

async fn serve_multi_inner(
    config: Config,
    listening: crate::commands::gateway::Listening,
) -> anyhow::Result<std::process::ExitCode> {
    let metrics = Metrics::new();
    let authenticator = Arc::new(authenticator(&config).await?);
    let client = runtime::composio_client(&config, Some(&metrics))?;
    let keys = session_keys(&config)?;
    let router = Arc::new(PoolRouter::new(
        config.clone(),
        metrics.clone(),
        client.clone(),
    )?);
    let users = crate::web::users::UserPages {
        authenticator: Arc::clone(&authenticator),
        signer: router.signer.clone(),
        scopes: router.clone(),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(router.sweep_until(shutdown.clone()));
    if let (Authenticator::Tokens(store), Some(path)) = (&*authenticator, &config.auth.tokens_file)
    {
        tokio::spawn(watch_tokens_file(
            path.clone(),
            store.clone(),
            shutdown.clone(),
        ));
    }
    let (status_tx, status_rx) = watch::channel(crate::status::StatusView {
        mode: "composio".to_owned(),
        not_ready_reason: Some("checking that Composio answers".to_owned()),
        gate_open: true,
        ..crate::status::StatusView::default()
    });
    let verifier = match &*authenticator {
        Authenticator::Jwt(verifier) => Some(Arc::clone(verifier)),
        _ => None,
    };
    let readiness = tokio::spawn(keep_ready(
        config.clone(),
        client,
        verifier,
        status_tx,
        metrics.clone(),
    ));
    let front = Arc::new(toolgate_proxy::router::MultiUser::new(
        Arc::clone(&authenticator),
        router,
        keys,
    ));
    let app = front_app(&config, front, users, metrics, status_rx)?;
    let base_url = format!("http://{}", listening.addr);
    eprintln!(
        "toolgate: listening on {base_url} (composio mode, auth.mode = {}{}); MCP endpoint {base_url}{}",
        config.auth.mode,
        if config.session_key.is_empty() {
            ""
        } else {
            ", sealed session ids"
        },
        config.path
    );
    let serving = crate::web::serve(
        listening.listener,
        app,
        config.server_limits(),
        crate::signals::shutdown_signal(),
        config.drain_timeout,
    );
    // A fatal readiness failure (a refused API key) ends the gateway; success leaves it serving.
    let fatal = async {
        match readiness.await {
            Ok(Err(error)) => error,
            _ => std::future::pending().await,
        }
    };
    let code = tokio::select! {
        () = serving => std::process::ExitCode::SUCCESS,
        error = fatal => crate::commands::gateway::fatal(&error),
    };
    shutdown.cancel();
    tracing::info!("stopped");
    Ok(code)
}

/// The routes with the multi-user front on the MCP path. `/readyz` shows the front's
/// `status` (can serve: users are set up on demand), no single user's toolkits.
fn front_app(
    config: &Config,
    front: Arc<toolgate_proxy::router::MultiUser>,
    users: crate::web::users::UserPages,
    metrics: Metrics,
    status_rx: watch::Receiver<crate::status::StatusView>,
) -> anyhow::Result<Arc<crate::web::App>> {
    // The gateway of the pages' access checks; the MCP path itself goes to the front.
    let (_upstream_tx, upstream_rx) = watch::channel(None);
    let (_gate_tx, gate_rx) = watch::channel(toolgate_proxy::gate::GateState::Open);
    let gateway = Gateway::new(
        config.proxy_config(),
        upstream_rx,
        gate_rx,
        Arc::new(toolgate_proxy::events::NoEvents),
    )?;
    Ok(Arc::new(crate::web::App {
        access: toolgate_proxy::access::Access::new(&config.proxy_config()),
        status: status_rx,
        // Every page request is resolved to a user and acts on their tracker (`users`).
        actions: Arc::new(TrackerSlot::default()),
        metrics,
        csrf_token: crate::web::new_csrf_token(),
        gateway,
        callback_wait: crate::web::CALLBACK_CONFIRM_WAIT,
        multi: Some(front),
        users: Some(users),
    }))
}
