//! The API key appears in no Debug, Display or error output, whatever goes wrong.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;
use toolgate_sandbox::SandboxConfig;
use toolgate_session::{
    ClientConfig, ComposioClient, ConnectionTracker, CreateSessionRequest, LinkRequest,
    ToolkitSelection, TrackerConfig,
};

use crate::support::{self, fault, wait_for};

const SECRET_KEY: &str = "sk_live_Secret_9f8e7d6c5b4a";

#[tokio::test]
async fn the_api_key_never_appears_in_output() -> anyhow::Result<()> {
    let sandbox = support::sandbox_with(SandboxConfig {
        api_keys: vec![SECRET_KEY.to_owned()],
        ..SandboxConfig::default()
    })?;
    let mut config = support::config_for(&sandbox, SECRET_KEY);
    // Retries are covered elsewhere; here they would only add real-clock backoff.
    config.max_retries = 0;
    let client = ComposioClient::new(config.clone())?;
    let mut outputs: Vec<String> = vec![format!("{config:?}"), format!("{client:?}")];

    let session = client
        .create_session(&CreateSessionRequest {
            user_id: "user_secret".to_owned(),
            ..CreateSessionRequest::default()
        })
        .await?;
    let endpoint = client.mcp_endpoint(&session)?;
    outputs.push(format!("{endpoint:?} {endpoint:#?} {session:?}"));

    // Every kind of failure: validation, not found, rate limit (retried), dropped connection,
    // foreign MCP origin, a bad configuration, an unknown toolkit at tracker start.
    let bad = client
        .create_session(&CreateSessionRequest {
            user_id: "user_secret".to_owned(),
            toolkits: Some(ToolkitSelection::Enable(vec!["nope".to_owned()])),
            ..CreateSessionRequest::default()
        })
        .await;
    let missing = client.get_connected_account("ca_missing").await;
    let no_config = client
        .authorize(
            &session.session_id,
            &LinkRequest {
                toolkit: "shopify".to_owned(),
                ..LinkRequest::default()
            },
        )
        .await;
    fault(
        &sandbox,
        json!({"path_prefix": "/api", "status": 429, "retry_after": 1, "count": 1}),
    )
    .await?;
    let limited = client.get_session(&session.session_id).await;
    fault(
        &sandbox,
        json!({"path_prefix": "/api", "status": 0, "count": 1}),
    )
    .await?;
    let dropped = client.get_session(&session.session_id).await;
    let mut foreign = session.clone();
    foreign.mcp.url = "https://evil.example/tool_router/x/mcp".to_owned();
    let origin = client.mcp_endpoint(&foreign);
    let bad_config = ComposioClient::new(ClientConfig::with_base_url(
        SecretString::from(SECRET_KEY),
        "ftp://nowhere",
    ));
    let wait = client
        .wait_for_connection("ca_missing", Duration::from_secs(1))
        .await;
    let unknown = ConnectionTracker::start(
        client.clone(),
        session.session_id.clone(),
        TrackerConfig::new(["does_not_exist"]),
    )
    .await;
    for error in [
        bad.err(),
        no_config.err(),
        limited.err(),
        dropped.err(),
        origin.err(),
        bad_config.err(),
    ]
    .into_iter()
    .chain([missing.err()])
    {
        let error = error.ok_or_else(|| anyhow::anyhow!("a failure case succeeded"))?;
        outputs.push(format!("{error} | {error:?} | {error:#?}"));
    }
    let wait = wait
        .err()
        .ok_or_else(|| anyhow::anyhow!("wait succeeded"))?;
    outputs.push(format!("{wait} | {wait:?}"));
    let unknown = unknown
        .err()
        .ok_or_else(|| anyhow::anyhow!("unknown toolkit accepted"))?;
    outputs.push(format!("{unknown} | {unknown:?}"));

    // The tracker's snapshot and handle, including a recorded error.
    let mut tracker_config = TrackerConfig::new(["gmail", "shopify"]);
    tracker_config.error_backoff_initial = Duration::from_millis(20);
    tracker_config.error_backoff_max = Duration::from_millis(50);
    let handle =
        ConnectionTracker::start(client.clone(), session.session_id.clone(), tracker_config)
            .await?;
    let mut receiver = handle.subscribe();
    let snapshot = wait_for(&mut receiver, "a recorded error", |snapshot| {
        snapshot.last_error.is_some()
    })
    .await?;
    outputs.push(format!("{handle:?} {snapshot:?} {snapshot:#?}"));

    assert!(outputs.len() > 10);
    for output in &outputs {
        assert!(!output.contains(SECRET_KEY), "the key leaked: {output}");
        assert!(
            !output.contains("Secret_9f8e"),
            "part of the key leaked: {output}"
        );
    }
    // The key was really used (so the test could have failed).
    assert!(
        sandbox.requests().iter().any(|request| request
            .headers
            .get("x-api-key")
            .map(String::as_str)
            == Some(SECRET_KEY))
    );
    Ok(())
}
