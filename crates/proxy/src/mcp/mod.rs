//! The MCP core both faces share (DESIGN.md decision 10): what a message says, what went
//! wrong, and what the gate makes of a request. A face (the Streamable HTTP gateway, the stdio
//! bridge) only frames what this module decides: SSE events or JSON bodies over HTTP, lines
//! over stdio.
//!
//! # Layout
//! - [`message`]: the one borrowed view of a JSON-RPC message (raw id, method, `params.name`,
//!   `arguments`, `_meta`, batch elements) and body classification.
//! - [`error`]: [`error::McpError`] and the one mapping of an [`error::ErrorKind`] to its
//!   JSON-RPC code, HTTP status, message and fault side.
//! - [`answer`]: the messages toolgate writes itself: the blocked answer, progress while a call
//!   is held, `notifications/elicitation/complete`.
//! - [`policy`]: the [`policy::ToolPolicy`] trait the binary implements to gate per tool, and
//!   [`policy::AllPending`], the default.
//! - [`gatekeeper`]: [`gatekeeper::Gatekeeper`], turning (gate state, request, client
//!   capabilities, wait mode) into steps: forward, answer now, progress, hold.
//!
//! # Ids
//! A local answer echoes the caller's id as the raw JSON text it sent (`1E2`, `-0`,
//! `12345678901234567890123` and `"a\u0031"` come back as written): a client matching answers
//! by value or by text finds its answer either way.
//!
//! # The tool policy on the faces
//! While the gate is closed each `tools/call` asks [`policy::ToolPolicy::blocking`] which
//! pending toolkits block it. After forwarding a call, a face hands the upstream's JSON-RPC
//! answer for that id to [`gatekeeper::Gatekeeper::review`] only when
//! [`gatekeeper::Gatekeeper::review_for`] returned a call (the policy reviews results and wants
//! this one); the answer is then buffered (a JSON body, or the one SSE event carrying it, whose
//! `id:` line is kept) and relayed or replaced by the blocked answer. Otherwise answers stream
//! through untouched.
//!
//! # Elicitation completion
//! Every -32042 answer hands out one `elicitationId` per linked toolkit, unique per call. When
//! the toolkit connects, `notifications/elicitation/complete` with that id goes to the client on
//! every channel toolgate owns toward it: the stdio channel, and over HTTP a held call's SSE
//! stream on the same `Mcp-Session-Id`. Relayed GET streams are the upstream's: toolgate does
//! not inject messages into them, because their event ids are the upstream's resumption
//! cursors and a replayed stream would not carry an injected event again.

pub mod answer;
pub mod error;
pub mod gatekeeper;
pub mod message;
pub mod policy;
