//! `auth.mode = "tokens"`: a table of per-user bearer tokens, parsed from the text of the tokens
//! file (the binary reads the file and hands its contents here, again on every reload).
//!
//! One `USER_ID TOKEN` pair per line; blank lines and lines starting with `#` are ignored. A
//! token is either the literal secret (at least [`MIN_TOKEN_LEN`] characters) or
//! `sha256:HEX`, the SHA-256 of the secret, so the file need not hold the secret itself.
//!
//! Only SHA-256 digests are kept in memory, in a hash map keyed by digest. A lookup hashes the
//! presented token once and looks its digest up: whatever the timing of the map reveals is
//! about digests, and a digest does not lead back to a token (SHA-256 is preimage-resistant),
//! so nothing about any token shows in the timing; the match found is then confirmed in
//! constant time. This keeps the identity check O(1): a scan of every entry in constant time,
//! as this table did first, cost 88 µs per request at 1,000 users (BENCHMARKS.md).

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::UserId;

/// The shortest literal token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The prefix of a token given as its SHA-256 digest.
const SHA256_PREFIX: &str = "sha256:";

/// A parsed tokens file: user ids and the SHA-256 digests of their tokens.
#[derive(Clone, Default)]
pub struct TokenTable {
    /// Each user by the SHA-256 digest of their token.
    by_digest: HashMap<[u8; 32], UserId>,
}

/// Why a tokens file was refused. Nothing of a token is ever part of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokens file line {line}: {reason}")]
pub struct TokensFileError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

// === impl TokenTable ===

impl TokenTable {
    /// Parses the contents of a tokens file. Any bad line refuses the whole file, so a typo
    /// never silently locks a user out or leaves an old token working.
    pub fn parse(text: &str) -> Result<Self, TokensFileError> {
        let mut by_digest = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: &str| TokensFileError {
                line: index + 1,
                reason: reason.to_owned(),
            };
            let mut fields = line.split_whitespace();
            let (Some(user), Some(token), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(fail("expected `USER_ID TOKEN`"));
            };
            let user = UserId::new(user).map_err(|error| fail(&error.to_string()))?;
            let digest = parse_token(token).map_err(fail)?;
            if by_digest.insert(digest, user).is_some() {
                return Err(fail("this token is already given to another line"));
            }
        }
        Ok(Self { by_digest })
    }

    /// The user whose token this is, or `None`. Its timing depends only on the token's
    /// digest (see the module docs), and not on how many users there are.
    pub fn lookup(&self, token: &str) -> Option<UserId> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let (digest, user) = self.by_digest.get_key_value(&presented)?;
        bool::from(digest.ct_eq(&presented)).then(|| user.clone())
    }

    /// How many tokens the table holds.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// True when the file named no token at all.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Users only: even digests are left out, they would let someone test guesses offline.
        let mut users: Vec<&str> = self.by_digest.values().map(UserId::as_str).collect();
        users.sort_unstable();
        f.debug_struct("TokenTable").field("users", &users).finish()
    }
}

/// The digest a token field stands for.
fn parse_token(token: &str) -> Result<[u8; 32], &'static str> {
    if let Some(hex) = token.strip_prefix(SHA256_PREFIX) {
        return decode_hex32(hex).ok_or("`sha256:` must be followed by 64 hex digits");
    }
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err("token shorter than 16 characters (or give it as sha256:HEX)");
    }
    Ok(Sha256::digest(token.as_bytes()).into())
}

/// 64 hex digits (either case) as 32 bytes.
fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice-token-0123456789";
    const BOB: &str = "bob-token-abcdefghijkl";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn literal_and_hashed_tokens_select_their_user() {
        let bob_hash = hex(&Sha256::digest(BOB.as_bytes()));
        let text = format!(
            "# users\n\nalice {ALICE}\n  bob   sha256:{}  \n",
            bob_hash.to_uppercase()
        );
        let table = TokenTable::parse(&text).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.lookup(ALICE).unwrap().as_str(), "alice");
        assert_eq!(table.lookup(BOB).unwrap().as_str(), "bob");
        assert!(table.lookup("alice-token-012345678").is_none());
        assert!(table.lookup("").is_none());
        // The hashed form itself is not a credential.
        assert!(table.lookup(&format!("sha256:{bob_hash}")).is_none());
    }

    #[test]
    fn bad_lines_name_their_line_and_never_the_token() {
        let cases = [
            ("alice short", 1, "shorter than 16"),
            ("# c\nalice", 2, "expected `USER_ID TOKEN`"),
            ("alice a b c", 1, "expected `USER_ID TOKEN`"),
            ("alice sha256:abc", 1, "64 hex digits"),
            (
                "alice sha256:zz00000000000000000000000000000000000000000000000000000000000000",
                1,
                "64 hex digits",
            ),
            (
                &format!("alice {ALICE}\nbob {ALICE}") as &str,
                2,
                "already given",
            ),
        ];
        for (text, line, reason) in cases {
            let error = TokenTable::parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text}");
            assert!(error.reason.contains(reason), "{text}: {error}");
            assert!(!error.to_string().contains(ALICE));
        }
    }

    #[test]
    fn empty_file_is_an_empty_table_and_debug_shows_users_only() {
        assert!(TokenTable::parse("# nobody yet\n").unwrap().is_empty());
        let table = TokenTable::parse(&format!("alice {ALICE}")).unwrap();
        let shown = format!("{table:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains(ALICE));
    }

    #[test]
    fn a_later_entry_matches_as_well_as_the_first() {
        let text: String = (0..50)
            .map(|n| format!("user{n} token-for-user-{n:04}\n"))
            .collect();
        let table = TokenTable::parse(&text).unwrap();
        assert_eq!(
            table.lookup("token-for-user-0049").unwrap().as_str(),
            "user49"
        );
        assert_eq!(
            table.lookup("token-for-user-0000").unwrap().as_str(),
            "user0"
        );
    }
}
