//! `toolgate stdio`: the stdio face for clients that only launch local processes (Claude
//! Desktop). In Composio mode (the default) it bridges to the Composio session and serves the
//! connections page and OAuth callback on the listen address; in generic mode (`upstream`,
//! e.g. `--upstream URL --header 'Name: value'`) it is a drop-in for
//! `npx mcp-remote URL --header ...` with the same header conventions. Both modes read the same
//! layered configuration ([`crate::config::load_with`]), quiet (`warn`) by default.
//!
//! stdout belongs to MCP messages: logs go to stderr, a panic message goes to stderr, and only
//! the bridge's writer task touches stdout. The process exits explicitly once the bridge
//! returns, because a pending read on tokio's stdin would otherwise hold the runtime open.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;
use toolgate_proxy::events::{NoEvents, ProxyEvents};
use toolgate_proxy::gate::GateState;
use toolgate_proxy::stdio::{StdioConfig, StdioExit, run_stdio};
use toolgate_proxy::upstream::UpstreamTarget;

use super::gateway::{self, Listening};
use crate::config::{self, Config, ConfigArgs, Flags, HttpArgs, LogSection};
use crate::metrics::Metrics;
use crate::runtime::{self, Wiring};

/// Arguments of `toolgate stdio`.
#[derive(Debug, clap::Args)]
pub(crate) struct StdioArgs {
    /// The configuration flags (in Composio mode, `--listen` is where the connections page and
    /// the OAuth callback listen; the MCP traffic itself stays on stdin/stdout).
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// The default log level of the stdio face: Claude Desktop shows stderr in its MCP log.
const QUIET_LOG_LEVEL: &str = "warn";

/// Sends panic messages to stderr only. Installed before anything else runs: a panic message
/// on stdout would corrupt the client's message stream.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "toolgate stdio: internal error: {info}");
    }));
}

pub(crate) fn run(args: StdioArgs) -> ExitCode {
    install_panic_hook();
    let flags = Flags {
        config: &args.config,
        http: &HttpArgs::default(),
    };
    let defaults = Config {
        log: LogSection {
            level: QUIET_LOG_LEVEL.to_owned(),
            ..LogSection::default()
        },
        ..Config::default()
    };
    let mut config = match config::load_with(flags, &defaults) {
        Ok(config) => config,
        Err(error) => return super::config_error(&error),
    };
    // RUST_LOG is how people debug a server their MCP client launched: it wins here.
    if let Some(filter) = std::env::var("RUST_LOG")
        .ok()
        .filter(|filter| !filter.is_empty())
    {
        config.log.level = filter;
    }
    crate::logging::init(&config.log);
    let target = match config.generic_target() {
        Ok(target) => target,
        Err(error) => return super::config_error(&error),
    };
    let runtime = match single_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let code = runtime.block_on(async move {
        match target {
            Some(target) => generic(&config, target).await,
            None => composio(config).await,
        }
    });
    // Exit now: tokio's stdin read cannot be cancelled, and dropping the runtime would wait
    // for it. Everything worth flushing was flushed by the bridge's writer.
    std::process::exit(code)
}

/// The bridge's runtime: one thread. stdio is one client on one pipe; a second worker thread
/// buys nothing but cross-thread wake-ups at the hops of a call (stdin, request task, upstream
/// connection, writer): about 6 futex calls per call under strace, none on one thread, and
/// 20 system calls per call down to 9. `serve` defaults to one thread too, in both modes.
fn single_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    gateway::build_runtime(tokio::runtime::Builder::new_current_thread())
}

/// Generic mode: no Composio session and nothing to connect, so the gate is always open.
async fn generic(config: &Config, target: UpstreamTarget) -> i32 {
    tracing::info!(upstream = ?target, "bridging stdio to the upstream");
    let (_upstream_tx, upstream_rx) = watch::channel(Some(target));
    let (_gate_tx, gate_rx) = watch::channel(GateState::Open);
    bridge(
        config.stdio_config(),
        upstream_rx,
        gate_rx,
        Arc::new(NoEvents),
    )
    .await
}

/// Composio mode: the bridge to the session, the pages next to it, until the bridge ends or
/// the startup fails.
async fn composio(mut config: Config) -> i32 {
    // The pages are a convenience next to stdio: when the port is taken (a second client
    // launched toolgate), the bridge still works and the links still appear in blocked
    // answers; only the redirect after authorizing lands nowhere.
    let listening = match gateway::bind(&config).await {
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
            return i32::from(super::EXIT_CONFIG);
        }
    };
    if let Some(listening) = listening
        && let Err(code) = serve_pages(&config, &wiring, metrics, listening)
    {
        return code;
    }
    let stdio_config = config.stdio_config();
    let keeper = wiring.gatekeeper(stdio_config.wait);
    let Wiring {
        mut task, actions, ..
    } = wiring;
    let code = tokio::select! {
        code = bridge_with(stdio_config, keeper) => code,
        outcome = &mut task => match outcome {
            Ok(Err(error)) => return i32::from(gateway::fatal_code(&error)),
            _ => 1,
        },
    };
    if let Some(tracker) = actions.get() {
        tracker.shutdown();
    }
    code
}

/// Serves the connections page and the OAuth callback (and the MCP endpoint) on `listening`
/// for the life of the process.
fn serve_pages(
    config: &Config,
    wiring: &Wiring,
    metrics: Metrics,
    listening: Listening,
) -> Result<(), i32> {
    let app = gateway::app(config, wiring, metrics).map_err(|message| {
        eprintln!("toolgate: invalid configuration: {message}");
        i32::from(super::EXIT_CONFIG)
    })?;
    let base_url = format!("http://{}", listening.addr);
    eprintln!("toolgate: connections page {base_url}/connections");
    tokio::spawn(gateway::announce(wiring.status_rx.clone(), base_url));
    tokio::spawn(crate::web::serve(
        listening.listener,
        app,
        config.server_limits(),
        std::future::pending::<()>(),
        config.drain_timeout,
    ));
    Ok(())
}

/// [`bridge`] with the caller's gate policy (Composio mode: its tool policy).
pub(crate) async fn bridge_with(
    config: StdioConfig,
    keeper: toolgate_proxy::mcp::gatekeeper::Gatekeeper,
) -> i32 {
    let result = toolgate_proxy::stdio::run_stdio_with(
        stdin_reader(),
        stdout_writer(),
        config,
        keeper,
        crate::signals::shutdown_signal(),
    )
    .await;
    exit_code(result)
}

/// Bridges the process's stdin/stdout until EOF or SIGINT/SIGTERM; returns the exit code.
/// The caller exits the process with it right away (see the module docs).
pub(crate) async fn bridge(
    config: StdioConfig,
    upstream_rx: watch::Receiver<Option<UpstreamTarget>>,
    gate_rx: watch::Receiver<GateState>,
    events: Arc<dyn ProxyEvents>,
) -> i32 {
    let result = run_stdio(
        stdin_reader(),
        stdout_writer(),
        config,
        upstream_rx,
        gate_rx,
        events,
        crate::signals::shutdown_signal(),
    )
    .await;
    exit_code(result)
}

/// The exit code for how the bridge ended.
fn exit_code(result: Result<StdioExit, toolgate_proxy::stdio::StdioError>) -> i32 {
    match result {
        Ok(StdioExit::InputClosed) => {
            tracing::info!("stdin closed; exiting");
            0
        }
        Ok(StdioExit::Shutdown) => {
            tracing::info!("signal received; exiting");
            0
        }
        Err(error) => {
            tracing::error!(%error, "stdio bridge failed");
            let _ = writeln!(std::io::stderr(), "toolgate stdio: {error}");
            1
        }
    }
}

/// stdin as an async reader. When it is a pipe (how MCP clients launch servers) it is read
/// through the reactor, without a blocking-pool thread hop per read; otherwise (a terminal, a
/// file) through tokio's blocking stdin.
fn stdin_reader() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        let pipe = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .and_then(tokio::net::unix::pipe::Receiver::from_owned_fd);
        if let Ok(pipe) = pipe {
            return Box::new(pipe);
        }
    }
    Box::new(tokio::io::stdin())
}

/// The MCP message stream as an async writer, and the stdout guard: the bridge writes through
/// a private duplicate of stdout, and fd 1 itself is pointed at stderr, so a stray print from
/// any code (ours, a dependency's) lands in the log and can never corrupt the message stream.
/// Through the reactor when stdout is a pipe (see [`stdin_reader`]).
fn stdout_writer() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        let private = std::io::stdout().as_fd().try_clone_to_owned();
        if let Ok(private) = private {
            if let Err(error) = rustix::stdio::dup2_stdout(std::io::stderr()) {
                tracing::warn!(%error, "cannot point fd 1 at stderr; stdout stays unguarded");
            }
            // `from_owned_fd` consumes the descriptor even when it is not a pipe, so it gets a
            // copy and the original remains for the blocking fallback.
            if let Ok(pipe) = private
                .try_clone()
                .and_then(tokio::net::unix::pipe::Sender::from_owned_fd)
            {
                return Box::new(pipe);
            }
            return Box::new(tokio::fs::File::from_std(std::fs::File::from(private)));
        }
    }
    Box::new(tokio::io::stdout())
}
