//! `[upstream]`: generic mode's MCP URL and how long either face waits on the upstream, with
//! the older `upstream = "URL"` string kept as shorthand for `upstream.url`.
//!
//! The shorthand is rewritten into the table form inside each layer, before figment merges
//! the layers: merged as given, a later `upstream.response_timeout` (a table) would replace an
//! earlier `upstream = "URL"` (a string) whole and lose the URL.

use std::time::Duration;

use figment::value::{Dict, Tag, Value};
use figment::{Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};
use toolgate_proxy::upstream::UpstreamTimeouts;

use super::ConfigError;

/// `[upstream]`: where generic mode forwards, and the upstream timeouts of both modes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct UpstreamSection {
    /// Generic mode: forward to this MCP URL instead of a Composio session (gate always open).
    pub(crate) url: Option<String>,
    /// Longest wait for the upstream's response head once a request is sent; beyond it the
    /// caller gets a JSON-RPC error with its id.
    #[serde(with = "humantime_serde")]
    pub(crate) response_timeout: Duration,
    /// Longest silence between two frames of a non-SSE answer body (SSE streams are exempt);
    /// beyond it the caller gets a JSON-RPC error with its id.
    #[serde(with = "humantime_serde")]
    pub(crate) idle_timeout: Duration,
}

/// Environment variable (without `TOOLGATE_`, lowercase) → key. `TOOLGATE_UPSTREAM` is the
/// shorthand's variable and sets the URL.
pub(crate) const ENV_KEYS: &[(&str, &str)] = &[
    ("upstream", "upstream.url"),
    ("upstream_response_timeout", "upstream.response_timeout"),
    ("upstream_idle_timeout", "upstream.idle_timeout"),
];

impl Default for UpstreamSection {
    fn default() -> Self {
        let library = UpstreamTimeouts::default();
        Self {
            url: None,
            response_timeout: library.response,
            idle_timeout: library.body_idle,
        }
    }
}

impl UpstreamSection {
    /// The proxy library's timeouts, shared by the HTTP and stdio faces.
    pub(crate) fn timeouts(&self) -> UpstreamTimeouts {
        UpstreamTimeouts {
            response: self.response_timeout,
            body_idle: self.idle_timeout,
        }
    }

    /// Both timeouts are more than zero and at most an hour.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("upstream.response_timeout", self.response_timeout),
            ("upstream.idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() || value > Duration::from_secs(3600) {
                return Err(ConfigError::new(key, "must be between 1ms and 1h"));
            }
        }
        Ok(())
    }
}

/// A layer whose `upstream = "URL"` reads as `[upstream] url = "URL"`.
pub(crate) struct Shorthand<P>(pub(crate) P);

impl<P: Provider> Provider for Shorthand<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<figment::value::Map<Profile, Dict>, figment::Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            expand(dict);
        }
        Ok(data)
    }

    fn profile(&self) -> Option<Profile> {
        self.0.profile()
    }
}

/// Rewrites a string `upstream` into the table form; anything else is left for serde to judge.
fn expand(dict: &mut Dict) {
    if let Some(Value::String(tag, url)) = dict.get("upstream") {
        let (tag, url) = (*tag, url.clone());
        let table = Dict::from([("url".to_owned(), Value::String(tag, url))]);
        dict.insert("upstream".to_owned(), Value::Dict(Tag::Default, table));
    }
}
