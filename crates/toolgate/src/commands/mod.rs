//! One module per subcommand.

pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod gateway;
pub(crate) mod healthcheck;
pub(crate) mod sandbox;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod stdio;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand and maps its outcome to an exit code.
pub(crate) fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Sandbox(args) => sandbox::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Stdio(args) => stdio::run(args),
        Command::Config(args) => config::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Status(args) => status::run_status(args),
        Command::Connect(args) => status::run_connect(args),
        Command::Healthcheck(args) => healthcheck::run(args),
    }
}

/// Exit code for a configuration error (`EX_USAGE` from sysexits.h).
pub(crate) const EXIT_CONFIG: u8 = 64;

/// Reports a configuration error as one stderr line and returns exit code 64.
pub(crate) fn config_error(error: &crate::config::ConfigError) -> ExitCode {
    eprintln!("toolgate: {error}");
    ExitCode::from(EXIT_CONFIG)
}
