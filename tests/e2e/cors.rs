//! The access rules of the built binary over real sockets: CORS for browser clients (in
//! headless Chromium and by hand), Host parsing, the bearer rule and the token-strength rule.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use toolgate_tests::http::{RawMcp, ServerEverything, ToolgateServe, serve_exit};

const TOKEN: &str = "cors-e2e-token-0123456789";

fn init() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}})
}

/// Serves one blank HTML page on every path, for the browser to have an origin.
async fn page_server() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut stream).await;
                let page = "<!doctype html><title>a browser MCP client</title>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

/// Reads an HTTP/1.1 request head and its `Content-Length` body; returns the head.
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            bail!("closed before the end of the head");
        }
        received.extend_from_slice(&buffer[..read]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while received.len() < head_end + length {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..read]);
    }
    Ok(head)
}

/// An upstream that answers every POST with a JSON-RPC result and the headers toolgate must
/// not pass on (its own CORS answer and a cookie).
async fn cookie_setting_upstream() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                while read_head(&mut stream).await.is_ok() {
                    let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Mcp-Session-Id: up-1\r\nSet-Cookie: upstream=1; Path=/\r\n\
                         Access-Control-Allow-Origin: *\r\n\
                         Access-Control-Allow-Credentials: true\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(url)
}

/// One raw HTTP/1.1 request (written as given); returns the status code.
async fn raw_status(addr: &str, request: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&answer).into_owned();
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {line:?}"))
}

fn authority_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_page_on_another_origin_talks_mcp_through_toolgate() -> anyhow::Result<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).is_file() {
        bail!("Chromium is missing at {chromium}: run tests/peers/install.sh");
    }
    let playwright = toolgate_tests::peer("node/node_modules/playwright-core")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/cors_flow.mjs");
    let upstream = ServerEverything::start().await?;
    let page_port = page_server().await?;
    let configured = format!("http://app.test:{page_port}");
    let gateway = ToolgateServe::start(
        &["--upstream", &upstream.url, "--allow-origin", &configured],
        &[("TOOLGATE_TOKEN", TOKEN)],
    )
    .await?;
    let gateway_port = authority_of(&gateway.url)
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let loopback = format!("http://127.0.0.1:{page_port}");
    let foreign = format!("http://evil.test:{page_port}");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&playwright)
        .arg(&gateway.url)
        .arg(TOKEN)
        .args([&loopback, &configured, &foreign])
        .env("CHROMIUM", &chromium)
        .env("ALLOWED_PORTS", format!("{page_port},{gateway_port}"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), output).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser script failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().context("no output")?)?;
    for origin in [&loopback, &configured] {
        let page = &seen[origin.as_str()];
        assert_eq!(page["reached"], true, "{origin}: {page}");
        assert_eq!(page["initStatus"], 200, "{origin}: {page}");
        assert_eq!(
            page["sessionVisible"], true,
            "Mcp-Session-Id exposed: {page}"
        );
        assert_eq!(page["initializedStatus"], 202, "{origin}: {page}");
        assert_eq!(page["listStatus"], 200, "{origin}: {page}");
        let tools = page["tools"].as_array().context("tools")?;
        assert!(tools.iter().any(|tool| tool == "echo"), "{origin}: {page}");
    }
    // The preflight is refused, so the browser never sends the request.
    let refused = &seen[foreign.as_str()];
    assert_eq!(refused["reached"], false, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("Failed to fetch"),
        "{refused}"
    );
    Ok(())
}

#[tokio::test]
async fn cors_headers_are_toolgates_alone() -> anyhow::Result<()> {
    let upstream = cookie_setting_upstream().await?;
    let gateway = ToolgateServe::start(&["--upstream", &upstream], &[]).await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let preflight = |origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, &gateway.url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type, mcp-session-id, mcp-method, mcp-param-region, x-unknown",
            )
    };
    let answer = preflight("http://localhost:6274").send().await?;
    assert_eq!(answer.status(), 204);
    let headers = answer.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:6274"
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        "content-type, mcp-session-id, mcp-method, mcp-param-region"
    );
    assert_eq!(headers["access-control-allow-methods"], "GET, POST, DELETE");
    assert_eq!(headers["vary"], "Origin");
    assert_eq!(
        preflight("https://evil.example").send().await?.status(),
        403
    );

    let mcp = RawMcp::new(&gateway.url);
    let answer = mcp
        .post(&init())
        .header("Origin", "http://localhost:6274")
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let headers = answer.headers();
    assert_eq!(headers["mcp-session-id"], "up-1");
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:6274"
    );
    assert!(
        headers["access-control-expose-headers"]
            .to_str()?
            .contains("Mcp-Session-Id")
    );
    assert!(!headers.contains_key("set-cookie"), "{headers:?}");
    assert!(
        !headers.contains_key("access-control-allow-credentials"),
        "{headers:?}"
    );
    // Without Origin: no CORS answer at all, and still no upstream cookie.
    let answer = mcp.post(&init()).send().await?;
    assert!(!answer.headers().contains_key("access-control-allow-origin"));
    assert!(!answer.headers().contains_key("set-cookie"));
    Ok(())
}

#[tokio::test]
async fn host_headers_are_parsed_strictly_on_the_wire() -> anyhow::Result<()> {
    let upstream = cookie_setting_upstream().await?;
    let gateway = ToolgateServe::start(&["--upstream", &upstream], &[]).await?;
    let addr = authority_of(&gateway.url);
    let body = init().to_string();
    let request = |hosts: &[&str]| {
        let hosts: String = hosts
            .iter()
            .map(|host| format!("Host: {host}\r\n"))
            .collect();
        format!(
            "POST /mcp HTTP/1.1\r\n{hosts}Content-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let rows: &[(&[&str], u16)] = &[
        (&["127.0.0.1"], 200),
        (&["evil.com@127.0.0.1"], 400),
        (&["[::1]evil.com"], 400),
        (&["127.0.0.1", "evil.com"], 400),
        (&["evil.com"], 403),
        (&[], 400),
    ];
    for (hosts, status) in rows {
        assert_eq!(
            raw_status(&addr, &request(hosts)).await?,
            *status,
            "{hosts:?}"
        );
    }
    // HTTP/2 carries the host as :authority, which is checked the same way.
    let port: u16 = addr.rsplit(':').next().unwrap_or_default().parse()?;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve(
            "evil.test",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()?;
    let post = |url: String| {
        h2.post(url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .body(body.clone())
    };
    let answer = post(gateway.url.clone()).send().await?;
    assert_eq!(
        (answer.version(), answer.status().as_u16()),
        (reqwest::Version::HTTP_2, 200)
    );
    let foreign = post(format!("http://evil.test:{port}/mcp")).send().await?;
    assert_eq!(foreign.status(), 403);
    Ok(())
}

#[tokio::test]
async fn one_bearer_rule_and_one_token_strength_rule_in_every_mode() -> anyhow::Result<()> {
    let upstream = cookie_setting_upstream().await?;
    let gateway =
        ToolgateServe::start(&["--upstream", &upstream], &[("TOOLGATE_TOKEN", TOKEN)]).await?;
    let mcp = RawMcp::new(&gateway.url);
    for (authorization, status) in [
        (None, 401),
        (Some(format!("Bearer {TOKEN}")), 200),
        (Some(format!("bearer {TOKEN}")), 200),
        (Some(format!("BEARER {TOKEN}")), 200),
        (Some(format!("Basic {TOKEN}")), 401),
    ] {
        let mut request = mcp.post(&init());
        if let Some(value) = &authorization {
            request = request.header("Authorization", value);
        }
        let answer = request.send().await?;
        assert_eq!(answer.status(), status, "{authorization:?}");
        if status == 401 {
            assert_eq!(answer.headers()["www-authenticate"], "Bearer");
        }
    }
    // A short token is refused before anything binds, in generic mode on any address and in
    // Composio mode alike.
    let dir = tempfile::tempdir()?;
    let composio = dir.path().join("toolgate.toml");
    std::fs::write(
        &composio,
        "user_id = \"u\"\n[composio]\napi_key = \"sk_test_0123\"\n",
    )?;
    let composio = composio.display().to_string();
    let cases: [&[&str]; 3] = [
        &["--upstream", &upstream, "--listen", "0.0.0.0:0"],
        &["--upstream", &upstream, "--listen", "127.0.0.1:0"],
        &["--config", &composio, "--listen", "127.0.0.1:0"],
    ];
    for args in cases {
        let (code, stderr) = serve_exit(args, &[("TOOLGATE_TOKEN", "x")]).await?;
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(stderr.contains("16 characters"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    Ok(())
}
