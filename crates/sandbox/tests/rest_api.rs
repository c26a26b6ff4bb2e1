//! The sandbox's REST API over real HTTP on 127.0.0.1: every endpoint, every validation error,
//! pagination, filters, projects, and bad input that must never panic.

mod support;

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Client, start, start_with};
use toolgate_sandbox::{DEMO_API_KEY, SandboxConfig};

const SESSION: &str = "/api/v3.1/tool_router/session";

#[tokio::test]
async fn session_lifecycle_create_get_patch_delete() {
    let (_sandbox, client) = start().await;
    let created = client
        .post(
            SESSION,
            &json!({"user_id": "alice", "manage_connections": {"enable": false}, "toolkits": {"enable": ["gmail", "github"]}, "workbench": {"enable": false}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.str("/session_id");
    assert!(id.starts_with("trs_") && id.len() > 4, "{id}");
    assert_eq!(
        created.json["mcp"],
        json!({"type": "http", "url": format!("{}/tool_router/{id}/mcp", client.base)})
    );
    assert!(
        created.json["mcp"].get("headers").is_none(),
        "the real API returns no MCP headers"
    );
    assert_eq!(
        created.json["tool_router_tools"],
        json!([
            "COMPOSIO_SEARCH_TOOLS",
            "COMPOSIO_GET_TOOL_SCHEMAS",
            "COMPOSIO_MULTI_EXECUTE_TOOL"
        ])
    );
    let config = &created.json["config"];
    assert_eq!(config["user_id"], "alice");
    assert_eq!(config["toolkits"], json!({"enabled": ["gmail", "github"]}));
    assert_eq!(config["manage_connections"]["enabled"], false);
    assert!(
        config["manage_connections"].get("enable").is_none(),
        "echo uses past tense"
    );
    assert_eq!(config["workbench"]["enable"], false);
    assert_eq!(config["search"], json!({"enable": true}));
    assert_eq!(config["execute"], json!({"enable_multi_execute": true}));
    assert_eq!(config["preload"], json!({"tools": []}));
    assert_eq!(config["instant"], false);
    assert_eq!(created.json["config_version"], 1);
    assert!(created.headers.contains_key("x-request-id"));

    // GET has the same shape (without the create-only `experimental`); /api/v3 works too.
    for prefix in ["/api/v3.1", "/api/v3"] {
        let fetched = client
            .get(&format!("{prefix}/tool_router/session/{id}"))
            .await;
        assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text);
        for key in [
            "session_id",
            "mcp",
            "tool_router_tools",
            "config",
            "config_version",
        ] {
            assert_eq!(fetched.json[key], created.json[key], "{key}");
        }
        assert!(fetched.json.get("experimental").is_none());
    }

    // PATCH turns in-chat auth back on and bumps config_version.
    let patched = client
        .send(
            Method::PATCH,
            &format!("{SESSION}/{id}"),
            Some(DEMO_API_KEY),
            Some(br#"{"manage_connections":{"enable":true}}"#),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json["config_version"], 2);
    assert!(
        patched.json["tool_router_tools"]
            .as_array()
            .is_some_and(|tools| tools.contains(&json!("COMPOSIO_MANAGE_CONNECTIONS")))
    );
    assert_eq!(
        patched.json["config"]["toolkits"],
        json!({"enabled": ["gmail", "github"]}),
        "untouched keys stay"
    );
    let refused = client
        .send(
            Method::PATCH,
            &format!("{SESSION}/{id}"),
            Some(DEMO_API_KEY),
            Some(br#"{"user_id":"mallory"}"#),
        )
        .await;
    refused.assert_error(400);

    let deleted = client.delete(&format!("{SESSION}/{id}")).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.json, json!({"session_id": id, "deleted": true}));
    client
        .get(&format!("{SESSION}/{id}"))
        .await
        .assert_error(404);
    client
        .delete(&format!("{SESSION}/{id}"))
        .await
        .assert_error(404);
    client
        .get(&format!("{SESSION}/{id}/toolkits"))
        .await
        .assert_error(404);
}

#[tokio::test]
async fn default_session_lists_the_default_meta_tools() {
    let (_sandbox, client) = start().await;
    let created = client.post(SESSION, &json!({"user_id": "bob"})).await;
    assert_eq!(
        created.json["tool_router_tools"],
        json!([
            "COMPOSIO_SEARCH_TOOLS",
            "COMPOSIO_GET_TOOL_SCHEMAS",
            "COMPOSIO_MANAGE_CONNECTIONS",
            "COMPOSIO_MULTI_EXECUTE_TOOL",
            "COMPOSIO_REMOTE_WORKBENCH",
            "COMPOSIO_REMOTE_BASH_TOOL"
        ])
    );
    assert_eq!(
        created.json["config"]["manage_connections"]["enabled"],
        true
    );
    let direct = client
        .post(SESSION, &json!({"user_id": "bob", "search": {"enable": false}, "execute": {"enable_multi_execute": false}, "workbench": {"enable": false}, "manage_connections": {"enable": true, "enable_wait_for_connections": true}}))
        .await;
    assert_eq!(
        direct.json["tool_router_tools"],
        json!([
            "COMPOSIO_MANAGE_CONNECTIONS",
            "COMPOSIO_WAIT_FOR_CONNECTIONS"
        ])
    );
}

/// Every documented validation error: status, envelope, `errors` detail.
#[tokio::test]
async fn validation_errors_use_the_envelope() {
    let (_sandbox, client) = start().await;
    let session = client
        .session(
            json!({"user_id": "carol", "toolkits": {"enable": ["gmail", "shopify", "hackernews"]}}),
        )
        .await;
    let invalid = "Error in payload.toolkits: Invalid input";
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        (
            "bare toolkits array",
            json!({"user_id": "u", "toolkits": ["gmail"]}),
            400,
            Some(invalid),
        ),
        (
            "toolkits.enabled",
            json!({"user_id": "u", "toolkits": {"enabled": ["gmail"]}}),
            400,
            Some(invalid),
        ),
        (
            "enable and disable",
            json!({"user_id": "u", "toolkits": {"enable": ["gmail"], "disable": ["github"]}}),
            400,
            Some(invalid),
        ),
        (
            "manage_connections bool",
            json!({"user_id": "u", "manage_connections": false}),
            400,
            Some("Error in payload.manage_connections: Expected object, received boolean"),
        ),
        (
            "manage_connections.enabled",
            json!({"user_id": "u", "manage_connections": {"enabled": false}}),
            400,
            None,
        ),
        (
            "missing user_id",
            json!({"manage_connections": {"enable": false}}),
            400,
            Some("Error in payload.user_id: Required"),
        ),
        ("empty user_id", json!({"user_id": ""}), 400, None),
        (
            "numeric user_id",
            json!({"user_id": 7}),
            400,
            Some("Error in payload.user_id: Expected string, received number"),
        ),
        (
            "unknown toolkit",
            json!({"user_id": "u", "toolkits": {"enable": ["gmail", "nope"]}}),
            400,
            None,
        ),
        (
            "bad callback url",
            json!({"user_id": "u", "manage_connections": {"callback_url": "not a url"}}),
            400,
            None,
        ),
        (
            "auth config of another toolkit",
            json!({"user_id": "u", "auth_configs": {"gmail": "ac_123456789012"}}),
            400,
            None,
        ),
        (
            "pinned account that does not exist",
            json!({"user_id": "u", "connected_accounts": {"gmail": ["ca_nope12345678"]}}),
            400,
            None,
        ),
        (
            "pinned id without prefix",
            json!({"user_id": "u", "connected_accounts": {"gmail": "x"}}),
            400,
            None,
        ),
        (
            "bad workbench size",
            json!({"user_id": "u", "workbench": {"sandbox_size": "huge"}}),
            400,
            None,
        ),
        (
            "bad tag",
            json!({"user_id": "u", "tags": ["loudHint"]}),
            400,
            None,
        ),
    ];
    for (name, body, status, detail) in cases {
        let answer = client.post(SESSION, &body).await;
        answer.assert_error(status);
        if let Some(detail) = detail {
            assert_eq!(
                answer.errors(),
                vec![detail.to_owned()],
                "{name}: {}",
                answer.text
            );
        }
    }

    // Malformed JSON and bodies that are not objects.
    for body in [&b"{\"user_id\":"[..], b"[]", b"\"x\"", b"", b"\xff\xfe"] {
        client
            .send(Method::POST, SESSION, Some(DEMO_API_KEY), Some(body))
            .await
            .assert_error(400);
    }

    // Ids: wrong prefix 400, unknown 404.
    client
        .get(&format!("{SESSION}/abc"))
        .await
        .assert_error(400);
    client
        .get(&format!("{SESSION}/trs_doesnotexist"))
        .await
        .assert_error(404);
    client
        .get("/api/v3.1/connected_accounts/abc")
        .await
        .assert_error(400);
    client
        .get("/api/v3.1/connected_accounts/ca_doesnotexist")
        .await
        .assert_error(404);
    client
        .delete("/api/v3.1/connected_accounts/ca_doesnotexist")
        .await
        .assert_error(404);

    // Auth: missing and unknown keys.
    client
        .send(Method::POST, SESSION, None, Some(br#"{"user_id":"u"}"#))
        .await
        .assert_error(401);
    client
        .send(
            Method::GET,
            &format!("{SESSION}/{session}"),
            Some("sk_wrong"),
            None,
        )
        .await
        .assert_error(401);
    client
        .send(Method::GET, "/api/v3.1/connected_accounts", None, None)
        .await
        .assert_error(401);

    // Wrong methods and unknown routes.
    let wrong = client
        .send(Method::GET, SESSION, Some(DEMO_API_KEY), None)
        .await;
    wrong.assert_error(405);
    assert_eq!(
        wrong
            .headers
            .get("allow")
            .and_then(|value| value.to_str().ok()),
        Some("POST")
    );
    client
        .send(
            Method::PUT,
            &format!("{SESSION}/{session}"),
            Some(DEMO_API_KEY),
            None,
        )
        .await
        .assert_error(405);
    client
        .send(
            Method::POST,
            "/api/v3.1/connected_accounts",
            Some(DEMO_API_KEY),
            Some(b"{}"),
        )
        .await
        .assert_error(405);
    client
        .send(
            Method::POST,
            &format!("{SESSION}/{session}/toolkits"),
            Some(DEMO_API_KEY),
            None,
        )
        .await
        .assert_error(405);
    client.get("/api/v3.1/nothing/here").await.assert_error(404);
    client
        .get("/api/v2/tool_router/session")
        .await
        .assert_error(404);
    client
        .send(Method::POST, "/_sandbox/requests", None, None)
        .await
        .assert_error(405);

    // /link: missing toolkit, unknown toolkit, no auth config, no-auth toolkit, disabled toolkit.
    let link = format!("{SESSION}/{session}/link");
    let missing = client.post(&link, &json!({})).await;
    missing.assert_error(400);
    assert_eq!(
        missing.errors(),
        vec!["Error in payload.toolkit: Required".to_owned()]
    );
    client
        .post(&link, &json!({"toolkit": "nope"}))
        .await
        .assert_error(404);
    let no_config = client.post(&link, &json!({"toolkit": "shopify"})).await;
    no_config.assert_error(404);
    assert!(
        no_config.str("/error/message").contains("auth config"),
        "{}",
        no_config.text
    );
    client
        .post(&link, &json!({"toolkit": "hackernews"}))
        .await
        .assert_error(400);
    client
        .post(&link, &json!({"toolkit": "github"}))
        .await
        .assert_error(400);
    client
        .post(&link, &json!({"toolkit": "gmail", "callback_url": "nope"}))
        .await
        .assert_error(400);
    let acl = client.post(&link, &json!({"toolkit": "gmail", "experimental": {"acl_config_for_shared": {"allow_all_users": true}}})).await;
    acl.assert_error(400);
    assert!(
        acl.str("/error/message")
            .contains("acl_config_for_shared is only valid on SHARED")
    );
    client
        .post(
            &format!("{SESSION}/trs_doesnotexist/link"),
            &json!({"toolkit": "gmail"}),
        )
        .await
        .assert_error(404);

    // Query validation.
    let toolkits = format!("{SESSION}/{session}/toolkits");
    client
        .get(&format!("{toolkits}?limit=51"))
        .await
        .assert_error(400);
    client
        .get(&format!("{toolkits}?limit=0"))
        .await
        .assert_error(400);
    client
        .get(&format!("{toolkits}?cursor=%%%"))
        .await
        .assert_error(400);
    client
        .get(&format!("{toolkits}?is_connected=maybe"))
        .await
        .assert_error(400);
    client
        .get("/api/v3.1/connected_accounts?statuses=HAPPY")
        .await
        .assert_error(400);
    client
        .get("/api/v3.1/connected_accounts?order_by=name")
        .await
        .assert_error(400);
    client
        .get("/api/v3.1/connected_accounts?order_direction=up")
        .await
        .assert_error(400);
    let (account, _, _) = client.link(&session, json!({"toolkit": "gmail"})).await;
    client
        .delete(&format!(
            "/api/v3.1/connected_accounts/{account}?revoke_on_delete=perhaps"
        ))
        .await
        .assert_error(400);
}

#[tokio::test]
async fn toolkits_paginate_across_the_whole_catalog() {
    let (_sandbox, client) = start().await;
    let session = client.session(json!({"user_id": "dave"})).await;
    let base = format!("{SESSION}/{session}/toolkits");
    let mut slugs = Vec::new();
    let mut pages = 0;
    let mut path = format!("{base}?limit=50");
    let (total_items, total_pages) = loop {
        let page = client.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        pages += 1;
        assert_eq!(page.json["current_page"], pages);
        for item in page.json["items"].as_array().into_iter().flatten() {
            slugs.push(item["slug"].as_str().unwrap_or_default().to_owned());
            for key in [
                "name",
                "enabled",
                "is_no_auth",
                "composio_managed_auth_schemes",
                "meta",
            ] {
                assert!(item.get(key).is_some(), "{key} missing in {item}");
            }
            assert!(
                item["meta"]["logo"]
                    .as_str()
                    .is_some_and(|logo| logo.ends_with(".svg"))
            );
        }
        match page.json["next_cursor"].as_str() {
            Some(cursor) => path = format!("{base}?cursor={cursor}"),
            None => {
                break (
                    page.json["total_items"].as_u64(),
                    page.json["total_pages"].as_u64(),
                );
            }
        }
    };
    assert!(pages >= 2, "the catalog needs several pages at limit 50");
    assert_eq!(total_pages, Some(pages));
    assert_eq!(total_items, Some(slugs.len() as u64));
    assert_eq!(
        slugs.iter().collect::<HashSet<_>>().len(),
        slugs.len(),
        "no duplicates across pages"
    );
    for required in [
        "gmail",
        "github",
        "slack",
        "notion",
        "linear",
        "hackernews",
        "composio_search",
        "shopify",
    ] {
        assert!(slugs.iter().any(|slug| slug == required), "{required}");
    }

    // Default page size, explicit filters, search.
    let first = client.get(&base).await;
    assert_eq!(first.json["items"].as_array().map(Vec::len), Some(20));
    let filtered = client
        .get(&format!("{base}?toolkits=github,gmail,hackernews"))
        .await;
    let filtered_slugs: Vec<&str> = filtered.json["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["slug"].as_str())
        .collect();
    assert_eq!(filtered_slugs, ["gmail", "github", "hackernews"]);
    assert_eq!(filtered.json["total_items"], 3);
    assert!(filtered.json["next_cursor"].is_null());
    let no_auth = &filtered.json["items"][2];
    assert_eq!(
        (
            no_auth["is_no_auth"].clone(),
            no_auth["meta"]["isNoAuth"].clone()
        ),
        (json!(true), json!(true))
    );
    let gmail = &filtered.json["items"][0];
    assert_eq!(gmail["composio_managed_auth_schemes"], json!(["OAUTH2"]));
    assert!(gmail.get("connected_account").is_none());
    let searched = client.get(&format!("{base}?search=GIT")).await;
    let found: Vec<&str> = searched.json["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["slug"].as_str())
        .collect();
    assert_eq!(found, ["github", "gitlab"]);
    let described = client.get(&format!("{base}?search=pull%20requests")).await;
    assert!(
        described.json["total_items"]
            .as_u64()
            .is_some_and(|count| count >= 2),
        "description matches"
    );
    let beyond = client
        .get(&format!("{base}?cursor={}", base64_cursor(99, 50)))
        .await;
    assert_eq!(beyond.json["items"], json!([]));

    // A session restricted to some toolkits lists only those; an explicit filter overrides it.
    let narrow = client
        .session(json!({"user_id": "dave", "toolkits": {"enable": ["slack", "notion"]}}))
        .await;
    let listed = client.get(&format!("{SESSION}/{narrow}/toolkits")).await;
    assert_eq!(listed.json["total_items"], 2);
    let overridden = client
        .get(&format!("{SESSION}/{narrow}/toolkits?toolkits=gmail"))
        .await;
    assert_eq!(overridden.json["items"][0]["slug"], "gmail");
    assert_eq!(overridden.json["items"][0]["enabled"], false);
    let denied = client
        .session(json!({"user_id": "dave", "toolkits": {"disable": ["gmail"]}}))
        .await;
    let listed = client
        .get(&format!(
            "{SESSION}/{denied}/toolkits?toolkits=gmail,github"
        ))
        .await;
    assert_eq!(listed.json["items"][0]["enabled"], false);
    assert_eq!(listed.json["items"][1]["enabled"], true);
}

fn base64_cursor(page: u64, limit: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(json!({"page": page, "limit": limit}).to_string())
}

#[tokio::test]
async fn connected_accounts_are_shown_filtered_listed_and_deleted() {
    let (_sandbox, client) = start().await;
    let session = client
        .session(json!({"user_id": "erin", "manage_connections": {"enable": false}}))
        .await;
    let toolkits = format!("{SESSION}/{session}/toolkits?toolkits=gmail,github");

    // An ACTIVE gmail account, then a newer pending one: the listing keeps showing the ACTIVE one.
    let (active, token, _) = client.link(&session, json!({"toolkit": "gmail"})).await;
    assert_eq!(
        client
            .control(&format!("/_sandbox/links/{token}/allow"), None)
            .await
            .status,
        StatusCode::OK
    );
    let (pending, _, _) = client.link(&session, json!({"toolkit": "gmail"})).await;
    let (github, _, _) = client.link(&session, json!({"toolkit": "github"})).await;
    let listed = client.get(&toolkits).await;
    let gmail = &listed.json["items"][0]["connected_account"];
    assert_eq!(gmail["id"], json!(active));
    assert_eq!(gmail["status"], "ACTIVE");
    assert_eq!(gmail["user_id"], "erin");
    assert!(
        gmail["auth_config"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("ac_"))
    );
    assert_eq!(gmail["auth_config"]["auth_scheme"], "OAUTH2");
    assert_eq!(gmail["auth_config"]["is_composio_managed"], true);
    // New accounts pass through INITIALIZING (100 ms) on their way to INITIATED.
    let pending_status = &listed.json["items"][1]["connected_account"]["status"];
    assert!(
        pending_status == "INITIATED" || pending_status == "INITIALIZING",
        "{pending_status}"
    );
    let connected = client
        .get(&format!("{SESSION}/{session}/toolkits?is_connected=true"))
        .await;
    assert_eq!(connected.json["total_items"], 1);
    assert_eq!(connected.json["items"][0]["slug"], "gmail");

    // Pinning the pending account makes the session show it instead.
    let pinned = client
        .session(json!({"user_id": "erin", "connected_accounts": {"gmail": pending}}))
        .await;
    let shown = client
        .get(&format!("{SESSION}/{pinned}/toolkits?toolkits=gmail"))
        .await;
    assert_eq!(
        shown.json["items"][0]["connected_account"]["id"],
        json!(pending)
    );
    let shown_status = &shown.json["items"][0]["connected_account"]["status"];
    assert!(
        shown_status == "INITIATED" || shown_status == "INITIALIZING",
        "{shown_status}"
    );
    client
        .post(
            &format!("{SESSION}/{pinned}/link"),
            &json!({"toolkit": "gmail"}),
        )
        .await
        .assert_error(400);

    // Another user's session does not see erin's accounts.
    let other = client.session(json!({"user_id": "frank"})).await;
    let theirs = client
        .get(&format!("{SESSION}/{other}/toolkits?toolkits=gmail"))
        .await;
    assert!(theirs.json["items"][0].get("connected_account").is_none());

    // Retrieve.
    let account = client
        .get(&format!("/api/v3.1/connected_accounts/{active}"))
        .await;
    assert_eq!(account.status, StatusCode::OK);
    for key in [
        "id",
        "status",
        "status_reason",
        "toolkit",
        "auth_config",
        "is_disabled",
        "created_at",
        "updated_at",
        "user_id",
        "state",
        "data",
        "params",
    ] {
        assert!(
            account.json.get(key).is_some(),
            "{key} missing: {}",
            account.text
        );
    }
    assert_eq!(account.json["toolkit"], json!({"slug": "gmail"}));
    assert_eq!(account.json["state"]["authScheme"], "OAUTH2");
    assert_eq!(account.json["state"]["val"]["status"], "ACTIVE");

    // List: filters, order, pagination.
    let all = client.get("/api/v3.1/connected_accounts").await;
    assert_eq!(all.json["total_items"], 3);
    let ids: Vec<&str> = all.json["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [github.as_str(), pending.as_str(), active.as_str()],
        "newest first by default"
    );
    let ascending = client
        .get("/api/v3.1/connected_accounts?order_direction=asc&order_by=created_at")
        .await;
    assert_eq!(ascending.json["items"][0]["id"], json!(active));
    let by_status = client
        .get("/api/v3.1/connected_accounts?statuses=ACTIVE")
        .await;
    assert_eq!(by_status.json["total_items"], 1);
    let by_toolkit = client
        .get("/api/v3.1/connected_accounts?toolkit_slugs=github,slack&user_ids=erin")
        .await;
    assert_eq!(by_toolkit.json["items"][0]["id"], json!(github));
    assert_eq!(by_toolkit.json["total_items"], 1);
    let by_id = client
        .get(&format!(
            "/api/v3.1/connected_accounts?connected_account_ids={pending},{github}"
        ))
        .await;
    assert_eq!(by_id.json["total_items"], 2);
    let auth_config = account.str("/auth_config/id");
    let by_config = client
        .get(&format!(
            "/api/v3.1/connected_accounts?auth_config_ids={auth_config}"
        ))
        .await;
    assert_eq!(by_config.json["total_items"], 2);
    let nobody = client
        .get("/api/v3.1/connected_accounts?user_ids=nobody")
        .await;
    assert_eq!(nobody.json["total_items"], 0);
    let first = client.get("/api/v3.1/connected_accounts?limit=2").await;
    assert_eq!(first.json["total_pages"], 2);
    let cursor = first.str("/next_cursor");
    let second = client
        .get(&format!("/api/v3.1/connected_accounts?cursor={cursor}"))
        .await;
    assert_eq!(second.json["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(second.json["current_page"], 2);
    assert!(second.json["next_cursor"].is_null());

    // Delete (soft): 404 afterwards, gone from lists; revoke_on_delete returns a job id.
    let deleted = client
        .delete(&format!("/api/v3.1/connected_accounts/{github}"))
        .await;
    assert_eq!(deleted.json, json!({"success": true}));
    client
        .get(&format!("/api/v3.1/connected_accounts/{github}"))
        .await
        .assert_error(404);
    client
        .delete(&format!("/api/v3.1/connected_accounts/{github}"))
        .await
        .assert_error(404);
    let revoked = client
        .delete(&format!(
            "/api/v3.1/connected_accounts/{active}?revoke_on_delete=true"
        ))
        .await;
    assert_eq!(revoked.json["success"], true);
    assert!(
        revoked.json["revoke_job_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(
        client.get("/api/v3.1/connected_accounts").await.json["total_items"],
        1
    );
    let after = client.get(&toolkits).await;
    assert_eq!(
        after.json["items"][0]["connected_account"]["id"],
        json!(pending),
        "falls back to the remaining account"
    );
    assert!(after.json["items"][1].get("connected_account").is_none());
}

#[tokio::test]
async fn projects_are_isolated_by_api_key() {
    let config = SandboxConfig {
        api_keys: vec!["sk_one".into(), "sk_two".into()],
        ..SandboxConfig::default()
    };
    let (_sandbox, client) = start_with(config).await;
    let one = client
        .send(
            Method::POST,
            SESSION,
            Some("sk_one"),
            Some(br#"{"user_id":"u"}"#),
        )
        .await;
    assert_eq!(one.status, StatusCode::CREATED);
    let session = one.str("/session_id");
    client
        .send(
            Method::GET,
            &format!("{SESSION}/{session}"),
            Some("sk_two"),
            None,
        )
        .await
        .assert_error(404);
    client
        .send(
            Method::GET,
            &format!("{SESSION}/{session}"),
            Some(DEMO_API_KEY),
            None,
        )
        .await
        .assert_error(401);
    let link = client
        .send(
            Method::POST,
            &format!("{SESSION}/{session}/link"),
            Some("sk_one"),
            Some(br#"{"toolkit":"gmail"}"#),
        )
        .await;
    let account = link.str("/connected_account_id");
    client
        .send(
            Method::GET,
            &format!("/api/v3.1/connected_accounts/{account}"),
            Some("sk_two"),
            None,
        )
        .await
        .assert_error(404);
    let listed = client
        .send(
            Method::GET,
            "/api/v3.1/connected_accounts",
            Some("sk_two"),
            None,
        )
        .await;
    assert_eq!(listed.json["total_items"], 0);
    // The MCP URL needs the key that created the session.
    let mcp = format!("/tool_router/{session}/mcp");
    client
        .send(Method::POST, &mcp, Some("sk_two"), Some(b"{}"))
        .await
        .assert_error(401);
    client
        .send(Method::POST, &mcp, None, Some(b"{}"))
        .await
        .assert_error(401);
    client
        .send(
            Method::POST,
            "/tool_router/trs_nope12345678/mcp",
            Some("sk_one"),
            Some(b"{}"),
        )
        .await
        .assert_error(404);
}

#[tokio::test]
async fn many_sessions_and_links_in_parallel_get_unique_ids() {
    let (_sandbox, client) = start().await;
    let client = std::sync::Arc::new(client);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..40 {
        let client = client.clone();
        tasks.spawn(async move {
            let session = client
                .session(json!({"user_id": format!("user-{index}")}))
                .await;
            let (account, token, _) = client.link(&session, json!({"toolkit": "slack"})).await;
            (session, account, token)
        });
    }
    let mut ids = HashSet::new();
    let mut count = 0;
    while let Some(joined) = tasks.join_next().await {
        let (session, account, token) = joined.expect("task");
        count += 1;
        assert!(ids.insert(session) && ids.insert(account) && ids.insert(token));
    }
    assert_eq!(count, 40);
    let listed = client.get("/api/v3.1/connected_accounts?limit=100").await;
    assert_eq!(listed.json["total_items"], 40);
}

/// Garbage into every endpoint: always an envelope, never a panic (the server keeps serving).
#[tokio::test]
async fn malformed_input_never_panics() {
    let (_sandbox, client) = start().await;
    let session = client.session(json!({"user_id": "grace"})).await;
    let bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"null".to_vec(),
        b"12".to_vec(),
        b"{\"user_id\": null}".to_vec(),
        b"{\"user_id\": \"u\", \"toolkits\": null, \"manage_connections\": []}".to_vec(),
        b"{\"user_id\": \"u\", \"toolkits\": {\"enable\": [1, 2]}}".to_vec(),
        b"{\"user_id\": \"u\", \"toolkits\": {\"enable\": \"gmail\"}}".to_vec(),
        b"{\"user_id\": \"u\", \"auth_configs\": []}".to_vec(),
        b"{\"user_id\": \"u\", \"connected_accounts\": {\"gmail\": [1]}}".to_vec(),
        b"{\"user_id\": \"u\", \"tools\": {\"gmail\": []}}".to_vec(),
        b"{\"user_id\": \"u\", \"multi_account\": {\"max_accounts_per_toolkit\": 99}}".to_vec(),
        b"{\"user_id\": \"u\", \"instant\": true}".to_vec(),
        b"{\"toolkit\": {\"slug\": \"gmail\"}}".to_vec(),
        b"{\"toolkit\": \"gmail\", \"alias\": 5}".to_vec(),
        format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        vec![0xff; 64],
    ];
    let paths = [
        SESSION.to_owned(),
        format!("{SESSION}/{session}/link"),
        "/_sandbox/faults".to_owned(),
    ];
    for path in &paths {
        for body in &bodies {
            let answer = client
                .send(Method::POST, path, Some(DEMO_API_KEY), Some(body))
                .await;
            answer.assert_error(400);
        }
    }
    let patch = client
        .send(
            Method::PATCH,
            &format!("{SESSION}/{session}"),
            Some(DEMO_API_KEY),
            Some(b"{\"toolkits\": 5}"),
        )
        .await;
    patch.assert_error(400);
    // Over the body cap.
    let huge = vec![b' '; 2 * 1024 * 1024];
    client
        .send(Method::POST, SESSION, Some(DEMO_API_KEY), Some(&huge))
        .await
        .assert_error(413);
    // Still serving.
    assert_eq!(
        client.get(&format!("{SESSION}/{session}")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn logos_are_served_locally() {
    let (_sandbox, client) = start().await;
    let logo = client
        .send(Method::GET, "/_sandbox/logos/gmail.svg", None, None)
        .await;
    assert_eq!(logo.status, StatusCode::OK);
    assert_eq!(
        logo.headers
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("image/svg+xml")
    );
    // Gmail has a drawn mark (crates/sandbox/src/logos.rs); others fall back to their initial.
    assert!(logo.text.starts_with("<svg") && logo.text.contains("#EA4335"));
    let initial = client
        .send(Method::GET, "/_sandbox/logos/trello.svg", None, None)
        .await;
    assert!(initial.text.starts_with("<svg") && initial.text.contains(">T</text>"));
    client
        .send(Method::GET, "/_sandbox/logos/nope.svg", None, None)
        .await
        .assert_error(404);
}

#[test]
fn start_detached_serves_clients_running_on_a_paused_clock() {
    let sandbox = toolgate_sandbox::Sandbox::start_detached(SandboxConfig::default())
        .expect("detached sandbox");
    let check = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    check.block_on(async {
        let client = Client::new(sandbox.base_url());
        let session = client.session(json!({"user_id": "heidi"})).await;
        assert_eq!(
            client.get(&format!("{SESSION}/{session}")).await.status,
            StatusCode::OK
        );
    });
    assert!(sandbox.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(sandbox.addr().ip().to_string(), "127.0.0.1");
}

#[tokio::test]
async fn dropping_the_sandbox_stops_serving() {
    let (sandbox, client) = start().await;
    assert_eq!(
        client.get("/api/v3.1/connected_accounts").await.status,
        StatusCode::OK
    );
    drop(sandbox);
    let fresh = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // A new connection must eventually be refused (the accept loop has stopped).
        if fresh
            .get(format!("{}/api/v3.1/connected_accounts", client.base))
            .send()
            .await
            .is_err()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still serving after drop"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_public_base_url_replaces_the_request_host_in_urls() {
    let config = SandboxConfig {
        public_base_url: Some("http://sandbox.internal:9900/".into()),
        ..SandboxConfig::default()
    };
    let (_sandbox, client) = start_with(config).await;
    let created = client.post(SESSION, &json!({"user_id": "ivan"})).await;
    let session = created.str("/session_id");
    assert_eq!(
        created.str("/mcp/url"),
        format!("http://sandbox.internal:9900/tool_router/{session}/mcp")
    );
    let (_, token, redirect_url) = client.link(&session, json!({"toolkit": "gmail"})).await;
    assert_eq!(
        redirect_url,
        format!("http://sandbox.internal:9900/link/{token}")
    );
    let listed = client
        .get(&format!("{SESSION}/{session}/toolkits?toolkits=gmail"))
        .await;
    assert_eq!(
        listed.str("/items/0/meta/logo"),
        "http://sandbox.internal:9900/_sandbox/logos/gmail.svg"
    );
}

#[tokio::test]
async fn serve_runs_until_its_shutdown_future_completes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(toolgate_sandbox::serve(
        listener,
        SandboxConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = Client::new(base);
    assert_eq!(
        client.get("/api/v3.1/connected_accounts").await.status,
        StatusCode::OK
    );
    stop.send(()).expect("server still running");
    let finished = tokio::time::timeout(std::time::Duration::from_secs(30), server)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task");
    assert!(finished.is_ok(), "{finished:?}");
}
