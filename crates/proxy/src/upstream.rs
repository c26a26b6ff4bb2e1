//! The upstream side shared by the HTTP gateway and the stdio bridge: where to send MCP traffic
//! ([`UpstreamTarget`]), the one pooled HTTP client ([`UpstreamClient`]), and which headers
//! cross the proxy in each direction ([`forward_request_headers`],
//! [`end_to_end_response_headers`]).

use std::fmt;
use std::time::Duration;

use http::Uri;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

mod client;

pub use client::{TransportError, UpstreamClient, UpstreamRequest};

/// Where MCP traffic goes: the upstream MCP endpoint and the headers toolgate adds to every
/// request sent there (for Composio, the `x-api-key`).
///
/// `Debug` shows the URL without credentials or query and only the header *names*: the values
/// are credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// The upstream MCP endpoint, e.g. `https://backend.composio.dev/tool_router/trs_1/mcp`.
    pub url: Url,
    /// Headers added to every upstream request, replacing same-named headers from the client.
    pub headers: HeaderMap,
    /// `url` as the HTTP client takes it, parsed once here rather than per request; `None`
    /// when it is not a valid HTTP URI (requests to it then fail).
    uri: Option<Uri>,
    /// The `Host` header for a plain-`http` target, built once here: hyper-util's client would
    /// format it from the URI on every request. `None` for `https`, whose connection may be
    /// HTTP/2, where the authority travels as `:authority` and hyper-util adds no `Host`.
    host: Option<HeaderValue>,
    /// `url` as safe to log ([`redacted_url`]), for every error that names the upstream.
    shown: String,
}

impl UpstreamTarget {
    /// A target with `headers`, every value marked sensitive so `http` redacts it too.
    pub fn new(url: Url, mut headers: HeaderMap) -> Self {
        for value in headers.values_mut() {
            value.set_sensitive(true);
        }
        let mut absolute = url.clone();
        // A fragment never goes on the wire.
        absolute.set_fragment(None);
        let uri = absolute.as_str().parse::<Uri>().ok();
        let host = uri.as_ref().and_then(http1_host);
        let shown = redacted_url(&url);
        Self {
            url,
            headers,
            uri,
            host,
            shown,
        }
    }

    /// The URL as the HTTP client takes it (`None` if it is not a valid HTTP URI).
    pub fn uri(&self) -> Option<&Uri> {
        self.uri.as_ref()
    }

    /// The `Host` to send with every request, when the target is plain `http` (always HTTP/1).
    pub fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    /// The URL as safe to log: [`redacted_url`] of it.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// `host[:port]` of a plain-`http` URI, the port left out when it is the default (as hyper-util
/// writes it); `None` for any other scheme.
fn http1_host(uri: &Uri) -> Option<HeaderValue> {
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return None;
    }
    let host = uri.host()?;
    let value = match uri.port_u16() {
        Some(port) if port != 80 => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

impl fmt::Debug for UpstreamTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTarget")
            .field("url", &redacted_url(&self.url))
            .field(
                "headers",
                &self
                    .headers
                    .keys()
                    .map(HeaderName::as_str)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// How long either face waits on the upstream once a request is sent. Both faces take the same
/// value from `[upstream]` so a hung upstream is cut off the same way over HTTP and stdio; on
/// expiry the pending request gets a JSON-RPC error with its id, never a dead stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    /// Longest wait for the upstream's response head after the request was sent. Slow tools
    /// that answer with plain JSON at the end need this long; SSE answers send their head at
    /// once, so it does not bound a long-running streamed call.
    pub response: Duration,
    /// Longest silence between two frames of a non-SSE response body. SSE bodies are exempt:
    /// an event stream may be quiet for as long as the tool runs.
    pub body_idle: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        Self {
            response: Duration::from_secs(120),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// The URL as safe to log: scheme, host, port and path; user info and query dropped because
/// either may carry a credential.
pub fn redacted_url(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    if url.query().is_some() {
        shown.push_str("?<redacted>");
    }
    shown
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the pre-standard ones proxies also strip.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name == header::PROXY_AUTHORIZATION
        || name == header::PROXY_AUTHENTICATE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Headers a client must never get to pass to the upstream: its own credentials (token
/// passthrough is forbidden by the MCP security guidance, and the upstream's credentials are
/// toolgate's), the Host of the proxy, and browser context the upstream has no business seeing.
/// `content-length` is recomputed by the client library from the forwarded body, and `expect`
/// (`100-continue`) was already answered by toolgate's own server when it read the body.
fn is_withheld_from_upstream(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::EXPECT
        || name == header::AUTHORIZATION
        || name == header::COOKIE
        || name == header::ORIGIN
        || name == header::REFERER
        || name == header::CONTENT_LENGTH
}

/// Names listed in a `Connection` header are hop-by-hop for this message too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// The headers to send upstream for a client request: every end-to-end header (`Accept`,
/// `Content-Type`, `Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID`, `Mcp-Method`,
/// `Mcp-Name`, `Mcp-Param-*`, `traceparent`, unknown custom headers...) minus hop-by-hop and
/// withheld ones, then the target's own headers, replacing any same-named client header.
pub fn forward_request_headers(client: &HeaderMap, target: &UpstreamTarget) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len() + target.headers.len());
    for (name, value) in client {
        if is_hop_by_hop(name) || is_withheld_from_upstream(name) || listed.contains(name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    for name in target.headers.keys() {
        out.remove(name);
    }
    for (name, value) in &target.headers {
        out.append(name.clone(), value.clone());
    }
    out
}

/// An upstream response's end-to-end headers (`Content-Type`, `Mcp-Session-Id`,
/// `Retry-After`, `Cache-Control`...), for the client's response: `upstream` with the others
/// removed, in place, so an answer's headers are not rebuilt one by one. `WWW-Authenticate` is
/// dropped: the upstream's authentication is toolgate's business, and passing the challenge on
/// would start an OAuth dance in the client against an origin it must not talk to.
/// `Set-Cookie` and `Access-Control-*` are dropped because toolgate owns its origin: an
/// upstream cookie would land on toolgate's origin (next to the pages' token cookie), and CORS
/// is answered by `crate::access` alone.
pub fn end_to_end_response_headers(mut upstream: HeaderMap) -> HeaderMap {
    let listed = connection_listed(&upstream);
    let dropped: Vec<HeaderName> = upstream
        .keys()
        .filter(|name| {
            is_hop_by_hop(name)
                || listed.contains(name)
                || *name == header::WWW_AUTHENTICATE
                || *name == header::SET_COOKIE
                || name.as_str().starts_with("access-control-")
        })
        .cloned()
        .collect();
    for name in &dropped {
        upstream.remove(name);
    }
    upstream
}

/// Marks an SSE response as not to be buffered by reverse proxies in front of toolgate.
pub fn mark_unbuffered_if_sse(headers: &mut HeaderMap) {
    let is_sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/event-stream"));
    if is_sse && !headers.contains_key("x-accel-buffering") {
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> UpstreamTarget {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("ak_secret"));
        UpstreamTarget::new(
            Url::parse("https://user:pw@up.example:8443/tool_router/trs_1/mcp?key=k").unwrap(),
            headers,
        )
    }

    #[test]
    fn host_is_built_once_for_plain_http_only() {
        let host = |url: &str| {
            let target = UpstreamTarget::new(Url::parse(url).unwrap(), HeaderMap::new());
            target
                .host()
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(
            host("http://127.0.0.1:8080/mcp").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            host("http://up.example:80/mcp").as_deref(),
            Some("up.example")
        );
        assert_eq!(host("http://[::1]:9/mcp").as_deref(), Some("[::1]:9"));
        // https may be HTTP/2, which carries the authority as `:authority`.
        assert_eq!(host("https://up.example:8443/mcp"), None);
    }

    #[test]
    fn debug_never_shows_credentials() {
        let shown = format!("{:?}", target());
        assert!(!shown.contains("ak_secret"), "{shown}");
        assert!(!shown.contains("pw") && !shown.contains("key=k"), "{shown}");
        assert!(shown.contains("x-api-key") && shown.contains("up.example:8443"));
        assert!(target().headers["x-api-key"].is_sensitive());
    }

    #[test]
    fn request_headers_drop_credentials_and_hop_by_hop_and_inject_target() {
        let mut client = HeaderMap::new();
        for (name, value) in [
            ("host", "127.0.0.1:8000"),
            ("authorization", "Bearer client"),
            ("cookie", "a=b"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("content-length", "10"),
            ("expect", "100-continue"),
            ("x-api-key", "client-supplied"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", "s1"),
            ("mcp-protocol-version", "2025-11-25"),
            ("last-event-id", "e7"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-param-region", "eu"),
            ("traceparent", "00-abc-def-01"),
            ("x-custom", "kept"),
        ] {
            client.append(name, HeaderValue::from_static(value));
        }
        let out = forward_request_headers(&client, &target());
        for dropped in [
            "host",
            "authorization",
            "cookie",
            "connection",
            "x-private",
            "keep-alive",
            "content-length",
            "expect",
        ] {
            assert!(!out.contains_key(dropped), "{dropped} was forwarded");
        }
        for kept in [
            "accept",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
            "mcp-method",
            "mcp-name",
            "mcp-param-region",
            "traceparent",
            "x-custom",
        ] {
            assert_eq!(out[kept], client[kept], "{kept}");
        }
        assert_eq!(out.get_all("x-api-key").iter().count(), 1);
        assert_eq!(out["x-api-key"], "ak_secret");
    }

    #[test]
    fn response_headers_drop_challenge_and_hop_by_hop() {
        let mut upstream = HeaderMap::new();
        upstream.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        upstream.insert("mcp-session-id", HeaderValue::from_static("s1"));
        upstream.insert("www-authenticate", HeaderValue::from_static("Bearer"));
        upstream.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        upstream.insert("set-cookie", HeaderValue::from_static("upstream=1; Path=/"));
        upstream.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        upstream.append("set-cookie", HeaderValue::from_static("other=2"));
        upstream.insert("connection", HeaderValue::from_static("x-hop"));
        upstream.insert("x-hop", HeaderValue::from_static("1"));
        upstream.insert("retry-after", HeaderValue::from_static("3"));
        let mut out = end_to_end_response_headers(upstream);
        mark_unbuffered_if_sse(&mut out);
        assert_eq!(out["retry-after"], "3");
        assert!(!out.contains_key("connection") && !out.contains_key("x-hop"));
        assert_eq!(out["mcp-session-id"], "s1");
        assert_eq!(out["x-accel-buffering"], "no");
        assert!(!out.contains_key("www-authenticate"));
        assert!(!out.contains_key("transfer-encoding"));
        assert!(!out.contains_key("set-cookie"));
        assert!(!out.contains_key("access-control-allow-origin"));
    }
}
