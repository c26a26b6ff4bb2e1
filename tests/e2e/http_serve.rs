//! `toolgate serve` (generic mode) end to end: the built binary in front of
//! server-everything, the sandbox's MCP upstream and a Python SDK upstream, driven by real
//! clients (MCP Inspector CLI, the Python SDK) and by hand-made requests.

use std::time::Duration;

use serde_json::{Value, json};
use toolgate_tests::http::{RawMcp, ServerEverything, ToolgateServe, messages, serve_exit};
use toolgate_tests::peer;

fn inspector() -> anyhow::Result<std::path::PathBuf> {
    peer("node/node_modules/.bin/mcp-inspector")
}

fn python() -> anyhow::Result<std::path::PathBuf> {
    peer("venv/bin/python")
}

async fn run(program: &std::path::Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    Ok(output)
}

#[tokio::test]
async fn inspector_cli_lists_and_calls_tools_through_toolgate() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let inspector = inspector().unwrap();
    let list = run(
        &inspector,
        &["--cli", &gateway.url, "--method", "tools/list"],
    )
    .await
    .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let tools: Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"get-sum"),
        "{names:?}"
    );
    let call = run(
        &inspector,
        &[
            "--cli",
            &gateway.url,
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=through toolgate",
            "--header",
            "X-Client: e2e",
        ],
    )
    .await
    .unwrap();
    assert!(
        call.status.success(),
        "{}",
        String::from_utf8_lossy(&call.stderr)
    );
    let result: Value = serde_json::from_slice(&call.stdout).unwrap();
    assert_eq!(result["content"][0]["text"], "Echo: through toolgate");
}

#[tokio::test]
async fn python_sdk_falls_back_from_server_discover_and_gets_progress_through_toolgate() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    // mcp 2.x `Client(url)` (mode "auto") POSTs `server/discover` first; server-everything
    // answers 400 and the client must fall back to `initialize` — through the proxy.
    std::fs::write(
        &script,
        r#"
import sys, anyio
from mcp import Client
async def main():
    progress = []
    async def on_progress(p, total, message):
        progress.append(p)
    async with Client(sys.argv[1]) as client:
        echo = await client.call_tool("echo", {"message": "py"})
        print("echo", [c.text for c in echo.content if c.type == "text"][0])
        await client.call_tool("trigger-long-running-operation", {"duration": 0.3, "steps": 3},
                               progress_callback=on_progress)
        print("progress", len(progress))
anyio.run(main)
"#,
    )
    .unwrap();
    let output = run(
        &python().unwrap(),
        &[script.to_str().unwrap(), &gateway.url],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("echo Echo: py"), "{stdout}");
    assert!(stdout.contains("progress 3"), "{stdout}");
}

#[tokio::test]
async fn server_discover_400_passes_through_unchanged() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let discover = json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}});
    let mut answers = Vec::new();
    for url in [&upstream.url, &gateway.url] {
        let response = RawMcp::new(url)
            .post(&discover)
            .header("MCP-Protocol-Version", "2026-07-28")
            .header("Mcp-Method", "server/discover")
            .send()
            .await
            .unwrap();
        answers.push((response.status(), response.text().await.unwrap()));
    }
    assert_eq!(answers[0].0, 400);
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn progress_notifications_arrive_as_separate_chunks_before_the_result() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let mut mcp = RawMcp::new(&gateway.url);
    mcp.initialize().await.unwrap();
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
        "name":"trigger-long-running-operation","arguments":{"duration":0.6,"steps":3},
        "_meta":{"progressToken":"p-7"}}});
    let mut response = mcp.post(&call).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // Each time something arrives, note which messages are complete so far. A buffering proxy
    // would deliver everything at once; a streaming one shows progress before the result.
    let mut received = String::new();
    let mut snapshots = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        received.push_str(std::str::from_utf8(&chunk).unwrap());
        let complete: Vec<Value> =
            messages(&received[..received.rfind("\n\n").map_or(0, |end| end + 2)]);
        snapshots.push((
            complete
                .iter()
                .filter(|m| m["method"] == "notifications/progress")
                .count(),
            complete.iter().any(|m| m["id"] == 7),
        ));
    }
    let all = messages(&received);
    assert_eq!(
        all.iter()
            .filter(|m| m["method"] == "notifications/progress")
            .count(),
        3
    );
    assert_eq!(all.last().unwrap()["result"]["content"][0]["type"], "text");
    assert!(
        snapshots
            .iter()
            .any(|(progress, done)| *progress >= 1 && !done),
        "progress never arrived before the result: {snapshots:?}"
    );
    // SSE framing is intact: every event kept its id line.
    assert_eq!(
        received.matches("\nid: ").count() + usize::from(received.starts_with("id: ")),
        received.matches("data:").count()
    );
}

#[tokio::test]
async fn get_stream_resume_delete_and_status_bodies_pass_through() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let mut mcp = RawMcp::new(&gateway.url);
    mcp.initialize().await.unwrap();
    let session = mcp.session.clone().unwrap();

    // A call with progress; resume its stream after the first progress event.
    let call = json!({"jsonrpc":"2.0","id":"r","method":"tools/call","params":{
        "name":"trigger-long-running-operation","arguments":{"duration":0.3,"steps":3},
        "_meta":{"progressToken":"resume"}}});
    let body = mcp.post(&call).send().await.unwrap().text().await.unwrap();
    let first_progress_id = body
        .split("\n\n")
        .find(|event| event.contains("\"progress\":1"))
        .and_then(|event| event.lines().find_map(|line| line.strip_prefix("id: ")))
        .unwrap()
        .to_owned();
    let mut resumed = mcp
        .client
        .get(&gateway.url)
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", "2025-11-25")
        .header("Last-Event-ID", &first_progress_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let mut replay = String::new();
    while !messages(&replay).iter().any(|m| m["id"] == "r") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resumed.chunk())
            .await
            .expect("no replay")
            .unwrap()
            .expect("replay stream ended early");
        replay.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let replayed = messages(&replay);
    let progress: Vec<i64> = replayed
        .iter()
        .filter_map(|m| m["params"]["progress"].as_i64())
        .collect();
    assert_eq!(progress, vec![2, 3]);
    drop(resumed);

    // A standalone GET stream; a second one is refused with 409, body unchanged.
    let get = |session: &str| {
        mcp.client
            .get(&gateway.url)
            .header("Accept", "text/event-stream")
            .header("Mcp-Session-Id", session.to_owned())
            .header("MCP-Protocol-Version", "2025-11-25")
            .send()
    };
    let open = get(&session).await.unwrap();
    assert_eq!(open.status(), 200);
    assert_eq!(open.headers()["x-accel-buffering"], "no");
    let second = get(&session).await.unwrap();
    assert_eq!(second.status(), 409);
    let conflict_body = second.text().await.unwrap();
    assert!(
        conflict_body.contains("Only one SSE stream"),
        "{conflict_body}"
    );
    drop(open);

    // 406: no Accept header; the upstream's body arrives unchanged (compared with direct).
    let no_accept = |url: &str| {
        reqwest::Client::new()
            .post(url.to_owned())
            .header("Content-Type", "application/json")
            .header("Mcp-Session-Id", session.clone())
            .body(json!({"jsonrpc":"2.0","id":9,"method":"tools/list"}).to_string())
            .send()
    };
    let through = no_accept(&gateway.url).await.unwrap();
    let direct = no_accept(&upstream.url).await.unwrap();
    assert_eq!(through.status(), 406);
    assert_eq!(through.text().await.unwrap(), direct.text().await.unwrap());

    // DELETE ends the session upstream; the session is then unknown (400 from this upstream).
    let deleted = mcp
        .client
        .delete(&gateway.url)
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let after = mcp
        .post(&json!({"jsonrpc":"2.0","id":10,"method":"tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 400);
}

#[tokio::test]
async fn injected_api_key_reaches_the_sandbox_and_the_clients_authorization_does_not() {
    let sandbox = toolgate_sandbox::Sandbox::start(toolgate_sandbox::SandboxConfig::default())
        .await
        .unwrap();
    let session: Value = reqwest::Client::new()
        .post(format!(
            "{}/api/v3.1/tool_router/session",
            sandbox.base_url()
        ))
        .header("x-api-key", toolgate_sandbox::DEMO_API_KEY)
        .json(&json!({"user_id": "e2e-http"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mcp_url = session["mcp"]["url"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let header_file = dir.path().join("headers");
    std::fs::write(
        &header_file,
        "# from a file\nX-Team: blue\nx-api-key: wrong-key\n",
    )
    .unwrap();
    let gateway = ToolgateServe::start(
        &[
            "--upstream",
            &mcp_url,
            "--header-file",
            header_file.to_str().unwrap(),
            // Later flags replace the file's header of the same name.
            "--header",
            "x-api-key:${E2E_COMPOSIO_KEY}",
        ],
        &[("E2E_COMPOSIO_KEY", toolgate_sandbox::DEMO_API_KEY)],
    )
    .await
    .unwrap();
    sandbox.clear_requests();
    let mut mcp = RawMcp::new(&gateway.url);
    mcp.extra
        .push(("Authorization".into(), "Bearer client-own-token".into()));
    mcp.extra.push(("Cookie".into(), "session=client".into()));
    mcp.initialize().await.unwrap();
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"SANDBOX_ECHO","arguments":{"message":"via toolgate"}}});
    let body = mcp.post(&call).send().await.unwrap().text().await.unwrap();
    let answer = messages(&body).pop().unwrap();
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("via toolgate"),
        "{answer}"
    );
    let mcp_requests: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|request| request.path.contains("/mcp"))
        .collect();
    assert!(mcp_requests.len() >= 3, "{mcp_requests:?}");
    for request in &mcp_requests {
        assert_eq!(
            request.headers.get("x-api-key").map(String::as_str),
            Some(toolgate_sandbox::DEMO_API_KEY)
        );
        assert_eq!(
            request.headers.get("x-team").map(String::as_str),
            Some("blue")
        );
        assert!(
            !request.headers.contains_key("authorization"),
            "{request:?}"
        );
        assert!(!request.headers.contains_key("cookie"), "{request:?}");
    }
    // The key is never printed by toolgate.
    assert!(
        !gateway
            .process
            .stderr()
            .contains(toolgate_sandbox::DEMO_API_KEY)
    );
}

#[tokio::test]
async fn sandbox_progress_and_wrong_key_through_toolgate() {
    let sandbox = toolgate_sandbox::Sandbox::start(toolgate_sandbox::SandboxConfig::default())
        .await
        .unwrap();
    let session: Value = reqwest::Client::new()
        .post(format!(
            "{}/api/v3.1/tool_router/session",
            sandbox.base_url()
        ))
        .header("x-api-key", toolgate_sandbox::DEMO_API_KEY)
        .json(&json!({"user_id": "e2e-http-2"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mcp_url = session["mcp"]["url"].as_str().unwrap().to_owned();
    let gateway = ToolgateServe::start(
        &[
            "--upstream",
            &mcp_url,
            "--header",
            &format!("x-api-key: {}", toolgate_sandbox::DEMO_API_KEY),
        ],
        &[],
    )
    .await
    .unwrap();
    let mut mcp = RawMcp::new(&gateway.url);
    mcp.initialize().await.unwrap();
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"SANDBOX_SLOW_OPERATION","arguments":{"steps":3,"interval_ms":100},
        "_meta":{"progressToken":"slow"}}});
    let body = mcp.post(&call).send().await.unwrap().text().await.unwrap();
    let all = messages(&body);
    assert_eq!(
        all.iter()
            .filter(|m| m["method"] == "notifications/progress")
            .count(),
        3,
        "{body}"
    );
    assert_eq!(all.last().unwrap()["id"], 2);

    // A gateway with the wrong key: the upstream's 401 becomes a 502 with no challenge.
    let wrong = ToolgateServe::start(
        &["--upstream", &mcp_url, "--header", "x-api-key: sk_wrong"],
        &[],
    )
    .await
    .unwrap();
    let response = RawMcp::new(&wrong.url)
        .post(&json!({"jsonrpc":"2.0","id":"w","method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.headers().get("www-authenticate").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "w");
}

#[tokio::test]
async fn bad_flags_exit_64_with_one_clear_line() {
    // (flags, environment, what the error line must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (
            &[
                "--upstream",
                "http://127.0.0.1:1/mcp",
                "--header",
                "X-Key: ${E2E_UNSET_VAR}",
            ],
            &[],
            "E2E_UNSET_VAR",
        ),
        (
            &[
                "--upstream",
                "http://127.0.0.1:1/mcp",
                "--header",
                "no colon",
            ],
            &[],
            "Name: value",
        ),
        (
            &[
                "--upstream",
                "http://127.0.0.1:1/mcp",
                "--listen",
                "0.0.0.0:0",
            ],
            &[],
            "--token-env",
        ),
        (
            &["--upstream", "http://upstream.example/mcp"],
            &[],
            "--allow-http",
        ),
        (
            &[
                "--upstream",
                "http://127.0.0.1:1/mcp",
                "--header-file",
                "/nonexistent/headers",
            ],
            &[],
            "/nonexistent/headers",
        ),
    ];
    for (args, envs, named) in cases {
        let (code, stderr) = serve_exit(args, envs).await.unwrap();
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn token_host_and_origin_are_enforced_by_the_binary() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(
        &[
            "--upstream",
            &upstream.url,
            "--allow-origin",
            "https://app.example",
        ],
        &[("TOOLGATE_TOKEN", "inbound-e2e-token")],
    )
    .await
    .unwrap();
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}});
    let mcp = RawMcp::new(&gateway.url);
    assert_eq!(mcp.post(&init).send().await.unwrap().status(), 401);
    let authorized = || {
        mcp.post(&init)
            .header("Authorization", "Bearer inbound-e2e-token")
    };
    assert_eq!(authorized().send().await.unwrap().status(), 200);
    assert_eq!(
        authorized()
            .header("Origin", "https://app.example")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        authorized()
            .header("Origin", "https://evil.example")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        authorized()
            .header("Host", "evil.example")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_call_then_exits_zero() {
    let upstream = ServerEverything::start().await.unwrap();
    let mut gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let mut mcp = RawMcp::new(&gateway.url);
    mcp.initialize().await.unwrap();
    let call = json!({"jsonrpc":"2.0","id":"drain","method":"tools/call","params":{
        "name":"trigger-long-running-operation","arguments":{"duration":0.6,"steps":3},
        "_meta":{"progressToken":"d"}}});
    let mut response = mcp.post(&call).send().await.unwrap();
    let mut received = String::new();
    while !received.contains("\"progress\":1") {
        let chunk = response
            .chunk()
            .await
            .unwrap()
            .expect("ended before progress");
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let pid_exit = tokio::spawn(async move {
        let status = gateway.process.terminate().await;
        (status, gateway)
    });
    while let Some(chunk) = response.chunk().await.unwrap() {
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        messages(&received)
            .iter()
            .any(|m| m["id"] == "drain" && m.get("result").is_some()),
        "{received}"
    );
    let (status, gateway) = pid_exit.await.unwrap();
    assert!(status.unwrap().success(), "{}", gateway.process.stderr());
    assert!(
        RawMcp::new(&gateway.url).post(&call).send().await.is_err(),
        "still listening"
    );
}

#[tokio::test]
async fn conformance_suite_through_toolgate_matches_direct_and_passes_dns_rebinding() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let node22 = toolgate_tests::node22().unwrap();
    let conformance = peer("node/node_modules/@modelcontextprotocol/conformance").unwrap();
    let entry = conformance.join("dist/index.js");
    assert!(
        entry.is_file(),
        "conformance entry point missing at {}",
        entry.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let suite = |url: String, baseline: Option<std::path::PathBuf>| {
        let mut command = tokio::process::Command::new(&node22);
        command
            .arg(&entry)
            .args(["server", "--url", &url])
            .kill_on_drop(true);
        if let Some(baseline) = baseline {
            command.arg("--expected-failures").arg(baseline);
        }
        async move {
            let output = tokio::time::timeout(Duration::from_secs(120), command.output()).await??;
            anyhow::Ok(output)
        }
    };
    // Direct: server-everything lacks the suite's fixtures, so many scenarios fail; those
    // failures are the baseline. dns-rebinding-protection fails direct (it answers evil Hosts).
    let direct = suite(upstream.url.clone(), None).await.unwrap();
    let direct_out = String::from_utf8_lossy(&direct.stdout).into_owned();
    let failed: Vec<String> = direct_out
        .lines()
        .filter_map(|line| line.strip_prefix("✗ "))
        .filter_map(|line| line.split(':').next())
        .map(str::to_owned)
        .collect();
    assert!(
        failed.iter().any(|name| name == "dns-rebinding-protection"),
        "{direct_out}"
    );
    let baseline: String = std::iter::once("server:".to_owned())
        .chain(
            failed
                .iter()
                .filter(|name| *name != "dns-rebinding-protection")
                .map(|name| format!("  - {name}")),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let baseline_path = dir.path().join("baseline.yml");
    std::fs::write(&baseline_path, baseline + "\n").unwrap();
    // Through toolgate: exactly the direct failures, minus dns-rebinding-protection, which
    // must now pass (the suite exits non-zero on a new failure and on a stale baseline entry).
    let through = suite(gateway.url.clone(), Some(baseline_path))
        .await
        .unwrap();
    let through_out = String::from_utf8_lossy(&through.stdout);
    assert!(
        through.status.success(),
        "{through_out}\n{}",
        String::from_utf8_lossy(&through.stderr)
    );
    assert!(
        through_out.contains("✓ dns-rebinding-protection"),
        "{through_out}"
    );
}

#[tokio::test]
async fn protocol_2026_07_28_stateless_requests_pass_with_their_mcp_headers() {
    let upstream = toolgate_tests::http::PythonUpstream::start().await.unwrap();
    let gateway = ToolgateServe::start(
        &[
            "--upstream",
            &upstream.url,
            "--header",
            "X-Api-Key: ${E2E_KEY}",
        ],
        &[("E2E_KEY", "key-2026")],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("modern.py");
    // `Client(url)` probes with `server/discover`; this upstream answers it, so the whole
    // conversation is 2026-07-28: no session, `Mcp-Method`/`Mcp-Name` on every POST.
    std::fs::write(
        &script,
        r#"
import sys, json, anyio
from mcp import Client
async def main():
    async with Client(sys.argv[1]) as client:
        print("version", client.protocol_version)
        echo = await client.call_tool("echo", {"message": "modern"})
        print("echo", [c.text for c in echo.content if c.type == "text"][0])
        seen = await client.call_tool("headers", {})
        print("headers", [c.text for c in seen.content if c.type == "text"][0].replace("\n", ""))
anyio.run(main)
"#,
    )
    .unwrap();
    let output = run(
        &python().unwrap(),
        &[script.to_str().unwrap(), &gateway.url],
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("version 2026-07-28"), "{stdout}");
    assert!(stdout.contains("echo Echo: modern"), "{stdout}");
    let headers: Value = serde_json::from_str(
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("headers "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(headers["mcp-protocol-version"], "2026-07-28");
    assert_eq!(headers["mcp-method"], "tools/call");
    assert_eq!(headers["mcp-name"], "headers");
    assert_eq!(headers["x-api-key"], "key-2026");
    assert!(headers.get("mcp-session-id").is_none(), "{headers}");
}

#[tokio::test]
async fn a_2025_03_26_batch_passes_through() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let mut mcp = RawMcp::new(&gateway.url);
    mcp.protocol_version = "2025-03-26".into();
    mcp.initialize().await.unwrap();
    let batch = json!([
        {"jsonrpc":"2.0","id":"b1","method":"tools/call","params":{"name":"echo","arguments":{"message":"one"}}},
        {"jsonrpc":"2.0","id":"b2","method":"tools/call","params":{"name":"get-sum","arguments":{"a":2,"b":3}}}
    ]);
    let response = mcp.post(&batch).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answers = messages(&response.text().await.unwrap());
    let flat: Vec<&Value> = answers
        .iter()
        .flat_map(|answer| {
            answer
                .as_array()
                .map_or_else(|| vec![answer], |all| all.iter().collect())
        })
        .collect();
    let text_of = |id: &str| {
        flat.iter()
            .find(|answer| answer["id"] == id)
            .and_then(|answer| answer["result"]["content"][0]["text"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(text_of("b1").as_deref(), Some("Echo: one"));
    assert!(
        text_of("b2").is_some_and(|text| text.contains('5')),
        "{flat:?}"
    );
}
