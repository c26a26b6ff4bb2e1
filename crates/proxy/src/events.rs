//! Hooks through which the binary observes the gateway (metrics, logs, re-verification).
//!
//! Every method has a no-op default, and the gateway calls them inline on the request path, so
//! implementations must be cheap (increment a counter, notify a channel) and never block.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::mcp::error::ErrorKind;

/// What kind of JSON-RPC traffic a request carried, for low-cardinality metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// A POST with one JSON-RPC request; `tools/call` is singled out because only it is gated.
    ToolsCall,
    /// A POST with any other single JSON-RPC request (including `initialize`).
    OtherRequest,
    /// A POST carrying only a notification or a response.
    NotificationOrResponse,
    /// A POST with a JSON array (2025-03-26 batch).
    Batch,
    /// A GET (server-to-client stream or resumption).
    Stream,
    /// A DELETE (session end).
    EndSession,
    /// A request rejected before its body was understood (bad method, Host, token, body...).
    Rejected,
}

/// One finished request, as reported to [`ProxyEvents::request_finished`].
#[derive(Clone, Debug)]
pub struct RequestRecord<'a> {
    /// HTTP method.
    pub http_method: &'a Method,
    /// What the request carried.
    pub kind: RequestKind,
    /// The JSON-RPC method of a single request, as the client sent it (unbounded: bucket it
    /// before using it as a metrics label).
    pub rpc_method: Option<&'a str>,
    /// The status sent to the client.
    pub status: StatusCode,
    /// Time until the response head was ready. Streaming bodies continue after this.
    pub elapsed: Duration,
}

/// Hooks for the binary. All methods default to doing nothing.
pub trait ProxyEvents: Send + Sync + 'static {
    /// A request was answered (the response head was sent or is about to be).
    fn request_finished(&self, _record: &RequestRecord<'_>) {}
    /// A `tools/call` was answered locally because the gate was closed (`waited` is how long it
    /// was held in wait mode; zero otherwise).
    fn call_blocked(&self, _tool: Option<&str>, _waited: Duration) {}
    /// A blocked `tools/call` is being held in wait mode.
    fn call_held(&self, _tool: Option<&str>) {}
    /// The upstream could not be reached, did not answer in time, or broke the connection
    /// (`kind.label()` is a low-cardinality name for it: `unreachable`, `timeout`, `other`).
    fn upstream_error(&self, _kind: &ErrorKind) {}
    /// The upstream refused toolgate's credentials (401/403). The binary should re-verify the
    /// session: the API key may have been revoked or the session expired.
    fn upstream_credentials_refused(&self, _status: StatusCode) {}
}

/// The do-nothing [`ProxyEvents`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl ProxyEvents for NoEvents {}
