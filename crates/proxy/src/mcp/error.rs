//! The one error type of both faces: [`McpError`] (the caller's raw id and an [`ErrorKind`]),
//! and the one place that maps a kind to its JSON-RPC code, HTTP status, message and fault side.
//!
//! # Codes
//! | kind | code | HTTP |
//! |---|---|---|
//! | not JSON | -32700 | 400 |
//! | unreadable message, empty batch, line or body over the cap, wrong media type, bad method, body too slow | -32600 | 400 / 413 / 415 / 405 / 408 |
//! | Host, Origin or token refused | -32000 | 403 / 401 |
//! | not ready, listener at a limit, upstream unreachable, timed out, broken, refusing toolgate's credentials | -32001 | 503 / 502 / 504 |
//! | the upstream answered wrongly (HTTP error, no answer, answer too large, session lost) | -32603 | 502 |
//!
//! -32001 says "try again later" and -32603 "this request failed", so a client can tell a
//! transient outage from a bug. Over HTTP the status goes with the body; over stdio only the
//! body exists and the status is what the metrics record.

use crate::upstream::TransportError;
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// JSON-RPC: the message is not valid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the message is JSON but not a valid request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: internal error (the upstream failed without a JSON-RPC answer of its own).
pub const INTERNAL_ERROR: i64 = -32603;
/// Server-defined: the request was refused before it was read (Host, Origin, token).
pub const ACCESS_DENIED: i64 = -32000;
/// Server-defined: toolgate or its upstream is not available right now; retry later.
pub const UNAVAILABLE: i64 = -32001;
/// MCP: URLElicitationRequired (the blocked answer for URL-elicitation clients).
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

/// Whose fault an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The client sent something toolgate cannot accept.
    Client,
    /// The upstream could not be reached or answered wrongly.
    Upstream,
    /// toolgate itself cannot serve the request yet.
    Gateway,
}

/// What went wrong. The message of each variant is what the client reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The message is not JSON.
    #[error("parse error: the message is not valid JSON")]
    ParseError(#[source] serde_json::Error),
    /// JSON whose routing fields cannot be read unambiguously (a non-string or duplicated
    /// `method`, a batch element that is not an object, ...).
    #[error("invalid request: the message is not a valid JSON-RPC message")]
    InvalidMessage(#[source] serde_json::Error),
    /// Valid JSON that is neither a request, a notification nor a response.
    #[error("invalid request: neither a request, a notification nor a response")]
    NotAMessage,
    /// An empty batch.
    #[error("invalid request: empty batch")]
    EmptyBatch,
    /// A request body (HTTP) or line (stdio) over the configured cap.
    #[error("the message is larger than toolgate's limit of {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// A POST whose `Content-Type` is not JSON.
    #[error("Unsupported Media Type: POST bodies must be Content-Type: application/json")]
    UnsupportedMediaType,
    /// The request body could not be read to its end.
    #[error("Bad Request: the request body could not be read")]
    BodyUnreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request body paused too long or took too long overall (the listener's limits).
    #[error(
        "Request Timeout: the request body must arrive within {total:?}, with no pause over {idle:?}"
    )]
    BodyTimeout {
        /// The longest pause allowed.
        idle: std::time::Duration,
        /// The longest time for the whole body.
        total: std::time::Duration,
    },
    /// The listener is at one of its limits (requests in flight, buffered bodies); retry.
    #[error("Service Unavailable: {0}; retry shortly")]
    Overloaded(&'static str),
    /// An HTTP method the MCP endpoint does not serve.
    #[error("Method not allowed: the MCP endpoint accepts POST, GET and DELETE")]
    MethodNotAllowed,
    /// A request in a batch that also held a blocked `tools/call` (nothing of it is forwarded).
    #[error(
        "not forwarded: this batch contained a tools/call blocked by toolgate; send this request on its own"
    )]
    BatchBlocked,
    /// Host or Origin refused (DNS-rebinding and cross-site protection).
    #[error("Forbidden: {0}")]
    Forbidden(&'static str),
    /// The Host (or `:authority`) is missing, repeated or not `name[:port]`.
    #[error("Bad Request: the request needs exactly one Host header of the form name[:port]")]
    MalformedHost,
    /// The bearer token is missing or wrong.
    #[error("Unauthorized: a valid 'Authorization: Bearer <token>' header is required")]
    Unauthorized,
    /// toolgate has no upstream yet (for example the Composio session is being created).
    #[error("toolgate is not ready: {reason}")]
    NotReady {
        /// Why, for the user.
        reason: String,
    },
    /// No connection to the upstream could be made.
    #[error("toolgate could not connect to the upstream MCP server at {url}")]
    Unreachable {
        /// The upstream URL, redacted.
        url: String,
        /// The transport error.
        #[source]
        source: TransportError,
    },
    /// Connecting or waiting for the upstream's response headers took too long.
    #[error("the upstream MCP server at {url} did not answer in time")]
    Timeout {
        /// The upstream URL, redacted.
        url: String,
        /// The transport error, when the client library reported one.
        #[source]
        source: Option<TransportError>,
    },
    /// Any other transport failure (e.g. the connection broke mid-response).
    #[error("the connection to the upstream MCP server at {url} failed")]
    Transport {
        /// The upstream URL, redacted.
        url: String,
        /// The transport error.
        #[source]
        source: TransportError,
    },
    /// The upstream refused toolgate's credentials (401/403).
    #[error(
        "the upstream MCP server refused toolgate's credentials (HTTP {}); toolgate will re-verify its session, retry shortly",
        .status.as_u16()
    )]
    CredentialsRefused {
        /// The upstream's status.
        status: StatusCode,
    },
    /// The upstream answered an HTTP error (stdio face; the HTTP face passes statuses through).
    #[error("the upstream MCP server answered HTTP {}", .status.as_u16())]
    Status {
        /// The upstream's status.
        status: StatusCode,
        /// The start of its body (a JSON-RPC error in it is passed on to the caller).
        body: Bytes,
    },
    /// The upstream ended its answer stream without answering and it could not be resumed.
    #[error("the upstream MCP server ended its response without answering this request")]
    NoAnswer,
    /// The upstream's answer stream broke off (connection reset or cut) before this request
    /// was answered.
    #[error("the upstream MCP server at {url} broke off its answer before answering this request")]
    StreamBroken {
        /// The upstream URL, redacted.
        url: String,
    },
    /// The upstream's answer is larger than toolgate relays.
    #[error("the upstream's answer is larger than toolgate's limit of {limit} bytes")]
    AnswerTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The upstream forgot the session and the client never sent an `initialize` to replay.
    #[error("the upstream MCP server forgot the session and the client never initialized one")]
    SessionLost,
    /// The client's channel closed (stdout is gone): nobody is left to answer.
    #[error("the client is gone")]
    ClientGone,
}

impl ErrorKind {
    /// Classifies a transport error of a request to the upstream at `url` (redacted).
    pub fn from_transport(error: TransportError, url: String) -> Self {
        if error.is_timeout() {
            Self::Timeout {
                url,
                source: Some(error),
            }
        } else if error.is_connect() {
            Self::Unreachable { url, source: error }
        } else {
            Self::Transport { url, source: error }
        }
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            Self::ParseError(_) => PARSE_ERROR,
            Self::InvalidMessage(_)
            | Self::NotAMessage
            | Self::EmptyBatch
            | Self::TooLarge { .. }
            | Self::UnsupportedMediaType
            | Self::BodyUnreadable(_)
            | Self::BodyTimeout { .. }
            | Self::MethodNotAllowed
            | Self::BatchBlocked
            | Self::ClientGone => INVALID_REQUEST,
            Self::Forbidden(_) | Self::MalformedHost | Self::Unauthorized => ACCESS_DENIED,
            Self::NotReady { .. }
            | Self::Overloaded(_)
            | Self::Unreachable { .. }
            | Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::CredentialsRefused { .. } => UNAVAILABLE,
            Self::Status { .. }
            | Self::NoAnswer
            | Self::StreamBroken { .. }
            | Self::AnswerTooLarge { .. }
            | Self::SessionLost => INTERNAL_ERROR,
        }
    }

    /// The HTTP status an HTTP client gets (and the stdio face records for metrics).
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::ParseError(_)
            | Self::InvalidMessage(_)
            | Self::NotAMessage
            | Self::EmptyBatch
            | Self::BodyUnreadable(_)
            | Self::MalformedHost
            | Self::ClientGone => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BatchBlocked => StatusCode::OK,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotReady { .. } | Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Status { status, .. } => *status,
            Self::Unreachable { .. }
            | Self::Transport { .. }
            | Self::CredentialsRefused { .. }
            | Self::NoAnswer
            | Self::StreamBroken { .. }
            | Self::AnswerTooLarge { .. }
            | Self::SessionLost => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self.code() {
            PARSE_ERROR | INVALID_REQUEST | ACCESS_DENIED => Fault::Client,
            _ if matches!(self, Self::NotReady { .. } | Self::Overloaded(_)) => Fault::Gateway,
            _ => Fault::Upstream,
        }
    }

    /// A stable snake_case name, for metrics labels and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ParseError(_) => "parse_error",
            Self::InvalidMessage(_) | Self::NotAMessage | Self::EmptyBatch => "invalid_request",
            Self::TooLarge { .. } => "too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyUnreadable(_) => "body_unreadable",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::Overloaded(_) => "overloaded",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BatchBlocked => "batch_blocked",
            Self::Forbidden(_) => "forbidden",
            Self::MalformedHost => "malformed_host",
            Self::Unauthorized => "unauthorized",
            Self::NotReady { .. } => "not_ready",
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "other",
            Self::CredentialsRefused { .. } => "credentials_refused",
            Self::Status { .. } => "status",
            Self::NoAnswer => "no_answer",
            Self::StreamBroken { .. } => "stream_broken",
            Self::AnswerTooLarge { .. } => "answer_too_large",
            Self::SessionLost => "session_lost",
            Self::ClientGone => "client_gone",
        }
    }

    /// Extra detail for `error.data`: the upstream's status and the start of its body.
    fn data(&self) -> Option<Value> {
        match self {
            Self::Status { status, body } => {
                let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
                Some(serde_json::json!({ "status": status.as_u16(), "body": text }))
            }
            _ => None,
        }
    }
}

/// An error answered to the caller: its raw id (echoed byte for byte; `null` when unknown)
/// and what went wrong.
#[derive(Debug)]
pub struct McpError {
    /// The caller's raw id, when the message had one.
    pub id: Option<Box<RawValue>>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl std::fmt::Display for McpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for McpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl McpError {
    /// An error answering `id`.
    pub fn new(id: Option<&RawValue>, kind: ErrorKind) -> Self {
        Self {
            id: id.map(ToOwned::to_owned),
            kind,
        }
    }

    /// The JSON-RPC error response, serialized. An upstream HTTP error whose body is a JSON-RPC
    /// error is passed on re-addressed to the caller's id: a client matches answers by id, and
    /// the upstream's own code and message say more than toolgate could.
    pub fn to_json(&self) -> Vec<u8> {
        if let (ErrorKind::Status { body, .. }, Some(id)) = (&self.kind, &self.id)
            && let Some(readdressed) = readdressed_error(id, body)
        {
            return readdressed;
        }
        let message = self.kind.to_string();
        error_body(
            self.id.as_deref(),
            &ErrorObject {
                code: self.kind.code(),
                message: &message,
                data: self.kind.data(),
            },
        )
    }
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i64,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

#[derive(Serialize)]
struct ErrorResponse<'a, E: Serialize> {
    jsonrpc: &'static str,
    // `RawValue` serializes verbatim: the caller's id comes back byte for byte.
    id: Option<&'a RawValue>,
    error: &'a E,
}

/// `{"jsonrpc":"2.0","id":<raw id>,"error":<error>}`.
pub(crate) fn error_body<E: Serialize>(id: Option<&RawValue>, error: &E) -> Vec<u8> {
    encode(&ErrorResponse {
        jsonrpc: "2.0",
        id,
        error,
    })
}

/// Serializes a locally built message. The types serialized here (strings, numbers, raw
/// values, string-keyed maps) cannot fail; should that ever change, the client still gets a
/// JSON-RPC error rather than an empty body.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|error| {
        tracing::error!(%error, "could not encode a local answer");
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"toolgate could not encode its answer"}}"#.to_vec()
    })
}

/// The upstream's JSON-RPC error object in `upstream_body`, re-addressed to `id`.
fn readdressed_error(id: &RawValue, upstream_body: &[u8]) -> Option<Vec<u8>> {
    let message = super::message::Message::parse(upstream_body).ok()?;
    let error = message.error?;
    #[derive(serde::Deserialize)]
    struct Code {
        #[allow(dead_code)] // read only to check the error object is one
        code: i64,
    }
    serde_json::from_str::<Code>(error.get()).ok()?;
    Some(error_body(Some(id), &error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn ids_come_back_byte_for_byte() {
        for id in [
            r#""x\u0031""#,
            "12345678901234567890123",
            "1E2",
            "-0",
            "1.50",
            "7",
        ] {
            let error = McpError::new(Some(&raw(id)), ErrorKind::NotReady { reason: "r".into() });
            let body = String::from_utf8(error.to_json()).unwrap();
            assert!(body.contains(&format!(r#""id":{id},"#)), "{body}");
        }
        let anonymous = McpError::new(None, ErrorKind::EmptyBatch).to_json();
        let value: Value = serde_json::from_slice(&anonymous).unwrap();
        assert_eq!(value["id"], Value::Null);
        assert_eq!(value["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn one_mapping_of_code_status_and_fault() {
        let not_ready = ErrorKind::NotReady {
            reason: "starting".into(),
        };
        assert_eq!(
            (not_ready.code(), not_ready.http_status(), not_ready.fault()),
            (UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE, Fault::Gateway)
        );
        assert_eq!(not_ready.to_string(), "toolgate is not ready: starting");
        let parse = ErrorKind::ParseError(serde_json::from_str::<Value>("{").unwrap_err());
        assert_eq!((parse.code(), parse.fault()), (PARSE_ERROR, Fault::Client));
        assert!(
            std::error::Error::source(&parse).is_some(),
            "the source is kept"
        );
        let refused = ErrorKind::CredentialsRefused {
            status: StatusCode::FORBIDDEN,
        };
        assert_eq!(
            (refused.http_status(), refused.fault()),
            (StatusCode::BAD_GATEWAY, Fault::Upstream)
        );
        assert!(refused.to_string().contains("HTTP 403"));
        assert_eq!(ErrorKind::Forbidden("x").code(), ACCESS_DENIED);
        assert_eq!(
            ErrorKind::TooLarge { limit: 1 }.http_status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn an_upstream_json_rpc_error_is_readdressed_to_the_caller() {
        let body = Bytes::from_static(br#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null}"#);
        let error = McpError::new(
            Some(&raw("5")),
            ErrorKind::Status {
                status: StatusCode::BAD_REQUEST,
                body,
            },
        );
        let answer: Value = serde_json::from_slice(&error.to_json()).unwrap();
        assert_eq!(answer["id"], 5);
        assert_eq!(
            answer["error"]["message"],
            "Bad Request: Server not initialized"
        );
        let html = McpError::new(
            Some(&raw("5")),
            ErrorKind::Status {
                status: StatusCode::BAD_GATEWAY,
                body: Bytes::from_static(b"<html>"),
            },
        );
        let answer: Value = serde_json::from_slice(&html.to_json()).unwrap();
        assert_eq!(answer["error"]["code"], INTERNAL_ERROR);
        assert_eq!(answer["error"]["data"]["body"], "<html>");
    }
}
