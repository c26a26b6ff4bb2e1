//! `toolgate sandbox`: serve the Composio stand-in as a process.

use std::process::ExitCode;

/// Arguments of `toolgate sandbox`.
#[derive(Debug, clap::Args)]
pub(crate) struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9900")]
    pub(crate) listen: std::net::SocketAddr,
}

pub(crate) fn run(_args: SandboxArgs) -> ExitCode {
    ExitCode::FAILURE
}
