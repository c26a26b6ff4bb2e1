//! MCP forwarding for toolgate: the Streamable HTTP listener that forwards to an upstream MCP
//! endpoint, the stdio bridge, and the tool-call gate both of them consult.
//!
//! This crate knows the MCP wire rules and nothing of Composio: it sees a [`gate::GateState`]
//! and an [`upstream::UpstreamTarget`] (URL plus headers), both through `tokio::sync::watch`
//! channels the binary feeds.
//!
//! # Layout
//! - [`access`]: who may use the listener (Host, Origin, token, CORS), for every route on it.
//! - [`mcp`]: the MCP core both faces share: the message view, the error type, the gate
//!   policy ([`mcp::gatekeeper::Gatekeeper`]) and the tool policy trait.
//! - [`gate`]: the gate state the binary feeds.
//! - [`gateway`]: the Streamable HTTP gateway ([`gateway::Gateway::handle`] answers one request
//!   on the MCP endpoint; mountable in any router).
//! - [`router`]: the multi-user front (identity → [`router::Router`] → route, sealed ids).
//! - `recent`: a bounded memory of recent sessions (URL elicitation, opened sealed ids).
//! - [`seal`]: sealed `Mcp-Session-Id` values for replicas without sticky sessions.
//! - [`server`]: accepting connections and graceful drain ([`server::serve`], [`server::serve_with`]).
//! - [`limits`]: [`limits::ServerLimits`], the listener's bounds on connections, time, requests
//!   in flight and buffered bodies.
//! - [`config`]: [`config::ProxyConfig`] for the gateway.
//! - [`events`]: [`events::ProxyEvents`], hooks for metrics and re-verification.
//! - [`upstream`]: the upstream target, the shared HTTP client, header forwarding rules.
//! - [`header_args`]: `--header 'Name: value'` / header-file parsing with `${VAR}` expansion.
//! - [`stdio`]: the stdio bridge ([`stdio::run_stdio`]) for clients that launch a local process.
//! - [`identity`]: who is calling (`auth.mode`: single, tokens, jwt, header).

pub mod access;
pub mod config;
pub mod events;
pub mod gate;
pub mod gateway;
pub mod header_args;
pub mod identity;
pub mod limits;
pub mod mcp;
mod recent;
pub mod router;
pub mod seal;
pub mod server;
mod socket;
pub mod stdio;
pub mod upstream;
