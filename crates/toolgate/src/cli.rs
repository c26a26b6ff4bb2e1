//! Command-line definitions (clap). Each subcommand's arguments live next to its name here;
//! what it does lives in `commands/`.

use clap::{Parser, Subcommand};

/// An MCP gateway for Composio tool-router sessions.
#[derive(Debug, Parser)]
#[command(name = "toolgate", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the local Composio stand-in (REST API, Connect Link pages, MCP upstream).
    Sandbox(crate::commands::sandbox::SandboxArgs),
    /// Serve the MCP gateway over Streamable HTTP: Composio mode from the configuration, or
    /// generic mode with `--upstream URL`.
    Serve(Box<crate::commands::serve::ServeArgs>),
    /// Bridge an MCP client on stdin/stdout (Claude Desktop) to the Composio session (from the
    /// configuration), or in generic mode to `--upstream URL` (a drop-in for mcp-remote).
    Stdio(crate::commands::stdio::StdioArgs),
    /// Print the effective configuration (defaults, file, environment, flags), secrets redacted,
    /// derived values shown and missing keys marked (exit 64 after printing when incomplete).
    Config(crate::commands::config::ConfigCommandArgs),
    /// Run the sandbox and the gateway against it: the whole flow without an API key.
    Demo(crate::commands::demo::DemoArgs),
    /// Show the required toolkits: status, account, Connect Link (exit 0 = all connected).
    Status(crate::commands::status::StatusArgs),
    /// Print each Connect Link and wait until the toolkits are connected (exit 0 = all connected).
    Connect(crate::commands::status::ConnectArgs),
    /// Probe a running gateway's /healthz (or /readyz with --ready): exit 0 healthy, 1 not (for shell-less containers).
    Healthcheck(crate::commands::healthcheck::HealthcheckArgs),
}
