//! Small HTTP helpers shared by the REST API, the link pages and the control plane: the
//! Composio error envelope, JSON/HTML responses, bounded body reading and query parsing.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::mcp::ResponseBody;

/// Largest request body the sandbox reads; the real API's bodies are a few KiB.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An API error, rendered as Composio's envelope
/// `{"error":{"message","code","slug","status","request_id","errors"?}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub(crate) status: StatusCode,
    /// Human-readable message.
    pub(crate) message: String,
    /// Field-level details (`errors` in the envelope); omitted when empty.
    pub(crate) errors: Vec<String>,
    /// The `Allow` header of a 405.
    pub(crate) allow: Option<String>,
}

impl ApiError {
    /// An error with a status and message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: Vec::new(),
            allow: None,
        }
    }

    /// The 400 the real API gives for a payload that fails schema validation: a fixed
    /// message plus one `errors` entry naming the field, e.g.
    /// `Error in payload.toolkits: Invalid input`.
    pub(crate) fn validation(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: "Validation error while processing request".to_owned(),
            errors: vec![detail.into()],
            allow: None,
        }
    }

    /// 400 with a message.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 with a message.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 401: missing or unknown API key.
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing API key. Pass your project API key in the x-api-key header.",
        )
    }

    /// Renders the envelope.
    pub(crate) fn into_response(self, request_id: &str) -> Response<ResponseBody> {
        let mut error = json!({
            "message": self.message,
            "code": error_code(self.status),
            "slug": error_slug(self.status),
            "status": self.status.as_u16(),
            "request_id": request_id,
        });
        if !self.errors.is_empty() {
            error["errors"] = json!(self.errors);
        }
        let mut response = json_response(self.status, &json!({ "error": error }));
        if let Some(allow) = self
            .allow
            .and_then(|allow| HeaderValue::from_str(&allow).ok())
        {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

/// The numeric code of the envelope: Composio's HTTP range is 10000–10999, `10000 + status`
/// (10400 BadRequest, 10401 Unauthorized, 10404 NotFound, ...).
pub(crate) fn error_code(status: StatusCode) -> u32 {
    10_000 + u32::from(status.as_u16())
}

/// The slug of the envelope, e.g. `HTTP_BadRequest`.
pub(crate) fn error_slug(status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let words: String = reason.split([' ', '-']).collect();
    format!("HTTP_{words}")
}

/// A response with a body of bytes and a content type.
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    response(status, "application/json", value.to_string())
}

/// An HTML response.
pub(crate) fn html_response(status: StatusCode, html: String) -> Response<ResponseBody> {
    response(status, "text/html; charset=utf-8", html)
}

/// A 303 See Other to `location`.
pub(crate) fn see_other(location: &str) -> Result<Response<ResponseBody>, ApiError> {
    let value = HeaderValue::from_str(location)
        .map_err(|_| ApiError::bad_request("the redirect location is not a valid header value"))?;
    let mut response = response(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        "See Other",
    );
    response.headers_mut().insert(header::LOCATION, value);
    Ok(response)
}

/// Boxes a complete body.
pub(crate) fn full(body: impl Into<Bytes>) -> ResponseBody {
    Full::new(body.into()).boxed()
}

/// Reads a request body, refusing bodies over [`MAX_BODY_BYTES`] (413) and broken streams (400).
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error)
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is larger than {MAX_BODY_BYTES} bytes"),
            ))
        }
        Err(_) => Err(ApiError::bad_request("The request body could not be read")),
    }
}

/// Parses a JSON body that must be an object. An empty body counts as `{}` only when
/// `empty_is_object` is set (endpoints whose every field is optional).
pub(crate) fn parse_json_object(
    body: &[u8],
    empty_is_object: bool,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        if empty_is_object {
            return Ok(serde_json::Map::new());
        }
        return Err(ApiError::validation(
            "Error in payload: Expected object, received undefined",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::validation("Error in payload: Expected object")),
        Err(error) => Err(ApiError::bad_request(format!(
            "Malformed JSON in request body: {error}"
        ))),
    }
}

/// Query parameters as a map (the last value of a repeated name wins).
pub(crate) fn query_map(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A comma-separated query list (`toolkits=gmail,github`), with empty entries dropped.
pub(crate) fn comma_list(value: Option<&String>) -> Option<Vec<String>> {
    value.map(|value| {
        value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_slugs_follow_the_http_range() {
        assert_eq!(error_code(StatusCode::BAD_REQUEST), 10400);
        assert_eq!(error_slug(StatusCode::BAD_REQUEST), "HTTP_BadRequest");
        assert_eq!(
            error_slug(StatusCode::METHOD_NOT_ALLOWED),
            "HTTP_MethodNotAllowed"
        );
        assert_eq!(
            error_slug(StatusCode::TOO_MANY_REQUESTS),
            "HTTP_TooManyRequests"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn bodies_that_are_not_objects_are_rejected() {
        assert!(parse_json_object(b"", true).is_ok_and(|map| map.is_empty()));
        assert_eq!(
            parse_json_object(b"", false)
                .map_err(|error| error.status)
                .err(),
            Some(StatusCode::BAD_REQUEST)
        );
        assert!(parse_json_object(b"[1]", false).is_err());
        assert!(parse_json_object(b"{\"a\":", false).is_err());
        assert!(parse_json_object(b"{\"a\":1}", false).is_ok_and(|map| map.len() == 1));
    }
}
