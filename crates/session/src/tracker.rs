//! The connection tracker: turns Composio's view of the required toolkits into a
//! [`GateSnapshot`] published through a `tokio::sync::watch`.
//!
//! One background task owns all state and talks to Composio serially, so there are no races
//! between polls, hints and disconnects. What it does:
//! - At start, one toolkits listing filtered to the required slugs; slugs Composio does not
//!   know are a startup error naming them.
//! - For each toolkit that is not connected, it mints a Connect Link once and polls that
//!   link's account (every `pending_poll_interval`, like the SDKs' `wait_for_connection`).
//!   ACTIVE → connected. FAILED → shown as failed with Composio's reason for `failed_display`,
//!   then a fresh link. EXPIRED/REVOKED/deleted, or the link's own lifetime running out → a
//!   fresh link.
//! - While nothing is pending it re-verifies every `reverify_interval`, and at once when the
//!   OAuth callback hints or the proxy reports that the upstream rejected a call, so a revoked
//!   connection closes the gate again.
//! - Only an ACTIVE status read from Composio marks a toolkit connected: a hint merely
//!   triggers a check. A failed call never changes a toolkit's state (the last known state is
//!   kept), is recorded as [`GateSnapshot::last_error`], and is retried with backoff.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::ComposioClient;
use crate::error::{ComposioError, Fault};
use crate::types::{AccountStatus, LinkRequest, SessionToolkit, ToolkitsQuery};

/// Largest page the toolkits listing accepts.
const LIST_PAGE_SIZE: u32 = 50;

/// Tracker settings. All intervals are configurable so tests (and impatient operators) can
/// shorten them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Toolkit slugs that must all be connected (or need no auth) for the gate to open.
    /// Compared case-insensitively; duplicates are ignored.
    pub required_toolkits: Vec<String>,
    /// Where Composio sends the browser after the user finishes a Connect Link (toolgate's
    /// `/callback`); `None` leaves it to Composio.
    pub callback_url: Option<String>,
    /// How often a pending link's account is polled. Default 1 s (the SDKs' cadence).
    pub pending_poll_interval: Duration,
    /// How often everything is re-verified while no link is pending. Default 5 min.
    pub reverify_interval: Duration,
    /// How long a minted Connect Link is offered before a fresh one replaces it. Composio
    /// expires unfinished (INITIATED) accounts after about 10 minutes. Default 10 min.
    pub link_lifetime: Duration,
    /// How long a toolkit whose authorization FAILED is shown as failed before a fresh link is
    /// minted. Default 5 s.
    pub failed_display: Duration,
    /// Delay before retrying after a failed Composio call; doubles per consecutive failure.
    /// Default 1 s.
    pub error_backoff_initial: Duration,
    /// Cap of the error backoff. Default 60 s.
    pub error_backoff_max: Duration,
    /// Minimum time between the starts of two hint-driven checks ([`TrackerHandle::hint`],
    /// [`TrackerHandle::upstream_rejected`], [`TrackerHandle::check_now`]); hints arriving
    /// meanwhile are merged into one check. Bounds the Composio calls a flood of (possibly
    /// forged) OAuth callbacks can cause. Zero disables the spacing. Default 1 s.
    pub min_check_spacing: Duration,
}

impl TrackerConfig {
    /// Defaults for these required toolkits.
    pub fn new<I, S>(required_toolkits: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            required_toolkits: required_toolkits.into_iter().map(Into::into).collect(),
            callback_url: None,
            pending_poll_interval: Duration::from_secs(1),
            reverify_interval: Duration::from_secs(300),
            link_lifetime: Duration::from_secs(600),
            failed_display: Duration::from_secs(5),
            error_backoff_initial: Duration::from_secs(1),
            error_backoff_max: Duration::from_secs(60),
            min_check_spacing: Duration::from_secs(1),
        }
    }
}

/// What the gate knows right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateSnapshot {
    /// True when every required toolkit is connected or needs no auth. Never set by an
    /// error or a hint, only by ACTIVE accounts read from Composio.
    pub open: bool,
    /// One entry per required toolkit, in the configured order.
    pub toolkits: Vec<ToolkitGate>,
    /// The most recent failed Composio call, cleared by the next fully successful check. For
    /// readiness and status output.
    pub last_error: Option<LastError>,
    /// False until the first check has completed (states are `Unknown` until then).
    pub checked: bool,
}

impl GateSnapshot {
    /// The toolkits that keep the gate closed.
    pub fn blocking(&self) -> impl Iterator<Item = &ToolkitGate> {
        self.toolkits
            .iter()
            .filter(|toolkit| !toolkit.state.is_satisfied())
    }
}

/// One required toolkit in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolkitGate {
    /// Slug, e.g. `gmail`.
    pub slug: String,
    /// Display name, e.g. `Gmail`.
    pub name: String,
    /// Logo URL from the catalog.
    pub logo: Option<String>,
    /// Connection state.
    pub state: ToolkitState,
}

/// Connection state of one required toolkit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolkitState {
    /// An ACTIVE connected account exists.
    Connected {
        /// The account (`ca_...`).
        account_id: String,
    },
    /// The toolkit needs no connection.
    NoAuth,
    /// Waiting for the user to open the Connect Link and authorize.
    Pending {
        /// The Connect Link.
        connect_url: String,
        /// When toolgate replaces the link with a fresh one.
        expires_at: DateTime<Utc>,
        /// Why the previous attempt failed, when the link replaces a FAILED one.
        previous_failure: Option<String>,
    },
    /// The last authorization failed (or no link could be minted); a fresh link follows.
    Failed {
        /// Composio's `status_reason`, or what went wrong.
        reason: String,
    },
    /// Not determined yet (before the first check, or the toolkit vanished from the catalog).
    Unknown,
}

impl ToolkitState {
    /// Connected or no-auth: this toolkit does not keep the gate closed.
    pub fn is_satisfied(&self) -> bool {
        matches!(self, Self::Connected { .. } | Self::NoAuth)
    }
}

/// A summary of a failed Composio call, safe to show (never contains the API key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastError {
    /// The error text.
    pub message: String,
    /// Whose fault it was.
    pub fault: Fault,
    /// The HTTP status, when Composio answered.
    pub status: Option<u16>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Tracker failures.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// Required toolkits that Composio's catalog does not have.
    #[error("unknown toolkit(s) not in the Composio catalog: {}", .0.join(", "))]
    UnknownToolkits(Vec<String>),
    /// A setting is unusable; the text names it.
    #[error("invalid tracker configuration: {0}")]
    InvalidConfig(String),
    /// A Composio call failed.
    #[error(transparent)]
    Composio(#[from] ComposioError),
    /// The toolkit is not one of the required toolkits.
    #[error("toolkit {0:?} is not tracked by this gateway")]
    NotTracked(String),
    /// The toolkit has no connected account to disconnect.
    #[error("toolkit {0:?} is not connected")]
    NotConnected(String),
    /// The tracker has shut down.
    #[error("the connection tracker has stopped")]
    Stopped,
}

/// Starts connection trackers.
#[derive(Debug)]
pub struct ConnectionTracker;

impl ConnectionTracker {
    /// Validates `config`, lists the required toolkits once (unknown slugs are an error naming
    /// them), and spawns the tracker on the current runtime. The returned handle's
    /// [`TrackerHandle::subscribe`] gives the gate state; the first complete check follows
    /// immediately (wait for [`GateSnapshot::checked`]).
    ///
    /// A failed listing here is returned as the error (the caller decides whether to retry
    /// startup); after startup no Composio error ends the tracker. It runs until
    /// [`TrackerHandle::shutdown`] or until every handle is dropped.
    pub async fn start(
        client: ComposioClient,
        session_id: impl Into<String>,
        config: TrackerConfig,
    ) -> Result<TrackerHandle, TrackerError> {
        let session_id = session_id.into();
        let required = validate(&config)?;
        let listing = if required.is_empty() {
            Vec::new()
        } else {
            let query = ToolkitsQuery {
                limit: Some(LIST_PAGE_SIZE),
                toolkits: required.clone(),
                ..ToolkitsQuery::default()
            };
            client.list_toolkits(&session_id, &query).await?
        };
        let known: HashSet<String> = listing
            .iter()
            .map(|item| item.slug.to_ascii_lowercase())
            .collect();
        let unknown: Vec<String> = required
            .iter()
            .filter(|slug| !known.contains(*slug))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(TrackerError::UnknownToolkits(unknown));
        }

        let toolkits: Vec<Tracked> = required
            .iter()
            .map(|slug| {
                let item = listing
                    .iter()
                    .find(|item| item.slug.eq_ignore_ascii_case(slug));
                Tracked {
                    gate: ToolkitGate {
                        slug: slug.clone(),
                        name: item
                            .map(|item| item.name.clone())
                            .filter(|name| !name.is_empty())
                            .unwrap_or_else(|| slug.clone()),
                        logo: item.and_then(|item| item.meta.logo.clone()),
                        state: ToolkitState::Unknown,
                    },
                    link: None,
                    failed_until: None,
                    last_failure: None,
                }
            })
            .collect();
        let initial = GateSnapshot {
            open: toolkits.is_empty(),
            toolkits: toolkits
                .iter()
                .map(|tracked| tracked.gate.clone())
                .collect(),
            last_error: None,
            checked: false,
        };
        let (sender, receiver) = watch::channel(initial);
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let now = Instant::now();
        let worker = Worker {
            client,
            session_id,
            config,
            toolkits,
            sender,
            last_error: None,
            error_streak: 0,
            retry_at: now,
            last_full_check: now,
            last_full_check_started: now,
            last_poll: now,
        };
        let stop = cancel.clone();
        tokio::spawn(async move {
            // Shutdown wins even in the middle of a Composio call (which may be waiting out a
            // long Retry-After): the in-flight request is simply dropped.
            tokio::select! {
                biased;
                () = stop.cancelled() => {}
                () = worker.run(command_receiver, stop.clone(), listing) => {}
            }
        });
        Ok(TrackerHandle {
            commands,
            state: receiver,
            cancel,
        })
    }
}

/// Normalised required slugs (lowercase, deduplicated, order kept), or a config error.
fn validate(config: &TrackerConfig) -> Result<Vec<String>, TrackerError> {
    let durations = [
        ("pending_poll_interval", config.pending_poll_interval),
        ("reverify_interval", config.reverify_interval),
        ("link_lifetime", config.link_lifetime),
        ("error_backoff_initial", config.error_backoff_initial),
        ("error_backoff_max", config.error_backoff_max),
    ];
    for (name, value) in durations {
        if value.is_zero() {
            return Err(TrackerError::InvalidConfig(format!(
                "{name} must be greater than zero"
            )));
        }
    }
    if config.error_backoff_max < config.error_backoff_initial {
        return Err(TrackerError::InvalidConfig(
            "error_backoff_max must not be smaller than error_backoff_initial".to_owned(),
        ));
    }
    let mut seen = HashSet::new();
    let mut required = Vec::new();
    for slug in &config.required_toolkits {
        let slug = slug.trim().to_ascii_lowercase();
        let valid = !slug.is_empty()
            && slug
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(TrackerError::InvalidConfig(format!(
                "required toolkit {slug:?} is not a toolkit slug (letters, digits, _ and -)"
            )));
        }
        if seen.insert(slug.clone()) {
            required.push(slug);
        }
    }
    Ok(required)
}

/// Drives a running tracker. Cheap to clone.
#[derive(Clone)]
pub struct TrackerHandle {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<GateSnapshot>,
    cancel: CancellationToken,
}

impl fmt::Debug for TrackerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackerHandle")
            .field("stopped", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

enum Command {
    Check {
        reply: Option<oneshot::Sender<GateSnapshot>>,
    },
    Disconnect {
        toolkit: String,
        revoke: bool,
        reply: oneshot::Sender<Result<GateSnapshot, TrackerError>>,
    },
}

// === impl TrackerHandle ===

impl TrackerHandle {
    /// A receiver of the gate state; it sees every change from now on.
    pub fn subscribe(&self) -> watch::Receiver<GateSnapshot> {
        self.state.clone()
    }

    /// The current gate state.
    pub fn snapshot(&self) -> GateSnapshot {
        self.state.borrow().clone()
    }

    /// The OAuth callback arrived: re-check now instead of at the next poll. The hint carries
    /// no authority: only what Composio reports can mark a toolkit connected.
    pub fn hint(&self) {
        // A send error means the tracker stopped; there is nothing left to speed up.
        let _ = self.commands.send(Command::Check { reply: None });
    }

    /// The upstream rejected a call (e.g. a revoked connection): re-verify everything now.
    /// Bursts are coalesced into one check.
    pub fn upstream_rejected(&self) {
        let _ = self.commands.send(Command::Check { reply: None });
    }

    /// Re-checks now and returns the resulting state (what a callback page can show).
    pub async fn check_now(&self) -> Result<GateSnapshot, TrackerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Check { reply: Some(reply) })
            .map_err(|_| TrackerError::Stopped)?;
        answer.await.map_err(|_| TrackerError::Stopped)
    }

    /// Deletes the toolkit's connected account at Composio (also revoking the upstream
    /// credentials when `revoke`), then re-checks, which mints a fresh Connect Link.
    pub async fn disconnect(
        &self,
        toolkit: &str,
        revoke: bool,
    ) -> Result<GateSnapshot, TrackerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Disconnect {
                toolkit: toolkit.trim().to_ascii_lowercase(),
                revoke,
                reply,
            })
            .map_err(|_| TrackerError::Stopped)?;
        answer.await.map_err(|_| TrackerError::Stopped)?
    }

    /// Stops the tracker (idempotent). The watch keeps its last value.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Resolves once the tracker task has ended.
    pub async fn stopped(&self) {
        let mut state = self.state.clone();
        // `changed` fails only once the sender (owned by the task) is gone.
        while state.changed().await.is_ok() {}
    }
}

/// A minted Connect Link and its account.
struct PendingLink {
    account_id: String,
    /// When the tracker replaces it (tokio clock, so tests can pause time).
    deadline: Instant,
}

struct Tracked {
    gate: ToolkitGate,
    link: Option<PendingLink>,
    /// While set and in the future, a FAILED toolkit is shown as failed before re-minting.
    failed_until: Option<Instant>,
    /// Reason of the last FAILED attempt, carried into the next link's state.
    last_failure: Option<String>,
}

struct Worker {
    client: ComposioClient,
    session_id: String,
    config: TrackerConfig,
    toolkits: Vec<Tracked>,
    sender: watch::Sender<GateSnapshot>,
    last_error: Option<LastError>,
    /// Consecutive cycles with a failed call; drives the backoff.
    error_streak: u32,
    retry_at: Instant,
    /// When the last full check completed successfully (drives re-verification).
    last_full_check: Instant,
    /// When the last full check started, successful or not (drives hint spacing).
    last_full_check_started: Instant,
    last_poll: Instant,
}

// === impl Worker ===

impl Worker {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        cancel: CancellationToken,
        initial_listing: Vec<SessionToolkit>,
    ) {
        self.apply_listing(&initial_listing);
        let ok = self.step_links().await;
        self.finish_cycle(ok, true);
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Check { reply }) => {
                        let mut replies: Vec<oneshot::Sender<GateSnapshot>> = reply.into_iter().collect();
                        let earliest = self.last_full_check_started + self.config.min_check_spacing;
                        if Instant::now() < earliest {
                            tokio::select! {
                                biased;
                                () = cancel.cancelled() => break,
                                () = tokio::time::sleep_until(earliest) => {}
                            }
                        }
                        // Coalesce a burst of hints into one check; a queued disconnect runs after it.
                        let mut deferred = None;
                        while let Ok(next) = commands.try_recv() {
                            match next {
                                Command::Check { reply } => replies.extend(reply),
                                other => { deferred = Some(other); break; }
                            }
                        }
                        self.full_cycle().await;
                        let snapshot = self.sender.borrow().clone();
                        for reply in replies {
                            let _ = reply.send(snapshot.clone());
                        }
                        if let Some(Command::Disconnect { toolkit, revoke, reply }) = deferred {
                            let result = self.disconnect(&toolkit, revoke).await;
                            let _ = reply.send(result);
                        }
                    }
                    Some(Command::Disconnect { toolkit, revoke, reply }) => {
                        let result = self.disconnect(&toolkit, revoke).await;
                        let _ = reply.send(result);
                    }
                },
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    let full = self.error_streak > 0
                        || now >= self.last_full_check + self.config.reverify_interval;
                    if full {
                        self.full_cycle().await;
                    } else {
                        let ok = self.step_links().await;
                        self.finish_cycle(ok, false);
                    }
                }
            }
        }
        tracing::debug!(session_id = %self.session_id, "connection tracker stopped");
    }

    /// Listing plus link handling.
    async fn full_cycle(&mut self) {
        self.last_full_check_started = Instant::now();
        if self.toolkits.is_empty() {
            self.finish_cycle(true, true);
            return;
        }
        let query = ToolkitsQuery {
            limit: Some(LIST_PAGE_SIZE),
            toolkits: self
                .toolkits
                .iter()
                .map(|tracked| tracked.gate.slug.clone())
                .collect(),
            ..ToolkitsQuery::default()
        };
        match self.client.list_toolkits(&self.session_id, &query).await {
            Ok(listing) => {
                self.apply_listing(&listing);
                let ok = self.step_links().await;
                self.finish_cycle(ok, true);
            }
            Err(error) => {
                // Keep every state as it was: an outage must neither open nor close the gate.
                self.record_error(&error);
                self.finish_cycle(false, false);
            }
        }
    }

    /// Applies a toolkits listing: ACTIVE accounts connect, no-auth toolkits are satisfied,
    /// and a toolkit that is no longer ACTIVE drops out of Connected (a link follows).
    fn apply_listing(&mut self, listing: &[SessionToolkit]) {
        for tracked in &mut self.toolkits {
            let item = listing
                .iter()
                .find(|item| item.slug.eq_ignore_ascii_case(&tracked.gate.slug));
            let Some(item) = item else {
                if tracked.gate.state != ToolkitState::Unknown {
                    tracing::warn!(toolkit = %tracked.gate.slug, "toolkit missing from the Composio listing");
                }
                tracked.gate.state = ToolkitState::Unknown;
                tracked.link = None;
                continue;
            };
            if item.is_no_auth {
                tracked.gate.state = ToolkitState::NoAuth;
                tracked.link = None;
                continue;
            }
            match item
                .connected_account
                .as_ref()
                .filter(|account| account.status == AccountStatus::Active)
            {
                Some(account) => tracked.connect(&account.id),
                None => {
                    if matches!(
                        tracked.gate.state,
                        ToolkitState::Connected { .. } | ToolkitState::NoAuth
                    ) {
                        let status = item
                            .connected_account
                            .as_ref()
                            .map_or("no account", |account| account.status.as_str());
                        tracing::info!(toolkit = %tracked.gate.slug, status, "toolkit is no longer connected");
                        tracked.gate.state = ToolkitState::Unknown;
                    }
                }
            }
        }
    }

    /// Polls each pending link's account and mints links where one is needed. Returns false
    /// when any Composio call failed.
    async fn step_links(&mut self) -> bool {
        let mut ok = true;
        let now = Instant::now();
        self.last_poll = now;
        for index in 0..self.toolkits.len() {
            // Everything not satisfied needs a live link, including `Unknown` (a toolkit that
            // just dropped out of Connected); for a toolkit that vanished from the catalog the
            // mint fails and is recorded, which is the right signal.
            if self.toolkits[index].gate.state.is_satisfied() {
                continue;
            }
            if let Some(account_id) = self.toolkits[index]
                .link
                .as_ref()
                .map(|link| link.account_id.clone())
            {
                match self.client.get_connected_account(&account_id).await {
                    Ok(account) => {
                        let tracked = &mut self.toolkits[index];
                        match account.status {
                            AccountStatus::Active => {
                                tracked.connect(&account.id);
                                continue;
                            }
                            AccountStatus::Failed => {
                                let reason = account
                                    .status_reason
                                    .filter(|reason| !reason.trim().is_empty())
                                    .unwrap_or_else(|| "authorization failed".to_owned());
                                tracing::info!(toolkit = %tracked.gate.slug, %reason, "authorization failed");
                                tracked.gate.state = ToolkitState::Failed {
                                    reason: reason.clone(),
                                };
                                tracked.last_failure = Some(reason);
                                tracked.link = None;
                                tracked.failed_until = Some(now + self.config.failed_display);
                            }
                            AccountStatus::Expired | AccountStatus::Revoked => {
                                tracing::info!(toolkit = %tracked.gate.slug, status = %account.status, "connect link ended; minting a fresh one");
                                tracked.link = None;
                            }
                            _ => {
                                if tracked
                                    .link
                                    .as_ref()
                                    .is_some_and(|link| now >= link.deadline)
                                {
                                    tracing::info!(toolkit = %tracked.gate.slug, "connect link reached its lifetime; minting a fresh one");
                                    tracked.link = None;
                                }
                            }
                        }
                    }
                    Err(error) if error.is_not_found() => {
                        // The account was deleted behind our back: the link is useless.
                        self.toolkits[index].link = None;
                    }
                    Err(error) => {
                        self.record_error(&error);
                        ok = false;
                        continue;
                    }
                }
            }
            let tracked = &self.toolkits[index];
            let showing_failure = tracked.failed_until.is_some_and(|until| now < until);
            if tracked.link.is_some() || showing_failure {
                continue;
            }
            ok &= self.mint(index).await;
        }
        ok
    }

    /// Mints a Connect Link for toolkit `index`.
    async fn mint(&mut self, index: usize) -> bool {
        let request = LinkRequest {
            toolkit: self.toolkits[index].gate.slug.clone(),
            callback_url: self.config.callback_url.clone(),
            alias: None,
        };
        match self.client.authorize(&self.session_id, &request).await {
            Ok(link) => {
                let tracked = &mut self.toolkits[index];
                let lifetime = self.config.link_lifetime;
                let expires_at = Utc::now()
                    + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
                tracing::info!(toolkit = %tracked.gate.slug, connect_url = %link.redirect_url, "waiting for the user to connect");
                tracked.gate.state = ToolkitState::Pending {
                    connect_url: link.redirect_url,
                    expires_at,
                    previous_failure: tracked.last_failure.clone(),
                };
                tracked.failed_until = None;
                tracked.link = Some(PendingLink {
                    account_id: link.connected_account_id,
                    deadline: Instant::now() + lifetime,
                });
                true
            }
            Err(error) => {
                self.record_error(&error);
                let tracked = &mut self.toolkits[index];
                tracked.gate.state = ToolkitState::Failed {
                    reason: format!(
                        "no Connect Link could be created yet: {}",
                        self.client.scrub(error.to_string())
                    ),
                };
                false
            }
        }
    }

    async fn disconnect(
        &mut self,
        toolkit: &str,
        revoke: bool,
    ) -> Result<GateSnapshot, TrackerError> {
        let tracked = self
            .toolkits
            .iter()
            .find(|tracked| tracked.gate.slug == toolkit)
            .ok_or_else(|| TrackerError::NotTracked(toolkit.to_owned()))?;
        let ToolkitState::Connected { account_id } = &tracked.gate.state else {
            return Err(TrackerError::NotConnected(toolkit.to_owned()));
        };
        let account_id = account_id.clone();
        self.client
            .delete_connected_account(&account_id, revoke)
            .await?;
        tracing::info!(toolkit, account_id, revoke, "disconnected");
        self.full_cycle().await;
        Ok(self.sender.borrow().clone())
    }

    fn record_error(&mut self, error: &ComposioError) {
        let message = self.client.scrub(error.to_string());
        tracing::warn!(session_id = %self.session_id, fault = %error.fault(), error = %message, "Composio call failed; keeping the last known state");
        self.last_error = Some(LastError {
            message,
            fault: error.fault(),
            status: error.status().map(|status| status.as_u16()),
            at: Utc::now(),
        });
    }

    /// Publishes the state and schedules the next wake-up.
    fn finish_cycle(&mut self, ok: bool, full: bool) {
        let now = Instant::now();
        if ok {
            self.error_streak = 0;
            self.last_error = None;
            if full {
                self.last_full_check = now;
            }
        } else {
            self.error_streak = self.error_streak.saturating_add(1);
            self.retry_at = now + error_backoff(&self.config, self.error_streak);
        }
        let snapshot = GateSnapshot {
            open: self
                .toolkits
                .iter()
                .all(|tracked| tracked.gate.state.is_satisfied()),
            toolkits: self
                .toolkits
                .iter()
                .map(|tracked| tracked.gate.clone())
                .collect(),
            last_error: self.last_error.clone(),
            checked: true,
        };
        self.sender.send_if_modified(|current| {
            if *current == snapshot {
                false
            } else {
                *current = snapshot;
                true
            }
        });
    }

    fn next_wake(&self) -> Instant {
        if self.error_streak > 0 {
            return self.retry_at;
        }
        let mut wake = self.last_full_check + self.config.reverify_interval;
        for tracked in &self.toolkits {
            if let Some(link) = &tracked.link {
                wake = wake
                    .min(self.last_poll + self.config.pending_poll_interval)
                    .min(link.deadline);
            }
            if let Some(until) = tracked.failed_until {
                wake = wake.min(until);
            }
        }
        wake
    }
}

/// Delay before the next attempt after `streak` consecutive failed cycles (1 for the first):
/// `error_backoff_initial` doubling per failure, capped at `error_backoff_max`.
fn error_backoff(config: &TrackerConfig, streak: u32) -> Duration {
    let exponent = streak.saturating_sub(1).min(20);
    config
        .error_backoff_initial
        .saturating_mul(1u32 << exponent)
        .min(config.error_backoff_max)
}

impl Tracked {
    fn connect(&mut self, account_id: &str) {
        if !matches!(&self.gate.state, ToolkitState::Connected { account_id: current } if current == account_id)
        {
            tracing::info!(toolkit = %self.gate.slug, account_id, "toolkit connected");
        }
        self.gate.state = ToolkitState::Connected {
            account_id: account_id.to_owned(),
        };
        self.link = None;
        self.failed_until = None;
        self.last_failure = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        let mut config = TrackerConfig::new(["gmail"]);
        config.pending_poll_interval = Duration::ZERO;
        let error = validate(&config).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("pending_poll_interval")),
            "{error:?}"
        );
        let mut config = TrackerConfig::new(["gmail"]);
        config.error_backoff_max = Duration::from_millis(1);
        assert!(validate(&config).is_err());
        for bad in ["", "  ", "gm ail", "gmail/../x"] {
            assert!(
                validate(&TrackerConfig::new([bad])).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn error_backoff_doubles_up_to_the_cap() {
        let config = TrackerConfig::new(["gmail"]);
        let seconds: Vec<u64> = [1, 2, 3, 4, 5, 6, 7, 8, 100, u32::MAX]
            .into_iter()
            .map(|streak| error_backoff(&config, streak).as_secs())
            .collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }

    #[test]
    fn slugs_are_normalised_and_deduplicated() {
        let required = validate(&TrackerConfig::new([
            "GitHub", " gmail ", "github", "gmail",
        ]));
        assert_eq!(
            required.ok(),
            Some(vec!["github".to_owned(), "gmail".to_owned()])
        );
    }

    #[test]
    fn blocking_lists_unsatisfied_toolkits() {
        let gate = |slug: &str, state| ToolkitGate {
            slug: slug.to_owned(),
            name: slug.to_owned(),
            logo: None,
            state,
        };
        let snapshot = GateSnapshot {
            open: false,
            toolkits: vec![
                gate(
                    "gmail",
                    ToolkitState::Connected {
                        account_id: "ca_1".to_owned(),
                    },
                ),
                gate("hackernews", ToolkitState::NoAuth),
                gate(
                    "github",
                    ToolkitState::Failed {
                        reason: "denied".to_owned(),
                    },
                ),
                gate("slack", ToolkitState::Unknown),
            ],
            last_error: None,
            checked: true,
        };
        let blocking: Vec<&str> = snapshot.blocking().map(|t| t.slug.as_str()).collect();
        assert_eq!(blocking, ["github", "slack"]);
    }
}
