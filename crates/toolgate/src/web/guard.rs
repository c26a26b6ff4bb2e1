//! Who may use the binary's own pages: the same rules as the MCP endpoint (Host allowlist
//! against DNS rebinding, Origin allowlist against cross-site requests, bearer token when
//! configured).
//!
//! Browsers cannot add an `Authorization` header to a link click, so for people the token is
//! also accepted once as `?token=` on `/connections`, which answers with an `HttpOnly`,
//! `SameSite=Lax` cookie and a redirect to the clean URL (the token leaves the address bar and
//! history). `Lax` rather than `Strict` because the OAuth provider's redirect back to
//! `/callback` is a cross-site top-level navigation, and it must carry the cookie. Forms that
//! change state (disconnect) additionally carry a CSRF token.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Name of the cookie holding the inbound token.
pub(crate) const TOKEN_COOKIE: &str = "toolgate_token";

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The Host header is not an allowed name (403).
    Host,
    /// The Origin header is neither same-origin nor allowed (403).
    Origin,
    /// A token is configured and the request did not carry it (401).
    Token,
}

/// The access rules for the binary's pages.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    token: Option<SecretString>,
}

const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]", "::1"];

/// The host part of a `Host` value (`name`, `name:port`, `[v6]:port`), lowercased.
fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => host[..=end].to_owned(),
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
        _ => host,
    }
}

impl Guard {
    /// Rules from the configuration's `allowed_hosts`, `allowed_origins` and `token`.
    pub(crate) fn new(
        allowed_hosts: &[String],
        allowed_origins: &[String],
        token: Option<SecretString>,
    ) -> Self {
        Self {
            allowed_hosts: allowed_hosts.iter().map(|host| host_name(host)).collect(),
            allowed_origins: allowed_origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            token,
        }
    }

    /// Whether a token is configured.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Host and Origin checks (everything but the token).
    pub(crate) fn check_host_and_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(host) = headers.get(HOST).and_then(|value| value.to_str().ok()) else {
            return Err(Refusal::Host);
        };
        let name = host_name(host);
        let host_ok = LOOPBACK_HOSTS.contains(&name.as_str()) || self.allowed_hosts.contains(&name);
        if !host_ok {
            return Err(Refusal::Host);
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin
                .to_str()
                .map_err(|_| Refusal::Origin)?
                .to_ascii_lowercase();
            let same_origin = url::Url::parse(&origin).is_ok_and(|url| {
                let authority = match url.port() {
                    Some(port) => format!("{}:{port}", url.host_str().unwrap_or("")),
                    None => url.host_str().unwrap_or("").to_owned(),
                };
                authority == host.trim().to_ascii_lowercase()
            });
            let loopback_origin = url::Url::parse(&origin).is_ok_and(|url| {
                url.scheme() == "http"
                    && url
                        .host_str()
                        .is_some_and(|name| LOOPBACK_HOSTS.contains(&name))
            });
            if !(same_origin || loopback_origin || self.allowed_origins.contains(&origin)) {
                return Err(Refusal::Origin);
            }
        }
        Ok(())
    }

    /// The token check: `Authorization: Bearer`, or the cookie. Passes when none is configured.
    pub(crate) fn check_token(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == TOKEN_COOKIE)
            .map(|(_, value)| value);
        let matches = |candidate: &str| token_eq(candidate, expected);
        if bearer.is_some_and(matches) || cookie.is_some_and(matches) {
            Ok(())
        } else {
            Err(Refusal::Token)
        }
    }

    /// Whether `candidate` (e.g. from `?token=`) is the configured token.
    pub(crate) fn token_matches(&self, candidate: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|expected| token_eq(candidate, expected))
    }
}

fn token_eq(candidate: &str, expected: &SecretString) -> bool {
    bool::from(
        candidate
            .as_bytes()
            .ct_eq(expected.expose_secret().as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn host_and_origin_rules() {
        let guard = Guard::new(
            &["gw.example.com".into()],
            &["https://app.example.com".into()],
            None,
        );
        assert_eq!(
            guard.check_host_and_origin(&headers(&[(HOST, "127.0.0.1:8787")])),
            Ok(())
        );
        assert_eq!(
            guard.check_host_and_origin(&headers(&[(HOST, "[::1]:8787")])),
            Ok(())
        );
        assert_eq!(
            guard.check_host_and_origin(&headers(&[(HOST, "GW.example.com")])),
            Ok(())
        );
        assert_eq!(
            guard.check_host_and_origin(&headers(&[(HOST, "evil.example:8787")])),
            Err(Refusal::Host)
        );
        assert_eq!(
            guard.check_host_and_origin(&HeaderMap::new()),
            Err(Refusal::Host)
        );
        let same = headers(&[(HOST, "gw.example.com"), (ORIGIN, "https://gw.example.com")]);
        assert_eq!(guard.check_host_and_origin(&same), Ok(()));
        let allowed = headers(&[(HOST, "localhost:1"), (ORIGIN, "https://app.example.com")]);
        assert_eq!(guard.check_host_and_origin(&allowed), Ok(()));
        let cross = headers(&[(HOST, "localhost:1"), (ORIGIN, "https://evil.example")]);
        assert_eq!(guard.check_host_and_origin(&cross), Err(Refusal::Origin));
        let null = headers(&[(HOST, "localhost:1"), (ORIGIN, "null")]);
        assert_eq!(guard.check_host_and_origin(&null), Err(Refusal::Origin));
    }

    #[test]
    fn token_by_header_or_cookie() {
        let guard = Guard::new(&[], &[], Some(SecretString::from("s3cret-token-0123456")));
        assert_eq!(guard.check_token(&HeaderMap::new()), Err(Refusal::Token));
        let bearer = headers(&[(AUTHORIZATION, "Bearer s3cret-token-0123456")]);
        assert_eq!(guard.check_token(&bearer), Ok(()));
        let wrong = headers(&[(AUTHORIZATION, "Bearer s3cret-token-0123457")]);
        assert_eq!(guard.check_token(&wrong), Err(Refusal::Token));
        let cookie = headers(&[(COOKIE, "a=b; toolgate_token=s3cret-token-0123456")]);
        assert_eq!(guard.check_token(&cookie), Ok(()));
        assert!(guard.token_matches("s3cret-token-0123456"));
        assert!(!guard.token_matches("s3cret"));
        let open = Guard::new(&[], &[], None);
        assert_eq!(open.check_token(&HeaderMap::new()), Ok(()));
        assert!(!open.token_matches("anything"));
    }
}
