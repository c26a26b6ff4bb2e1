//! Logging setup: tracing to stderr (stdout belongs to MCP messages in `stdio` mode and to
//! command output elsewhere), as human text or one JSON object per line.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSection};

/// Installs the global subscriber. `level` was validated with the configuration, so a parse
/// failure here falls back to `info` rather than failing a started command.
pub(crate) fn init(log: &LogSection) {
    let filter = EnvFilter::builder()
        .parse(&log.level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    // `try_init` so a second call (tests, `demo` starting a gateway) is harmless.
    let _already_set = match log.format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
