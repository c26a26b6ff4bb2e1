//! The built binary's commands: configuration errors (exit 64, key named, nothing bound),
//! `config`, `status`, `connect`, and `demo`.

use std::process::Stdio;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use toolgate_tests::binary::{
    E2E_API_KEY, answer_link, assert_no_key, composio_env, eventually, links_in, run, sandbox,
};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// Bad configurations: one stderr line naming the key, exit 64, before any port is bound.
#[tokio::test(flavor = "multi_thread")]
async fn bad_configs_exit_64_naming_the_key() -> anyhow::Result<()> {
    // A port we hold: if toolgate tried to bind before validating, it would fail differently.
    let held = std::net::TcpListener::bind("127.0.0.1:0")?;
    let listen = held.local_addr()?.to_string();
    let base = [("COMPOSIO_API_KEY", E2E_API_KEY), ("TOOLGATE_USER_ID", "u")];
    let dir = tempfile::tempdir()?;
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "user_idd = \"x\"\n")?;
    let typo = typo.to_string_lossy().into_owned();
    // (flags, environment, the key the error must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![],
            vec![("TOOLGATE_USER_ID", "u")],
            "`composio.api_key`",
        ),
        (vec![], vec![("COMPOSIO_API_KEY", E2E_API_KEY)], "`user_id`"),
        (vec!["--require", "Not A Slug"], base.to_vec(), "`require`"),
        (
            vec![],
            [&base[..], &[("TOOLGATE_GATE_MODE", "sometimes")]].concat(),
            "`gate.mode`",
        ),
        (
            vec![],
            [&base[..], &[("TOOLGATE_LOG_LEVEL", "loud[")]].concat(),
            "`log.level`",
        ),
        (vec!["--listen", "0.0.0.0:0"], base.to_vec(), "`token`"),
        (vec!["--config", &typo], base.to_vec(), "user_idd"),
        (
            vec!["--base-url", "ftp://x"],
            base.to_vec(),
            "`composio.base_url`",
        ),
        (
            vec![],
            [&base[..], &[("TOOLGATE_PATH", "/healthz")]].concat(),
            "`path`",
        ),
    ];
    for (args, vars, key) in cases {
        let mut full = vec!["serve"];
        if !args.contains(&"--listen") {
            full.extend(["--listen", listen.as_str()]);
        }
        full.extend(args.iter().copied());
        let (code, stdout, stderr) = run(&full, &env(&vars)).await?;
        assert_eq!(code, 64, "{args:?} {vars:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?}: expected {key} in {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stdout.is_empty());
        assert_no_key("a config error", &stderr);
    }
    drop(held);
    Ok(())
}

/// An unknown toolkit is found only by asking Composio: still exit 64 naming `require`.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_toolkit_is_a_config_error() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut vars = composio_env(&sandbox, "u");
    vars.push(("TOOLGATE_REQUIRE".into(), "gmail,nosuchkit".into()));
    let (code, _, stderr) = run(&["serve", "--listen", "127.0.0.1:0"], &vars).await?;
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("`require`") && stderr.contains("nosuchkit"),
        "{stderr}"
    );
    assert_no_key("stderr", &stderr);
    Ok(())
}

/// `toolgate config` prints the merged configuration with secrets redacted.
#[tokio::test(flavor = "multi_thread")]
async fn config_prints_effective_config_redacted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("toolgate.toml");
    std::fs::write(
        &file,
        "user_id = \"from-file\"\nrequire = [\"gmail\"]\n[gate]\nmode = \"wait\"\n",
    )?;
    let file = file.to_string_lossy().into_owned();
    let vars = env(&[
        ("COMPOSIO_API_KEY", E2E_API_KEY),
        ("TOOLGATE_TOKEN", "inbound-token-abcdefghijkl"),
        ("TOOLGATE_REQUIRE", "gmail,github"),
    ]);
    let (code, stdout, stderr) = run(
        &["config", "--config", &file, "--user-id", "from-flag"],
        &vars,
    )
    .await?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("user_id = \"from-flag\""), "{stdout}");
    assert!(
        stdout.contains("\"github\""),
        "env beats the file: {stdout}"
    );
    assert!(
        stdout.contains("mode = \"wait\""),
        "the file beats defaults: {stdout}"
    );
    assert!(stdout.contains("<redacted>"));
    assert!(!stdout.contains("inbound-token-abcdefghijkl"));
    assert_no_key("toolgate config", &stdout);
    Ok(())
}

/// `status` (table and JSON, exit 3 while pending, 0 once connected) and `connect` (prints the
/// link, waits, exit 0 when connected; exit 3 when denied).
#[tokio::test(flavor = "multi_thread")]
async fn status_and_connect() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut vars = composio_env(&sandbox, "cli-user");
    vars.push(("TOOLGATE_REQUIRE".into(), "gmail,hackernews".into()));

    let (code, stdout, stderr) = run(&["status"], &vars).await?;
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout.contains("TOOLKIT") && stdout.contains("gmail"),
        "{stdout}"
    );
    assert!(stdout.contains("Pending"), "{stdout}");
    assert!(
        stdout.contains("No auth needed"),
        "hackernews needs none: {stdout}"
    );
    // Read-only: no link minted, and the second run reuses the remembered session.
    assert_eq!(links_in(&stdout).len(), 0, "{stdout}");
    assert!(stdout.contains("status only reads"), "{stdout}");
    let (code, json, _) = run(&["status", "--json"], &vars).await?;
    assert_eq!(code, 3);
    let view: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(view["toolkits"][0]["slug"], "gmail");
    assert_eq!(view["toolkits"][0]["status"], "pending");
    assert_eq!(view["toolkits"][1]["status"], "no_auth");
    assert!(
        view["session_id"]
            .as_str()
            .unwrap_or("")
            .starts_with("trs_")
    );
    let created = |sandbox: &toolgate_sandbox::Sandbox| {
        sandbox
            .requests()
            .iter()
            .filter(|request| {
                request.method == "POST" && request.path == "/api/v3.1/tool_router/session"
            })
            .count()
    };
    let minted = |sandbox: &toolgate_sandbox::Sandbox| {
        sandbox
            .requests()
            .iter()
            .filter(|request| request.method == "POST" && request.path.ends_with("/link"))
            .count()
    };
    assert_eq!(created(&sandbox), 1, "the second status reused the session");
    assert_eq!(minted(&sandbox), 0, "status mints nothing");
    let (code, stdout, _) = run(&["status", "--links"], &vars).await?;
    assert_eq!(code, 3);
    assert_eq!(links_in(&stdout).len(), 1, "--links mints: {stdout}");
    assert_eq!((created(&sandbox), minted(&sandbox)), (1, 1));

    // connect: denied → exit 3.
    let (code, stderr) = connect_answering(&vars, &sandbox, "deny").await?;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("✗ Gmail: not connected"), "{stderr}");
    // connect: allowed → exit 0; then status says all connected.
    let (code, stderr) = connect_answering(&vars, &sandbox, "allow").await?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("✓ Gmail: connected (ca_"), "{stderr}");
    let (code, stdout, stderr) = run(&["status"], &vars).await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("all required toolkits are connected"),
        "{stdout}"
    );
    assert!(stdout.contains("Connected"));
    for text in [&stdout, &stderr, &json] {
        assert_no_key("status/connect output", text);
    }
    Ok(())
}

/// Runs `toolgate connect gmail`, answers the link it prints with `verb`; returns (code, stderr).
async fn connect_answering(
    vars: &[(String, String)],
    sandbox: &toolgate_sandbox::Sandbox,
    verb: &str,
) -> anyhow::Result<(i32, String)> {
    let mut command = toolgate_tests::toolgate_command()?;
    command.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut child = tokio::process::Command::from(command)
        .args(["connect", "gmail", "--timeout", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(toolgate_tests::binary::PATIENCE, lines.next_line())
        .await??
        .context("connect printed no link")?;
    assert!(line.starts_with("gmail: "), "{line}");
    let link = links_in(&line).into_iter().next().context("no link")?;
    answer_link(sandbox, &link, verb).await?;
    let output =
        tokio::time::timeout(toolgate_tests::binary::PATIENCE, child.wait_with_output()).await??;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_no_key("connect stderr", &stderr);
    Ok((output.status.code().unwrap_or(-1), stderr))
}

/// `toolgate demo`: sandbox (on the port asked for) + gateway, prints the URL, both client
/// snippets, a working `status` command line, and each link once.
#[tokio::test(flavor = "multi_thread")]
async fn demo_prints_url_snippets_and_links() -> anyhow::Result<()> {
    let port = toolgate_tests::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let sandbox_listen = format!("127.0.0.1:{}", toolgate_tests::free_port()?);
    let mut command = toolgate_tests::toolgate_command()?;
    // Files rather than pipes: the demo runs until we stop it, and we read as it writes.
    let stdout_file = tempfile::NamedTempFile::new()?;
    let stderr_file = tempfile::NamedTempFile::new()?;
    command
        .args([
            "demo",
            "--listen",
            &listen,
            "--sandbox-listen",
            &sandbox_listen,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_file.reopen()?))
        .stderr(Stdio::from(stderr_file.reopen()?));
    let mut demo = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()?;
    let stderr = eventually("the Connect Links on stderr", || async {
        let text = std::fs::read_to_string(stderr_file.path())?;
        Ok((links_in(&text).len() >= 2).then_some(text))
    })
    .await?;
    assert!(
        stderr.contains("Gmail") && stderr.contains("GitHub"),
        "{stderr}"
    );
    let stdout = eventually("the banner", || async {
        let text = std::fs::read_to_string(stdout_file.path())?;
        Ok(text.contains("Press Ctrl-C").then_some(text))
    })
    .await?;
    assert!(stdout.contains(&format!("http://{listen}/mcp")), "{stdout}");
    assert!(stdout.contains("\"url\""), "Cursor snippet: {stdout}");
    assert!(
        stdout.contains("\"command\"") && stdout.contains("\"stdio\""),
        "Claude snippet: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "\"COMPOSIO_BASE_URL\": \"http://{sandbox_listen}\""
        )),
        "the snippet names the fixed sandbox: {stdout}"
    );
    let links = links_in(&stderr);
    let unique: std::collections::BTreeSet<_> = links.iter().collect();
    assert_eq!(links.len(), unique.len(), "each link once: {stderr}");
    // The printed `status` line works as printed (exit 3: nothing is connected yet).
    let status_line = stdout
        .lines()
        .find(|line| line.contains(" status --user-id"))
        .context("no status command line")?;
    let mut shell = std::process::Command::new("sh");
    toolgate_tests::without_caller_config(&mut shell);
    shell.args(["-c", status_line.trim()]);
    let output = tokio::task::spawn_blocking(move || shell.output()).await??;
    let status_out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{status_line}: {status_out}");
    assert!(
        status_out.contains("gmail") && status_out.contains("github"),
        "{status_out}"
    );
    let ready = reqwest::get(format!("http://{listen}/readyz")).await?;
    assert_eq!(ready.status(), 200);
    let pid = demo.id().context("demo already exited")?;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let status = tokio::time::timeout(toolgate_tests::binary::PATIENCE, demo.wait()).await??;
    assert!(status.success(), "{status}");
    Ok(())
}

/// Generic mode serves the operations routes too, and counts upstream failures.
#[tokio::test(flavor = "multi_thread")]
async fn generic_mode_has_health_readiness_and_metrics() -> anyhow::Result<()> {
    // Nothing listens on this port: every forwarded request is an upstream failure.
    let dead_port = toolgate_tests::free_port()?;
    let upstream = format!("http://127.0.0.1:{dead_port}/mcp");
    let mut serve =
        toolgate_tests::http::ToolgateServe::start(&["--upstream", &upstream], &[]).await?;
    let base = serve.url.trim_end_matches("/mcp").to_owned();
    let client = reqwest::Client::builder().no_proxy().build()?;
    assert_eq!(
        client.get(format!("{base}/healthz")).send().await?.status(),
        200
    );
    let ready = client.get(format!("{base}/readyz")).send().await?;
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await?;
    assert_eq!(ready["mode"], "generic");
    assert_eq!(ready["gate"], "open");
    let failed = client
        .post(&serve.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)
        .send()
        .await?;
    assert_eq!(failed.status(), 502);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for needle in [
        "toolgate_upstream_errors_total{kind=\"unreachable\"} 1",
        "toolgate_requests_total{method=\"tools/list\",status=\"502\"} 1",
        "toolgate_gate_open 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    assert!(serve.process.terminate().await?.success());
    Ok(())
}
