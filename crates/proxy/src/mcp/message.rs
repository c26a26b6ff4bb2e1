//! The one borrowed view of a JSON-RPC message both faces read.
//!
//! Nothing relayed is ever re-serialised: a face reads only the routing fields (`id`,
//! `method`, `params.name`, `params.arguments`, `_meta`, ...) through these views and sends the
//! original bytes on, so unknown fields survive byte for byte. The id is kept as the raw JSON
//! text the client sent and echoed verbatim in every local answer (`1E2` stays `1E2`).

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::error::ErrorKind;

/// The routing fields of one JSON-RPC message, borrowed from its bytes.
#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    /// The protocol marker; `"2.0"` on every JSON-RPC 2.0 message.
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    pub jsonrpc: Option<Cow<'a, str>>,
    /// The raw id exactly as sent; `None` for notifications (and for `"id": null`).
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    /// The method of a request or notification; `None` for a response.
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    pub method: Option<Cow<'a, str>>,
    /// The raw params, parsed further only when a method needs them.
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    /// Present on successful responses.
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    /// Present on error responses.
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

/// The routing fields of `params`.
#[derive(Debug, Default, Deserialize)]
pub struct Params<'a> {
    /// Tool or prompt name (`tools/call`, `prompts/get`).
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    pub name: Option<Cow<'a, str>>,
    /// Resource URI (`resources/read`).
    #[serde(borrow, default, deserialize_with = "borrowed_text")]
    pub uri: Option<Cow<'a, str>>,
    /// The raw `arguments` of a `tools/call`.
    #[serde(borrow, default)]
    pub arguments: Option<&'a RawValue>,
    /// Client capabilities (`initialize`).
    #[serde(borrow, default)]
    pub capabilities: Option<&'a RawValue>,
    /// `requestId` of `notifications/cancelled`.
    #[serde(borrow, default, rename = "requestId")]
    pub request_id: Option<&'a RawValue>,
    /// Request metadata.
    #[serde(borrow, default, rename = "_meta")]
    pub meta: Option<Meta<'a>>,
}

/// The routing fields of `params._meta`.
#[derive(Debug, Default, Deserialize)]
pub struct Meta<'a> {
    /// Token to which progress notifications refer (raw: a string or a number).
    #[serde(borrow, default, rename = "progressToken")]
    pub progress_token: Option<&'a RawValue>,
    /// 2026-07-28: the request's protocol version.
    #[serde(
        borrow,
        default,
        rename = "io.modelcontextprotocol/protocolVersion",
        deserialize_with = "borrowed_text"
    )]
    pub protocol_version: Option<Cow<'a, str>>,
    /// 2026-07-28: the client's capabilities for this request.
    #[serde(borrow, default, rename = "io.modelcontextprotocol/clientCapabilities")]
    pub client_capabilities: Option<&'a RawValue>,
}

/// A string field of a message, borrowed from its bytes.
///
/// Serde borrows a `Cow<str>` field but not one inside an `Option`: that one is always copied.
/// Every message passes here (`jsonrpc`, `method`, a tool's name), so this borrows, and copies
/// only a string with escapes, which cannot be borrowed.
fn borrowed_text<'de: 'a, 'a, D>(deserializer: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'a>>::deserialize(deserializer)?.map(|Text(text)| text))
}

impl<'a> Message<'a> {
    /// Parses one message object. Errors: not UTF-8 or not JSON (-32700), or JSON whose routing
    /// fields cannot be read unambiguously (-32600: not an object, a non-string `method`, a
    /// duplicated key).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ErrorKind> {
        Self::parse_text(utf8(bytes)?)
    }

    /// [`Message::parse`] of text already known to be UTF-8.
    fn parse_text(text: &'a str) -> Result<Self, ErrorKind> {
        // serde would also read a struct from an array (`[1]` as `id: 1`): only an object is a
        // message, so a nested batch can never pass for one.
        if !text.trim_start().starts_with('{') {
            return Err(match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => ErrorKind::InvalidMessage(serde::de::Error::custom("not a JSON object")),
                Err(error) => ErrorKind::ParseError(error),
            });
        }
        serde_json::from_str(text).map_err(|error| classify(text, error))
    }

    /// Whether this is a JSON-RPC 2.0 request, notification or response (`"jsonrpc": "2.0"`
    /// and a method, or a result or error).
    pub fn is_json_rpc(&self) -> bool {
        self.jsonrpc.as_deref() == Some("2.0") && (self.method.is_some() || self.is_response())
    }

    /// The method, if any.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// Whether this is a request (a method and an id).
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }

    /// Whether this is a response (to a request of the other side).
    pub fn is_response(&self) -> bool {
        self.method.is_none() && (self.result.is_some() || self.error.is_some())
    }

    /// Whether this is a `tools/call` (request or notification).
    pub fn is_tools_call(&self) -> bool {
        self.method() == Some("tools/call")
    }

    /// The parameters' routing fields (empty when absent or not an object: the upstream owns
    /// rejecting them).
    pub fn params(&self) -> Params<'a> {
        self.params
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_default()
    }
}

impl Params<'_> {
    /// The progress token, when it is a string or a number (anything else cannot be echoed
    /// in a progress notification).
    pub fn progress_token(&self) -> Option<&RawValue> {
        self.meta.as_ref()?.progress_token.filter(|token| {
            matches!(
                token.get().as_bytes().first(),
                Some(b'"' | b'-' | b'0'..=b'9')
            )
        })
    }

    /// The protocol version a 2026-07-28 request names in its `_meta`.
    pub fn meta_protocol_version(&self) -> Option<&str> {
        self.meta.as_ref()?.protocol_version.as_deref()
    }

    /// Whether this request declares URL-mode elicitation: `capabilities.elicitation.url` of
    /// an `initialize`, or the same inside 2026-07-28 `_meta` client capabilities.
    pub fn declares_url_elicitation(&self) -> bool {
        declares_url_elicitation(self.capabilities)
            || declares_url_elicitation(self.meta.as_ref().and_then(|m| m.client_capabilities))
    }

    /// The value of the `Mcp-Name` header for `method`, per 2026-07-28: the tool or prompt name,
    /// or the resource URI.
    pub fn mcp_name(&self, method: &str) -> Option<&str> {
        match method {
            "tools/call" | "prompts/get" => self.name.as_deref(),
            "resources/read" => self.uri.as_deref(),
            _ => None,
        }
    }
}

/// Whether a capabilities object declares URL-mode elicitation (`elicitation.url`, not null).
fn declares_url_elicitation(capabilities: Option<&RawValue>) -> bool {
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

/// A whole body (HTTP POST) or line (stdio), classified.
#[derive(Debug)]
pub enum Body<'a> {
    /// One JSON object.
    Single(Message<'a>),
    /// A JSON array (2025-03-26 batch): each element's raw bytes and view.
    Batch(Vec<(&'a RawValue, Message<'a>)>),
    /// Valid JSON that is neither an object nor an array.
    Other,
}

/// Reads a body. Only syntax and the routing fields are checked; anything else about the
/// message is the upstream's to judge. A body whose routing fields cannot be read unambiguously
/// is an error, so nothing can be smuggled past the gate.
pub fn parse_body(bytes: &[u8]) -> Result<Body<'_>, ErrorKind> {
    let text = utf8(bytes)?;
    match text.trim_start().as_bytes().first() {
        Some(b'{') => Message::parse_text(text).map(Body::Single),
        Some(b'[') => {
            // Skipping a value is iterative in serde_json, so however deep the nesting, reading
            // the elements as raw text cannot exhaust the stack; each element must then be an
            // object, which is the whole nesting bound: batches do not nest.
            let elements: Vec<&RawValue> =
                serde_json::from_str(text).map_err(ErrorKind::ParseError)?;
            let mut views = Vec::with_capacity(elements.len());
            for element in elements {
                views.push((element, Message::parse_text(element.get())?));
            }
            Ok(Body::Batch(views))
        }
        _ => {
            serde_json::from_str::<IgnoredAny>(text).map_err(ErrorKind::ParseError)?;
            Ok(Body::Other)
        }
    }
}

/// `bytes` as text: JSON is UTF-8, so anything else is a parse error (-32700), wherever in the
/// message the bad byte sits (serde_json does not check the strings it skips).
fn utf8(bytes: &[u8]) -> Result<&str, ErrorKind> {
    std::str::from_utf8(bytes).map_err(|error| {
        ErrorKind::ParseError(serde::de::Error::custom(format_args!(
            "invalid UTF-8 at byte {}",
            error.valid_up_to()
        )))
    })
}

fn classify(text: &str, error: serde_json::Error) -> ErrorKind {
    if serde_json::from_str::<IgnoredAny>(text).is_ok() {
        ErrorKind::InvalidMessage(error)
    } else {
        ErrorKind::ParseError(error)
    }
}

/// The `protocolVersion` of an `initialize` result, if `message` is one.
pub fn result_protocol_version(message: &Message<'_>) -> Option<String> {
    #[derive(Deserialize)]
    struct InitializeResult<'a> {
        #[serde(borrow, rename = "protocolVersion")]
        protocol_version: Cow<'a, str>,
    }
    let raw = message.result?;
    serde_json::from_str::<InitializeResult<'_>>(raw.get())
        .ok()
        .map(|result| result.protocol_version.into_owned())
}

/// Whether two raw ids are the same id (`1` and `1.0` are not; `"a"` and `"\u0061"` are).
pub fn same_id(a: &RawValue, b: &RawValue) -> bool {
    a.get() == b.get() || id_key(a) == id_key(b)
}

/// A canonical text of an id, for map keys: strings unescaped, numbers as written.
pub fn id_key(id: &RawValue) -> String {
    match serde_json::from_str::<Cow<'_, str>>(id.get()) {
        Ok(text) => format!("s:{text}"),
        Err(_) => format!("n:{}", id.get()),
    }
}

/// `bytes` as one newline-free line. A raw newline or carriage return can only be
/// insignificant whitespace in valid JSON (inside strings they are escaped), so replacing it
/// with a space keeps every value intact while guaranteeing newline-delimited framing.
pub fn single_line(bytes: &[u8]) -> Vec<u8> {
    bytes
        .trim_ascii()
        .iter()
        .map(|b| if *b == b'\n' || *b == b'\r' { b' ' } else { *b })
        .collect()
}

/// A header-safe form of an `Mcp-*` header value: as is when it is visible ASCII without
/// surrounding spaces, else Base64-wrapped as `=?base64?...?=`, as 2026-07-28 specifies.
pub fn header_safe(value: &str) -> Cow<'_, str> {
    let visible_ascii = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    let padded = value.starts_with(' ') || value.ends_with(' ');
    // A plain value that looks like the wrapper itself would be misread as wrapped.
    let looks_wrapped = value.starts_with("=?") && value.ends_with("?=");
    if visible_ascii && !padded && !looks_wrapped {
        Cow::Borrowed(value)
    } else {
        use base64::Engine as _;
        Cow::Owned(format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(bytes: &[u8]) -> Message<'_> {
        match parse_body(bytes) {
            Ok(Body::Single(view)) => view,
            other => panic!("not a single message: {other:?}"),
        }
    }

    #[test]
    fn string_fields_borrow_from_the_bytes_unless_escaped() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ec\u0068o","uri":"u","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let view = single(body);
        assert!(matches!(view.jsonrpc, Some(Cow::Borrowed("2.0"))));
        assert!(matches!(view.method, Some(Cow::Borrowed("tools/call"))));
        let params = view.params();
        assert!(matches!(params.uri, Some(Cow::Borrowed("u"))));
        // An escape cannot be borrowed: the unescaped text is a copy.
        assert!(matches!(&params.name, Some(Cow::Owned(name)) if name == "echo"));
        let version = params.meta.and_then(|meta| meta.protocol_version);
        assert!(matches!(version, Some(Cow::Borrowed("2026-07-28"))));
        let nulls = single(br#"{"jsonrpc":null,"method":null,"id":1,"result":{}}"#);
        assert!(nulls.jsonrpc.is_none() && nulls.method.is_none());
    }

    #[test]
    fn routing_fields_of_a_call() {
        let body = br#"{"jsonrpc":"2.0","id":"a\u0031","method":"tools\/call","params":{"name":"echo","arguments":{"x":[1, 2]},"x-extra":[1],"_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}}}"#;
        let view = single(body);
        assert_eq!(view.method(), Some("tools/call"));
        assert!(view.is_request() && view.is_tools_call() && !view.is_response());
        assert_eq!(view.id.map(RawValue::get), Some(r#""a\u0031""#));
        let params = view.params();
        assert_eq!(params.mcp_name("tools/call"), Some("echo"));
        assert_eq!(params.arguments.map(RawValue::get), Some(r#"{"x":[1, 2]}"#));
        assert_eq!(params.progress_token().map(RawValue::get), Some("7"));
        assert_eq!(params.meta_protocol_version(), Some("2026-07-28"));
        assert!(params.declares_url_elicitation());
        let plain = RawValue::from_string("\"a1\"".into()).unwrap();
        assert!(same_id(view.id.unwrap(), &plain));
        let number = RawValue::from_string("1E2".into()).unwrap();
        assert!(!same_id(
            &number,
            &RawValue::from_string("100".into()).unwrap()
        ));
    }

    #[test]
    fn url_elicitation_only_when_declared() {
        let init = single(br#"{"id":1,"method":"initialize","params":{"capabilities":{"elicitation":{"form":{},"url":{}}}}}"#);
        assert!(init.params().declares_url_elicitation());
        let form_only = single(
            br#"{"id":1,"method":"initialize","params":{"capabilities":{"elicitation":{}}}}"#,
        );
        assert!(!form_only.params().declares_url_elicitation());
        let object_token =
            single(br#"{"id":1,"method":"x","params":{"_meta":{"progressToken":{}}}}"#);
        assert!(object_token.params().progress_token().is_none());
    }

    #[test]
    fn batches_others_and_garbage() {
        let Ok(Body::Batch(items)) = parse_body(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"n"}]"#,
        ) else {
            panic!("not a batch")
        };
        assert_eq!(items.len(), 2);
        assert!(items[0].1.is_request() && !items[1].1.is_request());
        assert_eq!(items[1].0.get(), r#"{"jsonrpc":"2.0","method":"n"}"#);
        assert!(matches!(parse_body(b"42"), Ok(Body::Other)));
        assert!(
            Message::parse(b"{\"id\":1,\"result\":{}}")
                .unwrap()
                .is_response()
        );
        for garbage in [&b"{"[..], b"", b"{\"id\":1} x", b"\xff\xfe", b"[1,", b"nul"] {
            let error = parse_body(garbage).unwrap_err();
            assert!(matches!(error, ErrorKind::ParseError(_)), "{garbage:?}");
        }
        // Valid JSON whose routing fields cannot be read unambiguously is never forwarded.
        for ambiguous in [
            &br#"{"method":5,"id":1}"#[..],
            br#"{"method":"ping","method":"tools/call","id":1}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 5]"#,
        ] {
            let error = parse_body(ambiguous).unwrap_err();
            assert!(
                matches!(error, ErrorKind::InvalidMessage(_)),
                "{ambiguous:?}"
            );
        }
    }

    #[test]
    fn nested_batches_are_invalid_however_deep() {
        for depth in [2, 1_500, 100_000] {
            let body = format!(
                "{}{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}{}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            let error = parse_body(body.as_bytes()).unwrap_err();
            assert!(matches!(error, ErrorKind::InvalidMessage(_)), "{depth}");
            // Unbalanced nesting is not JSON at all.
            let error = parse_body(&body.as_bytes()[..body.len() - 1]).unwrap_err();
            assert!(matches!(error, ErrorKind::ParseError(_)), "{depth}");
        }
        // An array is never read as a message object, not even a one-element one.
        assert!(matches!(
            Message::parse(b"[1]"),
            Err(ErrorKind::InvalidMessage(_))
        ));
    }

    #[test]
    fn invalid_utf8_is_a_parse_error_wherever_it_sits() {
        for body in [
            &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\"}"[..],
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"a\":\"\xc3\"}}",
            b"[{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"\xfe\":1}]",
        ] {
            assert!(
                matches!(parse_body(body), Err(ErrorKind::ParseError(_))),
                "{body:?}"
            );
            assert!(matches!(
                Message::parse(body),
                Err(ErrorKind::ParseError(_))
            ));
        }
    }

    #[test]
    fn json_rpc_2_0_is_recognised() {
        let is_rpc = |body: &[u8]| Message::parse(body).unwrap().is_json_rpc();
        assert!(is_rpc(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
        assert!(is_rpc(br#"{"jsonrpc":"2.0","method":"n"}"#));
        assert!(!is_rpc(br#"{"a":1}"#));
        assert!(!is_rpc(br#"{"id":1,"result":{}}"#));
        assert!(!is_rpc(br#"{"jsonrpc":"1.0","id":1,"result":{}}"#));
        assert!(!is_rpc(br#"{"jsonrpc":"2.0","id":1}"#));
    }

    #[test]
    fn single_line_keeps_escaped_newlines() {
        let line = single_line(b"{\n  \"text\": \"a\\nb\"\r\n}\n");
        assert!(!line.contains(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["text"], "a\nb");
    }

    #[test]
    fn header_values_are_wrapped_when_not_plain_ascii() {
        assert_eq!(header_safe("get-sum"), "get-sum");
        assert_eq!(header_safe("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(header_safe(" x"), "=?base64?IHg=?=");
    }
}
