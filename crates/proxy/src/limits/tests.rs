//! The listener's limits over real sockets on 127.0.0.1, on tokio's paused clock: every
//! deadline is checked in virtual time (instant and exact), never against the wall clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::*;
use crate::gateway::ProxyBody;

const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
const BODY_IDLE: Duration = Duration::from_secs(5);
const BODY_TOTAL: Duration = Duration::from_secs(30);

fn limits() -> ServerLimits {
    ServerLimits {
        header_timeout: HEAD_TIMEOUT,
        idle_timeout: IDLE_TIMEOUT,
        body_idle_timeout: BODY_IDLE,
        body_timeout: BODY_TOTAL,
        ..ServerLimits::default()
    }
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

/// Signals `dropped` when the never-ending `/stream` body is dropped.
struct DropSignal(Arc<Notify>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// An SSE answer that never ends; `dropped` is notified when the server lets it go.
fn endless_stream(dropped: Arc<Notify>) -> Response<ProxyBody> {
    let signal = DropSignal(dropped);
    let frames = futures_util::stream::unfold(signal, |signal| async move {
        std::future::pending::<()>().await;
        Some((
            Ok::<_, crate::gateway::BoxError>(Frame::data(Bytes::new())),
            signal,
        ))
    });
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// A server with four routes: `/echo` reads the body and answers its length (400 when the
/// read fails, as the gateway does); `/hold` waits for a permit of `release`; `/slow` answers
/// after a minute; `/stream` is an endless event stream that notifies `dropped` when let go.
async fn start(limits: ServerLimits) -> (SocketAddr, Arc<Semaphore>) {
    let (addr, release, _) = start_with_streams(limits).await;
    (addr, release)
}

async fn start_with_streams(limits: ServerLimits) -> (SocketAddr, Arc<Semaphore>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = Arc::new(Semaphore::new(0));
    let dropped = Arc::new(Notify::new());
    let held = Arc::clone(&release);
    let streams = Arc::clone(&dropped);
    let handler = move |request: Request<RequestBody>| {
        let held = Arc::clone(&held);
        let streams = Arc::clone(&streams);
        async move {
            match request.uri().path() {
                "/stream" => endless_stream(streams),
                "/discard" => {
                    let mut body = std::pin::pin!(request.into_body());
                    let mut seen = 0;
                    while let Some(frame) = body.frame().await {
                        match frame {
                            Ok(frame) => seen += frame.data_ref().map_or(0, Bytes::len),
                            Err(error) => return text(StatusCode::BAD_REQUEST, error.to_string()),
                        }
                    }
                    text(StatusCode::OK, format!("seen={seen}"))
                }
                "/hold" => {
                    held.acquire().await.unwrap().forget();
                    text(StatusCode::OK, "released".into())
                }
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    text(StatusCode::OK, "slow".into())
                }
                _ => match request.into_body().collect().await {
                    Ok(body) => text(StatusCode::OK, format!("len={}", body.to_bytes().len())),
                    Err(error) => text(StatusCode::BAD_REQUEST, error.to_string()),
                },
            }
        }
    };
    tokio::spawn(crate::server::serve_with(
        listener,
        handler,
        limits,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    (addr, release, dropped)
}

/// One HTTP/1.1 answer read from `stream`: status, head, body (by `Content-Length`).
async fn read_answer(stream: &mut TcpStream) -> Option<(u16, String, String)> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
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
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
            return Some((status, head, body));
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Waits until the server closes `stream` (EOF or reset), discarding anything it sends;
/// fails the test if that takes an hour of virtual time.
async fn closed(stream: &mut TcpStream) {
    let mut chunk = [0_u8; 1024];
    let drained = async { while matches!(stream.read(&mut chunk).await, Ok(read) if read > 0) {} };
    tokio::time::timeout(Duration::from_secs(3600), drained)
        .await
        .expect("the server never closed the connection");
}

/// Waits until the server closes `stream` and checks that came `deadline` after `since`,
/// within the second the virtual clock allows.
async fn closed_at(stream: &mut TcpStream, since: Instant, deadline: Duration, what: &str) {
    closed(stream).await;
    let waited = since.elapsed();
    assert!(
        waited >= deadline && waited < deadline + Duration::from_secs(1),
        "{what}: closed after {waited:?}, not {deadline:?}"
    );
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(start_paused = true)]
async fn silent_and_partial_sockets_are_closed_at_the_head_deadline() {
    let (addr, _) = start(limits()).await;
    for sent in [
        &b""[..],
        b"P",
        b"PRI * HTTP/2.0\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x",
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let opened = Instant::now();
        stream.write_all(sent).await.unwrap();
        closed_at(&mut stream, opened, HEAD_TIMEOUT, &format!("{sent:?}")).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_trickled_head_is_cut_at_the_head_deadline() {
    let (addr, _) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // One header byte a second: each write would reset a per-read timeout, never this one.
    let mut written = 0;
    while stream.write_all(b"X").await.is_ok() && written < 60 {
        written += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut probe = [0_u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::ZERO, stream.read(&mut probe)).await {
            break;
        }
    }
    let waited = opened.elapsed();
    assert!(
        waited >= HEAD_TIMEOUT && waited <= HEAD_TIMEOUT + Duration::from_secs(1),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn keep_alive_connections_close_after_the_idle_timeout_not_during_a_request() {
    let (addr, _) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A request that takes six head timeouts is not cut: the deadline runs only while idle.
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut stream).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "slow"));
    let answered = Instant::now();
    stream
        .write_all(post("/echo", "abc").as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut stream).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "len=3"));
    closed_at(&mut stream, answered, IDLE_TIMEOUT, "after the last answer").await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_timeout_shorter_than_the_head_timeout_holds_after_the_first_answer() {
    // The deadline comes closer when the first answer switches it from the head timeout to
    // the idle timeout: the watchdog, which never hears of requests, must not close late.
    let short = Duration::from_secs(3);
    let (addr, _) = start(ServerLimits {
        header_timeout: IDLE_TIMEOUT,
        idle_timeout: short,
        ..limits()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(post("/echo", "abc").as_bytes())
        .await
        .unwrap();
    let (status, _, _) = read_answer(&mut stream).await.unwrap();
    assert_eq!(status, 200);
    let answered = Instant::now();
    closed_at(&mut stream, answered, short, "after the first answer").await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_gets_408_after_the_pause_bound() {
    let (addr, _) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let sent = Instant::now();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut stream).await.unwrap();
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("Request Timeout"), "{body}");
    let waited = sent.elapsed();
    assert!(waited >= BODY_IDLE && waited < BODY_IDLE + Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_trickled_body_gets_408_at_the_body_deadline() {
    let (addr, _) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let sent = Instant::now();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // A byte every half pause bound: never stalled, always too slow.
    let trickle = tokio::spawn(async move {
        while writer.write_all(b"x").await.is_ok() {
            tokio::time::sleep(BODY_IDLE / 2).await;
        }
    });
    let mut answer = String::new();
    let _ = reader.read_to_string(&mut answer).await;
    trickle.abort();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let waited = sent.elapsed();
    assert!(
        waited >= BODY_TOTAL && waited < BODY_TOTAL + BODY_IDLE,
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn requests_beyond_the_concurrency_limit_get_503_with_retry_after() {
    let (addr, release) = start(ServerLimits {
        max_concurrent_requests: 2,
        ..limits()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(post("/hold", "").as_bytes())
            .await
            .unwrap();
        held.push(stream);
    }
    // Let both reach the handler.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(post("/echo", "x").as_bytes())
        .await
        .unwrap();
    let (status, head, body) = read_answer(&mut third).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    release.add_permits(2);
    for stream in &mut held {
        assert_eq!(read_answer(stream).await.unwrap().0, 200);
    }
    // The permits came back with the answers.
    third
        .write_all(post("/echo", "x").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_answer(&mut third).await.unwrap().0, 200);
}

#[tokio::test(start_paused = true)]
async fn buffered_bodies_are_bounded_across_connections() {
    let (addr, _) = start(ServerLimits {
        max_buffered_body_bytes: 1000,
        kept_body_bytes: 1000,
        ..limits()
    })
    .await;
    // A parks an unfinished body that declared 800 bytes: they are reserved.
    let mut parked = TcpStream::connect(addr).await.unwrap();
    parked
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 800\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // B declares more than is left: shed before reading.
    let mut declared = TcpStream::connect(addr).await.unwrap();
    declared
        .write_all(post("/echo", &"y".repeat(300)).as_bytes())
        .await
        .unwrap();
    let (status, head, _) = read_answer(&mut declared).await.unwrap();
    assert_eq!(status, 503);
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    // C declares nothing and goes past what is left while sending: 503 as well.
    let mut chunked = TcpStream::connect(addr).await.unwrap();
    let chunk = "z".repeat(400);
    chunked
        .write_all(
            format!(
                "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
                chunk.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(read_answer(&mut chunked).await.unwrap().0, 503);
    // A finishes; its bytes are returned and a 900-byte body fits again.
    parked.write_all(&[b'a'; 790]).await.unwrap();
    assert_eq!(read_answer(&mut parked).await.unwrap().2, "len=800");
    let mut later = TcpStream::connect(addr).await.unwrap();
    later
        .write_all(post("/echo", &"w".repeat(900)).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_answer(&mut later).await.unwrap().2, "len=900");
}

#[tokio::test(start_paused = true)]
async fn bytes_a_handler_discards_beyond_the_body_cap_are_not_charged() {
    let (addr, _) = start(ServerLimits {
        max_buffered_body_bytes: 1000,
        kept_body_bytes: 100,
        ..limits()
    })
    .await;
    // Declared and chunked: each charged 100 bytes at most, so 5,000 bytes pass a 1,000 budget.
    let mut declared = TcpStream::connect(addr).await.unwrap();
    declared
        .write_all(post("/discard", &"d".repeat(5000)).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_answer(&mut declared).await.unwrap().2, "seen=5000");
    let mut chunked = TcpStream::connect(addr).await.unwrap();
    let chunk = "c".repeat(2500);
    chunked
        .write_all(
            format!(
                "POST /discard HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
                len = chunk.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(read_answer(&mut chunked).await.unwrap().2, "seen=5000");
}

#[tokio::test(start_paused = true)]
async fn a_half_closed_client_gets_its_answer() {
    let (addr, _) = start(limits()).await;
    // The answer takes a while, so the server sees the EOF while the request is in flight.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(post("/slow", "hello").as_bytes())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let (status, _, body) = read_answer(&mut stream).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "slow"));
    // A GET waits for its answer the same way.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let (status, _, body) = read_answer(&mut stream).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "slow"));
}

#[tokio::test(start_paused = true)]
async fn a_client_gone_from_a_standing_get_stream_lets_it_go() {
    let (addr, _, dropped) = start_with_streams(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    drop(stream);
    // Nothing is ever written on the stream, so only the client's EOF can end it.
    tokio::time::timeout(Duration::from_secs(3600), dropped.notified())
        .await
        .expect("the stream of a client that went away was kept open");
}

#[tokio::test(start_paused = true)]
async fn at_the_connection_cap_the_longest_idle_connection_makes_room() {
    let (addr, release) = start(ServerLimits {
        max_connections: 3,
        ..limits()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(post("/echo", "ok").as_bytes())
        .await
        .unwrap();
    let (status, _, _) = read_answer(&mut client).await.unwrap();
    assert_eq!(status, 200);
    // The first idle socket was closed for it, long before any deadline.
    let before = Instant::now();
    closed(&mut idle[0]).await;
    assert!(before.elapsed() < HEAD_TIMEOUT);
    // With every admitted connection busy, a new one is closed without an answer.
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(post("/hold", "").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        busy.push(stream);
    }
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let _ = refused.write_all(post("/echo", "no").as_bytes()).await;
    assert!(read_answer(&mut refused).await.is_none());
    release.add_permits(3);
    for stream in &mut busy {
        assert_eq!(read_answer(stream).await.unwrap().0, 200);
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_h2c_connection_is_closed_after_the_idle_timeout() {
    let (addr, _) = start(limits()).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::post(format!("http://{addr}/echo"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let answer = sender.send_request(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    drop(answer.into_body().collect().await.unwrap());
    let answered = Instant::now();
    let _ = connection.await.unwrap();
    let waited = answered.elapsed();
    assert!(
        waited >= IDLE_TIMEOUT && waited < IDLE_TIMEOUT + Duration::from_secs(1),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn log_limiter_lets_one_line_through_per_period_and_counts_the_rest() {
    let mut limiter = LogLimiter::new(Duration::from_secs(10));
    assert_eq!(limiter.allow(), Some(0));
    assert_eq!(limiter.allow(), None);
    assert_eq!(limiter.allow(), None);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(limiter.allow(), Some(2));
    assert_eq!(limiter.allow(), None);
}

#[test]
fn zero_limits_are_rejected_and_the_fd_rule_leaves_headroom() {
    assert_eq!(ServerLimits::default().validate(), Ok(()));
    let zero = ServerLimits {
        body_timeout: Duration::ZERO,
        ..ServerLimits::default()
    };
    assert_eq!(
        zero.validate(),
        Err(LimitsError::ZeroTimeout("body_timeout"))
    );
    let zero = ServerLimits {
        max_connections: 0,
        ..ServerLimits::default()
    };
    assert_eq!(
        zero.validate(),
        Err(LimitsError::ZeroCount("max_connections"))
    );
    let small = ServerLimits {
        max_buffered_body_bytes: 1000,
        kept_body_bytes: 1001,
        ..ServerLimits::default()
    };
    assert!(matches!(
        small.validate(),
        Err(LimitsError::BudgetBelowBodyCap { .. })
    ));
    assert_eq!(ServerLimits::connections_for_fd_limit(1024), 320);
    assert_eq!(ServerLimits::connections_for_fd_limit(10), 16);
}

#[tokio::test(start_paused = true)]
async fn eviction_picks_the_longest_idle_connection() {
    {
        let connections = Arc::new(Connections::new(2, HEAD_TIMEOUT, IDLE_TIMEOUT));
        let first = connections.admit().unwrap().slot;
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = connections.admit().unwrap().slot;
        // The first is busy: the second, though younger, is the only idle one.
        let busy = first.handle().busy();
        let third = connections.admit().unwrap().slot;
        assert_eq!(connections.len(), 2);
        assert!(second.is_evicted());
        // The first is busy and the third idle: the third goes.
        assert!(connections.evict_one());
        assert!(third.is_evicted());
        assert!(
            !connections.evict_one(),
            "a busy connection is never evicted"
        );
        drop(busy);
        assert!(connections.evict_one());
        drop(first);
        assert_eq!(connections.len(), 0);
    }
}
