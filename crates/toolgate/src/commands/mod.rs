//! One module per subcommand.

pub(crate) mod sandbox;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand and maps its outcome to an exit code.
pub(crate) fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Sandbox(args) => sandbox::run(args),
    }
}
