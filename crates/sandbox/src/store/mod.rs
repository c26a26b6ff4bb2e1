//! The sandbox's in-memory state: sessions, connected accounts and their Connect Links, per
//! project (one project per accepted API key), plus the JSON shapes the REST API returns.
//!
//! Everything lives behind one `std::sync::Mutex`; no lock is held across an `.await`.
//! INITIATED accounts expire lazily: every operation first moves accounts whose link is older
//! than the TTL to EXPIRED, comparing `tokio::time::Instant`s so tests can use a paused clock.
//!
//! Which account a session's toolkit listing shows (the real API leaves it unspecified): the
//! account pinned for that toolkit in the session's `connected_accounts`, if any; otherwise
//! the user's newest ACTIVE account for the toolkit, otherwise the user's newest account in
//! any status. Deleted accounts never show.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use http::StatusCode;
use rand::Rng as _;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use self::queries::{AccountQuery, LinkRequest, ToolkitQuery};
use crate::catalog::{self, Toolkit};
use crate::config::{self, SessionConfig, ToolkitFilter};
use crate::http::ApiError;
use crate::mcp::{McpWorld, SessionView};

mod auth_configs;
mod queries;

pub(crate) use self::auth_configs::CustomAuthConfig;

/// How long a new account stays INITIALIZING before it is INITIATED (Composio creates the
/// account first and attaches the link's state a moment later).
const INITIALIZING_FOR: Duration = Duration::from_millis(100);

/// A project: the index of its API key in the configured key list (the key itself is never
/// stored in the state, so no Debug output can leak it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ProjectId(pub(crate) usize);

/// Connected account statuses, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Initializing,
    Initiated,
    Active,
    Failed,
    Expired,
    Inactive,
    Revoked,
}

impl Status {
    const ALL: [Self; 7] = [
        Self::Initializing,
        Self::Initiated,
        Self::Active,
        Self::Failed,
        Self::Expired,
        Self::Inactive,
        Self::Revoked,
    ];

    /// The wire name, e.g. `ACTIVE`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "INITIALIZING",
            Self::Initiated => "INITIATED",
            Self::Active => "ACTIVE",
            Self::Failed => "FAILED",
            Self::Expired => "EXPIRED",
            Self::Inactive => "INACTIVE",
            Self::Revoked => "REVOKED",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text))
    }
}

/// One tool-router session.
#[derive(Debug)]
struct Session {
    project: ProjectId,
    /// The request as accepted (after PATCH merges), re-validated on every PATCH.
    request: Map<String, Value>,
    config: SessionConfig,
    config_version: u64,
}

/// One connected account.
#[derive(Debug)]
struct Account {
    id: String,
    project: ProjectId,
    user_id: String,
    toolkit: &'static Toolkit,
    auth_config_id: String,
    /// Whether that auth config is Composio's own OAuth app.
    auth_managed: bool,
    status: Status,
    status_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Creation order, to break timestamp ties.
    sequence: u64,
    /// When the link was minted, for lazy expiry.
    initiated_at: Instant,
    alias: Option<String>,
    link_token: String,
    redirect_url: String,
    callback_url: Option<String>,
    account_type: &'static str,
    deleted: bool,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, Session>,
    accounts: HashMap<String, Account>,
    /// Link token → account id.
    links: HashMap<String, String>,
    /// The projects' own (white-label) auth configs.
    auth_configs: Vec<CustomAuthConfig>,
    next_sequence: u64,
}

/// What happened when a Connect Link was answered.
#[derive(Debug)]
pub(crate) struct LinkOutcome {
    /// The account's id.
    pub(crate) account_id: String,
    /// The toolkit's display name.
    pub(crate) toolkit_name: &'static str,
    /// The callback URL with `status` and `connected_account_id` appended, if the link had one.
    pub(crate) redirect: Option<String>,
}

/// What the hosted link page shows.
#[derive(Debug)]
pub(crate) struct LinkPage {
    pub(crate) token: String,
    pub(crate) toolkit_slug: &'static str,
    pub(crate) toolkit_name: &'static str,
    pub(crate) user_id: String,
    pub(crate) account_id: String,
    pub(crate) status: Status,
    pub(crate) status_reason: Option<String>,
    /// The white-label OAuth app the link goes through (a custom auth config's name).
    pub(crate) app_name: Option<String>,
    /// Where a link that is no longer pending sends the user back to: the callback URL with
    /// the account's outcome appended, so the application can offer a fresh link.
    pub(crate) return_url: Option<String>,
}

/// The sandbox state (see the module docs).
#[derive(Debug)]
pub(crate) struct Store {
    state: Mutex<State>,
    link_ttl: Duration,
    /// Base URL for links minted without a request (by the MCP side).
    default_base_url: String,
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A random nanoid-like id: `prefix` + `length` alphanumerics.
fn random_id(prefix: &str, length: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(prefix.len() + length);
    id.push_str(prefix);
    for _ in 0..length {
        id.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    id
}

/// "10 minutes", "1 minute", "90 seconds".
fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let plural = |count: u64, unit: &str| {
        if count == 1 {
            format!("1 {unit}")
        } else {
            format!("{count} {unit}s")
        }
    };
    if duration.subsec_nanos() != 0 {
        plural(
            u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            "millisecond",
        )
    } else if seconds >= 60 && seconds.is_multiple_of(60) {
        plural(seconds / 60, "minute")
    } else if seconds > 0 {
        plural(seconds, "second")
    } else {
        plural(
            u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            "millisecond",
        )
    }
}

// === impl State ===

impl State {
    /// Moves INITIALIZING accounts on to INITIATED, and INITIATED ones older than `ttl` to
    /// EXPIRED.
    fn expire_due(&mut self, now: Instant, ttl: Duration) {
        for account in self.accounts.values_mut() {
            if account.status == Status::Initializing
                && now.saturating_duration_since(account.initiated_at) >= INITIALIZING_FOR
            {
                account.status = Status::Initiated;
            }
            if account.status == Status::Initiated
                && now.saturating_duration_since(account.initiated_at) >= ttl
            {
                account.status = Status::Expired;
                account.status_reason = Some(format!(
                    "Connection initiation did not complete within {}",
                    human_duration(ttl)
                ));
                account.updated_at = Utc::now();
            }
        }
    }

    fn session(&self, project: ProjectId, session_id: &str) -> Result<&Session, ApiError> {
        check_prefix(session_id, "trs_", "session")?;
        self.sessions
            .get(session_id)
            .filter(|session| session.project == project)
            .ok_or_else(|| {
                ApiError::not_found(format!("Tool router session {session_id} not found"))
            })
    }

    fn account(&self, project: ProjectId, account_id: &str) -> Result<&Account, ApiError> {
        check_prefix(account_id, "ca_", "connected account")?;
        self.accounts
            .get(account_id)
            .filter(|account| account.project == project && !account.deleted)
            .ok_or_else(|| ApiError::not_found(format!("Connected account {account_id} not found")))
    }

    /// The account a session shows for `toolkit` (see the module docs).
    fn visible_account(&self, session: &Session, toolkit: &str) -> Option<&Account> {
        if let Some(pins) = session.config.connected_accounts.get(toolkit) {
            return pins
                .iter()
                .filter_map(|id| self.accounts.get(id))
                .find(|account| account.project == session.project && !account.deleted);
        }
        // SHARED accounts serve a session only when it pins them.
        self.accounts
            .values()
            .filter(|account| {
                account.project == session.project
                    && !account.deleted
                    && account.account_type != "SHARED"
                    && account.user_id == session.config.user_id
                    && account.toolkit.slug == toolkit
            })
            .max_by_key(|account| (account.status == Status::Active, account.sequence))
    }

    fn next_sequence(&mut self) -> u64 {
        self.next_sequence += 1;
        self.next_sequence
    }

    fn unique_id(&self, prefix: &str) -> String {
        loop {
            let id = random_id(prefix, 12);
            if !self.sessions.contains_key(&id)
                && !self.accounts.contains_key(&id)
                && !self.links.contains_key(&id)
            {
                return id;
            }
        }
    }
}

/// 400 for an id without the right prefix (the real API validates ids before looking them up).
fn check_prefix(id: &str, prefix: &str, what: &str) -> Result<(), ApiError> {
    let valid = id.len() > prefix.len()
        && id.starts_with(prefix)
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid {what} id '{id}': expected an id starting with {prefix}"
        )))
    }
}

// === impl Account ===

impl Account {
    /// The `GET /connected_accounts/{id}` shape (also the list items).
    fn to_json(&self) -> Value {
        let scheme = self.toolkit.auth_scheme();
        let mut val = json!({ "status": self.status.as_str() });
        match self.status {
            Status::Initializing | Status::Initiated => {
                val["redirectUrl"] = json!(self.redirect_url);
                if let Some(callback) = &self.callback_url {
                    val["callbackUrl"] = json!(callback);
                }
            }
            Status::Active | Status::Inactive => {
                // Fake credentials: nothing real ever exists in the sandbox.
                if scheme == "API_KEY" {
                    val["generic_api_key"] = json!(format!("sandbox-api-key-{}", self.id));
                } else {
                    val["access_token"] = json!(format!("sandbox-access-token-{}", self.id));
                    val["token_type"] = json!("Bearer");
                }
            }
            _ => {}
        }
        let mut account = json!({
            "id": self.id,
            "user_id": self.user_id,
            "status": self.status.as_str(),
            "status_reason": self.status_reason,
            "toolkit": { "slug": self.toolkit.slug },
            "auth_config": {
                "id": self.auth_config_id,
                "auth_scheme": scheme,
                "is_composio_managed": self.auth_managed,
                "is_disabled": false,
            },
            "is_disabled": false,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
            "state": { "authScheme": scheme, "val": val },
            "data": {},
            "params": {},
            "experimental": { "account_type": self.account_type },
        });
        if let Some(alias) = &self.alias {
            account["alias"] = json!(alias);
        }
        account
    }
}

// === impl Store ===

impl Store {
    /// An empty store. `default_base_url` is used for links minted without an HTTP request.
    pub(crate) fn new(link_ttl: Duration, default_base_url: String) -> Self {
        Self {
            state: Mutex::new(State::default()),
            link_ttl,
            default_base_url,
        }
    }

    /// Locks the state and applies lazy expiry first.
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation is completed under one lock, so the state is consistent even if a
        // holder panicked; keep serving.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.expire_due(Instant::now(), self.link_ttl);
        state
    }

    fn session_json(session_id: &str, session: &Session, base_url: &str) -> Value {
        json!({
            "session_id": session_id,
            "mcp": { "type": "http", "url": format!("{base_url}/tool_router/{session_id}/mcp") },
            "tool_router_tools": session.config.tool_router_tools(),
            "config": session.config.echo,
            "config_version": session.config_version,
        })
    }

    /// `POST /tool_router/session`.
    pub(crate) fn create_session(
        &self,
        project: ProjectId,
        request: Map<String, Value>,
        base_url: &str,
    ) -> Result<Value, ApiError> {
        let config = config::parse(&request)?;
        let mut state = self.lock();
        check_pins(&state, project, &config)?;
        state.check_auth_configs(project, &config)?;
        let session_id = state.unique_id("trs_");
        let session = Session {
            project,
            request,
            config,
            config_version: 1,
        };
        let mut body = Self::session_json(&session_id, &session, base_url);
        body["experimental"] = json!({
            "assistive_prompt": format!(
                "You are connected to a Composio tool router session for user {}. Use COMPOSIO_SEARCH_TOOLS to find tools.",
                session.config.user_id
            ),
        });
        state.sessions.insert(session_id, session);
        Ok(body)
    }

    /// `GET /tool_router/session/{id}`.
    pub(crate) fn get_session(
        &self,
        project: ProjectId,
        session_id: &str,
        base_url: &str,
    ) -> Result<Value, ApiError> {
        let state = self.lock();
        let session = state.session(project, session_id)?;
        Ok(Self::session_json(session_id, session, base_url))
    }

    /// `PATCH /tool_router/session/{id}`: merges the given top-level keys into the session's
    /// request, re-validates it, and bumps `config_version`.
    pub(crate) fn patch_session(
        &self,
        project: ProjectId,
        session_id: &str,
        patch: Map<String, Value>,
        base_url: &str,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let session = state.session(project, session_id)?;
        if let Some(user_id) = patch.get("user_id")
            && user_id.as_str() != Some(session.config.user_id.as_str())
        {
            return Err(ApiError::bad_request(
                "user_id cannot be changed on an existing session",
            ));
        }
        let mut request = session.request.clone();
        for (key, value) in patch {
            if value.is_null() {
                request.remove(&key);
            } else {
                request.insert(key, value);
            }
        }
        let config = config::parse(&request)?;
        check_pins(&state, project, &config)?;
        state.check_auth_configs(project, &config)?;
        let Some(session) = state.sessions.get_mut(session_id) else {
            return Err(ApiError::not_found(format!(
                "Tool router session {session_id} not found"
            )));
        };
        session.request = request;
        session.config = config;
        session.config_version += 1;
        Ok(Self::session_json(session_id, session, base_url))
    }

    /// `DELETE /tool_router/session/{id}`.
    pub(crate) fn delete_session(
        &self,
        project: ProjectId,
        session_id: &str,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        state.session(project, session_id)?;
        state.sessions.remove(session_id);
        Ok(json!({ "session_id": session_id, "deleted": true }))
    }

    /// The project that owns a session (for the MCP URL's key check).
    pub(crate) fn session_project(&self, session_id: &str) -> Option<ProjectId> {
        self.lock()
            .sessions
            .get(session_id)
            .map(|session| session.project)
    }

    /// `GET /tool_router/session/{id}/toolkits`.
    pub(crate) fn list_toolkits(
        &self,
        project: ProjectId,
        session_id: &str,
        query: &HashMap<String, String>,
        base_url: &str,
    ) -> Result<Value, ApiError> {
        let query = ToolkitQuery::parse(query)?;
        let state = self.lock();
        let session = state.session(project, session_id)?;
        let items = catalog::all()
            .iter()
            .filter(|toolkit| query.lists(toolkit, &session.config.toolkits))
            .filter_map(|toolkit| {
                let account = if toolkit.is_no_auth() {
                    None
                } else {
                    state.visible_account(session, toolkit.slug)
                };
                let connected = account.is_some_and(|account| account.status == Status::Active);
                (connected || !query.only_connected)
                    .then(|| toolkit_item(toolkit, &session.config.toolkits, account, base_url))
            })
            .collect();
        Ok(query.page.render(items))
    }

    /// `POST /tool_router/session/{id}/link`: a new INITIATED account and its Connect Link.
    pub(crate) fn create_link(
        &self,
        project: ProjectId,
        session_id: &str,
        body: &Map<String, Value>,
        base_url: &str,
    ) -> Result<Value, ApiError> {
        let request = LinkRequest::parse(body)?;
        let mut state = self.lock();
        let session = state.session(project, session_id)?;
        let (toolkit, auth_config_id) = linkable_toolkit(session, &request.toolkit)?;
        let auth_managed = state
            .auth_config(project, &auth_config_id)
            .is_none_or(|auth| auth.managed);
        let user_id = session.config.user_id.clone();
        let callback_url = request
            .callback_url
            .or_else(|| session.config.callback_url.clone());
        if let Some(alias) = &request.alias {
            let taken = state.accounts.values().any(|account| {
                account.project == project
                    && !account.deleted
                    && account.user_id == user_id
                    && account.toolkit.slug == toolkit.slug
                    && account.alias.as_ref() == Some(alias)
            });
            if taken {
                return Err(ApiError::bad_request(format!(
                    "Alias '{alias}' is already used by another connected account of this user for {}",
                    toolkit.slug
                )));
            }
        }
        let account_id = state.unique_id("ca_");
        let link_token = state.unique_id("ln_");
        let redirect_url = format!("{base_url}/link/{link_token}");
        let sequence = state.next_sequence();
        let now = Utc::now();
        state.links.insert(link_token.clone(), account_id.clone());
        state.accounts.insert(
            account_id.clone(),
            Account {
                id: account_id.clone(),
                project,
                user_id,
                toolkit,
                auth_config_id,
                auth_managed,
                status: Status::Initializing,
                status_reason: None,
                created_at: now,
                updated_at: now,
                sequence,
                initiated_at: Instant::now(),
                alias: request.alias,
                link_token: link_token.clone(),
                redirect_url: redirect_url.clone(),
                callback_url,
                account_type: request.account_type,
                deleted: false,
            },
        );
        let mut response = json!({
            "connected_account_id": account_id,
            "link_token": link_token,
            "redirect_url": redirect_url,
        });
        if let Some(experimental) = request.experimental {
            response["experimental"] = experimental;
        }
        Ok(response)
    }

    /// `GET /connected_accounts`.
    pub(crate) fn list_accounts(
        &self,
        project: ProjectId,
        query: &HashMap<String, String>,
    ) -> Result<Value, ApiError> {
        let query = AccountQuery::parse(query)?;
        let state = self.lock();
        let mut accounts: Vec<&Account> = state
            .accounts
            .values()
            .filter(|account| account.project == project && !account.deleted)
            .filter(|account| query.matches(account))
            .collect();
        query.sort(&mut accounts);
        Ok(query
            .page
            .render(accounts.into_iter().map(Account::to_json).collect()))
    }

    /// `GET /connected_accounts/{id}`.
    pub(crate) fn get_account(
        &self,
        project: ProjectId,
        account_id: &str,
    ) -> Result<Value, ApiError> {
        Ok(self.lock().account(project, account_id)?.to_json())
    }

    /// `DELETE /connected_accounts/{id}` (a soft delete; later reads are 404).
    pub(crate) fn delete_account(
        &self,
        project: ProjectId,
        account_id: &str,
        revoke: bool,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        state.account(project, account_id)?;
        let revoke_job_id = revoke.then(|| random_id("rj_", 12));
        if let Some(account) = state.accounts.get_mut(account_id) {
            account.deleted = true;
            account.updated_at = Utc::now();
            if revoke {
                account.status = Status::Revoked;
                account.status_reason = Some("Credentials revoked upstream on delete".to_owned());
            }
        }
        let mut body = json!({ "success": true });
        if let Some(job) = revoke_job_id {
            body["revoke_job_id"] = json!(job);
        }
        Ok(body)
    }

    /// The hosted link page's data, or `None` for an unknown token.
    pub(crate) fn link_page(&self, token: &str) -> Option<LinkPage> {
        let state = self.lock();
        let account = state
            .links
            .get(token)
            .and_then(|id| state.accounts.get(id))?;
        Some(LinkPage {
            token: account.link_token.clone(),
            toolkit_slug: account.toolkit.slug,
            toolkit_name: account.toolkit.name,
            user_id: account.user_id.clone(),
            account_id: account.id.clone(),
            status: account.status,
            status_reason: account.status_reason.clone(),
            app_name: state
                .auth_config(account.project, &account.auth_config_id)
                .filter(|auth| !auth.managed)
                .map(|auth| auth.name),
            return_url: account.callback_url.as_deref().and_then(|callback| {
                let outcome = if account.status == Status::Active {
                    "success"
                } else {
                    "failed"
                };
                callback_redirect(callback, outcome, &account.id)
            }),
        })
    }

    /// Allow (ACTIVE) or deny (FAILED) a pending Connect Link; 404 for an unknown token, 409
    /// when the link is no longer pending (already answered, expired, deleted).
    pub(crate) fn answer_link(&self, token: &str, allow: bool) -> Result<LinkOutcome, ApiError> {
        let mut state = self.lock();
        let account_id = state
            .links
            .get(token)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("Connect Link {token} not found")))?;
        let Some(account) = state.accounts.get_mut(&account_id) else {
            return Err(ApiError::not_found(format!(
                "Connect Link {token} not found"
            )));
        };
        if account.deleted || !matches!(account.status, Status::Initializing | Status::Initiated) {
            let status = if account.deleted {
                "deleted"
            } else {
                account.status.as_str()
            };
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "This Connect Link is no longer pending: its connected account is {status}"
                ),
            ));
        }
        account.updated_at = Utc::now();
        if allow {
            account.status = Status::Active;
            account.status_reason = None;
        } else {
            account.status = Status::Failed;
            account.status_reason = Some("The user denied access on the consent screen".to_owned());
        }
        let outcome = if allow { "success" } else { "failed" };
        let redirect = account
            .callback_url
            .as_deref()
            .and_then(|callback| callback_redirect(callback, outcome, &account.id));
        Ok(LinkOutcome {
            account_id,
            toolkit_name: account.toolkit.name,
            redirect,
        })
    }

    /// Control plane: moves an account to `status` by `action` (`revoke` → REVOKED, `expire`
    /// → EXPIRED, `deactivate` → INACTIVE, `activate` → ACTIVE), setting the `status_reason`
    /// the real backend would give. 400 for an unknown action or malformed id, 404 for an
    /// unknown (or deleted) account.
    pub(crate) fn force_status(&self, account_id: &str, action: &str) -> Result<Value, ApiError> {
        check_prefix(account_id, "ca_", "connected account")?;
        let expired_link = format!(
            "Connection initiation did not complete within {}",
            human_duration(self.link_ttl)
        );
        let mut state = self.lock();
        let account = state
            .accounts
            .get_mut(account_id)
            .filter(|account| !account.deleted)
            .ok_or_else(|| {
                ApiError::not_found(format!("Connected account {account_id} not found"))
            })?;
        let (status, reason) = match action {
            "revoke" => (
                Status::Revoked,
                Some("Access was revoked by the user".to_owned()),
            ),
            "expire" if matches!(account.status, Status::Initializing | Status::Initiated) => {
                (Status::Expired, Some(expired_link))
            }
            "expire" => (
                Status::Expired,
                Some("The account's credentials expired".to_owned()),
            ),
            "deactivate" => (
                Status::Inactive,
                Some("The account was disabled".to_owned()),
            ),
            "activate" => (Status::Active, None),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Unknown account action '{action}'"
                )));
            }
        };
        account.status = status;
        account.status_reason = reason;
        account.updated_at = Utc::now();
        Ok(account.to_json())
    }

    /// Status of an account regardless of project.
    #[cfg(test)]
    pub(crate) fn account_status(&self, account_id: &str) -> Option<Status> {
        self.lock()
            .accounts
            .get(account_id)
            .filter(|account| !account.deleted)
            .map(|account| account.status)
    }
}

/// The callback URL with Composio's `status` and `connected_account_id` appended; `None` for
/// a callback that is not a URL (the API accepted it as a plain string).
fn callback_redirect(callback: &str, status: &str, account_id: &str) -> Option<String> {
    let mut url = url::Url::parse(callback).ok()?;
    url.query_pairs_mut()
        .append_pair("status", status)
        .append_pair("connected_account_id", account_id);
    Some(url.to_string())
}

/// Pins must name existing, undeleted accounts of the project, for the toolkit they are pinned to.
fn check_pins(state: &State, project: ProjectId, config: &SessionConfig) -> Result<(), ApiError> {
    for (slug, ids) in &config.connected_accounts {
        for id in ids {
            let account = state
                .accounts
                .get(id)
                .filter(|account| account.project == project && !account.deleted);
            match account {
                None => {
                    return Err(ApiError::bad_request(format!(
                        "Connected account {id} not found"
                    )));
                }
                Some(account) if account.toolkit.slug != slug => {
                    return Err(ApiError::bad_request(format!(
                        "Connected account {id} belongs to toolkit {}, not {slug}",
                        account.toolkit.slug
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// The toolkit a session may mint a link for, and the auth config to use: 404 for an unknown
/// toolkit or one without an auth config, 400 for no-auth, disabled or pinned toolkits.
fn linkable_toolkit(session: &Session, slug: &str) -> Result<(&'static Toolkit, String), ApiError> {
    let toolkit = catalog::find(slug)
        .ok_or_else(|| ApiError::not_found(format!("Toolkit '{slug}' not found")))?;
    if toolkit.is_no_auth() {
        return Err(ApiError::bad_request(format!(
            "Toolkit '{}' does not require authentication; no connection is needed",
            toolkit.slug
        )));
    }
    if !session.config.toolkits.allows(toolkit.slug) {
        return Err(ApiError::bad_request(format!(
            "Toolkit '{}' is not enabled for this session",
            toolkit.slug
        )));
    }
    if session.config.connected_accounts.contains_key(toolkit.slug) {
        return Err(ApiError::bad_request(format!(
            "A connected account is already defined for this toolkit in the session configuration ({})",
            toolkit.slug
        )));
    }
    let auth_config_id = session
        .config
        .auth_configs
        .get(toolkit.slug)
        .cloned()
        .or_else(|| toolkit.default_auth_config_id())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "No auth config found for toolkit '{}'. Create an auth config for it in your project first.",
                toolkit.slug
            ))
        })?;
    Ok((toolkit, auth_config_id))
}

/// One item of a session's toolkit listing.
fn toolkit_item(
    toolkit: &Toolkit,
    filter: &ToolkitFilter,
    account: Option<&Account>,
    base_url: &str,
) -> Value {
    let mut item = json!({
        "slug": toolkit.slug,
        "name": toolkit.name,
        "enabled": filter.allows(toolkit.slug),
        "is_no_auth": toolkit.is_no_auth(),
        "composio_managed_auth_schemes": toolkit.composio_managed_auth_schemes(),
        "meta": {
            "logo": format!("{base_url}/_sandbox/logos/{}.svg", toolkit.slug),
            "description": toolkit.description,
            "isNoAuth": toolkit.is_no_auth(),
        },
    });
    if let Some(account) = account {
        item["connected_account"] = json!({
            "id": account.id,
            "user_id": account.user_id,
            "status": account.status.as_str(),
            "created_at": timestamp(account.created_at),
            "auth_config": {
                "id": account.auth_config_id,
                "auth_scheme": toolkit.auth_scheme(),
                "is_composio_managed": account.auth_managed,
            },
        });
    }
    item
}

// === impl McpWorld for Store ===

impl McpWorld for Store {
    fn session(&self, session_id: &str) -> Option<SessionView> {
        let state = self.lock();
        let session = state.sessions.get(session_id)?;
        let enabled_toolkits = match &session.config.toolkits {
            ToolkitFilter::All => None,
            filter => Some(
                catalog::all()
                    .iter()
                    .filter(|toolkit| filter.allows(toolkit.slug))
                    .map(|toolkit| toolkit.slug.to_owned())
                    .collect(),
            ),
        };
        Some(SessionView {
            user_id: session.config.user_id.clone(),
            tool_router_tools: session.config.tool_router_tools(),
            enabled_toolkits,
        })
    }

    /// The same account choice as the session's toolkit listing (pins, project, user).
    fn is_connected(&self, session_id: &str, toolkit: &str) -> bool {
        let Some(toolkit) = catalog::find(toolkit) else {
            return false;
        };
        if toolkit.is_no_auth() {
            return true;
        }
        let state = self.lock();
        state.sessions.get(session_id).is_some_and(|session| {
            state
                .visible_account(session, toolkit.slug)
                .is_some_and(|account| account.status == Status::Active)
        })
    }

    fn connect_link(&self, session_id: &str, toolkit: &str) -> Result<String, String> {
        let project = self
            .session_project(session_id)
            .ok_or_else(|| format!("Tool router session {session_id} not found"))?;
        let mut body = Map::new();
        body.insert("toolkit".to_owned(), json!(toolkit));
        let link = self
            .create_link(project, session_id, &body, &self.default_base_url)
            .map_err(|error| error.message)?;
        link.get("redirect_url")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "no redirect_url".to_owned())
    }

    fn toolkits(&self) -> Vec<(String, String)> {
        catalog::all()
            .iter()
            .map(|toolkit| (toolkit.slug.to_owned(), toolkit.name.to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://127.0.0.1:1";

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn new_link(store: &Store, project: ProjectId) -> Result<(String, String), ApiError> {
        let session = store.create_session(project, object(json!({"user_id": "alice"})), BASE)?;
        let session_id = session["session_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let link = store.create_link(
            project,
            &session_id,
            &object(json!({"toolkit": "gmail"})),
            BASE,
        )?;
        Ok((
            link["connected_account_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            link["link_token"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn initiated_accounts_expire_lazily_after_the_ttl() -> Result<(), ApiError> {
        let store = Store::new(Duration::from_secs(600), BASE.to_owned());
        let (account_id, token) = new_link(&store, ProjectId(0))?;
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(store.account_status(&account_id), Some(Status::Initiated));
        tokio::time::advance(Duration::from_secs(1)).await;
        let account = store.get_account(ProjectId(0), &account_id)?;
        assert_eq!(account["status"], "EXPIRED");
        assert_eq!(
            account["status_reason"],
            "Connection initiation did not complete within 10 minutes"
        );
        let late = store
            .answer_link(&token, true)
            .err()
            .map(|error| error.status);
        assert_eq!(late, Some(StatusCode::CONFLICT));
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn answered_links_do_not_expire() -> Result<(), ApiError> {
        let store = Store::new(Duration::from_secs(60), BASE.to_owned());
        let (account_id, token) = new_link(&store, ProjectId(0))?;
        store.answer_link(&token, true)?;
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(store.account_status(&account_id), Some(Status::Active));
        Ok(())
    }

    #[test]
    fn projects_do_not_see_each_other() -> Result<(), ApiError> {
        let store = Store::new(Duration::from_secs(60), BASE.to_owned());
        let (account_id, _) = new_link(&store, ProjectId(0))?;
        assert_eq!(
            store
                .get_account(ProjectId(1), &account_id)
                .err()
                .map(|error| error.status),
            Some(StatusCode::NOT_FOUND)
        );
        let listed = store.list_accounts(ProjectId(1), &HashMap::new())?;
        assert_eq!(listed["total_items"], 0);
        Ok(())
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(60)), "1 minute");
        assert_eq!(human_duration(Duration::from_secs(90)), "90 seconds");
        assert_eq!(
            human_duration(Duration::from_millis(250)),
            "250 milliseconds"
        );
        assert_eq!(
            human_duration(Duration::from_millis(1500)),
            "1500 milliseconds"
        );
    }
}
