//! `auth.mode = "jwt"` end to end with real OAuth peers: the TypeScript SDK's OAuth client
//! (`oauth_client.mjs`) discovers toolgate's protected-resource metadata from its 401, registers
//! with a test authorization server (panva's oidc-provider, `oauth_server.mjs`), signs in as a
//! fixed account through the real authorization endpoint, redirect, code, PKCE and token
//! endpoint, and reconnects with the JWT access token; that token's `sub` is the Composio user
//! toolgate serves, with the user's own session, Connect Link and gate.

use std::collections::BTreeSet;

use anyhow::{Context as _, ensure};
use serde_json::Value;
use toolgate_tests::binary::{
    E2E_API_KEY, Gateway, PATIENCE, answer_link, assert_no_key, content_text, eventually, links_in,
    multi_user_env, sandbox,
};
use toolgate_tests::stdio::LineChild;
use toolgate_tests::{node22, peer, workspace_root};

/// The test authorization server, running until dropped.
struct AuthServer {
    _process: LineChild,
    issuer: String,
    jwks_uri: String,
}

/// Starts `oauth_server.mjs` and reads the issuer and JWKS URL it prints once listening.
async fn auth_server() -> anyhow::Result<AuthServer> {
    let mut command = tokio::process::Command::new(node22()?);
    command
        .arg(workspace_root().join("tests/e2e/oauth_server.mjs"))
        .arg(peer("node/node_modules/oidc-provider")?);
    let mut process = LineChild::spawn("oauth_server.mjs", command)?;
    let ready = process.recv().await?;
    let field = |name: &str| {
        ready[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {name} in {ready}"))
    };
    Ok(AuthServer {
        issuer: field("issuer")?,
        jwks_uri: field("jwks_uri")?,
        _process: process,
    })
}

/// `oauth_client.mjs` for `account` against `mcp_url`, once it has signed in and listed tools:
/// the client and its `connected` report.
async fn signed_in(mcp_url: &str, account: &str) -> anyhow::Result<(LineChild, Value)> {
    let mut command = tokio::process::Command::new(node22()?);
    command
        .arg(workspace_root().join("tests/e2e/oauth_client.mjs"))
        .arg(peer("node/node_modules/@modelcontextprotocol/sdk")?)
        .arg(mcp_url)
        .arg(account);
    let mut client = LineChild::spawn(&format!("oauth_client.mjs {account}"), command)?;
    let report = client.recv().await?;
    ensure!(
        report["step"] == "connected",
        "{report}\n{}",
        client.stderr()
    );
    Ok((client, report))
}

/// One `tools/call` of SANDBOX_ECHO through the SDK client: the call's result.
async fn call(client: &mut LineChild) -> anyhow::Result<Value> {
    client.send_raw("call").await?;
    let answer = client.recv().await?;
    ensure!(answer["step"] == "call", "{answer}\n{}", client.stderr());
    Ok(answer["result"].clone())
}

/// The one Connect Link of a blocked call.
async fn blocked_link(client: &mut LineChild) -> anyhow::Result<String> {
    let result = call(client).await?;
    let links = links_in(&content_text(&result));
    ensure!(
        result["isError"] == true && links.len() == 1,
        "not blocked with one link: {result}"
    );
    Ok(links[0].clone())
}

/// Calls until the call passes (the gate opens once toolgate's tracker sees the account).
async fn passes(client: &mut LineChild, account: &str) -> anyhow::Result<()> {
    let client = tokio::sync::Mutex::new(client);
    let greeting = format!("hello {account}");
    eventually(&format!("{account}'s call to pass"), || async {
        let result = call(*client.lock().await).await?;
        let passed = result["isError"] != true && content_text(&result).contains(&greeting);
        Ok(passed.then_some(()))
    })
    .await
}

/// The user a Connect Link's page names (the sandbox shows whose account it connects).
async fn link_user(gateway: &Gateway, link: &str) -> anyhow::Result<String> {
    let page = gateway.http.get(link).send().await?.text().await?;
    let user = page
        .split("on behalf of user <strong>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .with_context(|| format!("no user on the link page: {page}"))?;
    Ok(user.to_owned())
}

/// The `user_id` of every Composio session toolgate used, read back from the sandbox's API.
async fn session_users(
    gateway: &Gateway,
    sandbox: &toolgate_sandbox::Sandbox,
) -> anyhow::Result<BTreeSet<String>> {
    const PREFIX: &str = "/api/v3.1/tool_router/session/";
    let ids: BTreeSet<String> = sandbox
        .requests()
        .iter()
        .filter_map(|request| request.path.strip_prefix(PREFIX))
        .filter_map(|rest| rest.split(['/', '?']).next().map(str::to_owned))
        .collect();
    let mut users = BTreeSet::new();
    for id in ids {
        let session: Value = gateway
            .http
            .get(format!("{}{PREFIX}{id}", sandbox.base_url()))
            .header("x-api-key", E2E_API_KEY)
            .send()
            .await?
            .json()
            .await?;
        let user = session["config"]["user_id"].as_str();
        users.insert(user.with_context(|| format!("{session}"))?.to_owned());
    }
    Ok(users)
}

/// Checks the `connected` report: the SDK found everything from the 401 by itself, and the
/// token it got is a JWT access token for this resource, from this issuer, for `account`.
fn assert_discovered(report: &Value, resource: &str, issuer: &str, account: &str) {
    let metadata = resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp");
    let wanted = [
        ("POST", resource.to_owned(), 401),
        ("GET", metadata, 200),
        ("GET", format!("{issuer}/.well-known/"), 200),
        ("POST", format!("{issuer}/reg"), 201),
        ("POST", format!("{issuer}/token"), 200),
        ("POST", resource.to_owned(), 200),
    ];
    let requests = report["requests"].as_array().cloned().unwrap_or_default();
    let mut seen = requests.iter();
    for (method, url, status) in wanted {
        let found = seen.any(|request| {
            request["method"] == method
                && request["url"]
                    .as_str()
                    .is_some_and(|at| at.starts_with(&url))
                && request["status"] == status
        });
        assert!(
            found,
            "no {method} {url} → {status} in order: {requests:#?}"
        );
    }
    let authorization = report["authorization_url"].as_str().unwrap_or_default();
    let authorization = reqwest::Url::parse(authorization).expect("the authorization URL");
    let query: Vec<(String, String)> = authorization.query_pairs().into_owned().collect();
    for (name, value) in [("code_challenge_method", "S256"), ("resource", resource)] {
        assert!(
            query.contains(&(name.to_owned(), value.to_owned())),
            "{name}={value} missing: {authorization}"
        );
    }
    assert_eq!(report["header"]["typ"], "at+jwt", "{report}");
    let claims = &report["claims"];
    assert_eq!(
        (&claims["sub"], &claims["aud"], &claims["iss"]),
        (&account.into(), &resource.into(), &issuer.into()),
        "{claims}"
    );
    let tools = report["tools"].as_array().cloned().unwrap_or_default();
    assert!(tools.contains(&"SANDBOX_ECHO".into()), "{tools:?}");
}

/// alice and bob sign in with the TypeScript SDK's OAuth client through oidc-provider; each
/// token's `sub` is the Composio user: alice's session, her link, her call passing once she
/// connected; bob's own session and link; the bearer token never reaches Composio.
#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_signs_in_with_oauth_and_its_sub_is_the_composio_user()
-> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let server = auth_server().await?;
    let listen = format!("127.0.0.1:{}", toolgate_tests::free_port()?);
    let resource = format!("http://{listen}/mcp");
    let env = multi_user_env(
        &sandbox,
        &[
            ("TOOLGATE_AUTH_MODE", "jwt"),
            ("TOOLGATE_AUTH_JWT_JWKS_URL", server.jwks_uri.as_str()),
            ("TOOLGATE_AUTH_JWT_ISSUER", server.issuer.as_str()),
            ("TOOLGATE_AUTH_JWT_RESOURCE", resource.as_str()),
            (
                "TOOLGATE_AUTH_JWT_AUTHORIZATION_SERVERS",
                server.issuer.as_str(),
            ),
            ("TOOLGATE_REQUIRE", "gmail"),
        ],
    );
    let mut gateway = Gateway::start_on(&listen, &[], &env).await?;
    // Ready: Composio answers and the authorization server's keys are loaded.
    gateway.wait_for_gate("open").await?;
    // The metadata names the authorization server by its issuer exactly as that server's own
    // metadata states it: a client compares the two byte for byte (RFC 8414 §3.3).
    let (_, document) = gateway
        .get("/.well-known/oauth-protected-resource/mcp")
        .await?;
    let document: Value = serde_json::from_str(&document)?;
    let authorization_server: Value = gateway
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.issuer
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        document["authorization_servers"],
        serde_json::json!([authorization_server["issuer"]]),
        "{document}"
    );

    let (mut alice, report) = signed_in(&resource, "alice").await?;
    assert_discovered(&report, &resource, &server.issuer, "alice");
    let alice_link = blocked_link(&mut alice).await?;
    assert_eq!(link_user(&gateway, &alice_link).await?, "alice");
    assert_eq!(
        session_users(&gateway, &sandbox).await?,
        BTreeSet::from(["alice".to_owned()])
    );
    // alice connects gmail while bob signs in.
    let alice_connects = async {
        answer_link(&sandbox, &alice_link, "allow").await?;
        passes(&mut alice, "alice").await
    };
    let (connected, bob) = tokio::join!(alice_connects, signed_in(&resource, "bob"));
    connected?;
    let (mut bob, bob_report) = bob?;
    assert_discovered(&bob_report, &resource, &server.issuer, "bob");
    let bob_link = blocked_link(&mut bob).await?;
    assert_ne!(bob_link, alice_link, "bob gets his own Connect Link");
    assert_eq!(link_user(&gateway, &bob_link).await?, "bob");
    assert_eq!(
        session_users(&gateway, &sandbox).await?,
        BTreeSet::from(["alice".to_owned(), "bob".to_owned()])
    );

    // The bearer tokens are toolgate's business only: no request to Composio carried them.
    let tokens = [&report["token"], &bob_report["token"]].map(|token| token.as_str());
    let tokens: Vec<&str> = tokens.into_iter().flatten().collect();
    assert_eq!(tokens.len(), 2);
    let requests = sandbox.requests();
    assert!(requests.iter().any(|request| request.path.contains("/mcp")));
    for request in &requests {
        assert!(
            !request.headers.contains_key("authorization"),
            "{request:?}"
        );
        for token in &tokens {
            assert!(
                request.headers.values().all(|value| !value.contains(token)),
                "{request:?}"
            );
        }
    }

    for (mut client, name) in [(alice, "alice"), (bob, "bob")] {
        client.close_stdin();
        let status = client.wait(PATIENCE).await?;
        assert!(
            status.success(),
            "{name}'s client: {status}\n{}",
            client.stderr()
        );
    }
    assert!(gateway.process.terminate().await?.success());
    assert_no_key("stderr", &gateway.process.stderr());
    Ok(())
}
