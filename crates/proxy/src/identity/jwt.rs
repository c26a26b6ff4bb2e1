//! `auth.mode = "jwt"`: toolgate as an OAuth 2.1 resource server, as the MCP authorization
//! spec asks. A bearer JWT is accepted when its signature verifies against the authorization
//! server's JWKS, `iss` is the configured issuer, `aud` names this server's resource URL, and
//! `exp`/`nbf` hold within a small leeway. The user is one claim (`sub` by default).
//!
//! Keys come from a JWKS URL (cached; fetched again after [`JwtSettings::cache_ttl`], and at
//! once when a token names a `kid` the cache does not have, at most once per
//! [`JwtSettings::min_refresh_interval`] so forged `kid`s cannot make toolgate hammer the key
//! endpoint) or from the text of a JWKS file the binary read.
//!
//! Only asymmetric algorithms are accepted: a JWKS publishes public keys, and accepting `HS*`
//! would let anyone who read the JWKS mint tokens (algorithm confusion).
//!
//! A token that verified is remembered (by its SHA-256 digest, with its `exp`) by the key set
//! that verified it: a JWT cannot change, so until it expires it would verify again, and a
//! lookup costs well under a microsecond where an ES256 signature check costs tens
//! (BENCHMARKS.md, "Multi-user front"). A key set fetched anew replaces the remembered tokens
//! with it, so retiring a key at the authorization server retires its tokens at the next fetch;
//! a stale key set is never trusted from memory.
//!
//! [`JwtVerifier::metadata`] is the RFC 9728 protected-resource document, served at
//! [`JwtVerifier::metadata_url`], which a 401's `WWW-Authenticate` names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use url::Url;

use super::UserId;

/// The well-known path of the RFC 9728 document.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// How many verified tokens one key set remembers; past that, the expired ones are dropped,
/// and if none is, all are (a flood of distinct tokens only costs their signature checks).
const MAX_REMEMBERED_TOKENS: usize = 10_000;

/// The largest JWKS document read from the key endpoint.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// How long one JWKS fetch may take.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the signing keys come from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// Fetched from this URL (`auth.jwt.jwks_url`).
    Url(Url),
    /// A fixed set, the text of `auth.jwt.jwks_file` parsed by [`parse_jwks`].
    Static(JwkSet),
}

/// Settings of the resource server.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    /// This server's resource URL (the MCP endpoint as clients reach it): the required `aud`
    /// and the document's `resource`.
    pub resource: Url,
    /// The required `iss`.
    pub issuer: String,
    /// The claim naming the user (`auth.jwt.user_claim`, default `sub`).
    pub user_claim: String,
    /// Allowed clock skew for `exp` and `nbf`.
    pub leeway: Duration,
    /// Authorization servers named in the metadata document (`auth.jwt.authorization_servers`):
    /// issuer identifiers, kept verbatim. A client checks that the server's metadata has exactly
    /// this `issuer` (RFC 8414 §3.3), so `https://as.example` must not become
    /// `https://as.example/` as a parsed URL would print it.
    pub authorization_servers: Vec<String>,
    /// The signing keys.
    pub jwks: JwksSource,
    /// How long a fetched JWKS is used before it is fetched again.
    pub cache_ttl: Duration,
    /// The least time between two fetches caused by unknown `kid`s.
    pub min_refresh_interval: Duration,
}

impl JwtSettings {
    /// Settings with the defaults: `sub`, 30 s leeway, keys cached 10 min, refreshed for an
    /// unknown `kid` at most every 30 s.
    pub fn new(resource: Url, issuer: impl Into<String>, jwks: JwksSource) -> Self {
        Self {
            resource,
            issuer: issuer.into(),
            user_claim: "sub".to_owned(),
            leeway: Duration::from_secs(30),
            authorization_servers: Vec::new(),
            jwks,
            cache_ttl: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(30),
        }
    }
}

/// Why a JWT was refused, or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a JWT, or a header or claim that does not parse.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// An algorithm toolgate does not accept (symmetric, `none`, or not the key's).
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    /// No key in the JWKS matches the token.
    #[error("no signing key matches the token (kid {0:?})")]
    UnknownKey(Option<String>),
    /// Signature, issuer, audience or time checks failed.
    #[error("token rejected: {0}")]
    Rejected(&'static str),
    /// The user claim is missing or not a usable user id.
    #[error("claim {claim:?} does not name a user: {reason}")]
    NoUser {
        /// The configured claim.
        claim: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The JWKS could not be fetched or parsed; toolgate cannot check tokens.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl JwtError {
    /// True when the caller is not at fault: the keys could not be had.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable(_))
    }
}

/// Parsed keys, by `kid`; keys without a `kid` are usable only when they are the only key.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<KeyEntry>>,
    all: Vec<Arc<KeyEntry>>,
    fetched_at: Option<Instant>,
    /// Tokens these keys verified: the user, by the token's SHA-256 digest, with the Unix
    /// second up to which the token holds (`exp` plus the leeway).
    verified: Mutex<HashMap<[u8; 32], (UserId, u64)>>,
}

impl KeySet {
    /// Whether these keys may still be used without a fetch (a static set always may).
    fn fresh(&self, source: &JwksSource, ttl: Duration) -> bool {
        match source {
            JwksSource::Static(_) => true,
            JwksSource::Url(_) => self.fetched_at.is_some_and(|at| at.elapsed() < ttl),
        }
    }

    /// The user of a token these keys verified that still holds at `now` (Unix seconds).
    fn remembered(&self, digest: &[u8; 32], now: u64) -> Option<UserId> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified
            .get(digest)
            .filter(|(_, until)| now <= *until)
            .map(|(user, _)| user.clone())
    }

    fn remember(&self, digest: [u8; 32], user: UserId, until: u64, now: u64) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= MAX_REMEMBERED_TOKENS {
            verified.retain(|_, (_, held_until)| now <= *held_until);
            if verified.len() >= MAX_REMEMBERED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(digest, (user, until));
    }
}

struct KeyEntry {
    key: DecodingKey,
    /// The JWK's own `alg`, when it names one: the token must use exactly that.
    alg: Option<Algorithm>,
}

/// Validates bearer JWTs. Shared by every request (`Arc`).
pub struct JwtVerifier {
    settings: JwtSettings,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// Serializes fetches and remembers when the last one started.
    fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("resource", &self.settings.resource.as_str())
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

/// The client a [`JwtVerifier`] fetches its JWKS with: redirects are not followed (the keys'
/// URL is configured, a hop elsewhere is not the issuer's) and no system proxy is consulted.
pub fn jwks_client(connect_timeout: Duration) -> Result<reqwest::Client, JwtError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|error| {
            JwtError::KeysUnavailable(format!("cannot build the JWKS client: {error}"))
        })
}

/// Parses a JWKS document (RFC 7517 `{"keys": [...]}`).
pub fn parse_jwks(text: &str) -> Result<JwkSet, JwtError> {
    serde_json::from_str(text).map_err(|error| JwtError::KeysUnavailable(format!("JWKS: {error}")))
}

// === impl JwtVerifier ===

impl JwtVerifier {
    /// A verifier; a static JWKS is parsed now (an unusable one is an error), a URL is fetched
    /// on first use. `client` fetches the JWKS.
    pub fn new(settings: JwtSettings, client: reqwest::Client) -> Result<Self, JwtError> {
        let keys = match &settings.jwks {
            JwksSource::Static(set) => key_set(set, None)?,
            JwksSource::Url(_) => KeySet::default(),
        };
        Ok(Self {
            settings,
            client,
            keys: RwLock::new(Arc::new(keys)),
            fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The settings this verifier enforces.
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// The user a token belongs to.
    pub async fn verify(&self, token: &str) -> Result<UserId, JwtError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let keys = self.current();
        if keys.fresh(&self.settings.jwks, self.settings.cache_ttl)
            && let Some(user) = keys.remembered(&digest, jsonwebtoken::get_current_timestamp())
        {
            return Ok(user);
        }
        let (user, exp) = self.verify_signature(token).await?;
        let until = exp.saturating_add(self.settings.leeway.as_secs());
        self.current().remember(
            digest,
            user.clone(),
            until,
            jsonwebtoken::get_current_timestamp(),
        );
        Ok(user)
    }

    /// Checks a token's signature and claims: its user and `exp` (Unix seconds).
    async fn verify_signature(&self, token: &str) -> Result<(UserId, u64), JwtError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| JwtError::Malformed(error.to_string()))?;
        if header.alg.family() == AlgorithmFamily::Hmac {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        let entry = self.key_for(header.kid.as_deref()).await?;
        if entry.alg.is_some_and(|alg| alg != header.alg)
            || entry.key.family() != header.alg.family()
        {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        let claims = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &entry.key,
            &self.validation(header.alg),
        )
        .map_err(|error| classify(error.kind()))?
        .claims;
        // `exp` is a required claim the library has checked; a fractional one counts down.
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map_or(0, |exp| exp as u64);
        Ok((self.user(&claims)?, exp))
    }

    /// True once keys are loaded (a static set, or a successful fetch): readiness.
    pub fn has_keys(&self) -> bool {
        !self.current().all.is_empty()
    }

    /// Fetches the JWKS now (at startup, so readiness reflects the key endpoint).
    pub async fn refresh(&self) -> Result<(), JwtError> {
        let mut last = self.fetch.lock().await;
        self.fetch_now(&mut last).await
    }

    /// The RFC 9728 protected-resource metadata document.
    pub fn metadata(&self) -> Value {
        json!({
            "resource": self.settings.resource.as_str(),
            "authorization_servers": self.settings.authorization_servers,
            "bearer_methods_supported": ["header"],
            "resource_name": "toolgate",
        })
    }

    /// Where the metadata document is served for this resource: the well-known path inserted
    /// before the resource's own path (RFC 9728 §3.1), e.g. `https://gw/.well-known/oauth-protected-resource/mcp`.
    pub fn metadata_url(&self) -> Url {
        let mut url = self.settings.resource.clone();
        let path = self.settings.resource.path().trim_end_matches('/');
        url.set_path(&format!("{METADATA_PATH}{path}"));
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[self.settings.resource.as_str()]);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation
    }

    fn user(&self, claims: &Map<String, Value>) -> Result<UserId, JwtError> {
        let claim = &self.settings.user_claim;
        let no_user = |reason: &str| JwtError::NoUser {
            claim: claim.clone(),
            reason: reason.to_owned(),
        };
        let value = claims
            .get(claim)
            .and_then(Value::as_str)
            .ok_or_else(|| no_user("missing or not a string"))?;
        UserId::new(value).map_err(|error| no_user(&error.to_string()))
    }

    fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The key for `kid`, fetching the JWKS when it is stale or does not have that key.
    async fn key_for(&self, kid: Option<&str>) -> Result<Arc<KeyEntry>, JwtError> {
        let JwksSource::Url(_) = &self.settings.jwks else {
            return find(&self.current(), kid);
        };
        let keys = self.current();
        if keys.fresh(&self.settings.jwks, self.settings.cache_ttl)
            && let Ok(entry) = find(&keys, kid)
        {
            return Ok(entry);
        }
        let mut last = self.fetch.lock().await;
        // Another request may have fetched while this one waited for the lock.
        let keys = self.current();
        let fresh = keys.fresh(&self.settings.jwks, self.settings.cache_ttl);
        if fresh && let Ok(entry) = find(&keys, kid) {
            return Ok(entry);
        }
        let allowed = last.is_none_or(|at| at.elapsed() >= self.settings.min_refresh_interval);
        if (allowed || !fresh)
            && let Err(error) = self.fetch_now(&mut last).await
        {
            // Keep serving from the old keys when the endpoint is down; only a token none
            // of them can check is answered "unavailable".
            tracing::warn!(%error, "JWKS refresh failed");
            return find(&self.current(), kid).map_err(|_| error);
        }
        find(&self.current(), kid)
    }

    async fn fetch_now(&self, last: &mut Option<Instant>) -> Result<(), JwtError> {
        let JwksSource::Url(url) = &self.settings.jwks else {
            return Ok(());
        };
        *last = Some(Instant::now());
        let set = fetch_jwks(&self.client, url).await?;
        let keys = key_set(&set, Some(Instant::now()))?;
        match self.keys.write() {
            Ok(mut guard) => *guard = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
        Ok(())
    }
}

/// GETs and parses the JWKS, bounded in size and time.
async fn fetch_jwks(client: &reqwest::Client, url: &Url) -> Result<JwkSet, JwtError> {
    let unavailable = |what: String| JwtError::KeysUnavailable(what);
    let mut response = client
        .get(url.clone())
        .timeout(JWKS_FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|error| unavailable(format!("GET {url}: {error}")))?;
    if !response.status().is_success() {
        return Err(unavailable(format!(
            "GET {url}: status {}",
            response.status()
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| unavailable(format!("GET {url}: {error}")))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(unavailable(format!("GET {url}: larger than 1 MiB")));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|error| unavailable(format!("JWKS from {url}: {error}")))
}

/// The usable keys of a JWKS: asymmetric signing keys only. A set with none is an error.
fn key_set(set: &JwkSet, fetched_at: Option<Instant>) -> Result<KeySet, JwtError> {
    let mut keys = KeySet {
        fetched_at,
        ..KeySet::default()
    };
    for jwk in &set.keys {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if key.family() == AlgorithmFamily::Hmac {
            continue;
        }
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|alg| Algorithm::try_from(alg).ok());
        let entry = Arc::new(KeyEntry { key, alg });
        if let Some(kid) = &jwk.common.key_id {
            keys.by_kid.insert(kid.clone(), Arc::clone(&entry));
        }
        keys.all.push(entry);
    }
    if keys.all.is_empty() {
        return Err(JwtError::KeysUnavailable(
            "the JWKS has no usable signing key".to_owned(),
        ));
    }
    Ok(keys)
}

fn find(keys: &KeySet, kid: Option<&str>) -> Result<Arc<KeyEntry>, JwtError> {
    let found = match kid {
        Some(kid) => keys.by_kid.get(kid).cloned(),
        None if keys.all.len() == 1 => keys.all.first().cloned(),
        None => None,
    };
    found.ok_or_else(|| JwtError::UnknownKey(kid.map(str::to_owned)))
}

/// Maps the library's validation failures to our own, stable wording.
fn classify(kind: &ErrorKind) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature => JwtError::Rejected("bad signature"),
        ErrorKind::ExpiredSignature => JwtError::Rejected("expired"),
        ErrorKind::ImmatureSignature => JwtError::Rejected("not valid yet (nbf)"),
        ErrorKind::InvalidIssuer => JwtError::Rejected("wrong issuer"),
        ErrorKind::InvalidAudience => JwtError::Rejected("wrong audience"),
        ErrorKind::MissingRequiredClaim(_) => JwtError::Rejected("a required claim is missing"),
        ErrorKind::InvalidAlgorithm => JwtError::Algorithm("not the key's algorithm".to_owned()),
        other => JwtError::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
