//! Table-driven tests of the access rules: each row is one request head and the expected
//! verdict.

use super::*;

const TOKEN: &str = "inbound-token-0123456789";

fn access(token: Option<&str>) -> Access {
    Access::new(&ProxyConfig {
        allowed_hosts: vec!["gw.example.com".into(), "Mixed.Example:8443".into()],
        allowed_origins: vec!["https://app.example".into()],
        bearer_token: token.map(|token| SecretString::from(token.to_owned())),
        ..ProxyConfig::default()
    })
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn refusal(result: Result<Grant, Denial>) -> Option<Refusal> {
    result.err().map(|denial| denial.refusal)
}

#[test]
fn host_rules() {
    use Refusal::{Host, MalformedHost};
    let rows: &[(&[&str], &str, Option<Refusal>)] = &[
        (&["127.0.0.1:8787"], "/mcp", None),
        (&["localhost"], "/mcp", None),
        (&["LOCALHOST:1"], "/mcp", None),
        (&["[::1]:8787"], "/mcp", None),
        (&["[0:0:0:0:0:0:0:1]"], "/mcp", None),
        (&["gw.example.com"], "/mcp", None),
        (&["GW.example.com:443"], "/mcp", None),
        (&["mixed.example"], "/mcp", None),
        (&["evil.example:8787"], "/mcp", Some(Host)),
        (&["127.0.0.2"], "/mcp", Some(Host)),
        (&["localhost."], "/mcp", Some(Host)),
        // userinfo must not smuggle a foreign name past the check
        (&["evil.com@127.0.0.1"], "/mcp", Some(MalformedHost)),
        (&["127.0.0.1@evil.com"], "/mcp", Some(MalformedHost)),
        // garbage after a bracketed address
        (&["[::1]evil.com"], "/mcp", Some(MalformedHost)),
        (&["[::1]:80evil"], "/mcp", Some(MalformedHost)),
        (&["[::1"], "/mcp", Some(MalformedHost)),
        (&["[evil.com]"], "/mcp", Some(MalformedHost)),
        (&["::1"], "/mcp", Some(MalformedHost)),
        (&["127.0.0.1:"], "/mcp", Some(MalformedHost)),
        (&["127.0.0.1:99999"], "/mcp", Some(MalformedHost)),
        (&["127.0.0.1:8787 x"], "/mcp", Some(MalformedHost)),
        (&[""], "/mcp", Some(MalformedHost)),
        // a duplicate Host is ambiguous whatever comes first
        (&["127.0.0.1", "evil.com"], "/mcp", Some(MalformedHost)),
        (&["127.0.0.1", "127.0.0.1"], "/mcp", Some(MalformedHost)),
        (&[], "/mcp", Some(MalformedHost)),
        // HTTP/2 :authority (no Host header) and HTTP/1.1 absolute-form targets
        (&[], "http://127.0.0.1:8787/mcp", None),
        (&[], "http://evil.example/mcp", Some(Host)),
        (&[], "http://evil.com@127.0.0.1/mcp", Some(MalformedHost)),
        (&["127.0.0.1"], "http://evil.example/mcp", Some(Host)),
    ];
    let access = access(None);
    for (hosts, uri, expected) in rows {
        let pairs: Vec<(&str, &str)> = hosts.iter().map(|host| ("host", *host)).collect();
        let uri: Uri = uri.parse().unwrap();
        let verdict = access.check(&headers(&pairs), &uri, Requirement::Full, None);
        assert_eq!(refusal(verdict), *expected, "Host {hosts:?}, target {uri}");
    }
}

#[test]
fn origin_rules() {
    let rows: &[(&str, &[&str], bool)] = &[
        ("127.0.0.1:8787", &[], true),
        ("127.0.0.1:8787", &["http://localhost:6274"], true),
        ("127.0.0.1:8787", &["http://127.0.0.1"], true),
        ("127.0.0.1:8787", &["http://[::1]:3000"], true),
        // one answer for https on loopback: accepted like http
        ("127.0.0.1:8787", &["https://localhost"], true),
        ("127.0.0.1:8787", &["https://app.example"], true),
        ("127.0.0.1:8787", &["https://APP.example:443"], true),
        ("127.0.0.1:8787", &["https://app.example:444"], false),
        ("127.0.0.1:8787", &["http://app.example"], false),
        ("127.0.0.1:8787", &["https://evil.example"], false),
        ("127.0.0.1:8787", &["null"], false),
        ("127.0.0.1:8787", &["file://"], false),
        (
            "127.0.0.1:8787",
            &["http://localhost", "https://evil.example"],
            false,
        ),
        (
            "127.0.0.1:8787",
            &["http://localhost", "http://localhost"],
            false,
        ),
        // same origin: the page the gateway itself served
        ("gw.example.com", &["https://gw.example.com"], true),
        (
            "gw.example.com:8443",
            &["https://gw.example.com:8443"],
            true,
        ),
        ("gw.example.com:443", &["https://gw.example.com"], true),
        ("gw.example.com:8443", &["https://gw.example.com"], false),
        ("gw.example.com", &["https://gw.example.com:8443"], false),
    ];
    let access = access(None);
    let uri: Uri = "/mcp".parse().unwrap();
    for (host, origins, allowed) in rows {
        let mut pairs = vec![("host", *host)];
        pairs.extend(origins.iter().map(|origin| ("origin", *origin)));
        let verdict = access.check(&headers(&pairs), &uri, Requirement::Full, None);
        let expected = (!allowed).then_some(Refusal::Origin);
        assert_eq!(
            refusal(verdict),
            expected,
            "Host {host}, Origin {origins:?}"
        );
    }
}

#[test]
fn token_rules() {
    let rows: &[(&[&str], Option<&str>, bool)] = &[
        (&[], None, false),
        (&["Bearer inbound-token-0123456789"], None, true),
        // one rule for the scheme: case-insensitive, surrounding spaces ignored
        (&["bearer inbound-token-0123456789"], None, true),
        (&["BEARER   inbound-token-0123456789 "], None, true),
        (&["Bearer inbound-token-012345678"], None, false),
        (&["Bearer inbound-token-01234567890"], None, false),
        (&["Basic aW5ib3VuZA=="], None, false),
        (&["inbound-token-0123456789"], None, false),
        (&["Bearer"], None, false),
        (
            &[
                "Bearer inbound-token-0123456789",
                "Bearer inbound-token-0123456789",
            ],
            None,
            false,
        ),
        // the pages' cookie, offered by the route
        (&[], Some("inbound-token-0123456789"), true),
        (
            &["Bearer wrong-token-000000000"],
            Some("inbound-token-0123456789"),
            true,
        ),
        (&[], Some("wrong"), false),
    ];
    let access = access(Some(TOKEN));
    let uri: Uri = "/mcp".parse().unwrap();
    for (authorization, cookie, accepted) in rows {
        let mut pairs = vec![("host", "127.0.0.1")];
        pairs.extend(authorization.iter().map(|value| ("authorization", *value)));
        for requirement in [Requirement::Full, Requirement::Token] {
            let verdict = access.check(&headers(&pairs), &uri, requirement, *cookie);
            let expected = (!accepted).then_some(Refusal::Token);
            assert_eq!(
                refusal(verdict),
                expected,
                "{authorization:?} {cookie:?} {requirement:?}"
            );
        }
    }
    assert!(access.token_matches(TOKEN));
    assert!(!access.token_matches("inbound"));
    let open = super::Access::new(&ProxyConfig::default());
    assert!(!open.token_matches(TOKEN) && !open.has_token());
    let any = headers(&[("host", "localhost")]);
    assert!(open.check(&any, &uri, Requirement::Full, None).is_ok());
}

#[test]
fn requirements_choose_the_checks() {
    let access = access(Some(TOKEN));
    let uri: Uri = "/metrics".parse().unwrap();
    let foreign_host = headers(&[("host", "10.0.0.7:8787")]);
    let with_token = headers(&[
        ("host", "10.0.0.7:8787"),
        ("authorization", "Bearer inbound-token-0123456789"),
    ]);
    let rows = [
        (Requirement::Open, &foreign_host, None),
        (Requirement::Token, &foreign_host, Some(Refusal::Token)),
        (Requirement::Token, &with_token, None),
        (Requirement::Site, &foreign_host, Some(Refusal::Host)),
        (Requirement::Full, &with_token, Some(Refusal::Host)),
    ];
    for (requirement, headers, expected) in rows {
        let verdict = access.check(headers, &uri, requirement, None);
        assert_eq!(refusal(verdict), expected, "{requirement:?}");
    }
}

#[test]
fn denials_say_why_and_carry_cors_only_past_the_origin_check() {
    let access = access(Some(TOKEN));
    let uri: Uri = "/mcp".parse().unwrap();
    let cross = headers(&[("host", "127.0.0.1"), ("origin", "https://app.example")]);
    let denial = access
        .check(&cross, &uri, Requirement::Full, None)
        .unwrap_err();
    let response = denial.json_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "a JSON-RPC error body"
    );
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let evil = headers(&[("host", "127.0.0.1"), ("origin", "https://evil.example")]);
    let response = access
        .check(&evil, &uri, Requirement::Full, None)
        .unwrap_err()
        .json_response();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    for refusal in [
        Refusal::MalformedHost,
        Refusal::Host,
        Refusal::Origin,
        Refusal::Token,
    ] {
        assert!(refusal.status().is_client_error());
        let body: serde_json::Value =
            serde_json::from_slice(&McpError::new(None, refusal.error()).to_json()).unwrap();
        assert_eq!(body["error"]["code"], -32000, "{refusal:?}");
        assert!(body["id"].is_null());
    }
}

#[test]
fn preflight_answers() {
    let access = access(Some(TOKEN));
    let uri: Uri = "/mcp".parse().unwrap();
    let request = |origin: &str, requested: Option<&str>| {
        let mut pairs = vec![
            ("host", "127.0.0.1:8787"),
            ("origin", origin),
            ("access-control-request-method", "POST"),
        ];
        if let Some(requested) = requested {
            pairs.push(("access-control-request-headers", requested));
        }
        headers(&pairs)
    };
    let answer = access
        .preflight(
            &Method::OPTIONS,
            &request(
                "http://localhost:6274",
                Some("content-type,authorization,mcp-protocol-version,Mcp-Param-Region,x-evil"),
            ),
            &uri,
        )
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let out = answer.headers();
    assert_eq!(out["access-control-allow-origin"], "http://localhost:6274");
    assert_eq!(out["access-control-allow-methods"], "GET, POST, DELETE");
    assert_eq!(
        out["access-control-allow-headers"],
        "content-type, authorization, mcp-protocol-version, Mcp-Param-Region"
    );
    assert!(
        out["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("Mcp-Session-Id")
    );
    assert_eq!(out["vary"], "Origin");
    assert!(!out.contains_key("access-control-allow-credentials"));
    let refused = access
        .preflight(
            &Method::OPTIONS,
            &request("https://evil.example", None),
            &uri,
        )
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
    // Not a preflight: no Origin, no requested method, or another method.
    let plain = headers(&[("host", "127.0.0.1"), ("origin", "http://localhost")]);
    assert!(access.preflight(&Method::OPTIONS, &plain, &uri).is_none());
    assert!(
        access
            .preflight(&Method::POST, &request("http://localhost", None), &uri)
            .is_none()
    );
    let no_origin = headers(&[
        ("host", "127.0.0.1"),
        ("access-control-request-method", "POST"),
    ]);
    assert!(
        access
            .preflight(&Method::OPTIONS, &no_origin, &uri)
            .is_none()
    );
}

#[test]
fn answers_lose_foreign_cors_headers() {
    let access = access(None);
    let uri: Uri = "/mcp".parse().unwrap();
    let rows = [(Some("http://localhost:3000"), true), (None, false)];
    for (origin, echoed) in rows {
        let mut pairs = vec![("host", "127.0.0.1")];
        pairs.extend(origin.map(|origin| ("origin", origin)));
        let grant = access
            .check(&headers(&pairs), &uri, Requirement::Full, None)
            .unwrap();
        let mut response = Response::new(());
        let upstream = response.headers_mut();
        upstream.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        upstream.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
        upstream.insert("vary", HeaderValue::from_static("Accept-Encoding"));
        grant.finish(&mut response);
        let out = response.headers();
        assert!(!out.contains_key("access-control-allow-credentials"));
        assert_eq!(
            out.get("access-control-allow-origin").is_some(),
            echoed,
            "{origin:?}"
        );
        if let Some(origin) = origin {
            assert_eq!(out["access-control-allow-origin"], origin);
        }
        let vary: Vec<_> = out.get_all("vary").iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    }
}

#[test]
fn token_strength_is_one_rule() {
    let rows = [
        ("0123456789abcdef", true),
        ("0123456789abcde", false),
        ("x", false),
        ("", false),
        ("0123456789 abcdef", false),
        ("0123456789abcdef\n", false),
        ("ééééééééééééééééé", true),
    ];
    for (token, strong) in rows {
        assert_eq!(check_token_strength(token).is_ok(), strong, "{token:?}");
    }
}

#[test]
fn allowed_host_entries_use_the_host_syntax() {
    for (entry, valid) in [
        ("gw.example.com", true),
        ("gw.example.com:8443", true),
        ("[::1]:80", true),
        ("toolgate_internal", true),
        ("https://gw.example.com", false),
        ("user@gw.example.com", false),
        ("gw example", false),
    ] {
        assert_eq!(is_valid_host(entry), valid, "{entry}");
    }
}

#[test]
fn debug_hides_the_token() {
    let shown = format!("{:?}", access(Some(TOKEN)));
    assert!(!shown.contains(TOKEN), "{shown}");
}
