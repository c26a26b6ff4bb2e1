//! A local stand-in for Composio's tool-router backend, faithful enough that the official SDKs
//! cannot tell the difference for the calls toolgate makes.
//!
//! It serves, on one hyper listener:
//! - the REST API under `/api/v3.1` (and `/api/v3`): sessions (create, get, PATCH, DELETE),
//!   session toolkits, Connect Links, connected accounts, auth configs, with the real
//!   validation, error envelope and id prefixes;
//! - each session's MCP URL `/tool_router/{trs_id}/mcp` (rmcp Streamable HTTP);
//! - hosted Connect Link pages `/link/{ln_token}` with Allow and Deny buttons;
//! - a **test backdoor** under `/_sandbox/`, which needs no API key and is not part of
//!   Composio's API: answer links (`POST /_sandbox/links/{ln}/allow|deny`), move accounts to
//!   REVOKED, EXPIRED, INACTIVE or ACTIVE
//!   (`POST /_sandbox/accounts/{ca}/revoke|expire|deactivate|activate`), create white-label
//!   auth configs (`POST /_sandbox/auth_configs` with `{"toolkit","name"}`, for the project
//!   of the `x-api-key` given, else the first), inject faults
//!   (`POST|DELETE /_sandbox/faults`), read or clear the request log
//!   (`GET|DELETE /_sandbox/requests`), and toolkit logos (`/_sandbox/logos/{slug}.svg`).
//!
//! Faults: `POST /_sandbox/faults` with `{"path_prefix", "status", "retry_after", "delay_ms",
//! "count"}` makes the next `count` requests whose path starts with `path_prefix` wait
//! `delay_ms`, then answer `status` (with `Retry-After: retry_after`; a 429 gets Composio's
//! plain `{"message": "Rate limit exceeded..."}` body, other statuses the error envelope), or
//! have their connection dropped when `status` is 0, or be served normally when `status` is
//! absent. Without `count` the fault applies until `DELETE /_sandbox/faults`: that is how a test
//! takes "Composio" down for a while and brings it back on the same port.
//!
//! State is in memory and per project: each accepted API key is one project.
//!
//! Where Composio's behaviour is undocumented, the sandbox picks and sticks to this:
//! - lists default to 20 items per page; `cursor` is base64 of `{"page","limit"}`, and an
//!   explicit `limit` overrides the cursor's;
//! - `is_connected=false` applies no filter; `is_connected=true` keeps toolkits whose shown
//!   account is ACTIVE (no-auth toolkits have no account and are left out);
//! - a session's toolkit item shows the pinned account if the session pins one, else the
//!   user's newest ACTIVE account, else the user's newest account in any status;
//! - `/link` answers 404 for an unknown toolkit or one without an auth config, 400 for a
//!   no-auth toolkit, a toolkit the session does not enable, or one with a pinned account; a
//!   link without `callback_url` uses the session's `manage_connections.callback_url`;
//! - a `status=failed` callback also carries `connected_account_id`;
//! - a new account is INITIALIZING for 100 ms, then INITIATED; SHARED accounts serve a session
//!   only when it pins them;
//! - a multi-execute entry for a toolkit without an ACTIVE account fails with an error text
//!   starting `ToolRouterV2_NoActiveConnection:`;
//! - a DELETE of an MCP session is answered 202;
//! - the MCP URL accepts only the `x-api-key` that created the session.

mod catalog;
mod config;
mod control;
mod http;
mod logos;
mod mcp;
mod pages;
mod router;
mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::control::RecordedRequest;
use crate::router::App;

/// The documented demo API key the sandbox accepts by default.
pub const DEMO_API_KEY: &str = "sk_sandbox_demo";

/// How long open connections get to finish after shutdown before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How the sandbox behaves.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Accepted project API keys (`x-api-key`); each key is its own project with its own
    /// sessions and connected accounts.
    pub api_keys: Vec<String>,
    /// How long a Connect Link stays INITIATED before its account becomes EXPIRED.
    pub link_ttl: Duration,
    /// The base URL put into `redirect_url` and `mcp.url` (e.g. `http://sandbox:9900` when
    /// clients reach the sandbox by another name). `None`: the `Host` each request came in on.
    pub public_base_url: Option<String>,
    /// White-label auth configs `(toolkit, app name)` created in every project at start (also
    /// `POST /_sandbox/auth_configs`); their ids are derived from both, `ac_...`.
    pub auth_configs: Vec<(String, String)>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            api_keys: vec![DEMO_API_KEY.to_owned()],
            link_ttl: Duration::from_secs(600),
            public_base_url: None,
            auth_configs: Vec::new(),
        }
    }
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are secrets even in a sandbox: print only how many there are.
        formatter
            .debug_struct("SandboxConfig")
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("link_ttl", &self.link_ttl)
            .field("public_base_url", &self.public_base_url)
            .field("auth_configs", &self.auth_configs)
            .finish()
    }
}

/// Why the sandbox could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listening socket could not be bound or inspected.
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
    /// The detached sandbox's thread or runtime could not be created.
    #[error("cannot start the sandbox runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Serves the sandbox on `listener` until `shutdown` completes, then gives open connections a
/// short grace period.
pub async fn serve(
    listener: TcpListener,
    config: SandboxConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let local_addr = listener.local_addr().map_err(SandboxError::Listen)?;
    let token = CancellationToken::new();
    let app = App::new(local_addr, config, token.child_token());
    let stop = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    run(listener, app, token).await;
    Ok(())
}

/// The accept loop.
async fn run(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "sandbox accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "set_nodelay failed");
        }
        let app = Arc::clone(&app);
        let service = service_fn(move |request| router::handle(Arc::clone(&app), request));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "sandbox connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::debug!("sandbox shutdown grace period elapsed"),
    }
}

/// A running sandbox on `127.0.0.1` and an ephemeral port. Dropping it stops serving.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: CancellationToken,
}

impl Sandbox {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(config: SandboxConfig) -> Result<Self, SandboxError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(SandboxError::Listen)?;
        let addr = listener.local_addr().map_err(SandboxError::Listen)?;
        let shutdown = CancellationToken::new();
        let app = App::new(addr, config, shutdown.child_token());
        tokio::spawn(run(listener, Arc::clone(&app), shutdown.clone()));
        Ok(Self {
            addr,
            app,
            shutdown,
        })
    }

    /// Binds `127.0.0.1:0` and serves from its own thread and tokio runtime, with the real
    /// clock: use it when the code under test runs on a paused clock, which would otherwise
    /// also drive the sandbox's timers and link expiry. Needs no runtime to call.
    pub fn start_detached(config: SandboxConfig) -> Result<Self, SandboxError> {
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(SandboxError::Listen)?;
        listener
            .set_nonblocking(true)
            .map_err(SandboxError::Listen)?;
        let addr = listener.local_addr().map_err(SandboxError::Listen)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("toolgate-sandbox")
            .enable_all()
            .build()
            .map_err(SandboxError::Runtime)?;
        let shutdown = CancellationToken::new();
        let app = App::new(addr, config, shutdown.child_token());
        // The listener must be registered with the runtime that polls it.
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener).map_err(SandboxError::Listen)?
        };
        let (serving_app, serving_token) = (Arc::clone(&app), shutdown.clone());
        std::thread::Builder::new()
            .name("toolgate-sandbox".to_owned())
            .spawn(move || runtime.block_on(run(listener, serving_app, serving_token)))
            .map_err(SandboxError::Runtime)?;
        Ok(Self {
            addr,
            app,
            shutdown,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the value for `COMPOSIO_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far (the same log as `GET /_sandbox/requests`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.app.control.requests()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.app.control.clear_requests();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Stops accepting at once; open connections (and MCP streams, through the child token)
        // end within the grace period, without blocking the dropping thread.
        self.shutdown.cancel();
    }
}
