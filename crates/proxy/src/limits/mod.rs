//! Bounds on what a client can make the listener hold: connections, time, requests in flight
//! and buffered request bodies. [`crate::server::serve_with`] applies them to every route on the
//! listener, so the gateway and the binary's pages need no limit code of their own.
//!
//! # Where each bound sits, and why there
//! - **Connection deadlines** ([`ServerLimits::header_timeout`], [`ServerLimits::idle_timeout`])
//!   are enforced by the connection's own task, outside hyper: a deadline has to run before
//!   anything is known about the protocol (a silent socket, one byte, half an HTTP/2 preface)
//!   and while hyper is parked reading, so only the owner of the socket can enforce it. The
//!   deadline runs whenever the connection has no request in flight: from accept until its first
//!   request head is complete, and again from the end of each answer until the next head.
//! - **Client EOF**: hyper allows half-closed connections, so a client that shuts its write
//!   side after its request still gets the answer. The connection's task shares the socket
//!   ([`crate::socket::Socket`]) and, while only standing GET event streams are in flight, peeks
//!   for the EOF hyper no longer reads, so a client that went away does not keep a stream open.
//! - **The connection cap** ([`ServerLimits::max_connections`]) is checked at accept: when it is
//!   reached, or the process is out of file descriptors, the connection that has been idle the
//!   longest is closed to make room, so idle sockets can never lock a working client out.
//! - **Requests in flight** ([`ServerLimits::max_concurrent_requests`]) is a tower layer right
//!   after the activity tracker: it sheds with 503 + `Retry-After` before a single body byte is
//!   read, so a shed request costs one small answer. A request counts until its answer is fully
//!   sent, so open SSE streams count too.
//! - **Buffered body bytes** ([`ServerLimits::max_buffered_body_bytes`]) and the **body
//!   timeouts** ([`ServerLimits::body_idle_timeout`], [`ServerLimits::body_timeout`]) live in the
//!   innermost layer, which wraps the request body the handler reads in a [`RequestBody`]: the
//!   bytes are accounted as the handler pulls them, whoever the handler is, and a body that
//!   stalls fails the read. The layer then answers 408 (timeout) or 503 (budget) itself.
//!
//! The request-level limits are tower layers because that is where hyper-based servers put
//! per-request policy (linkerd's `ConcurrencyLimit` + `LoadShed`, tower-http's timeouts), and it
//! keeps them out of the handler.

mod accept;
mod body;
mod connections;
mod layers;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub(crate) use accept::{AcceptFailures, LogLimiter, is_fd_exhaustion};
pub(crate) use body::BodyBudget;
pub use body::{BodyError, RequestBody};
pub(crate) use connections::{ConnectionSlot, Connections, Watchdog};
pub(crate) use layers::{BodyLimitLayer, ConcurrencyLimitLayer, TrackActivityLayer};

/// Bounds on the listener. [`ServerLimits::default`] suits one user on loopback and a modest
/// shared deployment; the binary lowers [`ServerLimits::max_connections`] to fit the process's
/// open-file limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a new connection may take to deliver its first complete request head, whatever
    /// it sends meanwhile (nothing, one byte, part of an HTTP/2 preface, a trickled header);
    /// then it is closed.
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in flight after its last answer,
    /// until its next complete request head (keep-alive); then it is closed.
    pub idle_timeout: Duration,
    /// Longest pause while a request body is being received (before its first byte and between
    /// chunks); beyond it the request gets 408.
    pub body_idle_timeout: Duration,
    /// Longest time to receive a whole request body, from the end of its head; beyond it the
    /// request gets 408 (this is what stops a body trickled a byte at a time).
    pub body_timeout: Duration,
    /// Requests handled at once, open response streams included; further ones get 503 with
    /// `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Request-body bytes buffered at once across all connections; a request that would go
    /// beyond gets 503 with `Retry-After`. Must be at least [`ServerLimits::kept_body_bytes`].
    pub max_buffered_body_bytes: usize,
    /// The most of one request body any handler on the listener keeps in memory: the gateway's
    /// body cap ([`crate::config::ProxyConfig::max_body_bytes`]). A request is charged at most
    /// this much against the budget, because handlers discard the rest as it arrives.
    pub kept_body_bytes: usize,
    /// Open client connections. At the cap, the connection idle the longest is closed to admit
    /// a new one; when none is idle, the new one is closed.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            // Above the usual client keep-alive (Node 5 s, reqwest/hyper 90 s is the exception,
            // and it retries a request on a connection closed under it).
            idle_timeout: Duration::from_secs(75),
            body_idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_concurrent_requests: 1024,
            max_buffered_body_bytes: 64 * 1024 * 1024,
            kept_body_bytes: crate::config::ProxyConfig::default().max_body_bytes,
            max_connections: 1024,
        }
    }
}

/// A limit that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    /// A timeout is zero.
    #[error("limits.{0} must be greater than zero")]
    ZeroTimeout(&'static str),
    /// A count or size is zero.
    #[error("limits.{0} must be greater than zero")]
    ZeroCount(&'static str),
    /// The body budget could not hold one body of the largest accepted size.
    #[error(
        "limits.max_buffered_body_bytes ({budget}) must be at least the body cap ({body} bytes)"
    )]
    BudgetBelowBodyCap {
        /// The budget.
        budget: usize,
        /// The body cap.
        body: usize,
    },
}

impl ServerLimits {
    /// Checks the values that would make the listener refuse everything.
    pub fn validate(&self) -> Result<(), LimitsError> {
        for (name, value) in [
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_idle_timeout", self.body_idle_timeout),
            ("body_timeout", self.body_timeout),
        ] {
            if value.is_zero() {
                return Err(LimitsError::ZeroTimeout(name));
            }
        }
        for (name, value) in [
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("max_buffered_body_bytes", self.max_buffered_body_bytes),
            ("kept_body_bytes", self.kept_body_bytes),
            ("max_connections", self.max_connections),
        ] {
            if value == 0 {
                return Err(LimitsError::ZeroCount(name));
            }
        }
        if self.max_buffered_body_bytes < self.kept_body_bytes {
            return Err(LimitsError::BudgetBelowBodyCap {
                budget: self.max_buffered_body_bytes,
                body: self.kept_body_bytes,
            });
        }
        Ok(())
    }

    /// A connection cap that leaves room in an open-file limit of `nofile` descriptors: each
    /// admitted connection may need a second descriptor toward the upstream and, while a
    /// write to a full socket waits for room, a third (its write registration, see
    /// [`crate::socket`]); the process needs a few dozen of its own.
    pub fn connections_for_fd_limit(nofile: u64) -> usize {
        const RESERVED: u64 = 64;
        let usable = nofile.saturating_sub(RESERVED) / 3;
        usize::try_from(usable.clamp(16, 1 << 20)).unwrap_or(1 << 20)
    }
}
