//! Auth configs: which OAuth app (or API-key form) a toolkit's Connect Links go through.
//!
//! Every project has a default, Composio-managed (or, for API-key toolkits, project-owned)
//! auth config per linkable toolkit, with the stable id from the catalog. A project can add
//! its own white-label configs (`is_composio_managed: false`) through the control plane or
//! the `auth_configs` of [`crate::SandboxConfig`]; a session that names one in its
//! `auth_configs` mints links through it, and the hosted link page shows that app's name.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{ProjectId, State, Store, check_prefix, timestamp};
use crate::catalog::{self, Toolkit};
use crate::config::SessionConfig;
use crate::http::ApiError;

/// A project's own auth config.
#[derive(Clone, Debug)]
pub(crate) struct CustomAuthConfig {
    pub(crate) id: String,
    pub(crate) project: ProjectId,
    pub(crate) toolkit: &'static Toolkit,
    pub(crate) name: String,
    pub(crate) created_at: DateTime<Utc>,
}

/// What the API shows of any auth config, default or custom.
#[derive(Clone, Debug)]
pub(crate) struct AuthConfigView {
    pub(crate) id: String,
    pub(crate) toolkit: &'static Toolkit,
    pub(crate) name: String,
    pub(crate) managed: bool,
    pub(crate) custom: bool,
    pub(crate) created_at: Option<DateTime<Utc>>,
}

impl AuthConfigView {
    fn to_json(&self, base_url: &str, connections: usize) -> Value {
        json!({
            "id": self.id,
            "uuid": format!("00000000-0000-4000-8000-{:0>12}", self.id.trim_start_matches("ac_").to_ascii_lowercase()),
            "name": self.name,
            "type": if self.custom { "custom" } else { "default" },
            "status": "ENABLED",
            "is_composio_managed": self.managed,
            "is_enabled_for_tool_router": true,
            "auth_scheme": self.toolkit.auth_scheme(),
            "toolkit": {
                "slug": self.toolkit.slug,
                "logo": format!("{base_url}/_sandbox/logos/{}.svg", self.toolkit.slug),
            },
            "no_of_connections": connections,
            "tool_access_config": {},
            "created_at": self.created_at.map(timestamp),
        })
    }
}

// === impl State ===

impl State {
    /// The auth config `id` as project `project` sees it.
    pub(super) fn auth_config(&self, project: ProjectId, id: &str) -> Option<AuthConfigView> {
        if let Some(custom) = self
            .auth_configs
            .iter()
            .find(|custom| custom.project == project && custom.id == id)
        {
            return Some(AuthConfigView {
                id: custom.id.clone(),
                toolkit: custom.toolkit,
                name: custom.name.clone(),
                managed: false,
                custom: true,
                created_at: Some(custom.created_at),
            });
        }
        let toolkit = catalog::find_by_auth_config(id)?;
        Some(AuthConfigView {
            id: id.to_owned(),
            toolkit,
            name: format!("{} default auth config", toolkit.name),
            managed: toolkit.is_composio_managed(),
            custom: false,
            created_at: None,
        })
    }

    /// Every auth config of the project: the defaults, then the custom ones.
    fn all_auth_configs(&self, project: ProjectId) -> Vec<AuthConfigView> {
        let defaults = catalog::all()
            .iter()
            .filter_map(Toolkit::default_auth_config_id)
            .filter_map(|id| self.auth_config(project, &id));
        let custom = self
            .auth_configs
            .iter()
            .filter(|custom| custom.project == project)
            .filter_map(|custom| self.auth_config(project, &custom.id));
        defaults.chain(custom).collect()
    }

    /// A session's `auth_configs` must name configs of this project, for the toolkit they are
    /// given for.
    pub(super) fn check_auth_configs(
        &self,
        project: ProjectId,
        config: &SessionConfig,
    ) -> Result<(), ApiError> {
        for (slug, id) in &config.auth_configs {
            match self.auth_config(project, id) {
                Some(auth) if auth.toolkit.slug == slug => {}
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "Auth config {id} not found for toolkit {slug}"
                    )));
                }
            }
        }
        Ok(())
    }
}

// === impl Store ===

impl Store {
    /// Control plane: a white-label auth config for `toolkit` named `name`. The id is derived
    /// from both, so a sandbox started with the same configs gives the same ids.
    pub(crate) fn create_auth_config(
        &self,
        project: ProjectId,
        toolkit: &str,
        name: &str,
        base_url: &str,
    ) -> Result<Value, ApiError> {
        let toolkit = catalog::find(toolkit)
            .filter(|toolkit| !toolkit.is_no_auth())
            .ok_or_else(|| {
                ApiError::bad_request(format!("Toolkit '{toolkit}' cannot have an auth config"))
            })?;
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(ApiError::bad_request(
                "An auth config needs a name (1 to 100 characters)",
            ));
        }
        let id = catalog::stable_id("ac_", &format!("{}:{name}", toolkit.slug));
        let mut state = self.lock();
        if state.auth_config(project, &id).is_none() {
            state.auth_configs.push(CustomAuthConfig {
                id: id.clone(),
                project,
                toolkit,
                name: name.to_owned(),
                created_at: Utc::now(),
            });
        }
        let view = state
            .auth_config(project, &id)
            .ok_or_else(|| ApiError::not_found("Auth config vanished"))?;
        Ok(view.to_json(base_url, state.connections_of(&id)))
    }

    /// `GET /auth_configs`: `toolkit_slug` (comma list) and `is_composio_managed` filters.
    pub(crate) fn list_auth_configs(
        &self,
        project: ProjectId,
        query: &std::collections::HashMap<String, String>,
        base_url: &str,
    ) -> Result<Value, ApiError> {
        let toolkits: Option<Vec<String>> = query.get("toolkit_slug").map(|slugs| {
            slugs
                .split(',')
                .map(|slug| slug.trim().to_ascii_lowercase())
                .filter(|slug| !slug.is_empty())
                .collect()
        });
        let managed = match query.get("is_composio_managed").map(String::as_str) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => {
                return Err(ApiError::validation(
                    "Error in query.is_composio_managed: Expected boolean",
                ));
            }
        };
        let state = self.lock();
        let items: Vec<Value> = state
            .all_auth_configs(project)
            .into_iter()
            .filter(|auth| {
                toolkits
                    .as_ref()
                    .is_none_or(|slugs| slugs.iter().any(|slug| slug == auth.toolkit.slug))
            })
            .filter(|auth| managed.is_none_or(|managed| managed == auth.managed))
            .map(|auth| auth.to_json(base_url, state.connections_of(&auth.id)))
            .collect();
        let total = items.len();
        Ok(json!({
            "items": items,
            "next_cursor": null,
            "total_pages": 1,
            "current_page": 1,
            "total_items": total,
        }))
    }

    /// `GET /auth_configs/{id}`.
    pub(crate) fn get_auth_config(
        &self,
        project: ProjectId,
        id: &str,
        base_url: &str,
    ) -> Result<Value, ApiError> {
        check_prefix(id, "ac_", "auth config")?;
        let state = self.lock();
        let auth = state
            .auth_config(project, id)
            .ok_or_else(|| ApiError::not_found(format!("Auth config {id} not found")))?;
        Ok(auth.to_json(base_url, state.connections_of(id)))
    }
}

impl State {
    /// ACTIVE accounts made through the auth config `id`.
    fn connections_of(&self, id: &str) -> usize {
        self.accounts
            .values()
            .filter(|account| {
                !account.deleted
                    && account.auth_config_id == id
                    && account.status == super::Status::Active
            })
            .count()
    }
}
