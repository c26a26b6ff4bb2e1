//! The connection tracker against the sandbox over real HTTP (real clock, short intervals,
//! bounded waits on the watch channel).

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use toolgate_sandbox::{Sandbox, SandboxConfig};
use toolgate_session::{
    ComposioClient, ConnectionTracker, Fault, GateSnapshot, ToolkitState, TrackerConfig,
    TrackerError, TrackerHandle,
};

use crate::support::{
    self, allow, clear_faults, count_requests, deny, expire, fault, revoke, wait_for,
};

/// Short intervals so real-clock tests finish quickly; each test lengthens what it must rule out.
fn fast_config(required: &[&str]) -> TrackerConfig {
    let mut config = TrackerConfig::new(required.iter().copied());
    config.callback_url = Some("http://127.0.0.1:9/callback?from=toolgate".to_owned());
    config.pending_poll_interval = Duration::from_millis(20);
    config.reverify_interval = Duration::from_secs(3600);
    config.failed_display = Duration::from_millis(200);
    config.error_backoff_initial = Duration::from_millis(20);
    config.error_backoff_max = Duration::from_millis(100);
    config.min_check_spacing = Duration::ZERO;
    // These tests poll every 20 ms on purpose; the budget has its own tests.
    config.background_calls_per_minute = 1_000_000;
    config
}

fn needs_link(snapshot: &GateSnapshot, slug: &str) -> bool {
    matches!(state(snapshot, slug), Ok(ToolkitState::NeedsLink { .. }))
}

fn link_expired(snapshot: &GateSnapshot, slug: &str) -> bool {
    matches!(
        state(snapshot, slug),
        Ok(ToolkitState::NeedsLink { expired: true, .. })
    )
}

async fn start(
    sandbox: &Sandbox,
    user: &str,
    config: TrackerConfig,
) -> anyhow::Result<(ComposioClient, TrackerHandle)> {
    // The tracker has its own backoff; client-level retries would only slow these tests.
    let client = support::client_with(sandbox, |config| config.max_retries = 0)?;
    let created = support::session(&client, user).await?;
    let handle = ConnectionTracker::start(client.clone(), created.session_id, config).await?;
    Ok((client, handle))
}

fn state<'a>(snapshot: &'a GateSnapshot, slug: &str) -> anyhow::Result<&'a ToolkitState> {
    snapshot
        .toolkits
        .iter()
        .find(|toolkit| toolkit.slug == slug)
        .map(|toolkit| &toolkit.state)
        .with_context(|| format!("{slug} missing from {snapshot:#?}"))
}

fn connect_url(snapshot: &GateSnapshot, slug: &str) -> anyhow::Result<String> {
    match state(snapshot, slug)? {
        ToolkitState::Pending { connect_url, .. } => Ok(connect_url.clone()),
        other => bail!("{slug} is not pending: {other:?}"),
    }
}

fn is_pending(snapshot: &GateSnapshot, slug: &str) -> bool {
    matches!(state(snapshot, slug), Ok(ToolkitState::Pending { .. }))
}

fn is_connected(snapshot: &GateSnapshot, slug: &str) -> bool {
    matches!(state(snapshot, slug), Ok(ToolkitState::Connected { .. }))
}

fn account_id(snapshot: &GateSnapshot, slug: &str) -> anyhow::Result<String> {
    match state(snapshot, slug)? {
        ToolkitState::Connected { account_id } => Ok(account_id.clone()),
        other => bail!("{slug} is not connected: {other:?}"),
    }
}

/// Starts a tracker for `slugs` and connects them all through the hosted link page.
async fn open_gate(
    sandbox: &Sandbox,
    user: &str,
    config: TrackerConfig,
    slugs: &[&str],
) -> anyhow::Result<(ComposioClient, TrackerHandle, GateSnapshot)> {
    let (client, handle) = start(sandbox, user, config).await?;
    let mut receiver = handle.subscribe();
    let pending = wait_for(&mut receiver, "links for every toolkit", |snapshot| {
        slugs.iter().all(|slug| is_pending(snapshot, slug))
    })
    .await?;
    for slug in slugs {
        allow(sandbox, &connect_url(&pending, slug)?).await?;
    }
    handle.hint();
    let open = wait_for(&mut receiver, "the gate to open", |snapshot| snapshot.open).await?;
    Ok((client, handle, open))
}

#[tokio::test]
async fn pending_until_every_toolkit_is_allowed() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (_client, handle) = start(
        &sandbox,
        "user_flow",
        fast_config(&["gmail", "GitHub", "hackernews"]),
    )
    .await?;
    let mut receiver = handle.subscribe();
    let initial = handle.snapshot();
    assert!(!initial.open);

    let pending = wait_for(&mut receiver, "links minted", |snapshot| {
        snapshot.checked && is_pending(snapshot, "gmail") && is_pending(snapshot, "github")
    })
    .await?;
    assert!(!pending.open);
    assert_eq!(state(&pending, "hackernews")?, &ToolkitState::NoAuth);
    let slugs: Vec<&str> = pending
        .toolkits
        .iter()
        .map(|toolkit| toolkit.slug.as_str())
        .collect();
    assert_eq!(
        slugs,
        ["gmail", "github", "hackernews"],
        "configured order, normalised slugs"
    );
    let gmail = pending.toolkits.first().context("no gmail")?;
    assert_eq!(gmail.name, "Gmail");
    assert!(gmail.logo.is_some());
    let gmail_link = connect_url(&pending, "gmail")?;
    assert!(
        gmail_link.starts_with(&format!("{}/link/ln_", sandbox.base_url())),
        "{gmail_link}"
    );
    match state(&pending, "gmail")? {
        ToolkitState::Pending {
            expires_at,
            previous_failure,
            ..
        } => {
            assert!(*expires_at > chrono::Utc::now());
            assert_eq!(previous_failure, &None);
        }
        other => bail!("{other:?}"),
    }
    // The callback URL went to Composio with the link request.
    assert!(
        sandbox
            .requests()
            .iter()
            .any(|request| request.method == "POST" && request.path.ends_with("/link"))
    );
    assert_eq!(pending.blocking().count(), 2);

    allow(&sandbox, &gmail_link).await?;
    let half = wait_for(&mut receiver, "gmail connected", |snapshot| {
        is_connected(snapshot, "gmail")
    })
    .await?;
    assert!(!half.open, "github is still pending");

    allow(&sandbox, &connect_url(&half, "github")?).await?;
    let open = wait_for(&mut receiver, "the gate to open", |snapshot| snapshot.open).await?;
    assert!(account_id(&open, "gmail")?.starts_with("ca_"));
    assert!(account_id(&open, "github")?.starts_with("ca_"));
    assert_eq!(open.last_error, None);
    handle.shutdown();
    handle.stopped().await;
    Ok(())
}

#[tokio::test]
async fn hint_speeds_up_the_check() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let mut config = fast_config(&["gmail"]);
    // Without the hint nothing would be noticed for an hour.
    config.pending_poll_interval = Duration::from_secs(3600);
    let (_client, handle) = start(&sandbox, "user_hint", config).await?;
    let mut receiver = handle.subscribe();
    let pending = wait_for(&mut receiver, "a link", |snapshot| {
        is_pending(snapshot, "gmail")
    })
    .await?;
    allow(&sandbox, &connect_url(&pending, "gmail")?).await?;
    handle.hint();
    let open = wait_for(&mut receiver, "the hint to open the gate", |snapshot| {
        snapshot.open
    })
    .await?;
    assert!(is_connected(&open, "gmail"));
    Ok(())
}

#[tokio::test]
async fn spoofed_hint_changes_nothing() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let mut config = fast_config(&["gmail"]);
    config.pending_poll_interval = Duration::from_secs(3600);
    let (_client, handle) = start(&sandbox, "user_spoof", config).await?;
    let mut receiver = handle.subscribe();
    let pending = wait_for(&mut receiver, "a link", |snapshot| {
        is_pending(snapshot, "gmail")
    })
    .await?;
    let link = connect_url(&pending, "gmail")?;

    // A forged callback: nobody pressed Allow. The re-check asks Composio, which says INITIATED.
    let polls_before = count_requests(&sandbox, "GET", "/api/v3.1/connected_accounts/");
    handle.hint();
    handle.hint();
    let after = handle.check_now().await?;
    assert!(
        count_requests(&sandbox, "GET", "/api/v3.1/connected_accounts/") > polls_before,
        "the hint must cause a real re-check"
    );
    assert!(!after.open, "{after:#?}");
    assert_eq!(
        connect_url(&after, "gmail")?,
        link,
        "the same link stays valid"
    );
    assert_eq!(after.last_error, None);
    Ok(())
}

#[tokio::test]
async fn a_flood_of_hints_is_one_check() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let mut config = fast_config(&["gmail"]);
    config.pending_poll_interval = Duration::from_secs(3600);
    let (_client, handle) = start(&sandbox, "user_flood", config).await?;
    let mut receiver = handle.subscribe();
    wait_for(&mut receiver, "a link", |snapshot| {
        is_pending(snapshot, "gmail")
    })
    .await?;
    let listings =
        |sandbox: &Sandbox| count_requests(sandbox, "GET", "/api/v3.1/tool_router/session/");
    let before = listings(&sandbox);
    // This test runs on a current-thread runtime: the tracker cannot run until the test awaits,
    // so all these hints are queued when it looks at them.
    for _ in 0..500 {
        handle.hint();
        handle.upstream_rejected();
    }
    handle.check_now().await?;
    assert_eq!(
        listings(&sandbox),
        before + 1,
        "queued hints are merged into one check"
    );
    Ok(())
}

#[tokio::test]
async fn hints_are_spaced() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let mut config = fast_config(&["gmail"]);
    config.pending_poll_interval = Duration::from_secs(3600);
    config.min_check_spacing = Duration::from_millis(300);
    let (_client, handle) = start(&sandbox, "user_spacing", config).await?;
    let mut receiver = handle.subscribe();
    wait_for(&mut receiver, "a link", |snapshot| {
        is_pending(snapshot, "gmail")
    })
    .await?;
    let started = tokio::time::Instant::now();
    handle.check_now().await?;
    handle.check_now().await?;
    // Two checks need at least one spacing between their starts.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn deny_shows_failed_then_a_fresh_link() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (_client, handle) = start(&sandbox, "user_deny", fast_config(&["slack"])).await?;
    let mut receiver = handle.subscribe();
    let pending = wait_for(&mut receiver, "a link", |snapshot| {
        is_pending(snapshot, "slack")
    })
    .await?;
    let first_link = connect_url(&pending, "slack")?;
    deny(&sandbox, &first_link).await?;

    let failed = wait_for(&mut receiver, "slack failed", |snapshot| {
        matches!(state(snapshot, "slack"), Ok(ToolkitState::Failed { .. }))
    })
    .await?;
    assert!(!failed.open);
    match state(&failed, "slack")? {
        ToolkitState::Failed { reason } => assert!(reason.contains("denied"), "{reason}"),
        other => bail!("{other:?}"),
    }

    let fresh = wait_for(&mut receiver, "a fresh link", |snapshot| {
        is_pending(snapshot, "slack")
    })
    .await?;
    let second_link = connect_url(&fresh, "slack")?;
    assert_ne!(second_link, first_link);
    match state(&fresh, "slack")? {
        ToolkitState::Pending {
            previous_failure, ..
        } => {
            assert!(
                previous_failure
                    .as_deref()
                    .is_some_and(|reason| reason.contains("denied"))
            );
        }
        other => bail!("{other:?}"),
    }
    allow(&sandbox, &second_link).await?;
    wait_for(&mut receiver, "the gate to open", |snapshot| snapshot.open).await?;
    Ok(())
}

#[tokio::test]
async fn expired_link_is_reminted() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (_client, handle) = start(&sandbox, "user_expire", fast_config(&["notion"])).await?;
    let mut receiver = handle.subscribe();
    let pending = wait_for(&mut receiver, "a link", |snapshot| {
        is_pending(snapshot, "notion")
    })
    .await?;
    let first_link = connect_url(&pending, "notion")?;
    // Composio expires the unfinished account (as it does after ~10 minutes).
    let account = support::initiated_account(&sandbox, "user_expire", "notion").await?;
    expire(&sandbox, &account).await?;
    // Nobody is waiting: polling stops and no link is minted until someone needs one.
    wait_for(&mut receiver, "the link to be marked expired", |snapshot| {
        link_expired(snapshot, "notion")
    })
    .await?;
    assert_eq!(
        count_requests(&sandbox, "POST", "/api/v3.1/tool_router/session/"),
        1
    );
    handle.want_links();
    let fresh = wait_for(&mut receiver, "a fresh link on demand", |snapshot| {
        is_pending(snapshot, "notion")
            && connect_url(snapshot, "notion").is_ok_and(|url| url != first_link)
    })
    .await?;
    assert!(!fresh.open);
    allow(&sandbox, &connect_url(&fresh, "notion")?).await?;
    wait_for(&mut receiver, "the gate to open", |snapshot| snapshot.open).await?;
    Ok(())
}

#[tokio::test]
async fn sandbox_link_ttl_expiry_is_reminted() -> anyhow::Result<()> {
    // The sandbox's own TTL (Composio's ~10 minutes, shortened) expires the account.
    let sandbox = support::sandbox_with(SandboxConfig {
        link_ttl: Duration::from_millis(300),
        ..SandboxConfig::default()
    })?;
    let (_client, handle) = start(&sandbox, "user_ttl", fast_config(&["linear"])).await?;
    let mut receiver = handle.subscribe();
    let pending = wait_for(&mut receiver, "a link", |snapshot| {
        is_pending(snapshot, "linear")
    })
    .await?;
    let first_link = connect_url(&pending, "linear")?;
    wait_for(&mut receiver, "the link to be marked expired", |snapshot| {
        link_expired(snapshot, "linear")
    })
    .await?;
    handle.want_links();
    wait_for(&mut receiver, "a fresh link on demand", |snapshot| {
        connect_url(snapshot, "linear").is_ok_and(|url| url != first_link)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn link_lifetime_reminting_without_composio_expiry() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let mut config = fast_config(&["gmail"]);
    config.link_lifetime = Duration::from_millis(300);
    let (_client, handle) = start(&sandbox, "user_lifetime", config).await?;
    let mut receiver = handle.subscribe();
    let pending = wait_for(&mut receiver, "a link", |snapshot| {
        is_pending(snapshot, "gmail")
    })
    .await?;
    let first_link = connect_url(&pending, "gmail")?;
    let expired = wait_for(&mut receiver, "the lifetime to end the link", |snapshot| {
        link_expired(snapshot, "gmail")
    })
    .await?;
    assert!(!expired.open);
    let polls = count_requests(&sandbox, "GET", "/api/v3.1/connected_accounts/");
    handle.want_links();
    let fresh = wait_for(&mut receiver, "a fresh link on demand", |snapshot| {
        connect_url(snapshot, "gmail").is_ok_and(|url| url != first_link)
    })
    .await?;
    assert!(!fresh.open);
    assert!(polls > 0);
    Ok(())
}

#[tokio::test]
async fn revoke_while_open_closes_the_gate() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (_client, handle, open) =
        open_gate(&sandbox, "user_revoke", fast_config(&["gmail"]), &["gmail"]).await?;
    let account = account_id(&open, "gmail")?;
    revoke(&sandbox, &account).await?;
    // The upstream rejected a call: re-verify now (the periodic check is an hour away).
    handle.upstream_rejected();
    let mut receiver = handle.subscribe();
    let closed = wait_for(&mut receiver, "the gate to close", |snapshot| {
        !snapshot.open
    })
    .await?;
    let pending = if is_pending(&closed, "gmail") {
        closed
    } else {
        wait_for(&mut receiver, "a fresh link", |snapshot| {
            is_pending(snapshot, "gmail")
        })
        .await?
    };
    allow(&sandbox, &connect_url(&pending, "gmail")?).await?;
    wait_for(&mut receiver, "the gate to reopen", |snapshot| {
        snapshot.open
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn periodic_reverification_notices_a_revoke() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let mut config = fast_config(&["github"]);
    config.reverify_interval = Duration::from_millis(100);
    let (_client, handle, open) = open_gate(&sandbox, "user_reverify", config, &["github"]).await?;
    revoke(&sandbox, &account_id(&open, "github")?).await?;
    let mut receiver = handle.subscribe();
    wait_for(
        &mut receiver,
        "the periodic check to close the gate",
        |snapshot| !snapshot.open && needs_link(snapshot, "github"),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn outage_keeps_the_last_state_and_recovers() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let mut config = fast_config(&["gmail", "github"]);
    config.reverify_interval = Duration::from_millis(50);
    let (_client, handle) = start(&sandbox, "user_outage", config).await?;
    let mut receiver = handle.subscribe();
    let pending = wait_for(&mut receiver, "links", |snapshot| {
        is_pending(snapshot, "gmail") && is_pending(snapshot, "github")
    })
    .await?;
    allow(&sandbox, &connect_url(&pending, "gmail")?).await?;
    let before = wait_for(&mut receiver, "gmail connected", |snapshot| {
        is_connected(snapshot, "gmail")
    })
    .await?;
    let github_link = connect_url(&before, "github")?;

    // Composio goes down: every API call has its connection dropped.
    fault(&sandbox, json!({"path_prefix": "/api", "status": 0})).await?;
    let down = wait_for(&mut receiver, "the outage to be recorded", |snapshot| {
        snapshot.last_error.is_some()
    })
    .await?;
    let error = down.last_error.clone().context("no error")?;
    assert_eq!(error.fault, Fault::Network);
    assert!(!down.open, "an outage never opens the gate");
    assert_eq!(
        state(&down, "gmail")?,
        state(&before, "gmail")?,
        "last state kept"
    );
    assert_eq!(
        connect_url(&down, "github")?,
        github_link,
        "last state kept"
    );

    // Still down after more retries (the count grows), state still kept.
    let attempts = count_requests(&sandbox, "GET", "/api");
    handle.upstream_rejected();
    // Each failed retry records a fresh error, which wakes the receiver.
    let still = wait_for(&mut receiver, "more retries", |_| {
        count_requests(&sandbox, "GET", "/api") > attempts + 3
    })
    .await?;
    assert!(still.last_error.is_some());
    assert!(is_connected(&still, "gmail"));
    assert_eq!(connect_url(&still, "github")?, github_link);

    // Then a 503 phase: errors are Composio's fault now.
    clear_faults(&sandbox).await?;
    fault(&sandbox, json!({"path_prefix": "/api", "status": 503})).await?;
    wait_for(&mut receiver, "a Composio-side error", |snapshot| {
        snapshot
            .last_error
            .as_ref()
            .is_some_and(|error| error.fault == Fault::Composio && error.status == Some(503))
    })
    .await?;

    // Composio is back: the error clears and the gate opens once the user finishes.
    clear_faults(&sandbox).await?;
    let recovered = wait_for(&mut receiver, "recovery", |snapshot| {
        snapshot.last_error.is_none()
    })
    .await?;
    assert!(is_connected(&recovered, "gmail"));
    allow(&sandbox, &connect_url(&recovered, "github")?).await?;
    wait_for(&mut receiver, "the gate to open", |snapshot| snapshot.open).await?;
    Ok(())
}

#[tokio::test]
async fn outage_while_open_keeps_it_open() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let mut config = fast_config(&["gmail"]);
    config.reverify_interval = Duration::from_millis(50);
    let (_client, handle, _open) =
        open_gate(&sandbox, "user_open_outage", config, &["gmail"]).await?;
    fault(&sandbox, json!({"path_prefix": "/api", "status": 500})).await?;
    let mut receiver = handle.subscribe();
    let down = wait_for(&mut receiver, "the outage to be recorded", |snapshot| {
        snapshot.last_error.is_some()
    })
    .await?;
    assert!(
        down.open,
        "a Composio outage does not close a verified gate"
    );
    clear_faults(&sandbox).await?;
    let back = wait_for(&mut receiver, "recovery", |snapshot| {
        snapshot.last_error.is_none()
    })
    .await?;
    assert!(back.open);
    Ok(())
}

#[tokio::test]
async fn unknown_toolkits_are_a_startup_error_naming_them() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client(&sandbox)?;
    let created = support::session(&client, "user_unknown").await?;
    let config = TrackerConfig::new(["gmail", "nosuchkit", "other_unknown"]);
    match ConnectionTracker::start(client.clone(), created.session_id.clone(), config).await {
        Err(TrackerError::UnknownToolkits(slugs)) => {
            assert_eq!(slugs, ["nosuchkit", "other_unknown"]);
            let text = TrackerError::UnknownToolkits(slugs).to_string();
            assert!(
                text.contains("nosuchkit") && text.contains("other_unknown"),
                "{text}"
            );
        }
        other => bail!("expected unknown toolkits, got {other:?}"),
    }
    // A session that does not exist is a startup error too (the caller retries startup).
    match ConnectionTracker::start(client, "trs_doesnotexist", TrackerConfig::new(["gmail"])).await
    {
        Err(TrackerError::Composio(error)) => assert!(error.is_not_found(), "{error}"),
        other => bail!("expected a 404, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn toolkit_without_auth_config_is_failed_with_the_reason() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (_client, handle) = start(&sandbox, "user_noconfig", fast_config(&["shopify"])).await?;
    let mut receiver = handle.subscribe();
    let failed = wait_for(&mut receiver, "shopify failed", |snapshot| {
        matches!(state(snapshot, "shopify"), Ok(ToolkitState::Failed { .. }))
    })
    .await?;
    assert!(!failed.open);
    match state(&failed, "shopify")? {
        ToolkitState::Failed { reason } => assert!(reason.contains("auth config"), "{reason}"),
        other => bail!("{other:?}"),
    }
    let error = failed.last_error.context("no last error")?;
    assert_eq!(error.status, Some(404));
    assert_eq!(error.fault, Fault::Ours);
    Ok(())
}

#[tokio::test]
async fn no_required_toolkits_means_open() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (_client, handle) = start(&sandbox, "user_none", fast_config(&[])).await?;
    let mut receiver = handle.subscribe();
    let snapshot = wait_for(&mut receiver, "a check", |snapshot| snapshot.checked).await?;
    assert!(snapshot.open);
    assert!(snapshot.toolkits.is_empty());
    Ok(())
}

#[tokio::test]
async fn disconnect_deletes_the_account_and_offers_a_new_link() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (client, handle, open) = open_gate(
        &sandbox,
        "user_disconnect",
        fast_config(&["gmail", "hackernews"]),
        &["gmail"],
    )
    .await?;
    let account = account_id(&open, "gmail")?;

    let after = handle.disconnect("gmail", None, true).await?;
    assert!(!after.open);
    assert!(needs_link(&after, "gmail"), "{after:#?}");
    let offered = handle.check_with_links().await?;
    assert!(is_pending(&offered, "gmail"), "{offered:#?}");
    assert!(
        client
            .get_connected_account(&account)
            .await
            .err()
            .is_some_and(|error| error.is_not_found())
    );
    assert!(sandbox.requests().iter().any(|request| {
        request.method == "DELETE"
            && request
                .path
                .starts_with(&format!("/api/v3.1/connected_accounts/{account}"))
    }));

    assert!(matches!(
        handle.disconnect("slack", None, false).await,
        Err(TrackerError::NotTracked(_))
    ));
    assert!(matches!(
        handle.disconnect("gmail", None, false).await,
        Err(TrackerError::NotConnected(_))
    ));
    assert!(matches!(
        handle.disconnect("hackernews", None, false).await,
        Err(TrackerError::NotConnected(_))
    ));
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_the_tracker() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (_client, handle) = start(&sandbox, "user_shutdown", fast_config(&["gmail"])).await?;
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(15), handle.stopped()).await?;
    assert!(matches!(
        handle.check_now().await,
        Err(TrackerError::Stopped)
    ));
    // Shutdown does not wait for a Composio call in progress (here: one stuck for an hour).
    let (_client, busy) = start(&sandbox, "user_shutdown", fast_config(&["gmail"])).await?;
    let mut receiver = busy.subscribe();
    wait_for(&mut receiver, "a link", |snapshot| {
        is_pending(snapshot, "gmail")
    })
    .await?;
    // Counted before the fault goes in: the tracker's next request (its own poll or the
    // hint's check) is the one that gets stuck.
    let stuck_before = count_requests(&sandbox, "GET", "/api");
    fault(
        &sandbox,
        json!({"path_prefix": "/api", "delay_ms": 3_600_000, "count": 1}),
    )
    .await?;
    busy.hint();
    // Poll the condition, bounded (15 s).
    for _ in 0..1500 {
        if count_requests(&sandbox, "GET", "/api") > stuck_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        count_requests(&sandbox, "GET", "/api") > stuck_before,
        "the tracker never sent its request"
    );
    busy.shutdown();
    tokio::time::timeout(Duration::from_secs(15), busy.stopped()).await?;
    clear_faults(&sandbox).await?;
    // Dropping every handle stops a tracker too.
    let (_client, other) = start(&sandbox, "user_shutdown", fast_config(&["gmail"])).await?;
    let mut receiver = other.subscribe();
    drop(other);
    tokio::time::timeout(Duration::from_secs(15), async {
        while receiver.changed().await.is_ok() {}
    })
    .await?;
    Ok(())
}
