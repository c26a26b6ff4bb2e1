//! The per-request limits as tower layers, applied by [`crate::server::serve_with`] in this
//! order (outermost first): [`TrackActivityLayer`], [`ConcurrencyLimitLayer`],
//! [`BodyLimitLayer`]. The module doc of [`crate::limits`] says why each sits where it does.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use http::header;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::body::{BodyBudget, Charge, FailureKind, RequestBody};
use super::connections::SlotHandle;
use crate::gateway::{BoxError, ProxyBody, error_response};
use crate::mcp::error::{ErrorKind, McpError};

// === TrackActivity ===

/// Marks the connection busy from a request's head until its answer is fully sent, which is
/// what pauses the connection's idle deadline.
#[derive(Clone, Debug)]
pub(crate) struct TrackActivityLayer {
    slot: SlotHandle,
}

impl TrackActivityLayer {
    /// For the connection `slot`.
    pub(crate) fn new(slot: SlotHandle) -> Self {
        Self { slot }
    }
}

impl<S> Layer<S> for TrackActivityLayer {
    type Service = TrackActivity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackActivity {
            inner,
            slot: self.slot.clone(),
        }
    }
}

/// See [`TrackActivityLayer`].
#[derive(Clone, Debug)]
pub(crate) struct TrackActivity<S> {
    inner: S,
    slot: SlotHandle,
}

impl<S, B> Service<Request<B>> for TrackActivity<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut busy = self.slot.busy();
        let get = request.method() == Method::GET;
        let answer = self.inner.call(request);
        async move {
            let response = answer.await?;
            if get && is_event_stream(&response) {
                busy.standing();
            }
            Ok(response.map(|body| HoldBody::wrap(body, busy)))
        }
        .boxed()
    }
}

fn is_event_stream<B>(response: &Response<B>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

// === ConcurrencyLimit ===

/// Admits at most `max` requests at once (each until its answer is fully sent); the rest get
/// 503 with `Retry-After` at once rather than queueing, so a flood cannot build a backlog.
#[derive(Clone, Debug)]
pub(crate) struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// Shares `permits` across every connection of the listener.
    pub(crate) fn new(permits: Arc<Semaphore>) -> Self {
        Self { permits }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            permits: Arc::clone(&self.permits),
        }
    }
}

/// See [`ConcurrencyLimitLayer`].
#[derive(Clone, Debug)]
pub(crate) struct ConcurrencyLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, B> Service<Request<B>> for ConcurrencyLimit<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            let answer = overloaded("too many requests in flight");
            return async move { Ok(answer) }.boxed();
        };
        let answer = self.inner.call(request);
        async move {
            let response = answer.await?;
            Ok(response.map(|body| HoldBody::wrap(body, permit)))
        }
        .boxed()
    }
}

// === BodyLimit ===

/// Hands the handler a [`RequestBody`] (pause bound, deadline, budget) and answers for it
/// when it fails: 408 for a body too slow, 503 + `Retry-After` when the budget is exhausted,
/// whatever the handler made of the read error.
#[derive(Clone, Debug)]
pub(crate) struct BodyLimitLayer {
    budget: Arc<BodyBudget>,
    idle: Duration,
    total: Duration,
}

impl BodyLimitLayer {
    /// Charges `budget`; bodies may pause for `idle` and take `total` overall.
    pub(crate) fn new(budget: Arc<BodyBudget>, idle: Duration, total: Duration) -> Self {
        Self {
            budget,
            idle,
            total,
        }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`BodyLimitLayer`].
#[derive(Clone, Debug)]
pub(crate) struct BodyLimit<S> {
    inner: S,
    layer: BodyLimitLayer,
}

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ProxyBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let Some(charge) = Charge::admit(&self.layer.budget, declared) else {
            let answer = overloaded("too many request bodies are being received");
            return async move { Ok(answer) }.boxed();
        };
        let charge = Arc::new(charge);
        let (parts, body) = request.into_parts();
        let body = RequestBody::new(body, Arc::clone(&charge), self.layer.idle, self.layer.total);
        let answer = self.inner.call(Request::from_parts(parts, body));
        let (idle, total) = (self.layer.idle, self.layer.total);
        async move {
            let response = answer.await?;
            Ok(match charge.failure() {
                None => response,
                Some(FailureKind::Overloaded) => {
                    overloaded("too many request bodies are being received")
                }
                Some(FailureKind::Timeout) => timed_out(idle, total),
            })
        }
        .boxed()
    }
}

// === answers ===

/// 503 with `Retry-After`: the listener is at a limit, the request was not handled.
fn overloaded(what: &'static str) -> Response<ProxyBody> {
    error_response(&McpError::new(None, ErrorKind::Overloaded(what)))
}

/// 408: the client did not send its body in time.
fn timed_out(idle: Duration, total: Duration) -> Response<ProxyBody> {
    error_response(&McpError::new(None, ErrorKind::BodyTimeout { idle, total }))
}

// === HoldBody ===

/// A response body that keeps `guard` until the body ends (or is dropped), so whatever the
/// guard counts lasts exactly as long as the answer is being sent.
struct HoldBody<G> {
    inner: ProxyBody,
    guard: Option<G>,
}

impl<G: Send + Unpin + 'static> HoldBody<G> {
    fn wrap(inner: ProxyBody, guard: G) -> ProxyBody {
        Self {
            inner,
            guard: Some(guard),
        }
        .boxed_unsync()
    }
}

impl<G: Unpin> Body for HoldBody<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
