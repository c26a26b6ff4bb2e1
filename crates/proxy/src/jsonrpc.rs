//! The little JSON-RPC the HTTP path reads: a borrowed view of a POST body (only `method`,
//! `id` and, lazily, a few `params` fields), and locally built error answers.
//!
//! The body itself is never re-serialized: what is forwarded is the client's bytes.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// JSON-RPC parse error.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC invalid request.
pub const INVALID_REQUEST: i64 = -32600;
/// Implementation-defined server error, used for "not ready" and upstream failures.
pub const SERVER_ERROR: i64 = -32000;

/// `_meta` key of the per-request protocol version (2026-07-28).
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the per-request client capabilities (2026-07-28).
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// One JSON-RPC message, borrowed from the body.
#[derive(Debug, Deserialize)]
pub struct MessageView<'a> {
    /// The method of a request or notification; `None` for a response.
    #[serde(borrow, default)]
    pub method: Option<std::borrow::Cow<'a, str>>,
    /// The raw id, exactly as sent; `None` for a notification.
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    /// The raw params, parsed further only when needed.
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
}

/// The parts of `params` the gate looks at, parsed on demand.
#[derive(Debug, Default, Deserialize)]
struct ParamsView<'a> {
    #[serde(borrow, default)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "_meta", default)]
    meta: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    capabilities: Option<Value>,
}

/// What the gate needs from a request's params.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestDetails {
    /// `params.name` (the tool of a `tools/call`).
    pub tool_name: Option<String>,
    /// `params._meta.progressToken`, raw JSON (string or number).
    pub progress_token: Option<Value>,
    /// The protocol version from `_meta` (2026-07-28 requests carry it per request).
    pub meta_protocol_version: Option<String>,
    /// Whether the client declared URL elicitation: `capabilities.elicitation.url` in
    /// `initialize` params, or the same inside `_meta` client capabilities.
    pub url_elicitation: bool,
}

fn declares_url_elicitation(capabilities: Option<&Value>) -> bool {
    capabilities
        .and_then(|caps| caps.get("elicitation"))
        .and_then(|elicitation| elicitation.get("url"))
        .is_some_and(|url| !url.is_null())
}

impl MessageView<'_> {
    /// Whether this is a request (has both a method and an id).
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }

    /// The method, if any.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// Parses the params fields the gate needs. Params that are absent or not an object give
    /// the defaults (the upstream owns rejecting them).
    pub fn details(&self) -> RequestDetails {
        let Some(params) = self.params else {
            return RequestDetails::default();
        };
        let Ok(view) = serde_json::from_str::<ParamsView<'_>>(params.get()) else {
            return RequestDetails::default();
        };
        let meta = view.meta.as_ref();
        RequestDetails {
            tool_name: view.name.map(std::borrow::Cow::into_owned),
            progress_token: meta
                .and_then(|meta| meta.get("progressToken"))
                .filter(|token| token.is_string() || token.is_number())
                .cloned(),
            meta_protocol_version: meta
                .and_then(|meta| meta.get(META_PROTOCOL_VERSION))
                .and_then(Value::as_str)
                .map(str::to_owned),
            url_elicitation: declares_url_elicitation(view.capabilities.as_ref())
                || declares_url_elicitation(
                    meta.and_then(|meta| meta.get(META_CLIENT_CAPABILITIES)),
                ),
        }
    }
}

/// A POST body, classified.
#[derive(Debug)]
pub enum Body<'a> {
    /// One JSON object.
    Single(MessageView<'a>),
    /// A JSON array (2025-03-26 batch).
    Batch(Vec<MessageView<'a>>),
    /// Valid JSON that is neither an object nor an array; the upstream owns the error.
    Other,
}

/// Why a body cannot be checked against the gate (and so is never forwarded).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not JSON at all (answered with -32700).
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// JSON, but an object (or batch element) whose `method`/`id` cannot be read unambiguously,
    /// e.g. a non-string method, a duplicated key, or a batch element that is not an object
    /// (answered with -32600). Forwarding it could smuggle a `tools/call` past the gate.
    #[error("the request body is not a valid JSON-RPC message: {0}")]
    InvalidMessage(#[source] serde_json::Error),
}

impl BodyError {
    /// The JSON-RPC error code this maps to.
    pub fn code(&self) -> i64 {
        match self {
            Self::InvalidJson(_) => PARSE_ERROR,
            Self::InvalidMessage(_) => INVALID_REQUEST,
        }
    }
}

fn message_error(bytes: &[u8], error: serde_json::Error) -> BodyError {
    if serde_json::from_slice::<IgnoredAny>(bytes).is_ok() {
        BodyError::InvalidMessage(error)
    } else {
        BodyError::InvalidJson(error)
    }
}

/// Reads a POST body. Only syntax and the fields the gate needs are checked; anything else
/// about the message is the upstream's to judge.
pub fn parse_body(bytes: &[u8]) -> Result<Body<'_>, BodyError> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    match first {
        Some(b'{') => serde_json::from_slice(bytes)
            .map(Body::Single)
            .map_err(|error| message_error(bytes, error)),
        Some(b'[') => {
            let elements: Vec<&RawValue> =
                serde_json::from_slice(bytes).map_err(BodyError::InvalidJson)?;
            let mut views = Vec::with_capacity(elements.len());
            for element in elements {
                views.push(serde_json::from_str(element.get()).map_err(BodyError::InvalidMessage)?);
            }
            Ok(Body::Batch(views))
        }
        _ => {
            serde_json::from_slice::<IgnoredAny>(bytes).map_err(BodyError::InvalidJson)?;
            Ok(Body::Other)
        }
    }
}

/// A JSON-RPC error object answering `id` (`null` when there is none), serialized.
pub fn error_response(id: Option<&RawValue>, code: i64, message: &str) -> Vec<u8> {
    serde_json::to_vec(&error_value(id, code, message)).unwrap_or_default()
}

/// A JSON-RPC error object answering `id`, as a value (for batch answers).
pub fn error_value(id: Option<&RawValue>, code: i64, message: &str) -> Value {
    let id = id
        .and_then(|id| serde_json::from_str::<Value>(id.get()).ok())
        .unwrap_or(Value::Null);
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_request_fields() {
        let body = br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}}}"#;
        let Body::Single(view) = parse_body(body).unwrap() else {
            panic!("not single")
        };
        assert_eq!(view.method(), Some("tools/call"));
        assert_eq!(view.id.unwrap().get(), "\"a-1\"");
        let details = view.details();
        assert_eq!(details.tool_name.as_deref(), Some("echo"));
        assert_eq!(details.progress_token, Some(json!(7)));
        assert_eq!(details.meta_protocol_version.as_deref(), Some("2026-07-28"));
        assert!(details.url_elicitation);
    }

    #[test]
    fn initialize_capabilities_and_escaped_method() {
        let body = br#" {"jsonrpc":"2.0","id":1,"method":"initi\u0061lize","params":{"capabilities":{"elicitation":{"form":{},"url":{}}}}}"#;
        let Body::Single(view) = parse_body(body).unwrap() else {
            panic!("not single")
        };
        assert_eq!(view.method(), Some("initialize"));
        assert!(view.details().url_elicitation);
        let plain = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{"elicitation":{}}}}"#;
        let Body::Single(view) = parse_body(plain).unwrap() else {
            panic!("not single")
        };
        assert!(!view.details().url_elicitation);
    }

    #[test]
    fn batches_others_and_garbage() {
        let Body::Batch(items) = parse_body(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"n"}]"#,
        )
        .unwrap() else {
            panic!("not batch")
        };
        assert_eq!(items.len(), 2);
        assert!(items[0].is_request() && !items[1].is_request());
        assert!(matches!(parse_body(b"42").unwrap(), Body::Other));
        for garbage in [&b"{"[..], b"", b"{\"id\":1} x", b"\xff\xfe", b"[1,", b"nul"] {
            let error = parse_body(garbage).unwrap_err();
            assert_eq!(error.code(), PARSE_ERROR, "{garbage:?}");
        }
        // Valid JSON whose method cannot be read unambiguously is never forwarded.
        for ambiguous in [
            &br#"{"method":5,"id":1}"#[..],
            br#"{"method":"ping","method":"tools/call","id":1}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 5]"#,
        ] {
            let error = parse_body(ambiguous).unwrap_err();
            assert_eq!(error.code(), INVALID_REQUEST, "{ambiguous:?}");
        }
    }

    #[test]
    fn errors_echo_the_raw_id() {
        let id = RawValue::from_string("\"x\"".into()).unwrap();
        let body: Value =
            serde_json::from_slice(&error_response(Some(&id), PARSE_ERROR, "bad")).unwrap();
        assert_eq!(body["id"], "x");
        assert_eq!(body["error"]["code"], PARSE_ERROR);
        let body: Value = serde_json::from_slice(&error_response(None, SERVER_ERROR, "m")).unwrap();
        assert_eq!(body["id"], Value::Null);
    }
}
