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
}
