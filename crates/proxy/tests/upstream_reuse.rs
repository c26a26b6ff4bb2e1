//! Upstream connection reuse over real sockets: an SSE upstream on 127.0.0.1:0 that counts the
//! TCP connections it accepts and writes its answers the way rmcp does (the head with the
//! priming event, then the answer event and the chunked end in one write, or all of it in
//! one write), the gateway's server in front of it, and one client connection sending tool
//! calls one after another, the next one already waiting when an answer leaves.
//!
//! The client's stream ends with the answer, before the upstream's end has necessarily been
//! read; these tests hold the gateway to giving the upstream connection back to the pool in
//! time for the client's next request, and to never making the client wait for that end.

#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

/// Bound on any one step, so a stalled stream fails the test instead of hanging it.
const STALL: Duration = Duration::from_secs(10);

/// The SSE upstream. A call to the tool `apart` gets its answer only when the test lets it go
/// ([`SseUpstream::release_answer`]), so the answer is written apart from the priming event;
/// `late` gets its answer at once but the end of its stream only when the test lets it go
/// ([`SseUpstream::release_end`]); any other tool is answered at once.
struct SseUpstream {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
    ends: Arc<Semaphore>,
    answers: Arc<Semaphore>,
}

impl SseUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let ends = Arc::new(Semaphore::new(0));
        let answers = Arc::new(Semaphore::new(0));
        let (counted, released, answering) = (connections.clone(), ends.clone(), answers.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).unwrap();
                let (ends, answers) = (released.clone(), answering.clone());
                let service =
                    service_fn(move |request| answer(request, ends.clone(), answers.clone()));
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            address,
            connections,
            ends,
            answers,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Lets one held-back `apart` answer go.
    fn release_answer(&self) {
        self.answers.add_permits(1);
    }

    /// Lets one held-back `late` stream end.
    fn release_end(&self) {
        self.ends.add_permits(1);
    }
}

/// rmcp's shape: the priming event is there when the response starts; the answer comes from
/// another task, which then drops its sender so the stream ends right behind the answer.
async fn answer(
    request: Request<Incoming>,
    ends: Arc<Semaphore>,
    answers: Arc<Semaphore>,
) -> Result<Response<UnsyncBoxBody<Bytes, Infallible>>, Infallible> {
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let message: Value = serde_json::from_slice(&body).unwrap();
    let (id, tool) = (message["id"].clone(), message["params"]["name"].clone());
    if tool == "json" {
        let result =
            json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":tool}]}});
        let mut response = Response::new(Full::new(Bytes::from(result.to_string())).boxed_unsync());
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return Ok(response);
    }
    let (events, stream) = mpsc::unbounded_channel::<Bytes>();
    events
        .send(Bytes::from_static(b"data: \nid: 0/0\nretry: 3000\n\n"))
        .unwrap();
    tokio::spawn(async move {
        if tool == "apart" {
            answers.acquire().await.unwrap().forget();
        }
        let result =
            json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":tool}]}});
        let _ = events.send(Bytes::from(format!("data: {result}\nid: 0/1\n\n")));
        if tool == "late" {
            ends.acquire().await.unwrap().forget();
        }
    });
    let frames = tokio_stream::wrappers::UnboundedReceiverStream::new(stream)
        .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    Ok(response)
}

/// The gateway's server in front of `upstream`; returns its address.
async fn gateway(upstream: &SseUpstream) -> SocketAddr {
    let url = url::Url::parse(&format!("http://{}/mcp", upstream.address)).unwrap();
    let gateway = support::open_gateway(url);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(toolgate_proxy::server::serve(
        listener,
        gateway,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    address
}

/// One HTTP/1.1 client connection to the gateway that pipelines: every request of a batch
/// goes out in one write, so each next request is already waiting when the gateway finishes
/// an answer (what happens on a real machine whenever the client is quicker than the
/// gateway's next turn), and the gateway checks out an upstream connection at that moment.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (reader, writer) = stream.into_split();
        Self {
            reader: BufReader::new(reader),
            writer,
        }
    }

    /// Sends a tools/call of `tool` for each id, all in one write.
    async fn send(&mut self, calls: &[(u64, &str)]) {
        let mut batch = Vec::new();
        for (id, tool) in calls {
            let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
                .to_string();
            batch.extend_from_slice(
                format!(
                    "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                     accept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        self.writer.write_all(&batch).await.unwrap();
    }

    /// The next whole response: checks its status and returns its (chunked) body.
    async fn response(&mut self, first_chunk: &dyn Fn()) -> String {
        tokio::time::timeout(STALL, self.read_response(first_chunk))
            .await
            .expect("no whole response for 10 s: the gateway waits for something")
    }

    async fn read_response(&mut self, first_chunk: &dyn Fn()) -> String {
        let status = self.line().await;
        assert!(status.starts_with("HTTP/1.1 200 "), "{status:?}");
        let (mut chunked, mut length) = (false, None);
        loop {
            let header = self.line().await.to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            chunked |= header == "transfer-encoding: chunked";
            length = header
                .strip_prefix("content-length: ")
                .map(|value| value.parse::<usize>().unwrap())
                .or(length);
        }
        if let Some(length) = length {
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body).await.unwrap();
            return String::from_utf8(body).unwrap();
        }
        assert!(chunked, "a body without a length streams in chunks");
        let mut body = Vec::new();
        loop {
            let size = usize::from_str_radix(&self.line().await, 16).unwrap();
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await.unwrap();
            assert_eq!(&chunk[size..], b"\r\n");
            if size == 0 {
                return String::from_utf8(body).unwrap();
            }
            if body.is_empty() {
                first_chunk();
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    /// One line of the head or a chunk size, without its CRLF.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        assert!(line.ends_with("\r\n"), "the connection ended: {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    /// Sends `calls` and checks each one's answer.
    async fn call(&mut self, calls: &[(u64, &str)]) {
        self.call_with(calls, &|| {}).await;
    }

    /// Like [`Client::call`], running `first_chunk` when each answer's first chunk is in.
    async fn call_with(&mut self, calls: &[(u64, &str)], first_chunk: &dyn Fn()) {
        self.send(calls).await;
        for (id, tool) in calls {
            assert_answered(&self.response(first_chunk).await, *id, tool);
        }
    }
}

/// The body (a JSON answer or an SSE stream) holds the answer to `id`, the text naming `tool`.
fn assert_answered(body: &str, id: u64, tool: &str) {
    let json = serde_json::from_str::<Value>(body).ok();
    let answer = json
        .into_iter()
        .chain(
            body.split("\n\n")
                .filter_map(|event| event.lines().find_map(|line| line.strip_prefix("data: ")))
                .filter_map(|data| serde_json::from_str::<Value>(data).ok()),
        )
        .find(|message| message["id"] == id)
        .unwrap_or_else(|| panic!("no answer to {id} in {body:?}"));
    assert_eq!(answer["result"]["content"][0]["text"], tool, "{body:?}");
}

/// Runs `calls` (pipelined, see [`Client`]) on one client connection, then five more one at
/// a time, and returns how many upstream connections they used.
async fn upstream_connections_for(tool: &str) -> usize {
    let upstream = SseUpstream::start().await;
    let mut client = Client::connect(gateway(&upstream).await).await;
    let calls: Vec<(u64, &str)> = (1..=20).map(|id| (id, tool)).collect();
    client
        .call_with(&calls, &|| upstream.release_answer())
        .await;
    for id in 21..=25 {
        client
            .call_with(&[(id, tool)], &|| upstream.release_answer())
            .await;
    }
    upstream.connections()
}

#[tokio::test]
async fn answers_written_with_the_upstreams_end_reuse_one_upstream_connection() {
    assert_eq!(
        upstream_connections_for("echo").await,
        1,
        "each call's upstream connection should be back in the pool before the next call"
    );
}

#[tokio::test]
async fn answers_written_apart_from_the_priming_event_reuse_one_upstream_connection() {
    // As rmcp writes them when the tool takes a moment: the client has the head and the
    // priming event before the upstream writes the answer (and the end).
    assert_eq!(
        upstream_connections_for("apart").await,
        1,
        "each call's upstream connection should be back in the pool before the next call"
    );
}

#[tokio::test]
async fn json_answers_reuse_one_upstream_connection() {
    assert_eq!(upstream_connections_for("json").await, 1);
}

#[tokio::test]
async fn an_upstream_end_that_comes_late_delays_no_answer_and_costs_one_connection_at_most() {
    let upstream = SseUpstream::start().await;
    let mut client = Client::connect(gateway(&upstream).await).await;
    // The answer to 2 is complete while the upstream's stream stays open: the client gets it,
    // and the end of its own stream, without waiting for the upstream's end (which the
    // upstream sends only after all three answers were read). 3 finds the first upstream
    // connection still busy with that stream, so it may use a second one.
    client.call(&[(1, "echo"), (2, "late"), (3, "echo")]).await;
    upstream.release_end();
    let calls: Vec<(u64, &str)> = (4..=20).map(|id| (id, "echo")).collect();
    client.call(&calls).await;
    assert!(
        upstream.connections() <= 2,
        "{} upstream connections for one client connection",
        upstream.connections()
    );
}
