//! `toolgate config`: print the effective configuration (all layers merged, validated),
//! secrets redacted, as TOML on stdout.

use std::io::Write as _;
use std::process::ExitCode;

use crate::config::{self, ConfigArgs};

/// Arguments of `toolgate config`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConfigCommandArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Prints the effective configuration; exit 64 when it is invalid.
pub(crate) fn run(args: ConfigCommandArgs) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(error) => return super::config_error(&error),
    };
    match config.to_redacted_toml() {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            let written = writeln!(
                stdout,
                "# effective toolgate configuration ({} mode)",
                config.mode()
            )
            .and_then(|()| stdout.write_all(text.as_bytes()));
            if written.is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("toolgate: could not render the configuration: {error}");
            ExitCode::FAILURE
        }
    }
}
