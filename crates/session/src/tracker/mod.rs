//! The connection tracker: turns Composio's view of the required toolkits into a
//! [`GateSnapshot`] published through a `tokio::sync::watch`, spending as few Composio calls
//! as the job allows.
//!
//! One background task owns all state and talks to Composio serially, so there are no races
//! between polls, hints and disconnects. What it does:
//! - At start, one toolkits listing filtered to the required slugs; slugs Composio does not
//!   know are a startup error naming them.
//! - **Links on demand.** A Connect Link is minted only when someone can use it: at start
//!   (unless [`TrackerConfig::mint_at_start`] is off, as for a read-only `status`), and on
//!   [`TrackerHandle::want_links`] (a blocked call, a page view, `connect`) or a check that a
//!   person triggered (callback, upstream rejection). Never on a timer with nobody waiting.
//! - A pending link's account is polled only while the link lives: every
//!   `pending_poll_interval` (1 s, the SDKs' cadence) for `pending_poll_fast_for`, then backing
//!   off to `pending_poll_max`. When the link runs out (or Composio expires it) polling stops
//!   and the toolkit shows [`ToolkitState::NeedsLink`] until someone needs a new one.
//! - ACTIVE → connected. FAILED → shown as failed for `failed_display`, then a fresh link (the
//!   user is at the browser right now). INACTIVE → [`ToolkitState::Disabled`], never replaced
//!   by a new link (Composio can re-enable it). A pinned account that is not ACTIVE →
//!   [`ToolkitState::PinnedUnusable`]: Composio refuses links for pinned toolkits, so asking
//!   again would only loop.
//! - While nothing is pending it re-verifies every `reverify_interval`, and at once on a hint.
//! - **A budget.** Timer-driven calls stay under `background_calls_per_minute` and pause while
//!   the organization's rate limit is nearly spent ([`crate::RateLimitView::pause`]).
//! - **Session loss.** A 404 for the session ends the tracker with
//!   [`GateSnapshot::session_lost`] set, so the owner can re-create the session.
//! - Only an ACTIVE status read from Composio marks a toolkit connected: a hint merely
//!   triggers a check. A failed call never changes a toolkit's state (the last known state is
//!   kept), is recorded as [`GateSnapshot::last_error`], and is retried with backoff.

mod budget;
mod worker;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::client::ComposioClient;
use crate::error::{ComposioError, Fault};
use crate::types::{AccountStatus, SessionToolkit, ToolkitsQuery};

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
    /// The session's user: needed to list every account of a toolkit (multi-account).
    pub user_id: Option<String>,
    /// Mint links for unconnected toolkits in the first check. Default true; a read-only
    /// status check turns it off.
    pub mint_at_start: bool,
    /// How often a fresh link's account is polled. Default 1 s (the SDKs' cadence).
    pub pending_poll_interval: Duration,
    /// How long a link is polled at `pending_poll_interval` before the interval doubles per
    /// poll. Default 2 min.
    pub pending_poll_fast_for: Duration,
    /// Cap of the backed-off poll interval. Default 30 s (the callback still triggers an
    /// immediate check).
    pub pending_poll_max: Duration,
    /// How often everything is re-verified. Default 5 min.
    pub reverify_interval: Duration,
    /// How long a minted Connect Link is offered and polled. Composio expires unfinished
    /// (INITIATED) accounts after about 10 minutes. Default 10 min.
    pub link_lifetime: Duration,
    /// How long a toolkit whose authorization FAILED is shown as failed before a fresh link is
    /// minted. Default 5 s.
    pub failed_display: Duration,
    /// Delay before retrying after a failed Composio call; doubles per consecutive failure.
    /// Default 1 s.
    pub error_backoff_initial: Duration,
    /// Cap of the error backoff. Default 60 s.
    pub error_backoff_max: Duration,
    /// Minimum time between the starts of two person-driven checks (hints, demands,
    /// [`TrackerHandle::check_now`]); requests arriving meanwhile are merged into one check.
    /// Bounds the Composio calls a flood of (possibly forged) callbacks can cause. Zero
    /// disables the spacing. Default 1 s.
    pub min_check_spacing: Duration,
    /// Ceiling on timer-driven Composio calls (polls, re-verification, retries) per minute.
    /// Person-driven calls are counted but not held back. Default 60.
    pub background_calls_per_minute: u32,
    /// Accounts the session pins per toolkit (`connected_accounts`): such toolkits never get
    /// a link (Composio refuses one).
    pub pinned_accounts: BTreeMap<String, Vec<String>>,
    /// White-label auth configs per toolkit (`auth_configs`), looked up once at start so the
    /// page can say whose OAuth app a link uses.
    pub auth_configs: BTreeMap<String, String>,
    /// The session allows several accounts per toolkit: list them all, offer another.
    pub multi_account: bool,
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
            user_id: None,
            mint_at_start: true,
            pending_poll_interval: Duration::from_secs(1),
            pending_poll_fast_for: Duration::from_secs(120),
            pending_poll_max: Duration::from_secs(30),
            reverify_interval: Duration::from_secs(300),
            link_lifetime: Duration::from_secs(600),
            failed_display: Duration::from_secs(5),
            error_backoff_initial: Duration::from_secs(1),
            error_backoff_max: Duration::from_secs(60),
            min_check_spacing: Duration::from_secs(1),
            background_calls_per_minute: 60,
            pinned_accounts: BTreeMap::new(),
            auth_configs: BTreeMap::new(),
            multi_account: false,
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
    /// Composio answered 404 for the session: the tracker has stopped, and the session must
    /// be re-created.
    pub session_lost: bool,
}

impl GateSnapshot {
    /// The toolkits that keep the gate closed.
    pub fn blocking(&self) -> impl Iterator<Item = &ToolkitGate> {
        self.toolkits
            .iter()
            .filter(|toolkit| !toolkit.state.is_satisfied())
    }

    /// The toolkit with this slug.
    pub fn toolkit(&self, slug: &str) -> Option<&ToolkitGate> {
        self.toolkits.iter().find(|toolkit| toolkit.slug == slug)
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
    /// The user's usable accounts for this toolkit (with multi-account, every one; else the
    /// one the session uses), the default first.
    pub accounts: Vec<AccountSummary>,
    /// Whose OAuth app the toolkit's links use, when known.
    pub auth: Option<AuthInfo>,
    /// A live link that adds another account (multi-account), when one was asked for.
    pub add_link: Option<String>,
}

/// One connected account of a toolkit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSummary {
    /// Account id (`ca_...`).
    pub id: String,
    /// Its status.
    pub status: AccountStatus,
    /// Its alias, when it has one.
    pub alias: Option<String>,
    /// The account the session uses when a call names none.
    pub is_default: bool,
}

/// The auth config (OAuth app) a toolkit's links use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    /// Auth config id (`ac_...`), when known.
    pub auth_config_id: Option<String>,
    /// Its display name, when known.
    pub name: Option<String>,
    /// True for Composio's own app, false for the project's ("your OAuth app").
    pub composio_managed: bool,
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
        /// When the link stops being offered and polled.
        expires_at: DateTime<Utc>,
        /// Why the previous attempt failed, when the link replaces a FAILED one.
        previous_failure: Option<String>,
    },
    /// Not connected and no live link: one is minted when someone needs it.
    NeedsLink {
        /// True when a link existed and ran out (or Composio expired it).
        expired: bool,
        /// Why the last attempt failed, if it did.
        previous_failure: Option<String>,
    },
    /// The last authorization failed (or no link could be minted).
    Failed {
        /// Composio's `status_reason`, or what went wrong.
        reason: String,
    },
    /// The session pins an account for this toolkit and it is not ACTIVE: nothing toolgate
    /// can do (Composio refuses links for pinned toolkits).
    PinnedUnusable {
        /// The pinned account (`ca_...`).
        account_id: String,
        /// Its status (e.g. `EXPIRED`), or `UNKNOWN` when Composio does not show it.
        status: AccountStatus,
    },
    /// The account is INACTIVE (disabled in Composio); it can become ACTIVE again, so no new
    /// link replaces it.
    Disabled {
        /// The disabled account (`ca_...`).
        account_id: String,
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
    /// The toolkit (or that account of it) has no connected account to disconnect.
    #[error("toolkit {0:?} is not connected")]
    NotConnected(String),
    /// Another account was asked for without multi-account, or for a pinned toolkit.
    #[error("cannot add another account for {0:?}: {1}")]
    CannotAdd(String, String),
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
    /// startup); after startup no Composio error ends the tracker, only a lost session. It
    /// runs until [`TrackerHandle::shutdown`] or until every handle is dropped.
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
        let auth = auth_infos(&client, &config).await;
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let worker = worker::Worker::new(client, session_id, config, &required, &listing, auth);
        let receiver = worker.subscribe();
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

/// The white-label auth configs' names and kinds (one call each, once). A failure is only
/// logged: the page then falls back to what the listing says.
async fn auth_infos(client: &ComposioClient, config: &TrackerConfig) -> BTreeMap<String, AuthInfo> {
    let mut infos = BTreeMap::new();
    for (slug, id) in &config.auth_configs {
        match client.get_auth_config(id).await {
            Ok(auth) => {
                infos.insert(
                    slug.to_ascii_lowercase(),
                    AuthInfo {
                        auth_config_id: Some(auth.id),
                        name: Some(auth.name).filter(|name| !name.is_empty()),
                        composio_managed: auth.is_composio_managed.unwrap_or(false),
                    },
                );
            }
            Err(error) => {
                tracing::warn!(toolkit = %slug, auth_config = %id, error = %client.scrub(error.to_string()), "could not read the auth config");
            }
        }
    }
    infos
}

/// Normalised required slugs (lowercase, deduplicated, order kept), or a config error.
fn validate(config: &TrackerConfig) -> Result<Vec<String>, TrackerError> {
    let durations = [
        ("pending_poll_interval", config.pending_poll_interval),
        ("pending_poll_max", config.pending_poll_max),
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
    if config.background_calls_per_minute == 0 {
        return Err(TrackerError::InvalidConfig(
            "background_calls_per_minute must be at least 1".to_owned(),
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

/// What a handle asks of the worker.
enum Command {
    /// Re-check now; with `demand`, also mint links where one is missing.
    Check {
        demand: bool,
        reply: Option<oneshot::Sender<GateSnapshot>>,
    },
    /// Is the session still there? (The upstream answered 404.)
    VerifySession,
    Disconnect {
        toolkit: String,
        account_id: Option<String>,
        revoke: bool,
        reply: oneshot::Sender<Result<GateSnapshot, TrackerError>>,
    },
    AddAccount {
        toolkit: String,
        reply: oneshot::Sender<Result<String, TrackerError>>,
    },
    LinkFor {
        toolkit: String,
        reply: oneshot::Sender<Result<String, TrackerError>>,
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

    fn send(&self, command: Command) {
        // A send error means the tracker stopped; there is nothing left to do.
        let _ = self.commands.send(command);
    }

    /// The OAuth callback arrived: re-check now instead of at the next poll, and offer a
    /// fresh link where one is missing (the user is at the browser). The hint carries no
    /// authority: only what Composio reports can mark a toolkit connected.
    pub fn hint(&self) {
        self.send(Command::Check {
            demand: true,
            reply: None,
        });
    }

    /// Someone can use a link now (a blocked call, a page view): mint links for toolkits that
    /// have none. Bursts are coalesced and spaced.
    pub fn want_links(&self) {
        self.send(Command::Check {
            demand: true,
            reply: None,
        });
    }

    /// The upstream rejected a call (a revoked connection, a missing one): re-verify now and
    /// mint links for what turned out not connected. Bursts are coalesced into one check.
    pub fn upstream_rejected(&self) {
        self.send(Command::Check {
            demand: true,
            reply: None,
        });
    }

    /// The session's MCP URL answered 404: ask Composio whether the session still exists (a
    /// 404 there ends the tracker with [`GateSnapshot::session_lost`]).
    pub fn verify_session(&self) {
        self.send(Command::VerifySession);
    }

    /// Re-checks now and returns the resulting state (what a callback page can show). Mints
    /// nothing.
    pub async fn check_now(&self) -> Result<GateSnapshot, TrackerError> {
        self.ask_check(false).await
    }

    /// Re-checks now, minting links where one is missing, and returns the resulting state
    /// (`connect`, `status --links`).
    pub async fn check_with_links(&self) -> Result<GateSnapshot, TrackerError> {
        self.ask_check(true).await
    }

    async fn ask_check(&self, demand: bool) -> Result<GateSnapshot, TrackerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Check {
                demand,
                reply: Some(reply),
            })
            .map_err(|_| TrackerError::Stopped)?;
        answer.await.map_err(|_| TrackerError::Stopped)
    }

    /// Deletes the toolkit's connected account at Composio (also revoking the upstream
    /// credentials when `revoke`), then re-checks. With `account_id`, that account of the
    /// toolkit (multi-account); else the one the session uses.
    pub async fn disconnect(
        &self,
        toolkit: &str,
        account_id: Option<&str>,
        revoke: bool,
    ) -> Result<GateSnapshot, TrackerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Disconnect {
                toolkit: toolkit.trim().to_ascii_lowercase(),
                account_id: account_id.map(str::to_owned),
                revoke,
                reply,
            })
            .map_err(|_| TrackerError::Stopped)?;
        answer.await.map_err(|_| TrackerError::Stopped)?
    }

    /// Mints a link that adds another account for `toolkit` (multi-account) and returns it;
    /// the tracker polls it like any pending link.
    pub async fn add_account(&self, toolkit: &str) -> Result<String, TrackerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::AddAccount {
                toolkit: toolkit.trim().to_ascii_lowercase(),
                reply,
            })
            .map_err(|_| TrackerError::Stopped)?;
        answer.await.map_err(|_| TrackerError::Stopped)?
    }

    /// A Connect Link for a toolkit this tracker does not track (a call to a toolkit outside
    /// the required ones met a missing connection). Reused while it lives, so a model calling
    /// again and again does not mint a link each time.
    pub async fn link_for(&self, toolkit: &str) -> Result<String, TrackerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::LinkFor {
                toolkit: toolkit.trim().to_ascii_lowercase(),
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

/// The listing item of `slug`, if Composio listed it.
fn listed<'a>(listing: &'a [SessionToolkit], slug: &str) -> Option<&'a SessionToolkit> {
    listing
        .iter()
        .find(|item| item.slug.eq_ignore_ascii_case(slug))
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
        let mut config = TrackerConfig::new(["gmail"]);
        config.background_calls_per_minute = 0;
        assert!(validate(&config).is_err());
        for bad in ["", "  ", "gm ail", "gmail/../x"] {
            assert!(
                validate(&TrackerConfig::new([bad])).is_err(),
                "{bad:?} accepted"
            );
        }
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
            accounts: Vec::new(),
            auth: None,
            add_link: None,
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
                gate(
                    "notion",
                    ToolkitState::Disabled {
                        account_id: "ca_2".to_owned(),
                    },
                ),
            ],
            last_error: None,
            checked: true,
            session_lost: false,
        };
        let blocking: Vec<&str> = snapshot.blocking().map(|t| t.slug.as_str()).collect();
        assert_eq!(blocking, ["github", "slack", "notion"]);
    }
}
