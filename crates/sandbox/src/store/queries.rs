//! Parsing of list queries and link requests into typed filters, and pagination. Pure request
//! validation: nothing here touches the state.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::{Account, Status};
use crate::catalog::Toolkit;
use crate::config::{self, ToolkitFilter};
use crate::http::{ApiError, comma_list};

/// Page size when a list request gives no `limit` (the real default is undocumented).
const DEFAULT_PAGE_SIZE: usize = 20;
/// The toolkits list's documented maximum page size.
const MAX_TOOLKITS_PAGE_SIZE: usize = 50;
/// The connected-accounts list's maximum page size.
const MAX_ACCOUNTS_PAGE_SIZE: usize = 1000;

/// One page of a list: which slice of the items to return.
#[derive(Debug)]
pub(super) struct Page {
    number: usize,
    limit: usize,
}

impl Page {
    /// Reads `cursor` (base64 of `{"page","limit"}`) and `limit` (overrides the cursor's).
    fn from_query(query: &HashMap<String, String>, max_limit: usize) -> Result<Self, ApiError> {
        let mut page = Self {
            number: 1,
            limit: DEFAULT_PAGE_SIZE,
        };
        if let Some(cursor) = query.get("cursor").filter(|cursor| !cursor.is_empty()) {
            let decoded = BASE64
                .decode(cursor)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .and_then(|value| {
                    let number = usize::try_from(value.get("page")?.as_u64()?).ok()?;
                    let limit = usize::try_from(value.get("limit")?.as_u64()?).ok()?;
                    Some((number, limit))
                })
                .filter(|(number, limit)| *number >= 1 && (1..=max_limit).contains(limit));
            let (number, limit) = decoded.ok_or_else(|| ApiError::bad_request("Invalid cursor"))?;
            page = Self { number, limit };
        }
        if let Some(limit) = query.get("limit") {
            match limit.parse::<usize>() {
                Ok(limit) if (1..=max_limit).contains(&limit) => page.limit = limit,
                _ => {
                    return Err(ApiError::validation(format!(
                        "Error in query.limit: Number must be between 1 and {max_limit}, max allowed is {max_limit}"
                    )));
                }
            }
        }
        Ok(page)
    }

    /// Renders `{items, next_cursor, total_pages, current_page, total_items}` for `all`.
    pub(super) fn render(&self, all: Vec<Value>) -> Value {
        let total_items = all.len();
        let total_pages = total_items.div_ceil(self.limit).max(1);
        let start = (self.number - 1).saturating_mul(self.limit);
        let items: Vec<Value> = all.into_iter().skip(start).take(self.limit).collect();
        let next_cursor = (self.number < total_pages).then(|| {
            BASE64.encode(json!({"page": self.number + 1, "limit": self.limit}).to_string())
        });
        json!({
            "items": items,
            "next_cursor": next_cursor,
            "total_pages": total_pages,
            "current_page": self.number,
            "total_items": total_items,
        })
    }
}

/// A boolean query parameter (`true`/`false`); absent is `None`.
fn query_bool(query: &HashMap<String, String>, key: &str) -> Result<Option<bool>, ApiError> {
    match query.get(key).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::validation(format!(
            "Error in query.{key}: Expected boolean"
        ))),
    }
}

/// One of a fixed set of values; absent is `None`.
fn query_choice<'a>(
    query: &HashMap<String, String>,
    key: &str,
    choices: &[&'a str],
) -> Result<Option<&'a str>, ApiError> {
    let Some(value) = query.get(key) else {
        return Ok(None);
    };
    choices
        .iter()
        .find(|choice| *choice == value)
        .copied()
        .map(Some)
        .ok_or_else(|| {
            let listed: Vec<String> = choices.iter().map(|choice| format!("'{choice}'")).collect();
            ApiError::validation(format!(
                "Error in query.{key}: Expected {}",
                listed.join(" | ")
            ))
        })
}

/// A comma list of slugs, lowercased.
fn lowercase_list(value: Option<&String>) -> Option<Vec<String>> {
    comma_list(value).map(|slugs| slugs.iter().map(|slug| slug.to_ascii_lowercase()).collect())
}

/// `GET /tool_router/session/{id}/toolkits` query.
#[derive(Debug)]
pub(super) struct ToolkitQuery {
    pub(super) page: Page,
    /// `is_connected=true`: only toolkits whose shown account is ACTIVE. `false` (the spec's
    /// default) applies no filter.
    pub(super) only_connected: bool,
    /// `toolkits=a,b`: overrides the session's toolkit config.
    requested: Option<Vec<String>>,
    /// `search`: case-insensitive substring of slug, name or description.
    search: Option<String>,
}

impl ToolkitQuery {
    pub(super) fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        Ok(Self {
            page: Page::from_query(query, MAX_TOOLKITS_PAGE_SIZE)?,
            only_connected: query_bool(query, "is_connected")?.unwrap_or(false),
            requested: lowercase_list(query.get("toolkits")),
            search: query
                .get("search")
                .map(|text| text.trim().to_lowercase())
                .filter(|text| !text.is_empty()),
        })
    }

    /// Whether `toolkit` is listed for a session with `filter` (before `is_connected`).
    pub(super) fn lists(&self, toolkit: &Toolkit, filter: &ToolkitFilter) -> bool {
        let selected = match &self.requested {
            Some(requested) => requested.iter().any(|slug| slug == toolkit.slug),
            None => filter.allows(toolkit.slug),
        };
        selected
            && self.search.as_deref().is_none_or(|search| {
                toolkit.slug.contains(search)
                    || toolkit.name.to_lowercase().contains(search)
                    || toolkit.description.to_lowercase().contains(search)
            })
    }
}

/// `GET /connected_accounts` query.
#[derive(Debug)]
pub(super) struct AccountQuery {
    pub(super) page: Page,
    user_ids: Option<Vec<String>>,
    toolkit_slugs: Option<Vec<String>>,
    auth_config_ids: Option<Vec<String>>,
    account_ids: Option<Vec<String>>,
    statuses: Option<Vec<Status>>,
    account_type: Option<&'static str>,
    by_updated_at: bool,
    ascending: bool,
}

impl AccountQuery {
    pub(super) fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let statuses = comma_list(query.get("statuses"))
            .map(|names| {
                names
                    .iter()
                    .map(|name| {
                        Status::parse(name).ok_or_else(|| {
                            ApiError::validation(format!(
                                "Error in query.statuses: Invalid enum value '{name}'. Expected one of INITIALIZING, INITIATED, ACTIVE, FAILED, EXPIRED, INACTIVE, REVOKED"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let order_by = query_choice(query, "order_by", &["created_at", "updated_at"])?;
        let direction = query_choice(query, "order_direction", &["asc", "desc"])?;
        let account_type = query_choice(query, "account_type", &["PRIVATE", "SHARED", "ALL"])?;
        Ok(Self {
            page: Page::from_query(query, MAX_ACCOUNTS_PAGE_SIZE)?,
            user_ids: comma_list(query.get("user_ids")),
            toolkit_slugs: lowercase_list(query.get("toolkit_slugs")),
            auth_config_ids: comma_list(query.get("auth_config_ids")),
            account_ids: comma_list(query.get("connected_account_ids")),
            statuses,
            account_type: account_type.filter(|kind| *kind != "ALL"),
            by_updated_at: order_by == Some("updated_at"),
            ascending: direction == Some("asc"),
        })
    }

    /// Whether an (undeleted, same-project) account passes every filter.
    pub(super) fn matches(&self, account: &Account) -> bool {
        let contains = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref()
                .is_none_or(|list| list.iter().any(|item| item == value))
        };
        contains(&self.user_ids, &account.user_id)
            && contains(&self.toolkit_slugs, account.toolkit.slug)
            && contains(&self.auth_config_ids, &account.auth_config_id)
            && contains(&self.account_ids, &account.id)
            && self
                .statuses
                .as_ref()
                .is_none_or(|statuses| statuses.contains(&account.status))
            && self
                .account_type
                .is_none_or(|kind| account.account_type == kind)
    }

    /// Orders by `created_at` or `updated_at` (creation order breaks ties), newest first
    /// unless `order_direction=asc`.
    pub(super) fn sort(&self, accounts: &mut [&Account]) {
        accounts.sort_by_key(|account| {
            let time = if self.by_updated_at {
                account.updated_at
            } else {
                account.created_at
            };
            (time, account.sequence)
        });
        if !self.ascending {
            accounts.reverse();
        }
    }
}

/// A validated `POST /tool_router/session/{id}/link` body.
#[derive(Debug)]
pub(super) struct LinkRequest {
    pub(super) toolkit: String,
    pub(super) callback_url: Option<String>,
    pub(super) alias: Option<String>,
    pub(super) account_type: &'static str,
    /// The `experimental` block echoed in the response, when one was sent.
    pub(super) experimental: Option<Value>,
}

impl LinkRequest {
    pub(super) fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let toolkit = match body.get("toolkit") {
            Some(Value::String(slug)) if !slug.is_empty() => slug.clone(),
            Some(Value::String(_)) => {
                return Err(ApiError::validation(
                    "Error in payload.toolkit: String must contain at least 1 character(s)",
                ));
            }
            Some(_) => {
                return Err(ApiError::validation(
                    "Error in payload.toolkit: Expected string",
                ));
            }
            None => return Err(ApiError::validation("Error in payload.toolkit: Required")),
        };
        let callback_url = match body.get("callback_url") {
            None | Some(Value::Null) => None,
            Some(url) => Some(config::validate_url(url, "callback_url")?),
        };
        let alias = match body.get("alias") {
            None | Some(Value::Null) => None,
            Some(Value::String(alias)) if !alias.is_empty() => Some(alias.clone()),
            Some(_) => {
                return Err(ApiError::validation(
                    "Error in payload.alias: Expected a non-empty string",
                ));
            }
        };
        let (account_type, experimental) = link_experimental(body.get("experimental"))?;
        Ok(Self {
            toolkit,
            callback_url,
            alias,
            account_type,
            experimental,
        })
    }
}

/// `experimental` of a link request: `{account_type, acl_config_for_shared}`; the ACL is only
/// valid on SHARED connections (the SDKs match on this message's wording).
fn link_experimental(value: Option<&Value>) -> Result<(&'static str, Option<Value>), ApiError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(("PRIVATE", None));
    };
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::validation("Error in payload.experimental: Expected object"))?;
    let account_type = match map.get("account_type").and_then(Value::as_str) {
        None | Some("PRIVATE") => "PRIVATE",
        Some("SHARED") => "SHARED",
        Some(_) => {
            return Err(ApiError::validation(
                "Error in payload.experimental.account_type: Expected 'PRIVATE' | 'SHARED'",
            ));
        }
    };
    let acl = map
        .get("acl_config_for_shared")
        .filter(|acl| !acl.is_null());
    if acl.is_some() && account_type != "SHARED" {
        return Err(ApiError::bad_request(
            "acl_config_for_shared is only valid on SHARED connections",
        ));
    }
    let mut echoed = json!({ "account_type": account_type });
    if let Some(acl) = acl {
        echoed["acl_config_for_shared"] = acl.clone();
    }
    Ok((account_type, Some(echoed)))
}
