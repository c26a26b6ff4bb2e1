//! The gate state both faces consult: what the binary knows about the required toolkits.
//! What a request makes of it is decided in [`crate::mcp::gatekeeper`].
//!
//! The gate state arrives through a [`tokio::sync::watch`] that the binary feeds from the
//! session crate's connection tracker; this crate never sees Composio. Only `tools/call` is
//! ever blocked: listing tools, resources, prompts and everything else passes while the gate is
//! closed, so a client can still show what it will be able to do once connected.

/// What the gate knows right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateState {
    /// The upstream is not known yet (for example the Composio session is still being created).
    /// Every request, not only `tools/call`, is answered locally with an error naming `reason`.
    Starting {
        /// Why the gateway is not ready, shown to the client.
        reason: String,
    },
    /// Every required toolkit is connected: everything is forwarded.
    Open,
    /// At least one required toolkit is not connected: `tools/call` is answered locally.
    Closed {
        /// The toolkits that still need the user's attention, in a stable order.
        pending: Vec<PendingToolkit>,
    },
}

/// A required toolkit that is not connected yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingToolkit {
    /// Toolkit slug, e.g. `gmail`.
    pub slug: String,
    /// Human name, e.g. `Gmail`.
    pub name: String,
    /// The Composio Connect Link the user opens to connect it, when one has been minted.
    pub connect_url: Option<String>,
    /// Short human status, e.g. `waiting for authorization` or `failed: access denied`.
    pub status: String,
}
