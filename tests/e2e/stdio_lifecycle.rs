//! `toolgate stdio` driven line by line: stdout purity under trace logging, an unreachable
//! upstream, prompt exit on stdin EOF and on SIGTERM, two instances at once, and a byte-faithful
//! relay checked against an upstream that reports exactly what it received.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use toolgate_tests::free_port;
use toolgate_tests::http::ServerEverything;
use toolgate_tests::stdio::{LineChild, toolgate_stdio};

/// Liveness bound for exiting after EOF or a signal (not a performance threshold).
const EXIT: Duration = Duration::from_secs(10);

fn initialize(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}})
}

/// Reads stdout lines until the answer to `id`, recording every raw line in `all`.
async fn answer_recording(
    child: &mut LineChild,
    id: &Value,
    all: &mut Vec<String>,
) -> anyhow::Result<Value> {
    loop {
        let Some(line) = child.recv_line().await? else {
            anyhow::bail!("stdout ended before the answer to {id}");
        };
        all.push(line.clone());
        let message: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if message.get("id") == Some(id) && message.get("method").is_none() {
            return Ok(message);
        }
    }
}

#[tokio::test]
async fn stdout_carries_only_json_rpc_even_with_trace_logging() -> anyhow::Result<()> {
    let upstream = ServerEverything::start().await?;
    let mut child = toolgate_stdio(&["--upstream", &upstream.url], &[("RUST_LOG", "trace")])?;
    let mut lines = Vec::new();
    child.send(&initialize(0)).await?;
    answer_recording(&mut child, &json!(0), &mut lines).await?;
    child
        .send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await?;
    child
        .send(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await?;
    answer_recording(&mut child, &json!(1), &mut lines).await?;
    child
        .send(
            &json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
            "name":"trigger-long-running-operation","arguments":{"duration":0.2,"steps":2},
            "_meta":{"progressToken":"p"}}}),
        )
        .await?;
    let long = answer_recording(&mut child, &json!(2), &mut lines).await?;
    assert!(long["result"].is_object(), "{long}");
    child
        .send(&json!({"jsonrpc":"2.0","id":3,"method":"x/unknown"}))
        .await?;
    answer_recording(&mut child, &json!(3), &mut lines).await?;
    child.send_raw("this is not json").await?;
    child.close_stdin();
    while let Some(line) = child.recv_line().await? {
        lines.push(line);
    }
    assert!(child.wait(EXIT).await?.success());

    let progress = lines
        .iter()
        .filter(|l| l.contains("notifications/progress"))
        .count();
    assert_eq!(progress, 2, "progress notifications on stdout: {lines:#?}");
    for line in &lines {
        let message: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "not a JSON-RPC message: {line}");
    }
    // The trace logs exist, and went to stderr.
    let stderr = child.stderr();
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "no logs on stderr:\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn fd_1_points_at_stderr_so_stray_prints_cannot_reach_the_client() -> anyhow::Result<()> {
    let upstream = ServerEverything::start().await?;
    let mut child = toolgate_stdio(&["--upstream", &upstream.url], &[])?;
    child.send(&initialize(0)).await?;
    child.answer_to(&json!(0)).await?; // the bridge is up, writing through its private handle
    let pid = child.pid().expect("toolgate exited");
    let fd = |n: u32| std::fs::read_link(format!("/proc/{pid}/fd/{n}"));
    assert_eq!(fd(1)?, fd(2)?, "fd 1 is not redirected to stderr");
    child.close_stdin();
    assert!(child.wait(EXIT).await?.success());
    Ok(())
}

#[tokio::test]
async fn unreachable_upstream_gives_json_rpc_errors_with_ids() -> anyhow::Result<()> {
    let port = free_port()?; // nothing listens there
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut child = toolgate_stdio(
        &["--upstream", &url, "--header", "X-Api-Key: sekrit-value"],
        &[],
    )?;
    child.send(&initialize(1)).await?;
    let init = child.answer_to(&json!(1)).await?;
    assert_eq!(init["error"]["code"], -32001, "{init}");
    assert!(
        init["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{init}"
    );
    child
        .send(&json!({"jsonrpc":"2.0","id":"two","method":"tools/list"}))
        .await?;
    let list = child.answer_to(&json!("two")).await?;
    assert_eq!(list["error"]["code"], -32001, "{list}");
    child.close_stdin();
    assert!(child.wait(EXIT).await?.success());
    assert!(!child.stderr().contains("sekrit-value"));
    Ok(())
}

#[tokio::test]
async fn exits_promptly_on_stdin_eof_and_on_sigterm() -> anyhow::Result<()> {
    let upstream = ServerEverything::start().await?;
    // EOF with a live session (GET stream open, a stdin read pending in the runtime).
    let mut child = toolgate_stdio(&["--upstream", &upstream.url], &[])?;
    child.send(&initialize(0)).await?;
    child.answer_to(&json!(0)).await?;
    child
        .send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await?;
    child
        .send(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .await?;
    child.answer_to(&json!(1)).await?;
    child.close_stdin();
    let status = child.wait(EXIT).await?;
    assert_eq!(status.code(), Some(0), "{}", child.stderr());

    // SIGTERM while stdin stays open.
    let mut child = toolgate_stdio(&["--upstream", &upstream.url], &[])?;
    child.send(&initialize(0)).await?;
    child.answer_to(&json!(0)).await?;
    child.signal("-TERM")?;
    let status = child.wait(EXIT).await?;
    assert_eq!(status.code(), Some(0), "{}", child.stderr());
    Ok(())
}

#[tokio::test]
async fn two_instances_at_once_do_not_conflict() -> anyhow::Result<()> {
    let upstream = ServerEverything::start().await?;
    let mut first = toolgate_stdio(&["--upstream", &upstream.url], &[])?;
    let mut second = toolgate_stdio(&["--upstream", &upstream.url], &[])?;
    for child in [&mut first, &mut second] {
        child.send(&initialize(0)).await?;
    }
    for (n, child) in [&mut first, &mut second].into_iter().enumerate() {
        child.answer_to(&json!(0)).await?;
        child
            .send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await?;
        child
            .send(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":format!("instance {n}")}}}))
            .await?;
    }
    for (n, child) in [&mut first, &mut second].into_iter().enumerate() {
        let answer = child.answer_to(&json!(1)).await?;
        assert_eq!(
            answer["result"]["content"][0]["text"],
            format!("Echo: instance {n}")
        );
        child.close_stdin();
        assert!(child.wait(EXIT).await?.success());
    }
    Ok(())
}

#[tokio::test]
async fn bad_arguments_exit_64_with_one_clear_line() -> anyhow::Result<()> {
    for (args, expected) in [
        (vec!["--upstream", "http://mcp.example/mcp"], "--allow-http"),
        (vec!["--upstream", "not a url"], "is not a URL"),
        (
            vec![
                "--upstream",
                "http://127.0.0.1:1/mcp",
                "--header",
                "no colon",
            ],
            "--header",
        ),
        (
            vec![
                "--upstream",
                "http://127.0.0.1:1/mcp",
                "--header",
                "X-K: ${TOOLGATE_E2E_UNSET_VAR}",
            ],
            "TOOLGATE_E2E_UNSET_VAR",
        ),
        (
            vec![
                "--upstream",
                "http://127.0.0.1:1/mcp",
                "--header-file",
                "/nonexistent/headers",
            ],
            "--header-file",
        ),
    ] {
        let mut child = toolgate_stdio(&args, &[])?;
        let status = child.wait(EXIT).await?;
        assert_eq!(status.code(), Some(64), "{args:?}");
        let stderr = child.stderr();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(child.recv_line().await?, None, "stdout must stay empty");
    }
    Ok(())
}

/// One HTTP request the echo upstream received.
#[derive(Clone, Debug)]
struct Received {
    head: String,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 MCP upstream: every POSTed request is answered with a result that carries
/// the exact body text it received plus unknown fields and `_meta`; notifications get 202, GET
/// 405. It speaks just enough HTTP for reqwest (Content-Length bodies, keep-alive).
async fn echo_upstream() -> anyhow::Result<(String, Arc<Mutex<Vec<Received>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_echo(stream, Arc::clone(&sink)));
        }
    });
    Ok((url, log))
}

async fn serve_echo(mut stream: TcpStream, log: Arc<Mutex<Vec<Received>>>) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0_u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0_u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        log.lock().expect("echo log poisoned").push(Received {
            head: head.clone(),
            body: body.clone(),
        });
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, extra, payload) = if !head.starts_with("POST") {
            ("405 Method Not Allowed", "", String::new())
        } else if message.get("id").is_none() || message.get("method").is_none() {
            ("202 Accepted", "", String::new())
        } else {
            let answer = json!({"jsonrpc":"2.0","id":message["id"],"result":{
                "received": String::from_utf8_lossy(&body),
                "protocolVersion": "2025-11-25",
                "x-upstream-unknown": {"kept": [1, "two", null]},
                "_meta": {"vendor.example/trace": {"span": 7}}
            }});
            (
                "200 OK",
                "content-type: application/json\r\nmcp-session-id: echo-session\r\n",
                answer.to_string(),
            )
        };
        let response = format!(
            "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\n\r\n{payload}",
            payload.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn relay_is_byte_faithful_for_unknown_fields_and_meta() -> anyhow::Result<()> {
    let (url, log) = echo_upstream().await?;
    let mut child = toolgate_stdio(&["--upstream", &url, "--header", "X-Api-Key:k-123"], &[])?;
    child.send(&initialize(0)).await?;
    child.answer_to(&json!(0)).await?;
    child
        .send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await?;
    let line = r#"{"jsonrpc":"2.0","id":"x-1","method":"tools/call","params":{"name":"anything","arguments":{"n":1.50,"s":"a\u00e9\n"},"x-client-unknown":{"deep":[{}]},"_meta":{"progressToken":9,"vendor.example/ctx":"c"}}}"#;
    child.send_raw(line).await?;
    let answer = child.answer_to(&json!("x-1")).await?;
    assert_eq!(
        answer["result"]["received"], line,
        "the upstream got different bytes"
    );
    assert_eq!(
        answer["result"]["x-upstream-unknown"],
        json!({"kept":[1,"two",null]})
    );
    assert_eq!(
        answer["result"]["_meta"],
        json!({"vendor.example/trace":{"span":7}})
    );
    child.close_stdin();
    assert!(child.wait(EXIT).await?.success());

    let received = log.lock().unwrap().clone();
    let call = received
        .iter()
        .find(|r| r.body == line.as_bytes())
        .expect("the call never arrived");
    let head = call.head.to_ascii_lowercase();
    for header in [
        "x-api-key: k-123",
        "mcp-session-id: echo-session",
        "mcp-method: tools/call",
        "mcp-name: anything",
        "mcp-protocol-version: 2025-11-25",
    ] {
        assert!(head.contains(header), "missing {header:?} in:\n{head}");
    }
    // On exit the session is ended.
    assert!(
        received.iter().any(|r| r.head.starts_with("DELETE")
            && r.head
                .to_ascii_lowercase()
                .contains("mcp-session-id: echo-session")),
        "no DELETE of the session"
    );
    Ok(())
}
