//! Serving: accept connections on a bound listener (HTTP/1.1 and h2c), hand each request to a
//! handler, and drain gracefully on shutdown.
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
//! let router = move |request: http::Request<hyper::body::Incoming>| {
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
//!     std::time::Duration::from_secs(10),
//!     async { let _ = tokio::signal::ctrl_c().await; },
//! )
//! .await;
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::gateway::{Gateway, ProxyBody, not_found};

/// How long a client may take to send its request headers (slow-loris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `gateway` on `listener` (its MCP path; every other path gets 404) until `shutdown`
/// completes, then drains for at most the gateway's configured drain timeout.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let access = Access::new(gateway.config()).with_events(gateway.events());
    let router = move |request: Request<Incoming>| {
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
    serve_with(listener, router, drain_timeout, shutdown).await;
}

/// Serves `handler` on `listener` until `shutdown` completes: then stops accepting, lets
/// in-flight requests and open streams finish for up to `drain_timeout`, and cuts off what is
/// left.
///
/// Accept errors (e.g. out of file descriptors) are logged and retried after a short pause;
/// they never end the server.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    handler: H,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let cut_off = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    // Typically EMFILE: give in-flight connections a moment to close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // MCP messages are small and latency-bound: never wait to coalesce them.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "could not set TCP_NODELAY");
        }
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let cut_off = cut_off.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                }
                () = cut_off.cancelled() => {}
            }
        });
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
