//! The REST client against the sandbox over real HTTP: every call, its error mapping,
//! pagination, retries (paused clock, attempts counted in the sandbox's request log) and
//! wait-for-connection.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use http::StatusCode;
use serde_json::json;
use toolgate_sandbox::DEMO_API_KEY;
use toolgate_session::{
    API_KEY_HEADER, AccountStatus, ComposioClient, ComposioError, CreateSessionRequest, Fault,
    LinkRequest, ManageConnections, ToolkitSelection, ToolkitsQuery, WaitError, Workbench,
};

use crate::support::{
    self, allow, count_requests, deactivate, deny, expire, fault, revoke, session,
};

const SESSION_PATH: &str = "/api/v3.1/tool_router/session";

fn link(toolkit: &str) -> LinkRequest {
    LinkRequest {
        toolkit: toolkit.to_owned(),
        callback_url: Some("http://127.0.0.1:9/callback?keep=1".to_owned()),
        alias: None,
    }
}

fn api_error(result: Result<impl std::fmt::Debug, ComposioError>) -> anyhow::Result<ComposioError> {
    match result {
        Ok(value) => bail!("expected an error, got {value:?}"),
        Err(error) => Ok(error),
    }
}

#[tokio::test]
async fn create_get_and_mcp_endpoint() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    let created = session(&client, "user_create").await?;
    assert!(
        created.session_id.starts_with("trs_"),
        "{}",
        created.session_id
    );
    assert_eq!(created.mcp.transport, "http");
    assert!(
        !created
            .tool_router_tools
            .iter()
            .any(|tool| tool == "COMPOSIO_MANAGE_CONNECTIONS"),
        "manage_connections.enable=false must remove the meta tool: {:?}",
        created.tool_router_tools
    );

    // What went over the wire: the path, the key header and the object-shaped body fields.
    let requests = sandbox.requests();
    let create = requests
        .iter()
        .find(|request| request.method == "POST" && request.path == SESSION_PATH)
        .context("no create request logged")?;
    assert_eq!(
        create.headers.get(API_KEY_HEADER).map(String::as_str),
        Some(DEMO_API_KEY)
    );
    assert_eq!(
        create.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );

    // Reuse by id rebuilds the same MCP URL.
    let fetched = client.get_session(&created.session_id).await?;
    assert_eq!(fetched.session_id, created.session_id);
    assert_eq!(fetched.mcp.url, created.mcp.url);

    let endpoint = client.mcp_endpoint(&fetched)?;
    assert_eq!(endpoint.url.as_str(), created.mcp.url);
    assert_eq!(
        endpoint
            .headers
            .get(API_KEY_HEADER)
            .map(|value| value.as_bytes()),
        Some(DEMO_API_KEY.as_bytes())
    );
    Ok(())
}

#[tokio::test]
async fn create_session_sends_every_option() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    let request = CreateSessionRequest {
        multi_account: None,
        user_id: "user_options".to_owned(),
        manage_connections: Some(ManageConnections {
            enable: Some(true),
            callback_url: Some("http://127.0.0.1:9/cb".to_owned()),
            enable_wait_for_connections: Some(true),
        }),
        toolkits: Some(ToolkitSelection::Enable(vec![
            "gmail".to_owned(),
            "github".to_owned(),
        ])),
        auth_configs: BTreeMap::new(),
        connected_accounts: BTreeMap::new(),
        workbench: Some(Workbench::default()),
    };
    let created = client.create_session(&request).await?;
    let tools = &created.tool_router_tools;
    assert!(
        tools
            .iter()
            .any(|tool| tool == "COMPOSIO_MANAGE_CONNECTIONS"),
        "{tools:?}"
    );
    assert!(
        tools
            .iter()
            .any(|tool| tool == "COMPOSIO_WAIT_FOR_CONNECTIONS"),
        "{tools:?}"
    );
    assert!(
        !tools.iter().any(|tool| tool == "COMPOSIO_REMOTE_WORKBENCH"),
        "{tools:?}"
    );
    // The server echoes past-tense keys.
    assert_eq!(
        created.config.pointer("/toolkits/enabled"),
        Some(&json!(["gmail", "github"]))
    );
    assert_eq!(
        created.config.pointer("/manage_connections/enabled"),
        Some(&json!(true))
    );

    // Pinning an account and an auth config: make an ACTIVE gmail account first.
    let plain = session(&client, "user_options").await?;
    let request_link = client.authorize(&plain.session_id, &link("gmail")).await?;
    allow(&sandbox, &request_link.redirect_url).await?;
    let account = client
        .get_connected_account(&request_link.connected_account_id)
        .await?;
    let auth_config = account.auth_config.context("account without auth config")?;
    let pinned = CreateSessionRequest {
        user_id: "user_options".to_owned(),
        manage_connections: Some(ManageConnections::disabled()),
        auth_configs: BTreeMap::from([("gmail".to_owned(), auth_config.id.clone())]),
        connected_accounts: BTreeMap::from([(
            "gmail".to_owned(),
            vec![request_link.connected_account_id.clone()],
        )]),
        ..CreateSessionRequest::default()
    };
    let pinned = client.create_session(&pinned).await?;
    assert_eq!(
        pinned.config.pointer("/connected_accounts/gmail"),
        Some(&json!([request_link.connected_account_id]))
    );
    assert_eq!(
        pinned.config.pointer("/auth_configs/gmail"),
        Some(&json!(auth_config.id))
    );
    Ok(())
}

#[tokio::test]
async fn errors_map_to_status_code_slug_and_fault() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;

    // 400 with Composio's validation envelope.
    let bad_toolkit = CreateSessionRequest {
        user_id: "user_errors".to_owned(),
        toolkits: Some(ToolkitSelection::Enable(vec!["no_such_toolkit".to_owned()])),
        ..CreateSessionRequest::default()
    };
    let error = api_error(client.create_session(&bad_toolkit).await)?;
    let api = error.api().context("not an API error")?;
    assert_eq!(api.status, StatusCode::BAD_REQUEST);
    assert_eq!(error.fault(), Fault::Ours);
    assert!(api.code.is_some(), "{api:?}");
    assert!(api.slug.is_some(), "{api:?}");
    assert!(api.request_id.is_some(), "{api:?}");
    assert_eq!(api.operation, "create session");

    // 404 for a session that does not exist; 400 for an id without the trs_ prefix.
    let error = api_error(client.get_session("trs_doesnotexist").await)?;
    assert!(error.is_not_found(), "{error}");
    assert_eq!(error.fault(), Fault::Ours);
    let error = api_error(client.get_session("not-a-session").await)?;
    assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST), "{error}");

    // 401 for a key the server does not know.
    let stranger = support::client_with(&sandbox, |config| {
        config.api_key = secrecy::SecretString::from("sk_unknown_key");
    })?;
    let anonymous = CreateSessionRequest {
        user_id: "user_errors".to_owned(),
        ..CreateSessionRequest::default()
    };
    let error = api_error(stranger.create_session(&anonymous).await)?;
    assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED), "{error}");
    assert_eq!(error.fault(), Fault::Ours);

    // Links: 404 without an auth config, 400 for a no-auth toolkit and an unknown one.
    let created = session(&client, "user_errors").await?;
    let error = api_error(
        client
            .authorize(&created.session_id, &link("shopify"))
            .await,
    )?;
    assert!(error.is_not_found(), "{error}");
    let error = api_error(
        client
            .authorize(&created.session_id, &link("hackernews"))
            .await,
    )?;
    assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST), "{error}");
    let error = api_error(client.authorize("trs_missing", &link("gmail")).await)?;
    assert!(error.is_not_found(), "{error}");

    // Connected accounts: unknown ids are 404 for GET and DELETE.
    let error = api_error(client.get_connected_account("ca_doesnotexist").await)?;
    assert!(error.is_not_found(), "{error}");
    let error = api_error(
        client
            .delete_connected_account("ca_doesnotexist", false)
            .await,
    )?;
    assert!(error.is_not_found(), "{error}");

    // Listing a session that does not exist.
    let error = api_error(
        client
            .list_toolkits("trs_doesnotexist", &ToolkitsQuery::default())
            .await,
    )?;
    assert!(error.is_not_found(), "{error}");
    Ok(())
}

#[tokio::test]
async fn toolkits_pagination_walks_every_page() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    let created = session(&client, "user_pages").await?;
    let query = ToolkitsQuery {
        limit: Some(7),
        ..ToolkitsQuery::default()
    };
    let first = client
        .list_toolkits_page(&created.session_id, &query, None)
        .await?;
    let total = first.total_items.context("no total_items")?;
    let pages = first.total_pages.context("no total_pages")?;
    assert!(
        total > 50,
        "the catalog needs several pages at the max size: {total}"
    );
    assert_eq!(first.items.len(), 7);
    assert_eq!(first.current_page, Some(1));
    assert!(first.next_cursor.is_some());

    sandbox.clear_requests();
    let all = client.list_toolkits(&created.session_id, &query).await?;
    assert_eq!(all.len() as u64, total);
    let mut slugs: Vec<&str> = all.iter().map(|toolkit| toolkit.slug.as_str()).collect();
    slugs.sort_unstable();
    slugs.dedup();
    assert_eq!(slugs.len() as u64, total, "pages overlapped");
    let listed = count_requests(
        &sandbox,
        "GET",
        &format!("{SESSION_PATH}/{}/toolkits", created.session_id),
    );
    assert_eq!(listed as u64, pages, "one request per page");
    let cursors = sandbox
        .requests()
        .iter()
        .filter(|request| request.path.contains("cursor="))
        .count();
    assert_eq!(cursors as u64, pages - 1);

    // Filters: comma-joined slugs, connected-only, search.
    let filtered = client
        .list_toolkits(
            &created.session_id,
            &ToolkitsQuery {
                toolkits: vec!["gmail".to_owned(), "hackernews".to_owned()],
                ..ToolkitsQuery::default()
            },
        )
        .await?;
    let mut slugs: Vec<&str> = filtered
        .iter()
        .map(|toolkit| toolkit.slug.as_str())
        .collect();
    slugs.sort_unstable();
    assert_eq!(slugs, ["gmail", "hackernews"]);
    assert!(sandbox.requests().iter().any(|request| {
        request.path.contains("toolkits=gmail%2Chackernews")
            || request.path.contains("toolkits=gmail,hackernews")
    }));
    let hackernews = filtered
        .iter()
        .find(|toolkit| toolkit.slug == "hackernews")
        .context("no hackernews")?;
    assert!(hackernews.is_no_auth);
    assert_eq!(hackernews.connection(), None);
    let gmail = filtered
        .iter()
        .find(|toolkit| toolkit.slug == "gmail")
        .context("no gmail")?;
    assert_eq!(gmail.connection().map(|c| c.is_active), Some(false));

    let connected_only = ToolkitsQuery {
        is_connected: Some(true),
        ..ToolkitsQuery::default()
    };
    assert!(
        client
            .list_toolkits(&created.session_id, &connected_only)
            .await?
            .is_empty()
    );
    let request_link = client
        .authorize(&created.session_id, &link("gmail"))
        .await?;
    allow(&sandbox, &request_link.redirect_url).await?;
    let connected = client
        .list_toolkits(&created.session_id, &connected_only)
        .await?;
    assert_eq!(connected.len(), 1);
    assert_eq!(connected[0].slug, "gmail");
    assert!(connected[0].is_active());

    let searched = client
        .list_toolkits(
            &created.session_id,
            &ToolkitsQuery {
                search: Some("github".to_owned()),
                ..ToolkitsQuery::default()
            },
        )
        .await?;
    assert!(searched.iter().any(|toolkit| toolkit.slug == "github"));
    Ok(())
}

#[tokio::test]
async fn link_account_and_delete() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    let created = session(&client, "user_link").await?;
    let request_link = client
        .authorize(&created.session_id, &link("github"))
        .await?;
    assert!(request_link.connected_account_id.starts_with("ca_"));
    assert!(
        request_link
            .link_token
            .as_deref()
            .is_some_and(|token| token.starts_with("ln_"))
    );
    assert!(request_link.redirect_url.starts_with(&sandbox.base_url()));

    let account = client
        .get_connected_account(&request_link.connected_account_id)
        .await?;
    // A new account passes through INITIALIZING on its way to INITIATED.
    assert!(
        matches!(
            account.status,
            AccountStatus::Initializing | AccountStatus::Initiated
        ),
        "{:?}",
        account.status
    );
    assert_eq!(
        account.toolkit.map(|toolkit| toolkit.slug).as_deref(),
        Some("github")
    );

    allow(&sandbox, &request_link.redirect_url).await?;
    let account = client
        .get_connected_account(&request_link.connected_account_id)
        .await?;
    assert_eq!(account.status, AccountStatus::Active);

    let deleted = client
        .delete_connected_account(&request_link.connected_account_id, true)
        .await?;
    assert!(deleted.success);
    assert!(
        deleted.revoke_job_id.is_some(),
        "revoke_on_delete=true reports its job"
    );
    assert!(sandbox.requests().iter().any(
        |request| request.method == "DELETE" && request.path.ends_with("revoke_on_delete=true")
    ));
    let error = api_error(
        client
            .get_connected_account(&request_link.connected_account_id)
            .await,
    )?;
    assert!(error.is_not_found(), "{error}");
    Ok(())
}

/// `Retry-After` is honoured (virtual time advances by what the server asked) and the
/// attempts are visible in the sandbox log.
#[tokio::test(start_paused = true)]
async fn retries_honour_retry_after_then_succeed() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    fault(
        &sandbox,
        json!({"path_prefix": SESSION_PATH, "status": 503, "retry_after": 7, "count": 2}),
    )
    .await?;
    let started = tokio::time::Instant::now();
    let created = session(&client, "user_retry").await?;
    let elapsed = started.elapsed();
    assert!(created.session_id.starts_with("trs_"));
    assert_eq!(count_requests(&sandbox, "POST", SESSION_PATH), 3);
    // Without Retry-After the backoff would total under 1.5 s.
    assert!(
        elapsed >= Duration::from_secs(14),
        "waited only {elapsed:?}"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn rate_limit_gives_up_after_the_limit_with_the_plain_body() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    fault(
        &sandbox,
        json!({"path_prefix": SESSION_PATH, "status": 429, "retry_after": 3, "count": 10}),
    )
    .await?;
    let error = session(&client, "user_429")
        .await
        .err()
        .context("a 429 storm must fail")?;
    let error = error.downcast::<ComposioError>()?;
    let api = error.api().context("not an API error")?;
    assert_eq!(api.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        api.message.starts_with("Rate limit exceeded"),
        "{}",
        api.message
    );
    assert_eq!(api.retry_after, Some(Duration::from_secs(3)));
    assert!(api.request_id.is_some());
    assert_eq!(error.fault(), Fault::Composio);
    // 1 attempt + the default 2 retries.
    assert_eq!(count_requests(&sandbox, "POST", SESSION_PATH), 3);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn max_retries_is_configurable() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    for (max_retries, attempts) in [(0_u32, 1_usize), (4, 5)] {
        sandbox.clear_requests();
        let client = support::client_with(&sandbox, |config| config.max_retries = max_retries)?;
        fault(
            &sandbox,
            json!({"path_prefix": SESSION_PATH, "status": 500, "count": 20}),
        )
        .await?;
        let started = tokio::time::Instant::now();
        let error = session(&client, "user_limit")
            .await
            .err()
            .context("must fail")?;
        let error = error.downcast::<ComposioError>()?;
        assert_eq!(error.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(count_requests(&sandbox, "POST", SESSION_PATH), attempts);
        if max_retries == 4 {
            // Backoff 0.5 + 1 + 2 + 4 s, each shortened by at most 25 % jitter.
            let elapsed = started.elapsed();
            assert!(elapsed >= Duration::from_millis(5625), "{elapsed:?}");
        }
        support::clear_faults(&sandbox).await?;
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn no_retry_storm_on_client_errors() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    for status in [400_u16, 401, 403, 404, 422] {
        sandbox.clear_requests();
        fault(
            &sandbox,
            json!({"path_prefix": SESSION_PATH, "status": status, "count": 5}),
        )
        .await?;
        let error = session(&client, "user_storm")
            .await
            .err()
            .context("must fail")?;
        let error = error.downcast::<ComposioError>()?;
        assert_eq!(error.status().map(|s| s.as_u16()), Some(status));
        assert_eq!(error.fault(), Fault::Ours);
        assert_eq!(
            count_requests(&sandbox, "POST", SESSION_PATH),
            1,
            "status {status}"
        );
        support::clear_faults(&sandbox).await?;
    }
    // Real (not injected) client errors are not retried either.
    sandbox.clear_requests();
    let error = api_error(client.get_session("trs_doesnotexist").await)?;
    assert!(error.is_not_found());
    assert_eq!(count_requests(&sandbox, "GET", SESSION_PATH), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn dropped_connections_are_retried_then_reported_as_network() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    fault(
        &sandbox,
        json!({"path_prefix": SESSION_PATH, "status": 0, "count": 1}),
    )
    .await?;
    session(&client, "user_drop").await?;
    assert_eq!(count_requests(&sandbox, "POST", SESSION_PATH), 2);

    sandbox.clear_requests();
    fault(
        &sandbox,
        json!({"path_prefix": SESSION_PATH, "status": 0, "count": 10}),
    )
    .await?;
    let error = session(&client, "user_drop")
        .await
        .err()
        .context("must fail")?;
    let error = error.downcast::<ComposioError>()?;
    assert!(matches!(error, ComposioError::Network { .. }), "{error:?}");
    assert_eq!(error.fault(), Fault::Network);
    assert_eq!(count_requests(&sandbox, "POST", SESSION_PATH), 3);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn unreachable_host_is_a_network_error() -> anyhow::Result<()> {
    // A port nothing listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = toolgate_session::ClientConfig::with_base_url(
        secrecy::SecretString::from(DEMO_API_KEY),
        format!("http://127.0.0.1:{port}"),
    );
    config.connect_timeout = None;
    config.request_timeout = None;
    config.pool_idle_timeout = None;
    let client = ComposioClient::new(config)?;
    let error = api_error(client.get_session("trs_x").await)?;
    assert_eq!(error.fault(), Fault::Network, "{error:?}");
    Ok(())
}

/// Real clock here: the test must observe polls happening before it presses Allow, and under
/// a paused clock its own timers would race the waiter's requests.
#[tokio::test]
async fn wait_for_connection_ends_on_active() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client_with(&sandbox, |config| {
        config.connection_poll_interval = Duration::from_millis(20);
    })?;
    let created = session(&client, "user_wait").await?;
    let request_link = client
        .authorize(&created.session_id, &link("gmail"))
        .await?;

    // Waiting starts while INITIATED; the user allows a few polls later.
    let waiter = {
        let client = client.clone();
        let account_id = request_link.connected_account_id.clone();
        tokio::spawn(async move {
            client
                .wait_for_connection(&account_id, Duration::from_secs(600))
                .await
        })
    };
    let account_path = format!(
        "/api/v3.1/connected_accounts/{}",
        request_link.connected_account_id
    );
    // Poll the condition, bounded (15 s); a working waiter gets there in about 40 ms.
    for _ in 0..1500 {
        if count_requests(&sandbox, "GET", &account_path) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        count_requests(&sandbox, "GET", &account_path) >= 3,
        "the waiter never polled"
    );
    allow(&sandbox, &request_link.redirect_url).await?;
    let account = waiter.await??;
    assert_eq!(account.status, AccountStatus::Active);
    assert_eq!(account.id, request_link.connected_account_id);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn wait_for_connection_ends_on_each_terminal_status() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    let created = session(&client, "user_terminal").await?;
    let timeout = Duration::from_secs(60);

    let denied = client
        .authorize(&created.session_id, &link("gmail"))
        .await?;
    deny(&sandbox, &denied.redirect_url).await?;
    let expired = client
        .authorize(&created.session_id, &link("github"))
        .await?;
    expire(&sandbox, &expired.connected_account_id).await?;
    let revoked = client
        .authorize(&created.session_id, &link("slack"))
        .await?;
    allow(&sandbox, &revoked.redirect_url).await?;
    revoke(&sandbox, &revoked.connected_account_id).await?;

    for (request_link, expected, reason_part) in [
        (&denied, AccountStatus::Failed, "denied"),
        (&expired, AccountStatus::Expired, "did not complete"),
        (&revoked, AccountStatus::Revoked, "revoked"),
    ] {
        let started = tokio::time::Instant::now();
        match client
            .wait_for_connection(&request_link.connected_account_id, timeout)
            .await
        {
            Err(WaitError::Terminal {
                account_id,
                status,
                status_reason,
            }) => {
                assert_eq!(account_id, request_link.connected_account_id);
                assert_eq!(status, expected);
                let reason = status_reason.unwrap_or_default();
                assert!(reason.contains(reason_part), "{expected}: {reason}");
            }
            other => bail!("{expected}: expected a terminal error, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "terminal states end at once"
        );
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn wait_for_connection_times_out_polling_every_second() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    let created = session(&client, "user_timeout").await?;
    let request_link = client
        .authorize(&created.session_id, &link("notion"))
        .await?;
    let started = tokio::time::Instant::now();
    match client
        .wait_for_connection(&request_link.connected_account_id, Duration::from_secs(5))
        .await
    {
        Err(WaitError::Timeout {
            account_id,
            last_status,
            waited,
        }) => {
            assert_eq!(account_id, request_link.connected_account_id);
            // On a paused clock the five polls take real milliseconds: the sandbox may still
            // show the account INITIALIZING (both keep the wait going).
            assert!(
                matches!(
                    last_status,
                    AccountStatus::Initializing | AccountStatus::Initiated
                ),
                "{last_status:?}"
            );
            assert_eq!(waited, Duration::from_secs(5));
        }
        other => bail!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(5));
    let account_path = format!(
        "/api/v3.1/connected_accounts/{}",
        request_link.connected_account_id
    );
    // Polls at 0, 1, 2, 3, 4 and 5 s.
    assert_eq!(count_requests(&sandbox, "GET", &account_path), 6);

    // An unknown account ends the wait with the request's own error.
    match client
        .wait_for_connection("ca_doesnotexist", Duration::from_secs(5))
        .await
    {
        Err(WaitError::Request(error)) => assert!(error.is_not_found(), "{error}"),
        other => bail!("expected a 404, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn mcp_endpoint_refuses_a_foreign_origin() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    let mut created = session(&client, "user_origin").await?;
    // The sandbox answers with its own origin; the same session seen through another host name
    // must not get the key.
    created.mcp.url = created.mcp.url.replace("127.0.0.1", "localhost");
    match client.mcp_endpoint(&created) {
        Err(ComposioError::McpOriginMismatch {
            mcp_origin,
            api_origin,
        }) => {
            assert!(mcp_origin.starts_with("http://localhost:"), "{mcp_origin}");
            assert_eq!(api_origin, sandbox.base_url());
        }
        other => bail!("expected an origin error, got {other:?}"),
    }
    Ok(())
}

/// INACTIVE is not terminal (the SDKs keep polling: it can recover to ACTIVE), so a wait on a
/// disabled account runs to its timeout instead of failing at once.
#[tokio::test(start_paused = true)]
async fn wait_for_connection_keeps_waiting_on_inactive() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    let created = session(&client, "user_inactive").await?;
    let request_link = client
        .authorize(&created.session_id, &link("linear"))
        .await?;
    allow(&sandbox, &request_link.redirect_url).await?;
    deactivate(&sandbox, &request_link.connected_account_id).await?;
    match client
        .wait_for_connection(&request_link.connected_account_id, Duration::from_secs(3))
        .await
    {
        Err(WaitError::Timeout { last_status, .. }) => {
            assert_eq!(last_status, AccountStatus::Inactive);
        }
        other => bail!("expected INACTIVE to keep waiting until the timeout, got {other:?}"),
    }
    let account_path = format!(
        "/api/v3.1/connected_accounts/{}",
        request_link.connected_account_id
    );
    // Polls at 0, 1, 2 and 3 s: it kept polling rather than stopping at the first INACTIVE.
    assert_eq!(count_requests(&sandbox, "GET", &account_path), 4);
    Ok(())
}
