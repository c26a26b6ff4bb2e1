//! Serving: accept connections on a bound listener (HTTP/1.1 and h2c), hand each request to a
//! handler within the listener's [`ServerLimits`], and drain gracefully on shutdown.
//!
//! [`serve`] runs a [`Gateway`] alone, behind the access rules of its configuration.
//! [`serve_with`] takes any handler, so the binary can put its own routes next to the MCP
//! endpoint on one listener (each route passing [`crate::access::Access`] first):
//!
//! ```no_run
//! # use toolgate_proxy::access::Access;
//! # use toolgate_proxy::gateway::{Gateway, not_found};
//! # async fn example(listener: tokio::net::TcpListener, gateway: Gateway) {
//! let access = Access::new(gateway.config());
//! let router = move |request: http::Request<toolgate_proxy::limits::RequestBody>| {
//!     let (gateway, access) = (gateway.clone(), access.clone());
//!     async move {
//!         match request.uri().path() {
//!             path if path == gateway.mcp_path() => {
//!                 access.serve_mcp(request, |request| gateway.handle(request)).await
//!             }
//!             // "/healthz" => ..., "/connections" => ...
//!             _ => not_found(),
//!         }
//!     }
//! };
//! toolgate_proxy::server::serve_with(
//!     listener,
//!     router,
//!     toolgate_proxy::limits::ServerLimits::default(),
//!     std::time::Duration::from_secs(10),
//!     async { let _ = tokio::signal::ctrl_c().await; },
//! )
//! .await;
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::access::Access;
use crate::gateway::{Gateway, ProxyBody, not_found};
use crate::limits::{
    AcceptFailures, BodyBudget, BodyLimitLayer, ConcurrencyLimitLayer, ConnectionSlot, Connections,
    LogLimiter, RequestBody, ServerLimits, TrackActivityLayer, Watchdog, is_fd_exhaustion,
};
use crate::socket::Socket;

/// Serves `gateway` on `listener` (its MCP path; every other path gets 404) with the default
/// [`ServerLimits`] until `shutdown` completes, then drains for at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let access = Access::new(gateway.config()).with_events(gateway.events());
    let router = move |request: Request<RequestBody>| {
        let (gateway, access) = (gateway.clone(), access.clone());
        async move {
            if request.uri().path() == gateway.mcp_path() {
                access
                    .serve_mcp(request, |request| gateway.handle(request))
                    .await
            } else {
                not_found()
            }
        }
    };
    serve_with(
        listener,
        router,
        ServerLimits::default(),
        drain_timeout,
        shutdown,
    )
    .await;
}

/// Serves `handler` on `listener` within `limits` until `shutdown` completes: then stops
/// accepting, lets in-flight requests and open streams finish for up to `drain_timeout`, and
/// cuts off what is left.
///
/// Accept errors (e.g. out of file descriptors) never end the server: they are logged at a
/// bounded rate, the longest-idle connection is closed when descriptors ran out, and the loop
/// pauses before accepting again.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    handler: H,
    limits: ServerLimits,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<RequestBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let listening = Listening::new(handler, &limits);
    let graceful = GracefulShutdown::new();
    let cut_off = CancellationToken::new();
    let mut failures = AcceptFailures::new();
    let mut refused = LogLimiter::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener, &listening.connections, &mut failures) => accepted,
            () = &mut shutdown => break,
        };
        let Some(admitted) = listening.connections.admit() else {
            if let Some(suppressed) = refused.allow() {
                tracing::warn!(
                    %peer,
                    suppressed,
                    max = limits.max_connections,
                    "connection limit reached with every connection busy: closing the new one"
                );
            }
            continue;
        };
        listening.spawn(stream, peer, admitted.slot, &graceful, &cut_off);
        if admitted.evicted {
            // Let the evicted connection's task close its socket before accepting more, so
            // descriptors stay near the cap even while a flood is queued in the backlog.
            tokio::task::yield_now().await;
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining open requests");
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain_timeout,
            "drain timeout reached: closing remaining connections"
        );
        cut_off.cancel();
    }
}

/// Accepts the next connection, riding out failures: when descriptors ran out, the
/// longest-idle connection is closed so the next attempt can succeed; every failure pauses
/// (growing while nothing can be freed), so EMFILE never becomes a busy loop.
async fn accept(
    listener: &TcpListener,
    connections: &Connections,
    failures: &mut AcceptFailures,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                failures.succeeded();
                return accepted;
            }
            Err(error) => {
                let freed = is_fd_exhaustion(&error) && connections.evict_one();
                match failures.failed(&error, freed) {
                    Duration::ZERO => tokio::task::yield_now().await,
                    pause => tokio::time::sleep(pause).await,
                }
            }
        }
    }
}

/// What every connection of one listener shares.
struct Listening<H> {
    handler: H,
    builder: auto::Builder<TokioExecutor>,
    connections: Arc<Connections>,
    permits: Arc<Semaphore>,
    body_limit: BodyLimitLayer,
}

impl<H, F> Listening<H>
where
    H: Fn(Request<RequestBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    fn new(handler: H, limits: &ServerLimits) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // A client that shuts its write side after the request still gets the answer.
            .half_close(true)
            // The connection's own deadline (limits::connections) covers the head for every
            // protocol; hyper's HTTP/1-only timer would be a second, narrower copy.
            .header_read_timeout(None);
        Self {
            handler,
            builder,
            connections: Arc::new(Connections::new(
                limits.max_connections,
                limits.header_timeout,
                limits.idle_timeout,
            )),
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            body_limit: BodyLimitLayer::new(
                Arc::new(BodyBudget::new(
                    limits.max_buffered_body_bytes,
                    limits.kept_body_bytes,
                )),
                limits.body_idle_timeout,
                limits.body_timeout,
            ),
        }
    }

    /// Serves one accepted connection on its own task until it ends, idles past its deadline,
    /// is evicted, or the drain is cut off.
    fn spawn(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: ConnectionSlot,
        graceful: &GracefulShutdown,
        cut_off: &CancellationToken,
    ) {
        // MCP messages are small and latency-bound: never wait to coalesce them.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "could not set TCP_NODELAY");
        }
        let stream = match Socket::new(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%error, %peer, "could not register an accepted connection");
                return;
            }
        };
        let service = ServiceBuilder::new()
            // Outermost, so every request counts as activity, shed ones included: the idle
            // deadline must pause exactly while something is in flight on this connection.
            .layer(TrackActivityLayer::new(slot.handle()))
            // Before any body byte is read, so a shed request costs one small answer.
            .layer(ConcurrencyLimitLayer::new(Arc::clone(&self.permits)))
            // Innermost, so only admitted requests take body budget; it wraps the body the
            // handler reads, and answers for it when that body fails.
            .layer(self.body_limit.clone())
            .service(Handler(self.handler.clone()));
        let connection = self
            .builder
            .serve_connection(
                TokioIo::new(stream.clone()),
                TowerToHyperService::new(service),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        // Cancelled by the drain's cut-off, or by the watchdog when the connection must close.
        let stop = cut_off.child_token();
        tokio::spawn(watchdog(slot.watchdog(), stream, stop.clone(), peer));
        tokio::spawn(async move {
            // However the connection ends, its watchdog ends with it.
            let _watchdog = stop.clone().drop_guard();
            tokio::select! {
                biased;
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                }
                () = stop.cancelled() => {}
            }
            drop(slot);
        });
    }
}

/// Stops a connection (through `stop`) when its slot says it must close: idle past its
/// deadline, evicted, or abandoned by its client.
///
/// A task of its own, so that it runs only when its timer or its slot's state changes. Polled
/// beside the connection in one task, its timer and watches were polled again on every wake
/// of the connection, about five times per request (some 7 % of the instructions of a
/// forwarded request).
async fn watchdog(watchdog: Watchdog, stream: Socket, stop: CancellationToken, peer: SocketAddr) {
    tokio::select! {
        () = watchdog.closed(&stream) => {
            tracing::debug!(%peer, "closing a connection idle past its deadline or evicted");
            stop.cancel();
        }
        () = stop.cancelled() => {}
    }
}

/// The caller's handler as the innermost tower service.
#[derive(Clone)]
struct Handler<H>(H);

impl<H, F> tower::Service<Request<RequestBody>> for Handler<H>
where
    H: Fn(Request<RequestBody>) -> F,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response<ProxyBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    /// Boxed here, innermost: the handler's future is large (the whole gateway call), and the
    /// layers around it each wrap what they are given in a future of their own; given it
    /// unboxed, each wrap moved all of it again (six copies per request under callgrind,
    /// about 9 % of the HTTP face's instructions), given a box they move a pointer.
    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        use futures_util::FutureExt;
        Box::pin((self.0)(request)).map(Ok).boxed()
    }
}
