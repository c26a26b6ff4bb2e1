//! Session reuse across runs: a small JSON file that remembers the Composio session id per
//! (API key hash, user, session configuration), so a restart, a second `toolgate status` or
//! a new stdio process for the same setup reuses the session instead of creating one.
//!
//! The key is a SHA-256 over the API key, the API origin and the exact session-create body:
//! the file never holds the key, and a changed configuration simply gets its own session.
//! The file is written atomically (temporary file, then rename) with owner-only permissions;
//! a file that cannot be read or parsed is treated as empty (a warning, never an error),
//! because all it can cost is one session creation.

use std::collections::BTreeMap;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use toolgate_session::CreateSessionRequest;

/// The file's name inside the state directory.
const FILE_NAME: &str = "sessions.json";

/// Bumped when the layout changes; other versions are ignored.
const VERSION: u32 = 1;

/// The remembered sessions.
#[derive(Debug, Default, Deserialize, Serialize)]
struct Contents {
    version: u32,
    sessions: BTreeMap<String, Remembered>,
}

/// One remembered session.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Remembered {
    session_id: String,
    user_id: String,
}

/// Where sessions are remembered.
#[derive(Clone, Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
}

/// `$XDG_STATE_HOME/toolgate/sessions.json`, else `~/.local/state/toolgate/sessions.json`;
/// `None` without either variable.
pub(crate) fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|value| !value.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(base.join("toolgate").join(FILE_NAME))
}

/// The key of a session: what identifies "the same setup" across runs.
pub(crate) fn session_key(
    api_key: &SecretString,
    base_url: &str,
    request: &CreateSessionRequest,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"toolgate-session-v1\0");
    hasher.update(api_key.expose_secret().as_bytes());
    hasher.update(b"\0");
    hasher.update(base_url.trim_end_matches('/').as_bytes());
    hasher.update(b"\0");
    // Serialising our own request type cannot fail; an empty body would only mean no reuse.
    hasher.update(serde_json::to_vec(request).unwrap_or_default());
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl StateFile {
    /// The file at `path` (not touched until used).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The file's path.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The remembered session for `key`: `(session_id, user_id)`.
    pub(crate) fn recall(&self, key: &str) -> Option<(String, String)> {
        self.read()
            .sessions
            .get(key)
            .map(|entry| (entry.session_id.clone(), entry.user_id.clone()))
    }

    /// Remembers `session_id` for `key`; a failure is logged, never fatal.
    pub(crate) fn remember(&self, key: &str, session_id: &str, user_id: &str) {
        let mut contents = self.read();
        contents.sessions.insert(
            key.to_owned(),
            Remembered {
                session_id: session_id.to_owned(),
                user_id: user_id.to_owned(),
            },
        );
        self.write(&contents);
    }

    /// Forgets the session of `key` (Composio lost it).
    pub(crate) fn forget(&self, key: &str) {
        let mut contents = self.read();
        if contents.sessions.remove(key).is_some() {
            self.write(&contents);
        }
    }

    fn read(&self) -> Contents {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Contents::default();
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the session state file; creating a session");
                return Contents::default();
            }
        };
        match serde_json::from_slice::<Contents>(&text) {
            Ok(contents) if contents.version == VERSION => contents,
            Ok(_) => Contents::default(),
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "the session state file is not valid; ignoring it");
                Contents::default()
            }
        }
    }

    fn write(&self, contents: &Contents) {
        if let Err(error) = self.try_write(contents) {
            tracing::warn!(path = %self.path.display(), %error, "cannot write the session state file; the session is not remembered");
        }
    }

    fn try_write(&self, contents: &Contents) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let contents = Contents {
            version: VERSION,
            sessions: contents.sessions.clone(),
        };
        let text = serde_json::to_vec_pretty(&contents).map_err(std::io::Error::other)?;
        let temporary = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        {
            use std::io::Write as _;
            let mut file = options.open(&temporary)?;
            file.write_all(&text)?;
            file.sync_all()?;
        }
        // Rename is atomic: a concurrent reader sees the old file or the new one, never half.
        std::fs::rename(&temporary, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: &str) -> CreateSessionRequest {
        CreateSessionRequest {
            user_id: user.to_owned(),
            ..CreateSessionRequest::default()
        }
    }

    #[test]
    fn keys_differ_by_key_user_origin_and_config_and_hide_the_key() {
        let key = SecretString::from("sk_secret_1");
        let base = session_key(&key, "http://a", &request("alice"));
        assert_eq!(base, session_key(&key, "http://a/", &request("alice")));
        assert_ne!(
            base,
            session_key(
                &SecretString::from("sk_other"),
                "http://a",
                &request("alice")
            )
        );
        assert_ne!(base, session_key(&key, "http://b", &request("alice")));
        assert_ne!(base, session_key(&key, "http://a", &request("bob")));
        let mut changed = request("alice");
        changed
            .auth_configs
            .insert("gmail".to_owned(), "ac_1".to_owned());
        assert_ne!(base, session_key(&key, "http://a", &changed));
        assert!(!base.contains("sk_secret_1") && base.len() == 64);
    }

    #[test]
    fn remembers_forgets_and_survives_garbage() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = StateFile::new(dir.path().join("nested/sessions.json"));
        assert_eq!(file.recall("k"), None);
        file.remember("k", "trs_1", "alice");
        file.remember("j", "trs_2", "bob");
        assert_eq!(
            file.recall("k"),
            Some(("trs_1".to_owned(), "alice".to_owned()))
        );
        file.forget("k");
        assert_eq!(file.recall("k"), None);
        assert_eq!(file.recall("j").map(|(id, _)| id).as_deref(), Some("trs_2"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file.path())?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(file.path(), b"not json")?;
        assert_eq!(file.recall("j"), None);
        file.remember("k", "trs_3", "alice");
        assert_eq!(file.recall("k").map(|(id, _)| id).as_deref(), Some("trs_3"));
        Ok(())
    }
}
