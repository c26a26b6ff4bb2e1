//! `toolgate serve`: the MCP endpoint over Streamable HTTP. In Composio mode (the default) it
//! gates tool calls on the configured toolkits; in generic mode (`upstream` set, e.g.
//! `--upstream URL`) it proxies any MCP server with an always-open gate: a drop-in HTTP proxy
//! that injects headers, checks Host/Origin/token, and adds nothing else. Both modes read the
//! same layered configuration ([`crate::config::load_with`]).

use std::net::SocketAddr;
use std::process::ExitCode;

use toolgate_proxy::upstream::UpstreamTarget;

use super::gateway;
use crate::config::{self, Config, ConfigArgs, Flags, HttpArgs};

/// Arguments of `toolgate serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The configuration flags.
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
    /// The MCP endpoint's flags.
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    /// Runtime worker threads, in both modes. 1 (the default) runs everything on one thread:
    /// forwarding is mostly waiting on sockets, and one thread saves a cross-thread wake-up per
    /// hop, which is most of a proxy's added latency. More threads raise the throughput ceiling
    /// of one process; replicas raise it without them (sealed session ids need no stickiness).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) threads: usize,
}

/// Runs `toolgate serve` until SIGINT or SIGTERM, then drains.
pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let flags = Flags {
        config: &args.config,
        http: &args.http,
    };
    let config = match config::load_with(flags, &Config::default()) {
        Ok(config) => config,
        Err(error) => return super::config_error(&error),
    };
    crate::logging::init(&config.log);
    let target = match config.generic_target() {
        Ok(target) => target,
        Err(error) => return super::config_error(&error),
    };
    let runtime = match serve_runtime(args.threads) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match target {
        Some(target) => runtime.block_on(serve_generic(config, target)),
        None => runtime.block_on(gateway::run_http(config, |_, _| {})),
    }
}

/// One thread by default (see `--threads`), more on request.
fn serve_runtime(threads: usize) -> Result<tokio::runtime::Runtime, ExitCode> {
    let builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    gateway::build_runtime(builder)
}

/// Generic mode: the gateway plus `/healthz`, `/readyz` and `/metrics` on one listener.
async fn serve_generic(config: Config, target: UpstreamTarget) -> ExitCode {
    let upstream_shown = target.shown().to_owned();
    let listen: SocketAddr = config.listen;
    // The channels stay alive for the whole run: generic mode never changes them.
    let (app, _channels) = match gateway::generic_app(config.proxy_config(), target) {
        Ok(pair) => pair,
        Err(error) => {
            eprintln!("toolgate: invalid configuration: {error}");
            return ExitCode::from(super::EXIT_CONFIG);
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
        config.server_limits(),
        crate::signals::shutdown_signal(),
        config.drain_timeout,
    )
    .await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
