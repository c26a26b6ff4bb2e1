//! Borrowed views of JSON-RPC messages and the few messages the bridge writes itself.
//!
//! The bridge never re-serialises a relayed message: it reads only the fields it routes on
//! (`id`, `method`, `params.name`, `_meta`, ...) through borrowed views and sends the original
//! bytes on, so unknown fields and `_meta` survive byte for byte.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// JSON-RPC: the message is not valid JSON.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the message is JSON but not a valid request.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: internal error, used when the upstream fails without a JSON-RPC answer of its own.
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// Server-defined (JSON-RPC reserves -32000..-32099): there is no upstream to talk to yet, or it
/// cannot be reached. Kept apart from -32603 so a client can tell "try again later" from a bug.
pub(crate) const UPSTREAM_UNAVAILABLE: i64 = -32001;

/// The routing fields of any JSON-RPC message.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageView<'a> {
    /// Request or response id; `None` for notifications (and for `"id": null`).
    #[serde(borrow, default)]
    pub(crate) id: Option<&'a RawValue>,
    /// Method of a request or notification; `None` for responses.
    #[serde(borrow, default)]
    pub(crate) method: Option<Cow<'a, str>>,
    /// Parameters, left unparsed until a method needs them.
    #[serde(borrow, default)]
    pub(crate) params: Option<&'a RawValue>,
    /// Present on successful responses.
    #[serde(borrow, default)]
    pub(crate) result: Option<&'a RawValue>,
    /// Present on error responses.
    #[serde(borrow, default)]
    pub(crate) error: Option<&'a RawValue>,
}

impl<'a> MessageView<'a> {
    /// Parses the routing fields; `None` when `bytes` is not a JSON object.
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether this is a response (to a request of the other side).
    pub(crate) fn is_response(&self) -> bool {
        self.method.is_none() && (self.result.is_some() || self.error.is_some())
    }

    /// The parameters' routing fields (empty when absent or not an object).
    pub(crate) fn params(&self) -> ParamsView<'a> {
        self.params
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_default()
    }
}

/// The routing fields of `params`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ParamsView<'a> {
    /// Tool or prompt name (`tools/call`, `prompts/get`).
    #[serde(borrow, default)]
    pub(crate) name: Option<Cow<'a, str>>,
    /// Resource URI (`resources/read`).
    #[serde(borrow, default)]
    pub(crate) uri: Option<Cow<'a, str>>,
    /// Client capabilities (`initialize`).
    #[serde(borrow, default)]
    pub(crate) capabilities: Option<&'a RawValue>,
    /// `requestId` of `notifications/cancelled`.
    #[serde(borrow, default, rename = "requestId")]
    pub(crate) request_id: Option<&'a RawValue>,
    /// Request metadata.
    #[serde(borrow, default, rename = "_meta")]
    pub(crate) meta: Option<MetaView<'a>>,
}

/// The routing fields of `params._meta`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MetaView<'a> {
    /// Token to which progress notifications refer.
    #[serde(borrow, default, rename = "progressToken")]
    pub(crate) progress_token: Option<&'a RawValue>,
    /// 2026-07-28: the request's protocol version.
    #[serde(borrow, default, rename = "io.modelcontextprotocol/protocolVersion")]
    pub(crate) protocol_version: Option<Cow<'a, str>>,
    /// 2026-07-28: the client's capabilities for this request.
    #[serde(borrow, default, rename = "io.modelcontextprotocol/clientCapabilities")]
    pub(crate) client_capabilities: Option<&'a RawValue>,
}

/// Whether a capabilities object declares URL-mode elicitation (`elicitation.url`).
pub(crate) fn declares_url_elicitation(capabilities: Option<&RawValue>) -> bool {
    #[derive(Deserialize)]
    struct Capabilities<'a> {
        #[serde(borrow, default)]
        elicitation: Option<Elicitation<'a>>,
    }
    #[derive(Deserialize)]
    struct Elicitation<'a> {
        #[serde(borrow, default)]
        url: Option<&'a RawValue>,
    }
    capabilities
        .and_then(|raw| serde_json::from_str::<Capabilities<'_>>(raw.get()).ok())
        .and_then(|caps| caps.elicitation)
        .is_some_and(|elicitation| elicitation.url.is_some())
}

/// The `protocolVersion` of an `initialize` result, if `bytes` is one.
pub(crate) fn result_protocol_version(view: &MessageView<'_>) -> Option<String> {
    #[derive(Deserialize)]
    struct InitializeResult<'a> {
        #[serde(borrow, rename = "protocolVersion")]
        protocol_version: Cow<'a, str>,
    }
    let raw = view.result?;
    serde_json::from_str::<InitializeResult<'_>>(raw.get())
        .ok()
        .map(|result| result.protocol_version.into_owned())
}

/// Whether two raw JSON-RPC ids are the same id (`1` and `1.0` are not; `"a"` and `"\u0061"` are).
pub(crate) fn same_id(a: &RawValue, b: &RawValue) -> bool {
    a.get() == b.get()
        || matches!(
            (
                serde_json::from_str::<Value>(a.get()),
                serde_json::from_str::<Value>(b.get())
            ),
            (Ok(x), Ok(y)) if x == y
        )
}

/// A canonical text of an id, for map keys (ids are strings or numbers).
pub(crate) fn id_key(id: &RawValue) -> String {
    serde_json::from_str::<Value>(id.get())
        .map(|value| value.to_string())
        .unwrap_or_else(|_| id.get().to_owned())
}

/// `bytes` as one stdout line. A raw newline or carriage return can only be insignificant
/// whitespace in valid JSON (inside strings they are escaped), so replacing it with a space keeps
/// every value intact while guaranteeing the newline-delimited framing.
pub(crate) fn single_line(bytes: &[u8]) -> Vec<u8> {
    let trimmed = bytes.trim_ascii();
    trimmed
        .iter()
        .map(|b| if *b == b'\n' || *b == b'\r' { b' ' } else { *b })
        .collect()
}

/// A JSON-RPC error response carrying `id` (JSON `null` when the id is unknown).
pub(crate) fn error_response(
    id: Option<&RawValue>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Vec<u8> {
    let id = raw_to_value(id);
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": id, "error": error })).unwrap_or_default()
}

/// The upstream's own JSON-RPC error object, re-addressed to `id`. Used when the upstream answered
/// an HTTP error whose body is a JSON-RPC error with a `null` id (e.g. server-everything's 400 to
/// a `server/discover` probe): over stdio the client can only match an answer by its id.
pub(crate) fn readdressed_error(id: &RawValue, upstream_body: &[u8]) -> Option<Vec<u8>> {
    let view = MessageView::parse(upstream_body)?;
    let error = view.error?;
    let error: Value = serde_json::from_str(error.get()).ok()?;
    error.get("code")?.as_i64()?;
    serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": raw_to_value(Some(id)), "error": error }))
        .ok()
}

/// A `notifications/progress` for `token`.
pub(crate) fn progress_notification(token: &RawValue, progress: u64, message: &str) -> Vec<u8> {
    let token = raw_to_value(Some(token));
    serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": { "progressToken": token, "progress": progress, "message": message },
    }))
    .unwrap_or_default()
}

fn raw_to_value(raw: Option<&RawValue>) -> Value {
    raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or(Value::Null)
}

/// The value of the `Mcp-Name` header for a request, per 2026-07-28: the tool or prompt name, or
/// the resource URI.
pub(crate) fn mcp_name<'a>(method: &str, params: &'a ParamsView<'_>) -> Option<&'a str> {
    match method {
        "tools/call" | "prompts/get" => params.name.as_deref(),
        "resources/read" => params.uri.as_deref(),
        _ => None,
    }
}

/// A header-safe form of an `Mcp-*` header value: as is when it is visible ASCII without
/// surrounding spaces, else Base64-wrapped as `=?base64?...?=`, as 2026-07-28 specifies.
pub(crate) fn header_safe(value: &str) -> Cow<'_, str> {
    let visible_ascii = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    let padded = value.starts_with(' ') || value.ends_with(' ');
    // A plain value that looks like the wrapper itself would be misread as wrapped.
    let looks_wrapped = value.starts_with("=?") && value.ends_with("?=");
    let plain = visible_ascii && !padded && !looks_wrapped;
    if plain {
        Cow::Borrowed(value)
    } else {
        use base64::Engine as _;
        Cow::Owned(format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        ))
    }
}

/// The protocol version a 2026-07-28 request names in its `_meta`.
pub(crate) fn meta_protocol_version<'a>(params: &'a ParamsView<'_>) -> Option<&'a str> {
    params.meta.as_ref()?.protocol_version.as_deref()
}

/// Whether a 2026-07-28 request's `_meta` declares URL elicitation.
pub(crate) fn meta_declares_url_elicitation(params: &ParamsView<'_>) -> bool {
    declares_url_elicitation(params.meta.as_ref().and_then(|m| m.client_capabilities))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_route_without_losing_anything() {
        let line = br#"{"jsonrpc":"2.0","id":"a\u0031","method":"tools\/call","params":{"name":"echo","x-extra":[1],"_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}}}"#;
        let view = MessageView::parse(line).unwrap();
        assert_eq!(view.method.as_deref(), Some("tools/call"));
        assert!(!view.is_response());
        let params = view.params();
        assert_eq!(params.name.as_deref(), Some("echo"));
        assert_eq!(meta_protocol_version(&params), Some("2026-07-28"));
        assert!(meta_declares_url_elicitation(&params));
        assert_eq!(params.meta.unwrap().progress_token.unwrap().get(), "7");
        let expected = RawValue::from_string("\"a1\"".into()).unwrap();
        assert!(same_id(view.id.unwrap(), &expected));
        assert_eq!(id_key(view.id.unwrap()), "\"a1\"");
    }

    #[test]
    fn not_an_object_is_none() {
        assert!(MessageView::parse(b"[1,2]").is_none());
        assert!(MessageView::parse(b"{not json").is_none());
        assert!(
            MessageView::parse(b"{\"id\":1,\"result\":{}}")
                .unwrap()
                .is_response()
        );
    }

    #[test]
    fn url_elicitation_only_when_declared() {
        let with = RawValue::from_string(r#"{"elicitation":{"form":{},"url":{}}}"#.into()).unwrap();
        let without = RawValue::from_string(r#"{"elicitation":{}}"#.into()).unwrap();
        assert!(declares_url_elicitation(Some(&with)));
        assert!(!declares_url_elicitation(Some(&without)));
        assert!(!declares_url_elicitation(None));
    }

    #[test]
    fn single_line_keeps_escaped_newlines() {
        let pretty = b"{\n  \"text\": \"a\\nb\"\r\n}\n";
        let line = single_line(pretty);
        assert!(!line.contains(&b'\n'));
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["text"], "a\nb");
    }

    #[test]
    fn upstream_error_is_readdressed_to_the_caller() {
        let id = RawValue::from_string("5".into()).unwrap();
        let body = br#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null}"#;
        let answer: Value = serde_json::from_slice(&readdressed_error(&id, body).unwrap()).unwrap();
        assert_eq!(answer["id"], 5);
        assert_eq!(answer["error"]["code"], -32000);
        assert!(readdressed_error(&id, b"<html>").is_none());
    }

    #[test]
    fn header_values_are_wrapped_when_not_plain_ascii() {
        assert_eq!(header_safe("get-sum"), "get-sum");
        assert_eq!(header_safe("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(header_safe(" x"), "=?base64?IHg=?=");
    }
}
