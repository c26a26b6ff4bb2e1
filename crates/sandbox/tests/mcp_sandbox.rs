//! The MCP upstream through the whole sandbox: sessions are created over the REST API, a real
//! MCP client (rmcp's) talks to the returned `mcp.url` with the session's `x-api-key`, and
//! connection state changes made through the Connect Link control plane show up in the tools.

use std::collections::HashMap;

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use toolgate_sandbox::{DEMO_API_KEY, Sandbox, SandboxConfig};

const SANDBOX_TOOLS: [&str; 3] = [
    "SANDBOX_ECHO",
    "SANDBOX_SLOW_OPERATION",
    "SANDBOX_LARGE_RESULT",
];

/// Creates a session over REST; answers the full response body.
async fn create_session(sandbox: &Sandbox, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v3.1/tool_router/session",
            sandbox.base_url()
        ))
        .header("x-api-key", DEMO_API_KEY)
        .json(&body)
        .send()
        .await
        .expect("POST /tool_router/session failed");
    assert_eq!(response.status(), 201);
    response.json().await.expect("session response is not JSON")
}

async fn connect(url: &str, api_key: &str) -> RunningService<RoleClient, ()> {
    let headers = HashMap::from([(
        http::HeaderName::from_static("x-api-key"),
        http::HeaderValue::from_str(api_key).expect("API key is not a header value"),
    )]);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(headers),
    );
    ().serve(transport)
        .await
        .expect("MCP client could not initialize")
}

async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .expect("tools/list failed")
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect()
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    name: &str,
    arguments: Value,
) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object");
    };
    client
        .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(arguments))
        .await
        .expect("tools/call failed")
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.clone()))
        .collect()
}

fn expected_tools(session: &Value) -> Vec<String> {
    session["tool_router_tools"]
        .as_array()
        .expect("no tool_router_tools in the session")
        .iter()
        .map(|name| name.as_str().expect("tool name is not a string").to_owned())
        .chain(SANDBOX_TOOLS.iter().map(|name| (*name).to_owned()))
        .collect()
}

#[tokio::test]
async fn mcp_url_serves_the_sessions_tools_and_follows_connections() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let session = create_session(&sandbox, json!({"user_id": "mcp-user"})).await;
    let url = session["mcp"]["url"].as_str().unwrap();
    let session_id = session["session_id"].as_str().unwrap();
    assert_eq!(
        url,
        format!("{}/tool_router/{session_id}/mcp", sandbox.base_url())
    );

    let client = connect(url, DEMO_API_KEY).await;
    let names = tool_names(&client).await;
    assert_eq!(names, expected_tools(&session));
    assert!(
        names
            .iter()
            .any(|name| name == "COMPOSIO_MANAGE_CONNECTIONS")
    );

    let send = json!({"tools": [{"tool_slug": "GMAIL_SEND_EMAIL", "arguments":
        {"recipient_email": "a@example.com", "subject": "Hi", "body": "Hello"}}]});
    let blocked = call(&client, "COMPOSIO_MULTI_EXECUTE_TOOL", send.clone()).await;
    assert_eq!(blocked.is_error, Some(true));
    assert!(
        text_of(&blocked).contains("No active connection for toolkit gmail"),
        "{}",
        text_of(&blocked)
    );

    // In-chat auth: the tool mints a real Connect Link of this sandbox...
    let managed: Value = serde_json::from_str(&text_of(
        &call(
            &client,
            "COMPOSIO_MANAGE_CONNECTIONS",
            json!({"toolkits": ["gmail"]}),
        )
        .await,
    ))
    .unwrap();
    let entry = &managed["data"]["results"][0];
    assert_eq!(entry["status"], "INITIATED");
    let redirect_url = entry["redirect_url"].as_str().unwrap();
    let token = redirect_url
        .rsplit('/')
        .next()
        .filter(|token| token.starts_with("ln_"))
        .unwrap_or_else(|| panic!("not a sandbox link: {redirect_url}"));
    assert!(
        redirect_url.starts_with(&sandbox.base_url()),
        "{redirect_url}"
    );

    // ...and once the user allows it, the same call goes through.
    let allowed = reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/links/{token}/allow",
            sandbox.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let sent = call(&client, "COMPOSIO_MULTI_EXECUTE_TOOL", send).await;
    assert_ne!(sent.is_error, Some(true), "{}", text_of(&sent));
    let body: Value = serde_json::from_str(&text_of(&sent)).unwrap();
    assert_eq!(body["data"]["results"][0]["response"]["successful"], true);
    let search: Value = serde_json::from_str(&text_of(
        &call(
            &client,
            "COMPOSIO_SEARCH_TOOLS",
            json!({"queries": [{"use_case": "send an email"}]}),
        )
        .await,
    ))
    .unwrap();
    assert_eq!(
        search["data"]["results"][0]["tools"][0]["tool_slug"],
        "GMAIL_SEND_EMAIL"
    );
    assert_eq!(search["data"]["results"][0]["tools"][0]["connected"], true);

    // Deleting the session over REST closes its MCP URL.
    let deleted = reqwest::Client::new()
        .delete(format!(
            "{}/api/v3.1/tool_router/session/{session_id}",
            sandbox.base_url()
        ))
        .header("x-api-key", DEMO_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert!(client.list_all_tools().await.is_err());
}

#[tokio::test]
async fn tool_list_follows_the_session_config() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let manual = create_session(
        &sandbox,
        json!({"user_id": "u", "manage_connections": {"enable": false}, "toolkits": {"enable": ["github"]}}),
    )
    .await;
    let client = connect(manual["mcp"]["url"].as_str().unwrap(), DEMO_API_KEY).await;
    let names = tool_names(&client).await;
    assert_eq!(names, expected_tools(&manual));
    assert!(
        !names
            .iter()
            .any(|name| name == "COMPOSIO_MANAGE_CONNECTIONS")
    );
    let schemas = call(
        &client,
        "COMPOSIO_GET_TOOL_SCHEMAS",
        json!({"tool_slugs": ["GMAIL_SEND_EMAIL"]}),
    )
    .await;
    // gmail is outside the session's toolkits, so its tools are not available here.
    assert_eq!(schemas.is_error, Some(true));
    let echo = call(&client, "SANDBOX_ECHO", json!({"message": "ok"})).await;
    assert_eq!(text_of(&echo), "Echo: ok");
}

#[tokio::test]
async fn mcp_url_requires_the_sessions_api_key() {
    let sandbox = Sandbox::start(SandboxConfig {
        api_keys: vec![DEMO_API_KEY.to_owned(), "sk_other_project".to_owned()],
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let session = create_session(&sandbox, json!({"user_id": "u"})).await;
    let url = session["mcp"]["url"].as_str().unwrap();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let post = |key: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("sk_wrong")).await.unwrap().status(), 401);
    // Another project's valid key does not open this project's session.
    assert_eq!(post(Some("sk_other_project")).await.unwrap().status(), 401);
    let accepted = post(Some(DEMO_API_KEY)).await.unwrap();
    assert_eq!(accepted.status(), 200);
    assert!(accepted.headers().contains_key("mcp-session-id"));
}
