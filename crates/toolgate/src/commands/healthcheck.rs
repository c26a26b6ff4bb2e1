//! `toolgate healthcheck`: probe a running gateway's `/healthz` (or `/readyz` with `--ready`)
//! and exit 0 when it answers 200, 1 otherwise.
//!
//! It exists for containers without a shell or curl (the distroless image in `deploy/`):
//! Docker's exec-form `HEALTHCHECK`, compose `healthcheck.test` and Kubernetes `exec` probes
//! run it inside the container. It reads the same configuration layers as the server (file,
//! `TOOLGATE_*` environment) but only the `listen` key, so it probes the address the server
//! was configured with and never fails on an unrelated key. A wildcard listen address
//! (`0.0.0.0`, `[::]`) is probed on the matching loopback address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use crate::config::{self, ConfigArgs};

/// Exit code for "unhealthy": Docker reserves 2, and 1 is what every orchestrator reads as a
/// failed probe, so every failure (including an unreadable configuration) maps to it.
const EXIT_UNHEALTHY: u8 = 1;

/// How much of a failing answer is echoed to stderr (the `/readyz` JSON says why).
const BODY_ECHO_LIMIT: usize = 2048;

/// Arguments of `toolgate healthcheck`.
#[derive(Debug, clap::Args)]
pub(crate) struct HealthcheckArgs {
    /// Probe `/readyz` (the upstream session exists) instead of `/healthz` (the process
    /// answers).
    #[arg(long)]
    pub(crate) ready: bool,
    /// TOML configuration file the server was given (default: ./toolgate.toml when present);
    /// only `listen` is read.
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Address to probe instead of the configured `listen`.
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Give up (unhealthy) after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
}

/// Why a probe failed; shown as one stderr line.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr} failed: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("{url} answered {status}: {body}")]
    Unhealthy {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs the probe; exit 0 = healthy (or ready), 1 = anything else.
pub(crate) fn run(args: HealthcheckArgs) -> ExitCode {
    match probe_from_args(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("toolgate healthcheck: {error}");
            ExitCode::from(EXIT_UNHEALTHY)
        }
    }
}

fn probe_from_args(args: &HealthcheckArgs) -> Result<(), ProbeError> {
    let listen = match args.listen {
        Some(listen) => listen,
        None => configured_listen(args.config.clone())?,
    };
    let target = probe_address(listen);
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProbeError::Runtime)?;
    runtime.block_on(async {
        match tokio::time::timeout(args.timeout, probe(target, path)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ProbeError::Timeout {
                addr: target,
                timeout: args.timeout,
            }),
        }
    })
}

/// The `listen` key from the configuration layers the server reads (defaults, file,
/// environment), without validating anything else.
fn configured_listen(config_file: Option<PathBuf>) -> Result<SocketAddr, config::ConfigError> {
    let args = ConfigArgs {
        config: config_file,
        ..ConfigArgs::default()
    };
    config::figment(&args)?
        .extract_inner::<SocketAddr>("listen")
        .map_err(|error| config::ConfigError {
            key: "listen".to_owned(),
            message: error.kind.to_string(),
        })
}

/// Where to connect for a server listening on `listen`: a wildcard address is reached through
/// the loopback address of the same family (the probe runs next to the server).
fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// One HTTP/1.1 GET; Ok only for a 200.
async fn probe(addr: SocketAddr, path: &str) -> Result<(), ProbeError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ProbeError::Http { addr, source })?;
    // The connection task ends with the exchange; its own error surfaces through the sender.
    let connection = tokio::spawn(connection);
    let request = Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "toolgate-healthcheck")
        .body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|source| ProbeError::Http { addr, source })?;
    let status = response.status();
    if status == StatusCode::OK {
        connection.abort();
        return Ok(());
    }
    let body = match Limited::new(response.into_body(), BODY_ECHO_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_owned(),
        Err(_) => "(body too large or cut off)".to_owned(),
    };
    connection.abort();
    Err(ProbeError::Unhealthy {
        url: format!("http://{addr}{path}"),
        status,
        body,
    })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail dictates its closures' error type.
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        assert_eq!(probe_address(v4), "127.0.0.1:8787".parse().unwrap());
        let v6: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(probe_address(v6), "[::1]:9000".parse().unwrap());
        let fixed: SocketAddr = "127.0.0.2:80".parse().unwrap();
        assert_eq!(probe_address(fixed), fixed);
    }

    #[test]
    fn listen_comes_from_the_environment_like_the_server() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOOLGATE_LISTEN", "0.0.0.0:9123");
            // Unrelated keys may be missing or wrong: the probe only reads `listen`.
            jail.set_env("TOOLGATE_GATE_MODE", "not-a-mode");
            let listen = configured_listen(None).map_err(|error| error.to_string())?;
            assert_eq!(listen, "0.0.0.0:9123".parse().unwrap());
            Ok(())
        });
    }

    #[test]
    fn listen_comes_from_the_config_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("mounted.toml", "listen = \"0.0.0.0:7000\"\n")?;
            let listen = configured_listen(Some(PathBuf::from("mounted.toml")))
                .map_err(|error| error.to_string())?;
            assert_eq!(listen, "0.0.0.0:7000".parse().unwrap());
            Ok(())
        });
    }

    #[test]
    fn a_bad_listen_value_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOOLGATE_LISTEN", "not an address");
            let error = configured_listen(None).unwrap_err();
            assert_eq!(error.key, "listen");
            Ok(())
        });
    }

    /// A one-shot HTTP server on port 0 that records the request line and answers `reply`.
    async fn one_shot_server(reply: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            socket.write_all(reply.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_200_is_healthy_and_the_right_path_is_asked() {
        let (addr, server) =
            one_shot_server("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await;
        probe(addr, "/readyz").await.unwrap();
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /readyz HTTP/1.1\r\n"), "{request}");
    }

    #[tokio::test]
    async fn a_503_is_unhealthy_and_its_body_is_reported() {
        let body = r#"{"ready":false,"reason":"creating the Composio session"}"#;
        let reply: &'static str = Box::leak(
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (addr, _server) = one_shot_server(reply).await;
        let error = probe(addr, "/readyz").await.unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, ProbeError::Unhealthy { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
        );
        assert!(
            message.contains("creating the Composio session"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_unhealthy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = probe(addr, "/healthz").await.unwrap_err();
        assert!(matches!(error, ProbeError::Connect { .. }), "{error}");
    }
}
