//! `toolgate config`: print the effective configuration (all layers merged), secrets
//! redacted, as TOML on stdout, with the values toolgate derives from it (mode, callback URL,
//! MCP URL) as comments. An incomplete or invalid configuration is printed too, with each
//! missing required key marked, and then exits 64: that is when one needs to see it.

use std::io::Write as _;
use std::process::ExitCode;

use crate::config::{self, Config, ConfigArgs, Flags, HttpArgs, Mode};

/// Arguments of `toolgate config`: every flag `serve` reads, to show their effect.
#[derive(Debug, clap::Args)]
pub(crate) struct ConfigCommandArgs {
    /// The configuration flags.
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
    /// The MCP endpoint's flags.
    #[command(flatten)]
    pub(crate) http: HttpArgs,
}

/// Prints the effective configuration; exit 64 (after printing) when it is incomplete or
/// invalid, and at once when it cannot even be merged (a file that does not parse).
pub(crate) fn run(args: ConfigCommandArgs) -> ExitCode {
    let flags = Flags {
        config: &args.config,
        http: &args.http,
    };
    let config = match config::extract(flags, &Config::default()) {
        Ok(config) => config,
        Err(error) => return super::config_error(&error),
    };
    let text = match config.to_redacted_toml() {
        Ok(text) => text,
        Err(error) => {
            eprintln!("toolgate: could not render the configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    let verdict = config.validate();
    let report = render(&config, &text, verdict.as_ref().err());
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    match verdict {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::config_error(&error),
    }
}

/// The printed report: header, TOML, derived values, then what is missing or invalid.
fn render(config: &Config, toml: &str, invalid: Option<&config::ConfigError>) -> String {
    let mode = config.mode();
    let mut out = format!("# effective toolgate configuration ({mode} mode)\n{toml}");
    out.push_str("\n# derived (not keys):\n");
    out.push_str(&format!("#   mode = \"{mode}\"\n"));
    out.push_str(&format!(
        "#   mcp_url = \"http://{}{}\"\n",
        config.listen, config.path
    ));
    if mode == Mode::Composio {
        out.push_str(&format!(
            "#   callback_url = \"{}\"\n",
            config.effective_callback_url()
        ));
    }
    let missing = config.missing_required();
    for (key, hint) in &missing {
        out.push_str(&format!("# MISSING {key}: {hint}\n"));
    }
    if let Some(error) = invalid
        && !missing.iter().any(|(key, _)| *key == error.key)
    {
        out.push_str(&format!("# INVALID {}: {}\n", error.key, error.message));
    }
    out
}
