//! `[limits]`: the listener's bounds on connections, time, requests in flight and buffered
//! bodies, mapped onto the proxy library's [`ServerLimits`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toolgate_proxy::limits::ServerLimits;

use super::ConfigError;

/// `[limits]`: what one client (or many) can make the HTTP listener hold.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LimitsSection {
    /// Deadline for a new connection's first complete request head, whatever it sends.
    #[serde(with = "humantime_serde")]
    pub(crate) header_timeout: Duration,
    /// Keep-alive: how long a connection may wait for its next request head after an answer.
    #[serde(with = "humantime_serde")]
    pub(crate) idle_timeout: Duration,
    /// Longest pause while receiving a request body (408 beyond).
    #[serde(with = "humantime_serde")]
    pub(crate) body_idle_timeout: Duration,
    /// Longest time to receive a whole request body (408 beyond).
    #[serde(with = "humantime_serde")]
    pub(crate) body_timeout: Duration,
    /// Requests handled at once, open streams included (503 + `Retry-After` beyond).
    pub(crate) max_concurrent_requests: usize,
    /// Request-body bytes buffered at once across all connections (503 + `Retry-After`
    /// beyond); at least the body cap.
    pub(crate) max_buffered_body_bytes: usize,
    /// Open client connections; unset derives it from the open-file limit (a third of it, less
    /// a reserve), so idle sockets can never exhaust the descriptors a working request needs.
    pub(crate) max_connections: Option<usize>,
}

/// Environment variable (without `TOOLGATE_`, lowercase) → key, for the config loader.
pub(crate) const ENV_KEYS: &[(&str, &str)] = &[
    ("limits_header_timeout", "limits.header_timeout"),
    ("limits_idle_timeout", "limits.idle_timeout"),
    ("limits_body_idle_timeout", "limits.body_idle_timeout"),
    ("limits_body_timeout", "limits.body_timeout"),
    (
        "limits_max_concurrent_requests",
        "limits.max_concurrent_requests",
    ),
    (
        "limits_max_buffered_body_bytes",
        "limits.max_buffered_body_bytes",
    ),
    ("limits_max_connections", "limits.max_connections"),
];

/// The keys whose environment value is a number, not a string.
pub(crate) const NUMERIC_KEYS: &[&str] = &[
    "limits.max_concurrent_requests",
    "limits.max_buffered_body_bytes",
    "limits.max_connections",
];

impl Default for LimitsSection {
    fn default() -> Self {
        let library = ServerLimits::default();
        Self {
            header_timeout: library.header_timeout,
            idle_timeout: library.idle_timeout,
            body_idle_timeout: library.body_idle_timeout,
            body_timeout: library.body_timeout,
            max_concurrent_requests: library.max_concurrent_requests,
            max_buffered_body_bytes: library.max_buffered_body_bytes,
            max_connections: None,
        }
    }
}

impl LimitsSection {
    /// The library's limits for a gateway whose body cap is `max_body_bytes`; an unset
    /// connection cap comes from this process's open-file limit.
    pub(crate) fn server_limits(&self, max_body_bytes: usize) -> ServerLimits {
        ServerLimits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_idle_timeout: self.body_idle_timeout,
            body_timeout: self.body_timeout,
            max_concurrent_requests: self.max_concurrent_requests,
            max_buffered_body_bytes: self.max_buffered_body_bytes,
            kept_body_bytes: max_body_bytes,
            max_connections: self.max_connections.unwrap_or_else(|| {
                rustix::process::getrlimit(rustix::process::Resource::Nofile)
                    .current
                    // No open-file limit at all: the library's default cap.
                    .map_or(ServerLimits::default().max_connections, |nofile| {
                        ServerLimits::connections_for_fd_limit(nofile)
                    })
            }),
        }
    }

    /// Checks the section against the largest request body the gateway accepts.
    pub(crate) fn validate(&self, max_body_bytes: usize) -> Result<(), ConfigError> {
        use toolgate_proxy::limits::LimitsError;
        match self.server_limits(max_body_bytes).validate() {
            Ok(()) => Ok(()),
            Err(LimitsError::ZeroTimeout(name) | LimitsError::ZeroCount(name)) => Err(
                ConfigError::new(&format!("limits.{name}"), "must be greater than zero"),
            ),
            Err(LimitsError::BudgetBelowBodyCap { body, .. }) => Err(ConfigError::new(
                "limits.max_buffered_body_bytes",
                format!("must be at least the body cap ({body} bytes)"),
            )),
        }
    }
}
