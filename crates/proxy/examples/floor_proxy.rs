//! The least an HTTP proxy on toolgate's stack can do, for `bench/peers.sh` to measure beside
//! toolgate and socat: hyper's HTTP/1 server in front, hyper-util's pooled client behind, one
//! thread, every request sent to one upstream URL with its body and headers as they came (only
//! `Host` is replaced) and the answer streamed back unread. No MCP, no header policy, no
//! limits: whatever toolgate adds on top of this is its own work; whatever this adds over
//! socat is the stack's.
//!
//! `cargo run --release -p toolgate-proxy --example floor_proxy -- LISTEN UPSTREAM_URL`, e.g.
//! `127.0.0.1:0 http://127.0.0.1:8080/mcp`; prints the bound address on its first line.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: floor_proxy LISTEN UPSTREAM_URL".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: Uri = upstream.parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, upstream))
}

async fn serve(listen: SocketAddr, upstream: Uri) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    // The bound address is the example's one output, so a caller that asked for port 0 can
    // find its port (bench/peers.sh picks a free port itself and ignores it).
    writeln!(std::io::stdout().lock(), "{}", listener.local_addr()?)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| forward(client.clone(), upstream.clone(), request));
            // A client that goes away mid-request ends only its own connection.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: Uri,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    *request.uri_mut() = upstream;
    // hyper-util's client writes the upstream's own Host when the request has none.
    request.headers_mut().remove(header::HOST);
    Ok(match client.request(request).await {
        Ok(response) => response.map(BodyExt::boxed_unsync),
        Err(_) => {
            let empty = Empty::new().map_err(|never| match never {}).boxed_unsync();
            let mut response = Response::new(empty);
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    })
}
