//! In-process tests of the stdio bridge: the client side is a `tokio::io::duplex` pair, the
//! upstream a scripted Streamable HTTP server on 127.0.0.1:0 that records every request, so
//! each protocol step (session headers, replay after a lost session, resumption, the GET
//! stream) is asserted on the wire. The real third-party peers are driven by `tests/e2e`.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use url::Url;

use super::*;
use crate::events::{NoEvents, ProxyEvents, RequestRecord};
use crate::gate::PendingToolkit;
use crate::mcp::error;
use crate::mcp::policy::testing::MailOnly;
use crate::mcp::policy::{AllPending, ToolPolicy};

type Body = BoxBody<Bytes, Infallible>;
/// Feeds frames into a streaming (SSE) response body.
type FrameSender = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

/// One request the fake upstream received.
#[derive(Clone, Debug)]
struct Logged {
    method: http::Method,
    headers: HeaderMap,
    body: Bytes,
}

impl Logged {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A scripted Streamable HTTP MCP server.
#[derive(Default)]
struct Fake {
    sessions: Mutex<HashSet<String>>,
    next_session: Mutex<u32>,
    /// Status for an unknown session id: 404 per spec, or 400 like server-everything.
    lost_status: Mutex<Option<StatusCode>>,
    /// Whether GET opens a stream (else 405).
    get_allowed: bool,
    log: Mutex<Vec<Logged>>,
    logged: Notify,
    /// Answers the client owes to server-initiated requests, by request id.
    awaiting_client: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Open GET streams (kept so they stay open).
    get_streams: Mutex<Vec<FrameSender>>,
    /// Whether a fresh GET stream drops right after its first event (with `retry: 10`).
    get_drops: std::sync::atomic::AtomicBool,
    /// Answers waiting to be resumed, by last event id.
    resumable: Mutex<HashMap<String, Value>>,
    /// Connections accepted so far.
    accepted: std::sync::atomic::AtomicUsize,
    /// `park` calls being held now, and the most ever held at once.
    parked_now: std::sync::atomic::AtomicUsize,
    parked_peak: std::sync::atomic::AtomicUsize,
    /// Where each held `park` call's release goes (the test answers them one by one).
    parked: Mutex<Option<mpsc::UnboundedSender<oneshot::Sender<()>>>>,
}

fn sse_frame(id: Option<&str>, data: &Value) -> Bytes {
    let mut text = String::from("event: message\n");
    if let Some(id) = id {
        text.push_str(&format!("id: {id}\n"));
    }
    text.push_str(&format!("data: {data}\n\n"));
    Bytes::from(text)
}

fn full(status: StatusCode, content_type: Option<&str>, body: impl Into<Bytes>) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    builder.body(Full::new(body.into()).boxed()).unwrap()
}

fn sse_response(session: Option<&str>) -> (Response<Body>, FrameSender) {
    let (tx, rx) = mpsc::channel(16);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut builder = Response::builder()
        .status(200)
        .header("content-type", "text/event-stream");
    if let Some(session) = session {
        builder = builder.header("mcp-session-id", session);
    }
    (builder.body(BodyExt::boxed(body)).unwrap(), tx)
}

impl Fake {
    async fn start(get_allowed: bool, lost_status: StatusCode) -> (Arc<Self>, Url, JoinHandle<()>) {
        let fake = Arc::new(Self {
            get_allowed,
            lost_status: Mutex::new(Some(lost_status)),
            ..Self::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/mcp", listener.local_addr().unwrap())).unwrap();
        let server = Arc::clone(&fake);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                server
                    .accepted
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let fake = Arc::clone(&server);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let fake = Arc::clone(&fake);
                        async move { Ok::<_, Infallible>(fake.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (fake, url, task)
    }

    fn forget_sessions(&self) {
        self.sessions.lock().unwrap().clear();
    }

    /// As a restart does: forget every session and end every open GET stream.
    fn restart(&self) {
        self.forget_sessions();
        self.get_streams.lock().unwrap().clear();
    }

    fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a logged request matches (bounded).
    async fn wait_for(&self, what: &str, predicate: impl Fn(&Logged) -> bool) -> Logged {
        let waiting = async {
            loop {
                let notified = self.logged.notified();
                if let Some(found) = self.requests().into_iter().find(&predicate) {
                    return found;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap_or_else(|_| panic!("upstream never received {what}: {:#?}", self.requests()))
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.log.lock().unwrap().push(Logged {
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        self.logged.notify_waiters();
        let session = parts
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let known = session
            .as_ref()
            .is_some_and(|s| self.sessions.lock().unwrap().contains(s));
        let lost_status = self
            .lost_status
            .lock()
            .unwrap()
            .unwrap_or(StatusCode::NOT_FOUND);
        let lost = move || {
            full(
                lost_status,
                Some("application/json"),
                r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}"#,
            )
        };
        match parts.method {
            http::Method::DELETE => {
                if let Some(session) = session {
                    self.sessions.lock().unwrap().remove(&session);
                }
                full(StatusCode::OK, None, "")
            }
            http::Method::GET => {
                if !self.get_allowed {
                    return full(StatusCode::METHOD_NOT_ALLOWED, None, "");
                }
                if !known {
                    return lost();
                }
                let (response, tx) = sse_response(None);
                if let Some(last) = parts
                    .headers
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                {
                    if last == "g-1" {
                        // The GET stream resumed where it dropped.
                        let note = json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"resumed after g-1"}});
                        let _ = tx.try_send(Ok(Frame::data(sse_frame(Some("g-2"), &note))));
                        self.get_streams.lock().unwrap().push(tx);
                        return response;
                    }
                    let answer = self.resumable.lock().unwrap().remove(last);
                    if let Some(answer) = answer {
                        let _ = tx.try_send(Ok(Frame::data(sse_frame(Some("d-2"), &answer))));
                    }
                    return response; // `tx` dropped: the stream ends after the replay
                }
                let note = json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hello from the GET stream"}});
                if self.get_drops.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = tx.try_send(Ok(Frame::data(Bytes::from_static(b"retry: 10\n\n"))));
                }
                let _ = tx.try_send(Ok(Frame::data(sse_frame(Some("g-1"), &note))));
                if !self.get_drops.load(std::sync::atomic::Ordering::SeqCst) {
                    self.get_streams.lock().unwrap().push(tx);
                }
                response
            }
            _ => self.post(body, session, known, lost).await,
        }
    }

    async fn post(
        self: Arc<Self>,
        body: Bytes,
        session: Option<String>,
        known: bool,
        lost: impl Fn() -> Response<Body>,
    ) -> Response<Body> {
        let Ok(message) = serde_json::from_slice::<Value>(&body) else {
            return full(StatusCode::BAD_REQUEST, None, "not json");
        };
        let method = message.get("method").and_then(Value::as_str).unwrap_or("");
        let id = message.get("id").cloned();
        if method == "initialize" {
            let session = {
                let mut next = self.next_session.lock().unwrap();
                *next += 1;
                format!("s{next}")
            };
            self.sessions.lock().unwrap().insert(session.clone());
            let (response, tx) = sse_response(Some(&session));
            let result = json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}});
            let _ = tx.try_send(Ok(Frame::data(Bytes::from_static(
                b"id: 0\nretry: 10\ndata:\n\n",
            ))));
            let _ = tx.try_send(Ok(Frame::data(sse_frame(Some("1"), &result))));
            return response;
        }
        if method == "server/discover" {
            return full(
                StatusCode::BAD_REQUEST,
                Some("application/json"),
                r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null}"#,
            );
        }
        // Stateless (2026-07-28) requests carry no session; anything else must name a live one.
        let stateless = message
            .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
            .is_some();
        if !stateless && !known {
            return lost();
        }
        let _ = session;
        if id.is_none() || method.is_empty() {
            // A notification, or the client's answer to one of our requests.
            let answered = id
                .as_ref()
                .and_then(Value::as_str)
                .filter(|_| method.is_empty());
            let waiter = answered.and_then(|id| self.awaiting_client.lock().unwrap().remove(id));
            if let Some(waiter) = waiter {
                let _ = waiter.send(message.clone());
            }
            return full(StatusCode::ACCEPTED, None, "");
        }
        let tool = message
            .pointer("/params/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        match (method, tool) {
            ("tools/call", "echo") => {
                let answer = json!({"jsonrpc":"2.0","id":id,"result":{
                    "content":[{"type":"text","text":"echoed"}],
                    "structuredContent": message["params"].clone(),
                    "_meta": {"up.example/trace": "t-1"},
                    "x-upstream-extra": {"nested": [1, {"deep": null}]}
                }});
                // Pretty-printed on purpose: the bridge must still write it on one line.
                full(
                    StatusCode::OK,
                    Some("application/json"),
                    serde_json::to_vec_pretty(&answer).unwrap(),
                )
            }
            ("tools/call", "drop") => {
                // Primes the stream, then closes it before answering: the client must resume.
                self.resumable.lock().unwrap().insert(
                    "d-1".into(),
                    json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"resumed"}]}}),
                );
                let (response, tx) = sse_response(None);
                let _ = tx.try_send(Ok(Frame::data(Bytes::from_static(
                    b"id: d-1\nretry: 20\ndata:\n\n",
                ))));
                response
            }
            ("tools/call", "ask") => {
                // Asks the client for a sampling answer on the POST stream, then uses it.
                let (response, tx) = sse_response(None);
                let (answer_tx, answer_rx) = oneshot::channel();
                self.awaiting_client
                    .lock()
                    .unwrap()
                    .insert("srv-1".into(), answer_tx);
                let ask = json!({"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":5}});
                let _ = tx.try_send(Ok(Frame::data(sse_frame(Some("a-1"), &ask))));
                tokio::spawn(async move {
                    let Ok(answer) = answer_rx.await else { return };
                    let result = json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":format!("client said {}", answer["result"]["content"]["text"])}]}});
                    let _ = tx
                        .send(Ok(Frame::data(sse_frame(Some("a-2"), &result))))
                        .await;
                });
                response
            }
            ("tools/call", "huge") => {
                let (response, tx) = sse_response(None);
                let text = "x".repeat(10_000);
                let answer = json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":text}]}});
                let _ = tx.try_send(Ok(Frame::data(sse_frame(Some("h-1"), &answer))));
                response
            }
            ("tools/call", "park") => self.park(id).await,
            ("tools/call", "not-rpc") => {
                // Things that are not JSON-RPC 2.0 (and a batch nested 100,000 deep) around the
                // real answer: only the answer may reach the client.
                let (response, tx) = sse_response(None);
                let nested = format!("{}{{}}{}", "[".repeat(100_000), "]".repeat(100_000));
                for junk in [
                    r#"{"a":1}"#.to_owned(),
                    format!(
                        r#"{{"id":{id},"result":{{"no":"jsonrpc"}}}}"#,
                        id = id.clone().unwrap()
                    ),
                    r#"{"jsonrpc":"1.0","method":"notifications/message"}"#.to_owned(),
                    r#"{"jsonrpc":"2.0"}"#.to_owned(),
                    "[[{\"jsonrpc\":\"2.0\",\"method\":\"nested\"}]]".to_owned(),
                    nested,
                ] {
                    let frame = format!("event: message\ndata: {junk}\n\n");
                    let _ = tx.send(Ok(Frame::data(Bytes::from(frame)))).await;
                }
                let answer = json!({"jsonrpc":"2.0","id":id,"result":{"content":[]}});
                let _ = tx.send(Ok(Frame::data(sse_frame(None, &answer)))).await;
                response
            }
            ("tools/call", "not-rpc-json") => full(
                StatusCode::OK,
                Some("application/json"),
                json!({"id":id,"result":{"content":[]}}).to_string(),
            ),
            ("tools/call", "deny") => full(
                StatusCode::UNAUTHORIZED,
                Some("application/json"),
                r#"{"error":"invalid api key"}"#,
            ),
            ("tools/call", "slow") => {
                // Never answers: the client must be able to cancel it.
                let (response, tx) = sse_response(None);
                tokio::spawn(async move {
                    tx.closed().await;
                });
                response
            }
            _ => full(
                StatusCode::OK,
                Some("application/json"),
                json!({"jsonrpc":"2.0","id":id,"result":{"method":method}}).to_string(),
            ),
        }
    }
}

impl Fake {
    /// Holds a `park` call until the test releases it, tracking how many are held at once.
    async fn park(&self, id: Option<Value>) -> Response<Body> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.parked_now.fetch_add(1, SeqCst) + 1;
        self.parked_peak.fetch_max(now, SeqCst);
        let (release, released) = oneshot::channel();
        if let Some(parked) = self.parked.lock().unwrap().as_ref() {
            let _ = parked.send(release);
        }
        let _ = released.await;
        self.parked_now.fetch_sub(1, SeqCst);
        full(
            StatusCode::OK,
            Some("application/json"),
            json!({"jsonrpc":"2.0","id":id,"result":{"parked":true}}).to_string(),
        )
    }
}

/// The client end of a running bridge.
struct Harness {
    stdin: Option<DuplexStream>,
    stdout: Lines<BufReader<DuplexStream>>,
    gate_tx: watch::Sender<GateState>,
    upstream_tx: watch::Sender<Option<UpstreamTarget>>,
    shutdown_tx: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<StdioExit, StdioError>>,
}

fn target(url: &Url) -> UpstreamTarget {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-api-key",
        http::HeaderValue::from_static("ak_test_secret"),
    );
    UpstreamTarget::new(url.clone(), headers)
}

impl Harness {
    fn start(upstream: Option<UpstreamTarget>, gate: GateState, config: StdioConfig) -> Self {
        Self::start_with_events(upstream, gate, config, Arc::new(NoEvents))
    }

    fn start_with_events(
        upstream: Option<UpstreamTarget>,
        gate: GateState,
        config: StdioConfig,
        events: Arc<dyn ProxyEvents>,
    ) -> Self {
        Self::start_with_policy(upstream, gate, config, events, Arc::new(AllPending))
    }

    fn start_with_policy(
        upstream: Option<UpstreamTarget>,
        gate: GateState,
        config: StdioConfig,
        events: Arc<dyn ProxyEvents>,
        policy: Arc<dyn ToolPolicy>,
    ) -> Self {
        let (stdin, bridge_in) = tokio::io::duplex(1 << 20);
        let (bridge_out, stdout) = tokio::io::duplex(1 << 20);
        let (upstream_tx, upstream_rx) = watch::channel(upstream);
        let (gate_tx, gate_rx) = watch::channel(gate);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let keeper = Gatekeeper::new(gate_rx, upstream_rx, config.wait, policy, events);
        let task = tokio::spawn(run_stdio_with(
            bridge_in,
            bridge_out,
            config,
            keeper,
            async move {
                let _ = shutdown_rx.await;
            },
        ));
        Self {
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
            gate_tx,
            upstream_tx,
            shutdown_tx: Some(shutdown_tx),
            task,
        }
    }

    async fn send(&mut self, message: Value) {
        self.send_raw(&message.to_string()).await;
    }

    async fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
    }

    /// The next stdout line, which must be one JSON object.
    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await
            .expect("no stdout line within 10 s")
            .unwrap()
            .expect("stdout closed");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
    }

    /// Reads stdout until the answer to `id` arrives; returns it and what came before it.
    async fn answer_to(&mut self, id: Value) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let message = self.recv().await;
            if message.get("id") == Some(&id) && message.get("method").is_none() {
                return (message, before);
            }
            before.push(message);
        }
    }

    async fn handshake(&mut self, capabilities: Value) -> Value {
        self.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":capabilities,"clientInfo":{"name":"t","version":"0"}}})).await;
        let (answer, _) = self.answer_to(json!(0)).await;
        self.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        answer
    }

    /// Closes stdin and waits for the bridge to return.
    async fn close(mut self) -> Result<StdioExit, StdioError> {
        drop(self.stdin.take());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("bridge did not stop within 10 s of stdin EOF")
            .unwrap()
    }
}

fn gmail() -> PendingToolkit {
    PendingToolkit {
        slug: "gmail".into(),
        name: "Gmail".into(),
        connect_url: Some("https://connect.example/link/ln_1".into()),
        status: "waiting for authorization".into(),
    }
}

#[tokio::test]
async fn session_headers_get_stream_and_delete_on_eof() {
    let (fake, url, _server) = Fake::start(true, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    let init = h.handshake(json!({})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    // The GET stream opens after `initialized` and its notification reaches stdout.
    let note = h.recv().await;
    assert_eq!(note["method"], "notifications/message");
    let get = fake
        .wait_for("GET", |r| r.method == http::Method::GET)
        .await;
    assert_eq!(get.header("mcp-session-id"), Some("s1"));
    assert_eq!(get.header("mcp-protocol-version"), Some("2025-11-25"));
    assert_eq!(get.header("x-api-key"), Some("ak_test_secret"));

    h.send(json!({"jsonrpc":"2.0","id":"L","method":"tools/list"}))
        .await;
    let (answer, _) = h.answer_to(json!("L")).await;
    assert_eq!(answer["result"]["method"], "tools/list");
    let list = fake
        .wait_for("tools/list", |r| r.json()["method"] == "tools/list")
        .await;
    assert_eq!(list.header("mcp-session-id"), Some("s1"));
    assert_eq!(list.header("mcp-protocol-version"), Some("2025-11-25"));
    assert_eq!(list.header("mcp-method"), Some("tools/list"));
    let init_req = fake
        .wait_for("initialize", |r| r.json()["method"] == "initialize")
        .await;
    assert_eq!(init_req.header("mcp-session-id"), None);

    assert_eq!(h.close().await.unwrap(), StdioExit::InputClosed);
    let delete = fake
        .wait_for("DELETE", |r| r.method == http::Method::DELETE)
        .await;
    assert_eq!(delete.header("mcp-session-id"), Some("s1"));
}

#[tokio::test]
async fn relay_is_faithful_both_ways() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    h.handshake(json!({})).await;
    // Odd spacing, escapes, unknown fields and `_meta`: the upstream must get these bytes.
    let line = r#"{ "jsonrpc":"2.0", "id":7, "method":"tools/call", "params":{"name":"echo","arguments":{"text":"a\nb \u00e9"},"x-client-extra":{"k":[1,2.50,null]},"_meta":{"progressToken":"p","vendor.example/x":{"y":true}}} }"#;
    h.send_raw(line).await;
    let (answer, _) = h.answer_to(json!(7)).await;
    let sent = fake.wait_for("the call", |r| r.json()["id"] == 7).await;
    assert_eq!(
        sent.body,
        Bytes::from(line),
        "the request was altered on its way upstream"
    );
    assert_eq!(sent.header("mcp-name"), Some("echo"));
    assert_eq!(sent.header("mcp-method"), Some("tools/call"));
    let original: Value = serde_json::from_str(line).unwrap();
    assert_eq!(answer["result"]["structuredContent"], original["params"]);
    assert_eq!(answer["result"]["_meta"]["up.example/trace"], "t-1");
    assert_eq!(
        answer["result"]["x-upstream-extra"],
        json!({"nested":[1,{"deep":null}]})
    );
    h.close().await.unwrap();
}

#[tokio::test]
async fn forgotten_session_is_replayed_transparently() {
    for lost_status in [StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST] {
        let (fake, url, _server) = Fake::start(true, lost_status).await;
        let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
        h.handshake(json!({})).await;
        fake.wait_for("GET", |r| r.method == http::Method::GET)
            .await;

        fake.forget_sessions(); // as if the upstream restarted
        h.send(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
            .await;
        let (answer, before) = h.answer_to(json!(2)).await;
        assert_eq!(
            answer["result"]["method"], "tools/list",
            "{lost_status}: {answer}"
        );
        // The replayed initialize's answer (id 0) never reaches the client.
        assert!(
            before.iter().all(|m| m.get("id") != Some(&json!(0))),
            "{before:?}"
        );

        let inits: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.json()["method"] == "initialize")
            .collect();
        assert_eq!(inits.len(), 2, "{lost_status}");
        assert_eq!(
            inits[0].body, inits[1].body,
            "the replay must be the client's initialize"
        );
        let retried = fake
            .wait_for("the retried call", |r| {
                r.json()["id"] == 2 && r.header("mcp-session-id") == Some("s2")
            })
            .await;
        assert_eq!(retried.header("mcp-protocol-version"), Some("2025-11-25"));
        fake.wait_for("initialized on s2", |r| {
            r.json()["method"] == "notifications/initialized"
                && r.header("mcp-session-id") == Some("s2")
        })
        .await;
        fake.wait_for("a GET on s2", |r| {
            r.method == http::Method::GET && r.header("mcp-session-id") == Some("s2")
        })
        .await;
        h.close().await.unwrap();
    }
}

#[tokio::test]
async fn dropped_answer_stream_resumes_with_last_event_id() {
    let (fake, url, _server) = Fake::start(true, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    h.handshake(json!({})).await;
    h.send(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"drop"}}))
        .await;
    let (answer, _) = h.answer_to(json!(3)).await;
    assert_eq!(answer["result"]["content"][0]["text"], "resumed");
    let resume = fake
        .wait_for("a resuming GET", |r| r.header("last-event-id").is_some())
        .await;
    assert_eq!(resume.header("last-event-id"), Some("d-1"));
    assert_eq!(resume.header("mcp-session-id"), Some("s1"));
    h.close().await.unwrap();
}

#[tokio::test]
async fn server_requests_reach_the_client_and_its_answers_go_back() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    h.handshake(json!({"sampling":{}})).await;
    h.send(json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"ask"}}))
        .await;
    let ask = h.recv().await;
    assert_eq!(ask["method"], "sampling/createMessage");
    assert_eq!(ask["id"], "srv-1");
    h.send(json!({"jsonrpc":"2.0","id":"srv-1","result":{"role":"assistant","content":{"type":"text","text":"pong"},"model":"m"}})).await;
    let (answer, _) = h.answer_to(json!(4)).await;
    assert_eq!(
        answer["result"]["content"][0]["text"],
        "client said \"pong\""
    );
    let posted = fake
        .wait_for("the client's answer", |r| r.json()["id"] == "srv-1")
        .await;
    assert_eq!(posted.header("mcp-session-id"), Some("s1"));
    h.close().await.unwrap();
}

#[tokio::test]
async fn blocked_call_is_answered_locally_with_the_callers_id() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let closed = GateState::Closed {
        pending: vec![gmail()],
    };
    let mut h = Harness::start(Some(target(&url)), closed, StdioConfig::default());
    h.handshake(json!({})).await;
    h.send(json!({"jsonrpc":"2.0","id":"call-9","method":"tools/call","params":{"name":"echo"}}))
        .await;
    let (answer, _) = h.answer_to(json!("call-9")).await;
    assert_eq!(answer["result"]["isError"], true);
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("https://connect.example/link/ln_1"), "{text}");
    // Listing still passes while the gate is closed.
    h.send(json!({"jsonrpc":"2.0","id":10,"method":"tools/list"}))
        .await;
    let (list, _) = h.answer_to(json!(10)).await;
    assert_eq!(list["result"]["method"], "tools/list");
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.json()["method"] != "tools/call")
    );
    h.close().await.unwrap();
}

#[tokio::test]
async fn url_elicitation_clients_get_error_32042() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let closed = GateState::Closed {
        pending: vec![gmail()],
    };
    let mut h = Harness::start(Some(target(&url)), closed, StdioConfig::default());
    h.handshake(json!({"elicitation":{"form":{},"url":{}}}))
        .await;
    h.send(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo"}}))
        .await;
    let (answer, _) = h.answer_to(json!(5)).await;
    assert_eq!(answer["error"]["code"], error::URL_ELICITATION_REQUIRED);
    assert_eq!(
        answer["error"]["data"]["elicitations"][0]["url"],
        "https://connect.example/link/ln_1"
    );
    h.close().await.unwrap();
}

#[tokio::test]
async fn wait_mode_holds_with_progress_then_forwards_when_the_gate_opens() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let closed = GateState::Closed {
        pending: vec![gmail()],
    };
    let config = StdioConfig {
        wait: WaitMode::Hold {
            timeout: Duration::from_secs(60),
            progress_interval: Duration::from_secs(30),
        },
        ..StdioConfig::default()
    };
    let mut h = Harness::start(Some(target(&url)), closed, config);
    h.handshake(json!({})).await;
    h.send(json!({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":"tok"}}})).await;
    let progress = h.recv().await;
    assert_eq!(progress["method"], "notifications/progress");
    assert_eq!(progress["params"]["progressToken"], "tok");
    assert!(
        progress["params"]["message"]
            .as_str()
            .unwrap()
            .contains("https://connect.example/link/ln_1")
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.json()["method"] != "tools/call")
    );
    h.gate_tx.send(GateState::Open).unwrap();
    let (answer, _) = h.answer_to(json!(6)).await;
    assert_eq!(answer["result"]["content"][0]["text"], "echoed");
    h.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn wait_mode_times_out_into_the_blocked_answer() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let closed = GateState::Closed {
        pending: vec![gmail()],
    };
    let config = StdioConfig {
        wait: WaitMode::Hold {
            // Below the harness's 10 s read bound, which the paused clock also advances.
            timeout: Duration::from_secs(5),
            progress_interval: Duration::from_secs(1),
        },
        ..StdioConfig::default()
    };
    let mut h = Harness::start(Some(target(&url)), closed, config);
    // Straight to a call: no handshake needed for a locally answered request.
    h.send(json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo"}}))
        .await;
    let (answer, before) = h.answer_to(json!(8)).await;
    assert!(before.is_empty(), "no progress without a token: {before:?}");
    assert_eq!(answer["result"]["isError"], true);
    assert!(fake.requests().is_empty());
    h.close().await.unwrap();
}

#[tokio::test]
async fn no_upstream_gives_errors_with_ids() {
    let config = StdioConfig {
        upstream_wait: Duration::from_millis(100),
        ..StdioConfig::default()
    };
    let mut h = Harness::start(None, GateState::Open, config.clone());
    h.send(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}))
        .await;
    let (answer, _) = h.answer_to(json!(1)).await;
    assert_eq!(answer["error"]["code"], error::UNAVAILABLE);
    h.close().await.unwrap();

    let starting = GateState::Starting {
        reason: "creating the Composio session".into(),
    };
    let mut h = Harness::start(None, starting, config.clone());
    h.send(json!({"jsonrpc":"2.0","id":"x","method":"tools/list"}))
        .await;
    let (answer, _) = h.answer_to(json!("x")).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("creating the Composio session")
    );
    h.close().await.unwrap();

    // Nothing listens on this port: connection refused.
    let closed_port = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/mcp", closed_port.local_addr().unwrap())).unwrap();
    drop(closed_port);
    let mut h = Harness::start(Some(target(&url)), GateState::Open, config);
    h.send(json!({"jsonrpc":"2.0","id":2,"method":"initialize","params":{}}))
        .await;
    let (answer, _) = h.answer_to(json!(2)).await;
    assert_eq!(answer["error"]["code"], error::UNAVAILABLE);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not connect")
    );
    assert!(!answer.to_string().contains("ak_test_secret"));
    h.close().await.unwrap();
}

#[tokio::test]
async fn upstream_arriving_late_is_waited_for() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(None, GateState::Open, StdioConfig::default());
    h.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}})).await;
    h.upstream_tx.send(Some(target(&url))).unwrap();
    let (answer, _) = h.answer_to(json!(0)).await;
    assert_eq!(answer["result"]["serverInfo"]["name"], "fake");
    h.close().await.unwrap();
}

#[tokio::test]
async fn stateless_2026_client_passes_with_standard_headers() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    let meta = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}});
    // server-everything answers the probe with a 400 whose id is null: the client gets it with
    // its own id so it can fall back.
    h.send(json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":meta}}))
        .await;
    let (probe, _) = h.answer_to(json!(1)).await;
    assert_eq!(probe["error"]["code"], -32000);
    assert!(
        probe["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not initialized")
    );
    h.send(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","_meta":meta}}),
    )
    .await;
    let (answer, _) = h.answer_to(json!(2)).await;
    assert_eq!(answer["result"]["content"][0]["text"], "echoed");
    let call = fake.wait_for("the call", |r| r.json()["id"] == 2).await;
    assert_eq!(call.header("mcp-protocol-version"), Some("2026-07-28"));
    assert_eq!(call.header("mcp-method"), Some("tools/call"));
    assert_eq!(call.header("mcp-name"), Some("echo"));
    assert_eq!(call.header("mcp-session-id"), None);
    h.close().await.unwrap();
}

#[tokio::test]
async fn bad_input_gets_json_rpc_errors_and_the_bridge_keeps_going() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let config = StdioConfig {
        max_message_bytes: 64,
        ..StdioConfig::default()
    };
    let mut h = Harness::start(Some(target(&url)), GateState::Open, config);
    h.send_raw("{not json").await;
    assert_eq!(h.recv().await["error"]["code"], error::PARSE_ERROR);
    h.send_raw(&format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{}\"}}",
        "x".repeat(100)
    ))
    .await;
    assert_eq!(h.recv().await["error"]["code"], error::INVALID_REQUEST);
    h.send_raw(r#"{"jsonrpc":"2.0","id":3}"#).await;
    let invalid = h.recv().await;
    assert_eq!(
        (invalid["id"].clone(), invalid["error"]["code"].clone()),
        (json!(3), json!(error::INVALID_REQUEST))
    );
    h.send_raw("").await;
    h.send_raw("[]").await;
    assert_eq!(h.recv().await["error"]["code"], error::INVALID_REQUEST);
    h.close().await.unwrap();
}

#[tokio::test]
async fn cancelled_request_is_forwarded_and_stopped() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    h.handshake(json!({})).await;
    h.send(json!({"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"slow"}}))
        .await;
    fake.wait_for("the slow call", |r| r.json()["id"] == 11)
        .await;
    h.send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":11}}))
        .await;
    fake.wait_for("the cancellation", |r| {
        r.json()["method"] == "notifications/cancelled"
    })
    .await;
    // Later traffic still flows, and the cancelled call never gets an answer.
    h.send(json!({"jsonrpc":"2.0","id":12,"method":"ping"}))
        .await;
    let (answer, before) = h.answer_to(json!(12)).await;
    assert_eq!(answer["result"]["method"], "ping");
    assert!(before.iter().all(|m| m.get("id") != Some(&json!(11))));
    h.close().await.unwrap();
}

#[tokio::test]
async fn shutdown_signal_stops_the_bridge() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    h.handshake(json!({})).await;
    h.shutdown_tx.take().unwrap().send(()).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), &mut h.task)
        .await
        .expect("bridge did not stop")
        .unwrap()
        .unwrap();
    assert_eq!(exit, StdioExit::Shutdown);
    fake.wait_for("DELETE", |r| r.method == http::Method::DELETE)
        .await;
}

#[tokio::test]
async fn a_new_upstream_target_gets_the_session_replayed() {
    let (first, first_url, _first_server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let (second, second_url, _second_server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(
        Some(target(&first_url)),
        GateState::Open,
        StdioConfig::default(),
    );
    h.handshake(json!({})).await;
    first
        .wait_for("initialized", |r| {
            r.json()["method"] == "notifications/initialized"
        })
        .await;
    // E.g. the Composio session was re-created: the bridge moves the client's session along.
    h.upstream_tx.send(Some(target(&second_url))).unwrap();
    h.send(json!({"jsonrpc":"2.0","id":"after-move","method":"tools/list"}))
        .await;
    let (answer, before) = h.answer_to(json!("after-move")).await;
    assert_eq!(answer["result"]["method"], "tools/list");
    assert!(
        before.is_empty(),
        "the replay leaked to the client: {before:?}"
    );
    let replayed = second
        .wait_for("initialize", |r| r.json()["method"] == "initialize")
        .await;
    assert_eq!(replayed.json()["params"]["clientInfo"]["name"], "t");
    second
        .wait_for("initialized", |r| {
            r.json()["method"] == "notifications/initialized"
        })
        .await;
    let list = second
        .wait_for("the call", |r| r.json()["id"] == "after-move")
        .await;
    assert_eq!(list.header("mcp-session-id"), Some("s1"));
    assert!(
        first
            .requests()
            .iter()
            .all(|r| r.json()["id"] != "after-move")
    );
    h.close().await.unwrap();
}

#[tokio::test]
async fn an_answer_over_the_size_limit_becomes_an_error_for_its_caller() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let config = StdioConfig {
        max_message_bytes: 4096,
        ..StdioConfig::default()
    };
    let mut h = Harness::start(Some(target(&url)), GateState::Open, config);
    h.handshake(json!({})).await;
    h.send(json!({"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"huge"}}))
        .await;
    let (answer, _) = h.answer_to(json!(13)).await;
    assert_eq!(answer["error"]["code"], error::INTERNAL_ERROR);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4096"),
        "{answer}"
    );
    // The bridge is still healthy.
    h.send(json!({"jsonrpc":"2.0","id":14,"method":"tools/list"}))
        .await;
    let (list, _) = h.answer_to(json!(14)).await;
    assert_eq!(list["result"]["method"], "tools/list");
    h.close().await.unwrap();
}

#[tokio::test]
async fn requests_piped_just_before_eof_are_still_answered() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let mut h = Harness::start(Some(target(&url)), GateState::Open, StdioConfig::default());
    // Written all at once, as `printf ... | toolgate stdio` does: the later messages must wait
    // for the handshake (they need its session), and EOF must not cut them off.
    let lines = [
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    ];
    let batch: String = lines.iter().map(|l| format!("{l}\n")).collect();
    h.send_raw(batch.trim_end()).await;
    drop(h.stdin.take());
    let (init, _) = h.answer_to(json!(0)).await;
    assert_eq!(init["result"]["serverInfo"]["name"], "fake");
    let (list, _) = h.answer_to(json!(1)).await;
    assert_eq!(list["result"]["method"], "tools/list", "{list}");
    let initialized = fake
        .wait_for("initialized", |r| {
            r.json()["method"] == "notifications/initialized"
        })
        .await;
    assert_eq!(initialized.header("mcp-session-id"), Some("s1"));
    let exit = tokio::time::timeout(Duration::from_secs(10), &mut h.task)
        .await
        .expect("bridge did not stop")
        .unwrap()
        .unwrap();
    assert_eq!(exit, StdioExit::InputClosed);
}

#[tokio::test(start_paused = true)]
async fn eof_grace_is_bounded_for_requests_that_never_finish() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let config = StdioConfig {
        wait: WaitMode::Hold {
            timeout: Duration::from_secs(3600),
            progress_interval: Duration::from_secs(60),
        },
        ..StdioConfig::default()
    };
    let closed = GateState::Closed {
        pending: vec![gmail()],
    };
    let mut h = Harness::start(Some(target(&url)), closed, config);
    h.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}))
        .await;
    drop(h.stdin.take());
    // Held for an hour by wait mode, but the bridge stops after its EOF grace.
    let exit = tokio::time::timeout(Duration::from_secs(60), &mut h.task)
        .await
        .expect("bridge did not stop within its grace")
        .unwrap()
        .unwrap();
    assert_eq!(exit, StdioExit::InputClosed);
}

/// Records what the bridge reports through [`ProxyEvents`].
#[derive(Default)]
struct RecordedEvents(Mutex<Vec<String>>);

impl ProxyEvents for RecordedEvents {
    fn request_finished(&self, record: &RequestRecord<'_>) {
        let method = record.rpc_method.unwrap_or("-");
        self.0
            .lock()
            .unwrap()
            .push(format!("{method} {}", record.status.as_u16()));
    }
    fn call_blocked(&self, tool: Option<&str>, _waited: Duration) {
        self.0
            .lock()
            .unwrap()
            .push(format!("blocked {}", tool.unwrap_or("-")));
    }
    fn upstream_credentials_refused(&self, status: StatusCode) {
        self.0
            .lock()
            .unwrap()
            .push(format!("refused {}", status.as_u16()));
    }
}

#[tokio::test]
async fn events_report_requests_blocks_and_refused_credentials() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let events = Arc::new(RecordedEvents::default());
    let mut h = Harness::start_with_events(
        Some(target(&url)),
        GateState::Open,
        StdioConfig::default(),
        events.clone(),
    );
    h.handshake(json!({})).await;
    h.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deny"}}))
        .await;
    let (refused, _) = h.answer_to(json!(1)).await;
    assert_eq!(refused["error"]["code"], error::UNAVAILABLE);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{refused}"
    );
    h.gate_tx
        .send(GateState::Closed {
            pending: vec![gmail()],
        })
        .unwrap();
    h.send(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}))
        .await;
    h.answer_to(json!(2)).await;
    h.close().await.unwrap();
    let seen = events.0.lock().unwrap().clone();
    for expected in [
        "initialize 200",
        "refused 401",
        "tools/call 502",
        "blocked echo",
        "tools/call 200",
        "notifications/initialized 202",
    ] {
        assert!(
            seen.iter().any(|e| e == expected),
            "{expected} missing from {seen:?}"
        );
    }
}

#[tokio::test]
async fn dropped_get_stream_resumes_with_last_event_id() {
    let (fake, url, _server) = Fake::start(true, StatusCode::NOT_FOUND).await;
    fake.get_drops
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Without the upstream's `retry: 10` the bridge would wait an hour before resuming.
    let config = StdioConfig {
        default_reconnect_delay: Duration::from_secs(3600),
        ..StdioConfig::default()
    };
    let mut h = Harness::start(Some(target(&url)), GateState::Open, config);
    h.handshake(json!({})).await;
    let first = h.recv().await;
    assert_eq!(first["params"]["data"], "hello from the GET stream");
    let resumed = h.recv().await;
    assert_eq!(resumed["params"]["data"], "resumed after g-1");
    let resume = fake
        .wait_for("a resuming GET", |r| {
            r.method == http::Method::GET && r.header("last-event-id").is_some()
        })
        .await;
    assert_eq!(resume.header("last-event-id"), Some("g-1"));
    assert_eq!(resume.header("mcp-session-id"), Some("s1"));
    h.close().await.unwrap();
}

#[tokio::test]
async fn a_listening_client_gets_its_session_restored_without_sending_anything() {
    let (fake, url, _server) = Fake::start(true, StatusCode::BAD_REQUEST).await;
    let config = StdioConfig {
        default_reconnect_delay: Duration::from_millis(10),
        ..StdioConfig::default()
    };
    let mut h = Harness::start(Some(target(&url)), GateState::Open, config);
    h.handshake(json!({})).await;
    assert_eq!(
        h.recv().await["params"]["data"],
        "hello from the GET stream"
    );
    fake.restart();
    // No request from the client: the dropped GET stream alone leads to a new session, and
    // the new session's stream delivers again.
    let again = h.recv().await;
    assert_eq!(
        again["params"]["data"], "hello from the GET stream",
        "{again}"
    );
    let get = fake
        .wait_for("a GET on s2", |r| {
            r.method == http::Method::GET && r.header("mcp-session-id") == Some("s2")
        })
        .await;
    assert_eq!(get.header("mcp-protocol-version"), Some("2025-11-25"));
    fake.wait_for("initialized on s2", |r| {
        r.json()["method"] == "notifications/initialized"
            && r.header("mcp-session-id") == Some("s2")
    })
    .await;
    h.close().await.unwrap();
}

#[tokio::test]
async fn the_tool_policy_decides_which_calls_block_and_reviews_results() {
    let (fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let closed = GateState::Closed {
        pending: vec![gmail()],
    };
    let mut h = Harness::start_with_policy(
        Some(target(&url)),
        closed,
        StdioConfig::default(),
        Arc::new(NoEvents),
        Arc::new(MailOnly {
            // Every answer to `missing` becomes a blocked one naming gmail.
            reviewed: "missing",
            review: |_| Some(vec![gmail()]),
        }),
    );
    h.handshake(json!({})).await;
    h.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_mail"}}))
        .await;
    let (blocked, _) = h.answer_to(json!(1)).await;
    assert_eq!(blocked["result"]["isError"], true, "{blocked}");
    h.send(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}))
        .await;
    let (passed, _) = h.answer_to(json!(2)).await;
    assert_eq!(passed["result"]["content"][0]["text"], "echoed", "{passed}");
    h.send(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"missing"}}))
        .await;
    let (replaced, _) = h.answer_to(json!(3)).await;
    let text = replaced["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("https://connect.example/link/ln_1"),
        "{replaced}"
    );
    let called: Vec<Value> = fake
        .requests()
        .iter()
        .map(Logged::json)
        .filter(|body| body["method"] == "tools/call")
        .collect();
    assert_eq!(called.len(), 2, "send_mail never went upstream: {called:?}");
    h.close().await.unwrap();
}

#[tokio::test]
async fn elicitation_completes_on_stdout_when_the_toolkit_connects() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let closed = GateState::Closed {
        pending: vec![gmail()],
    };
    let mut h = Harness::start(Some(target(&url)), closed, StdioConfig::default());
    h.handshake(json!({"elicitation":{"url":{}}})).await;
    let mut ids = Vec::new();
    for id in [5, 6] {
        h.send(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo"}}))
            .await;
        let (answer, _) = h.answer_to(json!(id)).await;
        assert_eq!(answer["error"]["code"], error::URL_ELICITATION_REQUIRED);
        ids.push(answer["error"]["data"]["elicitations"][0]["elicitationId"].clone());
    }
    assert_ne!(ids[0], ids[1], "one id per blocked call");
    h.gate_tx.send(GateState::Open).unwrap();
    let mut completed = Vec::new();
    for _ in 0..2 {
        let note = h.recv().await;
        assert_eq!(
            note["method"], "notifications/elicitation/complete",
            "{note}"
        );
        completed.push(note["params"]["elicitationId"].clone());
    }
    completed.sort_by_key(Value::to_string);
    ids.sort_by_key(Value::to_string);
    assert_eq!(completed, ids);
    h.close().await.unwrap();
}

#[tokio::test]
async fn local_answers_echo_ids_byte_for_byte() {
    let (_fake, url, _server) = Fake::start(false, StatusCode::NOT_FOUND).await;
    let closed = GateState::Closed {
        pending: vec![gmail()],
    };
    let mut h = Harness::start(Some(target(&url)), closed, StdioConfig::default());
    for id in [
        r#""a\u0031""#,
        "12345678901234567890123",
        "1E2",
        "-0",
        "2.50",
    ] {
        h.send_raw(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"x"}}}}"#
        ))
        .await;
        let line = tokio::time::timeout(Duration::from_secs(10), h.stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            line.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"#)),
            "{line}"
        );
    }
    h.close().await.unwrap();
}

mod abuse;
