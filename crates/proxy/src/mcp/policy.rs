//! The tool policy: which pending toolkits block a `tools/call`, and whether a forwarded call's
//! result should be replaced by a blocked answer (DESIGN.md decision 14).
//!
//! The proxy knows nothing of Composio, so the binary implements [`ToolPolicy`] with its
//! session knowledge (for example `COMPOSIO_MULTI_EXECUTE_TOOL`'s `tools[].tool_slug` →
//! toolkit). [`AllPending`], the default, blocks every `tools/call` while the gate is closed
//! and never looks at results: generic mode and Composio mode with `gate.scope = "all"`.
//!
//! # Cost
//! The default costs nothing on the hot path: while the gate is open no call is parsed beyond
//! its method, and a face buffers an upstream answer only when [`ToolPolicy::reviews_results`]
//! is true *and* [`ToolPolicy::wants_result`] says so for that call.

use futures_util::future::BoxFuture;
use serde_json::value::RawValue;

use crate::gate::{GateState, PendingToolkit};

/// What a policy sees of one `tools/call`: borrowed from the request, never copied.
#[derive(Clone, Copy, Debug)]
pub struct ToolCall<'a> {
    /// `params.name`, the tool.
    pub name: Option<&'a str>,
    /// `params.arguments`, raw JSON exactly as the client sent it.
    pub arguments: Option<&'a RawValue>,
}

/// Decides which toolkits a `tools/call` needs. Shared by both faces through the
/// [`super::gatekeeper::Gatekeeper`]; implementations must be cheap and never block (the
/// result review is async for work such as minting a fresh Connect Link).
pub trait ToolPolicy: Send + Sync + 'static {
    /// The toolkits that block `call` now. Consulted only while the gate is
    /// [`GateState::Closed`] (and again whenever it changes while a call is held); an empty list
    /// forwards the call. The default blocks on every pending toolkit.
    fn blocking(&self, call: ToolCall<'_>, gate: &GateState) -> Vec<PendingToolkit> {
        let _ = call;
        match gate {
            GateState::Closed { pending } => pending.clone(),
            GateState::Open | GateState::Starting { .. } => Vec::new(),
        }
    }

    /// Whether this policy ever reviews results. `false` (the default) means
    /// [`ToolPolicy::wants_result`] is never asked and answers stream straight through.
    fn reviews_results(&self) -> bool {
        false
    }

    /// Whether the upstream's answer to this forwarded call should be handed to
    /// [`ToolPolicy::review_result`] before the client sees it (the face then buffers it).
    fn wants_result(&self, call: ToolCall<'_>) -> bool {
        let _ = call;
        false
    }

    /// Reviews the upstream's answer to `call`: `response` is the whole JSON-RPC response
    /// message for the call's id (raw bytes: a result or an error). `Some(toolkits)` replaces it
    /// with the blocked answer naming them (with their links); `None` relays it unchanged.
    fn review_result<'a>(
        &'a self,
        call: ToolCall<'a>,
        response: &'a [u8],
    ) -> BoxFuture<'a, Option<Vec<PendingToolkit>>> {
        let _ = (call, response);
        Box::pin(std::future::ready(None))
    }
}

/// The default policy: every pending toolkit blocks every `tools/call`; results pass unseen.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllPending;

impl ToolPolicy for AllPending {}

/// The policy the gatekeeper's and the faces' unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use futures_util::future::BoxFuture;

    use super::{ToolCall, ToolPolicy};
    use crate::gate::{GateState, PendingToolkit};

    /// Blocks only `send_mail` calls while the gate is closed, and hands the answers to calls
    /// of the `reviewed` tool to `review` (its `Some` replaces the answer with a blocked one).
    pub(crate) struct MailOnly {
        pub(crate) reviewed: &'static str,
        pub(crate) review: fn(&[u8]) -> Option<Vec<PendingToolkit>>,
    }

    impl ToolPolicy for MailOnly {
        fn blocking(&self, call: ToolCall<'_>, gate: &GateState) -> Vec<PendingToolkit> {
            match (gate, call.name) {
                (GateState::Closed { pending }, Some("send_mail")) => pending.clone(),
                _ => Vec::new(),
            }
        }
        fn reviews_results(&self) -> bool {
            true
        }
        fn wants_result(&self, call: ToolCall<'_>) -> bool {
            call.name == Some(self.reviewed)
        }
        fn review_result<'a>(
            &'a self,
            _call: ToolCall<'a>,
            response: &'a [u8],
        ) -> BoxFuture<'a, Option<Vec<PendingToolkit>>> {
            Box::pin(std::future::ready((self.review)(response)))
        }
    }
}
