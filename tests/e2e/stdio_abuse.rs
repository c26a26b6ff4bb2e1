//! The standing abuse battery of the stdio bridge, run on the real binary: a line nested
//! 100,000 arrays deep (generic and Composio mode), invalid UTF-8 on both faces, 10,000
//! pipelined requests under a 256 open-file limit (every one answered; fd, RSS and upstream
//! connection peaks reported), a never-answering upstream and one killed mid-stream.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use toolgate_tests::binary::{composio_env, sandbox};
use toolgate_tests::http::ToolgateServe;
use toolgate_tests::stdio::{LineChild, toolgate_stdio};

/// Liveness bound for exiting after EOF (not a performance threshold).
const EXIT: Duration = Duration::from_secs(15);

fn nested_ping(depth: usize) -> String {
    format!(
        "{}{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}{}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// How many connections the scripted upstream saw: in total and open at once at most.
#[derive(Default)]
struct Connections {
    accepted: AtomicUsize,
    open: AtomicUsize,
    peak: AtomicUsize,
}

/// A scripted HTTP/1.1 MCP upstream (keep-alive, Content-Length bodies): a `tools/call` of
/// `hang` is never answered, one of `die` gets one SSE progress event and then a closed socket;
/// every other request gets an empty result, notifications 202, GET 405.
async fn scripted_upstream() -> anyhow::Result<(String, Arc<Connections>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    let connections = Arc::new(Connections::default());
    let seen = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.accepted.fetch_add(1, SeqCst);
            let open = seen.open.fetch_add(1, SeqCst) + 1;
            seen.peak.fetch_max(open, SeqCst);
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                serve(stream).await;
                seen.open.fetch_sub(1, SeqCst);
            });
        }
    });
    Ok((url, connections))
}

/// Reads one request (head and Content-Length body); `None` once the peer closed.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Value)> {
    let mut chunk = [0_u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let line = line.to_ascii_lowercase();
            line.strip_prefix("content-length:")
                .and_then(|value| value.trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let body = serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap_or(Value::Null);
    buffer.drain(..head_end + length);
    Some((head, body))
}

async fn serve(mut stream: TcpStream) {
    let mut buffer = Vec::new();
    while let Some((head, message)) = read_request(&mut stream, &mut buffer).await {
        let reply = if !head.starts_with("POST") {
            "HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n".to_owned()
        } else if message.get("id").is_none() || message.get("method").is_none() {
            "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_owned()
        } else {
            match message.pointer("/params/name").and_then(Value::as_str) {
                Some("hang") => {
                    let _open = stream;
                    std::future::pending::<()>().await;
                    return;
                }
                Some("die") => {
                    let event = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p\",\"progress\":1}}\n\n";
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
                        event.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    return; // killed mid-answer: no last chunk, the socket just closes
                }
                _ => {
                    let answer =
                        json!({"jsonrpc":"2.0","id":message["id"],"result":{}}).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    )
                }
            }
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends the nested lines and checks each gets -32600 with a null id, then that `ping` works.
async fn nested_lines_are_rejected(child: &mut LineChild) -> anyhow::Result<()> {
    for depth in [1_500, 100_000] {
        child.send_raw(&nested_ping(depth)).await?;
        let error = child.recv().await?;
        assert_eq!(error["error"]["code"], -32600, "{depth}: {error}");
        assert_eq!(error["id"], Value::Null, "{depth}");
        child
            .send(&json!({"jsonrpc":"2.0","id":depth,"method":"ping"}))
            .await?;
        let pong = child.answer_to(&json!(depth)).await?;
        assert!(pong["result"].is_object(), "{pong}");
    }
    Ok(())
}

#[tokio::test]
async fn nested_lines_100k_deep_are_invalid_requests_in_generic_mode() -> anyhow::Result<()> {
    let (url, _) = scripted_upstream().await?;
    let mut child = toolgate_stdio(&["--upstream", &url], &[])?;
    nested_lines_are_rejected(&mut child).await?;
    child.close_stdin();
    assert!(child.wait(EXIT).await?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_lines_100k_deep_are_invalid_requests_in_composio_mode() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut command = tokio::process::Command::from(toolgate_tests::toolgate_command()?);
    command
        .envs(composio_env(&sandbox, "stdio-abuse"))
        .env("TOOLGATE_LISTEN", "127.0.0.1:0")
        .arg("stdio");
    let mut child = LineChild::spawn("toolgate stdio", command)?;
    child
        .send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}))
        .await?;
    child.answer_to(&json!(0)).await?;
    child
        .send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await?;
    nested_lines_are_rejected(&mut child).await?;
    child.close_stdin();
    assert!(child.wait(EXIT).await?.success());
    Ok(())
}

#[tokio::test]
async fn invalid_utf8_is_a_parse_error_on_both_faces() -> anyhow::Result<()> {
    let (url, connections) = scripted_upstream().await?;
    let bad = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\"}";
    let mut child = toolgate_stdio(&["--upstream", &url], &[])?;
    child.send_bytes(bad).await?;
    let error = child.recv().await?;
    assert_eq!(error["error"]["code"], -32700, "{error}");
    child.close_stdin();
    assert!(child.wait(EXIT).await?.success());

    let serve = ToolgateServe::start(&["--upstream", &url], &[]).await?;
    let response = reqwest::Client::new()
        .post(&serve.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(bad.to_vec())
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await?;
    assert_eq!(error["error"]["code"], -32700, "{error}");
    assert_eq!(connections.accepted.load(SeqCst), 0, "forwarded upstream");
    Ok(())
}

/// Peaks of a process, read from /proc while it runs.
#[derive(Debug, Default)]
struct Peaks {
    fds: usize,
    rss_kib: u64,
}

fn sample(pid: u32, peaks: &mut Peaks) {
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        peaks.fds = peaks.fds.max(entries.count());
    }
    // VmHWM is the kernel's own RSS high-water mark, so no peak between samples is missed.
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        && let Some(hwm) = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))
    {
        let kib = hwm
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0);
        peaks.rss_kib = peaks.rss_kib.max(kib);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_pipelined_requests_under_256_open_files_are_all_answered()
-> anyhow::Result<()> {
    const CALLS: usize = 10_000;
    let (url, connections) = scripted_upstream().await?;
    let mut child = tokio::process::Command::new("prlimit")
        .arg("--nofile=256")
        .arg("--")
        .arg(toolgate_tests::toolgate_bin()?)
        .args(["stdio", "--upstream", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning prlimit toolgate stdio")?;
    let pid = child.id().context("no pid")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
    // Everything at once, written while answers are read: the bridge's backpressure decides
    // how fast stdin drains.
    let writer = tokio::spawn(async move {
        let lines: String = (0..CALLS)
            .map(|id| format!("{}\n", json!({"jsonrpc":"2.0","id":id,"method":"ping"})))
            .collect();
        stdin.write_all(lines.as_bytes()).await?;
        stdin.flush().await?;
        Ok::<_, std::io::Error>(stdin)
    });
    let mut peaks = Peaks::default();
    let mut answered = vec![false; CALLS];
    for count in 0..CALLS {
        let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
            .await
            .context("no answer within 60 s")??
            .context("stdout ended")?;
        let answer: Value = serde_json::from_str(&line)?;
        assert!(answer["result"].is_object(), "{answer}");
        let id = answer["id"].as_u64().context("id")? as usize;
        assert!(!answered[id], "answered twice: {id}");
        answered[id] = true;
        if count % 100 == 0 {
            sample(pid, &mut peaks);
        }
    }
    sample(pid, &mut peaks);
    let stdin = writer.await??;
    drop(stdin);
    let status = tokio::time::timeout(EXIT, child.wait()).await??;
    assert!(status.success(), "{status}");
    let upstream_peak = connections.peak.load(SeqCst);
    eprintln!(
        "10k pipelined under nofile=256: fd peak {} (sampled), RSS peak {} KiB (VmHWM), upstream connections {} accepted / {} open at most",
        peaks.fds,
        peaks.rss_kib,
        connections.accepted.load(SeqCst),
        upstream_peak
    );
    // The bridge's bound is 32 requests at the upstream at once. The fake upstream counts a
    // connection the bridge has let go as open until it sees the close, and on a loaded machine
    // that lag lets the count pass 40 (seen: 43), so the bound is twice the slots: the point
    // is that it is nowhere near one connection per request (10,000 before the bound).
    assert!(upstream_peak <= 64, "{upstream_peak} upstream connections");
    assert!(peaks.fds < 100, "{peaks:?}");
    Ok(())
}

#[tokio::test]
async fn a_never_answering_upstream_holds_only_its_own_request() -> anyhow::Result<()> {
    let (url, _) = scripted_upstream().await?;
    let mut child = toolgate_stdio(&["--upstream", &url], &[])?;
    child
        .send(&json!({"jsonrpc":"2.0","id":"h","method":"tools/call","params":{"name":"hang"}}))
        .await?;
    child
        .send(&json!({"jsonrpc":"2.0","id":2,"method":"ping"}))
        .await?;
    let pong = child.answer_to(&json!(2)).await?;
    assert!(pong["result"].is_object(), "{pong}");
    // The client gives up on it: cancelling frees it, and EOF ends the process promptly.
    child
        .send(
            &json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"h"}}),
        )
        .await?;
    child
        .send(&json!({"jsonrpc":"2.0","id":3,"method":"ping"}))
        .await?;
    child.answer_to(&json!(3)).await?;
    child.close_stdin();
    assert!(child.wait(EXIT).await?.success());
    Ok(())
}

#[tokio::test]
async fn an_upstream_killed_mid_stream_gets_the_pending_id_an_error() -> anyhow::Result<()> {
    let (url, _) = scripted_upstream().await?;
    let mut child = toolgate_stdio(&["--upstream", &url], &[])?;
    child
        .send(&json!({"jsonrpc":"2.0","id":"d","method":"tools/call","params":{"name":"die","_meta":{"progressToken":"p"}}}))
        .await?;
    let progress = child.recv().await?;
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    let error = child.answer_to(&json!("d")).await?;
    assert!(error["error"]["code"].is_i64(), "{error}");
    child
        .send(&json!({"jsonrpc":"2.0","id":4,"method":"ping"}))
        .await?;
    child.answer_to(&json!(4)).await?;
    child.close_stdin();
    assert!(child.wait(EXIT).await?.success());
    Ok(())
}
