//! Composio tool-router REST client and connection tracker.
//!
//! toolgate's view of Composio: it creates (or reuses) a tool-router session for a user, lists
//! the session's toolkits, mints Connect Links, watches connected accounts, and turns all of
//! that into a gate state the proxy can wait on. It knows nothing about MCP beyond handing out
//! the session's MCP URL and headers.
//!
//! # Layout
//! - The `client` module: [`ComposioClient`], one pooled HTTP client with the SDKs' retry rules, and
//!   [`McpEndpoint`] (the MCP URL plus `x-api-key`, only for the API's own origin).
//! - The `types` module: request and response types with the `/api/v3.1` wire names.
//! - The `error` module: [`ComposioError`] (status, code, slug, request id, suggested fix, [`Fault`])
//!   and [`WaitError`].
//! - The `pool` module: [`UserPool`], a bounded per-user pool (LRU, idle timeout) for
//!   gateways that serve many users.
//! - The `tracker` module: [`ConnectionTracker`], which publishes a [`GateSnapshot`] through a
//!   `tokio::sync::watch` and is driven through a [`TrackerHandle`].
//!
//! The library never reads environment variables or files; the binary fills [`ClientConfig`]
//! and [`TrackerConfig`].

pub mod client;
pub mod error;
pub mod pool;
mod retry;
pub mod tracker;
pub mod types;

pub use client::{
    API_KEY_HEADER, CallObserver, CallOutcome, ClientConfig, ComposioClient, DEFAULT_BASE_URL,
    McpEndpoint, RateLimitView,
};
pub use error::{ApiError, ComposioError, Fault, WaitError};
pub use pool::{PoolConfig, PoolEntry, UserPool};
pub use tracker::{
    AccountSummary, AuthInfo, ConnectionTracker, GateSnapshot, LastError, ToolkitGate,
    ToolkitState, TrackerConfig, TrackerError, TrackerHandle,
};
pub use types::*;
