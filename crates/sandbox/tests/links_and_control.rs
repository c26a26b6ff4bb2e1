//! The hosted Connect Link page and the `/_sandbox/` control plane over real HTTP: Allow/Deny
//! with callbacks, expiry, revoke, injected faults (status, Retry-After, delay, dropped
//! connections, outages) and the request log.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{start, start_with};
use toolgate_sandbox::{DEMO_API_KEY, SandboxConfig};

const SESSION: &str = "/api/v3.1/tool_router/session";

fn location(answer: &support::Answer) -> String {
    answer
        .headers
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn allow_activates_and_redirects_keeping_the_callback_query() {
    let (_sandbox, client) = start().await;
    let session = client
        .session(json!({"user_id": "ann <b>&</b>", "manage_connections": {"enable": false}}))
        .await;
    let (account, token, redirect_url) = client
        .link(&session, json!({"toolkit": "gmail", "callback_url": "http://127.0.0.1:9/callback?user_id=u1&source=x"}))
        .await;
    assert!(
        account.starts_with("ca_") && token.starts_with("ln_"),
        "{account} {token}"
    );
    assert_eq!(redirect_url, format!("{}/link/{token}", client.base));
    // A new account passes through INITIALIZING (100 ms) on its way to INITIATED.
    let fresh = client.account_status(&account).await;
    assert!(
        matches!(fresh.as_str(), "INITIALIZING" | "INITIATED"),
        "{fresh}"
    );

    // The page names toolkit and user (escaped) and posts to the control plane.
    let page = client
        .send(Method::GET, &format!("/link/{token}"), None, None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/html"))
    );
    assert!(page.text.contains("Gmail"), "{}", page.text);
    assert!(
        page.text.contains("ann &lt;b&gt;&amp;&lt;/b&gt;"),
        "user id escaped: {}",
        page.text
    );
    assert!(!page.text.contains("<b>&</b>"));
    assert!(page.text.contains(&format!(
        "action=\"{}/_sandbox/links/{token}/allow\"",
        client.base
    )));
    assert!(page.text.contains(&format!(
        "action=\"{}/_sandbox/links/{token}/deny\"",
        client.base
    )));
    assert!(page.text.contains("method=\"post\""));

    // Allow, as the browser's form post does.
    let allowed = client
        .control(&format!("/_sandbox/links/{token}/allow"), None)
        .await;
    assert_eq!(allowed.status, StatusCode::SEE_OTHER);
    assert_eq!(
        location(&allowed),
        format!(
            "http://127.0.0.1:9/callback?user_id=u1&source=x&status=success&connected_account_id={account}"
        )
    );
    let fetched = client
        .get(&format!("/api/v3.1/connected_accounts/{account}"))
        .await;
    assert_eq!(fetched.str("/status"), "ACTIVE");
    assert!(fetched.json["status_reason"].is_null());
    let listed = client
        .get(&format!("{SESSION}/{session}/toolkits?toolkits=gmail"))
        .await;
    assert_eq!(
        listed.json["items"][0]["connected_account"]["status"],
        "ACTIVE"
    );

    // A link is answered once; the page then shows the status.
    client
        .control(&format!("/_sandbox/links/{token}/deny"), None)
        .await
        .assert_error(409);
    let page = client
        .send(Method::GET, &format!("/link/{token}"), None, None)
        .await;
    assert!(
        page.text.contains("ACTIVE") && !page.text.contains("/allow\""),
        "{}",
        page.text
    );
    let unknown = client
        .send(Method::GET, "/link/ln_unknown", None, None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    client
        .control("/_sandbox/links/ln_unknown/allow", None)
        .await
        .assert_error(404);
    client
        .send(Method::POST, &format!("/link/{token}"), None, None)
        .await
        .assert_error(405);
}

#[tokio::test]
async fn deny_fails_the_account_and_reports_failure() {
    let (_sandbox, client) = start().await;
    // The session's manage_connections.callback_url is the default callback of its links.
    let session = client
        .session(json!({"user_id": "ben", "manage_connections": {"enable": false, "callback_url": "https://app.example/done"}}))
        .await;
    let (account, token, _) = client.link(&session, json!({"toolkit": "github"})).await;
    let denied = client
        .control(&format!("/_sandbox/links/{token}/deny"), None)
        .await;
    assert_eq!(denied.status, StatusCode::SEE_OTHER);
    assert_eq!(
        location(&denied),
        format!("https://app.example/done?status=failed&connected_account_id={account}")
    );
    let fetched = client
        .get(&format!("/api/v3.1/connected_accounts/{account}"))
        .await;
    assert_eq!(fetched.str("/status"), "FAILED");
    assert!(!fetched.str("/status_reason").is_empty());
}

#[tokio::test]
async fn without_a_callback_the_user_is_told_to_close_the_tab() {
    let (_sandbox, client) = start().await;
    let session = client.session(json!({"user_id": "cleo"})).await;
    let (account, token, _) = client.link(&session, json!({"toolkit": "slack"})).await;
    let answered = client
        .control(&format!("/_sandbox/links/{token}/allow"), None)
        .await;
    assert_eq!(answered.status, StatusCode::OK);
    assert!(
        answered.text.contains("close this tab") && answered.text.contains("Slack"),
        "{}",
        answered.text
    );
    assert_eq!(client.account_status(&account).await, "ACTIVE");
}

#[tokio::test]
async fn revoke_and_expire_controls() {
    let (_sandbox, client) = start().await;
    let session = client.session(json!({"user_id": "dora"})).await;
    let (active, token, _) = client.link(&session, json!({"toolkit": "notion"})).await;
    client
        .control(&format!("/_sandbox/links/{token}/allow"), None)
        .await;
    let revoked = client
        .control(&format!("/_sandbox/accounts/{active}/revoke"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(revoked.str("/status"), "REVOKED");
    assert_eq!(client.account_status(&active).await, "REVOKED");
    let listed = client
        .get(&format!("{SESSION}/{session}/toolkits?toolkits=notion"))
        .await;
    assert_eq!(
        listed.json["items"][0]["connected_account"]["status"],
        "REVOKED"
    );

    let (pending, token, _) = client.link(&session, json!({"toolkit": "linear"})).await;
    let expired = client
        .control(&format!("/_sandbox/accounts/{pending}/expire"), None)
        .await;
    assert_eq!(expired.str("/status"), "EXPIRED");
    let fetched = client
        .get(&format!("/api/v3.1/connected_accounts/{pending}"))
        .await;
    assert_eq!(
        fetched.str("/status_reason"),
        "Connection initiation did not complete within 10 minutes"
    );
    client
        .control(&format!("/_sandbox/links/{token}/allow"), None)
        .await
        .assert_error(409);
    // INACTIVE is recoverable: deactivate, then activate again.
    let inactive = client
        .control(&format!("/_sandbox/accounts/{pending}/deactivate"), None)
        .await;
    assert_eq!(inactive.str("/status"), "INACTIVE");
    let listed = client
        .get(&format!("{SESSION}/{session}/toolkits?toolkits=linear"))
        .await;
    assert_eq!(
        listed.json["items"][0]["connected_account"]["status"],
        "INACTIVE"
    );
    let active = client
        .control(&format!("/_sandbox/accounts/{pending}/activate"), None)
        .await;
    assert_eq!(active.str("/status"), "ACTIVE");
    assert!(active.json["status_reason"].is_null());
    client
        .control("/_sandbox/accounts/ca_unknown12345/revoke", None)
        .await
        .assert_error(404);
    client
        .control("/_sandbox/accounts/nope/expire", None)
        .await
        .assert_error(400);
}

#[tokio::test]
async fn an_expired_link_page_leads_back_to_the_application() {
    let (_sandbox, client) = start().await;
    let session = client.session(json!({"user_id": "eve"})).await;
    let callback = "http://127.0.0.1:9/callback?user=eve";
    // With a callback the page links back to it (the application can mint a new link); without
    // one there is nowhere to go back to, and no dead link is shown.
    for (link, goes_back) in [
        (json!({"toolkit": "gmail", "callback_url": callback}), true),
        (json!({"toolkit": "github"}), false),
    ] {
        let (account, token, _) = client.link(&session, link).await;
        let page = format!("/link/{token}");
        let open = client.send(Method::GET, &page, None, None).await;
        assert!(
            !open.text.contains("Back to the application"),
            "{}",
            open.text
        );
        client
            .control(&format!("/_sandbox/accounts/{account}/expire"), None)
            .await;
        let expired = client.send(Method::GET, &page, None, None).await.text;
        let back = format!(
            "href=\"{}&amp;status=failed&amp;connected_account_id={account}\"",
            callback.replace('&', "&amp;")
        );
        assert!(expired.contains("EXPIRED"), "{expired}");
        assert_eq!(expired.contains(&back), goes_back, "{expired}");
        assert_eq!(expired.contains("Back to the application"), goes_back);
    }
}

/// Lazy expiry over HTTP with the real clock and a tiny TTL (the paused-clock version is a
/// unit test of the store). Polls with a bounded deadline instead of sleeping.
#[tokio::test]
async fn pending_links_expire_after_the_configured_ttl() {
    let config = SandboxConfig {
        link_ttl: Duration::from_millis(200),
        ..SandboxConfig::default()
    };
    let (_sandbox, client) = start_with(config).await;
    let session = client.session(json!({"user_id": "eve"})).await;
    let (account, token, _) = client.link(&session, json!({"toolkit": "gmail"})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client.account_status(&account).await != "EXPIRED" {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fetched = client
        .get(&format!("/api/v3.1/connected_accounts/{account}"))
        .await;
    assert_eq!(
        fetched.str("/status_reason"),
        "Connection initiation did not complete within 200 milliseconds"
    );
    client
        .control(&format!("/_sandbox/links/{token}/allow"), None)
        .await
        .assert_error(409);
}

#[tokio::test]
async fn faults_answer_with_status_and_retry_after_then_recover() {
    let (_sandbox, client) = start().await;
    let fault = json!({"path_prefix": "/api/v3.1/connected_accounts", "status": 503, "retry_after": 7, "count": 2});
    assert_eq!(
        client
            .control("/_sandbox/faults", Some(&fault))
            .await
            .status,
        StatusCode::CREATED
    );
    for _ in 0..2 {
        let failed = client.get("/api/v3.1/connected_accounts").await;
        failed.assert_error(503);
        assert_eq!(
            failed
                .headers
                .get("retry-after")
                .and_then(|value| value.to_str().ok()),
            Some("7")
        );
    }
    assert_eq!(
        client.get("/api/v3.1/connected_accounts").await.status,
        StatusCode::OK,
        "count ran out"
    );
    // Other paths were never affected.
    assert_eq!(
        client.post(SESSION, &json!({"user_id": "u"})).await.status,
        StatusCode::CREATED
    );

    // 429 uses the plain documented body and the rate-limit headers.
    let limited = json!({"path_prefix": "/api/", "status": 429, "retry_after": 1, "count": 1});
    client.control("/_sandbox/faults", Some(&limited)).await;
    let answer = client.post(SESSION, &json!({"user_id": "u"})).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        answer.json["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("Rate limit exceeded"))
    );
    assert!(answer.json.get("error").is_none());
    assert_eq!(
        answer
            .headers
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        answer
            .headers
            .get("x-ratelimit-remaining")
            .and_then(|value| value.to_str().ok()),
        Some("0")
    );
    assert!(answer.headers.contains_key("x-request-id"));

    // Invalid faults are refused.
    client
        .control(
            "/_sandbox/faults",
            Some(&json!({"path_prefix": "/", "status": 1000})),
        )
        .await
        .assert_error(400);
    client
        .control(
            "/_sandbox/faults",
            Some(&json!({"path_prefix": "/", "state": 500})),
        )
        .await
        .assert_error(400);
}

#[tokio::test]
async fn faults_delay_requests() {
    let (_sandbox, client) = start().await;
    let fault = json!({"path_prefix": "/api/v3.1/connected_accounts", "delay_ms": 300, "count": 1});
    client.control("/_sandbox/faults", Some(&fault)).await;
    let started = std::time::Instant::now();
    let answer = client.get("/api/v3.1/connected_accounts").await;
    // A lower bound only: the delay must have happened; the answer is then normal.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn outage_drops_connections_until_cleared() {
    let (_sandbox, client) = start().await;
    // No count: every matching request until DELETE /_sandbox/faults.
    client
        .control(
            "/_sandbox/faults",
            Some(&json!({"path_prefix": "/api/", "status": 0})),
        )
        .await;
    for _ in 0..3 {
        let result = client
            .http
            .get(format!("{}/api/v3.1/connected_accounts", client.base))
            .header("x-api-key", DEMO_API_KEY)
            .send()
            .await;
        assert!(
            result.is_err(),
            "the connection should be dropped: {result:?}"
        );
    }
    // The control plane keeps working during the outage.
    let cleared = client
        .send(Method::DELETE, "/_sandbox/faults", None, None)
        .await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert_eq!(
        client.get("/api/v3.1/connected_accounts").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn request_log_records_method_path_and_headers() {
    let (sandbox, client) = start().await;
    let session = client.session(json!({"user_id": "fay"})).await;
    client
        .http
        .get(format!(
            "{}{SESSION}/{session}/toolkits?toolkits=gmail,github&limit=5",
            client.base
        ))
        .header("x-api-key", DEMO_API_KEY)
        .header("x-trace", "one")
        .header("x-trace", "two")
        .send()
        .await
        .expect("request");
    let log = client
        .send(Method::GET, "/_sandbox/requests", None, None)
        .await;
    assert_eq!(log.status, StatusCode::OK);
    let requests = log.json["requests"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        requests.len(),
        2,
        "the log does not record reading itself: {}",
        log.text
    );
    assert_eq!(requests[0]["method"], "POST");
    assert_eq!(requests[0]["path"], SESSION);
    assert_eq!(requests[0]["headers"]["x-api-key"], DEMO_API_KEY);
    assert_eq!(requests[1]["method"], "GET");
    assert_eq!(
        requests[1]["path"],
        format!("{SESSION}/{session}/toolkits?toolkits=gmail,github&limit=5")
    );
    assert_eq!(requests[1]["headers"]["x-trace"], "one, two");
    assert!(
        requests[1]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    // The in-process view is the same log.
    let in_process = sandbox.requests();
    assert_eq!(in_process.len(), 2);
    assert_eq!(
        in_process[1].headers.get("x-trace").map(String::as_str),
        Some("one, two")
    );

    assert_eq!(
        client
            .send(Method::DELETE, "/_sandbox/requests", None, None)
            .await
            .status,
        StatusCode::OK
    );
    assert!(
        sandbox
            .requests()
            .iter()
            .all(|request| request.path == "/_sandbox/requests")
    );
    sandbox.clear_requests();
    assert!(sandbox.requests().is_empty());
    let unknown = client
        .send(Method::GET, "/_sandbox/nothing", None, None)
        .await;
    unknown.assert_error(404);
}

#[tokio::test]
async fn white_label_auth_configs_are_listed_used_and_shown() {
    let config = SandboxConfig {
        auth_configs: vec![("gmail".into(), "Acme Mail".into())],
        ..SandboxConfig::default()
    };
    let (_sandbox, client) = start_with(config).await;
    let listed = client
        .get("/api/v3.1/auth_configs?toolkit_slug=gmail")
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let items = listed.json["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        items.len(),
        2,
        "the default and the white-label one: {items:?}"
    );
    let custom = items
        .iter()
        .find(|item| item["type"] == "custom")
        .cloned()
        .unwrap_or_default();
    assert_eq!(custom["name"], "Acme Mail");
    assert_eq!(custom["is_composio_managed"], false);
    let id = custom["id"].as_str().unwrap_or_default().to_owned();
    assert!(id.starts_with("ac_"), "{id}");
    let managed_only = client
        .get("/api/v3.1/auth_configs?toolkit_slug=gmail&is_composio_managed=false")
        .await;
    assert_eq!(managed_only.json["total_items"], 1);
    assert_eq!(
        client
            .get(&format!("/api/v3.1/auth_configs/{id}"))
            .await
            .json["name"],
        "Acme Mail"
    );
    client
        .get("/api/v3.1/auth_configs/ac_nosuchconfig")
        .await
        .assert_error(404);

    // Another one through the control plane; a session may use it only for its toolkit.
    let made = client
        .control(
            "/_sandbox/auth_configs",
            Some(&json!({"toolkit": "github", "name": "Acme Git"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let github_config = made.str("/id");
    client
        .post(
            SESSION,
            &json!({"user_id": "wl", "auth_configs": {"gmail": github_config}}),
        )
        .await
        .assert_error(400);
    let session = client
        .session(json!({"user_id": "wl", "auth_configs": {"gmail": id}}))
        .await;
    let (account, token, _) = client.link(&session, json!({"toolkit": "gmail"})).await;
    let page = client
        .send(Method::GET, &format!("/link/{token}"), None, None)
        .await;
    assert!(page.text.contains("Acme Mail"), "{}", page.text);
    let shown = client
        .get(&format!("/api/v3.1/connected_accounts/{account}"))
        .await;
    assert_eq!(shown.json["auth_config"]["id"], json!(id));
    assert_eq!(shown.json["auth_config"]["is_composio_managed"], false);
}

#[tokio::test]
async fn shared_accounts_serve_a_session_only_when_pinned() {
    let (_sandbox, client) = start().await;
    let setup = client.session(json!({"user_id": "sh"})).await;
    let (shared, token, _) = client
        .link(
            &setup,
            json!({"toolkit": "gmail", "experimental": {"account_type": "SHARED"}}),
        )
        .await;
    client
        .control(&format!("/_sandbox/links/{token}/allow"), None)
        .await;
    let plain = client.session(json!({"user_id": "sh"})).await;
    let listed = client
        .get(&format!("{SESSION}/{plain}/toolkits?toolkits=gmail"))
        .await;
    assert!(
        listed.json["items"][0]["connected_account"].is_null(),
        "{}",
        listed.text
    );
    let pinned = client
        .session(json!({"user_id": "sh", "connected_accounts": {"gmail": [shared]}}))
        .await;
    let listed = client
        .get(&format!("{SESSION}/{pinned}/toolkits?toolkits=gmail"))
        .await;
    assert_eq!(
        listed.json["items"][0]["connected_account"]["status"],
        "ACTIVE"
    );
}
