//! The Streamable HTTP gateway over real sockets: a scripted upstream on 127.0.0.1:0 that
//! records what it receives, the gateway on another port, and reqwest as the client.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures_util::future::BoxFuture;
use http::StatusCode;
use serde_json::{Value, json};
use support::{Harness, HarnessOptions, Recorded};
use toolgate_proxy::config::{ProxyConfig, WaitMode};
use toolgate_proxy::gate::{GateState, PendingToolkit};
use toolgate_proxy::mcp::policy::{ToolCall, ToolPolicy};

/// The next body chunk; a stalled stream fails the test instead of hanging it.
async fn chunk(response: &mut reqwest::Response) -> Option<bytes::Bytes> {
    tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("no data for 10 s: the stream is stalled or buffered")
        .unwrap()
}

fn gmail() -> PendingToolkit {
    PendingToolkit {
        slug: "gmail".into(),
        name: "Gmail".into(),
        connect_url: Some("https://connect.example/link/ln_gmail".into()),
        status: "waiting for authorization".into(),
    }
}

fn closed() -> GateState {
    GateState::Closed {
        pending: vec![gmail()],
    }
}

fn call(id: Value, tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
        .to_string()
}

#[tokio::test]
async fn forwards_body_bytes_and_end_to_end_headers_and_injects_upstream_headers() {
    let harness = Harness::start(HarnessOptions::default()).await;
    // Odd spacing and key order: the upstream must see exactly these bytes.
    let body = "{ \"method\" : \"tools/call\", \"id\":\"req-1\",\"jsonrpc\":\"2.0\", \"params\":{\"name\":\"echo\",\"arguments\":{\"m\":\"h\u{e9}\"}}}";
    let response = harness
        .post_raw(body)
        .header("Authorization", "Bearer client-token")
        .header("Cookie", "sid=1")
        .header("X-Api-Key", "client-spoofed")
        .header("Mcp-Session-Id", "sess-1")
        .header("MCP-Protocol-Version", "2025-11-25")
        .header("Mcp-Method", "tools/call")
        .header("Mcp-Name", "echo")
        .header("Mcp-Param-Region", "eu")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("X-Custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["mcp-session-id"], "sess-1");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["id"], "req-1");
    let seen = harness.upstream.last().await;
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(seen.header("x-api-key"), Some("injected-key"));
    assert_eq!(seen.header_count("x-api-key"), 1);
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("cookie"), None);
    for (name, value) in [
        ("mcp-session-id", "sess-1"),
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
        ("mcp-param-region", "eu"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("x-custom", "kept"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ] {
        assert_eq!(seen.header(name), Some(value), "{name}");
    }
}

#[tokio::test]
async fn sse_is_streamed_frame_by_frame_with_ids_and_retry_intact() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let mut response = harness
        .post(&call(json!(5), "stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut received = String::new();
    // The upstream holds the rest of the stream until the test releases it, so seeing the
    // first progress event here proves the gateway does not buffer.
    while !received.contains("\"progress\":1") {
        let chunk = chunk(&mut response).await.expect("stream ended early");
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        received.starts_with("id: ev-0\nretry: 500\ndata: \n\n"),
        "{received:?}"
    );
    assert!(!received.contains("\"result\""));
    harness.upstream.release_stream();
    while let Some(chunk) = chunk(&mut response).await {
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(received.contains(": keep-alive comment\n"));
    assert!(received.contains("id: ev-2\n"));
    assert!(
        received.ends_with("\"result\":{\"content\":[]}}\n\n"),
        "{received:?}"
    );
}

#[tokio::test]
async fn dropping_the_client_drops_the_upstream_stream() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let mut response = harness
        .client
        .get(harness.url())
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", "sess-1")
        .header("Last-Event-ID", "ev-41")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let first = chunk(&mut response).await.unwrap();
    assert_eq!(
        &first[..],
        b"id: ev-42\ndata: {\"resumedAfter\":\"ev-41\"}\n\n"
    );
    let seen = harness.upstream.last().await;
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("last-event-id"), Some("ev-41"));
    drop(response);
    harness.upstream.wait_get_stream_closed().await;
}

#[tokio::test]
async fn statuses_and_bodies_pass_through_unchanged() {
    let harness = Harness::start(HarnessOptions::default()).await;
    for (tool, status) in [
        ("status406", 406),
        ("status409", 409),
        ("status400", 400),
        ("status404", 404),
    ] {
        let response = harness.post(&call(json!(1), tool)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{tool}");
        assert_eq!(
            response.text().await.unwrap(),
            support::status_body(status),
            "{tool}"
        );
    }
    let notification = harness
        .post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(notification.status(), StatusCode::ACCEPTED);
    let deleted = harness
        .client
        .delete(harness.url())
        .header("Mcp-Session-Id", "sess-1")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let seen = harness.upstream.last().await;
    assert_eq!(
        (seen.method.as_str(), seen.header("mcp-session-id")),
        ("DELETE", Some("sess-1"))
    );
}

#[tokio::test]
async fn upstream_credential_refusal_becomes_502_without_a_challenge() {
    let harness = Harness::start(HarnessOptions::default()).await;
    for tool in ["status401", "status403"] {
        let response = harness
            .post(&call(json!("c-1"), tool))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert!(response.headers().get("www-authenticate").is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["id"], "c-1");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("refused toolgate's credentials")
        );
    }
    assert_eq!(harness.events.count(Recorded::CredentialsRefused), 2);
}

#[tokio::test(start_paused = true)]
async fn unreachable_upstream_is_502_and_slow_headers_504_with_the_callers_id() {
    let unreachable = Harness::start(HarnessOptions {
        dead_upstream: true,
        ..HarnessOptions::default()
    })
    .await;
    let response = unreachable
        .post(&call(json!(9), "echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 9);
    assert_eq!(unreachable.events.count(Recorded::Unreachable), 1);

    let slow = Harness::start(HarnessOptions {
        config: ProxyConfig {
            upstream_timeouts: toolgate_proxy::upstream::UpstreamTimeouts {
                // Virtual time: the hanging upstream costs the test no wall-clock wait.
                response: Duration::from_secs(30),
                ..Default::default()
            },
            ..ProxyConfig::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let response = slow.post(&call(json!("t"), "hang")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "t");
    assert_eq!(slow.events.count(Recorded::Timeout), 1);
}

#[tokio::test]
async fn closed_gate_answers_tools_call_locally_and_forwards_everything_else() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        ..HarnessOptions::default()
    })
    .await;
    let response = harness
        .post(&call(json!("blocked-1"), "echo"))
        .header("MCP-Protocol-Version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "blocked-1");
    assert_eq!(body["result"]["isError"], true);
    assert!(body["result"].get("resultType").is_none());
    let text = body["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Gmail") && text.contains("https://connect.example/link/ln_gmail"));
    assert_eq!(
        harness.upstream.count().await,
        0,
        "a blocked call reached the upstream"
    );
    assert_eq!(harness.events.count(Recorded::Blocked), 1);

    // 2026-07-28 gets resultType.
    let modern = harness
        .post(&call(json!(2), "echo"))
        .header("MCP-Protocol-Version", "2026-07-28")
        .send()
        .await
        .unwrap();
    let body: Value = modern.json().await.unwrap();
    assert_eq!(body["result"]["resultType"], "complete");

    let list = harness
        .post(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(harness.upstream.count().await, 1);
}

#[tokio::test]
async fn url_elicitation_clients_get_32042_by_session_or_by_meta() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        ..HarnessOptions::default()
    })
    .await;
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","clientInfo":{"name":"t","version":"0"},
        "capabilities":{"elicitation":{"form":{},"url":{}}}}});
    let response = harness.post(&init.to_string()).send().await.unwrap();
    assert_eq!(response.headers()["mcp-session-id"], "sess-1");
    // Same session: -32042 with the link.
    let blocked: Value = harness
        .post(&call(json!(1), "echo"))
        .header("Mcp-Session-Id", "sess-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(blocked["error"]["code"], -32042);
    assert_eq!(
        blocked["error"]["data"]["elicitations"][0]["url"],
        "https://connect.example/link/ln_gmail"
    );
    // Another session never declared it: the isError form.
    let other: Value = harness
        .post(&call(json!(2), "echo"))
        .header("Mcp-Session-Id", "sess-other")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["result"]["isError"], true);
    // After DELETE the session is forgotten.
    harness
        .client
        .delete(harness.url())
        .header("Mcp-Session-Id", "sess-1")
        .send()
        .await
        .unwrap();
    let forgotten: Value = harness
        .post(&call(json!(3), "echo"))
        .header("Mcp-Session-Id", "sess-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(forgotten["result"]["isError"], true);
    // 2026-07-28: capability in the request's _meta.
    let modern = json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo",
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                 "io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}}});
    let modern: Value = harness
        .post(&modern.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(modern["id"], 4);
    assert_eq!(modern["error"]["code"], -32042);
}

#[tokio::test]
async fn batches_forward_when_clean_and_are_answered_locally_when_a_call_is_blocked() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        ..HarnessOptions::default()
    })
    .await;
    let clean = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    let response = harness.post(clean).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(harness.upstream.last().await.body, clean.as_bytes());
    let mixed = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","method":"notifications/x"}]"#;
    let answers: Value = harness
        .post(mixed)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        harness.upstream.count().await,
        1,
        "part of a blocked batch was forwarded"
    );
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[0]["error"]["code"], -32600);
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(answers[1]["result"]["isError"], true);
}

#[tokio::test]
async fn wait_mode_forwards_a_held_call_once_the_gate_opens() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        config: ProxyConfig {
            wait: WaitMode::Hold {
                timeout: Duration::from_secs(60),
                progress_interval: Duration::from_secs(30),
            },
            ..ProxyConfig::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let request = harness.post(&call(json!("held"), "echo")).send();
    let opener = async {
        harness.events.wait_for(Recorded::Held).await;
        harness.gate.send_replace(GateState::Open);
    };
    let (response, ()) = tokio::join!(request, opener);
    let body: Value = response.unwrap().json().await.unwrap();
    assert_eq!(body["id"], "held");
    assert_eq!(body["result"]["content"][0]["text"], "echo");
    assert_eq!(harness.upstream.count().await, 1);
}

#[tokio::test]
async fn wait_mode_with_a_progress_token_streams_progress_then_the_upstream_answer() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        config: ProxyConfig {
            wait: WaitMode::Hold {
                timeout: Duration::from_secs(60),
                progress_interval: Duration::from_secs(30),
            },
            ..ProxyConfig::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let body = json!({"jsonrpc":"2.0","id":"p","method":"tools/call",
        "params":{"name":"stream","arguments":{},"_meta":{"progressToken":"tok-1"}}});
    let mut response = harness.post(&body.to_string()).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut received = String::new();
    while !received.contains("\n\n") {
        let chunk = chunk(&mut response).await.unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let data = received
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .unwrap();
    let note: Value = serde_json::from_str(data).unwrap();
    assert_eq!(note["method"], "notifications/progress");
    assert_eq!(note["params"]["progressToken"], "tok-1");
    assert!(
        note["params"]["message"]
            .as_str()
            .unwrap()
            .contains("https://connect.example/link/ln_gmail")
    );
    assert_eq!(harness.upstream.count().await, 0);
    harness.gate.send_replace(GateState::Open);
    harness.upstream.release_stream();
    while let Some(chunk) = chunk(&mut response).await {
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(received.contains("id: ev-2\n"), "{received}");
    assert!(
        received.ends_with("\"result\":{\"content\":[]}}\n\n"),
        "{received}"
    );
}

// Paused clock: the runtime jumps to the next timer whenever every task is idle, so a
// 10-minute hold times out at once and deterministically.
#[tokio::test(start_paused = true)]
async fn wait_mode_timeout_gives_the_blocked_answer() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        config: ProxyConfig {
            wait: WaitMode::Hold {
                timeout: Duration::from_secs(600),
                progress_interval: Duration::from_secs(240),
            },
            ..ProxyConfig::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let plain: Value = harness
        .post(&call(json!(1), "echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["result"]["isError"], true);
    let body = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"echo","_meta":{"progressToken":7}}});
    let text = harness
        .post(&body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let messages: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let last = messages.last().unwrap();
    assert_eq!(last["id"], 2);
    assert_eq!(last["result"]["isError"], true);
    assert!(
        messages[..messages.len() - 1]
            .iter()
            .all(|m| m["method"] == "notifications/progress")
    );
    let progress: Vec<u64> = messages[..messages.len() - 1]
        .iter()
        .map(|m| m["params"]["progress"].as_u64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|pair| pair[0] < pair[1]),
        "{progress:?}"
    );
    assert_eq!(harness.upstream.count().await, 0);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_is_never_forwarded() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let put = harness
        .client
        .put(harness.url())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    let text = harness
        .client
        .post(harness.url())
        .header("Content-Type", "text/plain")
        .body(call(json!(1), "echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":\"{}\"}}",
        "a".repeat(5 * 1024 * 1024)
    );
    let too_big = harness.post(&big).send().await.unwrap();
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Without Content-Length (chunked), the cap still applies while reading.
    let stream = futures_util::stream::iter(
        (0..80).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))),
    );
    let chunked = harness
        .client
        .post(harness.url())
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);
    for (body, code) in [
        ("{\"jsonrpc\":\"2.0\",\"id\":1,", -32700),
        ("", -32700),
        ("\u{0}", -32700),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"echo","method":"tools/call"}"#,
            -32600,
        ),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 1]"#, -32600),
    ] {
        let response = harness.post(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{body:?}");
    }
    assert_eq!(
        harness.upstream.count().await,
        0,
        "bad input reached the upstream"
    );
}

#[tokio::test]
async fn host_and_origin_are_validated() {
    let harness = Harness::start(HarnessOptions {
        config: ProxyConfig {
            allowed_hosts: vec!["toolgate.internal".into()],
            allowed_origins: vec!["https://app.example".into()],
            ..ProxyConfig::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let forbidden = [
        ("Host", "evil.example.com"),
        ("Origin", "http://evil.example.com"),
        ("Origin", "null"),
        ("Origin", "https://app.example:444"),
    ];
    for (name, value) in forbidden {
        let response = harness.post(list).header(name, value).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32000);
    }
    let allowed = [
        ("Host", "toolgate.internal:8000"),
        ("Host", "localhost"),
        ("Origin", "http://localhost:6274"),
        ("Origin", "http://127.0.0.1"),
        ("Origin", "https://app.example"),
    ];
    for (name, value) in allowed {
        let response = harness.post(list).header(name, value).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{name}: {value}");
    }
    assert_eq!(harness.upstream.count().await, allowed.len());
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let harness = Harness::start(HarnessOptions {
        config: ProxyConfig {
            bearer_token: Some("inbound-secret-0123".to_owned().into()),
            ..ProxyConfig::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    for presented in [
        None,
        Some("Bearer wrong"),
        Some("Basic aW5ib3VuZC1zZWNyZXQ="),
        Some("Bearer inbound-secret-012"),
    ] {
        let mut request = harness.post(list);
        if let Some(value) = presented {
            request = request.header("Authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{presented:?}");
    }
    let response = harness
        .post(list)
        .header("Authorization", "bearer inbound-secret-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The inbound token is toolgate's, never the upstream's.
    assert_eq!(harness.upstream.last().await.header("authorization"), None);
}

#[tokio::test]
async fn not_ready_answers_503_with_the_callers_id() {
    let harness = Harness::start(HarnessOptions {
        gate: GateState::Starting {
            reason: "creating the Composio session".into(),
        },
        ..HarnessOptions::default()
    })
    .await;
    let response = harness
        .post(r#"{"jsonrpc":"2.0","id":"n1","method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "n1");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("creating the Composio session")
    );
    harness.gate.send_replace(GateState::Open);
    harness.upstream_tx.send_replace(None);
    let response = harness.post(&call(json!(2), "echo")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(harness.upstream.count().await, 0);
}

#[tokio::test]
async fn serves_h2c_and_404s_other_paths() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2
        .post(harness.url())
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .body(call(json!(1), "echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let other = harness
        .client
        .get(format!("http://{}/other", harness.address))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let mut response = harness
        .post(&call(json!(1), "stream"))
        .send()
        .await
        .unwrap();
    let first = chunk(&mut response).await.unwrap();
    assert!(!first.is_empty());
    harness.shutdown.cancel();
    harness.upstream.release_stream();
    let mut rest = String::new();
    while let Some(chunk) = chunk(&mut response).await {
        rest.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(rest.contains("\"result\""), "{rest}");
    harness.wait_stopped().await;
    assert!(
        harness.client.post(harness.url()).send().await.is_err(),
        "still accepting after shutdown"
    );
}

/// Deterministic xorshift, so a failure reproduces.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[tokio::test]
async fn arbitrary_bodies_and_headers_never_break_the_gateway() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        ..HarnessOptions::default()
    })
    .await;
    let fragments = [
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "\"method\"",
        "\"tools/call\"",
        "\"id\"",
        "1",
        "null",
        "\"params\"",
        "{\"_meta\":",
        "\"progressToken\"",
        "\\u0000",
        "\u{e9}",
        "1e999",
        "-0",
        "\"jsonrpc\":\"2.0\"",
        " ",
        "\n",
        "true",
    ];
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut bodies: Vec<Vec<u8>> = (0..300)
        .map(|_| {
            let length = noise.next() % 24;
            (0..length)
                .map(|_| noise.pick(&fragments))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    bodies.push(vec![0xff, 0xfe, 0x00, 0x7b]);
    // Deep nesting hits serde_json's recursion limit: an error, not a stack overflow.
    bodies.push(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes());
    bodies.push(
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{}}}",
            "{\"a\":".repeat(5000) + "1" + &"}".repeat(5000)
        )
        .into_bytes(),
    );
    for body in bodies {
        let response = harness
            .client
            .post(harness.url())
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .header(
                "Mcp-Session-Id",
                noise
                    .pick(&["s", "\u{1}", "sess-1", ""])
                    .replace('\u{1}', "x"),
            )
            .header(
                "MCP-Protocol-Version",
                noise.pick(&["2026-07-28", "junk", "2025-03-26"]),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            [200, 202, 400].contains(&status),
            "{status} for {:?}",
            String::from_utf8_lossy(&body)
        );
        let text = response.text().await.unwrap();
        if status == 400 {
            let answer: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(answer["jsonrpc"], "2.0");
        }
    }
    // Nothing that a JSON parser reads as a tools/call got through while the gate was closed.
    for seen in harness.upstream.all() {
        let parsed: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
        let messages = parsed.as_array().cloned().unwrap_or_else(|| vec![parsed]);
        assert!(
            messages.iter().all(|m| m["method"] != "tools/call"),
            "forwarded while closed: {:?}",
            String::from_utf8_lossy(&seen.body)
        );
    }
    assert!(harness.events.count(Recorded::Request) >= 303);
}

#[tokio::test]
async fn wait_mode_reframes_a_plain_json_upstream_answer_as_an_sse_event() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        config: ProxyConfig {
            wait: WaitMode::Hold {
                timeout: Duration::from_secs(60),
                progress_interval: Duration::from_secs(30),
            },
            ..ProxyConfig::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let body = json!({"jsonrpc":"2.0","id":"j","method":"tools/call",
        "params":{"name":"echo","arguments":{},"_meta":{"progressToken":"tok-j"}}});
    let mut response = harness.post(&body.to_string()).send().await.unwrap();
    let first = chunk(&mut response).await.unwrap();
    assert!(
        std::str::from_utf8(&first)
            .unwrap()
            .contains("notifications/progress")
    );
    harness.gate.send_replace(GateState::Open);
    let mut rest = String::new();
    while let Some(next) = chunk(&mut response).await {
        rest.push_str(std::str::from_utf8(&next).unwrap());
    }
    let answer: Value = serde_json::from_str(
        rest.lines()
            .find_map(|line| line.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(answer["id"], "j");
    assert_eq!(answer["result"]["content"][0]["text"], "echo");
}

/// A test policy: while the gate is closed only `send_mail` is blocked; the answers to
/// `missing` and `stream` are reviewed and replaced by a blocked answer naming `github`.
struct TestPolicy;

impl ToolPolicy for TestPolicy {
    fn blocking(&self, call: ToolCall<'_>, gate: &GateState) -> Vec<PendingToolkit> {
        match (gate, call.name) {
            (GateState::Closed { pending }, Some("send_mail")) => pending.clone(),
            _ => Vec::new(),
        }
    }
    fn reviews_results(&self) -> bool {
        true
    }
    fn wants_result(&self, call: ToolCall<'_>) -> bool {
        matches!(call.name, Some("missing" | "stream" | "fine"))
    }
    fn review_result<'a>(
        &'a self,
        call: ToolCall<'a>,
        response: &'a [u8],
    ) -> BoxFuture<'a, Option<Vec<PendingToolkit>>> {
        let replace = call.name == Some("stream")
            || String::from_utf8_lossy(response).contains("\"missing\"");
        Box::pin(async move {
            replace.then(|| {
                vec![PendingToolkit {
                    slug: "github".into(),
                    name: "GitHub".into(),
                    connect_url: Some("https://connect.example/link/ln_gh".into()),
                    status: "not connected".into(),
                }]
            })
        })
    }
}

#[tokio::test]
async fn the_tool_policy_decides_which_calls_block_and_reviews_results() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        policy: Some(std::sync::Arc::new(TestPolicy)),
        ..HarnessOptions::default()
    })
    .await;
    // Blocked by the policy, answered locally; another tool passes the closed gate.
    let blocked: Value = harness
        .post(&call(json!(1), "send_mail"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(blocked["result"]["isError"], true, "{blocked}");
    let passed: Value = harness
        .post(&call(json!(2), "fine"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        passed["result"]["content"][0]["text"], "fine",
        "reviewed and kept: {passed}"
    );
    // A JSON answer replaced after review, with the caller's id.
    let replaced: Value = harness
        .post(&call(json!("m"), "missing"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replaced["id"], "m");
    let text = replaced["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("https://connect.example/link/ln_gh"),
        "{text}"
    );
    // An SSE answer: events before the answer pass as they are, the answer event keeps its id.
    let mut response = harness
        .post(&call(json!("s"), "stream"))
        .send()
        .await
        .unwrap();
    let mut received = String::new();
    while !received.contains("id: ev-1") {
        received.push_str(std::str::from_utf8(&chunk(&mut response).await.unwrap()).unwrap());
    }
    harness.upstream.release_stream();
    while let Some(chunk) = chunk(&mut response).await {
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(received.contains("id: ev-0\nretry: 500\n"), "{received}");
    assert!(received.contains(": keep-alive comment"), "{received}");
    let answer = received.split("id: ev-2\n").nth(1).unwrap();
    assert!(
        answer.starts_with(
            "data: {\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":{\"content\":[{\"type\":\"text\""
        ),
        "{received}"
    );
    assert!(answer.contains("ln_gh"), "{received}");
    let sent: Vec<String> = harness
        .upstream
        .all()
        .iter()
        .map(|seen| String::from_utf8_lossy(&seen.body).into_owned())
        .collect();
    assert!(
        sent.iter().all(|body| !body.contains("send_mail")),
        "{sent:?}"
    );
}

#[tokio::test]
async fn blocked_and_local_answers_echo_ids_byte_for_byte() {
    let harness = Harness::start(HarnessOptions {
        gate: closed(),
        ..HarnessOptions::default()
    })
    .await;
    for id in [
        r#""a\u0031""#,
        "12345678901234567890123",
        "1E2",
        "-0",
        "2.50",
        "18446744073709551616",
    ] {
        let blocked = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"x"}}}}"#
        );
        let text = harness
            .post_raw(&blocked)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"#)),
            "{text}"
        );
    }
    harness.upstream_tx.send_replace(None);
    let text = harness
        .post_raw(r#"{"jsonrpc":"2.0","id":1E2,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(r#""id":1E2,"#), "{text}");
}

/// One step of a [`hostile`] upstream's answer.
enum Step {
    /// Write these bytes.
    Write(String),
    /// Wait until the test says go on.
    Hold(tokio::sync::oneshot::Receiver<()>),
    /// Say nothing more, keeping the connection open.
    Silence,
    /// Close with a TCP reset.
    Reset,
}

/// One HTTP/1.1 chunk of a chunked body.
fn chunked(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

fn event(message: &Value) -> String {
    format!("event: message\ndata: {message}\n\n")
}

/// A raw TCP upstream that reads one request and then plays `script` (a clean close at its
/// end); the harness is pointed at it.
async fn hostile(harness: &Harness, script: Vec<Step>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    harness
        .upstream_tx
        .send(Some(toolgate_proxy::upstream::UpstreamTarget::new(
            url.parse().unwrap(),
            http::HeaderMap::new(),
        )))
        .unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0_u8; 4096];
        // The head, then as many body bytes as it declares.
        loop {
            let read = socket.read(&mut buffer).await.unwrap();
            request.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&request).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse::<usize>().unwrap());
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        for step in script {
            match step {
                Step::Write(text) => socket.write_all(text.as_bytes()).await.unwrap(),
                Step::Hold(go) => go.await.unwrap(),
                Step::Silence => std::future::pending::<()>().await,
                Step::Reset => {
                    // A zero linger resets at once; it is the blocking of a non-zero one that
                    // the deprecation warns about.
                    #[allow(deprecated)]
                    socket.set_linger(Some(Duration::ZERO)).unwrap();
                    return;
                }
            }
        }
    });
}

#[tokio::test(start_paused = true)]
async fn a_json_answer_silent_past_the_idle_timeout_is_an_error_with_the_callers_id() {
    let harness = Harness::start(HarnessOptions {
        config: ProxyConfig {
            upstream_timeouts: toolgate_proxy::upstream::UpstreamTimeouts {
                response: Duration::from_secs(1000),
                body_idle: Duration::from_secs(5),
            },
            ..ProxyConfig::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 90\r\n\r\n";
    hostile(
        &harness,
        vec![
            Step::Write(format!("{head}{{\"jsonrpc\":\"2.0\",")),
            Step::Silence,
        ],
    )
    .await;
    let started = tokio::time::Instant::now();
    let response = harness
        .post(&call(json!("q-1"), "echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "q-1", "{body}");
    assert_eq!(body["error"]["code"], -32001, "{body}");
    // The body idle bound fired, not the (much longer) response-head bound.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(1000));
    assert_eq!(harness.events.count(Recorded::Timeout), 1);
}

#[tokio::test]
async fn an_sse_answer_cut_off_ends_cleanly_with_an_error_event_per_unanswered_id() {
    for (cut, expected) in [(Step::Reset, "broke off"), (Step::Write(String::new()), "")] {
        let harness = Harness::start(HarnessOptions::default()).await;
        let answer = json!({"jsonrpc":"2.0","id":1,"result":{"content":[]}});
        hostile(
            &harness,
            vec![
                Step::Write(format!("{SSE_HEAD}{}", chunked(&event(&answer)))),
                // Half an event, then the connection ends without the last chunk.
                Step::Write(chunked(
                    "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"b\"",
                )),
                cut,
            ],
        )
        .await;
        let batch = format!("[{},{}]", call(json!(1), "echo"), call(json!("b"), "echo"));
        let response = harness.post(&batch).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // A complete (terminated) body: text() fails on a cut chunked body.
        let text = response.text().await.unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("event: message\ndata: "))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{text}");
        assert_eq!(events[0], answer);
        assert_eq!(events[1]["id"], "b", "{text}");
        let message = events[1]["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
        assert!(
            !text.contains("\"id\":\"b\"\n"),
            "the half event is not relayed: {text}"
        );
    }
}

#[tokio::test]
async fn ready_frames_leave_as_one_and_a_lone_frame_leaves_at_once() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let progress = json!({"jsonrpc":"2.0","method":"notifications/progress",
        "params":{"progressToken":"p","progress":1}});
    let answer = json!({"jsonrpc":"2.0","id":7,"result":{"content":[]}});
    let (go, held) = tokio::sync::oneshot::channel();
    hostile(
        &harness,
        vec![
            Step::Write(format!("{SSE_HEAD}{}", chunked(&event(&progress)))),
            Step::Hold(held),
            // Three chunks in one write: already waiting together when the gateway reads.
            Step::Write(format!(
                "{}{}{}0\r\n\r\n",
                chunked("event: message\n"),
                chunked(&format!("data: {answer}\n")),
                chunked("\n"),
            )),
        ],
    )
    .await;
    let mut response = harness.post(&call(json!(7), "echo")).send().await.unwrap();
    // The progress event arrives while the upstream holds the rest back.
    assert_eq!(
        chunk(&mut response).await.unwrap(),
        event(&progress).as_bytes()
    );
    go.send(()).unwrap();
    assert_eq!(
        chunk(&mut response).await.unwrap(),
        event(&answer).as_bytes()
    );
    assert!(chunk(&mut response).await.is_none());
}
