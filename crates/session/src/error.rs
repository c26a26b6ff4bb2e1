//! The one error type of the Composio client, and the errors of `wait_for_connection`.
//!
//! Callers branch on [`ComposioError::fault`], [`ComposioError::status`] and the typed fields
//! of [`ApiError`], never on message text. No variant ever carries the API key: request
//! headers are not part of any error, and text that came back from the server is scrubbed of
//! the key before it is stored (see `ApiError::from_response`).

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::types::AccountStatus;

/// Whose fault a failure is, so callers can decide what to tell the operator without parsing
/// messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Our request, configuration or credentials are wrong (most 4xx, a bad base URL, an MCP URL
    /// on a foreign origin). Retrying the same thing will not help; the configuration must change.
    Ours,
    /// Composio failed, throttled us or answered something we could not understand (5xx, 408,
    /// 409, 429, an unparseable body). Usually transient.
    Composio,
    /// Composio could not be reached or the exchange broke off (DNS, connect, reset, timeout).
    Network,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ours => "ours",
            Self::Composio => "composio",
            Self::Network => "network",
        })
    }
}

/// A non-success HTTP answer from the Composio API, parsed from either error shape: the
/// `{"error": {...}}` envelope, or the plain `{"message": "..."}` body of a 429.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// What the client was doing, e.g. `create session`.
    pub operation: &'static str,
    /// The HTTP status.
    pub status: StatusCode,
    /// Composio's numeric error code (e.g. 10400), when the body had one.
    pub code: Option<i64>,
    /// Composio's error slug (e.g. `HTTP_BadRequest`), when the body had one.
    pub slug: Option<String>,
    /// The human message (from the body, else the status's reason phrase).
    pub message: String,
    /// Field-level validation messages (`error.errors`), possibly empty.
    pub details: Vec<String>,
    /// The request id: the `x-request-id` response header first, then the body's `request_id`.
    pub request_id: Option<String>,
    /// Composio's `suggested_fix`, when given.
    pub suggested_fix: Option<String>,
    /// How long the server asked us to wait (`retry-after-ms` / `Retry-After`), when it did.
    pub retry_after: Option<Duration>,
}

/// The wire shape of an error envelope; every field optional because we must never fail to
/// report an error just because the body was unusual.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorEnvelope>,
    message: Option<String>,
    request_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    message: Option<String>,
    code: Option<serde_json::Value>,
    slug: Option<String>,
    request_id: Option<String>,
    suggested_fix: Option<String>,
    errors: Option<Vec<serde_json::Value>>,
}

/// Longest slice of a non-JSON error body kept in the message.
const MAX_RAW_BODY_CHARS: usize = 300;

// === impl ApiError ===

impl ApiError {
    /// Builds the error from a response's status, headers and body. Any occurrence of `secret`
    /// in server-provided text is replaced, so even a server that echoes the key cannot make
    /// it appear in our errors.
    pub(crate) fn from_response(
        operation: &'static str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        secret: &str,
        retry_after: Option<Duration>,
    ) -> Self {
        let scrub = |text: String| scrub_secret(text, secret);
        let header_request_id = headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned);
        let fallback_message = || {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_owned()
        };

        let mut error = Self {
            operation,
            status,
            code: None,
            slug: None,
            message: String::new(),
            details: Vec::new(),
            request_id: header_request_id,
            suggested_fix: None,
            retry_after,
        };
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody {
                error: Some(envelope),
                ..
            }) => {
                error.code = envelope.code.as_ref().and_then(lenient_i64);
                error.slug = envelope.slug.map(scrub);
                error.message = envelope.message.map(scrub).unwrap_or_else(fallback_message);
                error.suggested_fix = envelope.suggested_fix.map(scrub);
                error.details = envelope
                    .errors
                    .unwrap_or_default()
                    .into_iter()
                    .map(|detail| match detail {
                        serde_json::Value::String(text) => scrub(text),
                        other => scrub(other.to_string()),
                    })
                    .collect();
                if error.request_id.is_none() {
                    error.request_id = envelope.request_id.map(scrub);
                }
            }
            Ok(ErrorBody {
                error: None,
                message,
                request_id,
            }) => {
                error.message = message.map(scrub).unwrap_or_else(fallback_message);
                if error.request_id.is_none() {
                    error.request_id = request_id.map(scrub);
                }
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                error.message = if text.is_empty() {
                    fallback_message()
                } else {
                    scrub(text.chars().take(MAX_RAW_BODY_CHARS).collect())
                };
            }
        }
        error
    }

    /// Whose fault this status is: 408, 409, 429 and 5xx are Composio's (transient); every
    /// other status means our request or credentials are wrong.
    pub fn fault(&self) -> Fault {
        let code = self.status.as_u16();
        if matches!(code, 408 | 409 | 429) || self.status.is_server_error() {
            Fault::Composio
        } else {
            Fault::Ours
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Composio {}: HTTP {}",
            self.operation,
            self.status.as_u16()
        )?;
        if let Some(slug) = &self.slug {
            write!(f, " {slug}")?;
        }
        if let Some(code) = self.code {
            write!(f, " (code {code})")?;
        }
        write!(f, ": {}", self.message)?;
        if !self.details.is_empty() {
            write!(f, " [{}]", self.details.join("; "))?;
        }
        if let Some(fix) = &self.suggested_fix {
            write!(f, "; suggested fix: {fix}")?;
        }
        if let Some(request_id) = &self.request_id {
            write!(f, " (request id {request_id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Every way a call to the Composio API can fail.
#[derive(Debug, thiserror::Error)]
pub enum ComposioError {
    /// Composio answered with a non-success status (boxed: it is large and errors are rare).
    #[error(transparent)]
    Api(Box<ApiError>),
    /// The request never got a complete answer: connect failure, reset, timeout.
    #[error("Composio {operation}: network error: {source}")]
    Network {
        /// What the client was doing.
        operation: &'static str,
        /// The transport error (its text names the URL, never a header).
        #[source]
        source: reqwest::Error,
    },
    /// A success status with a body that does not have the documented shape.
    #[error("Composio {operation}: unexpected response body: {source}")]
    Decode {
        /// What the client was doing.
        operation: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The client configuration is unusable (bad base URL, empty or non-ASCII API key).
    #[error("invalid Composio client configuration: {0}")]
    InvalidConfig(String),
    /// The session's MCP URL is on another origin than the API, so the API key is not attached;
    /// toolgate refuses to talk to it rather than leak the key or send unauthenticated calls.
    #[error(
        "the session's MCP URL origin {mcp_origin} differs from the Composio API origin \
         {api_origin}; refusing to send the API key there"
    )]
    McpOriginMismatch {
        /// Origin of `mcp.url` (scheme://host:port).
        mcp_origin: String,
        /// Origin of the configured API base URL.
        api_origin: String,
    },
    /// The session's MCP URL is not a usable http(s) URL.
    #[error("the session's MCP URL is not a valid http(s) URL: {0}")]
    InvalidMcpUrl(String),
    /// Cursor pagination did not terminate (the server repeated a cursor or sent too many pages).
    #[error("Composio {operation}: pagination did not terminate ({reason})")]
    Pagination {
        /// What the client was doing.
        operation: &'static str,
        /// What went wrong.
        reason: String,
    },
}

// === impl ComposioError ===

impl From<ApiError> for ComposioError {
    fn from(error: ApiError) -> Self {
        Self::Api(Box::new(error))
    }
}

impl ComposioError {
    /// Whose fault the failure is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Api(api) => api.fault(),
            Self::Network { .. } => Fault::Network,
            Self::Decode { .. } | Self::Pagination { .. } => Fault::Composio,
            Self::InvalidConfig(_) | Self::McpOriginMismatch { .. } | Self::InvalidMcpUrl(_) => {
                Fault::Ours
            }
        }
    }

    /// The HTTP status, when Composio answered with one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api(api) => Some(api.status),
            _ => None,
        }
    }

    /// The parsed API error, when Composio answered with a non-success status.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(api) => Some(api.as_ref()),
            _ => None,
        }
    }

    /// True when trying again may help: 408, 409, 429, 5xx and network failures. Everything
    /// else (a refused key, a missing session, a rejected body) fails the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network { .. } => true,
            Self::Api(api) => {
                matches!(api.status.as_u16(), 408 | 409 | 429) || api.status.is_server_error()
            }
            _ => false,
        }
    }

    /// True for a 404: the session, account or toolkit does not exist (or was deleted).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

/// Why [`crate::ComposioClient::wait_for_connection`] ended without an ACTIVE account.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The account reached a terminal failure state: FAILED, EXPIRED or REVOKED.
    #[error("connected account {account_id} ended {status}{}", reason_suffix(.status_reason))]
    Terminal {
        /// The account id (`ca_...`).
        account_id: String,
        /// The terminal status.
        status: AccountStatus,
        /// Composio's `status_reason`, when given.
        status_reason: Option<String>,
    },
    /// The account was still not ACTIVE when the timeout ran out.
    #[error("connected account {account_id} still {last_status} after {}s", .waited.as_secs_f64())]
    Timeout {
        /// The account id (`ca_...`).
        account_id: String,
        /// The status seen on the last poll.
        last_status: AccountStatus,
        /// The timeout that ran out.
        waited: Duration,
    },
    /// A poll failed (after the client's own retries).
    #[error(transparent)]
    Request(#[from] ComposioError),
}

fn reason_suffix(reason: &Option<String>) -> String {
    match reason {
        Some(reason) => format!(": {reason}"),
        None => String::new(),
    }
}

/// Replaces every occurrence of `secret` in `text`.
pub(crate) fn scrub_secret(text: String, secret: &str) -> String {
    if secret.is_empty() || !text.contains(secret) {
        text
    } else {
        text.replace(secret, "[REDACTED]")
    }
}

/// Reads an integer that may have been sent as an integer, a float or a numeric string.
fn lenient_i64(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|float| float.is_finite() && float.fract() == 0.0)
                .map(|float| float as i64)
        }),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn parses_the_error_envelope() {
        let body = br#"{"error":{"message":"Validation error while processing request","code":10400,"slug":"HTTP_BadRequest","status":400,"request_id":"body-id","suggested_fix":"send enable","errors":["Error in payload.toolkits: Invalid input"]}}"#;
        let error = ApiError::from_response(
            "create session",
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body,
            "sk_key",
            None,
        );
        assert_eq!(error.code, Some(10400));
        assert_eq!(error.slug.as_deref(), Some("HTTP_BadRequest"));
        assert_eq!(error.message, "Validation error while processing request");
        assert_eq!(error.details, ["Error in payload.toolkits: Invalid input"]);
        assert_eq!(error.request_id.as_deref(), Some("body-id"));
        assert_eq!(error.suggested_fix.as_deref(), Some("send enable"));
        assert_eq!(error.fault(), Fault::Ours);
        let text = error.to_string();
        assert!(
            text.contains("HTTP 400 HTTP_BadRequest (code 10400)"),
            "{text}"
        );
        assert!(text.contains("Error in payload.toolkits"), "{text}");
    }

    #[test]
    fn header_request_id_wins_over_body() {
        let body = br#"{"error":{"message":"nope","request_id":"body-id"}}"#;
        let error = ApiError::from_response(
            "get session",
            StatusCode::NOT_FOUND,
            &headers(&[("x-request-id", "header-id")]),
            body,
            "sk_key",
            None,
        );
        assert_eq!(error.request_id.as_deref(), Some("header-id"));
    }

    #[test]
    fn parses_the_plain_rate_limit_body() {
        let body = br#"{"message": "Rate limit exceeded. Limit: 10000 requests per 1 minutes"}"#;
        let error = ApiError::from_response(
            "list toolkits",
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            body,
            "sk_key",
            Some(Duration::from_secs(3)),
        );
        assert_eq!(error.code, None);
        assert!(error.message.starts_with("Rate limit exceeded"));
        assert_eq!(error.fault(), Fault::Composio);
        assert_eq!(error.retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn non_json_and_empty_bodies_still_give_a_message() {
        let html = ApiError::from_response(
            "get session",
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
            "sk_key",
            None,
        );
        assert_eq!(html.message, "<html>bad gateway</html>");
        assert_eq!(html.fault(), Fault::Composio);
        let empty = ApiError::from_response(
            "get session",
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            b"",
            "sk_key",
            None,
        );
        assert_eq!(empty.message, "Service Unavailable");
    }

    #[test]
    fn server_text_echoing_the_key_is_scrubbed() {
        let body =
            br#"{"error":{"message":"key sk_live_secret is invalid","errors":["sk_live_secret"]}}"#;
        let error = ApiError::from_response(
            "create session",
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            body,
            "sk_live_secret",
            None,
        );
        let text = format!("{error} {error:?}");
        assert!(!text.contains("sk_live_secret"), "{text}");
        assert!(text.contains("[REDACTED]"));
    }

    #[test]
    fn faults_by_status() {
        let fault = |status: u16| {
            ApiError::from_response(
                "op",
                StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
                &HeaderMap::new(),
                b"",
                "",
                None,
            )
            .fault()
        };
        for status in [400, 401, 403, 404, 422] {
            assert_eq!(fault(status), Fault::Ours, "{status}");
        }
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(fault(status), Fault::Composio, "{status}");
        }
    }

    #[test]
    fn lenient_codes() {
        assert_eq!(lenient_i64(&serde_json::json!(10400)), Some(10400));
        assert_eq!(lenient_i64(&serde_json::json!(10400.0)), Some(10400));
        assert_eq!(lenient_i64(&serde_json::json!("10404")), Some(10404));
        assert_eq!(lenient_i64(&serde_json::json!(1.5)), None);
        assert_eq!(lenient_i64(&serde_json::json!(null)), None);
    }
}
