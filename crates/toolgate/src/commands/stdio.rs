//! `toolgate stdio`: the stdio face for clients that only launch local processes (Claude
//! Desktop). Generic mode, `--upstream URL --header 'Name: value'`, is a drop-in for
//! `npx mcp-remote URL --header ...` with the same header conventions.
//!
//! stdout belongs to MCP messages: logs go to stderr, a panic message goes to stderr, and only
//! the bridge's writer task touches stdout. The process exits explicitly once the bridge
//! returns, because a pending read on tokio's stdin would otherwise hold the runtime open.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;
use toolgate_proxy::events::{NoEvents, ProxyEvents};
use toolgate_proxy::gate::GateState;
use toolgate_proxy::header_args::{header_map, parse_header_arg, parse_header_file};
use toolgate_proxy::stdio::{StdioConfig, StdioExit, run_stdio};
use toolgate_proxy::upstream::UpstreamTarget;
use tracing_subscriber::EnvFilter;
use url::Url;

/// Arguments of `toolgate stdio`.
#[derive(Debug, clap::Args)]
pub(crate) struct StdioArgs {
    /// The upstream Streamable HTTP MCP endpoint, e.g. `https://example.com/mcp`. Without it,
    /// toolgate runs in Composio mode from the configuration (file, environment, flags below).
    #[arg(long)]
    pub(crate) upstream: Option<String>,
    /// A header added to every upstream request: `Name: value` or `Name:value`; `${VAR}` in the
    /// value is replaced by that environment variable. Repeatable; overrides `--header-file`.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub(crate) headers: Vec<String>,
    /// A file of headers, one `Name: value` per line (`#` comments), to keep secrets out of the
    /// process list.
    #[arg(long, value_name = "PATH")]
    pub(crate) header_file: Option<PathBuf>,
    /// Allow a plain-HTTP upstream that is not on this machine (headers would cross the network
    /// unencrypted).
    #[arg(long)]
    pub(crate) allow_http: bool,
    /// Log filter for stderr, e.g. `info` or `toolgate_proxy=debug`. `RUST_LOG` wins when set.
    /// Quiet (`warn`) by default: Claude Desktop shows stderr in its MCP log.
    /// In Composio mode the configuration's `log.level` applies when neither is set.
    #[arg(long, env = "TOOLGATE_LOG_LEVEL")]
    pub(crate) log_level: Option<String>,
    /// Composio mode: where the connections page and the OAuth callback listen (default
    /// 127.0.0.1:8787; the MCP traffic itself stays on stdin/stdout).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<std::net::SocketAddr>,
    /// Composio mode's configuration flags (`--config`, `--user-id`, `--require`, ...).
    #[command(flatten)]
    pub(crate) composio: super::gateway::ComposioFlags,
}

/// The default log level of the stdio face: Claude Desktop shows stderr in its MCP log.
pub(crate) const QUIET_LOG_LEVEL: &str = "warn";

/// Exit code for a usage or configuration error (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;

/// Sends panic messages to stderr only. Installed before anything else runs: a panic message
/// on stdout would corrupt the client's message stream.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "toolgate stdio: internal error: {info}");
    }));
}

pub(crate) fn run(args: StdioArgs) -> ExitCode {
    install_panic_hook();
    let Some(upstream) = args.upstream.clone() else {
        return super::gateway::run_composio_stdio(&args);
    };
    init_logging(args.log_level.as_deref().unwrap_or(QUIET_LOG_LEVEL));
    let target = match upstream_target(&args, &upstream) {
        Ok(target) => target,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "toolgate stdio: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "toolgate stdio: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        tracing::info!(upstream = ?target, "bridging stdio to the upstream");
        let (_upstream_tx, upstream_rx) = watch::channel(Some(target));
        // Generic mode has no Composio session and nothing to connect: the gate is always open.
        let (_gate_tx, gate_rx) = watch::channel(GateState::Open);
        bridge(
            StdioConfig::default(),
            upstream_rx,
            gate_rx,
            Arc::new(NoEvents),
        )
        .await
    });
    // Exit now: tokio's stdin read cannot be cancelled, and dropping the runtime would wait
    // for it. Everything worth flushing was flushed by the bridge's writer.
    std::process::exit(code)
}

/// Bridges the process's stdin/stdout until EOF or SIGINT/SIGTERM; returns the exit code.
/// The caller exits the process with it right away (see the module docs). Composio mode calls
/// this with the session's upstream and gate channels.
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

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::builder().parse(level))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// The upstream URL and headers from the flags, or a one-line reason they cannot work.
fn upstream_target(args: &StdioArgs, upstream: &str) -> Result<UpstreamTarget, String> {
    let url = Url::parse(upstream)
        .map_err(|error| format!("--upstream {upstream:?} is not a URL: {error}"))?;
    match url.scheme() {
        "https" => {}
        "http" if args.allow_http || is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "--upstream {}: plain HTTP to another machine would send the headers \
                 unencrypted; use https or pass --allow-http",
                toolgate_proxy::upstream::redacted_url(&url)
            ));
        }
        other => return Err(format!("--upstream: unsupported scheme {other:?}")),
    }
    let lookup = |name: &str| std::env::var(name).ok();
    let mut headers = Vec::new();
    if let Some(path) = &args.header_file {
        let contents = std::fs::read_to_string(path)
            .map_err(|error| format!("--header-file {}: {error}", path.display()))?;
        headers.extend(
            parse_header_file(&contents, &lookup)
                .map_err(|error| format!("--header-file {}: {error}", path.display()))?,
        );
    }
    for arg in &args.headers {
        headers.push(parse_header_arg(arg, &lookup).map_err(|error| format!("--header: {error}"))?);
    }
    Ok(UpstreamTarget::new(url, header_map(headers)))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(upstream: &str, headers: &[&str]) -> StdioArgs {
        StdioArgs {
            upstream: Some(upstream.to_owned()),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            header_file: None,
            allow_http: false,
            log_level: None,
            listen: None,
            composio: super::super::gateway::ComposioFlags::default(),
        }
    }

    fn target_of(args: &StdioArgs) -> Result<UpstreamTarget, String> {
        upstream_target(args, args.upstream.as_deref().unwrap_or_default())
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        assert!(target_of(&args("http://127.0.0.1:3001/mcp", &[])).is_ok());
        assert!(target_of(&args("http://localhost/mcp", &[])).is_ok());
        assert!(target_of(&args("https://mcp.example/mcp", &[])).is_ok());
        let error = target_of(&args("http://mcp.example/mcp", &[])).unwrap_err();
        assert!(error.contains("--allow-http"), "{error}");
        let mut allowed = args("http://mcp.example/mcp", &[]);
        allowed.allow_http = true;
        assert!(target_of(&allowed).is_ok());
        assert!(target_of(&args("ftp://x/mcp", &[])).is_err());
        assert!(target_of(&args("not a url", &[])).is_err());
    }

    #[test]
    fn headers_from_flags_and_file_later_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("headers");
        std::fs::write(&file, "# secrets\nX-Team: red\nX-File: yes\n").unwrap();
        let mut with_file = args("https://mcp.example/mcp", &["X-Team:blue", "X-A: 1"]);
        with_file.header_file = Some(file);
        let target = target_of(&with_file).unwrap();
        assert_eq!(target.headers["x-team"], "blue");
        assert_eq!(target.headers["x-file"], "yes");
        assert_eq!(target.headers["x-a"], "1");
        let error = target_of(&args("https://mcp.example/mcp", &["broken"])).unwrap_err();
        assert!(error.starts_with("--header:"), "{error}");
        let mut missing = args("https://mcp.example/mcp", &[]);
        missing.header_file = Some(dir.path().join("absent"));
        assert!(
            target_of(&missing)
                .unwrap_err()
                .starts_with("--header-file")
        );
    }
}
