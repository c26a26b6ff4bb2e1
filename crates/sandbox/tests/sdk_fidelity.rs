//! Fidelity: the official Composio SDKs, pointed at the sandbox with `COMPOSIO_BASE_URL`, run
//! the flow toolgate automates and cannot tell the difference. The scripts live in
//! `tests/sandbox/`; the SDKs are the pinned peers installed by `tests/peers/install.sh`
//! (Python `composio==0.30.0` in `$TOOLGATE_PEERS/venv`, `@composio/core` 0.17.0 in
//! `$TOOLGATE_PEERS/node/node_modules`). A missing peer fails the test with a clear message.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use toolgate_sandbox::{DEMO_API_KEY, Sandbox, SandboxConfig};

/// A generous bound for one SDK run (they take ~1-3 s; `wait_for_connection` polls every 1 s).
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn peers_dir() -> PathBuf {
    std::env::var_os("TOOLGATE_PEERS")
        .map_or_else(|| workspace_root().join("target/peers"), PathBuf::from)
}

fn require(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is missing at {}: run tests/peers/install.sh (or ./tests/run.sh)",
        path.display()
    );
    path
}

/// Runs `program args` against a fresh sandbox with the SDK environment; returns stdout after
/// asserting success.
async fn run_against_sandbox(
    program: PathBuf,
    args: &[PathBuf],
    extra_env: &[(&str, PathBuf)],
) -> String {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox starts");
    let mut command = tokio::process::Command::new(&program);
    command
        .args(args)
        .env("COMPOSIO_BASE_URL", sandbox.base_url())
        .env("COMPOSIO_API_KEY", DEMO_API_KEY)
        // Keep the SDKs quiet and local: no user config file, no logging noise.
        .env("HOME", std::env::temp_dir())
        .env_remove("COMPOSIO_USER_API_KEY")
        .env_remove("COMPOSIO_ORG_API_KEY")
        .env_remove("COMPOSIO_CUSTOM_HEADERS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("the SDK run finishes")
        .expect("the SDK run's output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        program.display(),
        output.status
    );
    // The SDK really talked to the sandbox: sessions, toolkits, links and polls are in the log.
    let paths: Vec<String> = sandbox
        .requests()
        .into_iter()
        .map(|request| request.path)
        .collect();
    for expected in [
        "/api/v3.1/tool_router/session",
        "/toolkits",
        "/link",
        "/api/v3.1/connected_accounts/ca_",
    ] {
        assert!(
            paths.iter().any(|path| path.contains(expected)),
            "no request to {expected} in {paths:?}"
        );
    }
    let with_key = sandbox
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/api/"))
        .all(|request| request.headers.get("x-api-key").map(String::as_str) == Some(DEMO_API_KEY));
    assert!(with_key, "every API call carried x-api-key");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_runs_the_manual_auth_flow() {
    let python = require(
        peers_dir().join("venv/bin/python"),
        "the Python peer venv (composio==0.30.0)",
    );
    let script = require(
        workspace_root().join("tests/sandbox/python_sdk_flow.py"),
        "the Python fidelity script",
    );
    let stdout = run_against_sandbox(python, &[script], &[]).await;
    for line in [
        "ok mcp.headers carry exactly x-api-key (same origin as the API)",
        "ok wait_for_connection() returned ACTIVE after polling",
        "ok toolkits() shows gmail ACTIVE",
        "ok strict: toolkits page 1 of several",
        "PYTHON SDK FLOW PASSED",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_runs_the_manual_auth_flow() {
    let modules = require(peers_dir().join("node/node_modules"), "the npm peers");
    require(
        modules.join("@composio/core/package.json"),
        "@composio/core 0.17.0",
    );
    let script = require(
        workspace_root().join("tests/sandbox/ts_sdk_flow.mjs"),
        "the TypeScript fidelity script",
    );
    let stdout = run_against_sandbox(
        PathBuf::from("node"),
        &[script],
        &[("TOOLGATE_NODE_MODULES", modules)],
    )
    .await;
    for line in [
        "ok mcp.headers carry exactly x-api-key",
        "ok waitForConnection() returned ACTIVE after polling",
        "ok toolkits() shows gmail ACTIVE",
        "TS SDK FLOW PASSED",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}
