//! `toolgate sandbox` as a process: prints its URL on stderr, serves the REST API with the
//! configured keys and link TTL, and exits cleanly on SIGTERM and SIGINT.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use toolgate_tests::toolgate_bin;

/// Bound for "soon" on a loaded CI machine; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(30);

/// Starts `toolgate sandbox` with `args` and returns the child and its base URL (read from the
/// one stderr line it prints when listening).
async fn spawn_sandbox(args: &[&str]) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(toolgate_bin()?)
        .arg("sandbox")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let url = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("toolgate sandbox listening on ") {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                return Ok(url);
            }
        }
        bail!("toolgate sandbox exited before listening")
    })
    .await
    .context("waiting for the listening line")??;
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

async fn signal_and_wait(
    mut child: Child,
    signal: &str,
) -> anyhow::Result<std::process::ExitStatus> {
    let pid = child.id().context("pid")?;
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} failed");
    Ok(tokio::time::timeout(PATIENCE, child.wait())
        .await
        .context("exit after signal")??)
}

#[tokio::test]
async fn sandbox_process_serves_the_configured_keys_and_stops_on_sigterm() -> anyhow::Result<()> {
    let (child, base) = spawn_sandbox(&[
        "--api-key",
        "sk_one",
        "--api-key",
        "sk_two",
        "--link-ttl",
        "10m",
    ])
    .await?;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let http = reqwest::Client::new();
    let create = |key: &'static str| {
        http.post(format!("{base}/api/v3.1/tool_router/session"))
            .header("x-api-key", key)
            .json(&json!({"user_id": "process-user", "manage_connections": {"enable": false}}))
            .send()
    };
    let created = create("sk_two").await?;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await?;
    let session = body["session_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        body["mcp"]["url"],
        json!(format!("{base}/tool_router/{session}/mcp"))
    );
    // Explicit keys replace the demo key.
    let refused = create("sk_sandbox_demo").await?;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("x-request-id"));

    let link: Value = http
        .post(format!(
            "{base}/api/v3.1/tool_router/session/{session}/link"
        ))
        .header("x-api-key", "sk_two")
        .json(&json!({"toolkit": "gmail"}))
        .send()
        .await?
        .json()
        .await?;
    let page = http
        .get(link["redirect_url"].as_str().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(page.status(), 200);
    assert!(page.text().await?.contains("Gmail"));

    let status = signal_and_wait(child, "TERM").await?;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    Ok(())
}

#[tokio::test]
async fn sandbox_process_stops_on_sigint() -> anyhow::Result<()> {
    let (child, base) = spawn_sandbox(&[]).await?;
    let answer = reqwest::Client::new()
        .get(format!("{base}/api/v3.1/connected_accounts"))
        .header("x-api-key", "sk_sandbox_demo")
        .send()
        .await?;
    assert_eq!(answer.status(), 200, "the demo key is the default");
    let status = signal_and_wait(child, "INT").await?;
    assert!(status.success(), "exit status after SIGINT: {status}");
    Ok(())
}

#[tokio::test]
async fn sandbox_process_reports_bad_arguments_and_busy_ports() -> anyhow::Result<()> {
    let bad_ttl = Command::new(toolgate_bin()?)
        .args(["sandbox", "--link-ttl", "soon"])
        .output()
        .await?;
    assert_eq!(bad_ttl.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&bad_ttl.stderr).contains("--link-ttl"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let busy = Command::new(toolgate_bin()?)
        .args(["sandbox", "--listen", &addr])
        .output()
        .await?;
    assert_eq!(busy.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    Ok(())
}
