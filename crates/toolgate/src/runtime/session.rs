//! Opening the Composio session the way a long-running gateway needs: the pinned
//! `session.id` (checked against `user_id`, re-configured with PATCH when the configuration
//! changed), else the session remembered in the state file for this exact setup, else a new
//! one (then remembered). Pinned account aliases are resolved to ids first.
//!
//! Which failures are worth retrying is decided here once: 408, 409, 429, 5xx and network
//! errors are; a refused key (401), a denial (403), a missing endpoint (404) or a rejected
//! configuration are fatal with one clear line that never contains the key.

use secrecy::SecretString;
use serde_json::Value;
use toolgate_session::{
    AccountStatus, AccountsQuery, ComposioClient, ComposioError, CreateSessionRequest, McpEndpoint,
    Session, ToolkitSelection,
};

use super::FatalError;
use super::state_file::{self, StateFile};
use crate::config::Config;

/// A session ready to use.
pub(crate) struct Opened {
    /// The session as Composio returned it.
    pub(crate) session: Session,
    /// Its MCP URL with `x-api-key`.
    pub(crate) endpoint: McpEndpoint,
    /// The create body, pins resolved to ids (what the tracker needs to know).
    pub(crate) request: CreateSessionRequest,
}

/// Why the session could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Composio trouble that may pass: try again with backoff.
    Retry(ComposioError),
    /// Retrying cannot fix it.
    Fatal(FatalError),
}

/// Opens (and re-opens, after a loss) the session for one configuration.
pub(crate) struct SessionOpener {
    client: ComposioClient,
    config: Config,
    state: Option<StateFile>,
}

impl SessionOpener {
    /// The opener for `config`, remembering sessions in its state file (if any).
    pub(crate) fn new(client: ComposioClient, config: &Config) -> Self {
        let state = match &config.session.state_file {
            Some(path) if path.as_os_str().is_empty() => None,
            Some(path) => Some(StateFile::new(path.clone())),
            None => state_file::default_path().map(StateFile::new),
        };
        Self {
            client,
            config: config.clone(),
            state,
        }
    }

    /// The pinned, remembered or a new session.
    pub(crate) async fn open(&self) -> Result<Opened, OpenError> {
        let request = self.request().await?;
        if let Some(id) = &self.config.session.id {
            let session = self.client.get_session(id).await.map_err(|error| {
                if error.is_not_found() {
                    OpenError::Fatal(FatalError::Config {
                        key: "session.id",
                        message: format!("Composio does not know the session {id}: {error}"),
                    })
                } else {
                    classify(error, &self.config)
                }
            })?;
            self.check_user(&session)?;
            let session = if config_differs(&session.config, &request) {
                tracing::info!(session = %id, "the session's configuration changed; applying it with PATCH");
                self.client
                    .patch_session(id, &request)
                    .await
                    .map_err(|error| classify(error, &self.config))?
            } else {
                session
            };
            return self.opened(session, request);
        }
        let key = self.key(&request);
        if let Some((id, _)) = self.state.as_ref().and_then(|state| state.recall(&key)) {
            match self.client.get_session(&id).await {
                Ok(session) => {
                    self.check_user(&session)?;
                    tracing::info!(session = %id, "reusing the remembered Composio session");
                    return self.opened(session, request);
                }
                Err(error) if error.is_not_found() => self.forget_key(&key),
                Err(error) => return Err(classify(error, &self.config)),
            }
        }
        let session = self
            .client
            .create_session(&request)
            .await
            .map_err(|error| classify(error, &self.config))?;
        if let Some(state) = &self.state {
            state.remember(&key, &session.session_id, &request.user_id);
        }
        self.opened(session, request)
    }

    /// Composio lost the session: do not offer it again.
    pub(crate) async fn forget(&self) {
        if let Ok(request) = self.request().await {
            self.forget_key(&self.key(&request));
        }
    }

    fn forget_key(&self, key: &str) {
        if let Some(state) = &self.state {
            state.forget(key);
        }
    }

    fn key(&self, request: &CreateSessionRequest) -> String {
        let api_key = self
            .config
            .api_key()
            .cloned()
            .unwrap_or_else(|| SecretString::from(String::new()));
        state_file::session_key(&api_key, &self.config.composio.base_url, request)
    }

    fn opened(&self, session: Session, request: CreateSessionRequest) -> Result<Opened, OpenError> {
        let endpoint = self
            .client
            .mcp_endpoint(&session)
            .map_err(|error| OpenError::Fatal(FatalError::Other(error.to_string())))?;
        Ok(Opened {
            session,
            endpoint,
            request,
        })
    }

    /// A session of another user is a configuration error naming both.
    fn check_user(&self, session: &Session) -> Result<(), OpenError> {
        let ours = self.config.user_id.as_deref().unwrap_or_default();
        match session.config.get("user_id").and_then(Value::as_str) {
            Some(theirs) if theirs != ours => Err(OpenError::Fatal(FatalError::Config {
                key: "user_id",
                message: format!(
                    "the session {} belongs to user {theirs:?}, not {ours:?}",
                    session.session_id
                ),
            })),
            _ => Ok(()),
        }
    }

    /// The create body with pinned aliases replaced by account ids.
    async fn request(&self) -> Result<CreateSessionRequest, OpenError> {
        let mut request = super::session_request(&self.config);
        let has_aliases = request
            .connected_accounts
            .values()
            .flatten()
            .any(|pin| !pin.starts_with("ca_"));
        if !has_aliases {
            return Ok(request);
        }
        let query = AccountsQuery {
            user_ids: vec![request.user_id.clone()],
            toolkit_slugs: request.connected_accounts.keys().cloned().collect(),
            ..AccountsQuery::default()
        };
        let accounts = self
            .client
            .list_connected_accounts(&query)
            .await
            .map_err(|error| classify(error, &self.config))?;
        for (slug, pins) in &mut request.connected_accounts {
            for pin in pins.iter_mut().filter(|pin| !pin.starts_with("ca_")) {
                let found = accounts.iter().find(|account| {
                    account.alias.as_deref() == Some(pin.as_str())
                        && account.status != AccountStatus::Failed
                        && account
                            .toolkit
                            .as_ref()
                            .is_some_and(|toolkit| toolkit.slug == *slug)
                });
                match found {
                    Some(account) => *pin = account.id.clone(),
                    None => {
                        return Err(OpenError::Fatal(FatalError::Config {
                            key: "session.connected_accounts",
                            message: format!(
                                "{slug}: no account of this user has the alias {pin:?}"
                            ),
                        }));
                    }
                }
            }
        }
        Ok(request)
    }
}

/// Retry or a fatal line for a failed session call (the text is scrubbed of the key).
pub(crate) fn classify(error: ComposioError, config: &Config) -> OpenError {
    if error.is_retryable() {
        return OpenError::Retry(error);
    }
    let message = match error.status().map(|status| status.as_u16()) {
        Some(401) => {
            format!("Composio refused the API key (HTTP 401): check COMPOSIO_API_KEY ({error})")
        }
        Some(403) => format!(
            "Composio denied the API key access to sessions (HTTP 403): it needs the session \
             permissions ({error})"
        ),
        Some(404) => format!(
            "Composio has no session API at {} (HTTP 404): check composio.base_url ({error})",
            config.composio.base_url
        ),
        _ => format!("Composio refused the session: {error}"),
    };
    OpenError::Fatal(FatalError::Other(message))
}

/// Whether a session's echoed configuration differs from what we would create now, in the
/// parts toolgate sets.
fn config_differs(echo: &Value, request: &CreateSessionRequest) -> bool {
    let list = |value: Option<&Value>| -> Vec<String> {
        let mut items: Vec<String> = value
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        items.sort();
        items
    };
    let sorted = |slugs: &[String]| {
        let mut slugs = slugs.to_vec();
        slugs.sort();
        slugs
    };
    let toolkits = echo.get("toolkits");
    let (enabled, disabled) = match &request.toolkits {
        Some(ToolkitSelection::Enable(slugs)) => (sorted(slugs), Vec::new()),
        Some(ToolkitSelection::Disable(slugs)) => (Vec::new(), sorted(slugs)),
        None => (Vec::new(), Vec::new()),
    };
    let toolkits_differ = list(toolkits.and_then(|t| t.get("enabled"))) != enabled
        || list(toolkits.and_then(|t| t.get("disabled"))) != disabled;
    let manage = request
        .manage_connections
        .as_ref()
        .and_then(|manage| manage.enable)
        .unwrap_or(true);
    let manage_differs = echo
        .pointer("/manage_connections/enabled")
        .and_then(Value::as_bool)
        .is_some_and(|echoed| echoed != manage);
    let auth_configs = serde_json::to_value(&request.auth_configs).unwrap_or_default();
    let auth_differs = echo
        .get("auth_configs")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()))
        != auth_configs;
    let pins = serde_json::to_value(&request.connected_accounts).unwrap_or_default();
    let pins_differ = echo
        .get("connected_accounts")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()))
        != pins;
    let multi = request
        .multi_account
        .as_ref()
        .and_then(|multi| multi.enable)
        .unwrap_or(false);
    let multi_differs = echo
        .pointer("/multi_account/enable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        != multi;
    toolkits_differ || manage_differs || auth_differs || pins_differ || multi_differs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_comparison_sees_what_toolgate_sets() {
        let mut request = CreateSessionRequest {
            user_id: "alice".to_owned(),
            manage_connections: Some(toolgate_session::ManageConnections::disabled()),
            toolkits: Some(ToolkitSelection::Enable(vec![
                "gmail".into(),
                "github".into(),
            ])),
            ..CreateSessionRequest::default()
        };
        let echo = json!({
            "user_id": "alice",
            "manage_connections": {"enabled": false},
            "toolkits": {"enabled": ["github", "gmail"]},
        });
        assert!(!config_differs(&echo, &request));
        request.auth_configs.insert("gmail".into(), "ac_1".into());
        assert!(config_differs(&echo, &request));
        let echo = json!({
            "manage_connections": {"enabled": false},
            "toolkits": {"enabled": ["github", "gmail"]},
            "auth_configs": {"gmail": "ac_1"},
        });
        assert!(!config_differs(&echo, &request));
        request.manage_connections = None;
        assert!(config_differs(&echo, &request), "in-chat auth turned on");
    }
}
