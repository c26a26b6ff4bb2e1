//! The REST side and the MCP upstream together, over real HTTP: a session created over REST is
//! reachable at its `mcp.url` by a real MCP client (rmcp) with the `x-api-key` header, refused
//! without it, and its tools see connections made through Connect Links.

mod support;

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::start;
use toolgate_sandbox::DEMO_API_KEY;

fn transport(url: &str, key: Option<&str>) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut headers = HashMap::new();
    if let Some(key) = key {
        headers.insert(
            http::HeaderName::from_static("x-api-key"),
            http::HeaderValue::from_str(key).expect("header"),
        );
    }
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    )
}

fn result_json(result: &CallToolResult) -> Value {
    let text: String = result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.clone()))
        .collect();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn an_mcp_client_lists_and_calls_tools_at_the_sessions_mcp_url() {
    let (_sandbox, client) = start().await;
    let created = client
        .post(
            "/api/v3.1/tool_router/session",
            &json!({"user_id": "mia", "manage_connections": {"enable": false}, "workbench": {"enable": false}, "toolkits": {"enable": ["gmail", "github"]}}),
        )
        .await;
    let session = created.str("/session_id");
    let url = created.str("/mcp/url");
    assert_eq!(url, format!("{}/tool_router/{session}/mcp", client.base));

    let mcp =
        ().serve(transport(&url, Some(DEMO_API_KEY)))
            .await
            .expect("MCP initialize with x-api-key");
    let mut names: Vec<String> = mcp
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = created.json["tool_router_tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect();
    expected.sort();
    // The meta tools mirror tool_router_tools; the sandbox adds only its own SANDBOX_* test tools.
    let meta: Vec<String> = names
        .iter()
        .filter(|name| !name.starts_with("SANDBOX_"))
        .cloned()
        .collect();
    assert_eq!(meta, expected, "MCP tools mirror tool_router_tools");
    assert!(
        !names
            .iter()
            .any(|name| name == "COMPOSIO_MANAGE_CONNECTIONS")
    );

    // Not connected yet: the app tool fails for gmail; after Allow on a Connect Link it runs.
    let send = json!({"tools": [{"tool_slug": "GMAIL_SEND_EMAIL", "arguments": {"recipient_email": "a@example.com", "subject": "s", "body": "b"}}]});
    let Value::Object(arguments) = send else {
        unreachable!("object literal")
    };
    let call = || {
        CallToolRequestParams::new("COMPOSIO_MULTI_EXECUTE_TOOL").with_arguments(arguments.clone())
    };
    let before = result_json(&mcp.call_tool(call()).await.expect("tools/call"));
    assert_eq!(
        before["data"]["results"][0]["response"]["successful"], false,
        "{before}"
    );
    let (_, token, _) = client.link(&session, json!({"toolkit": "gmail"})).await;
    assert_eq!(
        client
            .control(&format!("/_sandbox/links/{token}/allow"), None)
            .await
            .status,
        StatusCode::OK
    );
    let after = result_json(&mcp.call_tool(call()).await.expect("tools/call"));
    assert_eq!(
        after["data"]["results"][0]["response"]["successful"], true,
        "{after}"
    );
    mcp.cancel().await.expect("close");

    // Without the key, or with another key, the MCP URL refuses: the client cannot initialize
    // and raw requests get the 401 envelope.
    assert!(
        ().serve(transport(&url, None)).await.is_err(),
        "initialize without x-api-key must fail"
    );
    assert!(
        ().serve(transport(&url, Some("sk_other"))).await.is_err(),
        "initialize with a wrong key must fail"
    );
    let path = format!("/tool_router/{session}/mcp");
    let refused = client
        .send(
            Method::POST,
            &path,
            None,
            Some(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
        )
        .await;
    refused.assert_error(401);

    // After DELETE the URL is gone.
    client
        .delete(&format!("/api/v3.1/tool_router/session/{session}"))
        .await;
    client
        .send(Method::POST, &path, Some(DEMO_API_KEY), Some(b"{}"))
        .await
        .assert_error(404);
}

/// MCP tools judge connections like the toolkit listing does: within the session's project,
/// and through the session's pinned account when it pins one.
#[tokio::test]
async fn mcp_tools_see_the_sessions_own_account_choice() {
    let config = toolgate_sandbox::SandboxConfig {
        api_keys: vec![DEMO_API_KEY.to_owned(), "sk_other_project".to_owned()],
        ..toolgate_sandbox::SandboxConfig::default()
    };
    let (_sandbox, client) = support::start_with(config).await;
    // In the demo project: an ACTIVE gmail account and a pending one for the same user.
    let first = client.session(json!({"user_id": "nia"})).await;
    let (_, token, _) = client.link(&first, json!({"toolkit": "gmail"})).await;
    client
        .control(&format!("/_sandbox/links/{token}/allow"), None)
        .await;
    let (pending, _, _) = client.link(&first, json!({"toolkit": "gmail"})).await;

    let send = json!({"tools": [{"tool_slug": "GMAIL_SEND_EMAIL", "arguments": {"recipient_email": "a@example.com", "subject": "s", "body": "b"}}]});
    let Value::Object(arguments) = send else {
        unreachable!("object literal")
    };
    let gmail_works = |key: &'static str, session: String| {
        let arguments = arguments.clone();
        let base = client.base.clone();
        async move {
            let url = format!("{base}/tool_router/{session}/mcp");
            let mcp = ().serve(transport(&url, Some(key))).await.expect("initialize");
            let call =
                CallToolRequestParams::new("COMPOSIO_MULTI_EXECUTE_TOOL").with_arguments(arguments);
            let result = result_json(&mcp.call_tool(call).await.expect("tools/call"));
            mcp.cancel().await.expect("close");
            result["data"]["results"][0]["response"]["successful"] == json!(true)
        }
    };
    assert!(
        gmail_works(DEMO_API_KEY, first.clone()).await,
        "the ACTIVE account counts"
    );
    let pinned = client
        .session(json!({"user_id": "nia", "connected_accounts": {"gmail": [pending]}}))
        .await;
    assert!(
        !gmail_works(DEMO_API_KEY, pinned).await,
        "the pinned account is still INITIATED"
    );

    // The same user id in another project has no account there.
    let other = client
        .send(
            Method::POST,
            "/api/v3.1/tool_router/session",
            Some("sk_other_project"),
            Some(br#"{"user_id":"nia"}"#),
        )
        .await
        .str("/session_id");
    assert!(
        !gmail_works("sk_other_project", other).await,
        "projects are separate"
    );
}
