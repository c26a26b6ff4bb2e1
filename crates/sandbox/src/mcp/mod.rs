//! The sandbox's MCP upstream: one rmcp Streamable HTTP endpoint per tool-router session, at
//! `/tool_router/{trs_id}/mcp`, serving the meta tools a real session exposes.
//!
//! The REST side (`crate::api`) owns authentication and routing; it hands requests for a
//! session's MCP URL to [`McpEndpoint::handle`] together with a [`McpWorld`], through which the
//! tools read live state (is this toolkit connected for this user right now?).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

/// The body type every sandbox response uses.
pub(crate) type ResponseBody = BoxBody<Bytes, Infallible>;

/// What the MCP tools may ask of the sandbox's state. Implemented by the REST side's store.
pub(crate) trait McpWorld: Send + Sync + 'static {
    /// The session's view, or `None` when it does not exist (or was deleted).
    fn session(&self, session_id: &str) -> Option<SessionView>;
    /// Whether `toolkit` has an ACTIVE connected account for `user_id` right now
    /// (no-auth toolkits count as connected).
    fn is_connected(&self, user_id: &str, toolkit: &str) -> bool;
    /// Mints a Connect Link for `toolkit` in this session, as `POST .../link` would, and
    /// returns its `redirect_url`; `Err` carries the message the real API would give.
    fn connect_link(&self, session_id: &str, toolkit: &str) -> Result<String, String>;
    /// The toolkit catalog: `(slug, name)` of every toolkit the sandbox knows.
    fn toolkits(&self) -> Vec<(String, String)>;
}

/// What the MCP side needs to know about one session.
#[derive(Clone, Debug)]
pub(crate) struct SessionView {
    /// The session's user.
    pub(crate) user_id: String,
    /// The meta tools the session exposes (`tool_router_tools` in the REST response).
    pub(crate) tool_router_tools: Vec<String>,
    /// The toolkits this session may use (`None` means every toolkit).
    pub(crate) enabled_toolkits: Option<Vec<String>>,
}
