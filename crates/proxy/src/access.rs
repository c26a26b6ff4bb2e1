//! Who may use the listener: the one access check for every route on it (the MCP endpoint, the
//! binary's pages, `/metrics`), and CORS for the MCP endpoint.
//!
//! A request passes, in this order:
//! 1. **Host** (DNS-rebinding protection): exactly one `Host` header, or on HTTP/2 the
//!    `:authority` (hyper puts it in the URI), strictly `name[:port]` or `[v6][:port]`; a missing,
//!    repeated or malformed one is 400 (RFC 9112 §3.2). The name must be a loopback name
//!    (`localhost`, `127.0.0.1`, `[::1]`) or in `allowed_hosts`, else 403.
//! 2. **Origin** (cross-site protection): absent (non-browser clients send none), or one value
//!    that is a loopback origin (`http` or `https`), the request's own origin (same Host), or in
//!    `allowed_origins`; else 403. `null`, a repeated header, or anything else is refused.
//! 3. **Token**: when one is configured, `Authorization: Bearer <token>` (the scheme is
//!    case-insensitive, RFC 9110 §11.1), compared in constant time; the binary's pages may
//!    offer one more credential (their cookie). Missing or wrong is 401 with
//!    `WWW-Authenticate: Bearer`.
//!
//! What passes resolves to an [`Identity`]. Today that is always the one configured user; the
//! multi-user modes (`auth.mode`) will resolve it from the credential here, so that everything
//! behind this module only ever sees an identity, never a token.
//!
//! # CORS
//! Browser clients (the MCP Inspector's direct mode, web agents) send a preflight before every
//! `POST` with `Content-Type: application/json` or an `Mcp-*` header. On the MCP endpoint it is
//! answered here, never forwarded: 204 for an allowed origin, with that origin echoed and the
//! MCP request headers allowed; 403 otherwise. Answers to allowed origins carry
//! `Access-Control-Allow-Origin` and expose `Mcp-Session-Id`. toolgate owns its origin, so any
//! `Access-Control-*` header a handler or the upstream produced is removed first. No
//! `Access-Control-Allow-Credentials`: MCP clients authenticate with a header, not cookies.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::config::ProxyConfig;
use crate::events::{NoEvents, ProxyEvents, RequestKind, RequestRecord};
use crate::gateway::ProxyBody;
use crate::mcp::error::{ErrorKind, McpError};

/// Shortest inbound token accepted, in every mode: long enough that guessing is hopeless.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Host names accepted without configuration.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Request headers a browser MCP client may send cross-origin (besides the CORS-safelisted
/// ones), lowercased; `mcp-param-*` (2026-07-28 custom headers) are matched by prefix.
const ALLOWED_REQUEST_HEADERS: [&str; 8] = [
    "content-type",
    "accept",
    "authorization",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
];

/// Prefix of the per-tool parameter headers of 2026-07-28.
const MCP_PARAM_PREFIX: &str = "mcp-param-";

/// Response headers a browser client may read: the session id it must send back, the
/// negotiated version, and the challenge of a 401.
const EXPOSED_HEADERS: &str = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate";

/// Methods of the MCP endpoint.
const ALLOWED_METHODS: &str = "GET, POST, DELETE";

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Why a configured token cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the token must be at least {MIN_TOKEN_CHARS} characters without whitespace")]
pub struct WeakToken;

/// The one token-strength rule of every mode: at least [`MIN_TOKEN_CHARS`] characters, no
/// whitespace or control characters (they would not survive an `Authorization` header).
pub fn check_token_strength(token: &str) -> Result<(), WeakToken> {
    let printable = !token.chars().any(|c| c.is_whitespace() || c.is_control());
    if token.chars().count() >= MIN_TOKEN_CHARS && printable {
        Ok(())
    } else {
        Err(WeakToken)
    }
}

/// Who a request acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Identity {
    /// The one user the gateway was configured for (the only identity today).
    SingleUser,
}

/// What a route demands of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing (liveness and readiness probes, which address the pod by IP and reveal nothing
    /// secret).
    Open,
    /// The token only: scrapers address the pod by IP, so the Host check would refuse them.
    Token,
    /// Host and Origin, not the token (used before a page's own token login).
    Site,
    /// Host, Origin and token: the MCP endpoint and the pages.
    Full,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` (or `:authority`) is missing, repeated or not `name[:port]` (400).
    MalformedHost,
    /// The Host names a server this gateway is not (403).
    Host,
    /// The Origin is not allowed (403).
    Origin,
    /// The token is missing or wrong (401).
    Token,
}

impl Refusal {
    /// The error this refusal is, in the one error type of both faces (which owns its
    /// JSON-RPC code, HTTP status and message).
    pub fn error(self) -> ErrorKind {
        match self {
            Refusal::MalformedHost => ErrorKind::MalformedHost,
            Refusal::Host => {
                ErrorKind::Forbidden("this Host is not allowed (DNS rebinding protection)")
            }
            Refusal::Origin => ErrorKind::Forbidden("this Origin is not allowed"),
            Refusal::Token => ErrorKind::Unauthorized,
        }
    }

    /// The HTTP status of this refusal.
    pub fn status(self) -> StatusCode {
        self.error().http_status()
    }
}

/// A refused request: the reason, and the CORS answer headers when the browser's origin was
/// allowed (so a browser client can read a 401).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Why.
    pub refusal: Refusal,
    cors_origin: Option<HeaderValue>,
}

impl Denial {
    /// The refusal as a JSON-RPC error body (id `null`: the body was not read), with the CORS
    /// and `WWW-Authenticate` headers it needs.
    pub fn json_response(&self) -> Response<ProxyBody> {
        let error = McpError::new(None, self.refusal.error());
        let mut response = Response::new(full(error.to_json()));
        *response.status_mut() = error.kind.http_status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.finish(&mut response);
        response
    }

    /// Adds what every refusal carries: the challenge of a 401, and the CORS headers.
    pub fn finish<B>(&self, response: &mut Response<B>) {
        if self.refusal == Refusal::Token {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        apply_cors(response.headers_mut(), self.cors_origin.as_ref());
    }
}

/// An admitted request: who it acts for, and the origin to echo in the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Who the request acts for.
    pub identity: Identity,
    cors_origin: Option<HeaderValue>,
}

impl Grant {
    /// Sets the CORS headers of an MCP answer, replacing any a handler or the upstream set.
    pub fn finish<B>(&self, response: &mut Response<B>) {
        apply_cors(response.headers_mut(), self.cors_origin.as_ref());
    }
}

/// The access rules of one listener. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Rules>,
}

struct Rules {
    /// Lowercased Host names accepted, loopback names first, without ports.
    hosts: Vec<String>,
    /// Configured origins in their ASCII serialization (`scheme://host[:port]`).
    origins: Vec<String>,
    token: Option<SecretString>,
    events: Arc<dyn ProxyEvents>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("hosts", &self.inner.hosts)
            .field("origins", &self.inner.origins)
            .field("token", &self.inner.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Access {
    /// The rules of `config` (`allowed_hosts`, `allowed_origins`, `bearer_token`), already
    /// validated by [`ProxyConfig::validate`]; entries that do not parse match nothing.
    pub fn new(config: &ProxyConfig) -> Self {
        let mut hosts: Vec<String> = LOOPBACK_NAMES.iter().map(|&name| name.to_owned()).collect();
        hosts.extend(
            config
                .allowed_hosts
                .iter()
                .filter_map(|host| parse_authority(host.trim()))
                .map(|(name, _port)| name),
        );
        let origins = config
            .allowed_origins
            .iter()
            .filter_map(|origin| url::Url::parse(origin).ok())
            .map(|url| url.origin().ascii_serialization())
            .collect();
        Self {
            inner: Arc::new(Rules {
                hosts,
                origins,
                token: config.bearer_token.clone(),
                events: Arc::new(NoEvents),
            }),
        }
    }

    /// The same rules, reporting refused MCP requests to `events` (as
    /// [`RequestKind::Rejected`]).
    pub fn with_events(self, events: Arc<dyn ProxyEvents>) -> Self {
        let rules = &self.inner;
        Self {
            inner: Arc::new(Rules {
                hosts: rules.hosts.clone(),
                origins: rules.origins.clone(),
                token: rules.token.clone(),
                events,
            }),
        }
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// Whether `candidate` is the configured token (constant time; `false` when none is).
    pub fn token_matches(&self, candidate: &str) -> bool {
        self.inner.token.as_ref().is_some_and(|expected| {
            bool::from(
                candidate
                    .trim()
                    .as_bytes()
                    .ct_eq(expected.expose_secret().as_bytes()),
            )
        })
    }

    /// Checks a request's head against `requirement`. `other_credential` is a token the route
    /// found elsewhere than in `Authorization` (the pages' cookie); it is tried after the
    /// bearer header.
    pub fn check(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        requirement: Requirement,
        other_credential: Option<&str>,
    ) -> Result<Grant, Denial> {
        let deny = |refusal, cors_origin| Denial {
            refusal,
            cors_origin,
        };
        let mut cors_origin = None;
        if matches!(requirement, Requirement::Site | Requirement::Full) {
            let host = self.check_host(headers, uri).map_err(|r| deny(r, None))?;
            cors_origin = self
                .check_origin(headers, &host)
                .map_err(|r| deny(r, None))?;
        }
        let identity = match requirement {
            Requirement::Open | Requirement::Site => Identity::SingleUser,
            Requirement::Token | Requirement::Full => self
                .identify(headers, other_credential)
                .map_err(|r| deny(r, cors_origin.clone()))?,
        };
        Ok(Grant {
            identity,
            cors_origin,
        })
    }

    /// The answer to a CORS preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), or `None` when the request is not one. Host and
    /// Origin are checked; the token is not (browsers never send credentials on a preflight).
    pub fn preflight(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Option<Response<ProxyBody>> {
        if method != Method::OPTIONS
            || !headers.contains_key(header::ORIGIN)
            || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let grant = match self.check(headers, uri, Requirement::Site, None) {
            Ok(grant) => grant,
            Err(denial) => return Some(denial.json_response()),
        };
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        grant.finish(&mut response);
        let out = response.headers_mut();
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        if let Some(allowed) = allowed_request_headers(headers) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed);
        }
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
        Some(response)
    }

    /// Runs `handler` for a request to the MCP endpoint if it passes (preflights answered,
    /// refusals answered as JSON-RPC errors and reported), with its [`Identity`] in the
    /// request's extensions and the CORS headers set on the answer.
    pub async fn serve_mcp<B, F, Fut>(
        &self,
        mut request: Request<B>,
        handler: F,
    ) -> Response<ProxyBody>
    where
        F: FnOnce(Request<B>) -> Fut,
        Fut: Future<Output = Response<ProxyBody>>,
    {
        let started = Instant::now();
        if let Some(answer) = self.preflight(request.method(), request.headers(), request.uri()) {
            return answer;
        }
        match self.check(request.headers(), request.uri(), Requirement::Full, None) {
            Ok(grant) => {
                request.extensions_mut().insert(grant.identity.clone());
                let mut response = handler(request).await;
                grant.finish(&mut response);
                response
            }
            Err(denial) => {
                let response = denial.json_response();
                self.inner.events.request_finished(&RequestRecord {
                    http_method: request.method(),
                    kind: RequestKind::Rejected,
                    rpc_method: None,
                    status: response.status(),
                    elapsed: started.elapsed(),
                });
                response
            }
        }
    }

    /// The Host check; returns the accepted `name[:port]`, lowercased, for the same-origin
    /// comparison.
    fn check_host(&self, headers: &HeaderMap, uri: &Uri) -> Result<(String, Option<u16>), Refusal> {
        let mut values = headers.get_all(header::HOST).iter();
        let host = values.next();
        if values.next().is_some() {
            return Err(Refusal::MalformedHost);
        }
        // An absolute-form request target (HTTP/1.1) or HTTP/2's :authority: it names the
        // server too, so it must pass as well.
        let authority = uri.authority().map(|authority| authority.as_str());
        let host = match host {
            Some(value) => Some(value.to_str().map_err(|_| Refusal::MalformedHost)?),
            None => None,
        };
        let mut accepted = None;
        for candidate in [host, authority].into_iter().flatten() {
            let (name, port) = parse_authority(candidate).ok_or(Refusal::MalformedHost)?;
            if !self.inner.hosts.contains(&name) {
                return Err(Refusal::Host);
            }
            accepted.get_or_insert((name, port));
        }
        accepted.ok_or(Refusal::MalformedHost)
    }

    /// The Origin check; returns the origin to echo in CORS headers (when one was sent).
    fn check_origin(
        &self,
        headers: &HeaderMap,
        host: &(String, Option<u16>),
    ) -> Result<Option<HeaderValue>, Refusal> {
        let mut values = headers.get_all(header::ORIGIN).iter();
        let Some(origin) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Refusal::Origin);
        }
        let url = origin
            .to_str()
            .ok()
            .and_then(|text| url::Url::parse(text).ok())
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or(Refusal::Origin)?;
        let loopback = matches!(
            url.host(),
            Some(url::Host::Domain("localhost"))
                | Some(url::Host::Ipv4(Ipv4Addr::LOCALHOST))
                | Some(url::Host::Ipv6(Ipv6Addr::LOCALHOST))
        );
        let configured = self
            .inner
            .origins
            .contains(&url.origin().ascii_serialization());
        if loopback || configured || same_origin(&url, host) {
            Ok(Some(origin.clone()))
        } else {
            Err(Refusal::Origin)
        }
    }

    /// Resolves the credential to an identity. One bearer rule: exactly one `Authorization`
    /// header, scheme `Bearer` in any case, then the token.
    fn identify(&self, headers: &HeaderMap, other: Option<&str>) -> Result<Identity, Refusal> {
        if self.inner.token.is_none() {
            return Ok(Identity::SingleUser);
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let bearer = match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok().and_then(bearer_token),
            _ => None,
        };
        if bearer.is_some_and(|token| self.token_matches(token))
            || other.is_some_and(|token| self.token_matches(token))
        {
            Ok(Identity::SingleUser)
        } else {
            Err(Refusal::Token)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether the origin is the request's own: same name, and the same port (a Host without a
/// port matches the scheme's default, since a TLS proxy in front may have dropped it).
fn same_origin(origin: &url::Url, (name, port): &(String, Option<u16>)) -> bool {
    let origin_name = match origin.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(host) => host.to_string(),
        None => return false,
    };
    origin_name == *name
        && match port {
            Some(port) => origin.port_or_known_default() == Some(*port),
            None => origin.port().is_none(),
        }
}

/// Whether `value` is a usable `allowed_hosts` entry: `name[:port]` or `[v6][:port]`, the
/// same strict form a request's Host must have.
pub fn is_valid_host(value: &str) -> bool {
    parse_authority(value).is_some()
}

/// Parses a Host value (or an allowed-host entry) strictly as `reg-name[:port]`,
/// `IPv4[:port]` or `[IPv6][:port]`: no userinfo, nothing after the closing bracket but a
/// port. Returns the lowercased name (an IPv6 address in its canonical bracketed form) and
/// the port.
fn parse_authority(value: &str) -> Option<(String, Option<u16>)> {
    let (name, rest) = if let Some(inner) = value.strip_prefix('[') {
        let (address, rest) = inner.split_once(']')?;
        let address: Ipv6Addr = address.parse().ok()?;
        (format!("[{address}]"), rest)
    } else {
        let end = value.find(':').unwrap_or(value.len());
        let name = &value[..end];
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return None;
        }
        (name.to_ascii_lowercase(), &value[end..])
    };
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => None,
        None => return None,
        Some(digits)
            if digits.len() <= 5
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((name, port))
}

/// The `Access-Control-Allow-Headers` answer: the requested headers toolgate allows (the MCP
/// ones and any `Mcp-Param-*`), in the browser's spelling; `None` when none was requested.
fn allowed_request_headers(headers: &HeaderMap) -> Option<HeaderValue> {
    let requested = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty());
    let allowed: Vec<&str> = requested
        .filter(|name| {
            let lower = name.to_ascii_lowercase();
            ALLOWED_REQUEST_HEADERS.contains(&lower.as_str())
                || (lower.starts_with(MCP_PARAM_PREFIX) && lower.len() > MCP_PARAM_PREFIX.len())
        })
        .collect();
    let list = if allowed.is_empty() {
        ALLOWED_REQUEST_HEADERS.join(", ")
    } else {
        allowed.join(", ")
    };
    HeaderValue::from_str(&list).ok()
}

/// Replaces every `Access-Control-*` header with toolgate's own answer for `origin`.
fn apply_cors(headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
    let foreign: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in foreign {
        headers.remove(name);
    }
    let varies = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|name| name.trim().eq_ignore_ascii_case("origin") || name.trim() == "*");
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests;
