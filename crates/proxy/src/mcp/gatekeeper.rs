//! The one gate policy of both faces: [`Gatekeeper`] turns (gate state, the request, what the
//! client declared, wait mode) into steps — forward, answer now, progress, hold — that each
//! face only frames (SSE events over HTTP, lines over stdio).
//!
//! # Behaviour
//! - Only `tools/call` is gated. While the gate is "starting" every request is refused as
//!   not ready (-32001); while it is closed the [`ToolPolicy`] names the toolkits that block a
//!   call, and an empty list forwards it.
//! - A blocked call is answered at once ([`WaitMode::Off`]) or held ([`WaitMode::Hold`]): the
//!   hold sends a progress notification at once and every interval when the request carries a
//!   progress token and the face can carry it; it forwards as soon as the policy no longer
//!   blocks; at the wait bound it answers with the latest pending list. If the gate goes back
//!   to "starting" meanwhile the call keeps waiting until the bound and is then answered
//!   "not ready" (unless the gate opened). If the gate's sender is gone, nothing can change
//!   any more and the call is answered at once.
//! - A `tools/call` notification that would be blocked is dropped: nobody could read an
//!   answer, and forwarding it would run the tool past the gate.
//! - Batches (HTTP; stdio splits them into messages): with no blocked call the batch is
//!   forwarded whole; with one, nothing is forwarded and every request gets a local answer
//!   (the blocked answer, or an error asking to send it alone). Batches are never held.
//! - A URL elicitation handed out is remembered with the client channel it went to, so the
//!   face can send `notifications/elicitation/complete` when its toolkit connects
//!   ([`Gatekeeper::take_completed`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::answer::{self, Elicitation};
use super::error::{ErrorKind, McpError};
use super::message::{Message, Params};
use super::policy::{ToolCall, ToolPolicy};
use crate::config::WaitMode;
use crate::events::ProxyEvents;
use crate::gate::{GateState, PendingToolkit};
use crate::upstream::UpstreamTarget;

/// Shortest interval between progress notifications, whatever is configured.
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(10);
/// How many handed-out elicitations are remembered for completion (oldest forgotten first).
const MAX_OUTSTANDING_ELICITATIONS: usize = 4096;
/// The not-ready reason while the gate is open but no upstream is known.
pub(crate) const NO_UPSTREAM: &str = "the upstream MCP endpoint is not known yet";

/// What the face knows about the client of one call, beyond the call's own bytes.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// The client declared URL elicitation (at `initialize` or in this request's `_meta`).
    pub url_elicitation: bool,
    /// The protocol version of this request (its `_meta`, header or the negotiated one).
    pub protocol_version: Option<String>,
    /// The face can deliver progress notifications for this request (over HTTP: the client
    /// accepts an SSE answer).
    pub progress: bool,
    /// The client channel (the HTTP `Mcp-Session-Id`; `None` for the one stdio client), under
    /// which handed-out elicitations are remembered.
    pub channel: Option<String>,
}

/// Where the gatekeeper gets a [`CallContext`] from, asked only when a call is blocked or
/// reviewed (so an open gate never pays for it).
pub trait ContextSource {
    /// The context of the call whose params are `params`.
    fn context(&self, params: &Params<'_>) -> CallContext;
}

impl ContextSource for CallContext {
    fn context(&self, _params: &Params<'_>) -> CallContext {
        self.clone()
    }
}

/// One `tools/call` request the gatekeeper holds or reviews, owned.
#[derive(Debug)]
pub struct Call {
    message: Bytes,
    id: Box<RawValue>,
    progress_token: Option<Box<RawValue>>,
    tool: Option<String>,
    context: CallContext,
}

impl Call {
    fn new(message: &Bytes, id: &RawValue, params: &Params<'_>, context: CallContext) -> Self {
        Self {
            message: message.clone(),
            id: id.to_owned(),
            progress_token: params.progress_token().map(ToOwned::to_owned),
            tool: params.name.as_deref().map(str::to_owned),
            context,
        }
    }

    /// The caller's raw id.
    pub fn id(&self) -> &RawValue {
        &self.id
    }

    /// The tool name.
    pub fn tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }

    /// The request as the client sent it.
    pub fn message(&self) -> &Bytes {
        &self.message
    }
}

fn tool_call<'p>(params: &'p Params<'_>) -> ToolCall<'p> {
    ToolCall {
        name: params.name.as_deref(),
        arguments: params.arguments,
    }
}

/// What to do with a single `tools/call`.
#[derive(Debug)]
pub enum Verdict {
    /// Send it upstream unchanged.
    Forward,
    /// A notification that would be blocked: drop it.
    Drop,
    /// Answer with this message (the blocked answer).
    Answer(Vec<u8>),
    /// Answer with this error.
    Fail(McpError),
    /// Hold it: drive [`Hold::next`] until it says what to do.
    Hold(Box<Hold>),
}

/// One step of a held call.
#[derive(Debug)]
pub enum HoldStep {
    /// Send this `notifications/progress` to the client and keep holding.
    Progress(Vec<u8>),
    /// Send this message to the client (an elicitation completed) and keep holding.
    Notify(Vec<u8>),
    /// The gate let the call through: forward it.
    Forward,
    /// The wait is over: answer with this message (the blocked answer).
    Answer(Vec<u8>),
    /// The wait is over: answer with this error.
    Fail(McpError),
}

/// What to do with a batch.
#[derive(Debug)]
pub enum BatchVerdict {
    /// Send it upstream unchanged.
    Forward,
    /// Answer the whole batch with this array.
    Answer(Vec<u8>),
    /// Answer with this error.
    Fail(McpError),
}

#[derive(Debug)]
struct Outstanding {
    elicitation: Elicitation,
    channel: Option<String>,
}

/// Makes the link to the caller's own connections page that ends a blocked answer (a fresh
/// signed, expiring one each time; multi-user gateways only).
pub type PageLink = Arc<dyn Fn() -> String + Send + Sync>;

/// The gate policy shared by every request of one face. Cheap to clone.
#[derive(Clone)]
pub struct Gatekeeper {
    inner: Arc<Inner>,
    page_link: Option<PageLink>,
}

struct Inner {
    gate: watch::Receiver<GateState>,
    upstream: watch::Receiver<Option<UpstreamTarget>>,
    wait: WaitMode,
    policy: Arc<dyn ToolPolicy>,
    events: Arc<dyn ProxyEvents>,
    outstanding: Mutex<VecDeque<Outstanding>>,
}

impl std::fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gatekeeper")
            .field("gate", &*self.inner.gate.borrow())
            .field("wait", &self.inner.wait)
            .finish_non_exhaustive()
    }
}

impl Gatekeeper {
    /// A gatekeeper reading `gate` and `upstream`, holding calls per `wait`, asking `policy`
    /// which toolkits block a call, reporting blocks and holds to `events`.
    pub fn new(
        gate: watch::Receiver<GateState>,
        upstream: watch::Receiver<Option<UpstreamTarget>>,
        wait: WaitMode,
        policy: Arc<dyn ToolPolicy>,
        events: Arc<dyn ProxyEvents>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                gate,
                upstream,
                wait,
                policy,
                events,
                outstanding: Mutex::new(VecDeque::new()),
            }),
            page_link: None,
        }
    }

    /// This gatekeeper, its blocked answers ending with the link `page_link` makes.
    pub fn with_page_link(mut self, page_link: PageLink) -> Self {
        self.page_link = Some(page_link);
        self
    }

    /// The events hook this gatekeeper reports to.
    pub fn events(&self) -> &Arc<dyn ProxyEvents> {
        &self.inner.events
    }

    /// Whether there is an upstream to forward to now, or why not ("not ready"). Cheaper than
    /// [`Gatekeeper::ready_now`]: nothing is cloned (the HTTP face checks on every request and
    /// reads the target itself when it sends).
    pub fn ready(&self) -> Result<(), ErrorKind> {
        self.read_ready(|_| ())
    }

    /// The upstream to forward to now, or why there is none ("not ready").
    pub fn ready_now(&self) -> Result<UpstreamTarget, ErrorKind> {
        self.read_ready(UpstreamTarget::clone)
    }

    /// `read` of the upstream to forward to now, or why there is none.
    fn read_ready<T>(&self, read: impl FnOnce(&UpstreamTarget) -> T) -> Result<T, ErrorKind> {
        if let GateState::Starting { reason } = &*self.inner.gate.borrow() {
            return Err(ErrorKind::NotReady {
                reason: reason.clone(),
            });
        }
        self.inner
            .upstream
            .borrow()
            .as_ref()
            .map(read)
            .ok_or_else(|| ErrorKind::NotReady {
                reason: NO_UPSTREAM.to_owned(),
            })
    }

    /// Like [`Gatekeeper::ready_now`], waiting up to `bound` for readiness (the stdio face:
    /// its client starts it and talks at once, while the upstream may still be being created).
    pub async fn ready_within(&self, bound: Duration) -> Result<UpstreamTarget, ErrorKind> {
        let mut gate = self.inner.gate.clone();
        let mut upstream = self.inner.upstream.clone();
        let deadline = tokio::time::sleep(bound);
        tokio::pin!(deadline);
        loop {
            gate.borrow_and_update();
            upstream.borrow_and_update();
            let error = match self.ready_now() {
                Ok(target) => return Ok(target),
                Err(error) => error,
            };
            tokio::select! {
                changed = gate.changed() => if changed.is_err() { return Err(error) },
                changed = upstream.changed() => if changed.is_err() { return Err(error) },
                () = &mut deadline => return Err(error),
            }
        }
    }

    /// The verdict on one `tools/call` (request or notification). `message` is its bytes and
    /// `view` their parsed view; `context` is asked only if the call is blocked.
    pub fn check_call(
        &self,
        message: &Bytes,
        view: &Message<'_>,
        context: &impl ContextSource,
    ) -> Verdict {
        let params;
        let blocked = {
            let gate = self.inner.gate.borrow();
            match &*gate {
                GateState::Open => return Verdict::Forward,
                GateState::Starting { reason } => {
                    let kind = ErrorKind::NotReady {
                        reason: reason.clone(),
                    };
                    return match view.id {
                        Some(id) => Verdict::Fail(McpError::new(Some(id), kind)),
                        None => Verdict::Drop,
                    };
                }
                GateState::Closed { .. } => {
                    params = view.params();
                    self.inner.policy.blocking(tool_call(&params), &gate)
                }
            }
        };
        if blocked.is_empty() {
            return Verdict::Forward;
        }
        let Some(id) = view.id else {
            self.inner
                .events
                .call_blocked(params.name.as_deref(), Duration::ZERO);
            return Verdict::Drop;
        };
        let call = Call::new(message, id, &params, context.context(&params));
        match self.inner.wait {
            WaitMode::Off => {
                self.inner.events.call_blocked(call.tool(), Duration::ZERO);
                Verdict::Answer(self.blocked_answer(&call, &blocked))
            }
            WaitMode::Hold {
                timeout,
                progress_interval,
            } => {
                self.inner.events.call_held(call.tool());
                Verdict::Hold(Box::new(Hold::new(
                    self.clone(),
                    call,
                    blocked,
                    timeout,
                    progress_interval,
                )))
            }
        }
    }

    /// The verdict on a batch (`elements` as [`super::message::parse_body`] split it).
    pub fn check_batch(
        &self,
        elements: &[(&RawValue, Message<'_>)],
        context: &impl ContextSource,
    ) -> BatchVerdict {
        let blocked: Vec<Vec<PendingToolkit>> = {
            let gate = self.inner.gate.borrow();
            match &*gate {
                GateState::Open => return BatchVerdict::Forward,
                GateState::Starting { reason } => {
                    let kind = ErrorKind::NotReady {
                        reason: reason.clone(),
                    };
                    return BatchVerdict::Fail(McpError::new(None, kind));
                }
                GateState::Closed { .. } => elements
                    .iter()
                    .map(|(_, view)| match view.is_tools_call() {
                        true => self.inner.policy.blocking(tool_call(&view.params()), &gate),
                        false => Vec::new(),
                    })
                    .collect(),
            }
        };
        if blocked.iter().all(Vec::is_empty) {
            return BatchVerdict::Forward;
        }
        let mut answers: Vec<Vec<u8>> = Vec::new();
        for ((raw, view), blocked) in elements.iter().zip(&blocked) {
            let Some(id) = view.id.filter(|_| view.method.is_some()) else {
                continue;
            };
            if blocked.is_empty() {
                answers.push(McpError::new(Some(id), ErrorKind::BatchBlocked).to_json());
                continue;
            }
            let params = view.params();
            let message = Bytes::copy_from_slice(raw.get().as_bytes());
            let call = Call::new(&message, id, &params, context.context(&params));
            self.inner.events.call_blocked(call.tool(), Duration::ZERO);
            answers.push(self.blocked_answer(&call, blocked));
        }
        BatchVerdict::Answer(join_array(&answers))
    }

    /// The call to review after forwarding, when the policy wants its result (the face then
    /// buffers the upstream's answer for this id and passes it to [`Gatekeeper::review`]).
    pub fn review_for(
        &self,
        message: &Bytes,
        view: &Message<'_>,
        context: &impl ContextSource,
    ) -> Option<Call> {
        if !self.inner.policy.reviews_results() {
            return None;
        }
        let id = view.id?;
        let params = view.params();
        if !self.inner.policy.wants_result(tool_call(&params)) {
            return None;
        }
        Some(Call::new(message, id, &params, context.context(&params)))
    }

    /// Reviews the upstream's `response` to a forwarded `call`: `Some(answer)` replaces it.
    pub fn review<'a>(
        &'a self,
        call: &'a Call,
        response: &'a [u8],
    ) -> BoxFuture<'a, Option<Vec<u8>>> {
        // Boxed: the policy's future is a trait object, and a named future type keeps the
        // faces' request futures `Send` without higher-ranked lifetime trouble.
        Box::pin(async move {
            let view = Message::parse(&call.message).ok()?;
            let params = view.params();
            let blocked = self
                .inner
                .policy
                .review_result(tool_call(&params), response)
                .await?;
            if blocked.is_empty() {
                return None;
            }
            self.inner.events.call_blocked(call.tool(), Duration::ZERO);
            Some(self.blocked_answer(call, &blocked))
        })
    }

    fn blocked_answer(&self, call: &Call, pending: &[PendingToolkit]) -> Vec<u8> {
        tracing::info!(
            tool = call.tool().unwrap_or(""),
            "tools/call blocked by the gate"
        );
        let page = self.page_link.as_ref().map(|link| link());
        let answer = answer::blocked_answer_with_page(
            call.id(),
            pending,
            page.as_deref(),
            call.context.url_elicitation,
            call.context.protocol_version.as_deref(),
        );
        self.remember(answer.elicitations, call.context.channel.as_deref());
        answer.bytes
    }

    fn remember(&self, elicitations: Vec<Elicitation>, channel: Option<&str>) {
        if elicitations.is_empty() {
            return;
        }
        let mut outstanding = self.outstanding();
        for elicitation in elicitations {
            outstanding.push_back(Outstanding {
                elicitation,
                channel: channel.map(str::to_owned),
            });
        }
        while outstanding.len() > MAX_OUTSTANDING_ELICITATIONS {
            outstanding.pop_front();
        }
    }

    fn outstanding(&self) -> std::sync::MutexGuard<'_, VecDeque<Outstanding>> {
        // Plain data: a panic elsewhere cannot leave it in a state worse than forgetting.
        self.inner
            .outstanding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `notifications/elicitation/complete` for every elicitation handed out on `channel` whose
    /// toolkit is no longer pending; each is returned once. `None` takes the stdio client's.
    pub fn take_completed(&self, channel: Option<&str>) -> Vec<Vec<u8>> {
        let still_pending: Vec<String> = match &*self.inner.gate.borrow() {
            GateState::Open => Vec::new(),
            GateState::Closed { pending } => pending.iter().map(|t| t.slug.clone()).collect(),
            // Nothing is known while starting: complete nothing yet.
            GateState::Starting { .. } => return Vec::new(),
        };
        let mut outstanding = self.outstanding();
        let mut done = Vec::new();
        outstanding.retain(|entry| {
            let complete = entry.channel.as_deref() == channel
                && !still_pending.contains(&entry.elicitation.slug);
            if complete {
                done.push(answer::elicitation_complete(&entry.elicitation.id));
            }
            !complete
        });
        done
    }

    /// Whether any elicitation handed out on `channel` is still waiting for completion.
    pub fn has_outstanding(&self, channel: Option<&str>) -> bool {
        self.outstanding()
            .iter()
            .any(|entry| entry.channel.as_deref() == channel)
    }

    /// The upstream target watch this gatekeeper reads.
    pub fn upstream(&self) -> watch::Receiver<Option<UpstreamTarget>> {
        self.inner.upstream.clone()
    }

    /// A receiver of gate changes, for faces that complete elicitations when the gate moves.
    pub fn gate_changes(&self) -> watch::Receiver<GateState> {
        self.inner.gate.clone()
    }

    /// The policy's blocking list for a held call under `gate` (re-parsing the call's bytes:
    /// gate changes are rare, and a held call owns only its bytes).
    fn blocking_for(&self, call: &Call, gate: &GateState) -> Vec<PendingToolkit> {
        match Message::parse(&call.message) {
            Ok(view) => self.inner.policy.blocking(tool_call(&view.params()), gate),
            Err(_) => Vec::new(),
        }
    }
}

/// `[a,b,...]` from serialized elements.
fn join_array(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(elements.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (index, element) in elements.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(element);
    }
    out.push(b']');
    out
}

/// A `tools/call` held in wait mode. Drive it with [`Hold::next`] until a final step.
#[derive(Debug)]
pub struct Hold {
    keeper: Gatekeeper,
    call: Call,
    gate: watch::Receiver<GateState>,
    gate_alive: bool,
    pending: Vec<PendingToolkit>,
    started: Instant,
    deadline: tokio::time::Instant,
    interval: Duration,
    next_progress: Option<tokio::time::Instant>,
    progress: u64,
    /// Completions of earlier elicitations, sent one per step.
    notices: VecDeque<Vec<u8>>,
    /// The gate let the call through; forward once `notices` are out.
    released: bool,
}

impl Hold {
    fn new(
        keeper: Gatekeeper,
        call: Call,
        pending: Vec<PendingToolkit>,
        timeout: Duration,
        interval: Duration,
    ) -> Self {
        let now = tokio::time::Instant::now();
        let mut gate = keeper.inner.gate.clone();
        gate.borrow_and_update();
        let progress = call.progress_token.is_some() && call.context.progress;
        Self {
            keeper,
            call,
            gate,
            gate_alive: true,
            pending,
            started: Instant::now(),
            deadline: now + timeout,
            interval: interval.max(MIN_PROGRESS_INTERVAL),
            next_progress: progress.then_some(now),
            progress: 0,
            notices: VecDeque::new(),
            released: false,
        }
    }

    /// Whether this hold sends progress (the request has a progress token and the face can
    /// carry it): a face without a stream for it just waits for the final step.
    pub fn streams(&self) -> bool {
        self.next_progress.is_some()
    }

    /// The held call.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// The next step. Cancel-safe: dropping the future loses nothing but the wait.
    pub async fn next(&mut self) -> HoldStep {
        loop {
            if let Some(notice) = self.notices.pop_front() {
                return HoldStep::Notify(notice);
            }
            if self.released {
                return HoldStep::Forward;
            }
            let now = tokio::time::Instant::now();
            // The bound wins over a progress tick due at the same instant.
            if now >= self.deadline || !self.gate_alive {
                return self.finish();
            }
            if let (Some(at), Some(token)) = (self.next_progress, &self.call.progress_token)
                && now >= at
            {
                self.next_progress = Some(at + self.interval);
                self.progress += 1;
                let note = answer::progress_notification(token, self.progress, &self.pending);
                return HoldStep::Progress(note);
            }
            let wake = self
                .next_progress
                .map_or(self.deadline, |at| at.min(self.deadline));
            tokio::select! {
                changed = self.gate.changed() => {
                    self.gate_alive = changed.is_ok();
                    self.released = self.gate_moved();
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Re-reads the gate after it changed; `true` once nothing blocks the call any more.
    fn gate_moved(&mut self) -> bool {
        let gate = self.gate.borrow_and_update().clone();
        // Earlier elicitations of this client whose toolkit just connected go out first, when
        // there is a stream to carry them.
        if self.call.context.progress {
            let completed = self
                .keeper
                .take_completed(self.call.context.channel.as_deref());
            self.notices.extend(completed);
        }
        match &gate {
            GateState::Open => true,
            GateState::Starting { .. } => false,
            GateState::Closed { .. } => {
                let blocked = self.keeper.blocking_for(&self.call, &gate);
                let released = blocked.is_empty();
                if !released {
                    self.pending = blocked;
                }
                released
            }
        }
    }

    fn finish(&mut self) -> HoldStep {
        let waited = self.started.elapsed();
        let gate = self.gate.borrow().clone();
        match &gate {
            GateState::Open => HoldStep::Forward,
            GateState::Starting { reason } => HoldStep::Fail(McpError::new(
                Some(self.call.id()),
                ErrorKind::NotReady {
                    reason: reason.clone(),
                },
            )),
            GateState::Closed { .. } => {
                let blocked = self.keeper.blocking_for(&self.call, &gate);
                if blocked.is_empty() {
                    return HoldStep::Forward;
                }
                self.keeper
                    .inner
                    .events
                    .call_blocked(self.call.tool(), waited);
                HoldStep::Answer(self.keeper.blocked_answer(&self.call, &blocked))
            }
        }
    }
}

#[cfg(test)]
mod tests;
