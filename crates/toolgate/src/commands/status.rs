//! `toolgate status` and `toolgate connect`: one-shot views of the required toolkits, using
//! the same session and tracker the gateway uses.
//!
//! Exit codes: `status` 0 when every required toolkit is connected, 3 when some are not;
//! `connect` 0 only when every requested toolkit ends connected, 3 when one failed or the
//! timeout passed. Both: 1 when Composio cannot be reached, 64 for configuration errors, and
//! clap's 2 for usage errors (which is why "not connected" is not 2).

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use toolgate_session::{GateSnapshot, ToolkitState, TrackerHandle};

use super::{EXIT_CONFIG, gateway};
use crate::config::{self, Config, ConfigArgs, Mode};
use crate::runtime;
use crate::status::{StatusView, ToolkitStatus};

/// Exit code when a toolkit is not connected: distinct from errors (1), clap's usage errors
/// (2) and configuration errors (64), so scripts can tell "authorise first" apart.
const EXIT_NOT_CONNECTED: u8 = 3;

/// The configuration flags of the Composio-only commands: those of [`ConfigArgs`] without
/// generic mode's `--upstream` and `--header`, which could only fail here.
#[derive(Debug, clap::Args)]
pub(crate) struct ComposioConfigArgs {
    /// TOML configuration file (default: ./toolgate.toml when present).
    #[arg(long, value_name = "PATH")]
    config: Option<std::path::PathBuf>,
    /// Composio user id (`user_id`); `--user U` also works, to look at one user of a
    /// multi-user configuration.
    #[arg(long, alias = "user", value_name = "ID")]
    user_id: Option<String>,
    /// Required toolkit; repeat or comma-separate (`require`).
    #[arg(long, value_name = "TOOLKIT", value_delimiter = ',')]
    require: Vec<String>,
    /// Listen address (`listen`); sets the default callback URL of the links minted.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Composio API origin (`composio.base_url`).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Log level or filter (`log.level`).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log format, `text` or `json` (`log.format`).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

impl ComposioConfigArgs {
    /// The shared flag set, with generic mode's flags left unset.
    fn to_config_args(&self) -> ConfigArgs {
        ConfigArgs {
            config: self.config.clone(),
            user_id: self.user_id.clone(),
            require: self.require.clone(),
            listen: self.listen.clone(),
            base_url: self.base_url.clone(),
            log_level: self.log_level.clone(),
            log_format: self.log_format.clone(),
            ..ConfigArgs::default()
        }
    }
}

/// Arguments of `toolgate status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) config: ComposioConfigArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also mint a Connect Link for each toolkit that is not connected (without it, `status`
    /// only reads: it reuses the remembered session and creates no links).
    #[arg(long)]
    pub(crate) links: bool,
    /// How long to wait for Composio.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
}

/// Arguments of `toolgate connect`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    #[command(flatten)]
    pub(crate) config: ComposioConfigArgs,
    /// Toolkits to connect (default: the required ones).
    #[arg(value_name = "TOOLKIT", value_delimiter = ',')]
    pub(crate) toolkits: Vec<String>,
    /// Open each Connect Link in the default browser.
    #[arg(long)]
    pub(crate) open: bool,
    /// Give up after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
}

/// Loads the config for a Composio-only command; `Err` is the exit code.
fn composio_config(args: &ComposioConfigArgs) -> Result<Config, ExitCode> {
    let mut config =
        config::load(&args.to_config_args()).map_err(|error| super::config_error(&error))?;
    if config.mode() != Mode::Composio {
        eprintln!("toolgate: invalid configuration: `upstream`: this command needs Composio mode");
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    // One-shot commands print their result; routine progress logs would only get in the way.
    if config.log.level == crate::config::LogSection::default().level {
        config.log.level = "warn".to_owned();
    }
    crate::logging::init(&config.log);
    Ok(config)
}

/// A session and a tracker for `required`, waited until its first check completed. The
/// session is the remembered one when there is one (no creation); links are minted only with
/// `links` (`connect`, `status --links`).
async fn checked_tracker(
    config: &Config,
    required: &[String],
    timeout: Duration,
    links: bool,
) -> Result<(String, TrackerHandle), ExitCode> {
    let work = async {
        let client = runtime::composio_client(config, None).map_err(|error| {
            eprintln!("toolgate: {error:#}");
            ExitCode::FAILURE
        })?;
        let opened = match runtime::SessionOpener::new(client.clone(), config)
            .open()
            .await
        {
            Ok(opened) => opened,
            // The error names Composio and the operation itself.
            Err(runtime::OpenError::Retry(error)) => {
                eprintln!("toolgate: {error}");
                return Err(ExitCode::FAILURE);
            }
            Err(runtime::OpenError::Fatal(error)) => return Err(gateway::fatal(&error)),
        };
        let mut tracker_config = runtime::tracker_config(config, required, &opened.request);
        tracker_config.mint_at_start = links;
        let tracker = toolgate_session::ConnectionTracker::start(
            client,
            opened.session.session_id.clone(),
            tracker_config,
        )
        .await
        .map_err(|error| match runtime::tracker_start_error(error) {
            Ok(error) => {
                eprintln!("toolgate: {error}");
                ExitCode::FAILURE
            }
            Err(fatal) => gateway::fatal(&fatal),
        })?;
        let mut snapshots = tracker.subscribe();
        while !snapshots.borrow_and_update().checked {
            if snapshots.changed().await.is_err() {
                eprintln!("toolgate: the connection tracker stopped");
                return Err(ExitCode::FAILURE);
            }
        }
        Ok((opened.session.session_id, tracker))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => {
            eprintln!(
                "toolgate: Composio did not answer within {}",
                humantime::format_duration(timeout)
            );
            Err(ExitCode::FAILURE)
        }
    }
}

fn write_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Runs `toolgate status`.
pub(crate) fn run_status(args: StatusArgs) -> ExitCode {
    let config = match composio_config(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match gateway::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let (session_id, tracker) =
            match checked_tracker(&config, &config.require, args.timeout, args.links).await {
                Ok(pair) => pair,
                Err(code) => return code,
            };
        let view = runtime::status_view(&config, &session_id, &tracker.snapshot());
        tracker.shutdown();
        let text = if args.json {
            match serde_json::to_string_pretty(&view) {
                Ok(json) => format!("{json}\n"),
                Err(error) => {
                    eprintln!("toolgate: {error}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            status_text(&view)
        };
        if write_stdout(&text) != ExitCode::SUCCESS {
            return ExitCode::FAILURE;
        }
        if view.all_connected() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_NOT_CONNECTED)
        }
    })
}

fn status_text(view: &StatusView) -> String {
    if view.toolkits.is_empty() {
        return "No toolkits are required (set `require`).\n".to_owned();
    }
    let summary = if view.all_connected() {
        "all required toolkits are connected: tool calls pass"
    } else {
        "some required toolkits are not connected: tool calls are blocked"
    };
    let unlinked = view
        .toolkits
        .iter()
        .any(|toolkit| toolkit.status == ToolkitStatus::Pending && toolkit.connect_url.is_none());
    format!(
        "user {}, session {}: {summary}\n{}{}",
        view.user_id.as_deref().unwrap_or("-"),
        view.session_id.as_deref().unwrap_or("-"),
        view.table(),
        if unlinked {
            "(status only reads: `toolgate status --links` or `toolgate connect` makes Connect Links)\n"
        } else {
            ""
        }
    )
}

/// How one toolkit ended in `connect`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Connected(String),
    Failed(String),
}

/// Runs `toolgate connect`.
pub(crate) fn run_connect(args: ConnectArgs) -> ExitCode {
    let config = match composio_config(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let required: Vec<String> = if args.toolkits.is_empty() {
        config.require.clone()
    } else {
        args.toolkits
            .iter()
            .map(|slug| slug.trim().to_ascii_lowercase())
            .filter(|slug| !slug.is_empty())
            .collect()
    };
    if required.is_empty() {
        eprintln!(
            "toolgate: invalid configuration: `require`: name the toolkits to connect (toolgate connect gmail github) or set `require`"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match gateway::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let (_session_id, tracker) =
            match checked_tracker(&config, &required, args.timeout, true).await {
                Ok(pair) => pair,
                Err(code) => return code,
            };
        let outcomes = follow(&tracker, args.open, args.timeout).await;
        tracker.shutdown();
        let all_connected = required.iter().all(|slug| {
            matches!(
                outcomes.iter().find(|(s, _)| s == slug),
                Some((_, Some(Outcome::Connected(_))))
            )
        });
        if all_connected {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_NOT_CONNECTED)
        }
    })
}

/// Shows a spinner per toolkit until each is connected or failed, or the timeout passes.
///
/// On a terminal the spinners live in one `MultiProgress` on stderr; everything else printed
/// meanwhile (the links on stdout) goes through it, so it lands above the bars instead of
/// inside them, and each bar ends as a ✓/✗ line that stays on screen. Off a terminal the bars
/// are hidden and only the links and the final lines are printed.
async fn follow(
    tracker: &TrackerHandle,
    open: bool,
    timeout: Duration,
) -> Vec<(String, Option<Outcome>)> {
    let mut snapshots = tracker.subscribe();
    let first = snapshots.borrow_and_update().clone();
    let interactive = std::io::stderr().is_terminal();
    let bars = MultiProgress::with_draw_target(if interactive {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let mut rows: Vec<Row> = first
        .toolkits
        .iter()
        .map(|toolkit| Row::new(&bars, &toolkit.slug, &toolkit.name))
        .collect();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut snapshot = first;
    loop {
        for row in &mut rows {
            row.update(tracker, &snapshot, open, &bars);
        }
        if rows.iter().all(|row| row.outcome.is_some()) {
            break;
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                snapshot = snapshots.borrow_and_update().clone();
            }
            () = &mut deadline => {
                for row in &mut rows {
                    if row.outcome.is_none() {
                        row.finish(Outcome::Failed("timed out".to_owned()), &bars);
                    }
                }
                break;
            }
        }
    }
    // A tracker that stopped early leaves rows unfinished: end their spinners too, so no
    // stale frame stays behind.
    for row in &mut rows {
        if row.outcome.is_none() {
            row.finish(Outcome::Failed("no answer".to_owned()), &bars);
        }
    }
    rows.into_iter()
        .map(|row| (row.slug, row.outcome))
        .collect()
}

/// Writes `text` to stdout without tearing the progress bars (they are cleared, the text
/// written, then the bars drawn again below it).
fn print_above(bars: &MultiProgress, text: &str) {
    bars.suspend(|| {
        let _ = write_stdout(text);
    });
}

struct Row {
    slug: String,
    name: String,
    bar: ProgressBar,
    shown_link: Option<String>,
    outcome: Option<Outcome>,
}

impl Row {
    fn new(bars: &MultiProgress, slug: &str, name: &str) -> Self {
        // `{msg}`, not `{wide_msg}`: a padded line wraps on narrow terminals and breaks
        // indicatif's line count, leaving stale frames.
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold}: {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = bars.add(ProgressBar::new_spinner());
        bar.set_style(style);
        bar.set_prefix(name.to_owned());
        bar.set_message("checking");
        bar.enable_steady_tick(Duration::from_millis(120));
        Self {
            slug: slug.to_owned(),
            name: name.to_owned(),
            bar,
            shown_link: None,
            outcome: None,
        }
    }

    fn update(
        &mut self,
        tracker: &TrackerHandle,
        snapshot: &GateSnapshot,
        open: bool,
        bars: &MultiProgress,
    ) {
        if self.outcome.is_some() {
            return;
        }
        let Some(toolkit) = snapshot
            .toolkits
            .iter()
            .find(|toolkit| toolkit.slug == self.slug)
        else {
            return;
        };
        match &toolkit.state {
            ToolkitState::Connected { account_id } => {
                self.finish(Outcome::Connected(account_id.clone()), bars);
            }
            ToolkitState::NoAuth => {
                self.finish(Outcome::Connected("no auth needed".to_owned()), bars);
            }
            ToolkitState::Failed { reason } => {
                self.finish(Outcome::Failed(reason.clone()), bars);
            }
            ToolkitState::PinnedUnusable { .. } | ToolkitState::Disabled { .. } => {
                let detail = crate::runtime::toolkit_view(toolkit)
                    .detail
                    .unwrap_or_else(|| "not usable".to_owned());
                self.finish(Outcome::Failed(detail), bars);
            }
            ToolkitState::NeedsLink { .. } => {
                // The link ran out while we wait: we are the someone who needs a new one.
                tracker.want_links();
                self.bar.set_message("making a new Connect Link");
            }
            ToolkitState::Pending {
                connect_url,
                previous_failure,
                ..
            } => {
                // A fresh link after a failure we did not see as its own snapshot.
                if let (Some(reason), Some(shown)) = (previous_failure, &self.shown_link)
                    && shown != connect_url
                {
                    self.finish(Outcome::Failed(reason.clone()), bars);
                    return;
                }
                if self.shown_link.as_deref() != Some(connect_url.as_str()) {
                    // Links go to stdout so scripts can pick them up; one line per link.
                    print_above(bars, &format!("{}: {connect_url}\n", self.slug));
                    if open {
                        bars.suspend(|| open_browser(connect_url));
                    }
                    self.shown_link = Some(connect_url.clone());
                }
                // The link itself is printed above: a URL here would wrap the line.
                self.bar.set_message("waiting for authorization");
            }
            ToolkitState::Unknown => self.bar.set_message("checking"),
        }
    }

    fn finish(&mut self, outcome: Outcome, bars: &MultiProgress) {
        let (mark, line) = match &outcome {
            Outcome::Connected(account) => ("✓", format!("{}: connected ({account})", self.name)),
            Outcome::Failed(reason) => ("✗", format!("{}: not connected: {reason}", self.name)),
        };
        if matches!(outcome, Outcome::Connected(_)) && self.shown_link.is_none() {
            print_above(bars, &format!("{}: already connected\n", self.slug));
        }
        if bars.is_hidden() {
            self.bar.finish_and_clear();
            eprintln!("{mark} {line}");
        } else {
            // The finished bar is drawn once more as its final line and then left alone.
            let done = ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            self.bar.set_style(done);
            self.bar.finish_with_message(format!("{mark} {line}"));
        }
        self.outcome = Some(outcome);
    }
}

/// Opens `url` with the platform's opener; failure is reported, not fatal.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_child) => {}
        Err(error) => eprintln!(
            "toolgate: could not open a browser ({opener}: {error}); open the link yourself"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ToolkitStatus, ToolkitView};

    #[test]
    fn status_text_summarises() {
        let view = StatusView {
            user_id: Some("alice".into()),
            session_id: Some("trs_1".into()),
            toolkits: vec![ToolkitView {
                slug: "gmail".into(),
                name: "Gmail".into(),
                logo: None,
                status: ToolkitStatus::Pending,
                account_id: None,
                connect_url: Some("http://x/link/ln_1".into()),
                detail: None,
                ..ToolkitView::unknown("")
            }],
            ..StatusView::default()
        };
        let text = status_text(&view);
        assert!(
            text.starts_with("user alice, session trs_1: some required toolkits are not connected")
        );
        assert!(text.contains("http://x/link/ln_1"));
    }
}
