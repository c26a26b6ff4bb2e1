//! Test harness: a scripted upstream MCP server that records every request it receives, and
//! the gateway in front of it, both on 127.0.0.1 port 0.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use toolgate_proxy::config::ProxyConfig;
use toolgate_proxy::events::ProxyEvents;
use toolgate_proxy::gate::GateState;
use toolgate_proxy::gateway::Gateway;
use toolgate_proxy::mcp::error::ErrorKind;
use toolgate_proxy::mcp::gatekeeper::Gatekeeper;
use toolgate_proxy::mcp::policy::{AllPending, ToolPolicy};
use toolgate_proxy::upstream::UpstreamTarget;

type UpstreamBody = UnsyncBoxBody<Bytes, Infallible>;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers.get_all(name).iter().count()
    }
}

#[derive(Default)]
struct UpstreamState {
    seen: Mutex<Vec<Seen>>,
    release: Notify,
    get_closed: Notify,
}

/// The scripted upstream.
#[derive(Clone)]
pub struct Upstream {
    state: Arc<UpstreamState>,
    pub address: SocketAddr,
}

/// The body an upstream status reply carries, so tests can check it arrives unchanged.
pub fn status_body(status: u16) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32000,"message":"upstream status {status}"}}}}"#
    )
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState::default());
        let served = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(state, request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { state, address }
    }

    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/mcp", self.address)).unwrap()
    }

    pub async fn last(&self) -> Seen {
        self.state
            .seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub fn all(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub async fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// Lets the `stream` tool's held-back events go.
    pub fn release_stream(&self) {
        self.state.release.notify_one();
    }

    pub async fn wait_get_stream_closed(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.state.get_closed.notified())
            .await
            .expect("the upstream GET stream was not closed");
    }
}

fn full(body: impl Into<Bytes>) -> UpstreamBody {
    Full::new(body.into()).boxed_unsync()
}

fn json_response(status: StatusCode, body: Value) -> Response<UpstreamBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

fn sse_response(events: mpsc::Receiver<Bytes>) -> Response<UpstreamBody> {
    let stream = tokio_stream::wrappers::ReceiverStream::new(events)
        .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    response
}

async fn answer(state: Arc<UpstreamState>, request: Request<Incoming>) -> Response<UpstreamBody> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    state.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    match parts.method.as_str() {
        "GET" => {
            let (sender, receiver) = mpsc::channel(4);
            let resumed_after = parts
                .headers
                .get("last-event-id")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned();
            tokio::spawn(async move {
                let first =
                    format!("id: ev-42\ndata: {{\"resumedAfter\":\"{resumed_after}\"}}\n\n");
                let _ = sender.send(Bytes::from(first)).await;
                sender.closed().await;
                state.get_closed.notify_one();
            });
            sse_response(receiver)
        }
        "DELETE" => Response::new(full(Bytes::new())),
        _ => post(state, &body).await,
    }
}

async fn post(state: Arc<UpstreamState>, body: &[u8]) -> Response<UpstreamBody> {
    let message: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if message.is_array() {
        return json_response(
            StatusCode::OK,
            json!([{"jsonrpc":"2.0","id":1,"result":{}}]),
        );
    }
    let id = message.get("id").cloned();
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let Some(id) = id else {
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::ACCEPTED;
        return response;
    };
    if method == "initialize" {
        let mut response = json_response(
            StatusCode::OK,
            json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"scripted","version":"0"}}}),
        );
        response
            .headers_mut()
            .insert("mcp-session-id", "sess-1".parse().unwrap());
        return response;
    }
    if method != "tools/call" {
        return json_response(StatusCode::OK, json!({"jsonrpc":"2.0","id":id,"result":{}}));
    }
    let tool = message["params"]["name"].as_str().unwrap_or("");
    if let Some(status) = tool
        .strip_prefix("status")
        .and_then(|s| s.parse::<u16>().ok())
    {
        let mut response = Response::new(full(status_body(status)));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        if status == 401 {
            response.headers_mut().insert(
                "www-authenticate",
                "Bearer resource_metadata=\"x\"".parse().unwrap(),
            );
        }
        return response;
    }
    match tool {
        "hang" => std::future::pending().await,
        "stream" => {
            let (sender, receiver) = mpsc::channel(4);
            tokio::spawn(async move {
                let progress = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}});
                let result = json!({"jsonrpc":"2.0","id":id,"result":{"content":[]}});
                let _ = sender
                    .send(Bytes::from_static(b"id: ev-0\nretry: 500\ndata: \n\n"))
                    .await;
                let _ = sender
                    .send(Bytes::from(format!(
                        "event: message\nid: ev-1\ndata: {progress}\n\n"
                    )))
                    .await;
                state.release.notified().await;
                let _ = sender
                    .send(Bytes::from_static(b": keep-alive comment\n\n"))
                    .await;
                let _ = sender
                    .send(Bytes::from(format!(
                        "event: message\nid: ev-2\ndata: {result}\n\n"
                    )))
                    .await;
            });
            sse_response(receiver)
        }
        _ => {
            let mut response = json_response(
                StatusCode::OK,
                json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":tool}]}}),
            );
            response
                .headers_mut()
                .insert("mcp-session-id", "sess-1".parse().unwrap());
            response
        }
    }
}

/// A gateway with the default config forwarding to `url`, its gate open, no events hook. The
/// watch senders are dropped: a receiver keeps the last value, and nothing changes here.
pub fn open_gateway(url: url::Url) -> Gateway {
    let target = UpstreamTarget::new(url, HeaderMap::new());
    let (_, upstream_rx) = watch::channel(Some(target));
    let (_, gate_rx) = watch::channel(GateState::Open);
    Gateway::new(
        ProxyConfig::default(),
        upstream_rx,
        gate_rx,
        Arc::new(toolgate_proxy::events::NoEvents),
    )
    .unwrap()
}

/// What the events hook reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Request,
    Blocked,
    Held,
    Unreachable,
    Timeout,
    OtherError,
    CredentialsRefused,
}

pub struct RecordingEvents {
    seen: Mutex<Vec<Recorded>>,
    changes: watch::Sender<u64>,
}

impl RecordingEvents {
    fn record(&self, what: Recorded) {
        self.seen.lock().unwrap().push(what);
        self.changes.send_modify(|count| *count += 1);
    }

    pub fn count(&self, what: Recorded) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| **seen == what)
            .count()
    }

    pub async fn wait_for(&self, what: Recorded) {
        let mut changes = self.changes.subscribe();
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.count(what) == 0 {
                let _ = changes.changed().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what:?} event"));
    }
}

impl ProxyEvents for RecordingEvents {
    fn request_finished(&self, _record: &toolgate_proxy::events::RequestRecord<'_>) {
        self.record(Recorded::Request);
    }
    fn call_blocked(&self, _tool: Option<&str>, _waited: Duration) {
        self.record(Recorded::Blocked);
    }
    fn call_held(&self, _tool: Option<&str>) {
        self.record(Recorded::Held);
    }
    fn upstream_error(&self, kind: &ErrorKind) {
        self.record(match kind {
            ErrorKind::Unreachable { .. } => Recorded::Unreachable,
            ErrorKind::Timeout { .. } => Recorded::Timeout,
            _ => Recorded::OtherError,
        });
    }
    fn upstream_credentials_refused(&self, _status: StatusCode) {
        self.record(Recorded::CredentialsRefused);
    }
}

pub struct HarnessOptions {
    pub gate: GateState,
    pub config: ProxyConfig,
    /// Point the gateway at a port nothing listens on.
    pub dead_upstream: bool,
    /// The tool policy (the default one when `None`).
    pub policy: Option<Arc<dyn ToolPolicy>>,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        Self {
            gate: GateState::Open,
            config: ProxyConfig::default(),
            dead_upstream: false,
            policy: None,
        }
    }
}

pub struct Harness {
    pub upstream: Upstream,
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub gate: watch::Sender<GateState>,
    pub upstream_tx: watch::Sender<Option<UpstreamTarget>>,
    pub events: Arc<RecordingEvents>,
    pub shutdown: CancellationToken,
    stopped: Arc<Notify>,
}

impl Harness {
    pub async fn start(options: HarnessOptions) -> Self {
        let upstream = Upstream::start().await;
        let url = if options.dead_upstream {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = probe.local_addr().unwrap().port();
            drop(probe);
            url::Url::parse(&format!("http://127.0.0.1:{port}/mcp")).unwrap()
        } else {
            upstream.url()
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "injected-key".parse().unwrap());
        let (upstream_tx, upstream_rx) = watch::channel(Some(UpstreamTarget::new(url, headers)));
        let (gate, gate_rx) = watch::channel(options.gate);
        let (changes, _) = watch::channel(0);
        let events = Arc::new(RecordingEvents {
            seen: Mutex::new(Vec::new()),
            changes,
        });
        let policy = options.policy.unwrap_or_else(|| Arc::new(AllPending));
        let keeper = Gatekeeper::new(
            gate_rx,
            upstream_rx,
            options.config.wait,
            policy,
            events.clone(),
        );
        let gateway = Gateway::with_gatekeeper(options.config, keeper).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let stopped = Arc::new(Notify::new());
        let (token, done) = (shutdown.clone(), stopped.clone());
        tokio::spawn(async move {
            toolgate_proxy::server::serve(listener, gateway, Duration::from_secs(10), async move {
                token.cancelled().await;
            })
            .await;
            done.notify_one();
        });
        Self {
            upstream,
            address,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            gate,
            upstream_tx,
            events,
            shutdown,
            stopped,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }

    pub fn post(&self, body: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url())
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .body(body.to_owned())
    }

    pub fn post_raw(&self, body: &str) -> reqwest::RequestBuilder {
        self.post(body)
    }

    pub async fn wait_stopped(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.stopped.notified())
            .await
            .expect("the server did not stop");
    }
}
