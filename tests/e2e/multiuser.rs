//! Many users through one gateway, and replicas without sticky sessions, against the sandbox:
//! `auth.mode = "tokens"` with alice and bob (own sessions, own links, own gates), sealed
//! session ids that another user cannot use, 401 with a challenge, the tokens file reloaded;
//! three single-user replicas sharing one `session_key` serving one session round-robin;
//! each user's own connections page, through the signed link in their blocked answer or their
//! bearer token, and a disconnect that acts on that user only.

use serde_json::json;
use toolgate_tests::binary::{
    Gateway, answer_link, assert_no_key, call_tool, composio_env, eventually, links_in,
    multi_user_env, result_text, run, sandbox,
};
use toolgate_tests::http::RawMcp;

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-abcdefghijkl";
const SESSION_KEY: &str = "e2e-session-key-0123456789abcdef-0123";

fn client(gateway: &Gateway, token: &str) -> RawMcp {
    let mut client = RawMcp::new(&gateway.mcp_url());
    client.extra = vec![("Authorization".into(), format!("Bearer {token}"))];
    client
}

/// Initializes: a new user's first request waits for their session (an MCP client does not
/// retry an `initialize`), so it succeeds at once.
async fn initialized(mut client: RawMcp) -> anyhow::Result<RawMcp> {
    client.initialize().await?;
    Ok(client)
}

/// The Connect Link of a blocked call, once the user's gate has one.
async fn blocked_link(client: &RawMcp) -> anyhow::Result<String> {
    eventually("a blocked answer with a link", || async {
        let answer = call_tool(client, 7, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
        let links = links_in(&result_text(&answer));
        Ok((answer["result"]["isError"] == true && links.len() == 1).then(|| links[0].clone()))
    })
    .await
}

async fn passes(client: &RawMcp) -> anyhow::Result<()> {
    eventually("the call to pass", || async {
        let answer = call_tool(client, 8, "SANDBOX_ECHO", json!({"message": "hello"})).await?;
        Ok(
            (answer["result"]["isError"] != true && result_text(&answer).contains("hello"))
                .then_some(()),
        )
    })
    .await
}

/// alice connects gmail and her call passes; bob's is blocked with his own link; bob holding
/// alice's session id gets 404; a wrong or missing token gets 401 with a challenge; a user
/// added to the tokens file is accepted without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_mode_keeps_users_apart() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("# users\nalice {ALICE}\nbob {BOB}\n"))?;
    // `toolgate status` below reads the same settings.
    let env = tokens_env(&sandbox, &tokens, &[("TOOLGATE_SESSION_KEY", SESSION_KEY)]);
    let mut gateway = Gateway::start(&[], &env).await?;
    // Ready once Composio answers (users are set up on demand).
    gateway.wait_for_gate("open").await?;

    let alice = initialized(client(&gateway, ALICE)).await?;
    let bob = initialized(client(&gateway, BOB)).await?;
    let alice_link = blocked_link(&alice).await?;
    let bob_link = blocked_link(&bob).await?;
    assert_ne!(
        alice_link, bob_link,
        "each user gets their own Connect Link"
    );

    answer_link(&sandbox, &alice_link, "allow").await?;
    passes(&alice).await?;
    let still = call_tool(&bob, 9, "SANDBOX_ECHO", json!({"message": "x"})).await?;
    assert_eq!(still["result"]["isError"], true, "{still}");
    assert!(result_text(&still).contains(&bob_link), "{still}");

    // `status --user` reads one user of the multi-user configuration.
    let (code, out, err) = run(&["status", "--user", "alice"], &env).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("user alice"), "{out}");
    let (code, out, _) = run(&["status", "--user", "bob"], &env).await?;
    assert_eq!(code, 3, "bob is not connected: {out}");

    // Bob presenting alice's session id: an unknown session for him.
    let mut thief = client(&gateway, BOB);
    thief.session = alice.session.clone();
    let stolen = thief
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await?;
    assert_eq!(stolen.status(), 404);
    // A tampered id is just as unknown, for alice herself.
    let mut bent = client(&gateway, ALICE);
    bent.session = alice.session.as_ref().map(|id| format!("{id}x"));
    let status = bent
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await?
        .status();
    assert_eq!(status, 404);

    for token in [Some("wrong-token-0123456789"), None] {
        let mut stranger = RawMcp::new(&gateway.mcp_url());
        if let Some(token) = token {
            stranger.extra = vec![("Authorization".into(), format!("Bearer {token}"))];
        }
        let answer = stranger
            .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}))
            .send()
            .await?;
        assert_eq!(answer.status(), 401);
        let challenge = answer.headers().get("www-authenticate").cloned();
        assert!(challenge.is_some_and(|value| value.as_bytes().starts_with(b"Bearer")));
    }

    let (_, metrics) = gateway.get("/metrics").await?;
    assert!(metrics.contains("toolgate_active_users 2"), "{metrics}");
    // alice's gate is open, bob's gmail is pending: counts over users, no user labels.
    assert!(metrics.contains("toolgate_gate_open 1"), "{metrics}");
    assert!(metrics.contains("toolgate_pending_toolkits 1"), "{metrics}");
    assert!(metrics.contains("toolgate_ready 1"), "{metrics}");
    assert!(
        !metrics.contains("alice") && !metrics.contains("bob"),
        "{metrics}"
    );

    // carol joins: the file is re-read without a restart.
    std::fs::write(
        &tokens,
        format!("alice {ALICE}\nbob {BOB}\ncarol carol-token-0123456789\n"),
    )?;
    eventually("carol's token to be accepted", || async {
        Ok(initialized(client(&gateway, "carol-token-0123456789"))
            .await
            .ok()
            .map(|_| ()))
    })
    .await?;

    let status = gateway.process.terminate().await?;
    assert!(status.success(), "{status}");
    assert_no_key("stderr", &gateway.process.stderr());
    Ok(())
}

/// A JWKS endpoint that answers 503 until `serving` is set, then `jwks`.
async fn jwks_server(
    jwks: String,
    serving: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/jwks.json", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => head.extend_from_slice(&buffer[..read]),
                }
            }
            let (status, body) = if serving.load(std::sync::atomic::Ordering::SeqCst) {
                ("200 OK", jwks.as_str())
            } else {
                ("503 Service Unavailable", "down")
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    Ok(url)
}

/// `/readyz` in jwt mode means "can serve": 503 naming the cause while Composio fails, then
/// while the JWKS cannot be fetched; 200 once both answer.
#[tokio::test(flavor = "multi_thread")]
async fn jwt_mode_is_ready_once_composio_and_the_jwks_answer() -> anyhow::Result<()> {
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Algorithm, EncodingKey};
    let sandbox = sandbox()?;
    toolgate_tests::binary::control(
        &sandbox,
        "/_sandbox/faults",
        Some(json!({"path_prefix": "/api/v3.1/connected_accounts", "status": 503})),
    )
    .await?;
    let secret = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .map_err(|_| anyhow::anyhow!("key generation"))?;
    let jwk = Jwk::from_encoding_key(&EncodingKey::from_ec_der(secret.as_ref()), Algorithm::ES256)?;
    let serving = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let jwks_url = jwks_server(json!({ "keys": [jwk] }).to_string(), serving.clone()).await?;
    let env = multi_user_env(
        &sandbox,
        &[
            ("TOOLGATE_AUTH_MODE", "jwt"),
            ("TOOLGATE_AUTH_JWT_JWKS_URL", jwks_url.as_str()),
            (
                "TOOLGATE_AUTH_JWT_AUTHORIZATION_SERVERS",
                "https://auth.test.invalid",
            ),
        ],
    );
    let mut gateway = Gateway::start(&[], &env).await?;
    let not_ready = |needle: &'static str| {
        let gateway = &gateway;
        eventually(needle, move || async move {
            let (status, body) = gateway.readyz().await?;
            let reason = body["reason"].as_str().unwrap_or_default().to_owned();
            Ok((status == 503 && reason.contains(needle)).then_some(()))
        })
    };
    not_ready("Composio is not reachable").await?;
    reqwest::Client::builder()
        .no_proxy()
        .build()?
        .delete(format!("{}/_sandbox/faults", sandbox.base_url()))
        .send()
        .await?;
    not_ready("the JWT signing keys are not loaded").await?;
    serving.store(true, std::sync::atomic::Ordering::SeqCst);
    gateway.wait_for_gate("open").await?;
    let (status, body) = gateway.readyz().await?;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = gateway.get("/metrics").await?;
    assert!(metrics.contains("toolgate_ready 1"), "{metrics}");
    assert!(gateway.process.terminate().await?.success());
    assert_no_key("stderr", &gateway.process.stderr());
    Ok(())
}

/// The tokens-mode gateway of alice and bob, requiring gmail.
async fn tokens_gateway(
    sandbox: &toolgate_sandbox::Sandbox,
    tokens: &std::path::Path,
) -> anyhow::Result<Gateway> {
    std::fs::write(tokens, format!("alice {ALICE}\nbob {BOB}\n"))?;
    let env = tokens_env(sandbox, tokens, &[("TOOLGATE_SESSION_KEY", SESSION_KEY)]);
    Gateway::start(&[], &env).await
}

/// A tokens-mode gateway's environment over the file `tokens`, requiring gmail, plus `extra`.
fn tokens_env(
    sandbox: &toolgate_sandbox::Sandbox,
    tokens: &std::path::Path,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let file = tokens.to_str().unwrap_or_default();
    let mut settings = vec![
        ("TOOLGATE_AUTH_MODE", "tokens"),
        ("TOOLGATE_AUTH_TOKENS_FILE", file),
        ("TOOLGATE_REQUIRE", "gmail"),
    ];
    settings.extend_from_slice(extra);
    multi_user_env(sandbox, &settings)
}

/// The signed page link that ends a blocked answer.
async fn page_link(client: &RawMcp) -> anyhow::Result<String> {
    let answer = call_tool(client, 10, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
    let text = result_text(&answer);
    let link = text
        .split_whitespace()
        .find(|word| word.starts_with("http") && word.contains("/connections?"))
        .map(str::to_owned);
    link.ok_or_else(|| anyhow::anyhow!("no page link in {text}"))
}

/// A page as the caller sees it: status, body, and the cookie it sets (if any).
async fn page(
    gateway: &Gateway,
    url: &str,
    header: Option<(&str, &str)>,
) -> anyhow::Result<(u16, String, Option<String>)> {
    let mut request = gateway.http.get(url);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::to_owned);
    Ok((status, response.text().await?, cookie))
}

/// Each user's blocked answer links to their own page, which opens without a login and shows
/// only their toolkits; a tampered link is refused; a bearer token shows the caller's page;
/// a disconnect (CSRF-checked) acts on that user only.
#[tokio::test(flavor = "multi_thread")]
async fn each_user_has_their_own_connections_page() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let dir = tempfile::tempdir()?;
    let mut gateway = tokens_gateway(&sandbox, &dir.path().join("tokens")).await?;
    let alice = initialized(client(&gateway, ALICE)).await?;
    let bob = initialized(client(&gateway, BOB)).await?;
    let alice_link = blocked_link(&alice).await?;
    let bob_link = blocked_link(&bob).await?;
    let alice_page = page_link(&alice).await?;
    assert!(alice_page.starts_with(&format!("{}/connections?u=alice&", gateway.base)));

    // The link opens alice's page without a login: a cookie, then the clean URL.
    let (status, _, cookie) = page(&gateway, &alice_page, None).await?;
    assert_eq!(status, 303);
    let cookie = cookie.ok_or_else(|| anyhow::anyhow!("no cookie"))?;
    let url = format!("{}/connections", gateway.base);
    let (status, html, _) = page(&gateway, &url, Some(("cookie", &cookie))).await?;
    assert_eq!(status, 200);
    assert!(
        html.contains(&alice_link) && !html.contains(&bob_link),
        "{html}"
    );
    let forged = alice_page.replacen("u=alice", "u=bob", 1);
    let (status, html, cookie) = page(&gateway, &forged, None).await?;
    assert_eq!((status, cookie), (403, None));
    assert!(html.contains("Link not valid"), "{html}");
    let (status, html, _) = page(&gateway, &url, None).await?;
    assert_eq!(status, 401, "{html}");

    // A bearer token shows the caller's own page.
    let bearer = format!("Bearer {BOB}");
    let (status, html, _) = page(&gateway, &url, Some(("authorization", &bearer))).await?;
    assert_eq!(status, 200);
    assert!(
        html.contains(&bob_link) && !html.contains(&alice_link),
        "{html}"
    );

    // alice connects, then disconnects through her page; bob is untouched.
    answer_link(&sandbox, &alice_link, "allow").await?;
    passes(&alice).await?;
    let bearer = format!("Bearer {ALICE}");
    let confirm = format!("{}/connections/disconnect?toolkit=gmail", gateway.base);
    let (status, form, _) = page(&gateway, &confirm, Some(("authorization", &bearer))).await?;
    assert_eq!(status, 200, "{form}");
    let csrf = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    let post = |token: &str, csrf: &str| {
        gateway
            .http
            .post(format!("{}/connections/disconnect", gateway.base))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("toolkit=gmail&csrf={csrf}"))
            .send()
    };
    assert_eq!(
        post(BOB, &csrf).await?.status(),
        403,
        "alice's form is not bob's"
    );
    assert_eq!(post(ALICE, &csrf).await?.status(), 303);
    // Her calls are blocked again (with a link to connect anew).
    blocked_link(&alice).await?;
    let (_, html, _) = page(
        &gateway,
        &url,
        Some(("authorization", &format!("Bearer {BOB}"))),
    )
    .await?;
    assert!(html.contains(&bob_link), "bob's link is still live: {html}");

    assert!(gateway.process.terminate().await?.success());
    assert_no_key("stderr", &gateway.process.stderr());
    Ok(())
}

/// Three `toolgate serve` replicas of one user with one `session_key`; a client sends each
/// request to the next replica in turn: initialize → list → blocked → connect → call; one
/// replica is killed mid-session and the session goes on through the others. A client's URL
/// elicitation capability, declared on one replica, holds on the others.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_serve_one_session_round_robin() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut env = composio_env(&sandbox, "replica-user");
    env.push(("TOOLGATE_REQUIRE".into(), "gmail".into()));
    env.push(("TOOLGATE_SESSION_KEY".into(), SESSION_KEY.into()));
    env.push(("TOOLGATE_GATE_RECHECK_INTERVAL".into(), "1s".into()));
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let replica = Gateway::start(&[], &env).await?;
        replica.wait_for_gate("closed").await?;
        replicas.push(replica);
    }
    let urls: Vec<String> = replicas.iter().map(Gateway::mcp_url).collect();
    let mut client = RawMcp::new(&urls[0]);
    client.initialize().await?;
    let session = client.session.clone();
    assert!(session.is_some(), "a sealed session id");

    let mut turn = 1;
    let mut next = |client: &mut RawMcp| {
        client.url = urls[turn % urls.len()].clone();
        turn += 1;
    };
    next(&mut client);
    let list = client
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await?;
    assert_eq!(list.status(), 200);
    assert!(list.text().await?.contains("SANDBOX_ECHO"));
    next(&mut client);
    let link = blocked_link(&client).await?;
    // A client that declared URL elicitation at `initialize` on one replica gets the URL
    // elicitation (-32042) for a blocked call on another: the sealed id carries it.
    let mut eliciting = RawMcp::new(&urls[0]);
    eliciting.capabilities = json!({"elicitation": {"url": {}}});
    eliciting.initialize().await?;
    eliciting.url = urls[1].clone();
    let answer = call_tool(&eliciting, 9, "SANDBOX_ECHO", json!({"message": "hi"})).await?;
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
    answer_link(&sandbox, &link, "allow").await?;

    // Replica 0, which made the session, dies; the session continues on 1 and 2.
    replicas[0].process.terminate().await?;
    for _ in 0..4 {
        client.url = urls[1 + turn % 2].clone();
        turn += 1;
        passes(&client).await?;
        assert_eq!(client.session, session, "the same session throughout");
    }
    for replica in &mut replicas[1..] {
        assert!(replica.process.terminate().await?.success());
        assert_no_key("stderr", &replica.process.stderr());
    }
    Ok(())
}

/// `auth.mode = "jwt"` with a local JWKS file: a token for this resource names the user
/// (whose own Composio session is used); wrong audience, wrong issuer or expired gets 401
/// with the RFC 9728 challenge; the metadata document it names is served and valid.
#[tokio::test(flavor = "multi_thread")]
async fn jwt_mode_validates_tokens_and_serves_metadata() -> anyhow::Result<()> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    const ISSUER: &str = "https://auth.test.invalid";
    let sandbox = sandbox()?;
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("key generation"))?;
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)?;
    jwk.common.key_id = Some("test-key".into());
    let dir = tempfile::tempdir()?;
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string())?;
    let env = multi_user_env(
        &sandbox,
        &[
            ("TOOLGATE_AUTH_MODE", "jwt"),
            (
                "TOOLGATE_AUTH_JWT_JWKS_FILE",
                jwks.to_str().unwrap_or_default(),
            ),
            ("TOOLGATE_AUTH_JWT_AUTHORIZATION_SERVERS", ISSUER),
            ("TOOLGATE_REQUIRE", "gmail"),
        ],
    );
    let mut gateway = Gateway::start(&[], &env).await?;
    let resource = gateway.mcp_url();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let sign = |claims: serde_json::Value| -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("test-key".into());
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    };
    let good = json!({"iss": ISSUER, "aud": resource, "sub": "dana", "exp": now + 600});

    let dana = initialized(client(&gateway, &sign(good.clone())?)).await?;
    let link = blocked_link(&dana).await?;
    assert!(link.starts_with(&sandbox.base_url()), "{link}");

    let metadata_url = gateway
        .mcp_url()
        .replace("/mcp", "/.well-known/oauth-protected-resource/mcp");
    let mut bad_claims = Vec::new();
    for (field, value) in [
        ("aud", json!("http://127.0.0.1:1/mcp")),
        ("iss", json!("https://evil.invalid")),
        ("exp", json!(now - 3600)),
    ] {
        let mut claims = good.clone();
        claims[field] = value;
        bad_claims.push(Some(sign(claims)?));
    }
    bad_claims.push(None);
    for token in bad_claims {
        let mut stranger = RawMcp::new(&gateway.mcp_url());
        if let Some(token) = &token {
            stranger.extra = vec![("Authorization".into(), format!("Bearer {token}"))];
        }
        let answer = stranger
            .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}))
            .send()
            .await?;
        assert_eq!(answer.status(), 401);
        let challenge = answer
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            challenge.starts_with(&format!("Bearer resource_metadata=\"{metadata_url}\"")),
            "{challenge}"
        );
        assert_eq!(
            challenge.contains("error=\"invalid_token\""),
            token.is_some(),
            "{challenge}"
        );
    }

    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, body) = gateway.get(path).await?;
        assert_eq!(status, 200, "{path}");
        let document: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(document["resource"], resource);
        assert_eq!(document["authorization_servers"], json!([ISSUER]));
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
    }
    assert!(gateway.process.terminate().await?.success());
    assert_no_key("stderr", &gateway.process.stderr());
    Ok(())
}

/// The gateway's resident set size in KiB, from `/proc`.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or_default().parse()?)
}

/// 1,000 tokens-mode users, each through initialize and tools/list (so each has a Composio
/// session, a tracker and a gateway in the process): the gateway's RSS grows by less than a
/// generous 1 MiB per user. The measured numbers are printed (README states them).
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_users_fit_in_a_stated_memory_bound() -> anyhow::Result<()> {
    const USERS: usize = 1000;
    let sandbox = sandbox()?;
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    let token = |n: usize| format!("token-user{n:04}-0123456789");
    let table: String = (0..USERS)
        .map(|n| format!("user{n:04} {}\n", token(n)))
        .collect();
    std::fs::write(&tokens, table)?;
    let env = tokens_env(&sandbox, &tokens, &[("TOOLGATE_LOG_LEVEL", "warn")]);
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("open").await?;
    let pid = gateway
        .process
        .pid()
        .ok_or_else(|| anyhow::anyhow!("no pid"))?;
    // One user first, so the baseline has every code path and pool warmed.
    let first = initialized(client(&gateway, &token(0))).await?;
    let list = first
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await?;
    assert_eq!(list.status(), 200);
    let before = rss_kib(pid)?;
    // 32 users at a time, each initializing and listing tools.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..USERS {
        let (url, token, slots) = (gateway.mcp_url(), token(n), slots.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            let mut user = RawMcp::new(&url);
            user.extra = vec![("Authorization".into(), format!("Bearer {token}"))];
            let user = initialized(user).await?;
            let list = user
                .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
                .send()
                .await?;
            anyhow::ensure!(list.status() == 200, "tools/list: {}", list.status());
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let after = rss_kib(pid)?;
    let (_, metrics) = gateway.get("/metrics").await?;
    assert!(
        metrics.contains(&format!("toolgate_active_users {USERS}")),
        "{metrics}"
    );
    let per_user = (after.saturating_sub(before)) as f64 / (USERS - 1) as f64;
    eprintln!(
        "RSS with 1 user: {before} KiB; with {USERS} users: {after} KiB; {per_user:.1} KiB per user"
    );
    assert!(per_user < 1024.0, "{per_user:.1} KiB per user");
    assert!(gateway.process.terminate().await?.success());
    Ok(())
}

/// `auth.mode = "header"`: the user comes from `x-toolgate-user`, accepted only with the
/// shared token (none or a wrong one: 401); two users get their own links and sessions.
#[tokio::test(flavor = "multi_thread")]
async fn header_mode_takes_the_user_only_with_the_shared_token() -> anyhow::Result<()> {
    const SHARED: &str = "shared-backend-token-0123456789";
    let sandbox = sandbox()?;
    let env = multi_user_env(
        &sandbox,
        &[
            ("TOOLGATE_AUTH_MODE", "header"),
            ("TOOLGATE_TOKEN", SHARED),
            ("TOOLGATE_REQUIRE", "gmail"),
            ("TOOLGATE_SESSION_KEY", SESSION_KEY),
        ],
    );
    let mut gateway = Gateway::start(&[], &env).await?;
    let as_user = |user: &str, token: Option<&str>| {
        let mut client = RawMcp::new(&gateway.mcp_url());
        client.extra = vec![("x-toolgate-user".into(), user.to_owned())];
        if let Some(token) = token {
            client
                .extra
                .push(("Authorization".into(), format!("Bearer {token}")));
        }
        client
    };
    let carol = initialized(as_user("carol", Some(SHARED))).await?;
    let dave = initialized(as_user("dave", Some(SHARED))).await?;
    let (carol_link, dave_link) = (blocked_link(&carol).await?, blocked_link(&dave).await?);
    assert_ne!(
        carol_link, dave_link,
        "each user gets their own Connect Link"
    );
    for token in [None, Some("wrong-backend-token-0123456789")] {
        let answer = as_user("carol", token)
            .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}))
            .send()
            .await?;
        assert_eq!(answer.status(), 401, "{token:?}");
    }
    let mut thief = as_user("dave", Some(SHARED));
    thief.session = carol.session.clone();
    let stolen = thief
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await?;
    assert_eq!(stolen.status(), 404);
    answer_link(&sandbox, &carol_link, "allow").await?;
    passes(&carol).await?;
    let still = call_tool(&dave, 9, "SANDBOX_ECHO", json!({"message": "x"})).await?;
    assert_eq!(still["result"]["isError"], true, "{still}");
    assert!(gateway.process.terminate().await?.success());
    assert_no_key("stderr", &gateway.process.stderr());
    Ok(())
}
