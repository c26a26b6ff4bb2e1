//! The pooled HTTP client both faces send MCP traffic through: hyper-util's connection pool
//! over plain TCP or rustls, with nothing between the request and the pool.
//!
//! reqwest (which runs on the same pool) stays for Composio's REST API and JWKS fetches; on the
//! MCP path it cost about a fifth of toolgate's instructions per forwarded request, mostly
//! re-parsing the request's URL twice for its redirect layer and its response type (callgrind:
//! 28 k of 146 k instructions per request against the sandbox). Here the target's URI is
//! parsed once, when the target is set ([`UpstreamTarget::new`]), and a request goes straight
//! to the pool.
//!
//! TLS is set up on the first `https` connection, not at start: loading the system's trust
//! store costs about 19 M instructions (most of a one-shot stdio run) and a plain-http
//! upstream never needs it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue, IntoHeaderName};
use http::uri::Scheme;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::UpstreamTarget;
use crate::socket::Socket;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Stream = MaybeHttpsStream<TokioIo<Socket>>;

/// How long an unused pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The one pooled client a gateway (or every gateway of a multi-user front, or the stdio
/// bridge) shares. Cheap to clone: clones share the pool.
///
/// Keep-alive connections, HTTP/2 where an `https` server offers it (ALPN), TCP_NODELAY, a
/// connect timeout covering TCP and TLS, no total timeout (SSE answers live as long as the
/// session: each face bounds the wait for the head itself). Redirects are never followed (a
/// 3xx goes back to the client like any other status: following one could carry the injected
/// credentials to another origin), no proxy is consulted (a loopback upstream never goes
/// through an `HTTP_PROXY` by accident), and bodies are not decoded.
#[derive(Clone)]
pub struct UpstreamClient {
    /// Behind an `Arc`: hyper-util's client is a large struct (its builders and connector are
    /// held by value), and every request clones the client into its future.
    pool: Arc<Client<Connector, Full<Bytes>>>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// A client whose connections must be made (TCP and, for `https`, TLS) within
    /// `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // `https` URIs reach it through the TLS connector, which checks the scheme itself.
        http.enforce_http(false);
        let connector = Connector {
            http: Tcp(http),
            tls: Arc::new(OnceLock::new()),
            timeout: connect_timeout,
        };
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self {
            pool: Arc::new(pool),
        }
    }

    /// Sends `request` (its URI absolute, its headers final) and returns the response head;
    /// the body streams as it arrives.
    pub async fn send(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Incoming>, TransportError> {
        self.pool
            .request(request.map(Full::new))
            .await
            .map_err(TransportError::from_client)
    }

    /// A request to `target` with `method`, carrying the target's own headers.
    pub fn request(&self, method: Method, target: &UpstreamTarget) -> UpstreamRequest {
        self.request_with(method, target, target.headers.clone())
    }

    /// A request to `target` with `method` and exactly `headers` (which should include the
    /// target's own: see [`super::forward_request_headers`]), plus the target's `Host` when it
    /// has one and `headers` do not.
    pub fn request_with(
        &self,
        method: Method,
        target: &UpstreamTarget,
        mut headers: HeaderMap,
    ) -> UpstreamRequest {
        if let Some(host) = target.host() {
            headers.entry(header::HOST).or_insert_with(|| host.clone());
        }
        UpstreamRequest {
            client: self.clone(),
            uri: target.uri().cloned(),
            method,
            headers,
            body: Bytes::new(),
            invalid: None,
        }
    }
}

/// A request being put together for [`UpstreamClient::send`]: headers are added one by one,
/// and a value that is not a valid header makes [`UpstreamRequest::send`] fail instead.
///
/// `Debug` shows the method and the header names only: the URI's query and the target's
/// header values may be credentials.
pub struct UpstreamRequest {
    client: UpstreamClient,
    uri: Option<Uri>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    invalid: Option<http::Error>,
}

impl std::fmt::Debug for UpstreamRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamRequest")
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl UpstreamRequest {
    /// Adds a header (after the target's; a same-named one is appended, like any header).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: IntoHeaderName,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        match HeaderValue::try_from(value) {
            Ok(value) => {
                self.headers.append(name, value);
            }
            Err(error) => self.invalid = Some(error.into()),
        }
        self
    }

    /// The body to send.
    pub fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    /// Sends it (see [`UpstreamClient::send`]).
    pub async fn send(self) -> Result<Response<Incoming>, TransportError> {
        if let Some(error) = self.invalid {
            return Err(TransportError::request(error));
        }
        let Some(uri) = self.uri else {
            return Err(TransportError::request(
                "the upstream URL is not a valid HTTP URI",
            ));
        };
        let mut request = Request::new(self.body);
        *request.method_mut() = self.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = self.headers;
        self.client.send(request).await
    }
}

/// Why a request to the upstream got no response head.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct TransportError {
    failure: Failure,
    #[source]
    source: BoxError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// No connection could be made.
    Connect,
    /// Making the connection took longer than the connect timeout.
    ConnectTimeout,
    /// The request could not be built or the connection broke while sending or waiting.
    Other,
}

impl TransportError {
    fn from_client(error: hyper_util::client::legacy::Error) -> Self {
        let failure = if !error.is_connect() {
            Failure::Other
        } else if caused_by::<ConnectTimedOut>(&error) {
            Failure::ConnectTimeout
        } else {
            Failure::Connect
        };
        Self {
            failure,
            source: Box::new(error),
        }
    }

    fn request(error: impl Into<BoxError>) -> Self {
        Self {
            failure: Failure::Other,
            source: error.into(),
        }
    }

    /// A failure of the answer's body after its head arrived (the connection broke).
    pub fn body(error: hyper::Error) -> Self {
        Self::request(error)
    }

    /// No connection to the upstream could be made.
    pub fn is_connect(&self) -> bool {
        self.failure != Failure::Other
    }

    /// Making the connection took longer than the connect timeout.
    pub fn is_timeout(&self) -> bool {
        self.failure == Failure::ConnectTimeout
    }
}

/// Whether `E` is somewhere in `error`'s chain of sources.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if current.is::<E>() {
            return true;
        }
        cause = current.source();
    }
    false
}

/// The connect timeout passed.
#[derive(Debug, thiserror::Error)]
#[error("connecting took longer than {0:?}")]
struct ConnectTimedOut(Duration);

/// Plain TCP for `http`, rustls (set up on first use) for `https`, both within one deadline.
#[derive(Clone)]
struct Connector {
    http: Tcp,
    tls: Arc<OnceLock<Result<HttpsConnector<Tcp>, Arc<rustls::Error>>>>,
    timeout: Duration,
}

impl Connector {
    /// The TLS connector: the platform's trust store (as reqwest's default), HTTP/2 or 1.1 by
    /// ALPN, on the same TCP connector.
    fn tls(&self) -> &Result<HttpsConnector<Tcp>, Arc<rustls::Error>> {
        self.tls.get_or_init(|| {
            use rustls_platform_verifier::BuilderVerifierExt;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .and_then(|builder| builder.with_platform_verifier())
                .map_err(Arc::new)?
                .with_no_client_auth();
            Ok(hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_only()
                .enable_http1()
                .enable_http2()
                .wrap_connector(self.http.clone()))
        })
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Both connectors are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting: Self::Future = if uri.scheme() == Some(&Scheme::HTTP) {
            let tcp = self.http.call(uri);
            Box::pin(async move { Ok(MaybeHttpsStream::Http(tcp.await?)) })
        } else {
            match self.tls() {
                Ok(https) => https.clone().call(uri),
                Err(error) => {
                    let error = Arc::clone(error);
                    Box::pin(async move { Err(format!("cannot set up TLS: {error}").into()) })
                }
            }
        };
        let limit = self.timeout;
        Box::pin(async move {
            tokio::time::timeout(limit, connecting)
                .await
                .map_err(|_| Box::new(ConnectTimedOut(limit)) as BoxError)?
        })
    }
}

/// hyper-util's TCP connector (name resolution, `TCP_NODELAY`), its sockets registered for
/// reading only ([`Socket`]).
#[derive(Clone)]
struct Tcp(HttpConnector);

impl tower::Service<Uri> for Tcp {
    type Response = TokioIo<Socket>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<Socket>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let stream = connecting.await?.into_inner();
            Ok(TokioIo::new(Socket::new(stream)?))
        })
    }
}

impl Connection for Socket {
    fn connected(&self) -> Connected {
        // Nothing reads the addresses hyper-util's own TCP streams report (`HttpInfo`).
        Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn target(url: &str) -> UpstreamTarget {
        UpstreamTarget::new(url::Url::parse(url).expect("a URL"), HeaderMap::new())
    }

    /// What the client's connection to `scheme://127.0.0.1:port` starts with.
    async fn first_bytes(scheme: &str) -> (Vec<u8>, TransportError) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = UpstreamClient::new(Duration::from_secs(5));
        let target = target(&format!("{scheme}://127.0.0.1:{port}/mcp"));
        let sent = tokio::spawn(async move { client.request(Method::POST, &target).send().await });
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut first = vec![0; 2048];
        let read = socket.read(&mut first).await.expect("read");
        first.truncate(read);
        drop(socket);
        let error = sent.await.expect("joined").expect_err("no answer");
        (first, error)
    }

    #[tokio::test]
    async fn https_opens_with_a_tls_hello_offering_h2_and_http_does_not() {
        let (hello, error) = first_bytes("https").await;
        // A TLS handshake record, offering both protocols by ALPN.
        assert_eq!(hello[0], 0x16, "{hello:?}");
        assert!(hello.windows(2).any(|w| w == b"h2"), "no h2 in the hello");
        assert!(hello.windows(8).any(|w| w == b"http/1.1"), "no http/1.1");
        assert!(error.is_connect() && !error.is_timeout(), "{error:?}");
        let (request, _) = first_bytes("http").await;
        assert!(
            request.starts_with(b"POST /mcp HTTP/1.1\r\n"),
            "{request:?}"
        );
        // The target's own Host, once: the one built with the target, not a second from hyper.
        let text = String::from_utf8_lossy(&request).to_lowercase();
        assert_eq!(text.matches("\r\nhost: 127.0.0.1:").count(), 1, "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_finishes_the_handshake_is_a_connect_timeout() {
        // Never accepted: the kernel completes the TCP handshake, nobody answers the TLS hello.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let client = UpstreamClient::new(Duration::from_secs(3));
        let target = target(&format!("https://127.0.0.1:{port}/mcp"));
        let sent = client.request(Method::GET, &target).send();
        // The bound only turns a missing timeout into a failure instead of a hung test.
        let sent = tokio::time::timeout(Duration::from_secs(60), sent).await;
        let error = sent.expect("the connect timeout fires first").err();
        let error = error.expect("timed out");
        assert!(error.is_timeout() && error.is_connect(), "{error:?}");
    }

    #[test]
    fn debug_shows_no_credentials() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("ak_secret"));
        let target = UpstreamTarget::new(
            url::Url::parse("https://up.example/mcp?key=k").expect("a URL"),
            headers,
        );
        let client = UpstreamClient::new(Duration::from_secs(1));
        let shown = format!("{:?}", client.request(Method::POST, &target));
        assert!(
            shown.contains("x-api-key") && shown.contains("POST"),
            "{shown}"
        );
        assert!(
            !shown.contains("ak_secret") && !shown.contains("key=k"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn refused_and_malformed_requests_fail_with_their_kind() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = free.local_addr().expect("addr").port();
        drop(free);
        let client = UpstreamClient::new(Duration::from_secs(5));
        let target = target(&format!("http://127.0.0.1:{port}/mcp"));
        let refused = client.request(Method::GET, &target).send().await.err();
        let refused = refused.expect("refused");
        assert!(refused.is_connect() && !refused.is_timeout(), "{refused:?}");
        let malformed = client
            .request(Method::GET, &target)
            .header("mcp-session-id", "two\nlines")
            .send()
            .await
            .expect_err("rejected before sending");
        assert!(!malformed.is_connect(), "{malformed:?}");
    }
}
