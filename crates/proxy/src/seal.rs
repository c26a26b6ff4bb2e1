//! Sealed session ids: with a `session_key`, toolgate hands clients its own `Mcp-Session-Id`,
//! an AEAD seal of (user, route key, upstream session id, whether the client declared URL
//! elicitation), so any replica holding the key can serve any request of any session, blocked
//! calls answered alike, without a shared store.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per seal (random nonces are safe at that
//! size, so replicas need no counter). The AEAD key is SHA-256 of a domain label and the
//! configured secret, so the secret itself is never used as a key for two purposes (the
//! signed page links derive their own key from the same secret). Several secrets may be
//! given to rotate: the first seals, every one opens.
//!
//! A value that does not open — tampered, sealed under a retired key, or sealed for another
//! user — is one and the same [`UnknownSession`]: the HTTP face answers it like any session it
//! does not know (404), and the caller learns nothing about why.
//!
//! Opening costs about 11 k instructions (most of what sealing adds to a request), so the
//! keys remember the ids they sealed or opened ([`OPENED_CAPACITY`], oldest forgotten first):
//! a session's later requests are a map lookup. Only values that opened are remembered, so
//! hostile values cannot fill that memory, and a remembered id is still checked against the
//! user presenting it.
//!
//! Format: base64url without padding (visible ASCII, as `Mcp-Session-Id` requires) of
//! `version (1) | nonce (24) | ciphertext + tag`. The version byte is also the associated
//! data, so a future format cannot be confused with this one.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::aead::Payload;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::identity::UserId;
use crate::recent::Recent;

/// The shortest secret accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Sealed ids each set of keys remembers having sealed or opened (a few hundred bytes each).
pub const OPENED_CAPACITY: usize = 4096;

/// The format version (first byte, and the associated data).
const VERSION: u8 = 1;

/// The domain label hashed with the secret into the AEAD key.
const KEY_LABEL: &[u8] = b"toolgate session id v1\0";

/// Bit of the flags byte: the client declared URL elicitation.
const FLAG_URL_ELICITATION: u8 = 1;

/// Longest value [`SessionKeys::open`] looks at: bounds the work a hostile header can cause.
const MAX_SEALED_LEN: usize = 4096;

/// What a sealed id holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionParts {
    /// The user the session belongs to.
    pub user: UserId,
    /// Which upstream route the session lives on (for Composio, the tool-router session id):
    /// when the user's route has changed since, the session is gone upstream.
    pub route_key: String,
    /// The upstream's own `Mcp-Session-Id`, when it issued one.
    pub upstream_session: Option<String>,
    /// The session's client declared URL-mode elicitation at `initialize`, so a blocked call
    /// is answered with a URL elicitation on whichever replica it lands.
    pub url_elicitation: bool,
}

/// A session id that does not open for this caller (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown session")]
pub struct UnknownSession;

/// Why the configured `session_key` list is unusable. Never shows a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    /// The list is empty.
    #[error("session_key: no key given")]
    Empty,
    /// Key number `index` (1-based) is shorter than [`MIN_KEY_BYTES`].
    #[error("session_key: key {index} is shorter than {MIN_KEY_BYTES} bytes")]
    TooShort {
        /// 1-based position in the list.
        index: usize,
    },
}

/// The AEAD keys derived from `session_key`: the first seals, all open.
#[derive(Clone)]
pub struct SessionKeys {
    ciphers: Vec<XChaCha20Poly1305>,
    /// Ids sealed or opened by these keys, and what they hold (shared by clones).
    opened: Arc<Recent<SessionParts>>,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.ciphers.len())
            .finish_non_exhaustive()
    }
}

// === impl SessionKeys ===

impl SessionKeys {
    /// Keys from the configured secrets, newest (sealing) first.
    pub fn new(secrets: &[SecretString]) -> Result<Self, SessionKeyError> {
        if secrets.is_empty() {
            return Err(SessionKeyError::Empty);
        }
        let mut ciphers = Vec::with_capacity(secrets.len());
        for (index, secret) in secrets.iter().enumerate() {
            let bytes = secret.expose_secret().as_bytes();
            if bytes.len() < MIN_KEY_BYTES {
                return Err(SessionKeyError::TooShort { index: index + 1 });
            }
            let key: [u8; 32] = Sha256::new()
                .chain_update(KEY_LABEL)
                .chain_update(bytes)
                .finalize()
                .into();
            ciphers.push(XChaCha20Poly1305::new(&key.into()));
        }
        Ok(Self {
            ciphers,
            opened: Arc::new(Recent::new(OPENED_CAPACITY)),
        })
    }

    /// Seals `parts` under the newest key.
    pub fn seal(&self, parts: &SessionParts) -> String {
        let nonce_bytes: [u8; 24] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let plaintext = encode(parts);
        let mut out = Vec::with_capacity(1 + 24 + plaintext.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        // `Self::new` refuses an empty list, so there is always a first key; encrypting a
        // message this small cannot exceed the cipher's length limit.
        if let Some(cipher) = self.ciphers.first()
            && let Ok(sealed) = cipher.encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: &[VERSION],
                },
            )
        {
            out.extend_from_slice(&sealed);
        }
        let sealed = URL_SAFE_NO_PAD.encode(out);
        self.opened.insert(&sealed, parts.clone());
        sealed
    }

    /// Opens a sealed id, whoever it belongs to.
    pub fn open(&self, value: &str) -> Result<SessionParts, UnknownSession> {
        if value.len() > MAX_SEALED_LEN {
            return Err(UnknownSession);
        }
        if let Some(parts) = self.opened.get(value) {
            return Ok(parts);
        }
        let parts = self.decrypt(value)?;
        self.opened.insert(value, parts.clone());
        Ok(parts)
    }

    /// Opens a sealed id with the AEAD, under each key in turn.
    fn decrypt(&self, value: &str) -> Result<SessionParts, UnknownSession> {
        let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| UnknownSession)?;
        let (&version, rest) = bytes.split_first().ok_or(UnknownSession)?;
        if version != VERSION || rest.len() < 24 {
            return Err(UnknownSession);
        }
        let (nonce_bytes, sealed) = rest.split_at(24);
        let nonce = XNonce::try_from(nonce_bytes).map_err(|_| UnknownSession)?;
        let plaintext = self
            .ciphers
            .iter()
            .find_map(|cipher| {
                cipher
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: sealed,
                            aad: &[VERSION],
                        },
                    )
                    .ok()
            })
            .ok_or(UnknownSession)?;
        decode(&plaintext).ok_or(UnknownSession)
    }

    /// Opens a sealed id presented by `user`: another user's id is unknown to them.
    pub fn open_for(&self, value: &str, user: &UserId) -> Result<SessionParts, UnknownSession> {
        let parts = self.open(value)?;
        if &parts.user == user {
            Ok(parts)
        } else {
            Err(UnknownSession)
        }
    }
}

/// `len (u16 BE) | bytes` per field; the upstream id is preceded by a presence byte; a last
/// flags byte (bit 0: URL elicitation) is written only when a flag is set, so ids sealed
/// before it existed still open.
fn encode(parts: &SessionParts) -> Vec<u8> {
    let mut out = Vec::new();
    put(&mut out, parts.user.as_str());
    put(&mut out, &parts.route_key);
    match &parts.upstream_session {
        Some(id) => {
            out.push(1);
            put(&mut out, id);
        }
        None => out.push(0),
    }
    if parts.url_elicitation {
        out.push(FLAG_URL_ELICITATION);
    }
    out
}

fn put(out: &mut Vec<u8>, field: &str) {
    // Fields longer than u16::MAX are cut: only ids (at most a few hundred bytes) get here, and
    // a cut id would simply not match upstream, never open another session.
    let bytes = &field.as_bytes()[..field.len().min(usize::from(u16::MAX))];
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn decode(mut bytes: &[u8]) -> Option<SessionParts> {
    let user = UserId::new(take(&mut bytes)?).ok()?;
    let route_key = take(&mut bytes)?.to_owned();
    let (&flag, rest) = bytes.split_first()?;
    bytes = rest;
    let upstream_session = match flag {
        0 => None,
        1 => Some(take(&mut bytes)?.to_owned()),
        _ => return None,
    };
    let url_elicitation = match bytes {
        [] => false,
        [FLAG_URL_ELICITATION] => true,
        _ => return None,
    };
    Some(SessionParts {
        user,
        route_key,
        upstream_session,
        url_elicitation,
    })
}

fn take<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return None;
    }
    let (field, rest) = rest.split_at(len);
    *bytes = rest;
    std::str::from_utf8(field).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secrets: &[&str]) -> SessionKeys {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| SecretString::from(*s)).collect();
        SessionKeys::new(&secrets).unwrap()
    }

    fn parts(user: &str, upstream: Option<&str>) -> SessionParts {
        SessionParts {
            user: UserId::new(user).unwrap(),
            route_key: "trs_abc".to_owned(),
            upstream_session: upstream.map(str::to_owned),
            url_elicitation: false,
        }
    }

    const KEY_A: &str = "0123456789abcdef0123456789abcdef";
    const KEY_B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn sealed_id_opens_for_its_user_on_any_holder_of_the_key() {
        let sealing = keys(&[KEY_A]);
        let other_replica = keys(&[KEY_A]);
        for upstream in [Some("mcp-session-1"), None] {
            let alice = parts("alice", upstream);
            let id = sealing.seal(&alice);
            assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id}");
            assert_eq!(other_replica.open_for(&id, &alice.user).unwrap(), alice);
        }
    }

    #[test]
    fn the_url_elicitation_flag_travels_and_ids_without_it_still_open() {
        let keys = keys(&[KEY_A]);
        let declared = SessionParts {
            url_elicitation: true,
            ..parts("alice", Some("s1"))
        };
        assert_eq!(keys.open(&keys.seal(&declared)).unwrap(), declared);
        // The format without the flags byte (what earlier versions sealed) reads as "not declared".
        let plain = parts("alice", None);
        assert_eq!(encode(&plain).last(), Some(&0));
        assert_eq!(keys.open(&keys.seal(&plain)).unwrap(), plain);
        // An unknown flag, or trailing bytes, never opens.
        for tail in [&[2u8][..], &[1, 0]] {
            let mut bytes = encode(&plain);
            bytes.extend_from_slice(tail);
            assert_eq!(decode(&bytes), None, "{tail:?}");
        }
    }

    #[test]
    fn another_users_id_is_unknown_to_them() {
        let keys = keys(&[KEY_A]);
        let id = keys.seal(&parts("alice", Some("s1")));
        let bob = UserId::new("bob").unwrap();
        assert_eq!(keys.open_for(&id, &bob), Err(UnknownSession));
    }

    #[test]
    fn every_tampered_byte_and_foreign_value_is_unknown() {
        let keys = keys(&[KEY_A]);
        let id = keys.seal(&parts("alice", Some("s1")));
        let raw = URL_SAFE_NO_PAD.decode(&id).unwrap();
        for index in 0..raw.len() {
            let mut bent = raw.clone();
            bent[index] ^= 0x01;
            assert_eq!(
                keys.open(&URL_SAFE_NO_PAD.encode(&bent)),
                Err(UnknownSession)
            );
        }
        let truncated = URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]);
        for value in ["", "x", "not base64 !", &truncated, &"A".repeat(5000)] {
            assert_eq!(keys.open(value), Err(UnknownSession), "{value}");
        }
        // An upstream's own session id (what a single-replica gateway would hand out).
        assert_eq!(
            keys.open("a3f9c2e1-0000-4000-8000-000000000000"),
            Err(UnknownSession)
        );
    }

    #[test]
    fn rotation_new_key_seals_old_key_still_opens_retired_key_does_not() {
        let old = keys(&[KEY_A]);
        let rotating = keys(&[KEY_B, KEY_A]);
        let retired = keys(&[KEY_B]);
        let alice = parts("alice", Some("s1"));
        let old_id = old.seal(&alice);
        assert_eq!(rotating.open(&old_id).unwrap(), alice);
        assert_eq!(retired.open(&old_id), Err(UnknownSession));
        let new_id = rotating.seal(&alice);
        assert_eq!(retired.open(&new_id).unwrap(), alice);
        assert_eq!(old.open(&new_id), Err(UnknownSession));
    }

    #[test]
    fn opened_ids_are_remembered_and_still_checked_against_the_user() {
        let sealing = keys(&[KEY_A]);
        let other_replica = keys(&[KEY_A]);
        let alice = parts("alice", Some("s1"));
        let id = sealing.seal(&alice);
        assert!(sealing.opened.contains(&id), "a sealed id is remembered");
        assert!(!other_replica.opened.contains(&id));
        assert_eq!(other_replica.open_for(&id, &alice.user).unwrap(), alice);
        assert!(
            other_replica.opened.contains(&id),
            "an opened id is remembered"
        );
        // Remembered, still another user's.
        let bob = UserId::new("bob").unwrap();
        assert_eq!(other_replica.open_for(&id, &bob), Err(UnknownSession));
        // A value that does not open is not remembered: hostile values cannot fill the memory.
        let mut bent = id.clone();
        bent.replace_range(..1, if id.starts_with('A') { "B" } else { "A" });
        assert_eq!(other_replica.open(&bent), Err(UnknownSession));
        assert!(!other_replica.opened.contains(&bent));
    }

    #[test]
    fn a_forgotten_id_still_opens() {
        let keys = keys(&[KEY_A]);
        let alice = parts("alice", Some("s1"));
        let first = keys.seal(&alice);
        for n in 0..OPENED_CAPACITY {
            keys.seal(&parts("bob", Some(&n.to_string())));
        }
        assert!(
            !keys.opened.contains(&first),
            "the oldest is forgotten first"
        );
        assert_eq!(keys.open_for(&first, &alice.user).unwrap(), alice);
    }

    #[test]
    fn two_seals_of_the_same_parts_differ() {
        let keys = keys(&[KEY_A]);
        let alice = parts("alice", Some("s1"));
        assert_ne!(keys.seal(&alice), keys.seal(&alice));
    }

    #[test]
    fn short_or_missing_keys_are_refused_without_showing_them() {
        assert_eq!(SessionKeys::new(&[]).unwrap_err(), SessionKeyError::Empty);
        let short = [SecretString::from(KEY_A), SecretString::from("short-key")];
        let error = SessionKeys::new(&short).unwrap_err();
        assert_eq!(error, SessionKeyError::TooShort { index: 2 });
        assert!(!error.to_string().contains("short-key"));
        assert!(!format!("{:?}", keys(&[KEY_A])).contains(KEY_A));
    }
}
