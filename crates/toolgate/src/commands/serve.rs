//! `toolgate serve`: the Streamable HTTP gateway. In generic mode (`--upstream URL`) it
//! proxies any MCP server with an always-open gate: a drop-in HTTP proxy that injects
//! headers, checks Host/Origin/token, and adds nothing else. This file only maps flags to the
//! `toolgate-proxy` library's configuration; the gateway itself lives there.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use secrecy::SecretString;
use toolgate_proxy::config::{ProxyConfig, WaitMode};
use toolgate_proxy::header_args::{header_map, parse_header_arg, parse_header_file};
use toolgate_proxy::upstream::{UpstreamTarget, redacted_url};

/// Exit code for unusable flags (`EX_USAGE` from sysexits.h), as for every configuration error.
const EXIT_USAGE: u8 = 64;

/// The MCP path in generic mode when `--mcp-path` is not given.
const GENERIC_MCP_PATH: &str = "/mcp";

/// The drain deadline in generic mode when `--drain-timeout` is not given.
const GENERIC_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `toolgate serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Upstream MCP endpoint to forward to (generic mode, no Composio), e.g.
    /// `http://127.0.0.1:3001/mcp`. Without it, toolgate runs in Composio mode from the
    /// configuration (file, environment, the flags below).
    #[arg(long, value_name = "URL")]
    pub(crate) upstream: Option<url::Url>,
    /// Header added to every upstream request, `Name: value` or `Name:value`; `${VAR}` in the
    /// value is replaced by that environment variable. Repeatable; replaces a same-named header
    /// from the client or from --header-file.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub(crate) headers: Vec<String>,
    /// File with one `Name: value` header per line (`#` comments), to keep secrets out of the
    /// process list. Read before the --header flags.
    #[arg(long, value_name = "PATH")]
    pub(crate) header_file: Option<std::path::PathBuf>,
    /// Address to listen on (default 127.0.0.1:8787). Anything but loopback requires an
    /// inbound token.
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Path of the MCP endpoint (default `/mcp`; in Composio mode the `path` config key).
    // No clap default: a default would be indistinguishable from the flag given explicitly,
    // and in Composio mode the flag must override the config file and env only when given.
    #[arg(long, value_name = "PATH")]
    pub(crate) mcp_path: Option<String>,
    /// Name of the environment variable holding the bearer token clients must present
    /// (`Authorization: Bearer <token>`); unset or empty variable means no token.
    #[arg(long, default_value = "TOOLGATE_TOKEN", value_name = "VAR")]
    pub(crate) token_env: String,
    /// Extra browser origin accepted besides loopback ones (`scheme://host[:port]`). Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub(crate) allowed_origins: Vec<String>,
    /// Extra Host name accepted besides loopback names. Repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub(crate) allowed_hosts: Vec<String>,
    /// Allow a plain-http upstream that is not on loopback (the injected headers would cross
    /// the network unencrypted).
    #[arg(long)]
    pub(crate) allow_http: bool,
    /// Largest accepted POST body, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub(crate) max_body_bytes: usize,
    /// Upper bound on connecting to the upstream.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) connect_timeout: Duration,
    /// How long open requests may continue after SIGINT/SIGTERM (default 10s; in Composio
    /// mode the `drain_timeout` config key). No clap default, for the reason given above.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) drain_timeout: Option<Duration>,
    /// Runtime worker threads in generic mode. 1 (the default) runs everything on one thread:
    /// forwarding is mostly waiting on sockets, and one thread saves a cross-thread wake-up per
    /// hop, which is most of a proxy's added latency. More threads raise the throughput ceiling.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) threads: usize,
    /// Log filter (`info`, `debug`, `info,toolgate_proxy=debug`; default `info`); logs go to
    /// stderr.
    #[arg(long, value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// Composio mode's configuration flags (`--config`, `--user-id`, `--require`, ...).
    #[command(flatten)]
    pub(crate) composio: super::gateway::ComposioFlags,
}

/// Why the flags cannot be used (reported as one stderr line, exit code 64).
#[derive(Debug, thiserror::Error)]
enum ServeSetupError {
    #[error("--header-file {path}: {source}")]
    HeaderFileUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--header-file {path}: {source}")]
    HeaderFile {
        path: String,
        #[source]
        source: toolgate_proxy::header_args::HeaderArgError,
    },
    #[error("--header: {0}")]
    Header(#[source] toolgate_proxy::header_args::HeaderArgError),
    #[error("--upstream must be an http or https URL")]
    UpstreamScheme,
    #[error(
        "--upstream uses plain http to a non-loopback host; the injected headers would travel \
         unencrypted (pass --allow-http to accept that)"
    )]
    PlainHttp,
    #[error("--listen {0} is not loopback: set a token in the variable named by --token-env")]
    TokenRequired(SocketAddr),
    #[error(transparent)]
    Proxy(#[from] toolgate_proxy::gateway::ProxyError),
}

/// What `run` needs once the flags are validated.
struct ServePlan {
    config: ProxyConfig,
    target: UpstreamTarget,
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Turns flags (and the environment, for `${VAR}` and the token) into the library's config.
fn plan(args: &ServeArgs, upstream: &url::Url) -> Result<ServePlan, ServeSetupError> {
    let lookup = |name: &str| std::env::var(name).ok();
    let mut headers = Vec::new();
    if let Some(path) = &args.header_file {
        let shown = path.display().to_string();
        let contents = std::fs::read_to_string(path).map_err(|source| {
            ServeSetupError::HeaderFileUnreadable {
                path: shown.clone(),
                source,
            }
        })?;
        headers.extend(parse_header_file(&contents, &lookup).map_err(|source| {
            ServeSetupError::HeaderFile {
                path: shown.clone(),
                source,
            }
        })?);
    }
    for header in &args.headers {
        headers.push(parse_header_arg(header, &lookup).map_err(ServeSetupError::Header)?);
    }
    let listen = args.listen.unwrap_or(super::gateway::DEFAULT_LISTEN);
    match upstream.scheme() {
        "https" => {}
        "http" if is_loopback_host(upstream) || args.allow_http => {}
        "http" => return Err(ServeSetupError::PlainHttp),
        _ => return Err(ServeSetupError::UpstreamScheme),
    }
    let bearer_token = std::env::var(&args.token_env)
        .ok()
        .filter(|token| !token.is_empty())
        .map(SecretString::from);
    if bearer_token.is_none() && !listen.ip().is_loopback() {
        return Err(ServeSetupError::TokenRequired(listen));
    }
    let config = ProxyConfig {
        mcp_path: args
            .mcp_path
            .clone()
            .unwrap_or_else(|| GENERIC_MCP_PATH.to_owned()),
        allowed_hosts: args.allowed_hosts.clone(),
        allowed_origins: args.allowed_origins.clone(),
        bearer_token,
        max_body_bytes: args.max_body_bytes,
        // Generic mode's gate never closes, so there is nothing to wait for.
        wait: WaitMode::Off,
        connect_timeout: args.connect_timeout,
        drain_timeout: args.drain_timeout.unwrap_or(GENERIC_DRAIN_TIMEOUT),
        ..ProxyConfig::default()
    };
    config
        .validate()
        .map_err(toolgate_proxy::gateway::ProxyError::from)?;
    Ok(ServePlan {
        config,
        target: UpstreamTarget::new(upstream.clone(), header_map(headers)),
    })
}

/// Logs go to stderr only; a filter that does not parse falls back to `info`.
fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Runs `toolgate serve` until SIGINT or SIGTERM, then drains.
pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let Some(upstream) = args.upstream.clone() else {
        return super::gateway::run_composio_serve(&args);
    };
    init_logging(args.log_level.as_deref().unwrap_or("info"));
    let plan = match plan(&args, &upstream) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("toolgate: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut builder = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("toolgate: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(
        args.listen.unwrap_or(super::gateway::DEFAULT_LISTEN),
        plan,
    ))
}

async fn serve(listen: SocketAddr, plan: ServePlan) -> ExitCode {
    let upstream_shown = redacted_url(&plan.target.url);
    let drain_timeout = plan.config.drain_timeout;
    // The gateway plus /healthz, /readyz and /metrics on the same listener (the binary's
    // routes; the channels stay alive for the whole run: generic mode never changes them).
    let (app, _channels) = match super::gateway::generic_app(plan.config, plan.target) {
        Ok(pair) => pair,
        Err(error) => {
            eprintln!("toolgate: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("toolgate: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(listen);
    eprintln!(
        "toolgate: serving MCP at http://{bound}{} -> {upstream_shown}",
        app.gateway.mcp_path()
    );
    crate::web::serve(
        listener,
        app,
        crate::signals::shutdown_signal(),
        drain_timeout,
    )
    .await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
