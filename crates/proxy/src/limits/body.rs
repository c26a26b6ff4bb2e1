//! The request body every handler on the listener reads: the client's body with a pause bound,
//! an overall deadline, and its bytes charged to the listener-wide body budget.
//!
//! Bytes are charged as the handler pulls them and stay charged until the request's answer
//! head is produced (the handler may still hold them, e.g. a call held in wait mode), so the
//! budget bounds what is really buffered, unfinished bodies included.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client paused longer than the idle bound (client's fault).
    #[error("the request body stalled for more than {0:?}")]
    Stalled(Duration),
    /// The client took longer than the overall deadline (client's fault).
    #[error("the request body was not received within {0:?}")]
    TooSlow(Duration),
    /// Buffering more would exceed the listener's body budget (load; the client may retry).
    #[error("too many request bodies are being received; retry shortly")]
    Overloaded,
    /// The connection failed while reading (client or network).
    #[error("the request body could not be read: {0}")]
    Read(#[source] hyper::Error),
}

impl BodyError {
    /// Whether the listener, not the client, is the cause (a retry may succeed).
    pub fn is_overload(&self) -> bool {
        matches!(self, Self::Overloaded)
    }
}

/// The listener-wide count of buffered request-body bytes.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    cap: usize,
    /// The most one request is charged: what a handler keeps of a body at most.
    per_request: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    /// A budget of `cap` bytes, charging each request at most `per_request`.
    pub(crate) fn new(cap: usize, per_request: usize) -> Self {
        Self {
            cap,
            per_request: per_request.min(cap),
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes charged now (for tests and diagnostics).
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.cap)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One request's share of the budget; returned when the last holder drops it.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<BodyBudget>,
    /// Bytes taken from the budget for this request (a declared length is taken up front).
    taken: AtomicUsize,
    /// Bytes the handler has pulled so far.
    pulled: AtomicUsize,
    /// Why the body failed, for the layer that turns it into an answer.
    failure: OnceLock<FailureKind>,
}

/// The failure the body layer answers for (the read error itself went to the handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Stalled or too slow: 408.
    Timeout,
    /// Budget exhausted: 503.
    Overloaded,
}

impl Charge {
    /// Admits a request declaring `declared` bytes (`None` without a `Content-Length`):
    /// `None` when the budget is already full or cannot hold the declared length.
    pub(crate) fn admit(budget: &Arc<BodyBudget>, declared: Option<u64>) -> Option<Self> {
        // Beyond what a handler keeps, the rest of a body is discarded as it arrives (the
        // gateway reads on past its cap so the client sees its 413): it costs no memory.
        let reserve = declared
            .map_or(0, |length| usize::try_from(length).unwrap_or(usize::MAX))
            .min(budget.per_request);
        if budget.used() >= budget.cap || !budget.try_take(reserve) {
            return None;
        }
        Some(Self {
            budget: Arc::clone(budget),
            taken: AtomicUsize::new(reserve),
            pulled: AtomicUsize::new(0),
            failure: OnceLock::new(),
        })
    }

    /// Charges `bytes` more pulled bytes (up to the per-request ceiling); false when the budget
    /// cannot hold them.
    fn pull(&self, bytes: usize) -> bool {
        let pulled = self
            .pulled
            .fetch_add(bytes, Ordering::AcqRel)
            .saturating_add(bytes)
            .min(self.budget.per_request);
        let taken = self.taken.load(Ordering::Acquire);
        if pulled <= taken {
            return true;
        }
        let extra = pulled - taken;
        if !self.budget.try_take(extra) {
            return false;
        }
        self.taken.fetch_add(extra, Ordering::AcqRel);
        true
    }

    /// Why the body failed, if it did.
    pub(crate) fn failure(&self) -> Option<FailureKind> {
        self.failure.get().copied()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give_back(*self.taken.get_mut());
    }
}

/// The request body handlers on the listener receive ([`crate::server::serve_with`]).
///
/// It yields the client's frames unchanged, and fails with a [`BodyError`] when the client
/// pauses too long, takes too long overall, or the listener's body budget is exhausted.
#[derive(Debug)]
pub struct RequestBody<B = Incoming> {
    inner: B,
    charge: Arc<Charge>,
    /// Bounds of this body, from the listener's limits.
    idle: Duration,
    total: Duration,
    /// Overall deadline, fixed when the head was received.
    deadline: Instant,
    /// Fires at the earlier of the idle and the overall deadline; created at the second
    /// poll that finds nothing (see [`Self::poll_deadline`]).
    timer: Option<Pin<Box<Sleep>>>,
    /// A poll already found nothing once.
    waited: bool,
    idle_deadline: Instant,
    done: bool,
}

impl<B> RequestBody<B> {
    /// Wraps `inner`, whose head arrived now.
    pub(crate) fn new(inner: B, charge: Arc<Charge>, idle: Duration, total: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            charge,
            idle,
            total,
            deadline: now + total,
            timer: None,
            idle_deadline: now + idle,
            waited: false,
            done: false,
        }
    }

    fn fail(
        &mut self,
        kind: FailureKind,
        error: BodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let _ = self.charge.failure.set(kind);
        self.done = true;
        Poll::Ready(Some(Err(error)))
    }

    /// Polls the timer; `Some` with the error when a deadline has passed.
    ///
    /// The first time nothing is there, the task is only woken again instead: hyper hands
    /// the body over from the connection's read buffer one turn later, so the timer would
    /// almost never be needed, and registering it costs a wake of tokio's driver (an
    /// eventfd `write` and an extra `epoll_wait`) per request. The deadlines are the same.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<BodyError> {
        if !self.waited {
            self.waited = true;
            cx.waker().wake_by_ref();
            return None;
        }
        let next = self.idle_deadline.min(self.deadline);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
        if timer.deadline() != next {
            timer.as_mut().reset(next);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        Some(if self.deadline <= self.idle_deadline {
            BodyError::TooSlow(self.total)
        } else {
            BodyError::Stalled(self.idle)
        })
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                if !this.charge.pull(len) {
                    return this.fail(FailureKind::Overloaded, BodyError::Overloaded);
                }
                this.idle_deadline = Instant::now() + this.idle;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.done = true;
                Poll::Ready(Some(Err(BodyError::Read(error))))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.poll_deadline(cx) {
                Some(error) => this.fail(FailureKind::Timeout, error),
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
