//! Request and response types of the Composio tool-router and connected-account endpoints,
//! with the wire field names of `/api/v3.1`.
//!
//! Responses are read leniently: unknown fields are ignored, numbers may arrive as floats,
//! and an unknown account status is kept as [`AccountStatus::Unknown`] instead of failing the
//! whole call.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

// === Create session ===

/// Body of `POST /api/v3.1/tool_router/session`. Only `user_id` is required; every `None`
/// field is left out of the JSON so the server applies its defaults.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CreateSessionRequest {
    /// The end user this session acts for (min length 1).
    pub user_id: String,
    /// In-chat connection management; toolgate turns it off and handles links itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manage_connections: Option<ManageConnections>,
    /// Allowlist or denylist of toolkits; `None` gives the session every toolkit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toolkits: Option<ToolkitSelection>,
    /// White-label OAuth apps: toolkit slug → auth config id (`ac_...`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub auth_configs: BTreeMap<String, String>,
    /// Pinned accounts: toolkit slug → connected account ids (`ca_...`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub connected_accounts: BTreeMap<String, Vec<String>>,
    /// Remote workbench settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workbench: Option<Workbench>,
    /// Several connected accounts per toolkit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_account: Option<MultiAccount>,
}

/// The `multi_account` object: several connected accounts per toolkit in one session.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct MultiAccount {
    /// Whether a toolkit may have more than one account in the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Upper bound per toolkit (the server accepts 2 to 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_accounts_per_toolkit: Option<u32>,
    /// Whether the model must name the account on every call instead of using the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_explicit_selection: Option<bool>,
}

/// The `manage_connections` object (never a bare bool on the wire). Only set keys are sent,
/// because older servers reject unknown keys here.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ManageConnections {
    /// Whether the session exposes `COMPOSIO_MANAGE_CONNECTIONS` (server default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Where users land after an in-chat authorization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Whether the session exposes `COMPOSIO_WAIT_FOR_CONNECTIONS` (server default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_wait_for_connections: Option<bool>,
}

impl ManageConnections {
    /// `{"enable": false}`: connections are managed by the caller (toolgate's mode).
    pub fn disabled() -> Self {
        Self {
            enable: Some(false),
            ..Self::default()
        }
    }
}

/// The session's toolkit filter: `{"enable": [...]}` or `{"disable": [...]}` (a bare array
/// or the key `enabled` is rejected by the server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolkitSelection {
    /// Only these toolkits.
    Enable(Vec<String>),
    /// Every toolkit except these.
    Disable(Vec<String>),
}

impl Serialize for ToolkitSelection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (key, slugs) = match self {
            Self::Enable(slugs) => ("enable", slugs),
            Self::Disable(slugs) => ("disable", slugs),
        };
        let mut map = BTreeMap::new();
        map.insert(key, slugs);
        map.serialize(serializer)
    }
}

/// The `workbench` object.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Workbench {
    /// `false` removes `COMPOSIO_REMOTE_WORKBENCH` and `COMPOSIO_REMOTE_BASH_TOOL`.
    pub enable: bool,
    /// Whether workbench code may call tools through proxy execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_proxy_execution: Option<bool>,
    /// Result size above which output is offloaded to the workbench.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_offload_threshold: Option<u64>,
    /// Composio's workbench machine size: `standard`, `medium`, `large` or `xlarge`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_size: Option<String>,
}

// === Session ===

/// A tool-router session, as returned by create (201) and get (200).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Session {
    /// Session id (`trs_...`).
    pub session_id: String,
    /// Where the session's MCP server lives. Use [`crate::ComposioClient::mcp_endpoint`] to get
    /// the URL with its headers; never build it by hand.
    pub mcp: SessionMcp,
    /// The meta tools the session exposes.
    #[serde(default)]
    pub tool_router_tools: Vec<String>,
    /// The echoed configuration (past-tense keys in places); kept raw.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Incremented on each configuration change.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub config_version: Option<u64>,
}

/// The `mcp` object of a session.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct SessionMcp {
    /// Always `http` today.
    #[serde(rename = "type", default)]
    pub transport: String,
    /// The MCP Streamable HTTP URL.
    pub url: String,
}

// === Toolkits ===

/// Filters for `GET /api/v3.1/tool_router/session/{id}/toolkits`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolkitsQuery {
    /// Page size (the server caps it at 50).
    pub limit: Option<u32>,
    /// Only these slugs (sent comma-joined); overrides the session's toolkit config.
    pub toolkits: Vec<String>,
    /// Only connected toolkits. Send only `Some(true)`: the meaning of `false` is unconfirmed.
    pub is_connected: Option<bool>,
    /// Matches name, slug or description.
    pub search: Option<String>,
}

/// One page of the toolkits listing.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ToolkitsPage {
    /// The toolkits on this page.
    #[serde(default)]
    pub items: Vec<SessionToolkit>,
    /// Cursor of the next page; `None` (or empty) on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// Number of pages (may arrive as a float).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_pages: Option<u64>,
    /// This page's number (may arrive as a float).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub current_page: Option<u64>,
    /// Number of matching toolkits (may arrive as a float).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_items: Option<u64>,
}

/// A toolkit as seen by a session, with the user's connected account if any.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SessionToolkit {
    /// Slug, e.g. `gmail`.
    pub slug: String,
    /// Display name, e.g. `Gmail`.
    #[serde(default)]
    pub name: String,
    /// Whether the session's config enables it.
    #[serde(default)]
    pub enabled: bool,
    /// True for toolkits that need no connection at all.
    #[serde(default)]
    pub is_no_auth: bool,
    /// Auth schemes Composio manages for this toolkit.
    #[serde(default)]
    pub composio_managed_auth_schemes: Vec<String>,
    /// Logo and description.
    #[serde(default)]
    pub meta: ToolkitMeta,
    /// The user's account for this toolkit, when one exists (in any status).
    #[serde(default)]
    pub connected_account: Option<ToolkitAccount>,
}

/// `meta` of a toolkit item.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ToolkitMeta {
    /// Logo URL.
    #[serde(default)]
    pub logo: Option<String>,
    /// Short description.
    #[serde(default)]
    pub description: Option<String>,
}

/// `connected_account` inside a toolkit item.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ToolkitAccount {
    /// Account id (`ca_...`).
    pub id: String,
    /// Account status (a plain string on the wire here).
    pub status: AccountStatus,
    /// Owner user id.
    #[serde(default)]
    pub user_id: Option<String>,
    /// ISO creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The auth config the account was made with.
    #[serde(default)]
    pub auth_config: Option<AuthConfigRef>,
}

/// A reference to an auth config.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct AuthConfigRef {
    /// Auth config id (`ac_...`).
    pub id: String,
    /// The auth scheme, e.g. `OAUTH2`.
    #[serde(default)]
    pub auth_scheme: Option<String>,
    /// Whether Composio manages the OAuth app.
    #[serde(default)]
    pub is_composio_managed: Option<bool>,
}

/// The SDKs' derived view of a toolkit's connection (`toolkit.connection`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolkitConnection {
    /// True when the account exists and is ACTIVE.
    pub is_active: bool,
    /// The account, when one exists.
    pub connected_account: Option<ToolkitAccount>,
}

impl SessionToolkit {
    /// The connection the way the SDKs derive it: `None` for no-auth toolkits (they need no
    /// connection), otherwise whether an ACTIVE account exists.
    pub fn connection(&self) -> Option<ToolkitConnection> {
        if self.is_no_auth {
            return None;
        }
        Some(ToolkitConnection {
            is_active: self.is_active(),
            connected_account: self.connected_account.clone(),
        })
    }

    /// True when the user's account for this toolkit is ACTIVE.
    pub fn is_active(&self) -> bool {
        self.connected_account
            .as_ref()
            .is_some_and(|account| account.status == AccountStatus::Active)
    }
}

// === Connect Link ===

/// Body of `POST /api/v3.1/tool_router/session/{id}/link`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LinkRequest {
    /// The toolkit to connect.
    pub toolkit: String,
    /// Where the browser goes after the user finishes (status and account id appended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// An alias for the account, unique per user and toolkit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// The answer to a link request: the account being set up and the URL the user opens.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ConnectionRequest {
    /// The new account (`ca_...`), INITIATED until the user finishes.
    pub connected_account_id: String,
    /// The hosted Connect Link page.
    pub redirect_url: String,
    /// The link token (`ln_...`).
    #[serde(default)]
    pub link_token: Option<String>,
}

// === Connected accounts ===

/// Filters for `GET /api/v3.1/connected_accounts` (array filters are sent comma-joined).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountsQuery {
    /// Only accounts of these users.
    pub user_ids: Vec<String>,
    /// Only accounts of these toolkits.
    pub toolkit_slugs: Vec<String>,
    /// Only accounts in these statuses.
    pub statuses: Vec<String>,
    /// Only these accounts.
    pub connected_account_ids: Vec<String>,
}

/// One page of the connected-accounts listing.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct AccountsPage {
    /// The accounts on this page.
    #[serde(default)]
    pub items: Vec<ConnectedAccount>,
    /// Cursor of the next page; `None` (or empty) on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// An auth config (`GET /api/v3.1/auth_configs/{id}`): which OAuth app a link uses.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct AuthConfig {
    /// Auth config id (`ac_...`).
    pub id: String,
    /// Display name, e.g. the white-label app's name.
    #[serde(default)]
    pub name: String,
    /// Whether Composio manages the OAuth app (`false`: the project's own app).
    #[serde(default)]
    pub is_composio_managed: Option<bool>,
    /// The auth scheme, e.g. `OAUTH2`.
    #[serde(default)]
    pub auth_scheme: Option<String>,
    /// `ENABLED` or `DISABLED`.
    #[serde(default)]
    pub status: Option<String>,
    /// The toolkit it belongs to.
    #[serde(default)]
    pub toolkit: Option<ToolkitRef>,
}

/// A connected account (`GET /api/v3.1/connected_accounts/{id}`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ConnectedAccount {
    /// Account id (`ca_...`).
    pub id: String,
    /// Current status.
    pub status: AccountStatus,
    /// Why the account is in this status (e.g. why it FAILED or EXPIRED).
    #[serde(default)]
    pub status_reason: Option<String>,
    /// The toolkit.
    #[serde(default)]
    pub toolkit: Option<ToolkitRef>,
    /// The auth config.
    #[serde(default)]
    pub auth_config: Option<AuthConfigRef>,
    /// Whether the account is disabled.
    #[serde(default)]
    pub is_disabled: Option<bool>,
    /// ISO creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// ISO update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The account's alias, unique per user and toolkit.
    #[serde(default)]
    pub alias: Option<String>,
    /// Owner user id (deprecated on the wire, still sent).
    #[serde(default)]
    pub user_id: Option<String>,
}

/// `{slug}` reference to a toolkit.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ToolkitRef {
    /// Toolkit slug.
    pub slug: String,
}

/// Answer to `DELETE /api/v3.1/connected_accounts/{id}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct DeleteAccountResponse {
    /// Whether the account was deleted.
    #[serde(default)]
    pub success: bool,
    /// The background revoke job, when `revoke_on_delete` was set.
    #[serde(default)]
    pub revoke_job_id: Option<String>,
}

/// A connected account's status. Unknown values are kept, not rejected, because Composio has
/// added states before (REVOKED).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    /// Being created.
    Initializing,
    /// Waiting for the user to finish the Connect Link.
    Initiated,
    /// Connected and usable.
    Active,
    /// The user denied or the authorization failed (terminal).
    Failed,
    /// The link or credentials expired (terminal).
    Expired,
    /// Disabled, but can become ACTIVE again.
    Inactive,
    /// Credentials were revoked (terminal).
    Revoked,
    /// A status this client does not know.
    Unknown(String),
}

impl AccountStatus {
    /// Parses a wire value (case-sensitive, as Composio sends upper case).
    pub fn parse(text: &str) -> Self {
        match text {
            "INITIALIZING" => Self::Initializing,
            "INITIATED" => Self::Initiated,
            "ACTIVE" => Self::Active,
            "FAILED" => Self::Failed,
            "EXPIRED" => Self::Expired,
            "INACTIVE" => Self::Inactive,
            "REVOKED" => Self::Revoked,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Initializing => "INITIALIZING",
            Self::Initiated => "INITIATED",
            Self::Active => "ACTIVE",
            Self::Failed => "FAILED",
            Self::Expired => "EXPIRED",
            Self::Inactive => "INACTIVE",
            Self::Revoked => "REVOKED",
            Self::Unknown(other) => other,
        }
    }

    /// FAILED, EXPIRED and REVOKED: the account will never become ACTIVE.
    pub fn is_terminal_failure(&self) -> bool {
        matches!(self, Self::Failed | Self::Expired | Self::Revoked)
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AccountStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self::parse(&text))
    }
}

impl Serialize for AccountStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Reads a non-negative count sent as an integer, a float (`3.0`) or a numeric string; any
/// other value (including null) becomes `None` rather than failing the whole response.
fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(match value {
        serde_json::Value::Number(number) => number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|float| float.is_finite() && *float >= 0.0)
                .map(|float| float as u64)
        }),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_body_sends_only_what_is_set() {
        let body = CreateSessionRequest {
            user_id: "user_1".to_owned(),
            manage_connections: Some(ManageConnections::disabled()),
            toolkits: Some(ToolkitSelection::Enable(vec!["gmail".to_owned()])),
            ..CreateSessionRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&body).ok(),
            Some(json!({
                "user_id": "user_1",
                "manage_connections": {"enable": false},
                "toolkits": {"enable": ["gmail"]},
            }))
        );
        let full = CreateSessionRequest {
            user_id: "u".to_owned(),
            manage_connections: Some(ManageConnections {
                enable: Some(true),
                callback_url: Some("http://cb".to_owned()),
                enable_wait_for_connections: Some(true),
            }),
            toolkits: Some(ToolkitSelection::Disable(vec!["slack".to_owned()])),
            auth_configs: BTreeMap::from([("gmail".to_owned(), "ac_1".to_owned())]),
            connected_accounts: BTreeMap::from([("gmail".to_owned(), vec!["ca_1".to_owned()])]),
            workbench: Some(Workbench::default()),
            multi_account: None,
        };
        assert_eq!(
            serde_json::to_value(&full).ok(),
            Some(json!({
                "user_id": "u",
                "manage_connections": {"enable": true, "callback_url": "http://cb", "enable_wait_for_connections": true},
                "toolkits": {"disable": ["slack"]},
                "auth_configs": {"gmail": "ac_1"},
                "connected_accounts": {"gmail": ["ca_1"]},
                "workbench": {"enable": false},
            }))
        );
    }

    #[test]
    fn toolkit_page_is_lenient_on_numbers_and_statuses() {
        let page: Result<ToolkitsPage, _> = serde_json::from_value(json!({
            "items": [
                {"slug": "gmail", "name": "Gmail", "enabled": true, "is_no_auth": false,
                 "meta": {"logo": "http://logo", "description": "mail"},
                 "connected_account": {"id": "ca_1", "status": "SOMETHING_NEW", "extra": 1}},
                {"slug": "hackernews", "name": "Hacker News", "is_no_auth": true},
                {"slug": "github", "name": "GitHub",
                 "connected_account": {"id": "ca_2", "status": "ACTIVE"}}
            ],
            "next_cursor": null,
            "total_pages": 3.0,
            "current_page": "2",
            "total_items": 120,
            "unexpected": true
        }));
        let page = match page {
            Ok(page) => page,
            Err(error) => panic!("page did not parse: {error}"),
        };
        assert_eq!(page.total_pages, Some(3));
        assert_eq!(page.current_page, Some(2));
        assert_eq!(page.total_items, Some(120));
        let gmail = &page.items[0];
        assert_eq!(
            gmail.connected_account.as_ref().map(|a| a.status.clone()),
            Some(AccountStatus::Unknown("SOMETHING_NEW".to_owned()))
        );
        assert_eq!(gmail.connection().map(|c| c.is_active), Some(false));
        assert_eq!(
            page.items[1].connection(),
            None,
            "no-auth has no connection"
        );
        assert_eq!(page.items[2].connection().map(|c| c.is_active), Some(true));
    }

    #[test]
    fn account_status_round_trips() {
        for text in [
            "INITIALIZING",
            "INITIATED",
            "ACTIVE",
            "FAILED",
            "EXPIRED",
            "INACTIVE",
            "REVOKED",
            "PAUSED",
        ] {
            let status = AccountStatus::parse(text);
            assert_eq!(status.as_str(), text);
            assert_eq!(serde_json::to_value(&status).ok(), Some(json!(text)));
        }
        assert!(AccountStatus::Failed.is_terminal_failure());
        assert!(AccountStatus::Expired.is_terminal_failure());
        assert!(AccountStatus::Revoked.is_terminal_failure());
        assert!(!AccountStatus::Inactive.is_terminal_failure());
        assert!(!AccountStatus::Initiated.is_terminal_failure());
    }
}
