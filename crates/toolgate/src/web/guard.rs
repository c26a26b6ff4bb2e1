//! What is page-specific about access to the binary's pages; the checks themselves (Host,
//! Origin, token) are the listener's one set, `toolgate_proxy::access`.
//!
//! Browsers cannot add an `Authorization` header to a link click, so for people the token is
//! also accepted once as `?token=` on `/connections`, which answers with an `HttpOnly`,
//! `SameSite=Lax` cookie and a redirect to the clean URL (the token leaves the address bar and
//! history); later page requests present that cookie. `Lax` rather than `Strict` because the
//! OAuth provider's redirect back to `/callback` is a cross-site top-level navigation, and it
//! must carry the cookie. Forms that change state (disconnect) additionally carry a CSRF token.

use http::HeaderMap;
use http::header::COOKIE;

/// Name of the cookie holding the inbound token.
pub(crate) const TOKEN_COOKIE: &str = "toolgate_token";

/// The token cookie's value, if the request carries one.
pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, TOKEN_COOKIE)
}

/// The value of the cookie `wanted`, if the request carries one.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, wanted: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that logs this browser in with `token`.
pub(crate) fn login_cookie(token: &str) -> String {
    format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_token_cookie_is_found_among_others() {
        let rows = [
            ("a=b; toolgate_token=s3cret", Some("s3cret")),
            ("toolgate_token=s3cret", Some("s3cret")),
            ("a=b", None),
            ("xtoolgate_token=s3cret", None),
        ];
        for (cookie, expected) in rows {
            let mut headers = HeaderMap::new();
            headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
            assert_eq!(cookie_token(&headers), expected, "{cookie}");
        }
        assert_eq!(cookie_token(&HeaderMap::new()), None);
        assert!(login_cookie("t").contains("HttpOnly; SameSite=Lax"));
    }
}
