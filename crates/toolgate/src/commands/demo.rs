//! `toolgate demo`: the whole flow with no API key. Runs the sandbox (the local Composio
//! stand-in) in-process and `serve` against it with gmail and github required, then prints the
//! MCP URL, client snippets and the Connect Links.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use secrecy::SecretString;
use tokio_util::sync::{CancellationToken, DropGuard};
use toolgate_sandbox::{DEMO_API_KEY, SandboxConfig};

use super::gateway;
use crate::config::{Config, LogFormat, LogSection};

/// Arguments of `toolgate demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Address of the gateway (MCP endpoint and connections page).
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    pub(crate) listen: SocketAddr,
    /// Address of the sandbox (the Composio stand-in). Fixed by default so the printed client
    /// snippets, which name it, stay valid when the demo restarts.
    #[arg(long, default_value = "127.0.0.1:9900", value_name = "ADDR")]
    pub(crate) sandbox_listen: SocketAddr,
    /// The Composio user id the demo acts for.
    #[arg(long, default_value = "demo-user", value_name = "ID")]
    pub(crate) user_id: String,
    /// Log filter (logs go to stderr).
    #[arg(long, default_value = "warn", value_name = "FILTER")]
    pub(crate) log_level: String,
}

/// Runs the demo until SIGINT/SIGTERM.
pub(crate) fn run(args: DemoArgs) -> ExitCode {
    let log = LogSection {
        format: LogFormat::Text,
        level: args.log_level.clone(),
    };
    if tracing_subscriber::EnvFilter::builder()
        .parse(&log.level)
        .is_err()
    {
        eprintln!(
            "toolgate: invalid configuration: `--log-level`: {:?} is not a level or filter",
            log.level
        );
        return ExitCode::from(super::EXIT_CONFIG);
    }
    crate::logging::init(&log);
    let runtime = match gateway::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let sandbox = match start_sandbox(args.sandbox_listen).await {
            Ok(sandbox) => sandbox,
            Err(error) => {
                eprintln!(
                    "toolgate: cannot start the sandbox on {}: {error}",
                    args.sandbox_listen
                );
                return ExitCode::FAILURE;
            }
        };
        let config = Config {
            user_id: Some(args.user_id.clone()),
            require: vec!["gmail".to_owned(), "github".to_owned()],
            listen: args.listen,
            composio: crate::config::ComposioSection {
                api_key: Some(SecretString::from(DEMO_API_KEY)),
                base_url: sandbox.base_url(),
                ..crate::config::ComposioSection::default()
            },
            // The in-process sandbox forgets its sessions on exit: nothing worth remembering.
            session: crate::config::SessionSection {
                state_file: Some(std::path::PathBuf::new()),
                ..crate::config::SessionSection::default()
            },
            log,
            ..Config::default()
        };
        if let Err(error) = config.validate() {
            return super::config_error(&error);
        }
        let sandbox_url = sandbox.base_url();
        let code = gateway::run_http(config, |addr, config| {
            let mut stdout = std::io::stdout().lock();
            // The banner is a courtesy; a closed stdout must not stop the gateway.
            let _ = stdout
                .write_all(banner(addr, config, &sandbox_url).as_bytes())
                .and_then(|()| stdout.flush());
        })
        .await;
        drop(sandbox);
        code
    })
}

/// The demo's sandbox, served until this is dropped.
struct DemoSandbox {
    addr: SocketAddr,
    _stop: DropGuard,
}

impl DemoSandbox {
    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Binds the sandbox on `addr` (a fixed port: the snippets name it) and serves it in the
/// background on this runtime.
async fn start_sandbox(addr: SocketAddr) -> std::io::Result<DemoSandbox> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let shutdown = async move { stopped.cancelled().await };
        if let Err(error) =
            toolgate_sandbox::serve(listener, SandboxConfig::default(), shutdown).await
        {
            tracing::warn!(%error, "the demo's sandbox stopped");
        }
    });
    Ok(DemoSandbox {
        addr,
        _stop: stop.drop_guard(),
    })
}

/// What the demo prints once listening: URL, client snippets, what to try.
fn banner(addr: SocketAddr, config: &Config, sandbox_url: &str) -> String {
    let exe = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "/absolute/path/to/toolgate".to_owned());
    let mcp_url = format!("http://{addr}{}", config.path);
    let stdio_listen = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
    let claude = serde_json::json!({
        "mcpServers": {
            "toolgate-demo": {
                "command": exe,
                "args": ["stdio"],
                "env": {
                    "COMPOSIO_API_KEY": DEMO_API_KEY,
                    "COMPOSIO_BASE_URL": sandbox_url,
                    "TOOLGATE_USER_ID": config.user_id.clone().unwrap_or_default(),
                    "TOOLGATE_REQUIRE": config.require.join(","),
                    "TOOLGATE_LISTEN": stdio_listen.to_string(),
                }
            }
        }
    });
    let cursor = serde_json::json!({
        "mcpServers": { "toolgate-demo": { "url": mcp_url } }
    });
    let pretty =
        |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
    let env = format!("COMPOSIO_API_KEY={DEMO_API_KEY} COMPOSIO_BASE_URL={sandbox_url}");
    let who = format!(
        "--user-id {} --require {}",
        config.user_id.as_deref().unwrap_or_default(),
        config.require.join(",")
    );
    let lines = [
        String::new(),
        format!(
            "toolgate demo: a local Composio stand-in (the sandbox, {sandbox_url}) and the gateway in front of it."
        ),
        "No real accounts are involved: the Connect Links open the sandbox's Allow/Deny page.".to_owned(),
        String::new(),
        format!("  MCP endpoint (Streamable HTTP): {mcp_url}"),
        format!("  Connections page:               http://{addr}/connections"),
        String::new(),
        "Cursor (~/.cursor/mcp.json):".to_owned(),
        pretty(&cursor),
        String::new(),
        "Claude Desktop (claude_desktop_config.json; stdio, needs this demo running for its sandbox):"
            .to_owned(),
        pretty(&claude),
        String::new(),
        "From a terminal, against this demo's sandbox (same user, same connections):".to_owned(),
        format!("  {env} {exe} status {who}"),
        format!("  {env} {exe} connect {who} --listen {addr}"),
        String::new(),
        "Try it: call a tool (e.g. COMPOSIO_SEARCH_TOOLS) from your client: it is blocked and answers"
            .to_owned(),
        "with the Connect Links (printed below on stderr). Open them (or the connections page), click"
            .to_owned(),
        "Allow, and the same call passes. Press Ctrl-C to stop.".to_owned(),
    ];
    let mut text = lines.join("\n");
    text.push('\n');
    text
}
