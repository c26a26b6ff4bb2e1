//! The run loop `serve`, `stdio` and `demo` share: bind, wire, serve the MCP endpoint and the
//! binary's pages on one listener, announce the state on stderr, stop on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use toolgate_proxy::access::Access;
use toolgate_proxy::config::{ProxyConfig, WaitMode};
use toolgate_proxy::gateway::Gateway;

use super::EXIT_CONFIG;
use crate::config::{Config, ConfigArgs, GateMode, Mode};
use crate::metrics::Metrics;
use crate::runtime::{self, FatalError, Wiring};
use crate::status::StatusView;
use crate::web::{self, App};

/// The listen address when neither configuration nor flags name one.
pub(crate) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8787);

/// The configuration flags `serve` and `stdio` take besides their generic-mode flags (which
/// already cover `--upstream`, `--header`, `--listen` and `--log-level`).
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct ComposioFlags {
    /// TOML configuration file (default: ./toolgate.toml when present).
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<std::path::PathBuf>,
    /// Composio user id (`user_id`).
    #[arg(long, value_name = "ID")]
    pub(crate) user_id: Option<String>,
    /// Required toolkit; repeat or comma-separate (`require`).
    #[arg(long, value_name = "TOOLKIT", value_delimiter = ',')]
    pub(crate) require: Vec<String>,
    /// Composio API origin (`composio.base_url`).
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: Option<String>,
    /// Log format, `text` or `json` (`log.format`).
    #[arg(long, value_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
}

impl ComposioFlags {
    /// The full set of configuration flags, with the ones the command parsed itself.
    pub(crate) fn config_args(
        &self,
        listen: Option<SocketAddr>,
        headers: &[String],
        log_level: Option<&str>,
    ) -> ConfigArgs {
        ConfigArgs {
            config: self.config.clone(),
            user_id: self.user_id.clone(),
            require: self.require.clone(),
            listen: listen.map(|addr| addr.to_string()),
            upstream: None,
            headers: headers.to_vec(),
            base_url: self.base_url.clone(),
            log_level: log_level.map(str::to_owned),
            log_format: self.log_format.clone(),
        }
    }

    /// Loads the layered configuration for a Composio-mode command. `--header-file` belongs
    /// to generic mode and is refused here rather than silently ignored. On failure the
    /// configuration error has been printed and the exit code is returned.
    pub(crate) fn load(
        &self,
        listen: Option<SocketAddr>,
        headers: &[String],
        log_level: Option<&str>,
        header_file: Option<&std::path::Path>,
    ) -> Result<crate::config::Config, ExitCode> {
        let config = crate::config::load(&self.config_args(listen, headers, log_level))
            .map_err(|error| super::config_error(&error))?;
        if header_file.is_some() {
            return Err(super::config_error(&crate::config::ConfigError {
                key: "--header-file".to_owned(),
                message: "only used in generic mode (with --upstream)".to_owned(),
            }));
        }
        Ok(config)
    }
}

/// `toolgate serve` without `--upstream`: Composio mode from the layered configuration.
pub(crate) fn run_composio_serve(args: &super::serve::ServeArgs) -> ExitCode {
    let mut config = match args.composio.load(
        args.listen,
        &args.headers,
        args.log_level.as_deref(),
        args.header_file.as_deref(),
    ) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // The generic-mode flags that make sense here apply too.
    if let Some(path) = &args.mcp_path {
        config.path = path.clone();
    }
    if let Some(drain_timeout) = args.drain_timeout {
        config.drain_timeout = drain_timeout;
    }
    if let Some(token) = std::env::var(&args.token_env)
        .ok()
        .filter(|token| !token.is_empty())
    {
        config.token = Some(secrecy::SecretString::from(token));
    }
    config
        .allowed_hosts
        .extend(args.allowed_hosts.iter().cloned());
    config
        .allowed_origins
        .extend(args.allowed_origins.iter().cloned());
    if let Err(error) = config.validate() {
        return super::config_error(&error);
    }
    crate::logging::init(&config.log);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(run_http(config, |_, _| {}))
}

/// `toolgate stdio` without `--upstream`: MCP on stdin/stdout to the Composio session, plus
/// the connections page and OAuth callback on the listen address (Composio sends the browser
/// there after a Connect Link). Exits the process when the bridge ends.
pub(crate) fn run_composio_stdio(args: &super::stdio::StdioArgs) -> ExitCode {
    let mut config = match args.composio.load(
        args.listen,
        &args.headers,
        args.log_level.as_deref(),
        args.header_file.as_deref(),
    ) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Quiet unless configured otherwise (the flag and TOOLGATE_LOG_LEVEL arrive as the flag).
    if args.log_level.is_none() && config.log.level == crate::config::LogSection::default().level {
        config.log.level = super::stdio::QUIET_LOG_LEVEL.to_owned();
    }
    crate::logging::init(&config.log);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let code = runtime.block_on(async move {
        // The pages are a convenience next to stdio: when the port is taken (a second client
        // launched toolgate), the bridge still works and the links still appear in blocked
        // answers; only the redirect after authorizing lands nowhere.
        let listening = match bind(&config).await {
            Ok(listening) => {
                config.listen = listening.addr;
                Some(listening)
            }
            Err(message) => {
                tracing::warn!("{message}: the connections page and OAuth callback are unavailable");
                None
            }
        };
        let metrics = Metrics::new();
        let wiring = match runtime::start(&config, metrics.clone(), config.require.clone()) {
            Ok(wiring) => wiring,
            Err(error) => {
                eprintln!("toolgate: {error:#}");
                return i32::from(EXIT_CONFIG);
            }
        };
        if let Some(listening) = listening {
            match app(&config, &wiring, metrics) {
                Ok(app) => {
                    let base_url = format!("http://{}", listening.addr);
                    eprintln!("toolgate: connections page {base_url}/connections");
                    tokio::spawn(announce(wiring.status_rx.clone(), base_url));
                    tokio::spawn(web::serve(
                        listening.listener,
                        app,
                        std::future::pending::<()>(),
                        config.drain_timeout,
                    ));
                }
                Err(message) => {
                    eprintln!("toolgate: invalid configuration: {message}");
                    return i32::from(EXIT_CONFIG);
                }
            }
        }
        let stdio_config = toolgate_proxy::stdio::StdioConfig {
            wait: wait_mode(&config),
            // Session creation can take a few Composio round trips (with retries).
            upstream_wait: Duration::from_secs(30),
            ..toolgate_proxy::stdio::StdioConfig::default()
        };
        let Wiring {
            upstream_rx,
            gate_rx,
            events,
            mut task,
            actions,
            ..
        } = wiring;
        let code = tokio::select! {
            code = super::stdio::bridge(stdio_config, upstream_rx, gate_rx, events) => code,
            outcome = &mut task => match outcome {
                Ok(Err(error)) => {
                    let code = fatal(&error);
                    return if code == ExitCode::from(EXIT_CONFIG) { i32::from(EXIT_CONFIG) } else { 1 };
                }
                _ => 1,
            },
        };
        if let Some(tracker) = actions.get() {
            tracker.shutdown();
        }
        code
    });
    // As in generic mode: a pending stdin read would keep the runtime alive.
    std::process::exit(code)
}

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

/// Interval of progress notifications while a call is held in wait mode.
const WAIT_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// The proxy library's configuration from ours.
pub(crate) fn proxy_config(config: &Config) -> ProxyConfig {
    ProxyConfig {
        mcp_path: config.path.clone(),
        allowed_hosts: config
            .allowed_hosts
            .iter()
            .map(|host| strip_port(host).to_owned())
            .collect(),
        allowed_origins: config.allowed_origins.clone(),
        bearer_token: config.token.clone(),
        wait: wait_mode(config),
        drain_timeout: config.drain_timeout,
        ..ProxyConfig::default()
    }
}

/// The gate's wait mode from `[gate]`.
pub(crate) fn wait_mode(config: &Config) -> WaitMode {
    match config.gate.mode {
        GateMode::Block => WaitMode::Off,
        GateMode::Wait => WaitMode::Hold {
            timeout: config.gate.wait_timeout,
            progress_interval: WAIT_PROGRESS_INTERVAL,
        },
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(name, _)| &host[..=name.len()]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A multi-threaded runtime, or a message.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("toolgate: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        })
}

/// Reports a fatal startup error and returns its exit code.
pub(crate) fn fatal(error: &FatalError) -> ExitCode {
    eprintln!("toolgate: {error}");
    match error {
        FatalError::Config { .. } => ExitCode::from(EXIT_CONFIG),
        FatalError::Other(_) => ExitCode::FAILURE,
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
    let proxy = proxy_config(config);
    let access = Access::new(&proxy).with_events(wiring.events.clone());
    let gateway = Gateway::new(
        proxy,
        wiring.upstream_rx.clone(),
        wiring.gate_rx.clone(),
        wiring.events.clone(),
    )
    .map_err(|error| error.to_string())?;
    Ok(Arc::new(App {
        access,
        status: wiring.status_rx.clone(),
        actions: wiring.actions.clone(),
        metrics,
        csrf_token: web::new_csrf_token(),
        gateway,
        callback_wait: web::CALLBACK_CONFIRM_WAIT,
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
    let Wiring {
        mut task, actions, ..
    } = wiring;
    let server = web::serve(
        listening.listener,
        app,
        crate::signals::shutdown_signal(),
        config.drain_timeout,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_lose_their_port() {
        assert_eq!(strip_port("gw.example.com:8443"), "gw.example.com");
        assert_eq!(strip_port("gw.example.com"), "gw.example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
