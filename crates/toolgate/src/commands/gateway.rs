//! The run loop `serve`, `stdio` and `demo` share: bind, wire, serve the MCP endpoint and the
//! binary's pages on one listener, announce the state on stderr, stop on SIGINT/SIGTERM.
//!
//! The commands depend on this module, never the other way round.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use toolgate_proxy::access::Access;
use toolgate_proxy::config::ProxyConfig;
use toolgate_proxy::gateway::Gateway;

use super::EXIT_CONFIG;
use crate::config::{Config, Mode};
use crate::metrics::Metrics;
use crate::runtime::{self, FatalError, Wiring};
use crate::status::StatusView;
use crate::web::{self, App};

/// Keeps generic mode's fixed channels alive for the life of the server.
pub(crate) struct GenericChannels {
    _upstream: watch::Sender<Option<toolgate_proxy::upstream::UpstreamTarget>>,
    _gate: watch::Sender<toolgate_proxy::gate::GateState>,
    _status: watch::Sender<StatusView>,
}

/// Generic mode (`serve --upstream`): the gateway for this proxy configuration and target,
/// mounted next to `/healthz`, `/readyz` and `/metrics` (the pages show no toolkits; the gate
/// is always open).
pub(crate) fn generic_app(
    proxy: ProxyConfig,
    target: toolgate_proxy::upstream::UpstreamTarget,
) -> Result<(Arc<App>, GenericChannels), toolgate_proxy::gateway::ProxyError> {
    let (upstream_tx, upstream_rx) = watch::channel(Some(target));
    let (gate_tx, gate_rx) = watch::channel(toolgate_proxy::gate::GateState::Open);
    let (status_tx, status_rx) = watch::channel(StatusView {
        mode: Mode::Generic.to_string(),
        ready: true,
        gate_open: true,
        ..StatusView::default()
    });
    let metrics = Metrics::new();
    metrics.set_gate(true, true, 0);
    let tracker = Arc::new(runtime::TrackerSlot::default());
    let events = Arc::new(runtime::GatewayEvents::new(
        metrics.clone(),
        Arc::clone(&tracker),
        gate_rx.clone(),
    ));
    let access = Access::new(&proxy).with_events(events.clone());
    let gateway = Gateway::new(proxy, upstream_rx, gate_rx, events)?;
    let app = Arc::new(App {
        access,
        status: status_rx,
        actions: tracker,
        metrics,
        csrf_token: web::new_csrf_token(),
        gateway,
        callback_wait: web::CALLBACK_CONFIRM_WAIT,
        multi: None,
        users: None,
    });
    Ok((
        app,
        GenericChannels {
            _upstream: upstream_tx,
            _gate: gate_tx,
            _status: status_tx,
        },
    ))
}

/// A multi-threaded runtime, or a message.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    build_runtime(tokio::runtime::Builder::new_multi_thread())
}

/// The runtime `builder` describes, with I/O and time, or a message.
pub(crate) fn build_runtime(
    mut builder: tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|error| {
        eprintln!("toolgate: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

/// Reports a fatal startup error and returns its exit code.
pub(crate) fn fatal(error: &FatalError) -> ExitCode {
    ExitCode::from(fatal_code(error))
}

/// Reports a fatal startup error and returns its exit code as a number (for
/// `std::process::exit`).
pub(crate) fn fatal_code(error: &FatalError) -> u8 {
    eprintln!("toolgate: {error}");
    match error {
        FatalError::Config { .. } => EXIT_CONFIG,
        FatalError::Other(_) => 1,
    }
}

/// What the HTTP face is running on.
pub(crate) struct Listening {
    /// The bound listener.
    pub(crate) listener: TcpListener,
    /// Its address.
    pub(crate) addr: SocketAddr,
}

/// Binds the configured listen address.
pub(crate) async fn bind(config: &Config) -> Result<Listening, String> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    Ok(Listening { listener, addr })
}

/// The routes (MCP + pages) for this wiring.
pub(crate) fn app(config: &Config, wiring: &Wiring, metrics: Metrics) -> Result<Arc<App>, String> {
    let proxy = config.proxy_config();
    let access = Access::new(&proxy).with_events(wiring.events.clone());
    let keeper = wiring.gatekeeper(proxy.wait);
    let gateway = Gateway::with_gatekeeper(proxy, keeper).map_err(|error| error.to_string())?;
    let multi = crate::auth::single_front(config, gateway.clone(), wiring)
        .map_err(|error| format!("{error:#}"))?;
    Ok(Arc::new(App {
        access,
        status: wiring.status_rx.clone(),
        actions: wiring.actions.clone(),
        metrics,
        csrf_token: web::single_user_csrf_token(&config.session_key, config.user_id.as_deref()),
        gateway,
        callback_wait: web::CALLBACK_CONFIRM_WAIT,
        multi,
        users: None,
    }))
}

/// Prints the status table and the Connect Links on stderr once the first check is done, and
/// again whenever the gate opens or closes.
pub(crate) async fn announce(mut status: watch::Receiver<StatusView>, base_url: String) {
    let mut last_shown: Option<(bool, Vec<Option<String>>)> = None;
    loop {
        let view = status.borrow_and_update().clone();
        if view.ready {
            let links: Vec<Option<String>> = view
                .toolkits
                .iter()
                .map(|toolkit| toolkit.connect_url.clone())
                .collect();
            let key = (view.gate_open, links);
            if last_shown.as_ref() != Some(&key) {
                eprint!("{}", announcement(&view, &base_url));
                last_shown = Some(key);
            }
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

/// The text of one announcement.
pub(crate) fn announcement(view: &StatusView, base_url: &str) -> String {
    let mut text = String::new();
    if view.toolkits.is_empty() {
        return text;
    }
    text.push_str(&format!(
        "\ntoolgate: required toolkits ({}):\n{}",
        if view.gate_open {
            "all connected, tool calls pass"
        } else {
            "tool calls are blocked until all are connected"
        },
        view.table()
    ));
    // Each link once: the table's CONNECT LINK column already carries it.
    if view
        .toolkits
        .iter()
        .any(|toolkit| toolkit.connect_url.is_some())
    {
        text.push_str(&format!(
            "Open each CONNECT LINK above, or the connections page: {base_url}/connections\n"
        ));
    }
    text
}

/// Runs the HTTP gateway for `config` until SIGINT/SIGTERM or a fatal startup error.
/// `on_listening` runs once the listener is bound (the demo prints its snippets there).
pub(crate) async fn run_http(
    mut config: Config,
    on_listening: impl FnOnce(SocketAddr, &Config),
) -> ExitCode {
    let listening = match bind(&config).await {
        Ok(listening) => listening,
        Err(message) => {
            eprintln!("toolgate: {message}");
            return ExitCode::FAILURE;
        }
    };
    // The actual address (port 0 picks one): the default callback URL must point at it.
    config.listen = listening.addr;
    if crate::auth::multi_user(&config) {
        return crate::auth::serve_multi(config, listening).await;
    }
    let metrics = Metrics::new();
    let wiring = match runtime::start(&config, metrics.clone(), config.require.clone()) {
        Ok(wiring) => wiring,
        Err(error) => {
            eprintln!("toolgate: {error:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let app = match app(&config, &wiring, metrics) {
        Ok(app) => app,
        Err(message) => {
            eprintln!("toolgate: invalid configuration: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let base_url = format!("http://{}", listening.addr);
    eprintln!(
        "toolgate: listening on {base_url} ({} mode); MCP endpoint {base_url}{}; connections page {base_url}/connections",
        config.mode(),
        config.path
    );
    on_listening(listening.addr, &config);
    if config.mode() == Mode::Composio {
        tokio::spawn(announce(wiring.status_rx.clone(), base_url));
    }
    let drain = config.drain_timeout;
    serve_until_stopped(
        listening.listener,
        app,
        wiring,
        config.server_limits(),
        drain,
    )
    .await
}

/// Serves until SIGINT/SIGTERM (then drains) or a fatal startup error; stops the tracker.
async fn serve_until_stopped(
    listener: TcpListener,
    app: Arc<App>,
    wiring: Wiring,
    limits: toolgate_proxy::limits::ServerLimits,
    drain: Duration,
) -> ExitCode {
    let Wiring {
        mut task, actions, ..
    } = wiring;
    let server = web::serve(
        listener,
        app,
        limits,
        crate::signals::shutdown_signal(),
        drain,
    );
    tokio::pin!(server);
    let code = tokio::select! {
        () = &mut server => ExitCode::SUCCESS,
        outcome = &mut task => match outcome {
            Ok(Err(error)) => return fatal(&error),
            // The startup task ended normally (tracker stopped) or panicked: keep serving
            // with the last state until the signal.
            _ => {
                server.await;
                ExitCode::SUCCESS
            }
        },
    };
    if let Some(tracker) = actions.get() {
        tracker.shutdown();
    }
    task.abort();
    tracing::info!("stopped");
    code
}
