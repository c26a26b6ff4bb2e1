//! The tracker's lifecycle against the sandbox: what an idle gateway costs (paused clock,
//! every call seen through the client's observer), the budget and the rate limit, a lost
//! session, pinned and INACTIVE accounts, and several accounts per toolkit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use toolgate_sandbox::Sandbox;
use toolgate_session::{
    AccountStatus, CallObserver, CallOutcome, ComposioClient, ConnectionTracker,
    CreateSessionRequest, GateSnapshot, LinkRequest, ManageConnections, MultiAccount, ToolkitState,
    TrackerConfig,
};

use crate::support::{self, activate, allow, count_requests, deactivate, expire, fault, wait_for};

/// Sends every call the client makes (with the tokio clock's time) to the test.
struct Recorder(mpsc::UnboundedSender<(&'static str, CallOutcome, Instant)>);

impl CallObserver for Recorder {
    fn call_finished(&self, operation: &'static str, outcome: CallOutcome) {
        let _ = self.0.send((operation, outcome, Instant::now()));
    }
}

type Calls = mpsc::UnboundedReceiver<(&'static str, CallOutcome, Instant)>;

fn observed_client(sandbox: &Sandbox) -> anyhow::Result<(ComposioClient, Calls)> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let client = support::client_with(sandbox, |config| {
        config.max_retries = 0;
        config.observer = Some(Arc::new(Recorder(sender)));
    })?;
    Ok((client, receiver))
}

/// Every call until the first one later than `until` after `start` (no timer in the test:
/// the tracker's own timers drive the paused clock).
async fn calls_until(
    calls: &mut Calls,
    start: Instant,
    until: Duration,
) -> Vec<(&'static str, CallOutcome, Duration)> {
    let mut seen = Vec::new();
    while let Some((operation, outcome, at)) = calls.recv().await {
        let offset = at.saturating_duration_since(start);
        seen.push((operation, outcome, offset));
        if offset > until {
            break;
        }
    }
    seen
}

fn state<'a>(snapshot: &'a GateSnapshot, slug: &str) -> anyhow::Result<&'a ToolkitState> {
    snapshot
        .toolkit(slug)
        .map(|toolkit| &toolkit.state)
        .with_context(|| format!("{slug} missing from {snapshot:#?}"))
}

fn connect_url(snapshot: &GateSnapshot, slug: &str) -> anyhow::Result<String> {
    match state(snapshot, slug)? {
        ToolkitState::Pending { connect_url, .. } => Ok(connect_url.clone()),
        other => bail!("{slug} is not pending: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn idle_pending_toolkits_cost_a_few_calls_per_hour() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (client, mut calls) = observed_client(&sandbox)?;
    let session = support::session(&client, "user_idle").await?;
    let start = Instant::now();
    let handle = ConnectionTracker::start(
        client,
        session.session_id,
        TrackerConfig::new(["gmail", "github", "slack"]),
    )
    .await?;
    let seen = calls_until(&mut calls, start, Duration::from_secs(70 * 60)).await;
    handle.shutdown();
    let mints = seen
        .iter()
        .filter(|(operation, ..)| *operation == "create connect link")
        .count();
    assert_eq!(mints, 3, "one link per toolkit, never re-minted on a timer");
    let polls = seen
        .iter()
        .filter(|(operation, ..)| *operation == "get connected account")
        .count();
    // The budget (60/min) and the backoff after two minutes bound the live-link polling.
    assert!((100..=200).contains(&polls), "{polls} polls in 10 minutes");
    let after_expiry: Vec<&str> = seen
        .iter()
        .filter(|(_, _, at)| *at > Duration::from_secs(601))
        .map(|(operation, ..)| *operation)
        .collect();
    assert!(
        after_expiry
            .iter()
            .all(|operation| *operation == "list toolkits"),
        "{after_expiry:?}"
    );
    eprintln!(
        "measured: {} calls in the first 10 minutes ({mints} links, {polls} polls), {} in the hour after",
        seen.len() - after_expiry.len(),
        after_expiry.len()
    );
    // One re-verification every 5 minutes: 12 an hour (the last one ends the window).
    assert!((11..=13).contains(&after_expiry.len()), "{after_expiry:?}");
    let snapshot = handle.snapshot();
    for slug in ["gmail", "github", "slack"] {
        assert!(
            matches!(
                state(&snapshot, slug)?,
                ToolkitState::NeedsLink { expired: true, .. }
            ),
            "{snapshot:#?}"
        );
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn background_calls_stay_under_the_ceiling_and_are_shared() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let (client, mut calls) = observed_client(&sandbox)?;
    let session = support::session(&client, "user_ceiling").await?;
    let start = Instant::now();
    let mut config = TrackerConfig::new(["gmail", "github", "slack"]);
    config.background_calls_per_minute = 10;
    let handle = ConnectionTracker::start(client, session.session_id, config).await?;
    let seen = calls_until(&mut calls, start, Duration::from_secs(300)).await;
    handle.shutdown();
    // The listing in `start` came before the worker's budget; everything after it counts.
    let times: Vec<Duration> = seen.iter().skip(1).map(|(_, _, at)| *at).collect();
    for (index, first) in times.iter().enumerate() {
        let in_window = times[index..]
            .iter()
            .take_while(|at| **at < *first + Duration::from_secs(60))
            .count();
        assert!(
            in_window <= 10,
            "{in_window} calls in the minute from {first:?}"
        );
    }
    let polls = seen
        .iter()
        .filter(|(operation, ..)| *operation == "get connected account")
        .count();
    assert!(polls >= 30, "{polls}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_spent_rate_limit_pauses_background_calls() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    // The first poll meets the organization's limit (Remaining 0, a 60 s window).
    fault(
        &sandbox,
        json!({"path_prefix": "/api/v3.1/connected_accounts", "status": 429, "retry_after": 30, "count": 1}),
    )
    .await?;
    let (client, mut calls) = observed_client(&sandbox)?;
    let session = support::session(&client, "user_limit").await?;
    let start = Instant::now();
    let handle =
        ConnectionTracker::start(client, session.session_id, TrackerConfig::new(["gmail"])).await?;
    let seen = calls_until(&mut calls, start, Duration::from_secs(120)).await;
    handle.shutdown();
    let limited = seen
        .iter()
        .position(|(_, outcome, _)| *outcome == CallOutcome::RateLimited)
        .context("no 429 seen")?;
    let next = seen.get(limited + 1).context("no call after the 429")?;
    assert!(
        next.2 >= seen[limited].2 + Duration::from_secs(60),
        "next call {:?} after the 429 at {:?}",
        next.2,
        seen[limited].2
    );
    Ok(())
}

#[tokio::test]
async fn a_deleted_session_is_reported_lost() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client_with(&sandbox, |config| config.max_retries = 0)?;
    for detect in ["verify", "hint"] {
        let session = support::session(&client, "user_lost").await?;
        let mut config = TrackerConfig::new(["gmail"]);
        config.min_check_spacing = Duration::ZERO;
        let handle =
            ConnectionTracker::start(client.clone(), session.session_id.clone(), config).await?;
        let mut receiver = handle.subscribe();
        wait_for(&mut receiver, "the first check", |snapshot| {
            snapshot.checked
        })
        .await?;
        support::delete_session(&sandbox, &session.session_id).await?;
        if detect == "verify" {
            handle.verify_session();
        } else {
            handle.hint();
        }
        let lost = wait_for(&mut receiver, "the loss", |snapshot| snapshot.session_lost).await;
        assert!(lost.is_ok(), "{detect}: {lost:?}");
        tokio::time::timeout(Duration::from_secs(15), handle.stopped()).await?;
    }
    Ok(())
}

/// A connected gmail account of `user` (through a throwaway session and its link).
async fn connected_account(
    sandbox: &Sandbox,
    client: &ComposioClient,
    user: &str,
) -> anyhow::Result<String> {
    let setup = support::session(client, user).await?;
    let link = client
        .authorize(
            &setup.session_id,
            &LinkRequest {
                toolkit: "gmail".to_owned(),
                ..LinkRequest::default()
            },
        )
        .await?;
    allow(sandbox, &link.redirect_url).await?;
    Ok(link.connected_account_id)
}

#[tokio::test]
async fn a_pinned_expired_account_is_a_state_not_a_loop() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client_with(&sandbox, |config| config.max_retries = 0)?;
    let account = connected_account(&sandbox, &client, "user_pinned").await?;
    expire(&sandbox, &account).await?;
    let pinned = client
        .create_session(&CreateSessionRequest {
            user_id: "user_pinned".to_owned(),
            manage_connections: Some(ManageConnections::disabled()),
            connected_accounts: [("gmail".to_owned(), vec![account.clone()])].into(),
            ..CreateSessionRequest::default()
        })
        .await?;
    let links_before = count_requests(&sandbox, "POST", "/api/v3.1/tool_router/session/");
    for told in [true, false] {
        let mut config = TrackerConfig::new(["gmail"]);
        config.min_check_spacing = Duration::ZERO;
        if told {
            config.pinned_accounts = [("gmail".to_owned(), vec![account.clone()])].into();
        }
        let handle =
            ConnectionTracker::start(client.clone(), pinned.session_id.clone(), config).await?;
        let mut receiver = handle.subscribe();
        let snapshot = wait_for(&mut receiver, "the pinned state", |snapshot| {
            matches!(
                state(snapshot, "gmail"),
                Ok(ToolkitState::PinnedUnusable { .. })
            )
        })
        .await?;
        match state(&snapshot, "gmail")? {
            ToolkitState::PinnedUnusable { account_id, status } => {
                assert_eq!(account_id, &account);
                assert_eq!(status, &AccountStatus::Expired);
            }
            other => bail!("{other:?}"),
        }
        // Asking for links again changes nothing and mints nothing more.
        handle.want_links();
        let again = handle.check_with_links().await?;
        assert!(matches!(
            state(&again, "gmail")?,
            ToolkitState::PinnedUnusable { .. }
        ));
        handle.shutdown();
    }
    // Told about the pin: no link request at all; not told: the one refused (400) request.
    assert_eq!(
        count_requests(&sandbox, "POST", "/api/v3.1/tool_router/session/"),
        links_before + 1
    );
    Ok(())
}

#[tokio::test]
async fn an_inactive_account_is_disabled_and_not_replaced() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client_with(&sandbox, |config| config.max_retries = 0)?;
    let account = connected_account(&sandbox, &client, "user_inactive").await?;
    let session = support::session(&client, "user_inactive").await?;
    let mut config = TrackerConfig::new(["gmail"]);
    config.min_check_spacing = Duration::ZERO;
    let handle = ConnectionTracker::start(client, session.session_id, config).await?;
    let mut receiver = handle.subscribe();
    wait_for(&mut receiver, "the gate to open", |snapshot| snapshot.open).await?;
    deactivate(&sandbox, &account).await?;
    let links_before = count_requests(&sandbox, "POST", "/api/v3.1/tool_router/session/");
    let disabled = handle.check_with_links().await?;
    assert_eq!(
        state(&disabled, "gmail")?,
        &ToolkitState::Disabled {
            account_id: account.clone()
        }
    );
    assert!(!disabled.open);
    assert_eq!(
        count_requests(&sandbox, "POST", "/api/v3.1/tool_router/session/"),
        links_before,
        "no new link replaces a disabled account"
    );
    activate(&sandbox, &account).await?;
    let back = handle.check_now().await?;
    assert!(back.open, "{back:#?}");
    Ok(())
}

#[tokio::test]
async fn several_accounts_per_toolkit() -> anyhow::Result<()> {
    let sandbox = support::sandbox()?;
    let client = support::client_with(&sandbox, |config| config.max_retries = 0)?;
    let session = client
        .create_session(&CreateSessionRequest {
            user_id: "user_multi".to_owned(),
            manage_connections: Some(ManageConnections::disabled()),
            multi_account: Some(MultiAccount {
                enable: Some(true),
                ..MultiAccount::default()
            }),
            ..CreateSessionRequest::default()
        })
        .await?;
    let mut config = TrackerConfig::new(["gmail"]);
    config.min_check_spacing = Duration::ZERO;
    config.multi_account = true;
    config.user_id = Some("user_multi".to_owned());
    let handle = ConnectionTracker::start(client, session.session_id, config).await?;
    let mut receiver = handle.subscribe();
    let pending = wait_for(&mut receiver, "a link", |snapshot| {
        connect_url(snapshot, "gmail").is_ok()
    })
    .await?;
    allow(&sandbox, &connect_url(&pending, "gmail")?).await?;
    handle.hint();
    wait_for(&mut receiver, "the gate to open", |snapshot| snapshot.open).await?;
    let second_link = handle.add_account("gmail").await?;
    assert_eq!(
        handle.add_account("gmail").await?,
        second_link,
        "one at a time"
    );
    allow(&sandbox, &second_link).await?;
    handle.hint();
    let both = wait_for(&mut receiver, "two accounts", |snapshot| {
        snapshot
            .toolkit("gmail")
            .is_some_and(|toolkit| toolkit.accounts.len() == 2)
    })
    .await?;
    let gmail = both.toolkit("gmail").context("no gmail")?;
    assert!(gmail.accounts[0].is_default && !gmail.accounts[1].is_default);
    assert_eq!(gmail.add_link, None);
    let second = gmail.accounts[1].id.clone();
    let after = handle.disconnect("gmail", Some(&second), false).await?;
    let gmail = after.toolkit("gmail").context("no gmail")?;
    assert_eq!(gmail.accounts.len(), 1, "{after:#?}");
    assert_ne!(gmail.accounts[0].id, second);
    assert!(after.open, "the default account still serves");
    Ok(())
}
