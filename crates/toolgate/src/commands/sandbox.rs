//! `toolgate sandbox`: serve the Composio stand-in (REST API, Connect Link pages, MCP upstream,
//! `/_sandbox/` test backdoor) as a process until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use toolgate_sandbox::{DEMO_API_KEY, SandboxConfig};

/// Arguments of `toolgate sandbox`.
#[derive(Debug, clap::Args)]
pub(crate) struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9900")]
    pub(crate) listen: std::net::SocketAddr,
    /// Accepted project API key (repeatable; each key is its own project). Defaults to the
    /// documented demo key `sk_sandbox_demo`.
    #[arg(long = "api-key", value_name = "KEY")]
    pub(crate) api_keys: Vec<String>,
    /// How long a Connect Link stays pending before its account becomes EXPIRED.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub(crate) link_ttl: Duration,
    /// Base URL to put into `redirect_url` and `mcp.url` when clients reach the sandbox by
    /// another name (default: the Host header of each request).
    #[arg(long, value_name = "URL")]
    pub(crate) public_base_url: Option<String>,
    /// A white-label auth config `TOOLKIT=APP NAME` created in every project (repeatable);
    /// its id is printed at startup and listed by `GET /api/v3.1/auth_configs`.
    #[arg(long = "auth-config", value_name = "TOOLKIT=NAME")]
    pub(crate) auth_configs: Vec<String>,
}

/// Runs the sandbox until a shutdown signal; exit 1 if it cannot start.
pub(crate) fn run(args: SandboxArgs) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("toolgate sandbox: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("toolgate sandbox: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: SandboxArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.public_base_url {
        url::Url::parse(url)
            .map_err(|error| anyhow::anyhow!("--public-base-url {url:?} is not a URL: {error}"))?;
    }
    let api_keys = if args.api_keys.is_empty() {
        vec![DEMO_API_KEY.to_owned()]
    } else {
        args.api_keys
    };
    let mut auth_configs = Vec::new();
    for spec in &args.auth_configs {
        let Some((toolkit, name)) = spec.split_once('=') else {
            anyhow::bail!("--auth-config {spec:?} is not TOOLKIT=NAME");
        };
        auth_configs.push((toolkit.trim().to_owned(), name.trim().to_owned()));
    }
    let config = SandboxConfig {
        api_keys,
        link_ttl: args.link_ttl,
        public_base_url: args.public_base_url,
        auth_configs,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", args.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        // The sandbox is a test tool: its /_sandbox/ backdoor answers anyone without a key.
        tracing::warn!(%addr, "the sandbox listens beyond loopback; its /_sandbox/ control plane needs no API key");
    }
    // The one line scripts wait for; the API key is deliberately not printed.
    eprintln!("toolgate sandbox listening on http://{addr} (set COMPOSIO_BASE_URL=http://{addr})");
    toolgate_sandbox::serve(listener, config, crate::signals::shutdown_signal()).await?;
    tracing::info!("sandbox stopped");
    Ok(())
}

/// Logs go to stderr through the binary's one logging setup; `RUST_LOG` overrides the
/// default `info` level (the sandbox reads no toolgate configuration).
fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .filter(|filter| !filter.is_empty())
        .unwrap_or_else(|| "info".to_owned());
    crate::logging::init(&crate::config::LogSection {
        level,
        ..crate::config::LogSection::default()
    });
}
