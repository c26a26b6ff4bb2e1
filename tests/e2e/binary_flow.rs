//! The built binary in Composio mode against the sandbox: the whole gate lifecycle, the
//! connections page and callback, readiness while Composio is down, metrics, SIGTERM drain,
//! and the API key absent from every output.

use serde_json::json;
use toolgate_tests::binary::{
    Gateway, answer_link, assert_no_key, call_tool, composio_env, control, eventually, links_in,
    result_text, sandbox,
};

/// pending → blocked call carries the link → Allow → the same call passes → revoke → blocked
/// again with a fresh link; metrics and the startup table along the way; no key anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn whole_flow_allow_then_revoke() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut env = composio_env(&sandbox, "flow-user");
    env.push(("TOOLGATE_REQUIRE".into(), "gmail".into()));
    env.push(("TOOLGATE_GATE_RECHECK_INTERVAL".into(), "1s".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    let ready = gateway.wait_for_gate("closed").await?;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["toolkits"][0]["slug"], "gmail");
    assert_eq!(ready["toolkits"][0]["status"], "pending");

    let client = gateway.mcp().await?;
    // Listing passes while the gate is closed; only tools/call is blocked.
    let list = client
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await?
        .text()
        .await?;
    assert!(list.contains("SANDBOX_ECHO"), "{list}");
    let blocked = call_tool(&client, 2, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
    assert_eq!(blocked["result"]["isError"], true, "{blocked}");
    let text = result_text(&blocked);
    let links = links_in(&text);
    assert_eq!(links.len(), 1, "{text}");
    assert!(links[0].starts_with(&sandbox.base_url()), "{text}");
    assert!(text.contains("Gmail"), "{text}");

    // The startup announcement names the toolkit and the same link.
    let line = gateway
        .process
        .wait_for_line(|line| line.contains("/link/ln_"))
        .await?;
    assert!(line.contains(&links[0]), "{line}");
    let (status, page) = gateway.get("/connections").await?;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("href=\"{}\"", links[0])), "{page}");
    assert!(page.contains("http-equiv=\"refresh\""));

    answer_link(&sandbox, &links[0], "allow").await?;
    gateway.wait_for_gate("open").await?;
    let passed = call_tool(&client, 3, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
    assert_ne!(passed["result"]["isError"], true, "{passed}");
    assert!(result_text(&passed).contains("hi"), "{passed}");
    let (_, page) = gateway.get("/connections").await?;
    assert!(page.contains("data-status=\"connected\""), "{page}");
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "settled pages do not refresh"
    );
    let account = page
        .split("account ")
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
        })
        .filter(|id| id.starts_with("ca_"))
        .map(str::to_owned);
    let account = account.ok_or_else(|| anyhow::anyhow!("no account id on the page: {page}"))?;

    // Revoked at Composio: the periodic re-check closes the gate; the next blocked call asks
    // for a fresh link (nobody was waiting before it) and a following one carries it.
    control(
        &sandbox,
        &format!("/_sandbox/accounts/{account}/revoke"),
        None,
    )
    .await?;
    gateway.wait_for_gate("closed").await?;
    let again = eventually("a fresh link after revoke", || async {
        let answer = call_tool(&client, 4, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
        let links_now = links_in(&result_text(&answer));
        Ok((answer["result"]["isError"] == true
            && !links_now.is_empty()
            && links_now[0] != links[0])
            .then_some(answer))
    })
    .await?;
    assert!(result_text(&again).contains("Gmail"));

    let (status, metrics) = gateway.get("/metrics").await?;
    assert_eq!(status, 200);
    for needle in [
        "toolgate_blocked_tool_calls_total",
        "toolgate_composio_calls_total{endpoint=\"create_link\",outcome=\"ok\"}",
        "toolgate_composio_calls_total{endpoint=\"list_toolkits\",outcome=\"ok\"}",
        "toolgate_requests_total{method=\"tools/call\",status=\"200\"}",
        "toolgate_requests_total{method=\"tools/list\",status=\"200\"} 1",
        "toolgate_requests_total{method=\"initialize\",status=\"200\"} 1",
        "toolgate_upstream_latency_seconds_count",
        "toolgate_upstream_errors_total{kind=\"unreachable\"} 0",
        "toolgate_gate_open 0",
        "toolgate_pending_toolkits 1",
        "toolgate_ready 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }

    for (what, text) in [
        ("/metrics", metrics),
        ("/connections", page),
        ("/readyz", gateway.get("/readyz").await?.1),
        ("a blocked answer", again.to_string()),
    ] {
        assert_no_key(what, &text);
    }
    let status = gateway.process.terminate().await?;
    assert!(status.success(), "{status}");
    assert_no_key("stderr (debug logs)", &gateway.process.stderr());
    Ok(())
}

/// Deny → the toolkit shows failed, then a fresh link; a spoofed callback opens nothing.
#[tokio::test(flavor = "multi_thread")]
async fn deny_gives_fresh_link_and_spoofed_callback_opens_nothing() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut env = composio_env(&sandbox, "deny-user");
    env.push(("TOOLGATE_REQUIRE".into(), "github".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("closed").await?;
    let client = gateway.mcp().await?;
    let first = links_in(&result_text(
        &call_tool(&client, 1, "SANDBOX_ECHO", json!({"message": "x"})).await?,
    ));
    assert_eq!(first.len(), 1);

    // A spoofed success callback: toolgate re-checks with Composio, which says no.
    let (status, page) = gateway
        .get("/callback?status=success&connected_account_id=ca_spoofed123")
        .await?;
    assert_eq!(status, 200);
    assert!(page.contains("still confirming"), "{page}");
    assert!(page.contains("href=\"/connections\""));
    let (_, ready) = gateway.readyz().await?;
    assert_eq!(ready["gate"], "closed", "{ready}");
    let still = call_tool(&client, 2, "SANDBOX_ECHO", json!({"message": "x"})).await?;
    assert_eq!(still["result"]["isError"], true);

    // Deny: Composio marks the account FAILED; toolgate shows it and mints a fresh link.
    answer_link(&sandbox, &first[0], "deny").await?;
    let failed_page = eventually("the page to show the failure", || async {
        let (_, page) = gateway.get("/connections").await?;
        Ok(
            (page.contains("data-status=\"failed\"") || page.contains("previous attempt failed"))
                .then_some(page),
        )
    })
    .await?;
    assert!(failed_page.contains("GitHub"));
    let fresh = eventually("a fresh link after deny", || async {
        let answer = call_tool(&client, 3, "SANDBOX_ECHO", json!({"message": "x"})).await?;
        let links = links_in(&result_text(&answer));
        Ok((!links.is_empty() && links[0] != first[0]).then(|| (answer, links[0].clone())))
    })
    .await?;
    assert!(
        result_text(&fresh.0).contains("previous attempt failed"),
        "{}",
        fresh.0
    );
    // The failed callback page links back to the connections page.
    let (_, failed) = gateway.get("/callback?status=failed").await?;
    assert!(failed.contains("was not connected") && failed.contains("href=\"/connections\""));

    // The fresh link works.
    answer_link(&sandbox, &fresh.1, "allow").await?;
    gateway.wait_for_gate("open").await?;
    gateway.process.terminate().await?;
    assert_no_key("stderr", &gateway.process.stderr());
    Ok(())
}

/// Disconnect from the connections page: confirm, POST with the CSRF token, gate closes.
#[tokio::test(flavor = "multi_thread")]
async fn disconnect_from_the_page_closes_the_gate() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut env = composio_env(&sandbox, "disconnect-user");
    env.push(("TOOLGATE_REQUIRE".into(), "slack".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("closed").await?;
    let (_, page) = gateway.get("/connections").await?;
    let link = links_in(&page)
        .into_iter()
        .next()
        .expect("a Connect Link on the page");
    answer_link(&sandbox, &link, "allow").await?;
    gateway.wait_for_gate("open").await?;

    let (status, confirm) = gateway.get("/connections/disconnect?toolkit=slack").await?;
    assert_eq!(status, 200);
    let csrf = confirm
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned();
    let post = |csrf: String| {
        gateway
            .http
            .post(format!("{}/connections/disconnect", gateway.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("toolkit=slack&csrf={csrf}"))
            .send()
    };
    assert_eq!(post("forged".into()).await?.status(), 403);
    let (_, ready) = gateway.readyz().await?;
    assert_eq!(ready["gate"], "open", "a forged form changes nothing");
    let done = post(csrf).await?;
    assert_eq!(done.status(), 303);
    gateway.wait_for_gate("closed").await?;
    let (_, page) = gateway.get("/connections?disconnected=slack").await?;
    assert!(page.contains("Slack was disconnected."), "{page}");
    gateway.process.terminate().await?;
    Ok(())
}

/// Composio down at start: not ready (MCP requests get a JSON-RPC error with their id), then
/// ready once it recovers.
#[tokio::test(flavor = "multi_thread")]
async fn composio_down_at_start_then_ready() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    control(
        &sandbox,
        "/_sandbox/faults",
        Some(json!({"path_prefix": "/api/v3.1/tool_router/session", "status": 503})),
    )
    .await?;
    let mut env = composio_env(&sandbox, "outage-user");
    env.push(("TOOLGATE_REQUIRE".into(), "gmail".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    let not_ready = eventually("a failed attempt", || async {
        let (status, body) = gateway.readyz().await?;
        Ok((status == 503 && body["last_error"].is_string()).then_some(body))
    })
    .await?;
    assert_eq!(not_ready["gate"], "starting");
    let answer = gateway
        .http
        .post(gateway.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":"early-1","method":"tools/list"}"#)
        .send()
        .await?;
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value = answer.json().await?;
    assert_eq!(body["id"], "early-1");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not ready"),
        "{body}"
    );

    let client = reqwest::Client::builder().no_proxy().build()?;
    client
        .delete(format!("{}/_sandbox/faults", sandbox.base_url()))
        .send()
        .await?;
    gateway.wait_for_gate("closed").await?;
    let (status, _) = gateway.readyz().await?;
    assert_eq!(status, 200);
    gateway.process.terminate().await?;
    assert_no_key("stderr", &gateway.process.stderr());
    Ok(())
}

/// SIGTERM stops accepting and lets an in-flight call finish.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    // No required toolkits: the gate opens as soon as the session exists.
    let env = composio_env(&sandbox, "drain-user");
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("open").await?;
    let client = gateway.mcp().await?;
    sandbox.clear_requests();
    let request = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{
        "name":"SANDBOX_SLOW_OPERATION","arguments":{"steps":4,"interval_ms":500}}});
    let in_flight = tokio::spawn(client.post(&request).send());
    // Wait until the call reached the upstream, then stop the gateway.
    eventually("the call to reach the sandbox", || async {
        Ok(sandbox
            .requests()
            .iter()
            .any(|request| request.method == "POST" && request.path.ends_with("/mcp"))
            .then_some(()))
    })
    .await?;
    let pid_exit = tokio::spawn(async move {
        let status = gateway.process.terminate().await;
        (status, gateway)
    });
    let response = in_flight.await??;
    assert_eq!(response.status(), 200);
    let body = response.text().await?;
    assert!(body.contains("Completed 4 steps"), "{body}");
    let (status, gateway) = pid_exit.await?;
    assert!(status?.success());
    assert!(gateway.process.stderr().contains("draining"));
    // Nothing listens any more.
    let refused = reqwest::Client::new()
        .get(format!("{}/healthz", gateway.base))
        .send()
        .await;
    assert!(refused.is_err());
    Ok(())
}

/// `gate.mode = "wait"`: a blocked call is held; Allow meanwhile → the held call is forwarded.
#[tokio::test(flavor = "multi_thread")]
async fn wait_mode_holds_the_call_until_connected() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut env = composio_env(&sandbox, "wait-user");
    env.push(("TOOLGATE_REQUIRE".into(), "notion".into()));
    env.push(("TOOLGATE_GATE_MODE".into(), "wait".into()));
    env.push(("TOOLGATE_GATE_WAIT_TIMEOUT".into(), "60s".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("closed").await?;
    let (_, page) = gateway.get("/connections").await?;
    let link = links_in(&page)
        .into_iter()
        .next()
        .expect("a link on the page");
    let client = gateway.mcp().await?;
    let held = tokio::spawn(async move {
        call_tool(&client, 5, "SANDBOX_ECHO", json!({"message": "held"})).await
    });
    // The call is held (counted as held, not answered) while the toolkit is pending.
    eventually("the call to be held", || async {
        let (_, metrics) = gateway.get("/metrics").await?;
        Ok(metrics
            .contains("toolgate_held_tool_calls_total 1")
            .then_some(()))
    })
    .await?;
    assert!(!held.is_finished(), "a held call is not answered");
    answer_link(&sandbox, &link, "allow").await?;
    let answer = held.await??;
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    assert!(result_text(&answer).contains("held"), "{answer}");
    gateway.process.terminate().await?;
    Ok(())
}

/// With a token: MCP and pages need it; a browser logs in once with `?token=` (cookie).
#[tokio::test(flavor = "multi_thread")]
async fn token_protects_mcp_and_pages() -> anyhow::Result<()> {
    const TOKEN: &str = "e2e-inbound-token-0123456789";
    let sandbox = sandbox()?;
    let mut env = composio_env(&sandbox, "token-user");
    env.push(("TOOLGATE_TOKEN".into(), TOKEN.into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("open").await?;
    let unauthenticated = gateway
        .http
        .post(gateway.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await?;
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(gateway.get("/connections").await?.0, 401);
    assert_eq!(gateway.get("/metrics").await?.0, 401);
    assert_eq!(gateway.get("/healthz").await?.0, 200);
    let login = gateway
        .http
        .get(format!("{}/connections?token={TOKEN}", gateway.base))
        .send()
        .await?;
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str()?.to_owned();
    let page = gateway
        .http
        .get(format!("{}/connections", gateway.base))
        .header("cookie", cookie.split(';').next().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(page.status(), 200);
    let mut client = toolgate_tests::http::RawMcp::new(&gateway.mcp_url());
    client
        .extra
        .push(("Authorization".into(), format!("Bearer {TOKEN}")));
    client.initialize().await?;
    gateway.process.terminate().await?;
    assert!(
        !gateway.process.stderr().contains(TOKEN),
        "the token leaked into the logs"
    );
    Ok(())
}

/// A configured callback URL keeps its own query through Composio's redirect, and the page it
/// lands on confirms the connection.
#[tokio::test(flavor = "multi_thread")]
async fn configured_callback_url_keeps_its_query() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let port = toolgate_tests::free_port()?;
    let mut env = composio_env(&sandbox, "callback-user");
    env.push(("TOOLGATE_REQUIRE".into(), "linear".into()));
    env.push((
        "TOOLGATE_CALLBACK_URL".into(),
        format!("http://localhost:{port}/callback?tenant=acme"),
    ));
    env.push(("TOOLGATE_LISTEN".into(), format!("127.0.0.1:{port}")));
    // Not `Gateway::start`: it passes `--listen 127.0.0.1:0`, and the callback names a port.
    let mut command = tokio::process::Command::from(toolgate_tests::toolgate_command()?);
    command
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("serve");
    let mut process = toolgate_tests::http::Process::spawn("toolgate serve", command)?;
    let line = process
        .wait_for_line(|line| !links_in(line).is_empty())
        .await?;
    let link = links_in(&line).remove(0);
    let token = link.rsplit('/').next().unwrap_or_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let allowed = client
        .post(format!(
            "{}/_sandbox/links/{token}/allow",
            sandbox.base_url()
        ))
        .send()
        .await?;
    assert_eq!(allowed.status(), 303);
    let location = allowed.headers()["location"].to_str()?.to_owned();
    assert!(
        location.starts_with(&format!("http://localhost:{port}/callback?tenant=acme&")),
        "{location}"
    );
    assert!(location.contains("status=success") && location.contains("connected_account_id=ca_"));
    let page = client.get(&location).send().await?.text().await?;
    assert!(page.contains("Linear is connected"), "{page}");
    assert!(process.terminate().await?.success());
    Ok(())
}
