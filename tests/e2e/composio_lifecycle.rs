//! The Composio lifecycle of the built binary against the sandbox: what an idle gateway costs
//! once its links expire, a session deleted under a running gateway, a refused API key,
//! pinned and INACTIVE accounts, several gmail accounts, and a white-label auth config.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use toolgate_sandbox::{Sandbox, SandboxConfig};
use toolgate_tests::binary::{
    E2E_API_KEY, Gateway, answer_link, assert_no_key, call_tool, composio_env, control, eventually,
    links_in, result_text, run,
};

fn sandbox_with(config: SandboxConfig) -> anyhow::Result<Sandbox> {
    Sandbox::start_detached(SandboxConfig {
        api_keys: vec![E2E_API_KEY.to_owned()],
        ..config
    })
    .context("starting the sandbox")
}

fn count(sandbox: &Sandbox, method: &str, matches: impl Fn(&str) -> bool) -> usize {
    sandbox
        .requests()
        .iter()
        .filter(|request| request.method == method && matches(&request.path))
        .count()
}

fn link_posts(sandbox: &Sandbox) -> usize {
    count(sandbox, "POST", |path| path.ends_with("/link"))
}

/// Calls to Composio's REST API (not the MCP URL, not the control plane).
fn api_calls(sandbox: &Sandbox) -> usize {
    sandbox
        .requests()
        .iter()
        .filter(|request| request.path.starts_with("/api/"))
        .count()
}

/// A REST call to the sandbox with the e2e key.
async fn api(
    sandbox: &Sandbox,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut request = client
        .request(method, format!("{}{path}", sandbox.base_url()))
        .header("x-api-key", E2E_API_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{path} answered {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// A connected gmail account of `user`, made through its own session and link.
async fn connected_gmail(sandbox: &Sandbox, user: &str) -> anyhow::Result<String> {
    let session = api(
        sandbox,
        reqwest::Method::POST,
        "/api/v3.1/tool_router/session",
        Some(json!({"user_id": user})),
    )
    .await?;
    let id = session["session_id"].as_str().context("no session id")?;
    let link = api(
        sandbox,
        reqwest::Method::POST,
        &format!("/api/v3.1/tool_router/session/{id}/link"),
        Some(json!({"toolkit": "gmail"})),
    )
    .await?;
    answer_link(
        sandbox,
        link["redirect_url"].as_str().context("no link")?,
        "allow",
    )
    .await?;
    Ok(link["connected_account_id"]
        .as_str()
        .context("no account")?
        .to_owned())
}

fn toml_file(text: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    let file = tempfile::Builder::new().suffix(".toml").tempfile()?;
    std::fs::write(file.path(), text)?;
    Ok(file)
}

/// Three pending toolkits, links that expire after 2 s: once they have, the gateway makes
/// (almost) no Composio calls; the next blocked call gets a fresh link.
#[tokio::test(flavor = "multi_thread")]
async fn idle_gateway_stops_calling_once_links_expire() -> anyhow::Result<()> {
    let sandbox = sandbox_with(SandboxConfig {
        link_ttl: Duration::from_secs(2),
        ..SandboxConfig::default()
    })?;
    let mut env = composio_env(&sandbox, "idle-user");
    env.push(("TOOLGATE_REQUIRE".into(), "gmail,github,slack".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("closed").await?;
    assert_eq!(link_posts(&sandbox), 3, "one link per toolkit at startup");
    // Composio expires the three accounts; the gateway's next poll of each sees it and stops.
    eventually("every link seen expired", || async {
        let seen = gateway
            .process
            .stderr()
            .matches("connect link expired")
            .count();
        Ok((seen == 3).then_some(()))
    })
    .await?;
    // The measurement window the issue asks for: calls made while nobody uses the gateway.
    let before = api_calls(&sandbox);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let idle_calls = api_calls(&sandbox) - before;
    assert!(
        idle_calls <= 1,
        "{idle_calls} Composio calls in 6 idle seconds"
    );
    assert_eq!(link_posts(&sandbox), 3, "nothing re-minted on a timer");

    // Someone calls: the answer says a link is on its way; a call right after carries it.
    let client = gateway.mcp().await?;
    let first = call_tool(&client, 1, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
    assert_eq!(first["result"]["isError"], true, "{first}");
    let fresh = eventually("a fresh link on demand", || async {
        let answer = call_tool(&client, 2, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
        Ok((links_in(&result_text(&answer)).len() == 3).then_some(answer))
    })
    .await?;
    assert_eq!(link_posts(&sandbox), 6, "{fresh}");
    let (_, metrics) = gateway.get("/metrics").await?;
    assert!(
        metrics.contains(
            "toolgate_composio_calls_total{endpoint=\"get_connected_account\",outcome=\"ok\"}"
        ),
        "{metrics}"
    );
    gateway.process.terminate().await?;
    assert_no_key("stderr", &gateway.process.stderr());
    Ok(())
}

/// The session is deleted under a running gateway: the next MCP request's 404 makes toolgate
/// check, re-create the session and swap the upstream; the client re-initializes and calls.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_session_is_recovered() -> anyhow::Result<()> {
    let sandbox = sandbox_with(SandboxConfig::default())?;
    let mut env = composio_env(&sandbox, "recover-user");
    env.push(("TOOLGATE_REQUIRE".into(), "hackernews".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("open").await?;
    let created = |sandbox: &Sandbox| {
        count(sandbox, "POST", |path| {
            path == "/api/v3.1/tool_router/session"
        })
    };
    assert_eq!(created(&sandbox), 1);
    let first = sandbox
        .requests()
        .iter()
        .find_map(|request| {
            request
                .path
                .strip_prefix("/api/v3.1/tool_router/session/")
                .and_then(|rest| rest.split('/').next())
                .map(str::to_owned)
        })
        .context("no session id in the request log")?;
    let mut client = gateway.mcp().await?;
    api(
        &sandbox,
        reqwest::Method::DELETE,
        &format!("/api/v3.1/tool_router/session/{first}"),
        None,
    )
    .await?;
    // Bounded like `eventually`: a client that meets MCP's 404 initializes again.
    let deadline = tokio::time::Instant::now() + toolgate_tests::binary::PATIENCE;
    let answer = loop {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never recovered:\n{}",
            gateway.process.stderr()
        );
        let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"SANDBOX_ECHO","arguments":{"message":"after recovery"}}});
        let response = client.post(&call).send().await?;
        // 404: MCP's answer for a session the server forgot; 400/503 (no session yet, not
        // ready during the swap): in every case, initialize again.
        if !response.status().is_success() {
            // MCP's answer for a session the server forgot: once the gateway is ready again,
            // a new client initializes.
            gateway.wait_for_gate("open").await?;
            client = toolgate_tests::http::RawMcp {
                client: reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(5))
                    .build()?,
                ..toolgate_tests::http::RawMcp::new(&gateway.mcp_url())
            };
            if let Err(error) = client.initialize().await {
                eprintln!("initialize: {error:#}");
            }
        } else {
            let body = response.text().await?;
            let done = toolgate_tests::http::messages(&body)
                .into_iter()
                .find(|message| message["id"] == 7 && message.get("result").is_some())
                .filter(|message| message["result"]["isError"] != true);
            if let Some(done) = done {
                break done;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(result_text(&answer).contains("after recovery"), "{answer}");
    assert_eq!(created(&sandbox), 2, "one new session");
    gateway.process.terminate().await?;
    Ok(())
}

/// A key Composio refuses stops the gateway at once: exit 1, one clear line, no retries.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_is_fatal() -> anyhow::Result<()> {
    let sandbox = sandbox_with(SandboxConfig::default())?;
    let mut env = composio_env(&sandbox, "refused-user");
    for (name, value) in &mut env {
        if name == "COMPOSIO_API_KEY" {
            *value = "sk_wrong_key_4711_abcdef".into();
        }
    }
    env.push(("TOOLGATE_REQUIRE".into(), "gmail".into()));
    let (code, stdout, stderr) = tokio::time::timeout(
        Duration::from_secs(30),
        run(&["serve", "--listen", "127.0.0.1:0"], &env),
    )
    .await??;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("refused the API key"), "{stderr}");
    assert!(!stderr.contains("sk_wrong_key_4711"), "{stderr}");
    assert_eq!(
        count(&sandbox, "POST", |path| path
            == "/api/v3.1/tool_router/session"),
        1,
        "no retries"
    );
    Ok(())
}

/// A pinned account that expired: a clear state on /readyz, the page and blocked answers, and
/// no link requests however often it is asked.
#[tokio::test(flavor = "multi_thread")]
async fn pinned_expired_account_is_a_clear_state() -> anyhow::Result<()> {
    let sandbox = sandbox_with(SandboxConfig::default())?;
    let account = connected_gmail(&sandbox, "pin-user").await?;
    control(
        &sandbox,
        &format!("/_sandbox/accounts/{account}/expire"),
        None,
    )
    .await?;
    let config = toml_file(&format!(
        "require = [\"gmail\"]\n[session.connected_accounts]\ngmail = \"{account}\"\n"
    ))?;
    let env = composio_env(&sandbox, "pin-user");
    let path = config.path().display().to_string();
    let mut gateway = Gateway::start(&["--config", &path], &env).await?;
    let ready = gateway.wait_for_gate("closed").await?;
    assert_eq!(ready["toolkits"][0]["status"], "pinned", "{ready}");
    let links_before = link_posts(&sandbox);
    let client = gateway.mcp().await?;
    for id in 1..=3 {
        let blocked = call_tool(&client, id, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
        let text = result_text(&blocked);
        assert!(
            text.contains(&format!(
                "pinned account {account} is EXPIRED: remove the pin or reconnect"
            )),
            "{text}"
        );
    }
    let (_, page) = gateway.get("/connections").await?;
    assert!(page.contains("remove the pin or reconnect"), "{page}");
    // Whatever asked (three blocked calls, a page view), no link request went out.
    let check = gateway.get("/callback?status=success").await?;
    assert_eq!(check.0, 200);
    assert_eq!(link_posts(&sandbox), links_before);
    gateway.process.terminate().await?;
    Ok(())
}

/// INACTIVE shows as disabled in Composio and is not replaced by a new link.
#[tokio::test(flavor = "multi_thread")]
async fn inactive_account_is_disabled_not_replaced() -> anyhow::Result<()> {
    let sandbox = sandbox_with(SandboxConfig::default())?;
    let mut env = composio_env(&sandbox, "inactive-user");
    env.push(("TOOLGATE_REQUIRE".into(), "gmail".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("closed").await?;
    let (_, page) = gateway.get("/connections").await?;
    let link = links_in(&page)
        .into_iter()
        .next()
        .context("no link on the page")?;
    answer_link(&sandbox, &link, "allow").await?;
    gateway.get("/callback?status=success").await?;
    gateway.wait_for_gate("open").await?;
    let account = api(
        &sandbox,
        reqwest::Method::GET,
        "/api/v3.1/connected_accounts?user_ids=inactive-user&statuses=ACTIVE",
        None,
    )
    .await?["items"][0]["id"]
        .as_str()
        .context("no active account")?
        .to_owned();
    control(
        &sandbox,
        &format!("/_sandbox/accounts/{account}/deactivate"),
        None,
    )
    .await?;
    let links_before = link_posts(&sandbox);
    gateway.get("/callback?status=success").await?;
    let ready = gateway.wait_for_gate("closed").await?;
    assert_eq!(ready["toolkits"][0]["status"], "disabled", "{ready}");
    let client = gateway.mcp().await?;
    let blocked = call_tool(&client, 1, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
    assert!(
        result_text(&blocked).contains("disabled in Composio"),
        "{blocked}"
    );
    let (_, page) = gateway.get("/connections").await?;
    assert!(page.contains("Disabled in Composio"), "{page}");
    assert_eq!(
        link_posts(&sandbox),
        links_before,
        "no new link for a disabled account"
    );
    gateway.process.terminate().await?;
    Ok(())
}

/// The CSRF token of a confirmation page.
fn csrf_of(page: &str) -> anyhow::Result<String> {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
        .context("no csrf field")
}

/// Two gmail accounts: both listed with their own Disconnect, one disconnected, the other
/// still serving.
#[tokio::test(flavor = "multi_thread")]
async fn two_gmail_accounts_listed_and_one_disconnected() -> anyhow::Result<()> {
    let sandbox = sandbox_with(SandboxConfig::default())?;
    let config = toml_file("require = [\"gmail\"]\n[session.multi_account]\nenable = true\n")?;
    let env = composio_env(&sandbox, "multi-user");
    let path = config.path().display().to_string();
    let mut gateway = Gateway::start(&["--config", &path], &env).await?;
    gateway.wait_for_gate("closed").await?;
    let (_, page) = gateway.get("/connections").await?;
    let first = links_in(&page)
        .into_iter()
        .next()
        .context("no link on the page")?;
    answer_link(&sandbox, &first, "allow").await?;
    gateway.get("/callback?status=success").await?;
    gateway.wait_for_gate("open").await?;
    let add = gateway
        .http
        .get(format!("{}/connections/add?toolkit=gmail", gateway.base))
        .send()
        .await?;
    assert_eq!(add.status(), 303);
    let second = add
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .context("no redirect")?
        .to_owned();
    assert!(second.contains("/link/ln_") && second != first, "{second}");
    answer_link(&sandbox, &second, "allow").await?;
    gateway.get("/callback?status=success").await?;
    let page = eventually("two accounts on the page", || async {
        let (_, page) = gateway.get("/connections").await?;
        Ok((page.matches("id=\"account-ca_").count() == 2).then_some(page))
    })
    .await?;
    assert!(page.contains("Add another account"), "{page}");
    let other = page
        .split("id=\"account-")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|_| true)
        .context("no account row")?
        .to_owned();
    let (status, confirm) = gateway
        .get(&format!(
            "/connections/disconnect?toolkit=gmail&account={other}"
        ))
        .await?;
    assert_eq!(status, 200, "{confirm}");
    let done = gateway
        .http
        .post(format!("{}/connections/disconnect", gateway.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "toolkit=gmail&account={other}&csrf={}",
            csrf_of(&confirm)?
        ))
        .send()
        .await?;
    assert_eq!(done.status(), 303);
    let page = eventually("one account left", || async {
        let (_, page) = gateway.get("/connections").await?;
        Ok((page.matches("id=\"account-ca_").count() == 1).then_some(page))
    })
    .await?;
    assert!(!page.contains(&format!("id=\"account-{other}\"")), "{page}");
    let (_, ready) = gateway.readyz().await?;
    assert_eq!(ready["gate"], "open", "the remaining account still serves");
    gateway.process.terminate().await?;
    Ok(())
}

/// A white-label auth config: the link goes through it (the consent page names the app) and
/// the connections page says it is the project's own OAuth app.
#[tokio::test(flavor = "multi_thread")]
async fn custom_auth_config_is_used_by_the_link() -> anyhow::Result<()> {
    let sandbox = sandbox_with(SandboxConfig {
        auth_configs: vec![("gmail".into(), "Acme Mail".into())],
        ..SandboxConfig::default()
    })?;
    let listed = api(
        &sandbox,
        reqwest::Method::GET,
        "/api/v3.1/auth_configs?toolkit_slug=gmail&is_composio_managed=false",
        None,
    )
    .await?;
    let id = listed["items"][0]["id"]
        .as_str()
        .context("no custom config")?
        .to_owned();
    let config = toml_file(&format!(
        "require = [\"gmail\"]\n[session.auth_configs]\ngmail = \"{id}\"\n"
    ))?;
    let env = composio_env(&sandbox, "wl-user");
    let path = config.path().display().to_string();
    let mut gateway = Gateway::start(&["--config", &path], &env).await?;
    gateway.wait_for_gate("closed").await?;
    let (_, page) = gateway.get("/connections").await?;
    assert!(page.contains("your OAuth app (Acme Mail)"), "{page}");
    let link = links_in(&page).into_iter().next().context("no link")?;
    let consent = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(&link)
        .send()
        .await?
        .text()
        .await?;
    assert!(consent.contains("Acme Mail"), "{consent}");
    gateway.process.terminate().await?;
    Ok(())
}

fn multi_execute(tool: &str, arguments: Value) -> Value {
    json!({"tools": [{"tool_slug": tool, "arguments": arguments}]})
}

/// `gate.scope = "toolkit"`: only the pending toolkit's tools are blocked; a toolkit outside
/// `require` answered with NoActiveConnection becomes a Connect Link; a revoke shows up in the
/// next call's result and is turned into a fresh link at once.
#[tokio::test(flavor = "multi_thread")]
async fn toolkit_scope_and_missing_connections_in_results() -> anyhow::Result<()> {
    let sandbox = sandbox_with(SandboxConfig::default())?;
    let mut env = composio_env(&sandbox, "scope-user");
    env.push(("TOOLGATE_REQUIRE".into(), "gmail,github".into()));
    env.push(("TOOLGATE_GATE_SCOPE".into(), "toolkit".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("closed").await?;
    let (_, page) = gateway.get("/connections").await?;
    let github_link = links_in(&page)
        .into_iter()
        .find(|link| {
            sandbox.requests().iter().any(|_| true)
                && page.contains(&format!("id=\"connect-github\" href=\"{link}\""))
        })
        .context("no github link on the page")?;
    answer_link(&sandbox, &github_link, "allow").await?;
    gateway.get("/callback?status=success").await?;
    eventually("github connected", || async {
        let (_, ready) = gateway.readyz().await?;
        Ok((ready["toolkits"][1]["status"] == "connected").then_some(()))
    })
    .await?;
    let client = gateway.mcp().await?;
    let star = multi_execute(
        "GITHUB_STAR_A_REPOSITORY",
        json!({"owner": "o", "repo": "r"}),
    );
    let passed = call_tool(&client, 1, "COMPOSIO_MULTI_EXECUTE_TOOL", star.clone()).await?;
    assert!(
        links_in(&result_text(&passed)).is_empty(),
        "github's tools pass: {passed}"
    );
    assert!(
        result_text(&passed).contains("\"successful\":true"),
        "{passed}"
    );
    let search = call_tool(
        &client,
        2,
        "COMPOSIO_SEARCH_TOOLS",
        json!({"queries": [{"use_case": "send an email"}]}),
    )
    .await?;
    assert!(
        links_in(&result_text(&search)).is_empty(),
        "search passes: {search}"
    );
    let mail = multi_execute(
        "GMAIL_SEND_EMAIL",
        json!({"recipient_email": "a@b.c", "subject": "s", "body": "b"}),
    );
    let blocked = call_tool(&client, 3, "COMPOSIO_MULTI_EXECUTE_TOOL", mail).await?;
    let text = result_text(&blocked);
    assert_eq!(blocked["result"]["isError"], true, "{blocked}");
    assert!(
        text.contains("Gmail") && !text.contains("GitHub"),
        "only gmail named: {text}"
    );

    // Slack is not required: Composio's NoActiveConnection becomes a link of its own.
    let slack = multi_execute("SLACK_SEND_MESSAGE", json!({"channel": "#g", "text": "hi"}));
    let answer = call_tool(&client, 4, "COMPOSIO_MULTI_EXECUTE_TOOL", slack).await?;
    let text = result_text(&answer);
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(
        text.contains("slack") && links_in(&text).len() == 1,
        "{text}"
    );

    // A revoke: the next github call fails upstream and comes back as a fresh link.
    let account = api(
        &sandbox,
        reqwest::Method::GET,
        "/api/v3.1/connected_accounts?user_ids=scope-user&toolkit_slugs=github&statuses=ACTIVE",
        None,
    )
    .await?["items"][0]["id"]
        .as_str()
        .context("no github account")?
        .to_owned();
    control(
        &sandbox,
        &format!("/_sandbox/accounts/{account}/revoke"),
        None,
    )
    .await?;
    let revoked = call_tool(&client, 5, "COMPOSIO_MULTI_EXECUTE_TOOL", star).await?;
    let text = result_text(&revoked);
    assert_eq!(revoked["result"]["isError"], true, "{revoked}");
    let fresh = links_in(&text);
    assert!(
        text.contains("GitHub") && fresh.len() == 1 && fresh[0] != github_link,
        "{text}"
    );
    gateway.process.terminate().await?;
    Ok(())
}
