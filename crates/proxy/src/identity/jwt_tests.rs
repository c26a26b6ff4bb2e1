//! JWT resource-server tests: tokens signed with freshly generated keys, a JWKS served over a
//! real loopback socket (so fetching, refresh on an unknown `kid` and its rate limit are the
//! real code paths), and the metadata document.

use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use tokio::net::TcpListener;

use super::*;
use crate::identity::{AuthError, Authenticator};

const ISSUER: &str = "https://auth.test.invalid";
const RESOURCE: &str = "http://127.0.0.1:8787/mcp";

struct TestKey {
    kid: String,
    encoding: EncodingKey,
}

impl TestKey {
    fn new(kid: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        }
    }

    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).unwrap()
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|key| key.jwk()).collect::<Vec<_>>() }).to_string()
}

fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
}

fn claims(sub: &str) -> Value {
    json!({ "iss": ISSUER, "aud": RESOURCE, "sub": sub, "exp": now() + 600, "iat": now() })
}

/// A JWKS endpoint on 127.0.0.1 that counts its requests; `None` answers 500.
struct JwksServer {
    url: Url,
    body: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/jwks.json",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&body), Arc::clone(&hits));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (served, counted) = (Arc::clone(&served), Arc::clone(&counted));
                let service = service_fn(move |_request| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().clone();
                    async move {
                        let response = match body {
                            Some(body) => http::Response::new(Full::new(Bytes::from(body))),
                            None => http::Response::builder()
                                .status(500)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { url, body, hits }
    }

    fn serve(&self, body: Option<String>) {
        *self.body.lock().unwrap() = body;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn settings(jwks: JwksSource) -> JwtSettings {
    let mut settings = JwtSettings::new(Url::parse(RESOURCE).unwrap(), ISSUER, jwks);
    settings.authorization_servers = vec![ISSUER.to_owned()];
    settings
}

fn verifier(settings: JwtSettings) -> JwtVerifier {
    JwtVerifier::new(settings, reqwest::Client::new()).unwrap()
}

/// Keys `old` and `new`, a JWKS endpoint serving `old`, and a verifier fetching from it with
/// its settings changed by `tune`.
async fn rotating(
    tune: impl FnOnce(&mut JwtSettings),
) -> (TestKey, TestKey, JwksServer, JwtVerifier) {
    let old = TestKey::new("old");
    let new = TestKey::new("new");
    let server = JwksServer::start(Some(jwks(&[&old]))).await;
    let mut settings = settings(JwksSource::Url(server.url.clone()));
    tune(&mut settings);
    (old, new, server, verifier(settings))
}

#[tokio::test]
async fn a_valid_token_names_its_user_from_the_configured_claim() {
    let key = TestKey::new("k1");
    let set = parse_jwks(&jwks(&[&key])).unwrap();
    let by_sub = verifier(settings(JwksSource::Static(set.clone())));
    let token = key.sign(&claims("alice"));
    assert_eq!(by_sub.verify(&token).await.unwrap().as_str(), "alice");

    let mut by_email = settings(JwksSource::Static(set));
    by_email.user_claim = "email".to_owned();
    let by_email = verifier(by_email);
    let mut with_email = claims("u-123");
    with_email["email"] = json!("alice@example.com");
    let user = by_email.verify(&key.sign(&with_email)).await.unwrap();
    assert_eq!(user.as_str(), "alice@example.com");
    assert!(matches!(
        by_email.verify(&token).await,
        Err(JwtError::NoUser { .. })
    ));
}

#[tokio::test]
async fn wrong_audience_issuer_time_or_signature_is_refused() {
    let key = TestKey::new("k1");
    let verifier = verifier(settings(JwksSource::Static(
        parse_jwks(&jwks(&[&key])).unwrap(),
    )));
    let with = |field: &str, value: Value| {
        let mut claims = claims("alice");
        claims[field] = value;
        key.sign(&claims)
    };
    let cases = [
        (
            with("aud", json!("http://127.0.0.1:9999/mcp")),
            "wrong audience",
        ),
        (with("iss", json!("https://evil.invalid")), "wrong issuer"),
        (with("exp", json!(now() - 3600)), "expired"),
        (with("nbf", json!(now() + 3600)), "not valid yet"),
    ];
    for (token, expected) in cases {
        let error = verifier.verify(&token).await.unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
        assert!(!error.is_unavailable());
    }
    // Within the leeway an expired token still passes (clock skew between servers).
    assert!(
        verifier
            .verify(&with("exp", json!(now() - 5)))
            .await
            .is_ok()
    );
    let mut missing_exp = claims("alice");
    missing_exp.as_object_mut().unwrap().remove("exp");
    assert!(verifier.verify(&key.sign(&missing_exp)).await.is_err());
    // Signed by a key with the same kid that the JWKS does not hold.
    let impostor = TestKey::new("k1");
    let error = verifier.verify(&impostor.sign(&claims("alice"))).await;
    assert_eq!(error, Err(JwtError::Rejected("bad signature")));
    assert!(matches!(
        verifier.verify("not.a.jwt").await,
        Err(JwtError::Malformed(_))
    ));
}

#[tokio::test]
async fn symmetric_tokens_are_refused_even_with_the_public_key_as_secret() {
    let key = TestKey::new("k1");
    let verifier = verifier(settings(JwksSource::Static(
        parse_jwks(&jwks(&[&key])).unwrap(),
    )));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    let forged = jsonwebtoken::encode(
        &header,
        &claims("alice"),
        &EncodingKey::from_secret(key.jwk().to_string().as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(JwtError::Algorithm(_))
    ));
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_jwks_once_within_the_interval() {
    let (old, new, server, verifier) =
        rotating(|s| s.min_refresh_interval = Duration::from_secs(3600)).await;
    assert!(!verifier.has_keys());

    assert!(verifier.verify(&old.sign(&claims("alice"))).await.is_ok());
    assert_eq!(server.hits(), 1);
    assert!(verifier.verify(&old.sign(&claims("alice"))).await.is_ok());
    assert_eq!(server.hits(), 1, "cached");

    // The authorization server rotates; a token with the new kid arrives. The first fetch was
    // within the interval, so the rate limit holds and the kid stays unknown.
    server.serve(Some(jwks(&[&old, &new])));
    let new_token = new.sign(&claims("bob"));
    assert_eq!(
        verifier.verify(&new_token).await,
        Err(JwtError::UnknownKey(Some("new".to_owned())))
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn key_rotation_is_picked_up_on_an_unknown_kid() {
    let (_old, new, server, verifier) = rotating(|s| s.min_refresh_interval = Duration::ZERO).await;
    verifier.refresh().await.unwrap();
    assert!(verifier.has_keys());
    assert_eq!(server.hits(), 1);

    server.serve(Some(jwks(&[&new])));
    let user = verifier.verify(&new.sign(&claims("bob"))).await.unwrap();
    assert_eq!(user.as_str(), "bob");
    assert_eq!(server.hits(), 2);
    // A kid nobody has: one more fetch, then a 401-class error.
    let stranger = TestKey::new("stranger");
    let error = verifier
        .verify(&stranger.sign(&claims("eve")))
        .await
        .unwrap_err();
    assert!(matches!(error, JwtError::UnknownKey(_)));
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn a_verified_token_is_remembered_until_it_expires_and_a_refused_one_never() {
    let key = TestKey::new("k1");
    let verifier = verifier(settings(JwksSource::Static(
        parse_jwks(&jwks(&[&key])).unwrap(),
    )));
    let digest = |token: &str| -> [u8; 32] { Sha256::digest(token.as_bytes()).into() };
    let mut alice = claims("alice");
    let exp = u64::try_from(now() + 600).unwrap();
    alice["exp"] = json!(exp);
    let token = key.sign(&alice);
    assert_eq!(verifier.verify(&token).await.unwrap().as_str(), "alice");
    let keys = verifier.current();
    let remembered = |at: u64| keys.remembered(&digest(&token), at).map(|u| u.to_string());
    assert_eq!(
        remembered(exp + 30).as_deref(),
        Some("alice"),
        "up to exp + leeway"
    );
    assert_eq!(remembered(exp + 31), None, "expired");
    assert_eq!(verifier.verify(&token).await.unwrap().as_str(), "alice");

    let mut wrong_audience = claims("alice");
    wrong_audience["aud"] = json!("http://127.0.0.1:9999/mcp");
    let refused = key.sign(&wrong_audience);
    assert!(verifier.verify(&refused).await.is_err());
    assert!(verifier.verify(&refused).await.is_err(), "refused again");
    assert_eq!(keys.remembered(&digest(&refused), 0), None);
}

#[tokio::test]
async fn stale_keys_trust_no_remembered_token_and_new_keys_forget_them() {
    let (old, new, server, verifier) = rotating(|s| s.cache_ttl = Duration::ZERO).await;
    let token = old.sign(&claims("alice"));
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(server.hits(), 2, "each check fetched the stale keys again");
    // The authorization server retires the key: its token, verified twice, is refused now.
    server.serve(Some(jwks(&[&new])));
    assert_eq!(
        verifier.verify(&token).await,
        Err(JwtError::UnknownKey(Some("old".to_owned())))
    );
}

#[test]
fn remembered_tokens_are_bounded() {
    let keys = KeySet::default();
    let user = UserId::new("alice").unwrap();
    for n in 0..=MAX_REMEMBERED_TOKENS {
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&(n as u64).to_be_bytes());
        // Every entry holds until 10; at 5 none has expired, so a full table starts over.
        keys.remember(digest, user.clone(), 10, 5);
    }
    let held = keys.verified.lock().unwrap().len();
    assert!((1..=MAX_REMEMBERED_TOKENS).contains(&held), "{held}");
    let mut last = [0u8; 32];
    last[..8].copy_from_slice(&(MAX_REMEMBERED_TOKENS as u64).to_be_bytes());
    assert!(keys.remembered(&last, 5).is_some(), "the newest is kept");
}

#[tokio::test]
async fn a_down_key_endpoint_is_unavailable_not_the_callers_fault() {
    let key = TestKey::new("k1");
    let server = JwksServer::start(None).await;
    let auth = Authenticator::Jwt(Arc::new(verifier(settings(JwksSource::Url(
        server.url.clone(),
    )))));
    let mut headers = http::HeaderMap::new();
    let bearer = format!("Bearer {}", key.sign(&claims("alice")));
    headers.insert(http::header::AUTHORIZATION, bearer.parse().unwrap());
    let error = auth.identify(&headers).await.unwrap_err();
    assert!(error.is_gateway_fault(), "{error}");
    assert!(matches!(error, AuthError::Unavailable(_)));
    // A JWKS with nothing usable is as good as none.
    server.serve(Some(json!({ "keys": [] }).to_string()));
    let Authenticator::Jwt(verifier) = &auth else {
        unreachable!()
    };
    assert!(verifier.refresh().await.unwrap_err().is_unavailable());
}

#[test]
fn metadata_document_and_challenge_name_the_resource() {
    let key = TestKey::new("k1");
    let verifier = Arc::new(verifier(settings(JwksSource::Static(
        parse_jwks(&jwks(&[&key])).unwrap(),
    ))));
    let url = verifier.metadata_url();
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp"
    );
    let document = verifier.metadata();
    assert_eq!(document["resource"], RESOURCE);
    // The issuer identifier as configured, not as a parsed URL prints it (with a `/`).
    assert_eq!(document["authorization_servers"], json!([ISSUER]));
    assert_eq!(document["bearer_methods_supported"], json!(["header"]));

    let auth = Authenticator::Jwt(verifier);
    assert_eq!(
        auth.challenge(&AuthError::Missing),
        format!("Bearer resource_metadata=\"{url}\"").as_str()
    );
    assert_eq!(
        auth.challenge(&AuthError::InvalidToken("expired".to_owned())),
        format!("Bearer resource_metadata=\"{url}\", error=\"invalid_token\"").as_str()
    );
}
