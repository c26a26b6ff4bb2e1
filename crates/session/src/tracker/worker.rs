//! The tracker's background task: owns every toolkit's state, decides which Composio call
//! to make next, and publishes snapshots. See the parent module for the rules it follows.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::budget::Budget;
use super::{
    AccountSummary, AuthInfo, Command, GateSnapshot, LIST_PAGE_SIZE, LastError, ToolkitGate,
    ToolkitState, TrackerConfig, TrackerError, listed,
};
use crate::client::ComposioClient;
use crate::error::ComposioError;
use crate::types::{
    AccountStatus, AccountsQuery, ConnectedAccount, LinkRequest, SessionToolkit, ToolkitsQuery,
};

/// A minted Connect Link and its account.
struct PendingLink {
    account_id: String,
    /// When the link stops being offered and polled (tokio clock, so tests can pause time).
    deadline: Instant,
    minted_at: Instant,
    next_poll: Instant,
    interval: Duration,
}

impl PendingLink {
    fn new(account_id: String, config: &TrackerConfig) -> Self {
        let now = Instant::now();
        Self {
            account_id,
            deadline: now + config.link_lifetime,
            minted_at: now,
            next_poll: now + config.pending_poll_interval,
            interval: config.pending_poll_interval,
        }
    }

    /// Schedules the next poll: the SDKs' 1 s at first, then doubling up to the cap, because
    /// a link nobody opened in the first minutes is unlikely to be opened in the next second
    /// (and the callback triggers an immediate check anyway).
    fn reschedule(&mut self, now: Instant, config: &TrackerConfig) {
        if now.saturating_duration_since(self.minted_at) >= config.pending_poll_fast_for {
            self.interval = self
                .interval
                .saturating_mul(2)
                .min(config.pending_poll_max)
                .max(config.pending_poll_interval);
        }
        self.next_poll = now + self.interval;
    }
}

struct Tracked {
    gate: ToolkitGate,
    link: Option<PendingLink>,
    /// A link adding another account (multi-account).
    extra: Option<PendingLink>,
    /// When a FAILED toolkit gets its fresh link (the user just answered the consent page).
    remint_at: Option<Instant>,
    /// Reason of the last FAILED attempt, carried into the next link's state.
    last_failure: Option<String>,
    /// Accounts the session pins for this toolkit.
    pinned: Vec<String>,
    /// The account the toolkits listing shows (the session's default), with its status.
    shown: Option<(String, AccountStatus)>,
}

/// How one step of work ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Done,
    /// A Composio call failed (recorded); the cycle is retried with backoff.
    Failed,
    /// The budget says wait: stop this cycle, resume when it frees.
    Held,
}

pub(super) struct Worker {
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
    /// When the last person-driven check started (drives their spacing).
    last_check_started: Instant,
    budget: Budget,
    /// Timer-driven work waits until then (budget or rate limit).
    hold_until: Option<Instant>,
    /// Someone can use a link: mint where one is missing in the next step.
    demand: bool,
    /// The current work was started by the timer (subject to the budget), not a person.
    background: bool,
    /// A refused request (4xx) left an error to show even though the cycle is complete.
    sticky_error: bool,
    /// Links minted for toolkits outside the required ones: slug → (URL, when it runs out).
    other_links: BTreeMap<String, (String, Instant)>,
    session_lost: bool,
}

// === impl Worker ===

impl Worker {
    pub(super) fn new(
        client: ComposioClient,
        session_id: String,
        config: TrackerConfig,
        required: &[String],
        listing: &[SessionToolkit],
        mut auth: BTreeMap<String, AuthInfo>,
    ) -> Self {
        let toolkits: Vec<Tracked> = required
            .iter()
            .map(|slug| {
                let item = listed(listing, slug);
                Tracked {
                    gate: ToolkitGate {
                        slug: slug.clone(),
                        name: item
                            .map(|item| item.name.clone())
                            .filter(|name| !name.is_empty())
                            .unwrap_or_else(|| slug.clone()),
                        logo: item.and_then(|item| item.meta.logo.clone()),
                        state: ToolkitState::Unknown,
                        accounts: Vec::new(),
                        auth: auth.remove(slug),
                        add_link: None,
                    },
                    link: None,
                    extra: None,
                    remint_at: None,
                    last_failure: None,
                    pinned: pins_for(&config, slug),
                    shown: None,
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
            session_lost: false,
        };
        let now = Instant::now();
        Self {
            budget: Budget::new(config.background_calls_per_minute),
            client,
            session_id,
            config,
            toolkits,
            sender: watch::channel(initial).0,
            last_error: None,
            error_streak: 0,
            retry_at: now,
            last_full_check: now,
            last_check_started: now,
            hold_until: None,
            demand: false,
            background: false,
            sticky_error: false,
            other_links: BTreeMap::new(),
            session_lost: false,
        }
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<GateSnapshot> {
        self.sender.subscribe()
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        cancel: CancellationToken,
        initial_listing: Vec<SessionToolkit>,
    ) {
        self.budget.spend(Instant::now());
        self.apply_listing(&initial_listing);
        self.demand = self.config.mint_at_start;
        let mut ok = self.refresh_accounts().await;
        ok &= self.step_links().await;
        self.finish_cycle(ok, true);
        while !self.session_lost {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if !self.command(command, &mut commands, &cancel).await {
                        break;
                    }
                }
                () = tokio::time::sleep_until(wake) => self.tick().await,
            }
        }
        tracing::debug!(session_id = %self.session_id, lost = self.session_lost, "connection tracker stopped");
    }

    /// Handles one command (merging queued checks into it); false when cancelled.
    async fn command(
        &mut self,
        command: Command,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        cancel: &CancellationToken,
    ) -> bool {
        self.background = false;
        let Command::Check { demand, reply } = command else {
            if matches!(command, Command::VerifySession) && !self.wait_spacing(cancel).await {
                return false;
            }
            self.action(command).await;
            return true;
        };
        let mut replies: Vec<oneshot::Sender<GateSnapshot>> = reply.into_iter().collect();
        let mut demand = demand;
        if !self.wait_spacing(cancel).await {
            return false;
        }
        // Coalesce a burst into one check; other queued commands run after it, in order.
        let mut deferred = Vec::new();
        while let Ok(next) = commands.try_recv() {
            match next {
                Command::Check {
                    demand: more,
                    reply,
                } => {
                    demand |= more;
                    replies.extend(reply);
                }
                other => deferred.push(other),
            }
        }
        self.demand |= demand;
        self.full_cycle().await;
        let snapshot = self.sender.borrow().clone();
        for reply in replies {
            let _ = reply.send(snapshot.clone());
        }
        for other in deferred {
            if self.session_lost {
                break;
            }
            self.action(other).await;
        }
        true
    }

    /// Every command but a check.
    async fn action(&mut self, command: Command) {
        self.background = false;
        match command {
            Command::Check { .. } => {}
            Command::VerifySession => {
                self.last_check_started = Instant::now();
                if !self.session_exists().await {
                    self.lose_session();
                }
            }
            Command::Disconnect {
                toolkit,
                account_id,
                revoke,
                reply,
            } => {
                let result = self.disconnect(&toolkit, account_id, revoke).await;
                let _ = reply.send(result);
            }
            Command::AddAccount { toolkit, reply } => {
                let result = self.add_account(&toolkit).await;
                let _ = reply.send(result);
            }
            Command::LinkFor { toolkit, reply } => {
                let result = self.link_for(&toolkit).await;
                let _ = reply.send(result);
            }
        }
    }

    /// Waits out the spacing between person-driven checks; false when cancelled meanwhile.
    async fn wait_spacing(&mut self, cancel: &CancellationToken) -> bool {
        let earliest = self.last_check_started + self.config.min_check_spacing;
        if Instant::now() < earliest {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep_until(earliest) => {}
            }
        }
        self.last_check_started = Instant::now();
        true
    }

    /// A timer wake-up: re-verify when due (or retrying), else poll the links that are due.
    async fn tick(&mut self) {
        let now = Instant::now();
        self.background = true;
        if self.hold_until.is_some_and(|until| now >= until) {
            self.hold_until = None;
        }
        let full =
            self.error_streak > 0 || now >= self.last_full_check + self.config.reverify_interval;
        if full {
            self.full_cycle().await;
        } else {
            let ok = self.step_links().await;
            self.finish_cycle(ok, false);
        }
    }

    /// May a call be made now? Timer-driven calls respect the ceiling and the rate limit;
    /// every call is counted.
    fn may_call(&mut self) -> bool {
        let now = Instant::now();
        if self.background {
            let hold = self
                .client
                .rate_limit()
                .pause
                .map(|pause| now + pause)
                .or_else(|| self.budget.next_free(now));
            if let Some(until) = hold {
                tracing::debug!(session_id = %self.session_id, wait_ms = until.saturating_duration_since(now).as_millis() as u64, "background Composio calls paused by the budget");
                self.hold_until = Some(self.hold_until.map_or(until, |held| held.max(until)));
                return false;
            }
        }
        self.budget.spend(now);
        true
    }

    /// Listing, account refresh and link handling.
    async fn full_cycle(&mut self) {
        if self.toolkits.is_empty() {
            self.finish_cycle(true, true);
            return;
        }
        if !self.may_call() {
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
                let mut ok = self.refresh_accounts().await;
                ok &= self.step_links().await;
                self.finish_cycle(ok, true);
            }
            Err(error) if error.is_not_found() => {
                self.record_error(&error);
                self.lose_session();
            }
            Err(error) => {
                // Keep every state as it was: an outage must neither open nor close the gate.
                self.record_error(&error);
                self.finish_cycle(false, false);
            }
        }
    }

    /// Applies a toolkits listing: ACTIVE accounts connect, no-auth toolkits are satisfied,
    /// pinned and INACTIVE accounts get their own states, anything else needs a link.
    fn apply_listing(&mut self, listing: &[SessionToolkit]) {
        let multi = self.config.multi_account;
        for tracked in &mut self.toolkits {
            let Some(item) = listed(listing, &tracked.gate.slug) else {
                if tracked.gate.state != ToolkitState::Unknown {
                    tracing::warn!(toolkit = %tracked.gate.slug, "toolkit missing from the Composio listing");
                }
                tracked.gate.state = ToolkitState::Unknown;
                tracked.link = None;
                continue;
            };
            if tracked.gate.auth.is_none() {
                tracked.gate.auth = listed_auth(item);
            }
            if item.is_no_auth {
                tracked.gate.state = ToolkitState::NoAuth;
                tracked.link = None;
                continue;
            }
            let account = item.connected_account.as_ref();
            tracked.shown = account.map(|account| (account.id.clone(), account.status.clone()));
            if !multi {
                tracked.gate.accounts = tracked.shown_summary().into_iter().collect();
            }
            tracked.apply_account(account.map(|account| (&account.id, &account.status)));
        }
    }

    /// With multi-account, every usable account of each toolkit (one listing call).
    async fn refresh_accounts(&mut self) -> bool {
        let Some(user_id) = self
            .config
            .user_id
            .clone()
            .filter(|_| self.config.multi_account)
        else {
            return true;
        };
        if !self.may_call() {
            return true;
        }
        let query = AccountsQuery {
            user_ids: vec![user_id],
            toolkit_slugs: self
                .toolkits
                .iter()
                .map(|tracked| tracked.gate.slug.clone())
                .collect(),
            ..AccountsQuery::default()
        };
        match self.client.list_connected_accounts(&query).await {
            Ok(accounts) => {
                for tracked in &mut self.toolkits {
                    tracked.gate.accounts = tracked.summaries(&accounts);
                }
                true
            }
            Err(error) => {
                self.record_error(&error);
                false
            }
        }
    }

    /// Polls the links that are due and mints the ones someone can use. Returns false when
    /// any Composio call failed.
    async fn step_links(&mut self) -> bool {
        let demand = std::mem::take(&mut self.demand);
        let mut ok = true;
        // The most overdue link first, so a tight budget is shared fairly between toolkits.
        let mut order: Vec<usize> = (0..self.toolkits.len()).collect();
        order.sort_by_key(|index| {
            self.toolkits[*index]
                .link
                .as_ref()
                .map(|link| link.next_poll)
        });
        for index in order {
            for extra in [false, true] {
                match self.poll_link(index, extra).await {
                    Step::Held => {
                        self.demand |= demand;
                        return ok;
                    }
                    Step::Failed => ok = false,
                    Step::Done => {}
                }
            }
            if self.wants_link(index, demand) {
                match self.mint(index).await {
                    Step::Held => {
                        self.demand |= demand;
                        return ok;
                    }
                    Step::Failed => {
                        // Try again with the retry: the person who asked is still waiting.
                        self.demand |= demand;
                        ok = false;
                    }
                    Step::Done => {}
                }
            }
            if self.session_lost {
                return false;
            }
        }
        ok
    }

    /// Polls the toolkit's link (or its add-another-account link) when due.
    async fn poll_link(&mut self, index: usize, extra: bool) -> Step {
        let now = Instant::now();
        let tracked = &self.toolkits[index];
        let Some(link) = (if extra { &tracked.extra } else { &tracked.link }) else {
            return Step::Done;
        };
        if now >= link.deadline {
            self.toolkits[index].link_ran_out(extra, "reached its lifetime");
            return Step::Done;
        }
        if self.background && now < link.next_poll {
            return Step::Done;
        }
        let account_id = link.account_id.clone();
        if !self.may_call() {
            return Step::Held;
        }
        match self.client.get_connected_account(&account_id).await {
            Ok(account) => {
                self.apply_poll(index, extra, account);
                Step::Done
            }
            Err(error) if error.is_not_found() => {
                self.toolkits[index].link_ran_out(extra, "its account was deleted");
                Step::Done
            }
            Err(error) => {
                self.record_error(&error);
                Step::Failed
            }
        }
    }

    fn apply_poll(&mut self, index: usize, extra: bool, account: ConnectedAccount) {
        let now = Instant::now();
        let config = &self.config;
        let tracked = &mut self.toolkits[index];
        if extra {
            if account.status == AccountStatus::Active {
                tracing::info!(toolkit = %tracked.gate.slug, account_id = %account.id, "another account connected");
                let known = tracked
                    .gate
                    .accounts
                    .iter()
                    .any(|known| known.id == account.id);
                if !known {
                    tracked.gate.accounts.push(AccountSummary {
                        id: account.id,
                        status: account.status,
                        alias: account.alias,
                        is_default: false,
                    });
                }
                tracked.extra = None;
                tracked.gate.add_link = None;
            } else if account.status.is_terminal_failure() {
                tracked.link_ran_out(true, account.status.as_str());
            } else if let Some(link) = &mut tracked.extra {
                link.reschedule(now, config);
            }
            return;
        }
        match account.status {
            AccountStatus::Active => tracked.connect(&account.id),
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
                tracked.remint_at = Some(now + config.failed_display);
            }
            AccountStatus::Expired | AccountStatus::Revoked => {
                tracked.link_ran_out(false, account.status.as_str());
            }
            AccountStatus::Inactive => {
                tracked.link = None;
                tracked.gate.state = ToolkitState::Disabled {
                    account_id: account.id,
                };
            }
            _ => {
                if let Some(link) = &mut tracked.link {
                    link.reschedule(now, config);
                }
            }
        }
    }

    /// Whether toolkit `index` should get a link now.
    fn wants_link(&self, index: usize, demand: bool) -> bool {
        let tracked = &self.toolkits[index];
        if tracked.link.is_some() || !tracked.pinned.is_empty() {
            return false;
        }
        match &tracked.gate.state {
            ToolkitState::NeedsLink { .. } | ToolkitState::Unknown => demand,
            ToolkitState::Failed { .. } => match tracked.remint_at {
                Some(at) => Instant::now() >= at,
                None => demand,
            },
            _ => false,
        }
    }

    /// Mints a Connect Link for toolkit `index`.
    async fn mint(&mut self, index: usize) -> Step {
        if !self.may_call() {
            return Step::Held;
        }
        self.toolkits[index].remint_at = None;
        let request = LinkRequest {
            toolkit: self.toolkits[index].gate.slug.clone(),
            callback_url: self.config.callback_url.clone(),
            alias: None,
        };
        match self.client.authorize(&self.session_id, &request).await {
            Ok(link) => {
                let lifetime = self.config.link_lifetime;
                let tracked = &mut self.toolkits[index];
                let expires_at = Utc::now()
                    + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
                tracing::info!(toolkit = %tracked.gate.slug, connect_url = %link.redirect_url, "waiting for the user to connect");
                tracked.gate.state = ToolkitState::Pending {
                    connect_url: link.redirect_url,
                    expires_at,
                    previous_failure: tracked.last_failure.clone(),
                };
                tracked.link = Some(PendingLink::new(link.connected_account_id, &self.config));
                Step::Done
            }
            Err(error) => self.mint_failed(index, &error).await,
        }
    }

    /// A refused link: a lost session, a pinned toolkit, a toolkit without an auth config, or
    /// trouble worth retrying.
    async fn mint_failed(&mut self, index: usize, error: &ComposioError) -> Step {
        self.record_error(error);
        let text = self.client.scrub(error.to_string());
        if error.is_not_found() && !self.session_exists().await {
            self.lose_session();
            return Step::Failed;
        }
        let tracked = &mut self.toolkits[index];
        let already_defined = error.status().map(|status| status.as_u16()) == Some(400)
            && text.to_ascii_lowercase().contains("already defined");
        if already_defined {
            // The session pins an account we were not told about: asking again would loop.
            let (account_id, status) = tracked.shown.clone().unwrap_or_else(|| {
                (
                    "(pinned)".to_owned(),
                    AccountStatus::Unknown("UNKNOWN".to_owned()),
                )
            });
            // Remember the pin, so no later demand asks again.
            tracked.pinned = vec![account_id.clone()];
            tracked.gate.state = ToolkitState::PinnedUnusable { account_id, status };
            self.sticky_error = true;
            return Step::Done;
        }
        tracked.gate.state = ToolkitState::Failed {
            reason: format!("no Connect Link could be created: {text}"),
        };
        if error.is_retryable() {
            Step::Failed
        } else {
            self.sticky_error = true;
            Step::Done
        }
    }

    /// Whether Composio still has the session (anything but a 404 counts as yes).
    async fn session_exists(&mut self) -> bool {
        self.budget.spend(Instant::now());
        !matches!(
            self.client.get_session(&self.session_id).await,
            Err(error) if error.is_not_found()
        )
    }

    fn lose_session(&mut self) {
        tracing::warn!(session_id = %self.session_id, "Composio no longer knows the session");
        self.session_lost = true;
        self.finish_cycle(false, false);
    }

    async fn disconnect(
        &mut self,
        toolkit: &str,
        account_id: Option<String>,
        revoke: bool,
    ) -> Result<GateSnapshot, TrackerError> {
        let tracked = self
            .toolkits
            .iter()
            .find(|tracked| tracked.gate.slug == toolkit)
            .ok_or_else(|| TrackerError::NotTracked(toolkit.to_owned()))?;
        let current = match &tracked.gate.state {
            ToolkitState::Connected { account_id } => Some(account_id.clone()),
            _ => None,
        };
        let account_id = match account_id {
            Some(id) if tracked.gate.accounts.iter().any(|account| account.id == id) => id,
            Some(id) if current.as_deref() == Some(id.as_str()) => id,
            Some(_) => return Err(TrackerError::NotConnected(toolkit.to_owned())),
            None => current.ok_or_else(|| TrackerError::NotConnected(toolkit.to_owned()))?,
        };
        self.budget.spend(Instant::now());
        self.client
            .delete_connected_account(&account_id, revoke)
            .await?;
        tracing::info!(toolkit, account_id, revoke, "disconnected");
        self.full_cycle().await;
        Ok(self.sender.borrow().clone())
    }

    async fn add_account(&mut self, toolkit: &str) -> Result<String, TrackerError> {
        let Some(index) = self
            .toolkits
            .iter()
            .position(|tracked| tracked.gate.slug == toolkit)
        else {
            return Err(TrackerError::NotTracked(toolkit.to_owned()));
        };
        let cannot = |why: &str| TrackerError::CannotAdd(toolkit.to_owned(), why.to_owned());
        if !self.config.multi_account {
            return Err(cannot(
                "multi-account is off (session.multi_account.enable)",
            ));
        }
        if !self.toolkits[index].pinned.is_empty() {
            return Err(cannot("the session pins this toolkit's accounts"));
        }
        if let Some(url) = &self.toolkits[index].gate.add_link {
            return Ok(url.clone());
        }
        self.budget.spend(Instant::now());
        let request = LinkRequest {
            toolkit: toolkit.to_owned(),
            callback_url: self.config.callback_url.clone(),
            alias: None,
        };
        let link = self.client.authorize(&self.session_id, &request).await?;
        let tracked = &mut self.toolkits[index];
        tracked.extra = Some(PendingLink::new(link.connected_account_id, &self.config));
        tracked.gate.add_link = Some(link.redirect_url.clone());
        self.finish_cycle(true, false);
        Ok(link.redirect_url)
    }

    async fn link_for(&mut self, toolkit: &str) -> Result<String, TrackerError> {
        let now = Instant::now();
        self.other_links.retain(|_, (_, until)| *until > now);
        if let Some((url, _)) = self.other_links.get(toolkit) {
            return Ok(url.clone());
        }
        self.budget.spend(now);
        let request = LinkRequest {
            toolkit: toolkit.to_owned(),
            callback_url: self.config.callback_url.clone(),
            alias: None,
        };
        let link = self.client.authorize(&self.session_id, &request).await?;
        tracing::info!(toolkit, connect_url = %link.redirect_url, "a toolkit outside `require` needs connecting");
        self.other_links.insert(
            toolkit.to_owned(),
            (link.redirect_url.clone(), now + self.config.link_lifetime),
        );
        Ok(link.redirect_url)
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

    /// Publishes the state and schedules the next retry after a failure.
    fn finish_cycle(&mut self, ok: bool, full: bool) {
        let now = Instant::now();
        if ok {
            self.error_streak = 0;
            if !std::mem::take(&mut self.sticky_error) {
                self.last_error = None;
            }
            if full {
                self.last_full_check = now;
            }
        } else if !self.session_lost {
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
            session_lost: self.session_lost,
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
        let mut wake = if self.error_streak > 0 {
            self.retry_at
        } else {
            let mut wake = self.last_full_check + self.config.reverify_interval;
            for tracked in &self.toolkits {
                for link in [&tracked.link, &tracked.extra].into_iter().flatten() {
                    wake = wake.min(link.next_poll).min(link.deadline);
                }
                if let Some(at) = tracked.remint_at {
                    wake = wake.min(at);
                }
            }
            wake
        };
        if let Some(hold) = self.hold_until {
            wake = wake.max(hold);
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

/// The session's pins for `slug`, matched case-insensitively.
fn pins_for(config: &TrackerConfig, slug: &str) -> Vec<String> {
    config
        .pinned_accounts
        .iter()
        .filter(|(pinned, _)| pinned.eq_ignore_ascii_case(slug))
        .flat_map(|(_, ids)| ids.iter().cloned())
        .collect()
}

/// Whose OAuth app the listing says the toolkit uses.
fn listed_auth(item: &SessionToolkit) -> Option<AuthInfo> {
    let from_account = item
        .connected_account
        .as_ref()
        .and_then(|account| account.auth_config.as_ref())
        .map(|auth| AuthInfo {
            auth_config_id: Some(auth.id.clone()),
            name: None,
            composio_managed: auth.is_composio_managed.unwrap_or(false),
        });
    from_account.or_else(|| {
        (!item.is_no_auth).then_some(AuthInfo {
            auth_config_id: None,
            name: None,
            composio_managed: !item.composio_managed_auth_schemes.is_empty(),
        })
    })
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
        self.remint_at = None;
        self.last_failure = None;
    }

    /// The state for the account the listing shows (`None`: no account at all).
    fn apply_account(&mut self, account: Option<(&String, &AccountStatus)>) {
        match account {
            Some((id, AccountStatus::Active)) => self.connect(id),
            _ if !self.pinned.is_empty() => {
                self.link = None;
                let (account_id, status) = match account {
                    Some((id, status)) => (id.clone(), status.clone()),
                    None => (
                        self.pinned[0].clone(),
                        AccountStatus::Unknown("NOT FOUND".to_owned()),
                    ),
                };
                if !matches!(&self.gate.state, ToolkitState::PinnedUnusable { .. }) {
                    tracing::warn!(toolkit = %self.gate.slug, %account_id, %status, "the pinned account is not ACTIVE");
                }
                self.gate.state = ToolkitState::PinnedUnusable { account_id, status };
            }
            Some((id, AccountStatus::Inactive)) if self.link.is_none() => {
                self.gate.state = ToolkitState::Disabled {
                    account_id: id.clone(),
                };
            }
            _ => {
                if self.link.is_some()
                    || matches!(
                        self.gate.state,
                        ToolkitState::NeedsLink { .. } | ToolkitState::Failed { .. }
                    )
                {
                    return;
                }
                if self.gate.state.is_satisfied() {
                    tracing::info!(toolkit = %self.gate.slug, "toolkit is no longer connected");
                }
                self.gate.state = ToolkitState::NeedsLink {
                    expired: false,
                    previous_failure: self.last_failure.clone(),
                };
            }
        }
    }

    /// The link stopped being usable: stop polling it and wait until someone needs a new one.
    fn link_ran_out(&mut self, extra: bool, why: &str) {
        if extra {
            self.extra = None;
            self.gate.add_link = None;
            return;
        }
        tracing::info!(toolkit = %self.gate.slug, why, "connect link expired; a new one is made when needed");
        self.link = None;
        self.gate.state = ToolkitState::NeedsLink {
            expired: true,
            previous_failure: self.last_failure.clone(),
        };
    }

    /// The listing's account as the only one (without multi-account).
    fn shown_summary(&self) -> Option<AccountSummary> {
        let (id, status) = self.shown.clone()?;
        matches!(status, AccountStatus::Active | AccountStatus::Inactive).then(|| AccountSummary {
            is_default: status == AccountStatus::Active,
            id,
            status,
            alias: None,
        })
    }

    /// Every usable account of this toolkit in `accounts`, the session's default first.
    fn summaries(&self, accounts: &[ConnectedAccount]) -> Vec<AccountSummary> {
        let default = self
            .shown
            .as_ref()
            .filter(|(_, status)| *status == AccountStatus::Active)
            .map(|(id, _)| id.as_str());
        let mut summaries: Vec<AccountSummary> = accounts
            .iter()
            .filter(|account| {
                account
                    .toolkit
                    .as_ref()
                    .is_some_and(|toolkit| toolkit.slug.eq_ignore_ascii_case(&self.gate.slug))
            })
            .filter(|account| {
                matches!(
                    account.status,
                    AccountStatus::Active | AccountStatus::Inactive
                )
            })
            .map(|account| AccountSummary {
                id: account.id.clone(),
                status: account.status.clone(),
                alias: account.alias.clone(),
                is_default: Some(account.id.as_str()) == default,
            })
            .collect();
        summaries.sort_by_key(|summary| !summary.is_default);
        summaries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_backoff_doubles_up_to_the_cap() {
        let config = TrackerConfig::new(["gmail"]);
        let seconds: Vec<u64> = [1, 2, 3, 4, 5, 6, 7, 8, 100, u32::MAX]
            .into_iter()
            .map(|streak| error_backoff(&config, streak).as_secs())
            .collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }

    #[tokio::test(start_paused = true)]
    async fn polls_back_off_after_the_fast_phase() {
        let config = TrackerConfig::new(["gmail"]);
        let mut link = PendingLink::new("ca_1".to_owned(), &config);
        let mut intervals = Vec::new();
        for _ in 0..130 {
            tokio::time::sleep_until(link.next_poll).await;
            link.reschedule(Instant::now(), &config);
            intervals.push(link.interval.as_secs());
        }
        // 1 s for the first two minutes, then 2, 4, 8, 16 and 30 s.
        assert!(intervals[..118].iter().all(|seconds| *seconds == 1));
        assert_eq!(&intervals[119..125], &[2, 4, 8, 16, 30, 30]);
    }
}
