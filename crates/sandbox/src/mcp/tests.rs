//! Tests of the MCP endpoint over real HTTP on 127.0.0.1: the endpoint is served on a bare
//! hyper listener (the REST router is not involved), with an in-test [`McpWorld`] double, and
//! driven by rmcp's own client and by raw HTTP requests where the wire details matter
//! (sessions, GET stream, resumption, Host check).

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
        ProgressNotificationParam, ProtocolVersion,
    },
    service::{NotificationContext, RunningService},
    transport::StreamableHttpClientTransport,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{McpEndpoint, McpWorld, ResponseBody, SessionView, tools::large_text};

/// A bounded wait for things that happen "soon" over loopback; generous so a loaded CI box
/// does not flake, and only hit when the behaviour is broken.
const PATIENCE: Duration = Duration::from_secs(20);

const DEFAULT_TOOLS: [&str; 4] = [
    "COMPOSIO_SEARCH_TOOLS",
    "COMPOSIO_GET_TOOL_SCHEMAS",
    "COMPOSIO_MANAGE_CONNECTIONS",
    "COMPOSIO_MULTI_EXECUTE_TOOL",
];

// === the world double ===

#[derive(Default)]
struct FakeWorld {
    sessions: Mutex<HashMap<String, SessionView>>,
    /// `(user_id, toolkit)` pairs with an ACTIVE account.
    connected: Mutex<HashSet<(String, String)>>,
    /// Every `connect_link` call, as `(session_id, toolkit)`.
    links: Mutex<Vec<(String, String)>>,
    /// How many times `is_connected` was asked (shows that a waiting tool polls).
    connection_checks: std::sync::atomic::AtomicUsize,
}

impl FakeWorld {
    fn add_session(&self, id: &str, user: &str, tools: &[&str], enabled: Option<&[&str]>) {
        self.sessions.lock().unwrap().insert(
            id.to_owned(),
            SessionView {
                user_id: user.to_owned(),
                tool_router_tools: tools.iter().map(|t| (*t).to_owned()).collect(),
                enabled_toolkits: enabled
                    .map(|list| list.iter().map(|t| (*t).to_owned()).collect()),
            },
        );
    }

    fn connect(&self, user: &str, toolkit: &str) {
        self.connected
            .lock()
            .unwrap()
            .insert((user.to_owned(), toolkit.to_owned()));
    }
}

impl McpWorld for FakeWorld {
    fn session(&self, session_id: &str) -> Option<SessionView> {
        self.sessions.lock().unwrap().get(session_id).cloned()
    }

    fn is_connected(&self, session_id: &str, toolkit: &str) -> bool {
        self.connection_checks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let user = self
            .sessions
            .lock()
            .unwrap()
            .get(session_id)
            .map(|view| view.user_id.clone());
        toolkit == "hackernews"
            || user.is_some_and(|user| {
                self.connected
                    .lock()
                    .unwrap()
                    .contains(&(user, toolkit.to_owned()))
            })
    }

    fn connect_link(&self, session_id: &str, toolkit: &str) -> Result<String, String> {
        if toolkit == "noconfig" {
            return Err(format!("No auth config found for toolkit {toolkit}"));
        }
        let mut links = self.links.lock().unwrap();
        links.push((session_id.to_owned(), toolkit.to_owned()));
        Ok(format!("http://127.0.0.1:1/link/ln_{}", links.len()))
    }

    fn toolkits(&self) -> Vec<(String, String)> {
        [
            "gmail",
            "github",
            "slack",
            "notion",
            "linear",
            "hackernews",
            "noconfig",
        ]
        .iter()
        .map(|slug| ((*slug).to_owned(), slug.to_uppercase()))
        .collect()
    }
}

// === the server harness ===

struct Harness {
    addr: SocketAddr,
    /// `(method, status)` of every request the endpoint answered.
    exchanges: Arc<Mutex<Vec<(http::Method, u16)>>>,
    world: Arc<FakeWorld>,
    endpoint: Arc<McpEndpoint>,
    stop: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(|endpoint| endpoint).await
    }

    async fn start_with(configure: impl FnOnce(McpEndpoint) -> McpEndpoint) -> Self {
        let world = Arc::new(FakeWorld::default());
        world.add_session("trs_a", "alice", &DEFAULT_TOOLS, None);
        world.add_session("trs_b", "bob", &DEFAULT_TOOLS, None);
        let stop = CancellationToken::new();
        let endpoint = Arc::new(configure(McpEndpoint::new(world.clone(), stop.clone())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = endpoint.clone();
        let accept_stop = stop.clone();
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let log = exchanges.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    () = accept_stop.cancelled() => return,
                };
                let endpoint = serving.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<Incoming>| {
                        let endpoint = endpoint.clone();
                        let log = log.clone();
                        async move {
                            let method = request.method().clone();
                            let response = route(&endpoint, request).await;
                            log.lock()
                                .unwrap()
                                .push((method, response.status().as_u16()));
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            exchanges,
            world,
            endpoint,
            stop,
        }
    }

    fn url(&self, session: &str) -> String {
        format!("http://{}/tool_router/{session}/mcp", self.addr)
    }

    async fn client(&self, session: &str, version: ProtocolVersion) -> TestClient {
        let (progress_tx, progress) = mpsc::unbounded_channel();
        let handler = ProgressRecorder {
            progress: progress_tx,
            version,
        };
        let transport = StreamableHttpClientTransport::from_uri(self.url(session));
        let service = handler.serve(transport).await.unwrap();
        TestClient { service, progress }
    }
}

/// What the REST router does for the MCP path, minus authentication.
async fn route(
    endpoint: &McpEndpoint,
    request: http::Request<Incoming>,
) -> http::Response<ResponseBody> {
    let path = request.uri().path().to_owned();
    let session = path
        .strip_prefix("/tool_router/")
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .map(str::to_owned);
    match session {
        Some(session) => endpoint.handle(&session, request).await,
        None => {
            use http_body_util::BodyExt;
            http::Response::builder()
                .status(404)
                .body(http_body_util::Full::new(Bytes::from_static(b"not found")).boxed())
                .unwrap()
        }
    }
}

// === an rmcp client that records progress notifications ===

struct ProgressRecorder {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
    version: ProtocolVersion,
}

impl ClientHandler for ProgressRecorder {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("sandbox-mcp-tests", "0"),
        )
        .with_protocol_version(self.version.clone())
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }
}

struct TestClient {
    service: RunningService<RoleClient, ProgressRecorder>,
    progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
}

impl TestClient {
    async fn tool_names(&self) -> Vec<String> {
        self.service
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect()
    }

    async fn call(&self, name: &str, arguments: Value) -> CallToolResult {
        let Value::Object(arguments) = arguments else {
            panic!("arguments must be an object");
        };
        self.service
            .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(arguments))
            .await
            .unwrap()
    }

    async fn close(self) {
        let _ = self.service.cancel().await;
    }
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.clone()))
        .collect()
}

fn json_of(result: &CallToolResult) -> Value {
    serde_json::from_str(&text_of(result)).unwrap()
}

fn is_error(result: &CallToolResult) -> bool {
    result.is_error == Some(true)
}

fn with_sandbox_tools(tools: &[&str]) -> Vec<String> {
    tools
        .iter()
        .chain(
            [
                "SANDBOX_ECHO",
                "SANDBOX_SLOW_OPERATION",
                "SANDBOX_LARGE_RESULT",
            ]
            .iter(),
        )
        .map(|name| (*name).to_owned())
        .collect()
}

// === tool behaviour through the rmcp client ===

#[tokio::test]
async fn tool_list_mirrors_the_sessions_live_config() {
    let harness = Harness::start().await;
    harness.world.add_session(
        "trs_manual",
        "carol",
        &DEFAULT_TOOLS[..2]
            .iter()
            .chain(&DEFAULT_TOOLS[3..])
            .copied()
            .collect::<Vec<_>>(),
        None,
    );
    let client = harness.client("trs_a", ProtocolVersion::V_2025_11_25).await;
    assert_eq!(
        client.tool_names().await,
        with_sandbox_tools(&DEFAULT_TOOLS)
    );
    let manual = harness
        .client("trs_manual", ProtocolVersion::V_2025_11_25)
        .await;
    let names = manual.tool_names().await;
    assert!(
        !names
            .iter()
            .any(|name| name == "COMPOSIO_MANAGE_CONNECTIONS")
    );
    assert_eq!(names.len(), 6);
    // A disabled tool is not callable either: unknown tools are protocol errors (-32602).
    let refused = manual
        .service
        .call_tool(
            CallToolRequestParams::new("COMPOSIO_MANAGE_CONNECTIONS")
                .with_arguments(json!({"toolkits": ["gmail"]}).as_object().unwrap().clone()),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("Unknown tool"), "{refused}");

    // The list is read live: a config change shows on the next tools/list.
    harness.world.add_session(
        "trs_a",
        "alice",
        &["COMPOSIO_SEARCH_TOOLS", "COMPOSIO_REMOTE_WORKBENCH"],
        None,
    );
    assert_eq!(
        client.tool_names().await,
        with_sandbox_tools(&["COMPOSIO_SEARCH_TOOLS", "COMPOSIO_REMOTE_WORKBENCH"])
    );
    // A listed tool the sandbox cannot emulate answers a clear tool error, not a fake result.
    let workbench = client
        .call("COMPOSIO_REMOTE_WORKBENCH", json!({"code": "print(1)"}))
        .await;
    assert!(is_error(&workbench));
    assert!(
        text_of(&workbench).contains("does not emulate"),
        "{}",
        text_of(&workbench)
    );
    client.close().await;
    manual.close().await;
}

#[tokio::test]
async fn echo_answers_and_rejects_bad_arguments() {
    let harness = Harness::start().await;
    let client = harness.client("trs_a", ProtocolVersion::V_2025_11_25).await;
    let echoed = client
        .call("SANDBOX_ECHO", json!({"message": "héllo wörld"}))
        .await;
    assert!(!is_error(&echoed));
    assert_eq!(text_of(&echoed), "Echo: héllo wörld");
    let missing = client.call("SANDBOX_ECHO", json!({})).await;
    assert!(is_error(&missing));
    assert!(
        text_of(&missing).contains("missing field `message`"),
        "{}",
        text_of(&missing)
    );
    client.close().await;
}

#[tokio::test]
async fn search_finds_tools_with_connection_status_and_respects_enabled_toolkits() {
    let harness = Harness::start().await;
    let client = harness.client("trs_a", ProtocolVersion::V_2025_11_25).await;
    let query = json!({"queries": [{"use_case": "send an email to my boss"}], "session": {"generate_id": true}});
    let before = json_of(&client.call("COMPOSIO_SEARCH_TOOLS", query.clone()).await);
    let first = &before["data"]["results"][0]["tools"][0];
    assert_eq!(first["tool_slug"], "GMAIL_SEND_EMAIL");
    assert_eq!(first["toolkit"], "gmail");
    assert_eq!(first["connected"], false);
    assert!(
        before["data"]["session"]["id"]
            .as_str()
            .unwrap()
            .starts_with("srch_")
    );

    harness.world.connect("alice", "gmail");
    let after = json_of(&client.call("COMPOSIO_SEARCH_TOOLS", query).await);
    assert_eq!(after["data"]["results"][0]["tools"][0]["connected"], true);
    let statuses = after["data"]["toolkit_connection_statuses"]
        .as_array()
        .unwrap();
    assert!(
        statuses
            .iter()
            .any(|s| s["toolkit"] == "gmail" && s["has_active_connection"] == true)
    );

    let empty = client
        .call("COMPOSIO_SEARCH_TOOLS", json!({"queries": []}))
        .await;
    assert!(is_error(&empty));
    assert!(text_of(&empty).contains("at least one query"));
    let malformed = client
        .call("COMPOSIO_SEARCH_TOOLS", json!({"queries": "email"}))
        .await;
    assert!(is_error(&malformed));
    assert!(text_of(&malformed).starts_with("Invalid arguments for COMPOSIO_SEARCH_TOOLS"));
    client.close().await;

    // A session limited to github does not see gmail tools at all.
    harness
        .world
        .add_session("trs_gh", "alice", &DEFAULT_TOOLS, Some(&["github"]));
    let limited = harness
        .client("trs_gh", ProtocolVersion::V_2025_11_25)
        .await;
    let found = json_of(
        &limited
            .call("COMPOSIO_SEARCH_TOOLS", json!({"queries": [{"use_case": "send an email"}, {"use_case": "create an issue"}]}))
            .await,
    );
    let slugs: Vec<&str> = found["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["tools"].as_array().unwrap().iter())
        .map(|t| t["tool_slug"].as_str().unwrap())
        .collect();
    assert!(slugs.contains(&"GITHUB_CREATE_ISSUE"), "{slugs:?}");
    assert!(
        slugs.iter().all(|slug| slug.starts_with("GITHUB_")),
        "{slugs:?}"
    );
    limited.close().await;
}

#[tokio::test]
async fn get_tool_schemas_returns_input_schemas_and_reports_unknown_slugs() {
    let harness = Harness::start().await;
    let client = harness.client("trs_a", ProtocolVersion::V_2025_11_25).await;
    let found = json_of(
        &client
            .call(
                "COMPOSIO_GET_TOOL_SCHEMAS",
                json!({"tool_slugs": ["GMAIL_SEND_EMAIL", "NOPE_TOOL"]}),
            )
            .await,
    );
    let schema = &found["data"]["tool_schemas"]["GMAIL_SEND_EMAIL"]["input_schema"];
    assert_eq!(
        schema["required"],
        json!(["recipient_email", "subject", "body"])
    );
    assert_eq!(found["data"]["not_found"], json!(["NOPE_TOOL"]));
    let none = client
        .call(
            "COMPOSIO_GET_TOOL_SCHEMAS",
            json!({"tool_slugs": ["NOPE_TOOL"]}),
        )
        .await;
    assert!(is_error(&none));
    assert!(text_of(&none).contains("NOPE_TOOL"));
    client.close().await;
}

#[tokio::test]
async fn multi_execute_runs_connected_tools_and_reports_each_failure() {
    let harness = Harness::start().await;
    harness.world.connect("alice", "gmail");
    let client = harness.client("trs_a", ProtocolVersion::V_2025_11_25).await;
    let send =
        json!({"recipient_email": "boss@example.com", "subject": "Hi", "body": "Report attached"});
    let call = json!({"thought": "mixed batch", "tools": [
        {"tool_slug": "GMAIL_SEND_EMAIL", "arguments": send},
        {"tool_slug": "GITHUB_CREATE_ISSUE", "arguments": {"owner": "o", "repo": "r", "title": "t"}},
        {"tool_slug": "GMAIL_SEND_EMAIL", "arguments": {"recipient_email": "x@example.com"}},
        {"tool_slug": "NOPE_DO_THING", "arguments": {}},
        {"tool_slug": "HACKERNEWS_GET_FRONTPAGE", "arguments": {"limit": 2}},
    ]});
    let result = client
        .call("COMPOSIO_MULTI_EXECUTE_TOOL", call.clone())
        .await;
    // Partial failure: the call succeeds and each entry says what happened.
    assert!(!is_error(&result));
    let body = json_of(&result);
    assert_eq!(body["successful"], false);
    assert_eq!(body["data"]["success_count"], 2);
    assert_eq!(body["data"]["error_count"], 3);
    let results = body["data"]["results"].as_array().unwrap();
    let sent = &results[0]["response"];
    assert_eq!(sent["successful"], true);
    assert!(sent["data"]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(sent["data"]["to"], "boss@example.com");
    assert_eq!(results[1]["tool_slug"], "GITHUB_CREATE_ISSUE");
    let not_connected = results[1]["response"]["error"].as_str().unwrap();
    assert!(
        not_connected.starts_with(
            "ToolRouterV2_NoActiveConnection: No active connection for toolkit github"
        ),
        "{not_connected}"
    );
    assert!(not_connected.contains("COMPOSIO_MANAGE_CONNECTIONS"));
    assert!(
        results[2]["response"]["error"]
            .as_str()
            .unwrap()
            .contains("missing required argument 'subject'")
    );
    assert_eq!(
        results[3]["response"]["error"],
        "Tool NOPE_DO_THING not found"
    );
    assert_eq!(
        results[4]["response"]["data"]["stories"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Deterministic: the same arguments give the same message id.
    let again = json_of(&client.call("COMPOSIO_MULTI_EXECUTE_TOOL", call).await);
    assert_eq!(
        again["data"]["results"][0]["response"]["data"]["id"],
        sent["data"]["id"]
    );

    // Nothing ran: the whole call is an error.
    let all_failed = client
        .call("COMPOSIO_MULTI_EXECUTE_TOOL", json!({"tools": [{"tool_slug": "SLACK_SEND_MESSAGE", "arguments": {"channel": "#x", "text": "hi"}}]}))
        .await;
    assert!(is_error(&all_failed));
    assert!(text_of(&all_failed).contains("No active connection for toolkit slack"));

    let too_many: Vec<Value> = (0..51)
        .map(|_| json!({"tool_slug": "HACKERNEWS_GET_FRONTPAGE", "arguments": {}}))
        .collect();
    let refused = client
        .call("COMPOSIO_MULTI_EXECUTE_TOOL", json!({"tools": too_many}))
        .await;
    assert!(is_error(&refused));
    assert!(text_of(&refused).contains("between 1 and 50"));
    let fifty: Vec<Value> = (0..50)
        .map(|_| json!({"tool_slug": "HACKERNEWS_GET_FRONTPAGE", "arguments": {}}))
        .collect();
    let accepted = json_of(
        &client
            .call("COMPOSIO_MULTI_EXECUTE_TOOL", json!({"tools": fifty}))
            .await,
    );
    assert_eq!(accepted["data"]["success_count"], 50);
    client.close().await;
}

#[tokio::test]
async fn manage_connections_reports_status_and_mints_links() {
    let harness = Harness::start().await;
    harness.world.connect("alice", "github");
    let client = harness.client("trs_a", ProtocolVersion::V_2025_11_25).await;
    let result = client
        .call(
            "COMPOSIO_MANAGE_CONNECTIONS",
            json!({"toolkits": ["github", "Gmail", "noconfig", "nosuch"]}),
        )
        .await;
    assert!(!is_error(&result));
    let body = json_of(&result);
    let entries = body["data"]["results"].as_array().unwrap();
    assert_eq!(entries[0]["status"], "ACTIVE");
    assert_eq!(entries[1]["toolkit"], "gmail");
    assert_eq!(entries[1]["status"], "INITIATED");
    assert_eq!(entries[1]["redirect_url"], "http://127.0.0.1:1/link/ln_1");
    assert_eq!(entries[2]["status"], "ERROR");
    assert_eq!(
        entries[2]["error"],
        "No auth config found for toolkit noconfig"
    );
    assert_eq!(entries[3]["error"], "Unknown toolkit 'nosuch'");
    assert_eq!(
        *harness.world.links.lock().unwrap(),
        vec![("trs_a".to_owned(), "gmail".to_owned())]
    );
    let all_bad = client
        .call(
            "COMPOSIO_MANAGE_CONNECTIONS",
            json!({"toolkits": ["nosuch"]}),
        )
        .await;
    assert!(is_error(&all_bad));
    let empty = client
        .call("COMPOSIO_MANAGE_CONNECTIONS", json!({"toolkits": []}))
        .await;
    assert!(is_error(&empty));
    client.close().await;
}

#[tokio::test]
async fn wait_for_connections_returns_once_the_toolkit_connects() {
    let harness = Harness::start().await;
    harness.world.add_session(
        "trs_wait",
        "dave",
        &[
            "COMPOSIO_MULTI_EXECUTE_TOOL",
            "COMPOSIO_WAIT_FOR_CONNECTIONS",
        ],
        None,
    );
    let client = harness
        .client("trs_wait", ProtocolVersion::V_2025_11_25)
        .await;
    let timed_out = client
        .call(
            "COMPOSIO_WAIT_FOR_CONNECTIONS",
            json!({"toolkits": ["gmail"], "timeout_seconds": 0}),
        )
        .await;
    assert!(is_error(&timed_out));
    assert!(text_of(&timed_out).contains("gmail still not connected"));

    let world = harness.world.clone();
    let waiting = tokio::spawn(async move {
        client
            .call(
                "COMPOSIO_WAIT_FOR_CONNECTIONS",
                json!({"toolkits": ["gmail"], "timeout_seconds": 60}),
            )
            .await
    });
    // Connect only once the call is in flight and has found gmail missing at least twice.
    let checks_before = world
        .connection_checks
        .load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::timeout(PATIENCE, async {
        while world
            .connection_checks
            .load(std::sync::atomic::Ordering::SeqCst)
            < checks_before + 2
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the tool never checked the connection");
    assert!(!waiting.is_finished());
    world.connect("dave", "gmail");
    let result = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(!is_error(&result), "{}", text_of(&result));
    assert_eq!(json_of(&result)["data"]["connected"], json!(["gmail"]));
}

#[tokio::test]
async fn slow_operation_sends_one_progress_notification_per_step() {
    let harness = Harness::start().await;
    for version in [ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2026_07_28] {
        let mut client = harness.client("trs_a", version.clone()).await;
        let result = client
            .call(
                "SANDBOX_SLOW_OPERATION",
                json!({"steps": 5, "interval_ms": 20}),
            )
            .await;
        assert!(!is_error(&result), "{version}: {}", text_of(&result));
        assert_eq!(
            text_of(&result),
            "Completed 5 steps (5 progress notifications sent)"
        );
        let mut seen = Vec::new();
        while let Ok(progress) = client.progress.try_recv() {
            seen.push((progress.progress, progress.total, progress.message));
        }
        let expected: Vec<_> = (1..=5)
            .map(|step| {
                (
                    f64::from(step),
                    Some(5.0),
                    Some(format!("step {step} of 5")),
                )
            })
            .collect();
        assert_eq!(seen, expected, "{version}");
        let too_many = client
            .call(
                "SANDBOX_SLOW_OPERATION",
                json!({"steps": 1001, "interval_ms": 1}),
            )
            .await;
        assert!(is_error(&too_many));
        let negative = client
            .call(
                "SANDBOX_SLOW_OPERATION",
                json!({"steps": -1, "interval_ms": 1}),
            )
            .await;
        assert!(is_error(&negative));
        client.close().await;
    }
}

#[tokio::test]
async fn large_result_arrives_intact_up_to_the_cap() {
    let harness = Harness::start().await;
    let client = harness.client("trs_a", ProtocolVersion::V_2025_11_25).await;
    let result = client
        .call("SANDBOX_LARGE_RESULT", json!({"kilobytes": 8192}))
        .await;
    assert!(!is_error(&result));
    let text = text_of(&result);
    assert_eq!(text.len(), 8192 * 1024);
    assert_eq!(text, large_text(8192));
    for (index, line) in text.lines().enumerate() {
        assert!(
            line.starts_with(&format!("line {index:08} ")),
            "line {index}"
        );
        assert_eq!(line.len(), 1023);
    }
    for kilobytes in [0, 8193] {
        let refused = client
            .call("SANDBOX_LARGE_RESULT", json!({"kilobytes": kilobytes}))
            .await;
        assert!(is_error(&refused));
        assert!(text_of(&refused).contains("between 1 and 8192"));
    }
    client.close().await;
}

#[tokio::test]
async fn stateless_2026_client_lists_and_calls() {
    let harness = Harness::start().await;
    let client = harness.client("trs_b", ProtocolVersion::V_2026_07_28).await;
    assert_eq!(
        client.tool_names().await,
        with_sandbox_tools(&DEFAULT_TOOLS)
    );
    assert_eq!(
        text_of(&client.call("SANDBOX_ECHO", json!({"message": "x"})).await),
        "Echo: x"
    );
    client.close().await;
}

// === wire behaviour over raw HTTP ===

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// One parsed SSE event.
#[derive(Debug, Default, Clone)]
struct SseEvent {
    id: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Reads SSE events from a streaming response body.
struct SseReader {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: String,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        Self {
            stream: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut data_lines = Vec::new();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        event.id = Some(id.trim().to_owned());
                    } else if let Some(data) = line.strip_prefix("data:") {
                        data_lines.push(data.trim_start().to_owned());
                    }
                }
                event.data = data_lines.join("\n");
                return Some(event);
            }
            let chunk = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("SSE stream stalled")?
                .ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events up to and including the JSON-RPC response with `id`.
    async fn until_response(&mut self, id: i64) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            let done = event.json().is_some_and(|message| message["id"] == id);
            events.push(event);
            if done {
                return events;
            }
        }
        panic!("stream ended before response {id}: {events:?}");
    }
}

struct RawSession {
    http: reqwest::Client,
    url: String,
    session_id: String,
}

impl RawSession {
    async fn open(url: String) -> Self {
        let http = reqwest::Client::new();
        let response = http
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let session_id = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let events = SseReader::new(response).until_response(1).await;
        let init = events.last().unwrap().json().unwrap();
        assert_eq!(init["result"]["serverInfo"]["name"], "toolgate-sandbox");
        let session = Self {
            http,
            url,
            session_id,
        };
        let initialized = session
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(initialized.status(), 202);
        session
    }

    async fn post(&self, message: Value) -> reqwest::Response {
        self.http
            .post(&self.url)
            .header("accept", ACCEPT_BOTH)
            .header("mcp-session-id", &self.session_id)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&message)
            .send()
            .await
            .unwrap()
    }

    async fn get_stream(&self, last_event_id: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.session_id)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.unwrap()
    }
}

fn progress_events(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .filter_map(SseEvent::json)
        .filter(|message| message["method"] == "notifications/progress")
        .map(|message| message["params"]["progress"].clone())
        .collect()
}

#[tokio::test]
async fn progress_is_only_sent_when_the_request_carries_a_token() {
    let harness = Harness::start().await;
    let session = RawSession::open(harness.url("trs_a")).await;
    let call = |id: i64, meta: Option<Value>| {
        let mut params =
            json!({"name": "SANDBOX_SLOW_OPERATION", "arguments": {"steps": 3, "interval_ms": 5}});
        if let Some(meta) = meta {
            params["_meta"] = meta;
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
    };
    let with_token = session
        .post(call(2, Some(json!({"progressToken": "tok-7"}))))
        .await;
    assert_eq!(with_token.headers()["content-type"], "text/event-stream");
    let events = SseReader::new(with_token).until_response(2).await;
    assert_eq!(
        progress_events(&events),
        vec![json!(1.0), json!(2.0), json!(3.0)]
    );
    assert!(events.iter().filter_map(SseEvent::json).all(|message| {
        message["method"] != "notifications/progress"
            || message["params"]["progressToken"] == "tok-7"
    }));
    let without = SseReader::new(session.post(call(3, None)).await)
        .until_response(3)
        .await;
    assert!(progress_events(&without).is_empty(), "{without:?}");
    let result = without.last().unwrap().json().unwrap();
    assert_eq!(
        result["result"]["content"][0]["text"],
        "Completed 3 steps (0 progress notifications sent)"
    );
}

#[tokio::test]
async fn a_dropped_stream_resumes_with_last_event_id() {
    let harness = Harness::start().await;
    let session = RawSession::open(harness.url("trs_a")).await;
    let response = session
        .post(
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "SANDBOX_SLOW_OPERATION", "arguments": {"steps": 4, "interval_ms": 50},
            "_meta": {"progressToken": "resume"}}}),
        )
        .await;
    let mut reader = SseReader::new(response);
    // Read up to the first progress notification, then hang up mid-call.
    let first_progress = loop {
        let event = reader.next().await.expect("stream ended early");
        if event
            .json()
            .is_some_and(|m| m["method"] == "notifications/progress")
        {
            break event;
        }
    };
    assert_eq!(first_progress.json().unwrap()["params"]["progress"], 1.0);
    let last_event_id = first_progress
        .id
        .clone()
        .expect("events carry ids for resumption");
    drop(reader);

    let resumed = session.get_stream(Some(&last_event_id)).await;
    assert_eq!(resumed.status(), 200);
    let events = SseReader::new(resumed).until_response(5).await;
    assert_eq!(
        progress_events(&events),
        vec![json!(2.0), json!(3.0), json!(4.0)]
    );
    let result = events.last().unwrap().json().unwrap();
    assert_eq!(
        result["result"]["content"][0]["text"],
        "Completed 4 steps (4 progress notifications sent)"
    );
}

#[tokio::test]
async fn sessions_are_per_trs_session_and_end_on_delete_or_close() {
    let harness = Harness::start().await;
    let session = RawSession::open(harness.url("trs_a")).await;

    // The standalone GET stream opens.
    let stream = session.get_stream(None).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");

    // An Mcp-Session-Id minted under trs_a means nothing under trs_b.
    let foreign = RawSession {
        http: session.http.clone(),
        url: harness.url("trs_b"),
        session_id: session.session_id.clone(),
    };
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"});
    assert_eq!(foreign.post(list.clone()).await.status(), 404);
    assert_eq!(session.post(list.clone()).await.status(), 200);

    // Closing the trs session ends its open streams and forgets its MCP sessions.
    harness.endpoint.close_session("trs_a");
    let mut reader = SseReader::new(stream);
    while let Some(event) = reader.next().await {
        assert!(event.json().is_none(), "unexpected message {event:?}");
    }
    assert_eq!(session.post(list.clone()).await.status(), 404);

    // DELETE ends one MCP session.
    let second = RawSession::open(harness.url("trs_b")).await;
    let deleted = second
        .http
        .delete(&second.url)
        .header("mcp-session-id", &second.session_id)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    assert_eq!(second.post(list).await.status(), 404);
}

#[tokio::test]
async fn a_deleted_trs_session_is_pruned_when_another_starts() {
    let harness = Harness::start().await;
    let session = RawSession::open(harness.url("trs_a")).await;
    let stream = session.get_stream(None).await;
    harness.world.sessions.lock().unwrap().remove("trs_a");
    // First use of trs_b prunes the services of sessions that no longer exist.
    let _other = RawSession::open(harness.url("trs_b")).await;
    let mut reader = SseReader::new(stream);
    while reader.next().await.is_some() {}
    assert!(!harness.endpoint.lock_services().contains_key("trs_a"));
}

#[tokio::test]
async fn host_header_is_checked_for_dns_rebinding() {
    let harness = Harness::start_with(|endpoint| endpoint.with_allowed_hosts(["sandbox"])).await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let send = |host: &'static str| {
        reqwest::Client::new()
            .post(harness.url("trs_a"))
            .header("accept", ACCEPT_BOTH)
            .header("host", host)
            .json(&initialize)
            .send()
    };
    assert_eq!(send("evil.example:80").await.unwrap().status(), 403);
    assert_eq!(send("sandbox:9900").await.unwrap().status(), 200);
    assert_eq!(send("localhost:1234").await.unwrap().status(), 200);
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let harness = Harness::start().await;
    let session = RawSession::open(harness.url("trs_a")).await;
    let stream = session.get_stream(None).await;
    harness.stop.cancel();
    let mut reader = SseReader::new(stream);
    while reader.next().await.is_some() {}
}

// === the official Python SDK as a client ===

/// The pinned third-party peers (`tests/peers/install.sh`): `$TOOLGATE_PEERS`, else
/// `<workspace>/target/peers`.
fn peers_dir() -> std::path::PathBuf {
    std::env::var_os("TOOLGATE_PEERS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/peers"),
        std::path::PathBuf::from,
    )
}

#[tokio::test]
async fn the_python_sdk_uses_sessions_streams_progress_and_tools() {
    let python = peers_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "missing test peer {}: run tests/peers/install.sh (Python mcp==2.3.0)",
        python.display()
    );
    let harness = Harness::start().await;
    harness.world.connect("alice", "gmail");
    let run = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(include_str!("testdata/python_client.py"))
        .arg(harness.url("trs_a"))
        .arg("x-api-key:sk_test")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE * 3, run)
        .await
        .expect("the Python client hung")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed: {stderr}");
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(summary["server"], "toolgate-sandbox");
    assert_eq!(summary["protocol"], "2025-11-25");
    assert_eq!(summary["tools"], json!(with_sandbox_tools(&DEFAULT_TOOLS)));
    assert_eq!(summary["echo"], json!(["Echo: from python", false]));
    assert_eq!(summary["echo_bad"][1], true);
    assert!(
        summary["echo_bad"][0]
            .as_str()
            .unwrap()
            .contains("missing field `message`")
    );
    assert_eq!(
        summary["slow"],
        "Completed 4 steps (4 progress notifications sent)"
    );
    assert_eq!(
        summary["progress"],
        json!([
            [1.0, 4.0, "step 1 of 4"],
            [2.0, 4.0, "step 2 of 4"],
            [3.0, 4.0, "step 3 of 4"],
            [4.0, 4.0, "step 4 of 4"]
        ])
    );
    assert_eq!(summary["large_len"], 2048 * 1024);
    assert_eq!(summary["large_ok"], true);
    assert_eq!(summary["multi_is_error"], false);
    let results = &summary["multi"]["data"]["results"];
    assert_eq!(results[0]["response"]["successful"], true);
    assert!(
        results[1]["response"]["error"]
            .as_str()
            .unwrap()
            .starts_with(
                "ToolRouterV2_NoActiveConnection: No active connection for toolkit github"
            )
    );

    // The SDK opened the session's GET stream and ended the session with DELETE on exit.
    let exchanges = harness.exchanges.lock().unwrap().clone();
    assert!(
        exchanges.contains(&(http::Method::GET, 200)),
        "{exchanges:?}"
    );
    assert!(
        exchanges
            .iter()
            .any(|(method, status)| method == http::Method::DELETE && *status < 300),
        "{exchanges:?}"
    );
}

#[test]
fn last_event_id_is_bumped_past_the_event_the_client_has() {
    let bumped = |value: &str| {
        let mut headers = http::HeaderMap::new();
        headers.insert("last-event-id", http::HeaderValue::from_str(value).unwrap());
        super::resume_after_last_event(&mut headers);
        headers["last-event-id"].to_str().unwrap().to_owned()
    };
    assert_eq!(bumped("1/3"), "2/3");
    assert_eq!(bumped("7"), "8");
    // Ids rmcp did not mint are left for rmcp to reject.
    assert_eq!(bumped("abc"), "abc");
    assert_eq!(bumped("1/x"), "1/x");
    assert_eq!(
        bumped(&format!("{}", usize::MAX)),
        format!("{}", usize::MAX)
    );
}

#[tokio::test]
async fn cancelling_a_slow_operation_ends_its_stream_without_a_result() {
    let harness = Harness::start().await;
    let session = RawSession::open(harness.url("trs_a")).await;
    // 1000 steps of 50 ms: if cancellation were ignored the stream would run for 50 s and end
    // with a result; cancelled, it ends early without one.
    let response = session
        .post(
            json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {
            "name": "SANDBOX_SLOW_OPERATION", "arguments": {"steps": 1000, "interval_ms": 50},
            "_meta": {"progressToken": "cancel-me"}}}),
        )
        .await;
    let mut reader = SseReader::new(response);
    loop {
        let event = reader
            .next()
            .await
            .expect("stream ended before any progress");
        if event
            .json()
            .is_some_and(|m| m["method"] == "notifications/progress")
        {
            break;
        }
    }
    let cancelled = session
        .post(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 11, "reason": "test"}}),
        )
        .await;
    assert_eq!(cancelled.status(), 202);
    let mut later = Vec::new();
    while let Some(event) = reader.next().await {
        later.push(event);
    }
    let messages: Vec<Value> = later.iter().filter_map(SseEvent::json).collect();
    assert!(
        messages.iter().all(|m| m["id"] != 11),
        "a result arrived after cancel: {messages:?}"
    );
    assert!(
        messages.len() < 100,
        "progress kept coming: {} messages",
        messages.len()
    );
}
