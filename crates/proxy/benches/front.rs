//! What the multi-user front adds to a request, piece by piece: the tokens-mode identity check
//! (at 2 to 10,000 users), the jwt-mode check (an ES256 token against a static JWKS), and
//! opening and sealing a session id. `cargo bench -p
//! toolgate-proxy --bench front`; numbers and method are in BENCHMARKS.md ("Multi-user front").
//! The end-to-end p50 side by side with single-user mode is `bench/peers.sh`'s `multiuser`
//! section; this one says where those microseconds go, without the network's noise.

#![allow(
    clippy::print_stdout,
    reason = "the report on stdout is what a benchmark is for"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use http::HeaderMap;
use secrecy::SecretString;
use toolgate_proxy::identity::tokens::TokenTable;
use toolgate_proxy::identity::{Authenticator, TokenStore, UserId};
use toolgate_proxy::seal::{SessionKeys, SessionParts};

/// Rounds per measurement; the fastest is reported (the least disturbed by the machine).
const ROUNDS: usize = 7;
/// Operations per round.
const OPS: u32 = 20_000;
/// Distinct JWTs (and sealed ids) checked once each: nothing is remembered of them yet.
const FIRST_SIGHT: usize = 500;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    for users in [2, 1_000, 10_000] {
        let (authenticator, token) = tokens_mode(users);
        let headers = bearer_headers(&token);
        report(&format!("identify, tokens mode, {users} users"), || {
            runtime.block_on(async {
                black_box(authenticator.identify(black_box(&headers)).await).ok();
            });
        });
    }
    let (verifier, tokens) = jwt_mode(FIRST_SIGHT + 1);
    let headers = bearer_headers(&tokens[0]);
    report("identify, jwt mode, ES256 (token seen before)", || {
        runtime.block_on(async {
            black_box(verifier.identify(black_box(&headers)).await).ok();
        });
    });
    let started = Instant::now();
    for token in &tokens[1..] {
        let headers = bearer_headers(token);
        runtime.block_on(async {
            black_box(verifier.identify(&headers).await).ok();
        });
    }
    report_first_sight("identify, jwt mode, ES256 (a new token)", started);
    let keys = SessionKeys::new(&[SecretString::from("0123456789abcdef0123456789abcdef")])
        .expect("a 32-byte key");
    let parts = SessionParts {
        user: UserId::new("user-0000042").expect("a user id"),
        route_key: "trs_0123456789abcdef".to_owned(),
        upstream_session: Some("6f1d2c3b-4a59-4e8f-9a0b-1c2d3e4f5a6b".to_owned()),
        url_elicitation: true,
    };
    let sealed = keys.seal(&parts);
    report("seal a session id", || {
        black_box(keys.seal(black_box(&parts)));
    });
    report("open a sealed id for its user (remembered)", || {
        black_box(keys.open_for(black_box(&sealed), &parts.user)).ok();
    });
    open_first_sight(&keys, &parts);
}

/// Opening ids this replica never saw: the AEAD each time (what a session's first request on
/// a replica pays). Each id is opened once, by keys that did not seal it.
fn open_first_sight(keys: &SessionKeys, parts: &SessionParts) {
    let ids: Vec<String> = (0..FIRST_SIGHT).map(|_| keys.seal(parts)).collect();
    let replica = SessionKeys::new(&[SecretString::from("0123456789abcdef0123456789abcdef")])
        .expect("a 32-byte key");
    let started = Instant::now();
    for id in &ids {
        black_box(replica.open_for(black_box(id), &parts.user)).ok();
    }
    report_first_sight("open a sealed id for its user (first sight)", started);
}

/// A tokens-mode authenticator with `users` users, and the token of the last one.
fn tokens_mode(users: usize) -> (Authenticator, String) {
    let token = |index: usize| format!("token-of-user-{index:08}-0123456789abcdef");
    let text: String = (0..users)
        .map(|index| format!("user-{index:08} {}\n", token(index)))
        .collect();
    let table = TokenTable::parse(&text).expect("a valid tokens file");
    (
        Authenticator::Tokens(TokenStore::new(table)),
        token(users - 1),
    )
}

/// A jwt-mode authenticator over a fresh ES256 key, and `count` distinct valid tokens for it.
fn jwt_mode(count: usize) -> (Authenticator, Vec<String>) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use toolgate_proxy::identity::jwt::{JwksSource, JwtSettings, JwtVerifier};

    const ISSUER: &str = "https://auth.bench.invalid";
    const RESOURCE: &str = "http://127.0.0.1:8000/mcp";
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("a P-256 key");
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("a JWK");
    jwk.common.key_id = Some("bench".into());
    let jwks = JwksSource::Static(JwkSet { keys: vec![jwk] });
    let settings = JwtSettings::new(RESOURCE.parse().expect("a URL"), ISSUER, jwks);
    let verifier = JwtVerifier::new(settings, reqwest::Client::new()).expect("a verifier");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("bench".into());
    let tokens = (0..count)
        .map(|n| {
            let sub = format!("user-{n:07}");
            let claims =
                serde_json::json!({"iss": ISSUER, "aud": RESOURCE, "sub": sub, "exp": exp});
            jsonwebtoken::encode(&header, &claims, &key).expect("a signed token")
        })
        .collect();
    (Authenticator::Jwt(std::sync::Arc::new(verifier)), tokens)
}

fn bearer_headers(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {token}").parse().expect("a header value");
    headers.insert(http::header::AUTHORIZATION, value);
    headers
}

/// Prints the fastest round's time per operation.
fn report(what: &str, mut op: impl FnMut()) {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..OPS {
            op();
        }
        best = best.min(started.elapsed() / OPS);
    }
    print_row(what, best);
}

/// Prints the time per operation of [`FIRST_SIGHT`] distinct operations timed from `started`.
fn report_first_sight(what: &str, started: Instant) {
    print_row(
        what,
        started.elapsed() / u32::try_from(FIRST_SIGHT).unwrap_or(u32::MAX),
    );
}

fn print_row(what: &str, each: Duration) {
    println!("{what:<45} {:>9.2} µs", each.as_secs_f64() * 1e6);
}
