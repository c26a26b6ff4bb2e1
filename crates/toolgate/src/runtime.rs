//! Wiring the libraries together: the upstream target and gate state the proxy consumes, the
//! [`StatusView`] the pages render, and the metrics, all fed from one place.
//!
//! In Composio mode a background task runs the session's lifecycle: open the session (the
//! pinned, the remembered or a new one, see `session`), retrying transient failures with
//! backoff while readiness stays false and MCP requests get a "not ready" JSON-RPC error,
//! and stopping at once on a refused key or configuration; start the connection tracker
//! (unknown toolkits are fatal); publish the session's MCP URL with its `x-api-key`; then
//! translate every tracker snapshot. When Composio loses the session (a 404 on the REST API,
//! or on the MCP URL confirmed by the REST API) it is re-created and the upstream swapped:
//! HTTP clients then get MCP's 404 for their old `Mcp-Session-Id` and re-initialize, the
//! stdio bridge re-initializes by itself. In generic mode the upstream is fixed and the gate
//! always open.

mod policy;
mod session;
mod state_file;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use http::StatusCode;
use secrecy::SecretString;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use toolgate_proxy::config::WaitMode;
use toolgate_proxy::events::{ProxyEvents, RequestKind, RequestRecord};
use toolgate_proxy::gate::{GateState, PendingToolkit};
use toolgate_proxy::mcp::gatekeeper::Gatekeeper;
use toolgate_proxy::mcp::policy::{AllPending, ToolPolicy};
use toolgate_proxy::upstream::UpstreamTarget;
use toolgate_session::{
    ClientConfig, ComposioClient, ComposioError, CreateSessionRequest, GateSnapshot,
    ManageConnections, MultiAccount, ToolkitGate, ToolkitSelection, ToolkitState, TrackerConfig,
    TrackerError, TrackerHandle,
};

pub(crate) use self::session::{OpenError, Opened, SessionOpener, classify};
use crate::config::{Config, Mode};
use crate::metrics::{Metrics, method_label};
use crate::status::{AccountView, StatusView, ToolkitStatus, ToolkitView};
use crate::web::Actions;

/// A startup failure that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FatalError {
    /// A configuration value turned out wrong only once Composio was asked (unknown toolkit,
    /// a session of another user, an unknown pinned session).
    #[error("invalid configuration: `{key}`: {message}")]
    Config {
        /// The key at fault.
        key: &'static str,
        /// What Composio said.
        message: String,
    },
    /// Anything else that stops the gateway (a refused API key, for one).
    #[error("{0}")]
    Other(String),
}

/// The running state shared by the HTTP face, the stdio face and the pages.
pub(crate) struct Wiring {
    /// Where MCP traffic goes (`None` until the session exists).
    pub(crate) upstream_rx: watch::Receiver<Option<UpstreamTarget>>,
    /// The gate the proxy consults.
    pub(crate) gate_rx: watch::Receiver<GateState>,
    /// What the pages and status outputs show.
    pub(crate) status_rx: watch::Receiver<StatusView>,
    /// Tracker actions for the pages.
    pub(crate) actions: Arc<TrackerSlot>,
    /// The proxy's event hooks (metrics, re-verification).
    pub(crate) events: Arc<GatewayEvents>,
    /// The startup task; ends with `Err` on a fatal startup error, else runs until shutdown.
    pub(crate) task: JoinHandle<Result<(), FatalError>>,
    /// Which toolkits block a call (`gate.scope`), and result review in Composio mode.
    pub(crate) policy: Arc<dyn ToolPolicy>,
}

impl Wiring {
    /// The gate policy both faces use: this wiring's gate, upstream, tool policy and events.
    pub(crate) fn gatekeeper(&self, wait: WaitMode) -> Gatekeeper {
        Gatekeeper::new(
            self.gate_rx.clone(),
            self.upstream_rx.clone(),
            wait,
            Arc::clone(&self.policy),
            self.events.clone(),
        )
    }
}

/// The current session's tracker, once it exists; replaced when the session is re-created.
/// Pages and proxy events act through it.
#[derive(Default)]
pub(crate) struct TrackerSlot {
    handle: RwLock<Option<TrackerHandle>>,
}

impl TrackerSlot {
    /// The tracker handle when startup got that far.
    pub(crate) fn get(&self) -> Option<TrackerHandle> {
        self.handle
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, tracker: Option<TrackerHandle>) {
        *self.handle.write().unwrap_or_else(PoisonError::into_inner) = tracker;
    }
}

impl Actions for TrackerSlot {
    fn hint(&self) {
        if let Some(tracker) = self.get() {
            tracker.hint();
        }
    }

    fn want_links(&self) {
        if let Some(tracker) = self.get() {
            tracker.want_links();
        }
    }

    fn disconnect(
        &self,
        slug: String,
        account: Option<String>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let tracker = self.get();
        Box::pin(async move {
            let Some(tracker) = tracker else {
                return Err("the gateway is still starting".to_owned());
            };
            tracker
                .disconnect(&slug, account.as_deref(), false)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
    }

    fn add_account(&self, slug: String) -> BoxFuture<'static, Result<String, String>> {
        let tracker = self.get();
        Box::pin(async move {
            let Some(tracker) = tracker else {
                return Err("the gateway is still starting".to_owned());
            };
            tracker
                .add_account(&slug)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

/// The proxy's hooks: metrics, a debug line per request, and re-verification when the
/// upstream refuses our credentials or no longer knows the session.
pub(crate) struct GatewayEvents {
    metrics: Metrics,
    tracker: Arc<TrackerSlot>,
    gate_rx: watch::Receiver<GateState>,
}

impl GatewayEvents {
    /// Hooks counting into `metrics` and re-verifying through `tracker` (when there is one).
    pub(crate) fn new(
        metrics: Metrics,
        tracker: Arc<TrackerSlot>,
        gate_rx: watch::Receiver<GateState>,
    ) -> Self {
        Self {
            metrics,
            tracker,
            gate_rx,
        }
    }
}

impl ProxyEvents for GatewayEvents {
    fn request_finished(&self, record: &RequestRecord<'_>) {
        let label = match record.kind {
            RequestKind::ToolsCall | RequestKind::OtherRequest => {
                method_label(record.rpc_method.unwrap_or(""))
            }
            RequestKind::NotificationOrResponse => "notification",
            RequestKind::Batch => "batch",
            RequestKind::Stream => "stream",
            RequestKind::EndSession => "delete",
            RequestKind::Rejected => "rejected",
        };
        self.metrics.request(label, record.status.as_u16());
        // Upstream latency: only requests that went upstream. Rejected ones never did, and a
        // tools/call while the gate is not open was answered locally.
        let answered_locally = record.kind == RequestKind::Rejected
            || (record.kind == RequestKind::ToolsCall
                && !matches!(*self.gate_rx.borrow(), GateState::Open))
            || matches!(*self.gate_rx.borrow(), GateState::Starting { .. });
        if !answered_locally {
            self.metrics.upstream_latency(record.elapsed);
            // A 404 from the session's MCP URL is either an expired MCP session (harmless)
            // or a session Composio deleted: the tracker asks the REST API which (spaced).
            if record.status == StatusCode::NOT_FOUND
                && let Some(tracker) = self.tracker.get()
            {
                tracker.verify_session();
            }
        }
        tracing::debug!(
            http_method = %record.http_method,
            rpc_method = label,
            status = record.status.as_u16(),
            elapsed_ms = record.elapsed.as_secs_f64() * 1000.0,
            "mcp request"
        );
    }

    fn call_blocked(&self, tool: Option<&str>, waited: Duration) {
        self.metrics.blocked_call();
        tracing::info!(
            tool = tool.unwrap_or("?"),
            waited_ms = waited.as_millis() as u64,
            "tools/call blocked: a required toolkit is not connected"
        );
        // Someone is waiting: toolkits without a live link get one now.
        if let Some(tracker) = self.tracker.get() {
            tracker.want_links();
        }
    }

    fn call_held(&self, tool: Option<&str>) {
        self.metrics.held_call();
        tracing::debug!(
            tool = tool.unwrap_or("?"),
            "tools/call held until the gate opens"
        );
        if let Some(tracker) = self.tracker.get() {
            tracker.want_links();
        }
    }

    fn upstream_error(&self, kind: &toolgate_proxy::mcp::error::ErrorKind) {
        self.metrics.upstream_error(kind.label());
    }

    fn upstream_credentials_refused(&self, status: StatusCode) {
        self.metrics.upstream_error("credentials_refused");
        tracing::warn!(%status, "the upstream refused toolgate's credentials; re-verifying");
        if let Some(tracker) = self.tracker.get() {
            tracker.upstream_rejected();
        }
    }
}

/// The Composio client for this configuration; every call is counted into `metrics` when
/// given.
pub(crate) fn composio_client(
    config: &Config,
    metrics: Option<&Metrics>,
) -> anyhow::Result<ComposioClient> {
    let api_key = config
        .api_key()
        .cloned()
        .unwrap_or_else(|| SecretString::from(String::new()));
    let mut client_config = ClientConfig::with_base_url(api_key, config.composio.base_url.clone());
    client_config.observer = metrics.map(|metrics| {
        let observer: Arc<dyn toolgate_session::CallObserver> = Arc::new(metrics.clone());
        observer
    });
    ComposioClient::new(client_config).context("could not set up the Composio client")
}

/// The session-create body from the configuration: in-chat auth off unless asked for.
/// Pinned aliases are still aliases here ([`SessionOpener`] resolves them).
pub(crate) fn session_request(config: &Config) -> CreateSessionRequest {
    let session = &config.session;
    let toolkits = if !session.toolkits_enable.is_empty() {
        Some(ToolkitSelection::Enable(session.toolkits_enable.clone()))
    } else if !session.toolkits_disable.is_empty() {
        Some(ToolkitSelection::Disable(session.toolkits_disable.clone()))
    } else {
        None
    };
    let multi = &session.multi_account;
    CreateSessionRequest {
        user_id: config.user_id.clone().unwrap_or_default(),
        manage_connections: Some(if session.manage_connections {
            ManageConnections {
                enable: Some(true),
                callback_url: Some(config.effective_callback_url()),
                ..ManageConnections::default()
            }
        } else {
            ManageConnections::disabled()
        }),
        toolkits,
        auth_configs: session.auth_configs.clone(),
        connected_accounts: session.connected_accounts.clone(),
        workbench: None,
        multi_account: multi.enable.then(|| MultiAccount {
            enable: Some(true),
            max_accounts_per_toolkit: multi.max_accounts_per_toolkit,
            require_explicit_selection: multi.require_explicit_selection.then_some(true),
        }),
    }
}

/// The tracker settings from the configuration and the opened session's request (its pins
/// resolved to account ids).
pub(crate) fn tracker_config(
    config: &Config,
    required: &[String],
    request: &CreateSessionRequest,
) -> TrackerConfig {
    let mut tracker = TrackerConfig::new(required.iter().cloned());
    tracker.callback_url = Some(config.effective_callback_url());
    tracker.reverify_interval = config.gate.recheck_interval;
    tracker.user_id = config.user_id.clone();
    tracker.background_calls_per_minute = config.composio.background_calls_per_minute;
    tracker.pinned_accounts = request.connected_accounts.clone();
    tracker.auth_configs = request.auth_configs.clone();
    tracker.multi_account = config.session.multi_account.enable;
    tracker
}

/// Maps a tracker failure at startup: unknown toolkits are a configuration error.
pub(crate) fn tracker_start_error(error: TrackerError) -> Result<ComposioError, FatalError> {
    match error {
        TrackerError::Composio(error) => Ok(error),
        TrackerError::UnknownToolkits(slugs) => Err(FatalError::Config {
            key: "require",
            message: format!("not in the Composio catalog: {}", slugs.join(", ")),
        }),
        other => Err(FatalError::Other(other.to_string())),
    }
}

/// Backoff before the `attempt`-th retry of session creation (0-based): 0.5 s doubling to 30 s.
pub(crate) fn startup_backoff(attempt: u32) -> Duration {
    let millis = 500u64.saturating_mul(1u64 << attempt.min(10));
    Duration::from_millis(millis.min(30_000))
}

/// Starts the wiring for `config`: generic mode is ready at once; Composio mode starts its
/// startup task.
pub(crate) fn start(
    config: &Config,
    metrics: Metrics,
    required: Vec<String>,
) -> anyhow::Result<Wiring> {
    start_with(config, metrics, required, None)
}

/// [`start`] with a Composio client to share (a multi-user gateway has one for every user:
/// same key, same origin, one connection pool); `None` makes one.
pub(crate) fn start_with(
    config: &Config,
    metrics: Metrics,
    required: Vec<String>,
    client: Option<ComposioClient>,
) -> anyhow::Result<Wiring> {
    let (upstream_tx, upstream_rx) = watch::channel(None);
    let (gate_tx, gate_rx) = watch::channel(GateState::Starting {
        reason: "creating the Composio session".to_owned(),
    });
    let (status_tx, status_rx) = watch::channel(StatusView {
        mode: config.mode().to_string(),
        not_ready_reason: Some("creating the Composio session".to_owned()),
        user_id: config.user_id.clone(),
        multi_account: config.session.multi_account.enable,
        toolkits: required
            .iter()
            .map(|slug| ToolkitView::unknown(slug))
            .collect(),
        ..StatusView::default()
    });
    let tracker = Arc::new(TrackerSlot::default());
    let events = Arc::new(GatewayEvents {
        metrics: metrics.clone(),
        tracker: Arc::clone(&tracker),
        gate_rx: gate_rx.clone(),
    });
    metrics.set_gate(false, false, required.len());
    let policy: Arc<dyn ToolPolicy> = match config.mode() {
        Mode::Generic => Arc::new(AllPending),
        Mode::Composio => Arc::new(policy::ComposioPolicy::new(
            match config.gate.scope {
                crate::config::GateScope::All => policy::Scope::All,
                crate::config::GateScope::Toolkit => policy::Scope::Toolkit,
            },
            &required,
            Arc::clone(&tracker),
        )),
    };
    let task = match config.mode() {
        Mode::Generic => {
            let target = generic_target(config)?;
            upstream_tx.send_replace(Some(target));
            gate_tx.send_replace(GateState::Open);
            status_tx.send_modify(|view| {
                view.ready = true;
                view.not_ready_reason = None;
                view.gate_open = true;
                view.user_id = None;
            });
            metrics.set_gate(true, true, 0);
            tokio::spawn(async move {
                // Keep the senders alive for the life of the process.
                let _keep = (upstream_tx, gate_tx, status_tx);
                std::future::pending::<Result<(), FatalError>>().await
            })
        }
        Mode::Composio => {
            let client = match client {
                Some(client) => client,
                None => composio_client(config, Some(&metrics))?,
            };
            let config = config.clone();
            let tracker = Arc::clone(&tracker);
            let senders = Senders {
                upstream_tx,
                gate_tx,
                status_tx,
                metrics,
            };
            tokio::spawn(composio_lifecycle(
                client, config, required, tracker, senders,
            ))
        }
    };
    Ok(Wiring {
        upstream_rx,
        gate_rx,
        status_rx,
        actions: tracker,
        events,
        task,
        policy,
    })
}

/// The generic-mode upstream: the configured URL and headers (`${VAR}` expanded).
fn generic_target(config: &Config) -> anyhow::Result<UpstreamTarget> {
    let url = config.upstream.url.as_deref().unwrap_or_default();
    let url = url::Url::parse(url).context("invalid configuration: `upstream.url`")?;
    let lookup = |name: &str| std::env::var(name).ok();
    let mut headers = Vec::new();
    for line in &config.headers {
        let header = toolgate_proxy::header_args::parse_header_arg(line, &lookup)
            .map_err(|error| anyhow::anyhow!("invalid configuration: `headers`: {error}"))?;
        headers.push(header);
    }
    Ok(UpstreamTarget::new(
        url,
        toolgate_proxy::header_args::header_map(headers),
    ))
}

struct Senders {
    upstream_tx: watch::Sender<Option<UpstreamTarget>>,
    gate_tx: watch::Sender<GateState>,
    status_tx: watch::Sender<StatusView>,
    metrics: Metrics,
}

impl Senders {
    fn not_ready(&self, reason: String, error: Option<String>) {
        self.gate_tx.send_replace(GateState::Starting {
            reason: reason.clone(),
        });
        self.metrics.set_gate(false, false, 0);
        self.status_tx.send_modify(|view| {
            view.ready = false;
            view.not_ready_reason = Some(reason);
            view.last_error = error;
        });
    }
}

/// Opens the session, retrying transient failures (readiness stays false meanwhile).
async fn open_with_retry(
    opener: &SessionOpener,
    config: &Config,
    senders: &Senders,
) -> Result<Opened, FatalError> {
    let mut attempt = 0u32;
    loop {
        match opener.open().await {
            Ok(opened) => return Ok(opened),
            Err(OpenError::Fatal(error)) => return Err(error),
            Err(OpenError::Retry(error)) => {
                let delay = startup_backoff(attempt);
                attempt += 1;
                let what = if config.session.id.is_some() {
                    "fetching the configured Composio session"
                } else {
                    "creating the Composio session"
                };
                tracing::warn!(%error, attempt, retry_in_ms = delay.as_millis() as u64, "{what} failed");
                senders.not_ready(
                    format!("{what} (attempt {attempt} failed; retrying)"),
                    Some(error.to_string()),
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Starts the tracker for an opened session; `Ok(None)` when the session vanished meanwhile.
async fn start_tracker(
    client: &ComposioClient,
    config: &Config,
    required: &[String],
    opened: &Opened,
    senders: &Senders,
) -> Result<Option<TrackerHandle>, FatalError> {
    let mut attempt = 0u32;
    loop {
        match toolgate_session::ConnectionTracker::start(
            client.clone(),
            opened.session.session_id.clone(),
            tracker_config(config, required, &opened.request),
        )
        .await
        {
            Ok(tracker) => return Ok(Some(tracker)),
            Err(error) => {
                let error = tracker_start_error(error)?;
                if error.is_not_found() {
                    return Ok(None);
                }
                let delay = startup_backoff(attempt);
                attempt += 1;
                tracing::warn!(%error, attempt, "checking the required toolkits failed");
                senders.not_ready(
                    "checking the required toolkits (retrying)".to_owned(),
                    Some(error.to_string()),
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The whole Composio-mode lifecycle: open, track, publish; re-create a lost session.
async fn composio_lifecycle(
    client: ComposioClient,
    config: Config,
    required: Vec<String>,
    slot: Arc<TrackerSlot>,
    senders: Senders,
) -> Result<(), FatalError> {
    let opener = SessionOpener::new(client.clone(), &config);
    loop {
        let opened = open_with_retry(&opener, &config, &senders).await?;
        let session_id = opened.session.session_id.clone();
        tracing::info!(session = %session_id, "Composio session ready");
        senders.status_tx.send_modify(|view| {
            view.session_id = Some(session_id.clone());
            view.not_ready_reason = Some("checking the required toolkits".to_owned());
        });
        if let Some(tracker) = start_tracker(&client, &config, &required, &opened, &senders).await?
        {
            let snapshots = tracker.subscribe();
            slot.set(Some(tracker));
            senders.upstream_tx.send_replace(Some(UpstreamTarget::new(
                opened.endpoint.url.clone(),
                opened.endpoint.headers.clone(),
            )));
            if !follow(&senders, snapshots).await {
                return Ok(());
            }
            slot.set(None);
        }
        tracing::warn!(session = %session_id, "Composio lost the session; creating a new one");
        // Not ready at once: requests meanwhile get the "not ready" error, not a dead upstream.
        senders.not_ready(
            "the Composio session was lost; creating a new one".to_owned(),
            None,
        );
        opener.forget().await;
        if config.session.id.is_some() {
            return Err(FatalError::Config {
                key: "session.id",
                message: format!(
                    "Composio no longer knows the pinned session {session_id}; pin another or remove the pin"
                ),
            });
        }
    }
}

/// Publishes every snapshot until the tracker ends; true when it ended because Composio lost
/// the session.
async fn follow(senders: &Senders, mut snapshots: watch::Receiver<GateSnapshot>) -> bool {
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        if snapshot.session_lost {
            return true;
        }
        publish(senders, &snapshot);
        if snapshots.changed().await.is_err() {
            return snapshots.borrow().session_lost;
        }
    }
}

fn publish(senders: &Senders, snapshot: &GateSnapshot) {
    let ready = snapshot.checked;
    let pending: Vec<PendingToolkit> = snapshot.blocking().map(pending_toolkit).collect();
    let gate = if !ready {
        GateState::Closed {
            pending: snapshot.toolkits.iter().map(pending_toolkit).collect(),
        }
    } else if snapshot.open {
        GateState::Open
    } else {
        GateState::Closed { pending }
    };
    let pending_count = snapshot
        .toolkits
        .iter()
        .filter(|toolkit| !toolkit.state.is_satisfied())
        .count();
    senders.gate_tx.send_if_modified(|current| {
        if *current == gate {
            false
        } else {
            *current = gate.clone();
            true
        }
    });
    senders
        .metrics
        .set_gate(ready, ready && snapshot.open, pending_count);
    senders.status_tx.send_modify(|view| {
        view.ready = ready;
        view.not_ready_reason = (!ready).then(|| "checking the required toolkits".to_owned());
        view.gate_open = ready && snapshot.open;
        view.toolkits = snapshot.toolkits.iter().map(toolkit_view).collect();
        view.last_error = snapshot
            .last_error
            .as_ref()
            .map(|error| error.message.clone());
    });
}

/// What a blocked answer says about one toolkit: its link and a short status.
fn pending_toolkit(toolkit: &ToolkitGate) -> PendingToolkit {
    let (connect_url, status) = match &toolkit.state {
        ToolkitState::Pending {
            connect_url,
            previous_failure,
            ..
        } => (
            Some(connect_url.clone()),
            match previous_failure {
                Some(reason) => {
                    format!("waiting for authorization (previous attempt failed: {reason})")
                }
                None => "waiting for authorization".to_owned(),
            },
        ),
        ToolkitState::NeedsLink { expired, .. } => (
            None,
            format!(
                "{}: a new one is being made now; call again in a moment",
                if *expired {
                    "the Connect Link expired"
                } else {
                    "no Connect Link yet"
                }
            ),
        ),
        ToolkitState::Failed { reason } => (None, format!("failed: {reason}")),
        ToolkitState::PinnedUnusable { .. } | ToolkitState::Disabled { .. } => {
            (None, state_detail(&toolkit.state).unwrap_or_default())
        }
        ToolkitState::Unknown => (None, "checking connection status".to_owned()),
        ToolkitState::Connected { .. } => (None, "connected".to_owned()),
        ToolkitState::NoAuth => (None, "no authentication needed".to_owned()),
    };
    PendingToolkit {
        slug: toolkit.slug.clone(),
        name: toolkit.name.clone(),
        connect_url,
        status,
    }
}

/// The one sentence for states that need the operator, shared by pages, `status` and
/// blocked answers.
fn state_detail(state: &ToolkitState) -> Option<String> {
    match state {
        ToolkitState::PinnedUnusable { account_id, status } => Some(format!(
            "pinned account {account_id} is {status}: remove the pin or reconnect"
        )),
        ToolkitState::Disabled { account_id } => Some(format!(
            "disabled in Composio: account {account_id} is INACTIVE; re-enable it there"
        )),
        ToolkitState::NeedsLink {
            expired: true,
            previous_failure,
        } => Some(match previous_failure {
            Some(reason) => format!(
                "link expired (previous attempt failed: {reason}) — a new one is made when needed"
            ),
            None => "link expired — a new one is made when needed".to_owned(),
        }),
        ToolkitState::NeedsLink { expired: false, .. } => {
            Some("no link yet — one is made when needed".to_owned())
        }
        _ => None,
    }
}

/// The page/status view of one tracked toolkit.
pub(crate) fn toolkit_view(toolkit: &ToolkitGate) -> ToolkitView {
    let mut view = ToolkitView::unknown(&toolkit.slug);
    view.name = toolkit.name.clone();
    view.logo = toolkit.logo.clone();
    view.auth_label = toolkit.auth.as_ref().map(|auth| {
        if auth.composio_managed {
            "Composio-managed OAuth app".to_owned()
        } else {
            match &auth.name {
                Some(name) => format!("your OAuth app ({name})"),
                None => "your OAuth app".to_owned(),
            }
        }
    });
    view.accounts = toolkit
        .accounts
        .iter()
        .map(|account| AccountView {
            id: account.id.clone(),
            status: account.status.to_string(),
            alias: account.alias.clone(),
            is_default: account.is_default,
        })
        .collect();
    view.add_link = toolkit.add_link.clone();
    view.detail = state_detail(&toolkit.state);
    match &toolkit.state {
        ToolkitState::Connected { account_id } => {
            view.status = ToolkitStatus::Connected;
            view.account_id = Some(account_id.clone());
        }
        ToolkitState::NoAuth => view.status = ToolkitStatus::NoAuth,
        ToolkitState::Pending {
            connect_url,
            expires_at,
            previous_failure,
        } => {
            view.status = ToolkitStatus::Pending;
            view.connect_url = Some(connect_url.clone());
            view.detail = Some(match previous_failure {
                Some(reason) => format!("previous attempt failed: {reason}"),
                None => format!("link valid until {}", expires_at.format("%H:%M:%S UTC")),
            });
        }
        ToolkitState::NeedsLink { .. } => view.status = ToolkitStatus::Pending,
        ToolkitState::Failed { reason } => {
            view.status = ToolkitStatus::Failed;
            view.detail = Some(reason.clone());
        }
        ToolkitState::PinnedUnusable { account_id, .. } => {
            view.status = ToolkitStatus::Pinned;
            view.account_id = Some(account_id.clone());
        }
        ToolkitState::Disabled { account_id } => {
            view.status = ToolkitStatus::Disabled;
            view.account_id = Some(account_id.clone());
        }
        ToolkitState::Unknown => {}
    }
    view
}

/// A status view from one snapshot (for `status` and `connect`).
pub(crate) fn status_view(
    config: &Config,
    session_id: &str,
    snapshot: &GateSnapshot,
) -> StatusView {
    StatusView {
        mode: config.mode().to_string(),
        ready: snapshot.checked,
        not_ready_reason: None,
        session_id: Some(session_id.to_owned()),
        user_id: config.user_id.clone(),
        gate_open: snapshot.open,
        toolkits: snapshot.toolkits.iter().map(toolkit_view).collect(),
        multi_account: config.session.multi_account.enable,
        last_error: snapshot
            .last_error
            .as_ref()
            .map(|error| error.message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone as _, Utc};

    fn toolkit(slug: &str, state: ToolkitState) -> ToolkitGate {
        ToolkitGate {
            slug: slug.to_owned(),
            name: slug.to_uppercase(),
            logo: Some(format!("https://logos.example/{slug}.svg")),
            state,
            accounts: Vec::new(),
            auth: None,
            add_link: None,
        }
    }

    fn pending(url: &str, failure: Option<&str>) -> ToolkitState {
        ToolkitState::Pending {
            connect_url: url.to_owned(),
            expires_at: Utc
                .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
                .single()
                .unwrap_or_default(),
            previous_failure: failure.map(str::to_owned),
        }
    }

    #[test]
    fn views_carry_status_account_link_and_detail() {
        let connected = toolkit_view(&toolkit(
            "gmail",
            ToolkitState::Connected {
                account_id: "ca_1".into(),
            },
        ));
        assert_eq!(connected.status, ToolkitStatus::Connected);
        assert_eq!(connected.account_id.as_deref(), Some("ca_1"));
        assert!(connected.connect_url.is_none());
        let waiting = toolkit_view(&toolkit("github", pending("https://c/link/ln_1", None)));
        assert_eq!(waiting.status, ToolkitStatus::Pending);
        assert_eq!(waiting.connect_url.as_deref(), Some("https://c/link/ln_1"));
        assert_eq!(
            waiting.detail.as_deref(),
            Some("link valid until 03:04:05 UTC")
        );
        let retry = toolkit_view(&toolkit(
            "github",
            pending("https://c/link/ln_2", Some("denied")),
        ));
        assert_eq!(
            retry.detail.as_deref(),
            Some("previous attempt failed: denied")
        );
        let failed = toolkit_view(&toolkit(
            "slack",
            ToolkitState::Failed {
                reason: "expired".into(),
            },
        ));
        assert_eq!(failed.status, ToolkitStatus::Failed);
        assert_eq!(
            toolkit_view(&toolkit("x", ToolkitState::NoAuth)).status,
            ToolkitStatus::NoAuth
        );
    }

    #[test]
    fn gate_follows_the_snapshot() {
        let (upstream_tx, _upstream_rx) = watch::channel(None);
        let (gate_tx, gate_rx) = watch::channel(GateState::Starting {
            reason: "starting".into(),
        });
        let (status_tx, status_rx) = watch::channel(StatusView::default());
        let senders = Senders {
            upstream_tx,
            gate_tx,
            status_tx,
            metrics: Metrics::new(),
        };
        let mut snapshot = GateSnapshot {
            open: false,
            toolkits: vec![
                toolkit(
                    "gmail",
                    ToolkitState::Connected {
                        account_id: "ca_1".into(),
                    },
                ),
                toolkit("github", pending("https://c/link/ln_1", None)),
            ],
            last_error: None,
            checked: false,
            session_lost: false,
        };
        // Before the first check every toolkit is listed (nothing is known yet).
        publish(&senders, &snapshot);
        assert!(matches!(&*gate_rx.borrow(), GateState::Closed { pending } if pending.len() == 2));
        assert!(!status_rx.borrow().ready);
        snapshot.checked = true;
        publish(&senders, &snapshot);
        match &*gate_rx.borrow() {
            GateState::Closed { pending } => {
                assert_eq!(pending.len(), 1);
                assert_eq!(pending[0].slug, "github");
                assert_eq!(
                    pending[0].connect_url.as_deref(),
                    Some("https://c/link/ln_1")
                );
            }
            other => panic!("expected closed, got {other:?}"),
        }
        assert!(status_rx.borrow().ready && !status_rx.borrow().gate_open);
        snapshot.open = true;
        snapshot.toolkits[1].state = ToolkitState::NoAuth;
        publish(&senders, &snapshot);
        assert_eq!(*gate_rx.borrow(), GateState::Open);
        assert!(status_rx.borrow().gate_open);
        assert!(senders.metrics.render().contains("toolgate_gate_open 1"));
    }

    #[test]
    fn session_request_turns_in_chat_auth_off_by_default() {
        let mut config = Config {
            user_id: Some("alice".into()),
            ..Config::default()
        };
        config.session.toolkits_enable = vec!["gmail".into()];
        config
            .session
            .connected_accounts
            .insert("gmail".into(), vec!["ca_9".into()]);
        let body = serde_json::to_value(session_request(&config)).unwrap_or_default();
        assert_eq!(body["user_id"], "alice");
        assert_eq!(
            body["manage_connections"],
            serde_json::json!({"enable": false})
        );
        assert_eq!(body["toolkits"], serde_json::json!({"enable": ["gmail"]}));
        assert_eq!(
            body["connected_accounts"]["gmail"],
            serde_json::json!(["ca_9"])
        );
        config.session.manage_connections = true;
        let body = serde_json::to_value(session_request(&config)).unwrap_or_default();
        assert_eq!(body["manage_connections"]["enable"], true);
        assert_eq!(
            body["manage_connections"]["callback_url"],
            "http://127.0.0.1:8787/callback"
        );
    }

    #[test]
    fn startup_backoff_grows_and_caps() {
        assert_eq!(startup_backoff(0), Duration::from_millis(500));
        assert_eq!(startup_backoff(1), Duration::from_secs(1));
        assert_eq!(startup_backoff(20), Duration::from_secs(30));
    }
}
