//! The one settings load, seen from the binary: generic mode layered like Composio mode
//! (file < environment < flags), and `toolgate config` printing an incomplete configuration
//! with what is missing marked, derived values shown, and exit 64 after printing.

use toolgate_tests::http::{RawMcp, ServerEverything, ToolgateServe};

/// `toolgate config ARGS` with only `envs` of ours, in `dir`: (code, stdout, stderr).
fn config(
    dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> anyhow::Result<(i32, String, String)> {
    let mut command = toolgate_tests::toolgate_command()?;
    command
        .arg("config")
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir);
    let output = command.output()?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[test]
fn config_shows_generic_mode_layers_and_derived_values() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("toolgate.toml"),
        "upstream = \"http://127.0.0.1:3001/mcp\"\npath = \"/file-path\"\nmax_body_bytes = 1000\nconnect_timeout = \"7s\"\n",
    )?;
    let (code, stdout, stderr) = config(
        dir.path(),
        &[
            "--mcp-path",
            "/flag-path",
            "--header",
            "X-Key: ${E2E_SECRET}",
        ],
        &[
            ("TOOLGATE_MAX_BODY_BYTES", "2000"),
            ("E2E_SECRET", "hdr-secret-value"),
        ],
    )?;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("# effective toolgate configuration (generic mode)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("path = \"/flag-path\""),
        "a flag beats the file: {stdout}"
    );
    assert!(
        stdout.contains("max_body_bytes = 2000"),
        "env beats the file: {stdout}"
    );
    assert!(
        stdout.contains("connect_timeout = \"7s\""),
        "the file beats defaults: {stdout}"
    );
    assert!(stdout.contains("#   mode = \"generic\""), "{stdout}");
    assert!(
        stdout.contains("#   mcp_url = \"http://127.0.0.1:8787/flag-path\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("callback_url = \"http"),
        "no callback in generic mode: {stdout}"
    );
    assert!(
        stdout.contains("X-Key: <redacted>") && !stdout.contains("hdr-secret-value"),
        "{stdout}"
    );
    assert!(!stdout.contains("MISSING"), "{stdout}");
    Ok(())
}

#[test]
fn config_prints_an_incomplete_configuration_then_exits_64() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (code, stdout, stderr) = config(
        dir.path(),
        &["--require", "gmail", "--listen", "127.0.0.1:9911"],
        &[],
    )?;
    assert_eq!(code, 64, "{stdout}{stderr}");
    assert!(stdout.contains("(composio mode)"), "{stdout}");
    assert!(
        stdout.contains("require = [\"gmail\"]"),
        "what it has is printed: {stdout}"
    );
    assert!(stdout.contains("# MISSING composio.api_key:"), "{stdout}");
    assert!(stdout.contains("# MISSING user_id:"), "{stdout}");
    assert!(
        stdout.contains("#   callback_url = \"http://127.0.0.1:9911/callback\""),
        "the effective callback URL: {stdout}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("`composio.api_key`"), "{stderr}");
    // Another kind of problem is marked as such, still after printing.
    let (code, stdout, _) = config(
        dir.path(),
        &[
            "--upstream",
            "http://127.0.0.1:1/mcp",
            "--listen",
            "0.0.0.0:1",
        ],
        &[],
    )?;
    assert_eq!(code, 64);
    assert!(stdout.contains("# INVALID token:"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn generic_serve_reads_its_upstream_from_the_file() -> anyhow::Result<()> {
    let upstream = ServerEverything::start().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("toolgate.toml"),
        format!("upstream = \"{}\"\npath = \"/from-file\"\n", upstream.url),
    )?;
    let gateway = ToolgateServe::start_in(&[], &[], Some(dir.path())).await?;
    assert!(gateway.url.ends_with("/from-file"), "{}", gateway.url);
    let mut mcp = RawMcp::new(&gateway.url);
    mcp.initialize().await?;
    Ok(())
}
