//! The `toolgate` binary: parses the command line, sets up logging and the runtime, and hands
//! each subcommand to its module under `commands/`. Everything of substance lives in the
//! `toolgate-session`, `toolgate-proxy` and `toolgate-sandbox` libraries.

mod auth;
mod cli;
mod commands;
mod config;
mod logging;
mod metrics;
mod runtime;
mod signals;
mod status;
mod web;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::run(cli)
}
