//! The Composio tool policy the proxy asks about every `tools/call` (DESIGN.md decision 14):
//! which pending toolkits block a call, and whether a forwarded call's result is really a
//! missing connection that should become a blocked answer with a Connect Link.
//!
//! - `gate.scope = "all"` (the default): every pending required toolkit blocks every call.
//! - `gate.scope = "toolkit"`: a `COMPOSIO_MULTI_EXECUTE_TOOL` call is blocked only by the
//!   pending toolkits its `tools[].tool_slug` belong to; a directly exposed app tool
//!   (`GMAIL_SEND_EMAIL`) only by its own toolkit; search and schema calls pass.
//! - In both scopes a multi-execute result whose entries fail with
//!   `ToolRouterV2_NoActiveConnection` is replaced by the blocked answer: a required toolkit
//!   that looked ACTIVE is re-checked at once (that is how a revoke is detected) and gets a
//!   fresh link; a toolkit outside `require` gets a link of its own.
//!
//! A tool slug belongs to the toolkit whose slug, upper-cased, is its longest `_`-ended
//! prefix (`GOOGLE_CALENDAR_CREATE_EVENT` → `google_calendar`); for toolkits outside
//! `require` the error text's "for toolkit X" is used when present, else the first word.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use toolgate_proxy::gate::{GateState, PendingToolkit};
use toolgate_proxy::mcp::policy::{ToolCall, ToolPolicy};

use super::{TrackerSlot, pending_toolkit};

/// The multi-execute meta tool, the only one whose arguments name app tools.
const MULTI_EXECUTE: &str = "COMPOSIO_MULTI_EXECUTE_TOOL";
/// The error slug of an entry whose toolkit has no ACTIVE connection.
const NO_ACTIVE_CONNECTION: &str = "NoActiveConnection";

/// `gate.scope`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every pending toolkit blocks every call.
    All,
    /// A call is blocked only by the toolkits it uses.
    Toolkit,
}

/// The policy of a Composio-mode gateway.
pub(crate) struct ComposioPolicy {
    scope: Scope,
    required: Vec<String>,
    tracker: Arc<TrackerSlot>,
}

impl ComposioPolicy {
    /// The policy for these required toolkits, acting through `tracker`.
    pub(crate) fn new(scope: Scope, required: &[String], tracker: Arc<TrackerSlot>) -> Self {
        Self {
            scope,
            required: required
                .iter()
                .map(|slug| slug.to_ascii_lowercase())
                .collect(),
            tracker,
        }
    }

    /// The required toolkit a tool slug belongs to (longest matching prefix).
    fn required_toolkit_of(&self, tool: &str) -> Option<&str> {
        let tool = tool.to_ascii_lowercase();
        self.required
            .iter()
            .filter(|slug| tool.starts_with(&format!("{slug}_")))
            .max_by_key(|slug| slug.len())
            .map(String::as_str)
    }

    /// A toolkit for a tool that failed with NoActiveConnection.
    fn toolkit_of_failure(&self, tool: &str, error: &str) -> Option<String> {
        if let Some(slug) = self.required_toolkit_of(tool) {
            return Some(slug.to_owned());
        }
        let named = error
            .split("for toolkit ")
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
            })
            .filter(|slug| !slug.is_empty());
        named
            .map(str::to_owned)
            .or_else(|| tool.split('_').next().map(str::to_ascii_lowercase))
            .filter(|slug| !slug.is_empty())
    }
}

#[derive(Deserialize)]
struct MultiExecuteArgs {
    #[serde(default)]
    tools: Vec<Invocation>,
}

#[derive(Deserialize)]
struct Invocation {
    #[serde(default)]
    tool_slug: String,
}

/// The app tools a multi-execute call names (none for anything unparsable: the upstream then
/// answers it with its own validation error).
fn multi_execute_tools(call: &ToolCall<'_>) -> Vec<String> {
    call.arguments
        .and_then(|raw| serde_json::from_str::<MultiExecuteArgs>(raw.get()).ok())
        .map(|args| args.tools.into_iter().map(|tool| tool.tool_slug).collect())
        .unwrap_or_default()
}

/// `(tool_slug, error)` of every entry that failed for a missing connection, from the whole
/// JSON-RPC response to a multi-execute call.
fn missing_connections(response: &[u8]) -> Vec<(String, String)> {
    let Ok(message) = serde_json::from_slice::<Value>(response) else {
        return Vec::new();
    };
    let texts = message
        .pointer("/result/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|block| block.get("text").and_then(Value::as_str));
    let mut failures = Vec::new();
    for text in texts {
        let Ok(body) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let results = body
            .pointer("/data/results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for entry in results {
            let error = entry
                .pointer("/response/error")
                .map(|error| match error {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            if error.contains(NO_ACTIVE_CONNECTION) {
                let tool = entry["tool_slug"].as_str().unwrap_or_default().to_owned();
                failures.push((tool, error));
            }
        }
    }
    failures
}

impl ToolPolicy for ComposioPolicy {
    fn blocking(&self, call: ToolCall<'_>, gate: &GateState) -> Vec<PendingToolkit> {
        let GateState::Closed { pending } = gate else {
            return Vec::new();
        };
        if self.scope == Scope::All {
            return pending.clone();
        }
        let used: Vec<String> = match call.name {
            Some(MULTI_EXECUTE) => multi_execute_tools(&call),
            Some(tool) => vec![tool.to_owned()],
            None => Vec::new(),
        };
        let toolkits: Vec<&str> = used
            .iter()
            .filter_map(|tool| self.required_toolkit_of(tool))
            .collect();
        pending
            .iter()
            .filter(|toolkit| toolkits.contains(&toolkit.slug.as_str()))
            .cloned()
            .collect()
    }

    fn reviews_results(&self) -> bool {
        true
    }

    fn wants_result(&self, call: ToolCall<'_>) -> bool {
        call.name == Some(MULTI_EXECUTE)
    }

    fn review_result<'a>(
        &'a self,
        _call: ToolCall<'a>,
        response: &'a [u8],
    ) -> BoxFuture<'a, Option<Vec<PendingToolkit>>> {
        Box::pin(async move {
            let mut toolkits: Vec<String> = Vec::new();
            for (tool, error) in missing_connections(response) {
                if let Some(slug) = self.toolkit_of_failure(&tool, &error)
                    && !toolkits.contains(&slug)
                {
                    toolkits.push(slug);
                }
            }
            if toolkits.is_empty() {
                return None;
            }
            let tracker = self.tracker.get()?;
            let mut blocked = Vec::new();
            if toolkits.iter().any(|slug| self.required.contains(slug)) {
                // A required toolkit answered this way was not as ACTIVE as we thought (a
                // revoke): re-check now, which also mints its fresh link.
                if let Ok(snapshot) = tracker.check_with_links().await {
                    blocked.extend(
                        snapshot
                            .toolkits
                            .iter()
                            .filter(|toolkit| toolkits.contains(&toolkit.slug))
                            .map(pending_toolkit),
                    );
                }
            }
            for slug in toolkits
                .iter()
                .filter(|slug| !self.required.contains(*slug))
            {
                match tracker.link_for(slug).await {
                    Ok(url) => blocked.push(PendingToolkit {
                        slug: slug.clone(),
                        name: slug.clone(),
                        connect_url: Some(url),
                        status: "not connected: open the link to connect it, then call again"
                            .to_owned(),
                    }),
                    Err(error) => {
                        tracing::warn!(toolkit = %slug, %error, "no Connect Link for a toolkit outside `require`");
                    }
                }
            }
            (!blocked.is_empty()).then_some(blocked)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(scope: Scope) -> ComposioPolicy {
        ComposioPolicy::new(
            scope,
            &[
                "gmail".to_owned(),
                "google_calendar".to_owned(),
                "google".to_owned(),
            ],
            Arc::new(TrackerSlot::default()),
        )
    }

    fn pending(slug: &str) -> PendingToolkit {
        PendingToolkit {
            slug: slug.to_owned(),
            name: slug.to_owned(),
            connect_url: None,
            status: String::new(),
        }
    }

    #[test]
    fn toolkit_scope_blocks_only_the_toolkits_a_call_uses() {
        let gate = GateState::Closed {
            pending: vec![pending("gmail"), pending("google_calendar")],
        };
        let args = serde_json::value::RawValue::from_string(
            json!({"tools": [{"tool_slug": "GOOGLE_CALENDAR_CREATE_EVENT", "arguments": {}}]})
                .to_string(),
        )
        .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned());
        let multi = ToolCall {
            name: Some(MULTI_EXECUTE),
            arguments: Some(&args),
        };
        let blocked = policy(Scope::Toolkit).blocking(multi, &gate);
        let slugs: Vec<&str> = blocked
            .iter()
            .map(|toolkit| toolkit.slug.as_str())
            .collect();
        assert_eq!(slugs, ["google_calendar"], "longest prefix wins");
        let search = ToolCall {
            name: Some("COMPOSIO_SEARCH_TOOLS"),
            arguments: None,
        };
        assert!(policy(Scope::Toolkit).blocking(search, &gate).is_empty());
        assert_eq!(policy(Scope::All).blocking(search, &gate).len(), 2);
        let direct = ToolCall {
            name: Some("GMAIL_SEND_EMAIL"),
            arguments: None,
        };
        assert_eq!(policy(Scope::Toolkit).blocking(direct, &gate).len(), 1);
        assert!(
            policy(Scope::Toolkit)
                .blocking(direct, &GateState::Open)
                .is_empty()
        );
    }

    #[test]
    fn finds_missing_connections_in_a_multi_execute_result() {
        let body = json!({"successful": false, "data": {"results": [
            {"tool_slug": "GMAIL_SEND_EMAIL", "response": {"successful": true, "error": null}},
            {"tool_slug": "SLACK_SEND_MESSAGE", "response": {"successful": false,
             "error": "ToolRouterV2_NoActiveConnection: No active connection for toolkit slack (user u)"}},
        ]}});
        let response = json!({"jsonrpc": "2.0", "id": 3, "result": {"content": [
            {"type": "text", "text": body.to_string()}], "isError": false}});
        let failures = missing_connections(response.to_string().as_bytes());
        assert_eq!(failures.len(), 1);
        assert_eq!(
            policy(Scope::All).toolkit_of_failure(&failures[0].0, &failures[0].1),
            Some("slack".to_owned())
        );
        assert!(missing_connections(b"not json").is_empty());
    }
}
