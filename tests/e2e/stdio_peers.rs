//! `toolgate stdio` driven by real MCP clients (the Python `mcp` SDK's `stdio_client` and MCP
//! Inspector CLI v2) against real upstreams (server-everything and the sandbox's MCP endpoint).

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use toolgate_sandbox::{Sandbox, SandboxConfig};
use toolgate_tests::http::ServerEverything;
use toolgate_tests::stdio::{expect_step, python_driver, sandbox_session, server_everything_on};
use toolgate_tests::{free_port, peer, toolgate_bin};

/// Liveness bound for a driver to finish after its last step.
const EXIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn python_sdk_round_trips_through_toolgate_stdio() -> anyhow::Result<()> {
    let upstream = ServerEverything::start().await?;
    let mut driver = python_driver("full", &["--upstream", &upstream.url], &[])?;

    let init = expect_step(&mut driver, "initialize").await?;
    assert_eq!(init["server"], "mcp-servers/everything");

    let list = expect_step(&mut driver, "list").await?;
    let tools: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for wanted in [
        "echo",
        "trigger-sampling-request",
        "trigger-elicitation-request",
    ] {
        assert!(tools.contains(&wanted), "{wanted} missing from {tools:?}");
    }

    let call = expect_step(&mut driver, "call").await?;
    assert_eq!(call["texts"], json!(["Echo: hello through toolgate"]));
    assert_eq!(call["is_error"], false);

    // Every progress notification reached the client, in order, before the result.
    let progress = expect_step(&mut driver, "progress").await?;
    assert_eq!(progress["progress"], json!([1.0, 2.0, 3.0]));
    assert!(progress["texts"][0].as_str().unwrap().contains("completed"));

    // Server → client requests on the POST stream, answered by the client's callbacks.
    let sampling = expect_step(&mut driver, "sampling").await?;
    assert!(
        sampling["texts"][0]
            .as_str()
            .unwrap()
            .contains("sampled-by-python"),
        "{sampling}"
    );
    let elicitation = expect_step(&mut driver, "elicitation").await?;
    let elicited = elicitation["texts"].to_string();
    assert!(
        elicited.contains("Ada Lovelace") && elicited.contains("accept"),
        "{elicited}"
    );

    let roots = expect_step(&mut driver, "roots").await?;
    assert!(
        roots["texts"][0]
            .as_str()
            .unwrap()
            .contains("toolgate-test-root"),
        "{roots}"
    );

    let concurrent = expect_step(&mut driver, "concurrent").await?;
    for n in 0..5 {
        assert_eq!(
            concurrent["texts"][n],
            json!([format!("Echo: concurrent {n}")])
        );
    }

    // A logging notification pushed on the session's GET stream.
    let logging = expect_step(&mut driver, "logging").await?;
    assert!(
        logging["messages"][0]
            .as_str()
            .unwrap()
            .contains("SessionId"),
        "{logging}"
    );

    expect_step(&mut driver, "closed").await?;
    let status = driver.wait(EXIT).await?;
    assert!(
        status.success(),
        "driver failed; stderr:\n{}",
        driver.stderr()
    );
    Ok(())
}

#[tokio::test]
async fn upstream_restarted_mid_session_is_invisible_to_the_client() -> anyhow::Result<()> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut first = server_everything_on(port).await?;
    let mut driver = python_driver("restart", &["--upstream", &url], &[])?;
    expect_step(&mut driver, "initialize").await?;
    let before = expect_step(&mut driver, "before").await?;
    assert_eq!(before["texts"], json!(["Echo: before restart"]));
    expect_step(&mut driver, "waiting").await?;

    // The old server and every session it knew are gone; a new one takes the same port.
    first.terminate().await?;
    drop(first);
    let _second = server_everything_on(port).await?;
    driver.send_raw("go").await?;

    let after = expect_step(&mut driver, "after").await?;
    assert_eq!(after["texts"], json!(["Echo: after restart"]), "{after}");
    assert_eq!(after["is_error"], false);
    expect_step(&mut driver, "closed").await?;
    assert!(driver.wait(EXIT).await?.success(), "{}", driver.stderr());
    Ok(())
}

#[tokio::test]
async fn python_sdk_against_the_sandbox_upstream_with_progress() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let (url, api_key) = sandbox_session(&sandbox, "stdio-user").await?;
    // The key travels the way a Claude Desktop config would pass it: `${VAR}` in a
    // no-space `Name:value` header, expanded by toolgate.
    let mut driver = python_driver(
        "sandbox",
        &["--upstream", &url, "--header", "x-api-key:${SANDBOX_KEY}"],
        &[("SANDBOX_KEY", &api_key)],
    )?;
    expect_step(&mut driver, "initialize").await?;
    let list = expect_step(&mut driver, "list").await?;
    assert!(
        list["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("SANDBOX_ECHO")),
        "{list}"
    );
    let call = expect_step(&mut driver, "call").await?;
    assert_eq!(call["texts"], json!(["Echo: hello sandbox"]));
    let progress = expect_step(&mut driver, "progress").await?;
    assert_eq!(progress["progress"], json!([1.0, 2.0, 3.0]), "{progress}");
    expect_step(&mut driver, "closed").await?;
    assert!(driver.wait(EXIT).await?.success(), "{}", driver.stderr());

    // The upstream saw toolgate's injected key and the MCP headers it sets from each body.
    let mcp_posts: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains("/mcp"))
        .collect();
    assert!(!mcp_posts.is_empty());
    for request in &mcp_posts {
        assert_eq!(
            request.headers.get("x-api-key"),
            Some(&api_key),
            "{request:?}"
        );
        assert!(request.headers.contains_key("mcp-method"), "{request:?}");
    }
    assert!(
        mcp_posts
            .iter()
            .any(|r| r.headers.get("mcp-name").map(String::as_str) == Some("SANDBOX_ECHO")),
        "no Mcp-Name on the tools/call"
    );
    Ok(())
}

/// Runs MCP Inspector CLI v2 against `toolgate stdio <toolgate_args>`; returns its stdout JSON.
async fn inspector(cli_args: &[&str], toolgate_args: &[&str]) -> anyhow::Result<Value> {
    let inspector = peer("node/node_modules/.bin/mcp-inspector")?;
    let toolgate = toolgate_bin()?;
    let mut command = tokio::process::Command::new(inspector);
    command
        .arg("--cli")
        .args(cli_args)
        .arg("--")
        .arg(toolgate)
        .arg("stdio")
        .args(toolgate_args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .context("inspector did not finish")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "inspector exited {}: stdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).with_context(|| format!("inspector output is not JSON: {stdout}"))
}

#[tokio::test]
async fn inspector_cli_lists_and_calls_through_toolgate_stdio() -> anyhow::Result<()> {
    let upstream = ServerEverything::start().await?;
    let list = inspector(&["--method", "tools/list"], &["--upstream", &upstream.url]).await?;
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"get-sum"),
        "{names:?}"
    );

    let sum = inspector(
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get-sum",
            "--tool-arg",
            "a=2",
            "--tool-arg",
            "b=3",
        ],
        &["--upstream", &upstream.url],
    )
    .await?;
    assert!(sum.to_string().contains("The sum of 2 and 3 is 5"), "{sum}");
    Ok(())
}

#[tokio::test]
async fn inspector_cli_with_injected_header_against_the_sandbox() -> anyhow::Result<()> {
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let (url, api_key) = sandbox_session(&sandbox, "inspector-user").await?;
    // Inspector v2 passes its child only a few variables plus `-e` ones: the key comes in as
    // `-e` and toolgate expands `${SANDBOX_KEY}` itself.
    let env = format!("SANDBOX_KEY={api_key}");
    let echo = inspector(
        &[
            "-e",
            &env,
            "--method",
            "tools/call",
            "--tool-name",
            "SANDBOX_ECHO",
            "--tool-arg",
            "message=hi",
        ],
        &["--upstream", &url, "--header", "X-Api-Key: ${SANDBOX_KEY}"],
    )
    .await?;
    assert!(echo.to_string().contains("Echo: hi"), "{echo}");
    Ok(())
}
