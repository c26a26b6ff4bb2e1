//! The binary's routes over a real socket, with a scripted tracker behind them.

use std::sync::Mutex;

use super::*;
use crate::status::ToolkitView;
use secrecy::SecretString;

const TOKEN: &str = "page-token-0123456789";

/// A tracker stand-in: records hints and disconnects; a hint may apply a scripted change.
struct FakeActions {
    status: watch::Sender<StatusView>,
    hints: Mutex<u32>,
    disconnected: Mutex<Vec<String>>,
    on_hint: Mutex<Option<StatusView>>,
}

impl Actions for FakeActions {
    fn hint(&self) {
        *self.hints.lock().unwrap() += 1;
        if let Some(next) = self.on_hint.lock().unwrap().take() {
            self.status.send_replace(next);
        }
    }

    fn disconnect(
        &self,
        slug: String,
        _account: Option<String>,
    ) -> BoxFuture<'static, Result<(), String>> {
        self.disconnected.lock().unwrap().push(slug);
        Box::pin(async { Ok(()) })
    }
}

fn pending_view() -> StatusView {
    StatusView {
        mode: "composio".into(),
        ready: true,
        gate_open: false,
        user_id: Some("alice".into()),
        toolkits: vec![ToolkitView {
            slug: "gmail".into(),
            name: "Gmail".into(),
            logo: None,
            status: ToolkitStatus::Pending,
            account_id: Some("ca_1".into()),
            connect_url: Some("http://127.0.0.1:9/link/ln_1".into()),
            detail: None,
            ..ToolkitView::unknown("")
        }],
        ..StatusView::default()
    }
}

fn connected_view() -> StatusView {
    let mut view = pending_view();
    view.gate_open = true;
    view.toolkits[0].status = ToolkitStatus::Connected;
    view.toolkits[0].connect_url = None;
    view
}

struct Running {
    base: String,
    actions: Arc<FakeActions>,
    status: watch::Sender<StatusView>,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(token: Option<&str>, view: StatusView) -> Running {
    start_with_csrf(token, view, new_csrf_token()).await
}

async fn start_with_csrf(token: Option<&str>, view: StatusView, csrf_token: String) -> Running {
    let (status_tx, status_rx) = watch::channel(view);
    let actions = Arc::new(FakeActions {
        status: status_tx.clone(),
        hints: Mutex::new(0),
        disconnected: Mutex::new(Vec::new()),
        on_hint: Mutex::new(None),
    });
    // A real gateway with no upstream yet: MCP requests get the "not ready" JSON-RPC error.
    let (_upstream_tx, upstream_rx) = watch::channel(None);
    let (_gate_tx, gate_rx) = watch::channel(toolgate_proxy::gate::GateState::Starting {
        reason: "creating the Composio session".into(),
    });
    let proxy_config = toolgate_proxy::config::ProxyConfig {
        bearer_token: token.map(SecretString::from),
        ..toolgate_proxy::config::ProxyConfig::default()
    };
    let access = Access::new(&proxy_config);
    let gateway = Gateway::new(
        proxy_config,
        upstream_rx,
        gate_rx,
        Arc::new(toolgate_proxy::events::NoEvents),
    )
    .unwrap();
    let app = Arc::new(App {
        access,
        status: status_rx,
        actions: actions.clone(),
        metrics: Metrics::new(),
        csrf_token,
        gateway,
        callback_wait: Duration::from_millis(300),
        multi: None,
        users: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        app,
        toolgate_proxy::limits::ServerLimits::default(),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Running {
        base,
        actions,
        status: status_tx,
        client,
        stop: Some(stop),
        server,
    }
}

impl Running {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.await.unwrap();
    }
}

#[tokio::test]
async fn health_readiness_and_mcp_delegation() {
    let mut not_ready = StatusView {
        mode: "composio".into(),
        not_ready_reason: Some("creating the Composio session".into()),
        ..StatusView::default()
    };
    not_ready.toolkits = pending_view().toolkits;
    let app = start(None, not_ready).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["gate"], "starting");
    assert_eq!(body["toolkits"][0]["status"], "pending");
    assert!(body["toolkits"][0].get("connect_url").is_none());

    app.status.send_replace(pending_view());
    let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["gate"], "closed");
    app.status.send_replace(connected_view());
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["gate"], "open");

    let mcp = app
        .client
        .post(format!("{}/mcp", app.base))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":41,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(mcp.status(), 503);
    let body: serde_json::Value = mcp.json().await.unwrap();
    assert_eq!(body["id"], 41);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("creating the Composio session"),
        "{body}"
    );
    assert_eq!(app.get("/nope").await.status(), 404);
    let post = app
        .client
        .post(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    app.stop().await;
}

#[tokio::test]
async fn connections_page_host_and_origin_rules() {
    let app = start(None, pending_view()).await;
    let page = app.get("/connections").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("http-equiv=\"refresh\""));
    assert!(html.contains("href=\"http://127.0.0.1:9/link/ln_1\""));

    let rebinding = app
        .client
        .get(format!("{}/connections", app.base))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status(), 403);
    let cross_site = app
        .client
        .post(format!("{}/connections/disconnect", app.base))
        .header("origin", "https://attacker.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("toolkit=gmail&csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert!(app.actions.disconnected.lock().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn disconnect_needs_confirmation_and_csrf() {
    let app = start(None, connected_view()).await;
    assert_eq!(
        app.get("/connections/disconnect?toolkit=gmail")
            .await
            .status(),
        200
    );
    let csrf = form_csrf(&app).await;
    assert!(
        app.actions.disconnected.lock().unwrap().is_empty(),
        "GET changes nothing"
    );

    assert_eq!(post_disconnect(&app, "forged").await, 403);
    assert!(app.actions.disconnected.lock().unwrap().is_empty());
    let done = app
        .client
        .post(format!("{}/connections/disconnect", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("toolkit=gmail&csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(
        done.headers()["location"],
        "/connections?disconnected=gmail"
    );
    assert_eq!(*app.actions.disconnected.lock().unwrap(), ["gmail"]);
    let notice = app
        .get("/connections?disconnected=gmail")
        .await
        .text()
        .await
        .unwrap();
    assert!(notice.contains("Gmail was disconnected."));
    let injected = app
        .get("/connections?disconnected=%3Cb%3Ehello")
        .await
        .text()
        .await
        .unwrap();
    assert!(!injected.contains("hello"));
    assert_eq!(
        app.get("/connections/disconnect?toolkit=slack")
            .await
            .status(),
        404
    );
    app.stop().await;
}

/// The CSRF token in a confirm page's form.
async fn form_csrf(app: &Running) -> String {
    let html = app
        .get("/connections/disconnect?toolkit=gmail")
        .await
        .text()
        .await
        .unwrap();
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

async fn post_disconnect(app: &Running, csrf: &str) -> reqwest::StatusCode {
    app.client
        .post(format!("{}/connections/disconnect", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("toolkit=gmail&csrf={csrf}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_form_served_by_one_replica_posts_to_another_with_the_same_session_key() {
    let key = [SecretString::from("0123456789abcdef0123456789abcdef")];
    let other_key = [SecretString::from("fedcba9876543210fedcba9876543210")];
    let token = |keys: &[SecretString]| single_user_csrf_token(keys, Some("alice"));
    let first = start_with_csrf(None, connected_view(), token(&key)).await;
    let second = start_with_csrf(None, connected_view(), token(&key)).await;
    let rotated_away = start_with_csrf(None, connected_view(), token(&other_key)).await;
    let keyless = start_with_csrf(None, connected_view(), token(&[])).await;

    let csrf = form_csrf(&first).await;
    assert_eq!(post_disconnect(&rotated_away, &csrf).await, 403);
    assert_eq!(post_disconnect(&keyless, &csrf).await, 403);
    assert_eq!(post_disconnect(&second, &csrf).await, 303);
    assert_eq!(*second.actions.disconnected.lock().unwrap(), ["gmail"]);
    // Without a session key each process has its own random token.
    assert_ne!(form_csrf(&keyless).await, token(&[]));
    // Another user's tag never passes for this one.
    assert_ne!(single_user_csrf_token(&key, Some("bob")), csrf);
    for app in [first, second, rotated_away, keyless] {
        app.stop().await;
    }
}

// Paused clock: the spoofed callback waits out `callback_wait` in virtual time.
#[tokio::test(start_paused = true)]
async fn callback_is_a_hint_and_reports_what_composio_confirms() {
    let app = start(None, pending_view()).await;
    // A spoofed success: the tracker (here: nothing changes) does not confirm it.
    let spoofed = tokio::time::timeout(
        Duration::from_secs(30),
        app.get("/callback?status=success&connected_account_id=ca_1"),
    )
    .await
    .unwrap();
    let html = spoofed.text().await.unwrap();
    assert!(html.contains("still confirming"), "{html}");
    assert_eq!(*app.actions.hints.lock().unwrap(), 1);
    assert!(!app.status.borrow().gate_open);

    // A real one: the re-check the hint triggers finds the account active.
    *app.actions.on_hint.lock().unwrap() = Some(connected_view());
    let html = app
        .get("/callback?tenant=a&status=success&connected_account_id=ca_1")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Gmail is connected"), "{html}");
    assert!(html.contains("href=\"/connections\""));

    let failed = app
        .get("/callback?status=failed&connected_account_id=ca_1")
        .await
        .text()
        .await
        .unwrap();
    assert!(failed.contains("was not connected"), "{failed}");
    app.stop().await;
}

#[tokio::test]
async fn token_protects_pages_and_metrics_but_not_probes() {
    let app = start(Some(TOKEN), pending_view()).await;
    assert_eq!(app.get("/connections").await.status(), 401);
    assert_eq!(app.get("/callback?status=success").await.status(), 401);
    assert_eq!(app.get("/metrics").await.status(), 401);
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);

    assert_eq!(app.get("/connections?token=wrong").await.status(), 401);
    let login = app.get(&format!("/connections?token={TOKEN}")).await;
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/connections");
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let cookie_pair = cookie.split(';').next().unwrap().to_owned();
    let page = app
        .client
        .get(format!("{}/connections", app.base))
        .header("cookie", cookie_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("toolgate_gate_open"));
    app.stop().await;
}
