//! Signed links: the callback URL given to Composio for a user carries that user, signed with
//! HMAC-SHA256 and an expiry, so the callback's hint reaches that user's tracker and a forged
//! one is refused; the link to a user's connections page in a blocked answer is signed the
//! same way (another purpose), so it opens that user's page, and only theirs, without a
//! login. A user's forms carry a per-user tag ([`LinkSigner::tag`]) as their CSRF token.
//!
//! The key is derived from `session_key` (a domain label hashed with each secret, distinct
//! from the session-id key), so every replica verifies every other replica's links; rotation
//! works as for session ids (the first key signs, all verify). Without a `session_key` a random
//! per-process key is used: links then hold only on the replica that made them.
//!
//! A link is three query parameters, `u` (the user), `exp` (Unix seconds) and `sig`
//! (base64url MAC over purpose, user and expiry). The purpose is part of the MAC so a
//! signature made for one kind of link never serves another kind added later.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The label hashed with each secret into the link key.
const KEY_LABEL: &[u8] = b"toolgate page link v1\0";

/// What a signature is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The user named in the OAuth callback URL.
    Callback,
    /// The user whose connections page a link (or the cookie it leaves) opens.
    Page,
    /// The CSRF token of a user's forms.
    Form,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Callback => b"callback",
            Self::Page => b"page",
            Self::Form => b"form",
        }
    }
}

/// Why a signed link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkError {
    /// `u`, `exp` or `sig` is missing or malformed.
    #[error("the link is incomplete")]
    Malformed,
    /// The signature does not match (forged, another purpose, or a retired key).
    #[error("the link's signature is not valid")]
    BadSignature,
    /// The link's time is up.
    #[error("the link has expired")]
    Expired,
}

/// Signs and verifies page links. `Debug` shows no key.
#[derive(Clone)]
pub(crate) struct LinkSigner {
    keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner")
            .field("keys", &self.keys.len())
            .finish()
    }
}

// === impl LinkSigner ===

impl LinkSigner {
    /// A signer over the `session_key` secrets (newest first); a random key when there are none.
    pub(crate) fn new(secrets: &[SecretString]) -> Self {
        let keys: Vec<[u8; 32]> = secrets
            .iter()
            .map(|secret| {
                Sha256::new()
                    .chain_update(KEY_LABEL)
                    .chain_update(secret.expose_secret().as_bytes())
                    .finalize()
                    .into()
            })
            .collect();
        if keys.is_empty() {
            return Self {
                keys: vec![rand::random()],
            };
        }
        Self { keys }
    }

    /// The query (`u=…&exp=…&sig=…`) of a link for `user`, valid until `expires` (Unix s).
    pub(crate) fn query(&self, purpose: Purpose, user: &str, expires: u64) -> String {
        let sig = self.keys.first().map_or_else(Vec::new, |key| {
            mac(key, purpose, user, expires)
                .finalize()
                .into_bytes()
                .to_vec()
        });
        form_urlencoded::Serializer::new(String::new())
            .append_pair("u", user)
            .append_pair("exp", &expires.to_string())
            .append_pair("sig", &URL_SAFE_NO_PAD.encode(sig))
            .finish()
    }

    /// The user a link's query names, if its signature holds for `purpose` and `now` (Unix s)
    /// is before its expiry. Other parameters in the query are ignored.
    pub(crate) fn verify(
        &self,
        purpose: Purpose,
        query: &str,
        now: u64,
    ) -> Result<String, LinkError> {
        let (mut user, mut expires, mut sig) = (None, None, None);
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "u" => user = Some(value.into_owned()),
                "exp" => expires = value.parse::<u64>().ok(),
                "sig" => sig = URL_SAFE_NO_PAD.decode(value.as_bytes()).ok(),
                _ => {}
            }
        }
        let (Some(user), Some(expires), Some(sig)) = (user, expires, sig) else {
            return Err(LinkError::Malformed);
        };
        let valid = self.keys.iter().any(|key| {
            let expected = mac(key, purpose, &user, expires).finalize().into_bytes();
            bool::from(expected.as_slice().ct_eq(&sig))
        });
        if !valid {
            return Err(LinkError::BadSignature);
        }
        if now >= expires {
            return Err(LinkError::Expired);
        }
        Ok(user)
    }
}

// === impl LinkSigner: tags ===

impl LinkSigner {
    /// A value only this gateway (or a replica with its key) can make for `user` and
    /// `purpose`, with no expiry: the CSRF token of that user's forms, the same on every
    /// replica.
    pub(crate) fn tag(&self, purpose: Purpose, user: &str) -> String {
        let sig = self.keys.first().map_or_else(Vec::new, |key| {
            mac(key, purpose, user, 0).finalize().into_bytes().to_vec()
        });
        URL_SAFE_NO_PAD.encode(sig)
    }
}

/// The MAC over one link's fields, each length-prefixed so no two field splits collide.
fn mac(key: &[u8; 32], purpose: Purpose, user: &str, expires: u64) -> HmacSha256 {
    // HMAC takes keys of any length, so building it from 32 bytes cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
    for field in [purpose.label(), user.as_bytes()] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac.update(&expires.to_be_bytes());
    mac
}

/// Now, in Unix seconds (links cross replicas, so they use wall time).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "0123456789abcdef0123456789abcdef";
    const KEY_B: &str = "fedcba9876543210fedcba9876543210";

    fn signer(keys: &[&str]) -> LinkSigner {
        LinkSigner::new(
            &keys
                .iter()
                .map(|k| SecretString::from(*k))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn a_link_opens_for_its_user_until_it_expires() {
        let signer = signer(&[KEY_A]);
        let query = signer.query(Purpose::Callback, "alice@example.com", 1_000);
        assert!(query.starts_with("u=alice%40example.com&exp=1000&sig="));
        assert_eq!(
            signer.verify(Purpose::Callback, &query, 999).unwrap(),
            "alice@example.com"
        );
        assert_eq!(
            signer.verify(Purpose::Callback, &query, 1_000),
            Err(LinkError::Expired)
        );
        // Extra parameters (Composio adds its own to the callback) do not matter.
        let callback = signer.query(Purpose::Callback, "bob", 1_000);
        let with_extra = format!("status=success&connected_account_id=ca_1&{callback}");
        assert_eq!(
            signer.verify(Purpose::Callback, &with_extra, 5).unwrap(),
            "bob"
        );
    }

    #[test]
    fn another_user_or_a_later_expiry_breaks_the_signature() {
        let signer = signer(&[KEY_A]);
        let query = signer.query(Purpose::Callback, "alice", 1_000);
        let sig = query.split("sig=").nth(1).unwrap();
        for forged in [
            format!("u=bob&exp=1000&sig={sig}"),
            format!("u=alice&exp=9999&sig={sig}"),
            format!("u=alice&exp=1000&sig=A{sig}"),
        ] {
            assert_eq!(
                signer.verify(Purpose::Callback, &forged, 5),
                Err(LinkError::BadSignature)
            );
        }
        for incomplete in [
            "",
            "u=alice&exp=1000",
            "u=alice&sig=abc",
            "exp=x&u=a&sig=abc",
        ] {
            assert_eq!(
                signer.verify(Purpose::Callback, incomplete, 5),
                Err(LinkError::Malformed)
            );
        }
    }

    #[test]
    fn purposes_do_not_mix_and_tags_are_per_user() {
        let signer = signer(&[KEY_A]);
        let callback = signer.query(Purpose::Callback, "alice", 1_000);
        assert_eq!(
            signer.verify(Purpose::Page, &callback, 5),
            Err(LinkError::BadSignature)
        );
        let page = signer.query(Purpose::Page, "alice", 1_000);
        assert_eq!(signer.verify(Purpose::Page, &page, 5).unwrap(), "alice");
        let tag = signer.tag(Purpose::Form, "alice");
        assert_eq!(
            tag,
            signer.tag(Purpose::Form, "alice"),
            "the same on every replica"
        );
        assert_ne!(tag, signer.tag(Purpose::Form, "bob"));
        assert_ne!(tag, signer.tag(Purpose::Page, "alice"));
    }

    #[test]
    fn replicas_share_links_through_the_session_key_and_rotation_keeps_old_links() {
        let old = signer(&[KEY_A]);
        let rotating = signer(&[KEY_B, KEY_A]);
        let query = old.query(Purpose::Callback, "alice", 1_000);
        assert_eq!(
            signer(&[KEY_A])
                .verify(Purpose::Callback, &query, 5)
                .unwrap(),
            "alice"
        );
        assert_eq!(
            rotating.verify(Purpose::Callback, &query, 5).unwrap(),
            "alice"
        );
        assert_eq!(
            signer(&[KEY_B]).verify(Purpose::Callback, &query, 5),
            Err(LinkError::BadSignature)
        );
        // Without a session key each process has its own random key.
        let lone = LinkSigner::new(&[]);
        let lone_query = lone.query(Purpose::Callback, "alice", 1_000);
        assert!(lone.verify(Purpose::Callback, &lone_query, 5).is_ok());
        assert!(
            LinkSigner::new(&[])
                .verify(Purpose::Callback, &lone_query, 5)
                .is_err()
        );
        assert!(!format!("{old:?}").contains(KEY_A));
    }
}
