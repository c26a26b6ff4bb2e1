//! Shared helpers: a sandbox on its own runtime (real clock), clients pointed at it, the
//! sandbox's `/_sandbox/` control plane, and bounded waits on the tracker's watch.

use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;
use tokio::sync::watch;
use toolgate_sandbox::{DEMO_API_KEY, Sandbox, SandboxConfig};
use toolgate_session::{
    ClientConfig, ComposioClient, CreateSessionRequest, GateSnapshot, ManageConnections, Session,
};

/// Generous bound for real-clock waits; a passing test finishes far sooner. It only turns a
/// broken tracker into a failure instead of a hang.
const PATIENCE: Duration = Duration::from_secs(15);

/// A sandbox on its own thread and runtime with the real clock, so tests may pause theirs.
pub(crate) fn sandbox() -> anyhow::Result<Sandbox> {
    sandbox_with(SandboxConfig::default())
}

pub(crate) fn sandbox_with(config: SandboxConfig) -> anyhow::Result<Sandbox> {
    Ok(Sandbox::start_detached(config)?)
}

/// Client settings safe under a paused clock: no timer may be pending while a request is in
/// flight, or tokio's auto-advance would fire it early.
pub(crate) fn config_for(sandbox: &Sandbox, key: &str) -> ClientConfig {
    let mut config = ClientConfig::with_base_url(SecretString::from(key), sandbox.base_url());
    config.connect_timeout = None;
    config.request_timeout = None;
    config.pool_idle_timeout = None;
    config
}

pub(crate) fn client(sandbox: &Sandbox) -> anyhow::Result<ComposioClient> {
    Ok(ComposioClient::new(config_for(sandbox, DEMO_API_KEY))?)
}

pub(crate) fn client_with(
    sandbox: &Sandbox,
    tweak: impl FnOnce(&mut ClientConfig),
) -> anyhow::Result<ComposioClient> {
    let mut config = config_for(sandbox, DEMO_API_KEY);
    tweak(&mut config);
    Ok(ComposioClient::new(config)?)
}

/// A session with in-chat connection management off (toolgate's mode).
pub(crate) async fn session(client: &ComposioClient, user_id: &str) -> anyhow::Result<Session> {
    let request = CreateSessionRequest {
        user_id: user_id.to_owned(),
        manage_connections: Some(ManageConnections::disabled()),
        ..CreateSessionRequest::default()
    };
    Ok(client.create_session(&request).await?)
}

/// A plain HTTP client for the control plane (no redirects: Allow answers 303 to the callback).
fn control_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(None)
        .build()?)
}

async fn control_post(
    sandbox: &Sandbox,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<reqwest::StatusCode> {
    let mut request = control_client()?.post(format!("{}{path}", sandbox.base_url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let text = response.text().await.unwrap_or_default();
        bail!("control plane POST {path} answered {status}: {text}");
    }
    Ok(status)
}

/// `ln_...` from a Connect Link URL `.../link/ln_...`.
pub(crate) fn link_token(connect_url: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(connect_url)?;
    let token = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .filter(|token| token.starts_with("ln_"))
        .with_context(|| format!("no link token in {connect_url}"))?;
    Ok(token.to_owned())
}

/// Presses Allow on the hosted Connect Link page.
pub(crate) async fn allow(sandbox: &Sandbox, connect_url: &str) -> anyhow::Result<()> {
    let token = link_token(connect_url)?;
    control_post(sandbox, &format!("/_sandbox/links/{token}/allow"), None).await?;
    Ok(())
}

/// Presses Deny on the hosted Connect Link page.
pub(crate) async fn deny(sandbox: &Sandbox, connect_url: &str) -> anyhow::Result<()> {
    let token = link_token(connect_url)?;
    control_post(sandbox, &format!("/_sandbox/links/{token}/deny"), None).await?;
    Ok(())
}

/// The user revokes the account's access upstream.
pub(crate) async fn revoke(sandbox: &Sandbox, account_id: &str) -> anyhow::Result<()> {
    control_post(
        sandbox,
        &format!("/_sandbox/accounts/{account_id}/revoke"),
        None,
    )
    .await?;
    Ok(())
}

/// The account (or its pending link) expires now.
pub(crate) async fn expire(sandbox: &Sandbox, account_id: &str) -> anyhow::Result<()> {
    control_post(
        sandbox,
        &format!("/_sandbox/accounts/{account_id}/expire"),
        None,
    )
    .await?;
    Ok(())
}

/// The account is disabled (INACTIVE), as Composio does for a paused connection.
pub(crate) async fn deactivate(sandbox: &Sandbox, account_id: &str) -> anyhow::Result<()> {
    control_post(
        sandbox,
        &format!("/_sandbox/accounts/{account_id}/deactivate"),
        None,
    )
    .await?;
    Ok(())
}

/// The account becomes ACTIVE again (Composio re-enabled it).
pub(crate) async fn activate(sandbox: &Sandbox, account_id: &str) -> anyhow::Result<()> {
    control_post(
        sandbox,
        &format!("/_sandbox/accounts/{account_id}/activate"),
        None,
    )
    .await?;
    Ok(())
}

/// Deletes a session behind the tracker's back (as an expiry or another tool would).
pub(crate) async fn delete_session(sandbox: &Sandbox, session_id: &str) -> anyhow::Result<()> {
    let response = control_client()?
        .delete(format!(
            "{}/api/v3.1/tool_router/session/{session_id}",
            sandbox.base_url()
        ))
        .header("x-api-key", DEMO_API_KEY)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("deleting the session answered {}", response.status());
    }
    Ok(())
}

/// Injects a fault (`{"path_prefix","status","retry_after","delay_ms","count"}`).
pub(crate) async fn fault(sandbox: &Sandbox, spec: serde_json::Value) -> anyhow::Result<()> {
    control_post(sandbox, "/_sandbox/faults", Some(spec)).await?;
    Ok(())
}

/// Removes every fault: "Composio" is back.
pub(crate) async fn clear_faults(sandbox: &Sandbox) -> anyhow::Result<()> {
    let response = control_client()?
        .delete(format!("{}/_sandbox/faults", sandbox.base_url()))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("clearing faults answered {}", response.status());
    }
    Ok(())
}

/// How many logged requests have this method and a path starting with `prefix`.
pub(crate) fn count_requests(sandbox: &Sandbox, method: &str, prefix: &str) -> usize {
    sandbox
        .requests()
        .iter()
        .filter(|request| request.method == method && request.path.starts_with(prefix))
        .count()
}

/// Waits (bounded, real clock) until the snapshot satisfies `predicate`; fails naming `what`
/// and showing the last snapshot otherwise.
pub(crate) async fn wait_for(
    receiver: &mut watch::Receiver<GateSnapshot>,
    what: &str,
    predicate: impl Fn(&GateSnapshot) -> bool,
) -> anyhow::Result<GateSnapshot> {
    let waited = tokio::time::timeout(PATIENCE, async {
        receiver
            .wait_for(|snapshot| predicate(snapshot))
            .await
            .map(|snapshot| snapshot.clone())
    })
    .await;
    match waited {
        Ok(Ok(snapshot)) => Ok(snapshot),
        Ok(Err(_)) => bail!("tracker stopped while waiting for {what}"),
        Err(_) => bail!(
            "timed out waiting for {what}; last snapshot: {:#?}",
            *receiver.borrow()
        ),
    }
}

/// The user's INITIATED account for `toolkit`, read through Composio's account listing.
pub(crate) async fn initiated_account(
    sandbox: &Sandbox,
    user_id: &str,
    toolkit: &str,
) -> anyhow::Result<String> {
    let response = control_client()?
        .get(format!(
            "{}/api/v3.1/connected_accounts",
            sandbox.base_url()
        ))
        .header("x-api-key", DEMO_API_KEY)
        .query(&[
            ("user_ids", user_id),
            ("toolkit_slugs", toolkit),
            ("statuses", "INITIALIZING,INITIATED"),
        ])
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    if !status.is_success() {
        bail!("listing accounts answered {status}: {body}");
    }
    let ids: Vec<&str> = body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    match ids.as_slice() {
        [id] => Ok((*id).to_owned()),
        other => bail!("expected one INITIATED {toolkit} account for {user_id}, found {other:?}"),
    }
}
