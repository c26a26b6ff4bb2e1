//! MCP forwarding for toolgate: the Streamable HTTP listener that forwards to an upstream MCP
//! endpoint, the stdio bridge, and the tool-call gate both of them consult.
//!
//! This crate knows the MCP wire rules and nothing of Composio: it sees a [`gate::GateState`]
//! and an upstream URL with headers.
//!
//! # Layout
//! - [`gate`]: the gate state, the one decision function, and the local answer to a blocked call.

pub mod gate;
