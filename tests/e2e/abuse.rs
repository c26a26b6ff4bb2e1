//! The standing abuse battery against the real binary (`toolgate serve --upstream` in front of a
//! raw fake upstream): hostile clients must neither exhaust nor crash toolgate, and a normal
//! client must still be served. Deadlines are configured small through `TOOLGATE_LIMITS_*` so
//! the tests finish quickly, but nothing here asserts a wall-clock duration: each test waits for
//! the behaviour (a close, an answer) under a generous hang guard. Memory and descriptor use is
//! read from `/proc` and printed (`cargo test ... -- --nocapture abuse` shows the numbers).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use toolgate_tests::http::Process;

/// Upper bound on any single wait in these tests: a hang guard, not a measurement.
const HANG_GUARD: Duration = Duration::from_secs(120);

const JSON_ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;

/// A raw HTTP/1.1 upstream: answers every request with one small JSON-RPC result, keep-alive.
async fn fake_upstream() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer_forever(stream));
        }
    });
    Ok(format!("http://{addr}/mcp"))
}

async fn answer_forever(mut stream: TcpStream) {
    while let Some(_request) = read_message(&mut stream).await {
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{JSON_ANSWER}",
            JSON_ANSWER.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one HTTP/1.1 message (head + `Content-Length` body); `None` at EOF or on error.
async fn read_message(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            return Some((head, buffer[end + 4..end + 4 + length].to_vec()));
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The status code of an HTTP/1.1 answer head.
fn status_of(head: &str) -> Option<u16> {
    head.split(' ').nth(1)?.parse().ok()
}

/// `toolgate serve` in generic mode, optionally under `prlimit --nofile`.
struct Gateway {
    process: Process,
    addr: SocketAddr,
    pid: u32,
}

impl Gateway {
    async fn start(nofile: Option<u32>, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_on(&fake_upstream().await?, nofile, envs).await
    }

    /// Like [`Gateway::start`], in front of the upstream at `upstream`.
    async fn start_on(
        upstream: &str,
        nofile: Option<u32>,
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let bin = toolgate_tests::toolgate_bin()?;
        let mut command = match nofile {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={limit}:{limit}")).arg(bin);
                command
            }
            None => Command::new(bin),
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .env_remove("TOOLGATE_TOKEN")
            .env("TOOLGATE_LOG_LEVEL", "info");
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut process = Process::spawn("toolgate serve", command)?;
        let line = process
            .wait_for_line(|line| line.contains("serving MCP at "))
            .await?;
        let addr = line
            .split("serving MCP at http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .context("no address on the ready line")?
            .parse()?;
        let pid = process.pid().context("toolgate exited")?;
        Ok(Self { process, addr, pid })
    }

    /// One normal MCP POST on a fresh connection; the answer's status.
    async fn post(&self, body: &str) -> anyhow::Result<u16> {
        let mut stream = TcpStream::connect(self.addr).await?;
        stream.write_all(mcp_post(body).as_bytes()).await?;
        let (head, _) = tokio::time::timeout(HANG_GUARD, read_message(&mut stream))
            .await?
            .context("no answer")?;
        status_of(&head).context("no status")
    }

    /// Open descriptors and peak resident memory (KiB), from `/proc`.
    fn usage(&self) -> anyhow::Result<Usage> {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid))?.count();
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .with_context(|| format!("{name} missing from /proc status"))
        };
        Ok(Usage {
            fds,
            peak_rss_kib: field("VmHWM:")?,
        })
    }

    /// Fails if the process has exited (a crash) and returns its stderr.
    fn alive(&self) -> anyhow::Result<String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // The state follows the parenthesised command name; Z is a dead, unreaped process.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        if matches!(state, None | Some("Z" | "X")) {
            bail!("toolgate exited; stderr:\n{}", self.process.stderr());
        }
        Ok(self.process.stderr())
    }
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    peak_rss_kib: u64,
}

fn mcp_post(body: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

/// Waits until the server closes `stream` (EOF or reset), discarding what it sends.
async fn closed(stream: &mut TcpStream) -> anyhow::Result<()> {
    let mut chunk = [0_u8; 1024];
    let drained = async { while matches!(stream.read(&mut chunk).await, Ok(read) if read > 0) {} };
    tokio::time::timeout(HANG_GUARD, drained)
        .await
        .context("the server never closed the connection")
}

/// Opens `count` sockets that send nothing, one byte, or part of an HTTP/2 preface.
async fn idle_sockets(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let openers = (0..count).map(|index| async move {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let opening: &[u8] = match index % 3 {
            0 => b"",
            1 => b"P",
            _ => b"PRI * HTTP/2.0\r\n",
        };
        stream.write_all(opening).await.ok()?;
        Some(stream)
    });
    futures_join(openers).await.into_iter().flatten().collect()
}

async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(output) = task.await {
            outputs.push(output);
        }
    }
    outputs
}

#[tokio::test]
async fn abuse_silent_partial_and_trickling_sockets_are_closed_on_their_deadline()
-> anyhow::Result<()> {
    let gateway = Gateway::start(None, &[("TOOLGATE_LIMITS_HEADER_TIMEOUT", "300ms")]).await?;
    for opening in [
        &b""[..],
        b"P",
        b"PRI * HTTP/2.0\r\n\r\nSM",
        b"POST /mcp HTTP/1.1\r\n",
    ] {
        let mut stream = TcpStream::connect(gateway.addr).await?;
        stream.write_all(opening).await?;
        closed(&mut stream)
            .await
            .with_context(|| format!("{opening:?}"))?;
    }
    // Slowloris: a header byte every 50 ms resets no timer of ours; the head deadline closes it.
    let mut stream = TcpStream::connect(gateway.addr).await?;
    stream.write_all(b"POST /mcp HTTP/1.1\r\n").await?;
    let trickle = async {
        let mut probe = [0_u8; 64];
        loop {
            if stream.write_all(b"X").await.is_err() {
                return;
            }
            let probed =
                tokio::time::timeout(Duration::from_millis(50), stream.read(&mut probe)).await;
            if let Ok(Ok(0) | Err(_)) = probed {
                return;
            }
        }
    };
    tokio::time::timeout(HANG_GUARD, trickle)
        .await
        .context("a trickled head was never cut off")?;
    assert_eq!(gateway.post(PING).await?, 200, "a normal client is served");
    eprintln!(
        "abuse silent/partial/slowloris-head: {:?}",
        gateway.usage()?
    );
    Ok(())
}

#[tokio::test]
async fn abuse_2000_idle_sockets_under_a_256_fd_limit_leave_room_for_a_client() -> anyhow::Result<()>
{
    // A head deadline far beyond the test: only the connection cap can make room.
    let gateway = Gateway::start(Some(256), &[("TOOLGATE_LIMITS_HEADER_TIMEOUT", "10m")]).await?;
    let sockets = idle_sockets(gateway.addr, 2000).await;
    let mut peak = gateway.usage()?;
    for _ in 0..5 {
        assert_eq!(gateway.post(PING).await?, 200, "a normal client is served");
        let usage = gateway.usage()?;
        peak.fds = peak.fds.max(usage.fds);
        peak.peak_rss_kib = usage.peak_rss_kib;
    }
    eprintln!(
        "abuse 2000 idle sockets (nofile 256, {} opened): fds peak {} (of 256), VmHWM {} KiB",
        sockets.len(),
        peak.fds,
        peak.peak_rss_kib
    );
    // The cap is (256 - 64) / 3 = 64 connections plus the process's own few: without it
    // the idle sockets would take every descriptor (255).
    assert!(
        peak.fds < 160,
        "descriptors stay near the connection cap: {peak:?}"
    );
    let stderr = gateway.alive()?;
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn abuse_fd_exhaustion_is_ridden_out_without_spinning_or_log_floods() -> anyhow::Result<()> {
    // A connection cap far above the fd limit: accept itself hits EMFILE.
    let gateway = Gateway::start(
        Some(256),
        &[
            ("TOOLGATE_LIMITS_HEADER_TIMEOUT", "10m"),
            ("TOOLGATE_LIMITS_MAX_CONNECTIONS", "100000"),
        ],
    )
    .await?;
    // Warm the upstream pool so a normal request needs no new descriptor toward the upstream.
    assert_eq!(gateway.post(PING).await?, 200);
    let sockets = idle_sockets(gateway.addr, 2000).await;
    let usage = gateway.usage()?;
    assert_eq!(gateway.post(PING).await?, 200, "a normal client is served");
    let stderr = gateway.alive()?;
    let accept_failures = stderr.matches("accept failed").count();
    eprintln!(
        "abuse EMFILE (nofile 256, {} sockets): fds {} , VmHWM {} KiB, 'accept failed' lines {accept_failures}",
        sockets.len(),
        usage.fds,
        usage.peak_rss_kib
    );
    assert!(accept_failures >= 1, "the limit was really hit:\n{stderr}");
    // One line per 10 s at most: a flood would log one per failed accept (thousands).
    assert!(
        accept_failures <= 20,
        "{accept_failures} accept-failed lines"
    );
    Ok(())
}

/// Sends a 100 MB body (declared or chunked) and returns the answer status, if one came.
async fn send_100_mb(addr: SocketAddr, declared: bool) -> anyhow::Result<Option<u16>> {
    const SIZE: usize = 100 * 1024 * 1024;
    let stream = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let head = if declared {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {SIZE}\r\n\r\n"
        )
    } else {
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_owned()
    };
    let sender = tokio::spawn(async move {
        let block = vec![b' '; 1024 * 1024];
        let chunk_head = format!("{:x}\r\n", block.len());
        writer.write_all(head.as_bytes()).await?;
        for _ in 0..SIZE / block.len() {
            if !declared {
                writer.write_all(chunk_head.as_bytes()).await?;
            }
            writer.write_all(&block).await?;
            if !declared {
                writer.write_all(b"\r\n").await?;
            }
        }
        anyhow::Ok(())
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(HANG_GUARD, reader.read_to_end(&mut answer)).await;
    sender.abort();
    let text = String::from_utf8_lossy(&answer);
    Ok(status_of(&text))
}

#[tokio::test]
async fn abuse_100_mb_bodies_with_and_without_length_cost_no_memory() -> anyhow::Result<()> {
    let gateway = Gateway::start(None, &[]).await?;
    let before = gateway.usage()?;
    let declared = send_100_mb(gateway.addr, true).await?;
    let chunked = send_100_mb(gateway.addr, false).await?;
    let after = gateway.usage()?;
    eprintln!(
        "abuse 100 MB bodies: answers {declared:?} (length) {chunked:?} (chunked); \
         VmHWM {} -> {} KiB, fds {} -> {}",
        before.peak_rss_kib, after.peak_rss_kib, before.fds, after.fds
    );
    // The answer may be lost to the reset that follows closing a half-read socket; when it
    // arrives, it is the body cap's.
    for status in [declared, chunked].into_iter().flatten() {
        assert_eq!(status, 413);
    }
    assert!(
        after.peak_rss_kib < before.peak_rss_kib + 32 * 1024,
        "a 100 MB body was buffered: {before:?} -> {after:?}"
    );
    assert_eq!(gateway.post(PING).await?, 200);
    gateway.alive()?;
    Ok(())
}

/// Declares a 4 MiB body with `Expect: 100-continue`; when invited, sends all of it but the
/// last byte and parks. `Ok(None)` when shed with 503 (the body is then never sent, so the
/// answer cannot be lost to a reset).
async fn park_a_body(addr: SocketAddr, size: usize) -> anyhow::Result<Option<TcpStream>> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nExpect: 100-continue\r\nContent-Length: {size}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let (answer, _) = tokio::time::timeout(HANG_GUARD, read_message(&mut stream))
        .await?
        .context("no answer to the head")?;
    match status_of(&answer) {
        Some(100) => {
            stream.write_all(&vec![b' '; size - 1]).await?;
            Ok(Some(stream))
        }
        Some(503) => Ok(None),
        other => bail!("unexpected answer {other:?}: {answer}"),
    }
}

#[tokio::test]
async fn abuse_100_parked_bodies_are_bounded_by_the_body_budget() -> anyhow::Result<()> {
    const BODY: usize = 4 * 1024 * 1024;
    let gateway = Gateway::start(
        None,
        &[("TOOLGATE_LIMITS_MAX_BUFFERED_BODY_BYTES", "16777216")],
    )
    .await?;
    let before = gateway.usage()?;
    let addr = gateway.addr;
    let outcomes = futures_join((0..100).map(|_| park_a_body(addr, BODY))).await;
    let mut parked = Vec::new();
    for outcome in outcomes {
        parked.extend(outcome?);
    }
    let during = gateway.usage()?;
    eprintln!(
        "abuse 100 parked 4 MiB bodies (budget 16 MiB): {} parked, {} shed with 503; \
         VmHWM {} -> {} KiB, fds {}",
        parked.len(),
        100 - parked.len(),
        before.peak_rss_kib,
        during.peak_rss_kib,
        during.fds
    );
    assert_eq!(
        parked.len(),
        4,
        "the budget holds exactly four 4 MiB bodies"
    );
    // Without the budget all 100 would be invited: +400 MiB.
    assert!(
        during.peak_rss_kib < before.peak_rss_kib + 64 * 1024,
        "{before:?} -> {during:?}"
    );
    // While the budget is full even a small body is shed, with Retry-After...
    assert_eq!(gateway.post(PING).await?, 503);
    // ...and once the parked clients are gone, their bytes are returned.
    drop(parked);
    toolgate_tests::binary::eventually("the body budget to be returned", || async {
        Ok((gateway.post(PING).await? == 200).then_some(()))
    })
    .await?;
    gateway.alive()?;
    Ok(())
}

#[tokio::test]
async fn abuse_a_trickled_body_gets_408() -> anyhow::Result<()> {
    let gateway = Gateway::start(
        None,
        &[
            ("TOOLGATE_LIMITS_BODY_IDLE_TIMEOUT", "1s"),
            ("TOOLGATE_LIMITS_BODY_TIMEOUT", "400ms"),
        ],
    )
    .await?;
    let stream = TcpStream::connect(gateway.addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Accept: application/json\r\nContent-Length: 100000\r\n\r\n",
        )
        .await?;
    let trickle = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(50));
        loop {
            ticker.tick().await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut head = [0_u8; 12];
    tokio::time::timeout(HANG_GUARD, reader.read_exact(&mut head)).await??;
    trickle.abort();
    assert_eq!(&head, b"HTTP/1.1 408");
    report("body trickled a byte at a time", &gateway)
}

#[tokio::test]
async fn abuse_a_half_closed_client_gets_its_answer() -> anyhow::Result<()> {
    let gateway = Gateway::start(None, &[]).await?;
    let mut stream = TcpStream::connect(gateway.addr).await?;
    stream.write_all(mcp_post(PING).as_bytes()).await?;
    stream.shutdown().await?;
    let (head, body) = tokio::time::timeout(HANG_GUARD, read_message(&mut stream))
        .await?
        .context("no answer after the half-close")?;
    assert_eq!(status_of(&head), Some(200), "{head}");
    assert_eq!(String::from_utf8_lossy(&body), JSON_ANSWER);
    report("half-closed client", &gateway)
}

/// How a [`hostile_upstream`] treats each request it reads.
#[derive(Clone, Copy)]
enum Hostility {
    /// Accepts and says nothing, ever.
    NeverAnswers,
    /// Sends a JSON answer's head and the start of its body, then nothing.
    HeadThenSilence,
    /// Starts an SSE answer (one whole progress event, half of the answer event), then resets
    /// the connection, as a killed process would leave it.
    DiesMidStream,
}

async fn hostile_upstream(hostility: Hostility) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_message(&mut stream).await.is_none() {
                    return;
                }
                let answer = match hostility {
                    Hostility::NeverAnswers => String::new(),
                    Hostility::HeadThenSilence => {
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: 100\r\n\r\n{\"jsonrpc\":\"2.0\","
                            .to_owned()
                    }
                    Hostility::DiesMidStream => {
                        let progress = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\
                             \"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";
                        let half = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":";
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{progress}\r\n{:x}\r\n{half}\r\n",
                            progress.len(),
                            half.len()
                        )
                    }
                };
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                if let Hostility::DiesMidStream = hostility {
                    // A zero linger resets at once (no blocking on drop).
                    #[allow(deprecated)]
                    let _ = stream.set_linger(Some(Duration::ZERO));
                    return;
                }
                std::future::pending::<()>().await;
            });
        }
    });
    Ok(format!("http://{addr}/mcp"))
}

/// Reads an answer with a chunked body to its terminating chunk: the head and the decoded body.
/// Fails if the connection ends before the body does (a cut, unterminated body).
async fn read_chunked(stream: &mut TcpStream) -> anyhow::Result<(String, String)> {
    let mut raw = Vec::new();
    let mut chunk = [0_u8; 8192];
    let read_all = async {
        while !raw.ends_with(b"\r\n0\r\n\r\n") {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                bail!(
                    "the body ended unterminated: {}",
                    String::from_utf8_lossy(&raw)
                );
            }
            raw.extend_from_slice(&chunk[..read]);
        }
        Ok(())
    };
    tokio::time::timeout(HANG_GUARD, read_all).await??;
    let text = String::from_utf8(raw)?;
    let (head, mut rest) = text.split_once("\r\n\r\n").context("no head")?;
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size, 16)?;
        if size == 0 {
            break;
        }
        body.push_str(after.get(..size).context("short chunk")?);
        rest = after.get(size + 2..).context("short chunk")?;
    }
    Ok((head.to_owned(), body))
}

fn report(case: &str, gateway: &Gateway) -> anyhow::Result<()> {
    let usage = gateway.usage()?;
    eprintln!(
        "abuse {case}: fds {}, VmHWM {} KiB",
        usage.fds, usage.peak_rss_kib
    );
    Ok(())
}

const CALL: &str =
    r#"{"jsonrpc":"2.0","id":"c-7","method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

#[tokio::test]
async fn abuse_a_never_answering_upstream_gets_the_caller_an_error_with_its_id()
-> anyhow::Result<()> {
    for (hostility, case) in [
        (Hostility::NeverAnswers, "never-answering upstream"),
        (Hostility::HeadThenSilence, "upstream silent after its head"),
    ] {
        let upstream = hostile_upstream(hostility).await?;
        let gateway = Gateway::start_on(
            &upstream,
            None,
            &[
                ("TOOLGATE_UPSTREAM_RESPONSE_TIMEOUT", "500ms"),
                ("TOOLGATE_UPSTREAM_IDLE_TIMEOUT", "500ms"),
            ],
        )
        .await?;
        let mut stream = TcpStream::connect(gateway.addr).await?;
        stream.write_all(mcp_post(CALL).as_bytes()).await?;
        let (head, body) = tokio::time::timeout(HANG_GUARD, read_message(&mut stream))
            .await?
            .context("no answer")?;
        assert_eq!(status_of(&head), Some(504), "{case}: {head}");
        let body: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(body["id"], "c-7", "{case}: {body}");
        assert!(body["error"]["message"].is_string(), "{case}: {body}");
        gateway.alive()?;
        report(case, &gateway)?;
    }
    Ok(())
}

#[tokio::test]
async fn abuse_an_upstream_killed_mid_stream_ends_the_clients_stream_with_an_error_event()
-> anyhow::Result<()> {
    let upstream = hostile_upstream(Hostility::DiesMidStream).await?;
    let gateway = Gateway::start_on(&upstream, None, &[]).await?;
    for _ in 0..20 {
        let mut stream = TcpStream::connect(gateway.addr).await?;
        stream.write_all(mcp_post(CALL).as_bytes()).await?;
        let (head, body) = read_chunked(&mut stream).await?;
        assert_eq!(status_of(&head), Some(200), "{head}");
        let events: Vec<serde_json::Value> = body
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("event: message\ndata: "))
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert_eq!(events.len(), 2, "{body}");
        assert_eq!(events[0]["method"], "notifications/progress", "{body}");
        assert_eq!(events[1]["id"], "c-7", "{body}");
        assert!(events[1]["error"]["code"].is_i64(), "{body}");
    }
    gateway.alive()?;
    report("upstream killed mid-stream (20 calls)", &gateway)
}

#[tokio::test]
async fn abuse_json_nested_100k_deep_gets_an_answer() -> anyhow::Result<()> {
    let gateway = Gateway::start(None, &[]).await?;
    for nested in [
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{}1{}}}",
            "{\"a\":".repeat(100_000),
            "}".repeat(100_000)
        ),
    ] {
        let status = gateway.post(&nested).await?;
        assert!((400..500).contains(&status) || status == 200, "{status}");
        gateway.alive()?;
    }
    assert_eq!(
        gateway.post(PING).await?,
        200,
        "a normal client is still served"
    );
    report("JSON nested 100k deep", &gateway)
}
