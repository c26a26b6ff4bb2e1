//! `toolgate connect` in a real terminal: run on a pseudo-terminal (stdout and stderr both on
//! it, as in an interactive shell), its output rendered by a terminal emulator (the `vt100`
//! crate), and the final screen checked: the links above, one ✓/✗ line per toolkit that
//! stays, no spinner frame left behind.

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::process::Stdio;

use anyhow::Context as _;
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use toolgate_tests::binary::{
    PATIENCE, answer_link, assert_no_key, composio_env, links_in, sandbox,
};

const ROWS: u16 = 30;
const COLS: u16 = 100;

/// A pseudo-terminal of ROWS×COLS: (master, slave).
fn pty() -> anyhow::Result<(OwnedFd, std::fs::File)> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str()?)
        .context("opening the pty's slave side")?;
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok((master, slave))
}

/// The slug's link in what the terminal received so far.
fn link_for(raw: &str, slug: &str) -> Option<String> {
    raw.split(['\r', '\n'])
        .filter(|line| line.contains(&format!("{slug}: http")))
        .flat_map(links_in)
        .next()
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_on_a_terminal_ends_with_lines_that_stay() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut vars = composio_env(&sandbox, "pty-user");
    // Debug logs would share the terminal with the bars; this test is about the bars.
    vars.retain(|(name, _)| name != "TOOLGATE_LOG_LEVEL");
    vars.push(("TERM".into(), "xterm-256color".into()));
    let (master, slave) = pty()?;
    let mut command = toolgate_tests::toolgate_command()?;
    command
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["connect", "gmail,github", "--timeout", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    let mut child = command.spawn()?;
    // Only the child may hold the slave side now, so reading the master ends when it exits.
    drop(command);

    let (sender, mut chunks) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let mut reader = std::fs::File::from(master);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        // Linux answers EIO once the last slave descriptor is closed: that is the end.
        while let Ok(read @ 1..) = reader.read(&mut buffer) {
            if sender.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });

    let mut raw = Vec::new();
    let mut answered = (false, false);
    let reading = async {
        while let Some(chunk) = chunks.recv().await {
            raw.extend_from_slice(&chunk);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if !answered.0
                && let Some(link) = link_for(&text, "gmail")
            {
                answer_link(&sandbox, &link, "allow").await?;
                answered.0 = true;
            }
            if !answered.1
                && let Some(link) = link_for(&text, "github")
            {
                answer_link(&sandbox, &link, "deny").await?;
                answered.1 = true;
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(PATIENCE, reading)
        .await
        .context("connect did not finish on the terminal")??;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert_eq!(status.code(), Some(3), "github was denied");
    assert!(answered.0 && answered.1, "both links were printed");

    let mut terminal = vt100::Parser::new(ROWS, COLS, 0);
    terminal.process(&raw);
    // Row by row: indicatif fills each bar line to the terminal's width and lets the terminal
    // wrap, which `contents()` would join into one logical line.
    let rows: Vec<String> = terminal
        .screen()
        .rows(0, COLS)
        .map(|row| row.trim_end().to_owned())
        .collect();
    let screen = rows.join("\n");
    assert_no_key("connect on a terminal", &screen);
    let lines: Vec<&str> = rows.iter().map(String::as_str).collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|line| line.starts_with(needle))
            .with_context(|| format!("no line starting {needle:?} on the final screen:\n{screen}"))
    };
    let gmail_link = position("gmail: http")?;
    let github_link = position("github: http")?;
    let gmail_done = position("✓ Gmail: connected (ca_")?;
    let github_done = position("✗ GitHub: not connected")?;
    assert!(
        gmail_link.max(github_link) < gmail_done.min(github_done),
        "the links are above the final lines:\n{screen}"
    );
    assert_eq!(
        lines.iter().filter(|line| line.contains("Gmail:")).count(),
        1,
        "one line per toolkit, no stale frames:\n{screen}"
    );
    assert!(
        !screen.contains("waiting for authorization") && !screen.contains("checking"),
        "no spinner left on screen:\n{screen}"
    );
    Ok(())
}
