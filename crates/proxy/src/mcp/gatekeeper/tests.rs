//! The gate policy as a table, on a paused clock and without sockets: each row is a gate state,
//! a wait mode, a message, what the client declared and the gate changes over time, and the
//! steps the gatekeeper must produce. The faces' own tests then check only framing.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;
use crate::events::NoEvents;
use crate::mcp::error::{INVALID_REQUEST, UNAVAILABLE, URL_ELICITATION_REQUIRED};
use crate::mcp::policy::AllPending;
use crate::mcp::policy::testing::MailOnly;

fn toolkit(slug: &str, url: Option<&str>) -> PendingToolkit {
    PendingToolkit {
        slug: slug.into(),
        name: slug.to_uppercase(),
        connect_url: url.map(str::to_owned),
        status: "waiting for authorization".into(),
    }
}

fn closed() -> GateState {
    GateState::Closed {
        pending: vec![toolkit("gmail", Some("https://c/ln_gmail"))],
    }
}

fn unlinked() -> GateState {
    GateState::Closed {
        pending: vec![toolkit("gmail", None)],
    }
}

fn starting() -> GateState {
    GateState::Starting {
        reason: "creating the session".into(),
    }
}

const HOLD: WaitMode = WaitMode::Hold {
    timeout: Duration::from_secs(60),
    progress_interval: Duration::from_secs(20),
};

/// Blocks only `send_mail` calls while closed; reviews `search` results, replacing any whose
/// text says "not connected" with a blocked answer naming `github`.
fn mail_only() -> MailOnly {
    MailOnly {
        reviewed: "search",
        review: |response| {
            String::from_utf8_lossy(response)
                .contains("not connected")
                .then(|| vec![toolkit("github", Some("https://c/ln_gh"))])
        },
    }
}

/// What a row expects, step by step.
#[derive(Debug)]
enum Expect {
    Forward,
    Drop,
    /// A blocked `isError` result.
    Text,
    /// -32042 with this many elicitations.
    Elicit(usize),
    /// A JSON-RPC error with this code.
    Error(i64),
    /// A progress notification (only in holds).
    Progress,
    /// A batch answer: per request, `Text` or `Error(code)`.
    Batch(Vec<Expect>),
}

/// A gate change `at` seconds after the message arrived; `None` drops the sender.
type Change = (u64, Option<GateState>);

struct Row {
    name: &'static str,
    gate: GateState,
    wait: WaitMode,
    message: Value,
    context: CallContext,
    policy: Arc<dyn ToolPolicy>,
    changes: Vec<Change>,
    /// Expected steps, each with the paused-clock second it must happen at.
    steps: Vec<(u64, Expect)>,
}

fn call(id: Value, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"to":"a@b"},"_meta":{"progressToken":"tok"}}})
}

fn row(name: &'static str, gate: GateState, message: Value, steps: Vec<(u64, Expect)>) -> Row {
    Row {
        name,
        gate,
        wait: WaitMode::Off,
        message,
        context: CallContext {
            progress: true,
            ..CallContext::default()
        },
        policy: Arc::new(AllPending),
        changes: Vec::new(),
        steps,
    }
}

fn rows() -> Vec<Row> {
    let url_client = CallContext {
        url_elicitation: true,
        progress: true,
        ..CallContext::default()
    };
    let notification = json!({"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}});
    let batch = json!([call(json!(1), "a"), {"jsonrpc":"2.0","id":2,"method":"tools/list"}, {"jsonrpc":"2.0","method":"notifications/x"}]);
    let clean_batch = json!([{"jsonrpc":"2.0","id":2,"method":"tools/list"}]);
    vec![
        row(
            "open forwards",
            GateState::Open,
            call(json!(1), "a"),
            vec![(0, Expect::Forward)],
        ),
        row(
            "closed blocks with the text",
            closed(),
            call(json!(1), "a"),
            vec![(0, Expect::Text)],
        ),
        Row {
            context: url_client.clone(),
            ..row(
                "url client gets -32042",
                closed(),
                call(json!(1), "a"),
                vec![(0, Expect::Elicit(1))],
            )
        },
        Row {
            context: url_client.clone(),
            ..row(
                "no link: text even for a url client",
                unlinked(),
                call(json!(1), "a"),
                vec![(0, Expect::Text)],
            )
        },
        row(
            "starting refuses a call",
            starting(),
            call(json!(1), "a"),
            vec![(0, Expect::Error(UNAVAILABLE))],
        ),
        row(
            "starting drops a call notification",
            starting(),
            notification.clone(),
            vec![(0, Expect::Drop)],
        ),
        row(
            "closed drops a call notification",
            closed(),
            notification,
            vec![(0, Expect::Drop)],
        ),
        row(
            "open notification forwards",
            GateState::Open,
            json!({"jsonrpc":"2.0","method":"tools/call"}),
            vec![(0, Expect::Forward)],
        ),
        Row {
            wait: HOLD,
            changes: vec![(30, Some(GateState::Open))],
            ..row(
                "hold: progress at once and each interval, forward when open",
                closed(),
                call(json!(1), "a"),
                vec![
                    (0, Expect::Progress),
                    (20, Expect::Progress),
                    (30, Expect::Forward),
                ],
            )
        },
        Row {
            wait: HOLD,
            context: CallContext::default(),
            ..row(
                "hold without a stream: no progress, blocked answer at the bound",
                closed(),
                call(json!(1), "a"),
                vec![(60, Expect::Text)],
            )
        },
        Row {
            wait: HOLD,
            context: CallContext::default(),
            changes: vec![(10, Some(unlinked())), (20, Some(closed()))],
            ..row(
                "hold: a closed-to-closed change keeps holding",
                closed(),
                call(json!(1), "a"),
                vec![(60, Expect::Text)],
            )
        },
        Row {
            wait: HOLD,
            context: CallContext::default(),
            changes: vec![(10, Some(starting()))],
            ..row(
                "hold: back to starting keeps holding, then not ready",
                closed(),
                call(json!(1), "a"),
                vec![(60, Expect::Error(UNAVAILABLE))],
            )
        },
        Row {
            wait: HOLD,
            context: CallContext::default(),
            changes: vec![(10, Some(starting())), (40, Some(GateState::Open))],
            ..row(
                "hold: starting then open forwards",
                closed(),
                call(json!(1), "a"),
                vec![(40, Expect::Forward)],
            )
        },
        Row {
            wait: HOLD,
            context: CallContext::default(),
            changes: vec![(5, None)],
            ..row(
                "hold: the gate's sender gone answers at once",
                closed(),
                call(json!(1), "a"),
                vec![(5, Expect::Text)],
            )
        },
        Row {
            wait: HOLD,
            context: url_client.clone(),
            ..row(
                "hold: the bound gives -32042 to a url client",
                closed(),
                call(json!(1), "a"),
                vec![
                    (0, Expect::Progress),
                    (20, Expect::Progress),
                    (40, Expect::Progress),
                    (60, Expect::Elicit(1)),
                ],
            )
        },
        row(
            "batch: a blocked call answers the whole batch",
            closed(),
            batch.clone(),
            vec![(
                0,
                Expect::Batch(vec![Expect::Text, Expect::Error(INVALID_REQUEST)]),
            )],
        ),
        row(
            "batch: open forwards",
            GateState::Open,
            batch.clone(),
            vec![(0, Expect::Forward)],
        ),
        row(
            "batch: no call forwards",
            closed(),
            clean_batch,
            vec![(0, Expect::Forward)],
        ),
        row(
            "batch: starting refuses",
            starting(),
            batch,
            vec![(0, Expect::Error(UNAVAILABLE))],
        ),
        Row {
            policy: Arc::new(mail_only()),
            ..row(
                "policy: another tool passes a closed gate",
                closed(),
                call(json!(1), "search"),
                vec![(0, Expect::Forward)],
            )
        },
        Row {
            policy: Arc::new(mail_only()),
            ..row(
                "policy: its tool is blocked",
                closed(),
                call(json!(1), "send_mail"),
                vec![(0, Expect::Text)],
            )
        },
        Row {
            policy: Arc::new(mail_only()),
            wait: HOLD,
            context: CallContext::default(),
            changes: vec![(
                10,
                Some(GateState::Closed {
                    pending: Vec::new(),
                }),
            )],
            ..row(
                "policy: a held call goes once the policy lets it",
                closed(),
                call(json!(1), "send_mail"),
                vec![(10, Expect::Forward)],
            )
        },
    ]
}

fn check(name: &str, expect: &Expect, bytes: &[u8]) {
    let value: Value = serde_json::from_slice(bytes).unwrap();
    match expect {
        Expect::Text => assert_eq!(value["result"]["isError"], true, "{name}: {value}"),
        Expect::Elicit(count) => {
            assert_eq!(
                value["error"]["code"], URL_ELICITATION_REQUIRED,
                "{name}: {value}"
            );
            let elicitations = value["error"]["data"]["elicitations"].as_array().unwrap();
            assert_eq!(elicitations.len(), *count, "{name}: {value}");
        }
        Expect::Error(code) => assert_eq!(value["error"]["code"], *code, "{name}: {value}"),
        Expect::Progress => {
            assert_eq!(value["method"], "notifications/progress", "{name}: {value}");
            assert_eq!(value["params"]["progressToken"], "tok", "{name}: {value}");
            let text = value["params"]["message"].as_str().unwrap();
            assert!(text.contains("https://c/ln_gmail"), "{name}: {text}");
        }
        Expect::Batch(items) => {
            let answers = value.as_array().unwrap();
            assert_eq!(answers.len(), items.len(), "{name}: {value}");
            for (item, answer) in items.iter().zip(answers) {
                check(name, item, &serde_json::to_vec(answer).unwrap());
            }
        }
        Expect::Forward | Expect::Drop => panic!("{name}: expected {expect:?}, got {value}"),
    }
}

/// Applies the gate changes due by `now` (seconds since the start).
fn apply_due(sender: &mut Option<watch::Sender<GateState>>, changes: &mut Vec<Change>, now: u64) {
    while changes.first().is_some_and(|(at, _)| *at <= now) {
        let (_, change) = changes.remove(0);
        match change {
            Some(state) => {
                if let Some(sender) = sender {
                    sender.send_replace(state);
                }
            }
            None => *sender = None,
        }
    }
}

async fn run(row: Row) {
    let Row {
        name,
        gate,
        wait,
        message,
        context,
        policy,
        mut changes,
        steps,
    } = row;
    let (gate_tx, gate_rx) = watch::channel(gate);
    let (_upstream_tx, upstream_rx) = watch::channel(None);
    let keeper = Gatekeeper::new(gate_rx, upstream_rx, wait, policy, Arc::new(NoEvents));
    let bytes = Bytes::from(serde_json::to_vec(&message).unwrap());
    let started = tokio::time::Instant::now();
    let elapsed = move || (tokio::time::Instant::now() - started).as_secs();
    let mut sender = Some(gate_tx);
    let mut steps = steps.into_iter();
    let first = match super::super::message::parse_body(&bytes).unwrap() {
        super::super::message::Body::Batch(elements) => {
            match keeper.check_batch(&elements, &context) {
                BatchVerdict::Forward => Verdict::Forward,
                BatchVerdict::Answer(answer) => Verdict::Answer(answer),
                BatchVerdict::Fail(error) => Verdict::Fail(error),
            }
        }
        super::super::message::Body::Single(view) => keeper.check_call(&bytes, &view, &context),
        super::super::message::Body::Other => panic!("{name}: not a message"),
    };
    let mut hold = match first {
        Verdict::Hold(hold) => hold,
        verdict => {
            let (at, expect) = steps.next().unwrap();
            assert_eq!(at, 0, "{name}");
            match (&expect, verdict) {
                (Expect::Forward, Verdict::Forward) | (Expect::Drop, Verdict::Drop) => {}
                (_, Verdict::Answer(answer)) => check(name, &expect, &answer),
                (_, Verdict::Fail(error)) => check(name, &expect, &error.to_json()),
                (_, other) => panic!("{name}: expected {expect:?}, got {other:?}"),
            }
            assert!(steps.next().is_none(), "{name}: more steps expected");
            return;
        }
    };
    for (at, expect) in steps {
        let step = loop {
            apply_due(&mut sender, &mut changes, elapsed());
            let next_change = changes
                .first()
                .map(|(at, _)| started + Duration::from_secs(*at));
            tokio::select! {
                step = hold.next() => break step,
                () = tokio::time::sleep_until(next_change.unwrap_or(started + Duration::from_secs(3600))), if next_change.is_some() => {}
            }
        };
        assert_eq!(
            elapsed(),
            at,
            "{name}: {expect:?} at the wrong time ({step:?})"
        );
        match (&expect, step) {
            (Expect::Forward, HoldStep::Forward) => {}
            (_, HoldStep::Progress(note) | HoldStep::Notify(note)) => check(name, &expect, &note),
            (_, HoldStep::Answer(answer)) => check(name, &expect, &answer),
            (_, HoldStep::Fail(error)) => check(name, &expect, &error.to_json()),
            (_, other) => panic!("{name}: expected {expect:?}, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_gate_policy_table() {
    for row in rows() {
        run(row).await;
    }
}

#[tokio::test(start_paused = true)]
async fn results_are_reviewed_only_when_the_policy_asks() {
    let (_gate_tx, gate_rx) = watch::channel(GateState::Open);
    let (_upstream_tx, upstream_rx) = watch::channel(None);
    let events: Arc<dyn ProxyEvents> = Arc::new(NoEvents);
    let default = Gatekeeper::new(
        gate_rx.clone(),
        upstream_rx.clone(),
        WaitMode::Off,
        Arc::new(AllPending),
        Arc::clone(&events),
    );
    let reviewing = Gatekeeper::new(
        gate_rx,
        upstream_rx,
        WaitMode::Off,
        Arc::new(mail_only()),
        events,
    );
    let search = Bytes::from(call(json!("s-1"), "search").to_string());
    let mail = Bytes::from(call(json!(2), "send_mail").to_string());
    let context = CallContext::default();
    let view = Message::parse(&search).unwrap();
    assert!(default.review_for(&search, &view, &context).is_none());
    assert!(
        reviewing
            .review_for(&mail, &Message::parse(&mail).unwrap(), &context)
            .is_none()
    );
    let review = reviewing.review_for(&search, &view, &context).unwrap();
    let fine = br#"{"jsonrpc":"2.0","id":"s-1","result":{"content":[]}}"#;
    assert!(reviewing.review(&review, fine).await.is_none());
    let missing = br#"{"jsonrpc":"2.0","id":"s-1","result":{"content":[{"type":"text","text":"github not connected"}]}}"#;
    let replaced: Value =
        serde_json::from_slice(&reviewing.review(&review, missing).await.unwrap()).unwrap();
    assert_eq!(replaced["id"], "s-1");
    assert!(
        replaced["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("https://c/ln_gh")
    );
}

#[tokio::test(start_paused = true)]
async fn elicitations_complete_once_per_channel_when_their_toolkit_connects() {
    let (gate_tx, gate_rx) = watch::channel(GateState::Closed {
        pending: vec![
            toolkit("gmail", Some("https://c/1")),
            toolkit("github", Some("https://c/2")),
        ],
    });
    let (_upstream_tx, upstream_rx) = watch::channel(None);
    let keeper = Gatekeeper::new(
        gate_rx,
        upstream_rx,
        WaitMode::Off,
        Arc::new(AllPending),
        Arc::new(NoEvents),
    );
    let bytes = Bytes::from(call(json!(1), "a").to_string());
    let view = Message::parse(&bytes).unwrap();
    let mut ids = Vec::new();
    for channel in ["s1", "s2"] {
        let context = CallContext {
            url_elicitation: true,
            channel: Some(channel.into()),
            ..CallContext::default()
        };
        let Verdict::Answer(answer) = keeper.check_call(&bytes, &view, &context) else {
            panic!("not answered")
        };
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        for elicitation in answer["error"]["data"]["elicitations"].as_array().unwrap() {
            ids.push(elicitation["elicitationId"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 4);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        4,
        "every call and toolkit gets its own id: {ids:?}"
    );
    assert!(
        keeper.take_completed(Some("s1")).is_empty(),
        "nothing connected yet"
    );
    gate_tx.send_replace(GateState::Closed {
        pending: vec![toolkit("github", Some("https://c/2"))],
    });
    let done: Vec<Value> = keeper
        .take_completed(Some("s1"))
        .iter()
        .map(|note| serde_json::from_slice(note).unwrap())
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["method"], "notifications/elicitation/complete");
    assert_eq!(done[0]["params"]["elicitationId"], ids[0].as_str());
    assert!(
        keeper.take_completed(Some("s1")).is_empty(),
        "each completes once"
    );
    gate_tx.send_replace(GateState::Open);
    assert_eq!(keeper.take_completed(Some("s2")).len(), 2);
    assert!(keeper.has_outstanding(Some("s1")));
    assert_eq!(keeper.take_completed(Some("s1")).len(), 1);
    assert!(!keeper.has_outstanding(Some("s1")));
}
