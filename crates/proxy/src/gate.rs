//! The one gate decision both faces (Streamable HTTP and stdio) use, and the local answer to a
//! blocked `tools/call`.
//!
//! The gate state arrives through a [`tokio::sync::watch`] that the binary feeds from the
//! session crate's connection tracker; this crate never sees Composio. Only `tools/call` is
//! ever blocked: listing tools, resources, prompts and everything else passes while the gate is
//! closed, so a client can still show what it will be able to do once connected.

use serde_json::value::RawValue;
use serde_json::{Value, json};

/// What the gate knows right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateState {
    /// The upstream is not known yet (for example the Composio session is still being created).
    /// Every request, not only `tools/call`, is answered locally with an error naming `reason`.
    Starting {
        /// Why the gateway is not ready, shown to the client.
        reason: String,
    },
    /// Every required toolkit is connected: everything is forwarded.
    Open,
    /// At least one required toolkit is not connected: `tools/call` is answered locally.
    Closed {
        /// The toolkits that still need the user's attention, in a stable order.
        pending: Vec<PendingToolkit>,
    },
}

/// A required toolkit that is not connected yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingToolkit {
    /// Toolkit slug, e.g. `gmail`.
    pub slug: String,
    /// Human name, e.g. `Gmail`.
    pub name: String,
    /// The Composio Connect Link the user opens to connect it, when one has been minted.
    pub connect_url: Option<String>,
    /// Short human status, e.g. `waiting for authorization` or `failed: access denied`.
    pub status: String,
}

/// What to do with one JSON-RPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it upstream unchanged.
    Forward,
    /// Answer a `tools/call` locally: the listed toolkits are not connected.
    Block(Vec<PendingToolkit>),
    /// Answer locally with an error: there is no upstream yet.
    NotReady(String),
}

/// The gate decision for a message with this `method` (`None` for responses).
pub fn decide(state: &GateState, method: Option<&str>) -> Decision {
    match state {
        GateState::Open => Decision::Forward,
        GateState::Starting { reason } => Decision::NotReady(reason.clone()),
        GateState::Closed { pending } => {
            if method == Some("tools/call") {
                Decision::Block(pending.clone())
            } else {
                Decision::Forward
            }
        }
    }
}

/// How a blocked call is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockStyle {
    /// A normal result with `isError: true` whose text names each toolkit and its link, so the
    /// model can relay it to the user. The default: clients render protocol errors opaquely.
    ToolError,
    /// JSON-RPC error -32042 (URLElicitationRequired) carrying the links as URL elicitations,
    /// for clients that declared `capabilities.elicitation.url`.
    UrlElicitation,
}

/// JSON-RPC error code for URLElicitationRequired.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

/// The protocol version from which results carry `resultType`.
pub const RESULT_TYPE_SINCE: &str = "2026-07-28";

/// The human text of a blocked call: which toolkits are missing and where to connect them.
pub fn blocked_text(pending: &[PendingToolkit]) -> String {
    let mut text = String::from(
        "This tool call was blocked by toolgate: the user has not connected every toolkit this \
         gateway requires yet. Ask the user to open each link below, authorize access, and then \
         retry the call.\n",
    );
    for toolkit in pending {
        match &toolkit.connect_url {
            Some(url) => text.push_str(&format!(
                "\n- {} ({}): {} - connect at {}",
                toolkit.name, toolkit.slug, toolkit.status, url
            )),
            None => text.push_str(&format!(
                "\n- {} ({}): {} - no Connect Link yet, retry shortly",
                toolkit.name, toolkit.slug, toolkit.status
            )),
        }
    }
    text
}

/// The complete JSON-RPC answer to a blocked `tools/call`, echoing the caller's raw `id`.
///
/// `protocol_version` is the negotiated (or per-request) version when known; `resultType` is
/// added only for 2026-07-28 and later, whose clients expect it and older ones do not.
pub fn blocked_response(
    id: &RawValue,
    pending: &[PendingToolkit],
    style: BlockStyle,
    protocol_version: Option<&str>,
) -> Vec<u8> {
    let text = blocked_text(pending);
    let id: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
    let body = match style {
        BlockStyle::ToolError => {
            let mut result = json!({
                "content": [{ "type": "text", "text": text }],
                "isError": true,
            });
            if protocol_version.is_some_and(|v| v >= RESULT_TYPE_SINCE) {
                result["resultType"] = json!("complete");
            }
            json!({ "jsonrpc": "2.0", "id": id, "result": result })
        }
        BlockStyle::UrlElicitation => {
            let elicitations: Vec<Value> = pending
                .iter()
                .filter_map(|toolkit| {
                    toolkit.connect_url.as_ref().map(|url| {
                        json!({
                            "mode": "url",
                            "elicitationId": format!("toolgate-connect-{}", toolkit.slug),
                            "url": url,
                            "message": format!("Connect {} to continue.", toolkit.name),
                        })
                    })
                })
                .collect();
            json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": URL_ELICITATION_REQUIRED,
                    "message": text,
                    "data": { "elicitations": elicitations },
                },
            })
        }
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gmail() -> PendingToolkit {
        PendingToolkit {
            slug: "gmail".into(),
            name: "Gmail".into(),
            connect_url: Some("https://connect.example/link/ln_1".into()),
            status: "waiting for authorization".into(),
        }
    }

    #[test]
    fn only_tools_call_is_blocked_while_closed() {
        let closed = GateState::Closed {
            pending: vec![gmail()],
        };
        assert_eq!(
            decide(&closed, Some("tools/call")),
            Decision::Block(vec![gmail()])
        );
        assert_eq!(decide(&closed, Some("tools/list")), Decision::Forward);
        assert_eq!(decide(&closed, None), Decision::Forward);
        assert_eq!(
            decide(&GateState::Open, Some("tools/call")),
            Decision::Forward
        );
        let starting = GateState::Starting {
            reason: "creating session".into(),
        };
        assert_eq!(
            decide(&starting, Some("tools/list")),
            Decision::NotReady("creating session".into())
        );
    }

    #[test]
    fn tool_error_echoes_id_and_names_links() {
        let id = RawValue::from_string("\"abc-1\"".into()).unwrap();
        let body: Value = serde_json::from_slice(&blocked_response(
            &id,
            &[gmail()],
            BlockStyle::ToolError,
            Some("2025-11-25"),
        ))
        .unwrap();
        assert_eq!(body["id"], "abc-1");
        assert_eq!(body["result"]["isError"], true);
        assert!(body["result"].get("resultType").is_none());
        let text = body["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("Gmail") && text.contains("https://connect.example/link/ln_1"));
    }

    #[test]
    fn result_type_only_on_2026_07_28() {
        let id = RawValue::from_string("7".into()).unwrap();
        let body: Value = serde_json::from_slice(&blocked_response(
            &id,
            &[gmail()],
            BlockStyle::ToolError,
            Some("2026-07-28"),
        ))
        .unwrap();
        assert_eq!(body["id"], 7);
        assert_eq!(body["result"]["resultType"], "complete");
    }

    #[test]
    fn url_elicitation_is_error_32042_with_links() {
        let id = RawValue::from_string("3".into()).unwrap();
        let body: Value = serde_json::from_slice(&blocked_response(
            &id,
            &[gmail()],
            BlockStyle::UrlElicitation,
            None,
        ))
        .unwrap();
        assert_eq!(body["error"]["code"], URL_ELICITATION_REQUIRED);
        assert_eq!(body["error"]["data"]["elicitations"][0]["mode"], "url");
        assert_eq!(
            body["error"]["data"]["elicitations"][0]["url"],
            "https://connect.example/link/ln_1"
        );
    }
}
