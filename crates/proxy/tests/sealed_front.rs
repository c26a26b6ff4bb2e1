//! The multi-user front with session keys in front of an upstream that repeats its
//! `Mcp-Session-Id` on every answer, as the TypeScript SDK's server does: the scripted upstream
//! on 127.0.0.1:0 (`support`) names its session `sess-1` on `initialize` and on every tool call.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Request;
use http_body_util::{BodyExt, Full};
use secrecy::SecretString;
use toolgate_proxy::identity::{Authenticator, UserId};
use toolgate_proxy::router::{MultiUser, Route, RouteError, Router};
use toolgate_proxy::seal::SessionKeys;

use support::Upstream;

/// Every user gets the one gateway.
struct OneRoute(Route);

impl Router for OneRoute {
    fn route<'a>(
        &'a self,
        _user: &'a UserId,
        _pinned: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Route, RouteError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn front(upstream: &Upstream) -> MultiUser {
    let gateway = support::open_gateway(upstream.url());
    let route = Route {
        gateway,
        route_key: "route-1".to_owned(),
    };
    let user = UserId::new("alice").unwrap();
    let keys = SessionKeys::new(&[SecretString::from("0123456789abcdef0123456789abcdef")]).unwrap();
    MultiUser::new(
        Arc::new(Authenticator::Single { user, token: None }),
        Arc::new(OneRoute(route)),
        Some(keys),
    )
}

/// POSTs `body` through the front; returns the answer's session id and body.
async fn post(front: &MultiUser, session: Option<&str>, body: &str) -> (Option<String>, String) {
    let mut request = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = front.handle(request).await;
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (session, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_clients_sealed_id_comes_back_unchanged_while_its_session_is() {
    let upstream = Upstream::start().await;
    let front = front(&upstream);
    let initialize = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let (sealed, _) = post(&front, None, initialize).await;
    let sealed = sealed.expect("initialize answers with a session id");
    assert_ne!(
        sealed, "sess-1",
        "the upstream's own id never reaches the client"
    );
    for id in 1..=3 {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{}}}}}}"#
        );
        let (again, body) = post(&front, Some(&sealed), &call).await;
        assert!(body.contains(r#""text":"echo""#), "{body}");
        assert_eq!(
            upstream.last().await.header("mcp-session-id"),
            Some("sess-1")
        );
        // Without the echo every answer carried a fresh seal (a new random nonce).
        assert_eq!(again.as_deref(), Some(sealed.as_str()), "call {id}");
    }
}
