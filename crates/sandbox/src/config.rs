//! Session configuration: validates a `POST /tool_router/session` body the way the real API
//! does, and builds both the echoed `config` (past-tense keys where the real API uses them) and
//! the typed view the rest of the sandbox needs (which meta tools, which toolkits, pins).
//!
//! Validation messages follow the real API's zod-style `Error in payload.<field>: <problem>`
//! inside a 400 "Validation error while processing request" envelope.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::catalog;
use crate::http::ApiError;

/// The MCP annotation hints `tags` may name.
const TAG_HINTS: &[&str] = &[
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
    "createHint",
    "updateHint",
];

/// Which toolkits a session may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ToolkitFilter {
    /// Every toolkit of the catalog (`toolkits` omitted, or only `require_approval` given).
    All,
    /// Only these (`{"enable":[..]}`).
    Enable(Vec<String>),
    /// Everything but these (`{"disable":[..]}`).
    Disable(Vec<String>),
}

impl ToolkitFilter {
    /// Whether the session may use `slug`.
    pub(crate) fn allows(&self, slug: &str) -> bool {
        match self {
            Self::All => true,
            Self::Enable(slugs) => slugs.iter().any(|allowed| allowed == slug),
            Self::Disable(slugs) => !slugs.iter().any(|denied| denied == slug),
        }
    }
}

/// A validated session configuration.
#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    /// The session's user.
    pub(crate) user_id: String,
    /// `manage_connections.enable` (default true).
    pub(crate) manage_connections: bool,
    /// `manage_connections.enable_wait_for_connections` (default false).
    pub(crate) wait_for_connections: bool,
    /// `manage_connections.callback_url`: the default callback of links minted in this session.
    pub(crate) callback_url: Option<String>,
    /// Which toolkits the session may use.
    pub(crate) toolkits: ToolkitFilter,
    /// `auth_configs`: toolkit → `ac_...`.
    pub(crate) auth_configs: BTreeMap<String, String>,
    /// `connected_accounts`: toolkit → pinned `ca_...` ids.
    pub(crate) connected_accounts: BTreeMap<String, Vec<String>>,
    /// `search.enable` (default true).
    pub(crate) search: bool,
    /// `execute.enable_multi_execute` (default true).
    pub(crate) multi_execute: bool,
    /// `workbench.enable` (default true).
    pub(crate) workbench: bool,
    /// `proxy_execute.enable` (default false).
    pub(crate) proxy_execute: bool,
    /// `experimental.submit_feedback.enable` (default false).
    pub(crate) submit_feedback: bool,
    /// The `config` object echoed in responses.
    pub(crate) echo: Value,
}

impl SessionConfig {
    /// The meta tools this configuration exposes (`tool_router_tools`), in the order the real
    /// API lists them.
    pub(crate) fn tool_router_tools(&self) -> Vec<String> {
        let mut tools = Vec::new();
        if self.search {
            tools.push("COMPOSIO_SEARCH_TOOLS");
            tools.push("COMPOSIO_GET_TOOL_SCHEMAS");
        }
        if self.manage_connections {
            tools.push("COMPOSIO_MANAGE_CONNECTIONS");
            if self.wait_for_connections {
                tools.push("COMPOSIO_WAIT_FOR_CONNECTIONS");
            }
        }
        if self.multi_execute {
            tools.push("COMPOSIO_MULTI_EXECUTE_TOOL");
        }
        if self.workbench {
            tools.push("COMPOSIO_REMOTE_WORKBENCH");
            tools.push("COMPOSIO_REMOTE_BASH_TOOL");
        }
        if self.proxy_execute {
            tools.push("COMPOSIO_PROXY_EXECUTE");
        }
        if self.submit_feedback {
            tools.push("COMPOSIO_SUBMIT_FEEDBACK");
        }
        tools.into_iter().map(str::to_owned).collect()
    }
}

/// JSON type names as zod reports them.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn expected(path: &str, wanted: &str, got: &Value) -> ApiError {
    ApiError::validation(format!(
        "Error in payload.{path}: Expected {wanted}, received {}",
        type_name(got)
    ))
}

fn invalid_input(path: &str) -> ApiError {
    ApiError::validation(format!("Error in payload.{path}: Invalid input"))
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| expected(path, "object", value))
}

/// Rejects keys outside `allowed` (the real schemas are `additionalProperties: false` for the
/// small objects toolgate sends).
fn only_keys(map: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), ApiError> {
    let unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|key| !allowed.contains(key))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = unknown.iter().map(|key| format!("'{key}'")).collect();
    Err(ApiError::validation(format!(
        "Error in payload.{path}: Unrecognized key(s) in object: {}",
        listed.join(", ")
    )))
}

/// An optional boolean field; `null` counts as absent.
fn opt_bool(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => Err(expected(&format!("{path}.{key}"), "boolean", other)),
    }
}

fn string_array(value: &Value, path: &str) -> Result<Vec<String>, ApiError> {
    let items = value
        .as_array()
        .ok_or_else(|| expected(path, "array", value))?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| expected(&format!("{path}.{index}"), "string", item))
        })
        .collect()
}

/// Checks that an absolute http(s) URL was given.
pub(crate) fn validate_url(value: &Value, path: &str) -> Result<String, ApiError> {
    let text = value
        .as_str()
        .ok_or_else(|| expected(path, "string", value))?;
    match url::Url::parse(text) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(text.to_owned()),
        _ => Err(ApiError::validation(format!(
            "Error in payload.{path}: Invalid url"
        ))),
    }
}

/// Lowercases toolkit slugs and rejects the ones the catalog does not know (400).
fn known_toolkits(slugs: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut known = Vec::with_capacity(slugs.len());
    let mut unknown = Vec::new();
    for slug in slugs {
        match catalog::find(&slug) {
            Some(toolkit) => known.push(toolkit.slug.to_owned()),
            None => unknown.push(slug),
        }
    }
    if unknown.is_empty() {
        Ok(known)
    } else {
        let mut error =
            ApiError::bad_request(format!("Toolkit(s) not found: {}", unknown.join(", ")));
        error.errors = unknown
            .iter()
            .map(|slug| format!("Toolkit '{slug}' does not exist"))
            .collect();
        Err(error)
    }
}

fn toolkit_key(slug: &str) -> Result<String, ApiError> {
    known_toolkits(vec![slug.to_owned()]).map(|mut slugs| slugs.remove(0))
}

/// The echoed `config` under construction.
type Echo = Map<String, Value>;

/// A top-level field, with `null` treated as absent.
fn field<'a>(request: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    request.get(key).filter(|value| !value.is_null())
}

/// Validates a create (or merged PATCH) body and builds the session configuration.
pub(crate) fn parse(request: &Map<String, Value>) -> Result<SessionConfig, ApiError> {
    let mut echo = Echo::new();
    let user_id = parse_user_id(request, &mut echo)?;
    let (manage_connections, wait_for_connections, callback_url) =
        parse_manage_connections(request, &mut echo)?;
    let toolkits = parse_toolkits(request, &mut echo)?;
    let auth_configs = parse_auth_configs(request, &mut echo)?;
    // multi_account first: it decides how many accounts a toolkit may pin.
    let max_pins = parse_multi_account(request, &mut echo)?;
    let connected_accounts = parse_connected_accounts(request, max_pins, &mut echo)?;
    if let Some(value) = field(request, "tools") {
        let mut echoed = Map::new();
        for (slug, rule) in object(value, "tools")? {
            let path = format!("tools.{slug}");
            echoed.insert(toolkit_key(slug)?, echo_enable_disable(rule, &path, true)?);
        }
        echo.insert("tools".to_owned(), Value::Object(echoed));
    }
    if let Some(value) = field(request, "tags") {
        echo.insert("tags".to_owned(), echo_tags(value, "tags")?);
    }
    let workbench = parse_workbench(request, &mut echo)?;
    let search = single_flag(request, "search", "enable", true, &mut echo)?;
    let multi_execute = single_flag(request, "execute", "enable_multi_execute", true, &mut echo)?;
    parse_preload(request, &mut echo)?;
    let proxy_execute = match field(request, "proxy_execute") {
        None => false,
        Some(_) => single_flag(request, "proxy_execute", "enable", false, &mut echo)?,
    };
    match request.get("instant") {
        None | Some(Value::Null | Value::Bool(false)) => {
            echo.insert("instant".to_owned(), json!(false));
        }
        Some(Value::Object(map)) => {
            echo.insert("instant".to_owned(), Value::Object(map.clone()));
        }
        Some(other) => return Err(expected("instant", "false or object", other)),
    }
    let submit_feedback = parse_submit_feedback(request)?;
    Ok(SessionConfig {
        user_id,
        manage_connections,
        wait_for_connections,
        callback_url,
        toolkits,
        auth_configs,
        connected_accounts,
        search,
        multi_execute,
        workbench,
        proxy_execute,
        submit_feedback,
        echo: Value::Object(echo),
    })
}

/// `user_id`: a non-empty string.
fn parse_user_id(request: &Map<String, Value>, echo: &mut Echo) -> Result<String, ApiError> {
    let user_id = match request.get("user_id") {
        Some(Value::String(user_id)) if !user_id.is_empty() => user_id.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::validation(
                "Error in payload.user_id: String must contain at least 1 character(s)",
            ));
        }
        Some(other) => return Err(expected("user_id", "string", other)),
        None => return Err(ApiError::validation("Error in payload.user_id: Required")),
    };
    echo.insert("user_id".to_owned(), json!(user_id));
    Ok(user_id)
}

/// `manage_connections`: an object, never a bool; echoed with `enabled`. Returns
/// `(enable, enable_wait_for_connections, callback_url)`.
fn parse_manage_connections(
    request: &Map<String, Value>,
    echo: &mut Echo,
) -> Result<(bool, bool, Option<String>), ApiError> {
    let Some(value) = field(request, "manage_connections") else {
        echo.insert(
            "manage_connections".to_owned(),
            json!({"enabled": true, "enable_wait_for_connections": false, "enable_connection_removal": true}),
        );
        return Ok((true, false, None));
    };
    let path = "manage_connections";
    let map = object(value, path)?;
    only_keys(
        map,
        &[
            "enable",
            "callback_url",
            "enable_wait_for_connections",
            "enable_connection_removal",
        ],
        path,
    )?;
    let enable = opt_bool(map, "enable", path)?.unwrap_or(true);
    let wait = opt_bool(map, "enable_wait_for_connections", path)?.unwrap_or(false);
    let removal = opt_bool(map, "enable_connection_removal", path)?.unwrap_or(true);
    let callback_url = match map.get("callback_url") {
        None | Some(Value::Null) => None,
        Some(url) => Some(validate_url(url, "manage_connections.callback_url")?),
    };
    let mut echoed = json!({"enabled": enable, "enable_wait_for_connections": wait, "enable_connection_removal": removal});
    if let Some(url) = &callback_url {
        echoed["callback_url"] = json!(url);
    }
    echo.insert(path.to_owned(), echoed);
    Ok((enable, wait, callback_url))
}

/// `toolkits`: exactly `{"enable":[..]}` or `{"disable":[..]}` (each optionally with
/// `require_approval`), or only `{"require_approval":[..]}`. A bare array or `enabled` is the
/// documented 400 `Error in payload.toolkits: Invalid input`.
fn parse_toolkits(
    request: &Map<String, Value>,
    echo: &mut Echo,
) -> Result<ToolkitFilter, ApiError> {
    let Some(value) = field(request, "toolkits") else {
        return Ok(ToolkitFilter::All);
    };
    let map = value.as_object().ok_or_else(|| invalid_input("toolkits"))?;
    let unexpected_key = map
        .keys()
        .any(|key| !matches!(key.as_str(), "enable" | "disable" | "require_approval"));
    if unexpected_key
        || (map.contains_key("enable") && map.contains_key("disable"))
        || map.is_empty()
    {
        return Err(invalid_input("toolkits"));
    }
    let list = |key: &str| -> Result<Option<Vec<String>>, ApiError> {
        map.get(key)
            .map(|value| string_array(value, &format!("toolkits.{key}")).and_then(known_toolkits))
            .transpose()
    };
    let approval = list("require_approval")?;
    let (filter, mut echoed) = if let Some(enable) = list("enable")? {
        (
            ToolkitFilter::Enable(enable.clone()),
            json!({"enabled": enable}),
        )
    } else if let Some(disable) = list("disable")? {
        (
            ToolkitFilter::Disable(disable.clone()),
            json!({"disabled": disable}),
        )
    } else {
        (ToolkitFilter::All, json!({}))
    };
    if let Some(approval) = approval {
        echoed["require_approval"] = json!(approval);
    }
    echo.insert("toolkits".to_owned(), echoed);
    Ok(filter)
}

/// `auth_configs`: toolkit → `ac_` id (the store checks that it exists for that toolkit).
fn parse_auth_configs(
    request: &Map<String, Value>,
    echo: &mut Echo,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut auth_configs = BTreeMap::new();
    let Some(value) = field(request, "auth_configs") else {
        return Ok(auth_configs);
    };
    for (slug, id) in object(value, "auth_configs")? {
        let id = id
            .as_str()
            .ok_or_else(|| expected(&format!("auth_configs.{slug}"), "string", id))?;
        let slug = toolkit_key(slug)?;
        if !id.starts_with("ac_") {
            return Err(ApiError::bad_request(format!(
                "Invalid auth config id '{id}': auth config ids start with ac_"
            )));
        }
        // Whether the config exists for that toolkit in the project is the store's check.
        auth_configs.insert(slug, id.to_owned());
    }
    echo.insert("auth_configs".to_owned(), json!(auth_configs));
    Ok(auth_configs)
}

/// `multi_account`; returns how many accounts a toolkit may pin (1 unless enabled).
fn parse_multi_account(request: &Map<String, Value>, echo: &mut Echo) -> Result<usize, ApiError> {
    let Some(value) = field(request, "multi_account") else {
        return Ok(1);
    };
    let path = "multi_account";
    let map = object(value, path)?;
    only_keys(
        map,
        &[
            "enable",
            "max_accounts_per_toolkit",
            "require_explicit_selection",
        ],
        path,
    )?;
    let enable = opt_bool(map, "enable", path)?;
    let explicit = opt_bool(map, "require_explicit_selection", path)?;
    let max = match map.get("max_accounts_per_toolkit") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(max) if (2..=10).contains(&max) => Some(max),
            _ => {
                return Err(ApiError::validation(
                    "Error in payload.multi_account.max_accounts_per_toolkit: Number must be between 2 and 10",
                ));
            }
        },
    };
    let mut echoed = Map::new();
    if let Some(enable) = enable {
        echoed.insert("enable".to_owned(), json!(enable));
    }
    if let Some(max) = max {
        echoed.insert("max_accounts_per_toolkit".to_owned(), json!(max));
    }
    if let Some(explicit) = explicit {
        echoed.insert("require_explicit_selection".to_owned(), json!(explicit));
    }
    echo.insert(path.to_owned(), Value::Object(echoed));
    // Five accounts per toolkit is the documented default once multi-account is on.
    let allowed = if enable == Some(true) {
        max.unwrap_or(5)
    } else {
        1
    };
    Ok(usize::try_from(allowed).unwrap_or(1))
}

/// `connected_accounts`: toolkit → array of `ca_` ids (a plain string, the older shape, is
/// wrapped). Whether the ids exist is the store's check.
fn parse_connected_accounts(
    request: &Map<String, Value>,
    max_pins: usize,
    echo: &mut Echo,
) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut connected_accounts = BTreeMap::new();
    let Some(value) = field(request, "connected_accounts") else {
        return Ok(connected_accounts);
    };
    for (slug, ids) in object(value, "connected_accounts")? {
        let path = format!("connected_accounts.{slug}");
        let ids = match ids {
            Value::String(id) => vec![id.clone()],
            other => string_array(other, &path)?,
        };
        let slug = toolkit_key(slug)?;
        if ids.is_empty() || ids.len() > max_pins {
            return Err(ApiError::validation(format!(
                "Error in payload.{path}: expected between 1 and {max_pins} connected account id(s)"
            )));
        }
        if let Some(bad) = ids.iter().find(|id| !id.starts_with("ca_")) {
            return Err(ApiError::bad_request(format!(
                "Invalid connected account id '{bad}': ids start with ca_"
            )));
        }
        connected_accounts.insert(slug, ids);
    }
    echo.insert("connected_accounts".to_owned(), json!(connected_accounts));
    Ok(connected_accounts)
}

/// `workbench`: `{enable, enable_proxy_execution, auto_offload_threshold, sandbox_size}`,
/// echoed with `proxy_execution_enabled`. Returns `enable` (default true).
fn parse_workbench(request: &Map<String, Value>, echo: &mut Echo) -> Result<bool, ApiError> {
    let path = "workbench";
    let (enable, proxy, threshold, size) = match field(request, path) {
        None => (true, false, json!(20000), "standard".to_owned()),
        Some(value) => {
            let map = object(value, path)?;
            only_keys(
                map,
                &[
                    "enable",
                    "enable_proxy_execution",
                    "auto_offload_threshold",
                    "sandbox_size",
                ],
                path,
            )?;
            let threshold = match map.get("auto_offload_threshold") {
                None | Some(Value::Null) => json!(20000),
                Some(Value::Number(number)) => Value::Number(number.clone()),
                Some(other) => {
                    return Err(expected(
                        "workbench.auto_offload_threshold",
                        "number",
                        other,
                    ));
                }
            };
            let size = match map.get("sandbox_size") {
                None | Some(Value::Null) => "standard".to_owned(),
                Some(Value::String(size))
                    if matches!(size.as_str(), "standard" | "medium" | "large" | "xlarge") =>
                {
                    size.clone()
                }
                Some(_) => {
                    return Err(ApiError::validation(
                        "Error in payload.workbench.sandbox_size: Invalid enum value. Expected 'standard' | 'medium' | 'large' | 'xlarge'",
                    ));
                }
            };
            let enable = opt_bool(map, "enable", path)?.unwrap_or(true);
            let proxy = opt_bool(map, "enable_proxy_execution", path)?.unwrap_or(false);
            (enable, proxy, threshold, size)
        }
    };
    echo.insert(
        path.to_owned(),
        json!({"enable": enable, "proxy_execution_enabled": proxy, "auto_offload_threshold": threshold, "sandbox_size": size}),
    );
    Ok(enable)
}

/// `preload`: `{tools: [slugs] | "all"}`, echoed as given (default `{"tools": []}`).
fn parse_preload(request: &Map<String, Value>, echo: &mut Echo) -> Result<(), ApiError> {
    let tools = match field(request, "preload") {
        None => json!([]),
        Some(value) => {
            let map = object(value, "preload")?;
            only_keys(map, &["tools"], "preload")?;
            match map.get("tools") {
                Some(Value::String(all)) if all == "all" => json!("all"),
                Some(list) => json!(string_array(list, "preload.tools")?),
                None => json!([]),
            }
        }
    };
    echo.insert("preload".to_owned(), json!({ "tools": tools }));
    Ok(())
}

/// `experimental.submit_feedback.enable` (default false). The rest of `experimental` is
/// accepted and ignored.
fn parse_submit_feedback(request: &Map<String, Value>) -> Result<bool, ApiError> {
    let Some(value) = field(request, "experimental") else {
        return Ok(false);
    };
    match object(value, "experimental")?.get("submit_feedback") {
        None | Some(Value::Null) => Ok(false),
        Some(feedback) => Ok(opt_bool(
            object(feedback, "experimental.submit_feedback")?,
            "enable",
            "experimental.submit_feedback",
        )?
        .unwrap_or(false)),
    }
}

/// A one-flag object such as `search: {enable}` / `execute: {enable_multi_execute}`, echoed
/// with its value (absent → `default`).
fn single_flag(
    request: &Map<String, Value>,
    key: &str,
    flag: &str,
    default: bool,
    echo: &mut Echo,
) -> Result<bool, ApiError> {
    let enabled = match field(request, key) {
        None => default,
        Some(value) => {
            let map = object(value, key)?;
            only_keys(map, &[flag], key)?;
            opt_bool(map, flag, key)?.unwrap_or(default)
        }
    };
    echo.insert(key.to_owned(), json!({ flag: enabled }));
    Ok(enabled)
}

/// Echoes `{enable|disable|tags|require_approval}` as `{enabled|disabled|tags|require_approval}`.
fn echo_enable_disable(rule: &Value, path: &str, allow_tags: bool) -> Result<Value, ApiError> {
    let map = rule.as_object().ok_or_else(|| invalid_input(path))?;
    let mut echoed = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "enable" => {
                echoed.insert(
                    "enabled".to_owned(),
                    json!(string_array(value, &format!("{path}.enable"))?),
                );
            }
            "disable" => {
                echoed.insert(
                    "disabled".to_owned(),
                    json!(string_array(value, &format!("{path}.disable"))?),
                );
            }
            "require_approval" => {
                echoed.insert(
                    key.clone(),
                    json!(string_array(value, &format!("{path}.require_approval"))?),
                );
            }
            "tags" if allow_tags => {
                echoed.insert(key.clone(), echo_tags(value, &format!("{path}.tags"))?);
            }
            _ => return Err(invalid_input(path)),
        }
    }
    if echoed.contains_key("enabled") && echoed.contains_key("disabled") || echoed.is_empty() {
        return Err(invalid_input(path));
    }
    Ok(Value::Object(echoed))
}

/// `tags`: an array of hint names (shorthand for enable) or `{enable, disable, require_approval}`.
fn echo_tags(value: &Value, path: &str) -> Result<Value, ApiError> {
    let check = |names: Vec<String>, path: &str| -> Result<Vec<String>, ApiError> {
        match names
            .iter()
            .find(|name| !TAG_HINTS.contains(&name.as_str()))
        {
            Some(bad) => Err(ApiError::validation(format!(
                "Error in payload.{path}: Invalid enum value '{bad}'"
            ))),
            None => Ok(names),
        }
    };
    match value {
        Value::Array(_) => Ok(json!({ "enabled": check(string_array(value, path)?, path)? })),
        Value::Object(map) => {
            let mut echoed = Map::new();
            for (key, list) in map {
                let wire = match key.as_str() {
                    "enable" => "enabled",
                    "disable" => "disabled",
                    "require_approval" => "require_approval",
                    _ => return Err(invalid_input(path)),
                };
                let list_path = format!("{path}.{key}");
                echoed.insert(
                    wire.to_owned(),
                    json!(check(string_array(list, &list_path)?, &list_path)?),
                );
            }
            Ok(Value::Object(echoed))
        }
        _ => Err(invalid_input(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_json(body: Value) -> Result<SessionConfig, ApiError> {
        match body {
            Value::Object(map) => parse(&map),
            _ => Err(ApiError::bad_request("not an object")),
        }
    }

    #[test]
    fn defaults_expose_the_default_meta_tools() {
        let config = parse_json(json!({"user_id": "u"})).map_err(|error| error.message);
        let config = config.as_ref().map(SessionConfig::tool_router_tools);
        assert_eq!(
            config,
            Ok(vec![
                "COMPOSIO_SEARCH_TOOLS".to_owned(),
                "COMPOSIO_GET_TOOL_SCHEMAS".to_owned(),
                "COMPOSIO_MANAGE_CONNECTIONS".to_owned(),
                "COMPOSIO_MULTI_EXECUTE_TOOL".to_owned(),
                "COMPOSIO_REMOTE_WORKBENCH".to_owned(),
                "COMPOSIO_REMOTE_BASH_TOOL".to_owned(),
            ])
        );
    }

    #[test]
    fn manual_connections_without_workbench_is_the_first_three_tools() {
        let config = parse_json(
            json!({"user_id": "u", "manage_connections": {"enable": false}, "workbench": {"enable": false}}),
        );
        let tools = config
            .map(|config| config.tool_router_tools())
            .map_err(|error| error.message);
        assert_eq!(
            tools,
            Ok(vec![
                "COMPOSIO_SEARCH_TOOLS".to_owned(),
                "COMPOSIO_GET_TOOL_SCHEMAS".to_owned(),
                "COMPOSIO_MULTI_EXECUTE_TOOL".to_owned()
            ])
        );
    }

    #[test]
    fn toolkits_shapes() {
        for bad in [
            json!(["gmail"]),
            json!({"enabled": ["gmail"]}),
            json!({"enable": ["gmail"], "disable": []}),
            json!({}),
        ] {
            let error = parse_json(json!({"user_id": "u", "toolkits": bad}))
                .err()
                .map(|error| error.errors);
            assert_eq!(
                error,
                Some(vec!["Error in payload.toolkits: Invalid input".to_owned()])
            );
        }
        let config =
            parse_json(json!({"user_id": "u", "toolkits": {"enable": ["GMAIL", "github"]}})).ok();
        assert_eq!(
            config.as_ref().map(|config| config.toolkits.clone()),
            Some(ToolkitFilter::Enable(vec!["gmail".into(), "github".into()]))
        );
        assert_eq!(
            config.map(|config| config.echo["toolkits"].clone()),
            Some(json!({"enabled": ["gmail", "github"]}))
        );
        let unknown = parse_json(json!({"user_id": "u", "toolkits": {"disable": ["nope"]}})).err();
        assert_eq!(unknown.map(|error| error.status.as_u16()), Some(400));
    }

    #[test]
    fn manage_connections_must_be_an_object() {
        let error = parse_json(json!({"user_id": "u", "manage_connections": false}))
            .err()
            .map(|error| error.errors);
        assert_eq!(
            error,
            Some(vec![
                "Error in payload.manage_connections: Expected object, received boolean".to_owned()
            ])
        );
        let error = parse_json(json!({"user_id": "u", "manage_connections": {"enabled": false}}))
            .err()
            .map(|error| error.errors);
        assert_eq!(
            error,
            Some(vec![
                "Error in payload.manage_connections: Unrecognized key(s) in object: 'enabled'"
                    .to_owned()
            ])
        );
    }
}
