//! How the HTTP gateway behaves: path, who may call it, limits, and wait mode.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::upstream::UpstreamTimeouts;

/// Configuration of the Streamable HTTP gateway. [`ProxyConfig::default`] is the safe local
/// setup: `/mcp`, loopback Host/Origin only, no inbound token, 4 MiB bodies, no wait mode.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The MCP endpoint path on this listener, e.g. `/mcp`. Must start with `/`.
    pub mcp_path: String,
    /// Extra Host names accepted besides the loopback names (`localhost`, `127.0.0.1`, `[::1]`),
    /// compared case-insensitively and without the port, e.g. `toolgate.internal`. Requests with
    /// any other Host get 403: that is the DNS-rebinding protection.
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins accepted besides loopback ones, as `scheme://host[:port]`, e.g.
    /// `https://app.example`. A request without `Origin` is always accepted (non-browser
    /// clients send none); any other origin gets 403.
    pub allowed_origins: Vec<String>,
    /// When set, every request must carry `Authorization: Bearer <token>` (compared in constant
    /// time); at least [`crate::access::MIN_TOKEN_CHARS`] characters. The binary requires one
    /// when listening on a non-loopback address.
    pub bearer_token: Option<SecretString>,
    /// Largest accepted POST body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Whether a blocked `tools/call` is held until the gate opens.
    pub wait: WaitMode,
    /// How many MCP sessions' URL-elicitation capability are remembered (oldest forgotten first).
    /// A forgotten session gets the `isError` form of a blocked answer, which every client reads.
    pub elicitation_sessions_capacity: usize,
    /// Upper bound on opening a TCP (and TLS) connection to the upstream; beyond it the client
    /// gets 504.
    pub connect_timeout: Duration,
    /// How long the upstream may take to answer (response head, and silence inside a non-SSE
    /// body); beyond it the client gets a JSON-RPC error with its id.
    pub upstream_timeouts: UpstreamTimeouts,
    /// On shutdown, how long in-flight requests and open streams may continue before they are
    /// cut off.
    pub drain_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            mcp_path: "/mcp".to_owned(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            bearer_token: None,
            max_body_bytes: 4 * 1024 * 1024,
            wait: WaitMode::Off,
            elicitation_sessions_capacity: 10_000,
            connect_timeout: Duration::from_secs(10),
            upstream_timeouts: UpstreamTimeouts::default(),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What happens to a `tools/call` that arrives while the gate is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Answer it at once with the pending toolkits and their Connect Links.
    Off,
    /// Hold it until the gate opens (then forward it) or `timeout` passes (then answer as in
    /// `Off`). If the request carries a progress token, the client gets an SSE response with a
    /// `notifications/progress` naming the links at once and every `progress_interval`.
    Hold {
        /// Longest time a call is held.
        timeout: Duration,
        /// Time between progress notifications while holding.
        progress_interval: Duration,
    },
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The MCP path does not start with `/`.
    #[error("the MCP path must start with '/', got {0:?}")]
    BadPath(String),
    /// An allowed origin is not `scheme://host[:port]`.
    #[error("allowed origin {0:?} is not of the form scheme://host[:port]")]
    BadOrigin(String),
    /// The body cap is zero.
    #[error("the body size limit must be greater than zero")]
    ZeroBodyLimit,
    /// An allowed host is not `name[:port]` or `[v6][:port]`.
    #[error("allowed host {0:?} is not of the form name[:port]")]
    BadHost(String),
    /// The inbound token is too weak (the same rule in every mode).
    #[error(transparent)]
    WeakToken(#[from] crate::access::WeakToken),
}

impl ProxyConfig {
    /// Checks the values that would otherwise fail at request time.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.mcp_path.starts_with('/') {
            return Err(ConfigError::BadPath(self.mcp_path.clone()));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::ZeroBodyLimit);
        }
        if let Some(token) = &self.bearer_token {
            crate::access::check_token_strength(token.expose_secret())?;
        }
        if let Some(host) = self
            .allowed_hosts
            .iter()
            .find(|host| !crate::access::is_valid_host(host))
        {
            return Err(ConfigError::BadHost(host.clone()));
        }
        for origin in &self.allowed_origins {
            let valid = url::Url::parse(origin).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some()
                    && (url.path() == "/" || url.path().is_empty())
                    && url.query().is_none()
                    && !origin.ends_with('/')
            });
            if !valid {
                return Err(ConfigError::BadOrigin(origin.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_named() {
        assert_eq!(ProxyConfig::default().validate(), Ok(()));
        let bad_path = ProxyConfig {
            mcp_path: "mcp".into(),
            ..ProxyConfig::default()
        };
        assert_eq!(bad_path.validate(), Err(ConfigError::BadPath("mcp".into())));
        let bad_origin = ProxyConfig {
            allowed_origins: vec!["app.example".into()],
            ..ProxyConfig::default()
        };
        assert!(matches!(
            bad_origin.validate(),
            Err(ConfigError::BadOrigin(_))
        ));
        let good_origin = ProxyConfig {
            allowed_origins: vec!["https://app.example:8443".into()],
            ..ProxyConfig::default()
        };
        assert_eq!(good_origin.validate(), Ok(()));
        let weak = ProxyConfig {
            bearer_token: Some(SecretString::from("x")),
            ..ProxyConfig::default()
        };
        assert_eq!(
            weak.validate(),
            Err(ConfigError::WeakToken(crate::access::WeakToken))
        );
        let bad_host = ProxyConfig {
            allowed_hosts: vec!["evil.com@gw".into()],
            ..ProxyConfig::default()
        };
        assert!(matches!(bad_host.validate(), Err(ConfigError::BadHost(_))));
    }
}
