//! Who is calling: every request on the MCP endpoint and the pages resolves to a [`UserId`]
//! before anything else happens.
//!
//! The modes (`auth.mode`), one [`Authenticator`] variant each:
//! - `single`: every request is the configured user; the optional shared token guards the door.
//! - `tokens`: `Authorization: Bearer TOKEN` selects the user from a [`tokens::TokenTable`].
//! - `jwt`: an OAuth 2.1 resource server ([`jwt::JwtVerifier`]): the bearer token is a JWT whose
//!   claim names the user.
//! - `header`: an agent backend that authenticated its user already names them in a header,
//!   accepted only together with the backend's shared token.
//!
//! The library never reads files: the binary loads the tokens file or the JWKS file and hands
//! the text in, and swaps the table on reload through [`TokenStore`].
//!
//! # Layout
//! - [`tokens`]: the tokens-file format and its constant-time lookup.
//! - [`jwt`]: JWT validation, the JWKS cache, the RFC 9728 metadata document.

pub mod jwt;
pub mod tokens;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use self::jwt::{JwtError, JwtVerifier};
use self::tokens::TokenTable;

/// The longest user id accepted (Composio's `user_id` is free text; this bounds what a JWT
/// claim or a header can make toolgate store per user).
pub const MAX_USER_ID_LEN: usize = 256;

/// A validated user id: 1 to [`MAX_USER_ID_LEN`] bytes, no whitespace or control characters
/// (so it fits a tokens-file line and a log field). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

/// Why a string is not a usable user id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUserId {
    /// Empty.
    #[error("the user id is empty")]
    Empty,
    /// Longer than [`MAX_USER_ID_LEN`].
    #[error("the user id is longer than {MAX_USER_ID_LEN} bytes")]
    TooLong,
    /// Contains whitespace or a control character.
    #[error("the user id contains whitespace or a control character")]
    BadCharacter,
}

// === impl UserId ===

impl UserId {
    /// Validates `value` as a user id.
    pub fn new(value: &str) -> Result<Self, InvalidUserId> {
        if value.is_empty() {
            return Err(InvalidUserId::Empty);
        }
        if value.len() > MAX_USER_ID_LEN {
            return Err(InvalidUserId::TooLong);
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidUserId::BadCharacter);
        }
        Ok(Self(Arc::from(value)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `auth.mode`: how a request's user is determined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every request is the configured `user_id` (one user per gateway).
    #[default]
    Single,
    /// `Authorization: Bearer TOKEN` looked up in the tokens file.
    Tokens,
    /// `Authorization: Bearer JWT` validated as an OAuth 2.1 resource server.
    Jwt,
    /// The user named in a header, behind the shared token.
    Header,
}

impl AuthMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Tokens => "tokens",
            Self::Jwt => "jwt",
            Self::Header => "header",
        }
    }

    /// True for the modes where one gateway serves many users.
    pub fn is_multi_user(self) -> bool {
        !matches!(self, Self::Single)
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "single" => Ok(Self::Single),
            "tokens" => Ok(Self::Tokens),
            "jwt" => Ok(Self::Jwt),
            "header" => Ok(Self::Header),
            other => Err(format!(
                "unknown auth mode {other:?} (expected single, tokens, jwt or header)"
            )),
        }
    }
}

/// Why a request has no usable identity. Every variant is the client's fault except
/// [`AuthError::Unavailable`], where toolgate could not check (the JWKS endpoint is down).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials were presented.
    #[error("missing bearer token")]
    Missing,
    /// Credentials were presented and are not valid.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// Header mode: the shared token was right but the user header is absent or unusable.
    #[error("missing or invalid user header {name}: {reason}")]
    BadUserHeader {
        /// The configured header name.
        name: HeaderName,
        /// What is wrong with it.
        reason: String,
    },
    /// The credentials could not be checked right now.
    #[error("cannot verify the token: {0}")]
    Unavailable(#[source] JwtError),
}

impl AuthError {
    /// True when the fault is toolgate's (or its key source's), not the caller's: answered 503
    /// rather than 401.
    pub fn is_gateway_fault(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Resolves requests to users, one variant per [`AuthMode`].
pub enum Authenticator {
    /// Every request is `user`; `token`, when set, must be presented as a bearer token.
    Single {
        /// The one user.
        user: UserId,
        /// The inbound shared token.
        token: Option<SecretString>,
    },
    /// Per-user tokens, reloadable.
    Tokens(TokenStore),
    /// JWTs from an authorization server.
    Jwt(Arc<JwtVerifier>),
    /// The user from header `name`, only with the shared `token`.
    Header {
        /// The header naming the user.
        name: HeaderName,
        /// The agent backend's shared secret.
        token: SecretString,
    },
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Authenticator").field(&self.mode()).finish()
    }
}

// === impl Authenticator ===

impl Authenticator {
    /// The mode this authenticator implements.
    pub fn mode(&self) -> AuthMode {
        match self {
            Self::Single { .. } => AuthMode::Single,
            Self::Tokens(_) => AuthMode::Tokens,
            Self::Jwt(_) => AuthMode::Jwt,
            Self::Header { .. } => AuthMode::Header,
        }
    }

    /// The user a request belongs to. Only [`Authenticator::Jwt`] may wait (for a JWKS fetch).
    pub async fn identify(&self, headers: &HeaderMap) -> Result<UserId, AuthError> {
        match self {
            Self::Single { user, token } => {
                if let Some(token) = token {
                    check_shared_token(headers, token)?;
                }
                Ok(user.clone())
            }
            Self::Tokens(store) => {
                let presented = bearer(headers).ok_or(AuthError::Missing)?;
                store
                    .current()
                    .lookup(presented)
                    .ok_or_else(|| AuthError::InvalidToken("unknown token".to_owned()))
            }
            Self::Jwt(verifier) => {
                let presented = bearer(headers).ok_or(AuthError::Missing)?;
                verifier.verify(presented).await.map_err(|error| {
                    if error.is_unavailable() {
                        AuthError::Unavailable(error)
                    } else {
                        AuthError::InvalidToken(error.to_string())
                    }
                })
            }
            Self::Header { name, token } => {
                check_shared_token(headers, token)?;
                user_from_header(headers, name)
            }
        }
    }

    /// The `WWW-Authenticate` value of a 401 for `error`: in JWT mode it names the resource
    /// metadata document (so an OAuth client can discover the authorization server) and says
    /// `invalid_token` when a token was presented, as RFC 6750 and RFC 9728 ask.
    pub fn challenge(&self, error: &AuthError) -> HeaderValue {
        let mut value = String::from("Bearer");
        if let Self::Jwt(verifier) = self {
            value.push_str(&format!(
                " resource_metadata=\"{}\"",
                verifier.metadata_url()
            ));
            if matches!(error, AuthError::InvalidToken(_)) {
                value.push_str(", error=\"invalid_token\"");
            }
        } else {
            value.push_str(" realm=\"toolgate\"");
        }
        // Only ASCII from our own config and fixed text; a failure would mean a URL with
        // bytes `HeaderValue` refuses, so fall back to the bare scheme.
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer"))
    }
}

/// Holds the current [`TokenTable`] so the binary can swap in a re-read file while requests
/// keep being answered from the old one.
#[derive(Clone, Debug, Default)]
pub struct TokenStore {
    current: Arc<RwLock<Arc<TokenTable>>>,
}

impl TokenStore {
    /// A store serving `table`.
    pub fn new(table: TokenTable) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(table))),
        }
    }

    /// The table requests are checked against now.
    pub fn current(&self) -> Arc<TokenTable> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            // A writer never panics while holding the lock (it only assigns), so poisoning
            // cannot carry a half-written table; keep serving.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the table; requests already checked are unaffected.
    pub fn replace(&self, table: TokenTable) {
        let table = Arc::new(table);
        match self.current.write() {
            Ok(mut guard) => *guard = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive, RFC 9110).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Checks the shared token in constant time.
fn check_shared_token(headers: &HeaderMap, expected: &SecretString) -> Result<(), AuthError> {
    let presented = bearer(headers).ok_or(AuthError::Missing)?;
    let expected = expected.expose_secret().as_bytes();
    if bool::from(presented.as_bytes().ct_eq(expected)) {
        Ok(())
    } else {
        Err(AuthError::InvalidToken("wrong token".to_owned()))
    }
}

/// Header mode: the user named in header `name`.
fn user_from_header(headers: &HeaderMap, name: &HeaderName) -> Result<UserId, AuthError> {
    let bad = |reason: String| AuthError::BadUserHeader {
        name: name.clone(),
        reason,
    };
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(bad("expected exactly one".to_owned()));
    };
    let text = value
        .to_str()
        .map_err(|_| bad("not visible ASCII".to_owned()))?;
    UserId::new(text).map_err(|error| bad(error.to_string()))
}

#[cfg(test)]
mod tests;
