//! Hostile input on both sides of the bridge: lines nested 100,000 deep, invalid UTF-8, upstream
//! output that is not JSON-RPC, thousands of pipelined requests against a few upstream slots,
//! an upstream that never answers, one that stalls mid-body and one that dies mid-stream. The
//! bridge must answer every request with its id and keep serving.

use std::sync::atomic::Ordering::SeqCst;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::*;

/// A batch of batches around a `ping`, `depth` arrays deep.
fn nested_ping(depth: usize) -> String {
    format!(
        "{}{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}{}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[tokio::test]
async fn nested_batches_are_invalid_requests_and_the_bridge_keeps_serving() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    h.handshake(json!({})).await;
    for depth in [2, 1_500, 100_000] {
        h.send_raw(&nested_ping(depth)).await;
        let error = h.recv().await;
        assert_eq!(error["error"]["code"], error::INVALID_REQUEST, "{depth}");
        // The answer names no id: the nested "element" is not a message, so it has none.
        assert_eq!(error["id"], Value::Null, "{depth}");
        h.send(json!({"jsonrpc":"2.0","id":depth,"method":"tools/list"}))
            .await;
        let (list, _) = h.answer_to(json!(depth)).await;
        assert_eq!(list["result"]["method"], "tools/list");
    }
    h.close().await.unwrap();
}

#[tokio::test]
async fn invalid_utf8_is_a_parse_error_and_is_not_forwarded() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    h.handshake(json!({})).await;
    let stdin = h.stdin.as_mut().unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"u\",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"x\":\"\xff\xfe\"}}\n")
        .await
        .unwrap();
    let error = h.recv().await;
    assert_eq!(error["error"]["code"], error::PARSE_ERROR, "{error}");
    h.send(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .await;
    h.answer_to(json!(2)).await;
    assert!(fake.requests().iter().all(|r| r.json()["id"] != "u"));
    h.close().await.unwrap();
}

#[tokio::test]
async fn upstream_output_that_is_not_json_rpc_never_reaches_stdout() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    h.handshake(json!({})).await;
    h.send(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"not-rpc"}}))
        .await;
    let (answer, before) = h.answer_to(json!(5)).await;
    assert_eq!(answer["jsonrpc"], "2.0");
    assert_eq!(answer["result"]["content"], json!([]));
    assert_eq!(before, Vec::<Value>::new(), "relayed junk");
    // A plain JSON answer that is not JSON-RPC is no answer: the caller gets an error.
    h.send(json!({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"not-rpc-json"}}))
        .await;
    let (answer, before) = h.answer_to(json!(6)).await;
    assert_eq!(answer["error"]["code"], error::INTERNAL_ERROR, "{answer}");
    assert!(before.is_empty(), "{before:?}");
    h.close().await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_share_a_few_upstream_slots_and_all_get_answers() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let (parked_tx, mut parked_rx) = mpsc::unbounded_channel();
    *fake.parked.lock().unwrap() = Some(parked_tx);
    let config = StdioConfig {
        max_in_flight: 8,
        max_upstream_requests: 3,
        ..StdioConfig::default()
    };
    let mut h = Harness::start(Some(target(&url)), GateState::Open, config);
    h.handshake(json!({})).await;
    let connections_before = fake.accepted.load(SeqCst);
    const CALLS: u64 = 200;
    let lines: String = (0..CALLS)
        .map(|id| {
            format!(
                "{}\n",
                json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"park"}})
            )
        })
        .collect();
    h.stdin
        .as_mut()
        .unwrap()
        .write_all(lines.as_bytes())
        .await
        .unwrap();
    // Released one at a time: each release lets exactly one more call reach the upstream.
    let mut answered = HashSet::new();
    for _ in 0..CALLS {
        let release = parked_rx.recv().await.expect("a parked call");
        release.send(()).unwrap();
        let answer = h.recv().await;
        assert_eq!(answer["result"]["parked"], true, "{answer}");
        assert!(answered.insert(answer["id"].to_string()), "{answer}");
    }
    assert_eq!(answered.len(), CALLS as usize);
    assert!(
        fake.parked_peak.load(SeqCst) <= 3,
        "upstream slots exceeded"
    );
    let opened = fake.accepted.load(SeqCst) - connections_before;
    assert!(
        opened <= 3,
        "{opened} new upstream connections for {CALLS} calls"
    );
    h.close().await.unwrap();
}

/// What a raw upstream does with the `n`-th connection once it has read one request.
#[derive(Clone, Copy)]
enum Reply {
    /// Nothing, ever (the socket stays open).
    Hang,
    /// Writes these bytes, then keeps the socket open without another byte.
    WriteThenHang(&'static str),
    /// Writes these bytes, then closes the socket (an upstream killed mid-answer).
    WriteThenClose(&'static str),
}

/// An HTTP/1.1 upstream that misbehaves as scripted, per connection (the last reply repeats).
/// `acted` is signalled once a reply was written: the bytes are then in the bridge's socket.
async fn raw_upstream(replies: Vec<Reply>) -> (Url, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/mcp", listener.local_addr().unwrap())).unwrap();
    let acted = Arc::new(Notify::new());
    let signal = Arc::clone(&acted);
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let reply = replies[n.min(replies.len() - 1)];
            tokio::spawn(misbehave(stream, reply, Arc::clone(&signal)));
        }
    });
    (url, acted)
}

async fn misbehave(mut stream: TcpStream, reply: Reply, acted: Arc<Notify>) {
    let mut request = Vec::new();
    let mut chunk = [0_u8; 4096];
    // One request head is enough to act on; the bridge's bodies are small and follow at once.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    match reply {
        Reply::Hang => {}
        Reply::WriteThenHang(bytes) | Reply::WriteThenClose(bytes) => {
            stream.write_all(bytes.as_bytes()).await.unwrap();
            stream.flush().await.unwrap();
        }
    }
    acted.notify_one();
    if matches!(reply, Reply::WriteThenClose(_)) {
        return;
    }
    let _open = stream;
    std::future::pending::<()>().await;
}

fn short_timeouts() -> StdioConfig {
    StdioConfig {
        upstream_timeouts: crate::upstream::UpstreamTimeouts {
            response: Duration::from_secs(5),
            body_idle: Duration::from_secs(2),
        },
        ..StdioConfig::default()
    }
}

#[tokio::test]
async fn a_never_answering_upstream_gets_the_caller_a_timeout_with_its_id() {
    let (url, acted) = raw_upstream(vec![Reply::Hang]).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, short_timeouts());
    h.send(json!({"jsonrpc":"2.0","id":"hung","method":"tools/list"}))
        .await;
    acted.notified().await;
    // The request is at the upstream, which will never answer: only time passes now.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(5)).await;
    let error = h.recv().await;
    assert_eq!(error["id"], "hung", "{error}");
    assert_eq!(error["error"]["code"], error::UNAVAILABLE, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer in time"),
        "{error}"
    );
    // Still serving.
    h.send_raw("{oops").await;
    assert_eq!(h.recv().await["error"]["code"], error::PARSE_ERROR);
    h.close().await.unwrap();
}

#[tokio::test]
async fn a_body_stalled_between_chunks_gets_the_caller_a_timeout_with_its_id() {
    let (url, acted) = raw_upstream(vec![Reply::WriteThenHang(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"jsonrpc\":",
    )])
    .await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, short_timeouts());
    h.send(json!({"jsonrpc":"2.0","id":8,"method":"tools/list"}))
        .await;
    acted.notified().await;
    tokio::time::pause();
    // The head and the first bytes came at once; the rest never does.
    let error = h.recv().await;
    assert_eq!(error["id"], 8, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer in time"),
        "{error}"
    );
    h.close().await.unwrap();
}

/// An SSE answer that sends one progress event (with an event id) and then dies.
const DIES_MID_STREAM: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
    6f\r\nid: e-1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p\",\"progress\":1}}\n\n\r\n";

#[tokio::test]
async fn an_upstream_dying_mid_stream_gets_the_caller_an_error_with_its_id() {
    // The answer stream dies; resuming it finds the upstream gone as well.
    let (url, _acted) = raw_upstream(vec![
        Reply::WriteThenClose(DIES_MID_STREAM),
        Reply::WriteThenClose(""),
    ])
    .await;
    let config = StdioConfig {
        default_reconnect_delay: Duration::ZERO,
        ..short_timeouts()
    };
    let mut h = Harness::start(Some(target(&url)), GateState::Open, config);
    h.send(json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"long","_meta":{"progressToken":"p"}}}))
        .await;
    let (error, before) = h.answer_to(json!(9)).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["method"], "notifications/progress");
    assert!(error["error"]["code"].is_i64(), "{error}");
    h.send_raw("{oops").await;
    assert_eq!(h.recv().await["error"]["code"], error::PARSE_ERROR);
    h.close().await.unwrap();
}
