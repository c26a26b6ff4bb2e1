//! Prometheus metrics for `/metrics` (OpenMetrics text from `prometheus-client`).
//!
//! Labels are kept low-cardinality on purpose: JSON-RPC methods are bucketed into the known
//! MCP method names plus `other`, so a client cannot grow the registry by inventing methods.
//! Nothing here carries a secret, a user id or a URL.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// MCP methods that get their own label value; everything else is `other`.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
];

/// Labels of `toolgate_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// JSON-RPC method (bucketed), or the HTTP-level kind (`stream`, `delete`, `notification`,
    /// `batch`, `rejected`). Static strings: no allocation per request.
    method: &'static str,
    /// HTTP status sent to the client.
    status: u16,
}

/// Labels of `toolgate_upstream_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// `unreachable`, `timeout`, `credentials_refused` or `other`.
    kind: String,
}

/// Labels of `toolgate_composio_calls_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComposioCallLabels {
    /// The Composio operation, e.g. `list_toolkits` (a fixed set from the session crate).
    endpoint: &'static str,
    /// `ok`, `rate_limited`, `client_error`, `server_error` or `network`.
    outcome: &'static str,
}

/// Every metric the gateway exports, cheap to clone and share.
///
/// In multi-user modes each user's wiring holds a [`Metrics::for_user`] handle: its gate
/// updates add to the shared gauges instead of setting them, so `toolgate_gate_open` counts the
/// active users whose gate is open and `toolgate_pending_toolkits` sums their pending toolkits
/// (no user id ever becomes a label), and `toolgate_ready` is the front's own readiness.
#[derive(Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
    share: Option<Arc<std::sync::Mutex<GateShare>>>,
}

/// What one user's gate adds to the shared gauges now.
#[derive(Default)]
struct GateShare {
    open: i64,
    pending: i64,
    /// The user left the pool: their share is gone and later updates are ignored.
    released: bool,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    blocked_calls: Counter,
    held_calls: Counter,
    upstream_latency: Histogram,
    upstream_errors: Family<ErrorLabels, Counter>,
    gate_open: Gauge,
    pending_toolkits: Gauge,
    ready: Gauge,
    active_users: Gauge,
    composio_calls: Family<ComposioCallLabels, Counter>,
}

/// The metric label of a session-crate operation name (`list toolkits` → `list_toolkits`).
fn endpoint_label(operation: &'static str) -> &'static str {
    const KNOWN: &[(&str, &str)] = &[
        ("create session", "create_session"),
        ("get session", "get_session"),
        ("patch session", "patch_session"),
        ("list toolkits", "list_toolkits"),
        ("create connect link", "create_link"),
        ("get connected account", "get_connected_account"),
        ("list connected accounts", "list_connected_accounts"),
        ("delete connected account", "delete_connected_account"),
        ("get auth config", "get_auth_config"),
    ];
    KNOWN
        .iter()
        .find(|(name, _)| *name == operation)
        .map_or("other", |(_, label)| label)
}

impl toolgate_session::CallObserver for Metrics {
    fn call_finished(&self, operation: &'static str, outcome: toolgate_session::CallOutcome) {
        self.inner
            .composio_calls
            .get_or_create(&ComposioCallLabels {
                endpoint: endpoint_label(operation),
                outcome: outcome.as_str(),
            })
            .inc();
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (so all appear, at zero, from the start).
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("toolgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "MCP HTTP requests answered, by JSON-RPC method and HTTP status",
            requests.clone(),
        );
        let blocked_calls = Counter::default();
        registry.register(
            "blocked_tool_calls",
            "tools/call requests answered locally because a required toolkit was not connected",
            blocked_calls.clone(),
        );
        let held_calls = Counter::default();
        registry.register(
            "held_tool_calls",
            "tools/call requests held in wait mode until the gate opened or the wait timed out",
            held_calls.clone(),
        );
        // 1 ms .. ~33 s.
        let upstream_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "upstream_latency_seconds",
            "Time until the upstream's response head for forwarded requests",
            upstream_latency.clone(),
        );
        let upstream_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by kind",
            upstream_errors.clone(),
        );
        for kind in ["unreachable", "timeout", "credentials_refused", "other"] {
            // Touch each kind so the series exist at zero (alerts can use rate() right away).
            let _ = upstream_errors.get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
            });
        }
        let gate_open = Gauge::default();
        registry.register(
            "gate_open",
            "1 when every required toolkit is connected and tool calls pass",
            gate_open.clone(),
        );
        let pending_toolkits = Gauge::default();
        registry.register(
            "pending_toolkits",
            "Required toolkits not connected yet",
            pending_toolkits.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when the upstream session is known and requests can be forwarded",
            ready.clone(),
        );
        let active_users = Gauge::default();
        registry.register(
            "active_users",
            "Users with a live Composio session and tracker in this process (multi-user modes)",
            active_users.clone(),
        );
        let composio_calls = Family::<ComposioCallLabels, Counter>::default();
        registry.register(
            "composio_calls",
            "HTTP calls toolgate made to the Composio API (retries included), by endpoint and outcome",
            composio_calls.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                blocked_calls,
                held_calls,
                upstream_latency,
                upstream_errors,
                gate_open,
                pending_toolkits,
                ready,
                active_users,
                composio_calls,
            }),
            share: None,
        }
    }

    /// A handle for one user's wiring in a multi-user gateway (see the type's docs).
    pub(crate) fn for_user(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            share: Some(Arc::default()),
        }
    }

    /// The user of this handle left the pool: takes their share out of the gate gauges.
    pub(crate) fn release_user(&self) {
        if let Some(share) = &self.share {
            let mut share = share
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.inner.gate_open.dec_by(share.open);
            self.inner.pending_toolkits.dec_by(share.pending);
            *share = GateShare {
                released: true,
                ..GateShare::default()
            };
        }
    }

    /// Sets `toolgate_ready` alone (the multi-user front: "can serve").
    pub(crate) fn set_ready(&self, ready: bool) {
        self.inner.ready.set(i64::from(ready));
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            // Encoding into a String cannot fail short of a formatter bug; expose nothing
            // rather than a truncated exposition.
            out.clear();
        }
        out
    }

    /// Counts one answered request.
    pub(crate) fn request(&self, method: &'static str, status: u16) {
        self.inner
            .requests
            .get_or_create(&RequestLabels { method, status })
            .inc();
    }

    /// Counts one blocked `tools/call`.
    pub(crate) fn blocked_call(&self) {
        self.inner.blocked_calls.inc();
    }

    /// Counts one `tools/call` held in wait mode.
    pub(crate) fn held_call(&self) {
        self.inner.held_calls.inc();
    }

    /// Records the time until an upstream response head.
    pub(crate) fn upstream_latency(&self, elapsed: Duration) {
        self.inner.upstream_latency.observe(elapsed.as_secs_f64());
    }

    /// Counts an upstream failure of this kind.
    pub(crate) fn upstream_error(&self, kind: &str) {
        self.inner
            .upstream_errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Sets the gate gauges (a user's handle: replaces that user's share of them).
    pub(crate) fn set_gate(&self, ready: bool, open: bool, pending: usize) {
        let pending = i64::try_from(pending).unwrap_or(i64::MAX);
        if let Some(share) = &self.share {
            let mut share = share
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !share.released {
                self.inner.gate_open.inc_by(i64::from(open) - share.open);
                self.inner.pending_toolkits.inc_by(pending - share.pending);
                (share.open, share.pending) = (i64::from(open), pending);
            }
            return;
        }
        self.inner.ready.set(i64::from(ready));
        self.inner.gate_open.set(i64::from(open));
        self.inner.pending_toolkits.set(pending);
    }
}

impl Metrics {
    /// Sets the active-users gauge (a count only: user ids are never labels).
    pub(crate) fn set_active_users(&self, users: usize) {
        self.inner
            .active_users
            .set(i64::try_from(users).unwrap_or(i64::MAX));
    }
}

/// The label value for a JSON-RPC method: itself when known, else `other`.
pub(crate) fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_bounded_labels() {
        let metrics = Metrics::new();
        metrics.request(method_label("tools/call"), 200);
        metrics.request(method_label("made/up/method"), 200);
        metrics.blocked_call();
        metrics.upstream_latency(Duration::from_millis(3));
        metrics.upstream_error("timeout");
        metrics.set_gate(true, false, 2);
        let text = metrics.render();
        for needle in [
            "toolgate_requests_total{method=\"tools/call\",status=\"200\"} 1",
            "toolgate_requests_total{method=\"other\",status=\"200\"} 1",
            "toolgate_blocked_tool_calls_total 1",
            "toolgate_held_tool_calls_total 0",
            "toolgate_upstream_latency_seconds_count 1",
            "toolgate_upstream_errors_total{kind=\"timeout\"} 1",
            "toolgate_upstream_errors_total{kind=\"unreachable\"} 0",
            "toolgate_gate_open 0",
            "toolgate_pending_toolkits 2",
            "toolgate_ready 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains("made/up"));
    }

    #[test]
    fn users_gates_add_up_and_leave_with_the_user() {
        let metrics = Metrics::new();
        metrics.set_ready(true);
        let (alice, bob) = (metrics.for_user(), metrics.for_user());
        alice.set_gate(false, false, 2);
        bob.set_gate(true, false, 1);
        let text = metrics.render();
        assert!(text.contains("toolgate_gate_open 0"), "{text}");
        assert!(text.contains("toolgate_pending_toolkits 3"), "{text}");
        alice.set_gate(true, true, 0);
        alice.set_gate(true, true, 0);
        let text = metrics.render();
        assert!(text.contains("toolgate_gate_open 1"), "{text}");
        assert!(text.contains("toolgate_pending_toolkits 1"), "{text}");
        assert!(
            text.contains("toolgate_ready 1"),
            "a user's gate is not readiness"
        );
        bob.release_user();
        bob.set_gate(true, false, 5);
        alice.release_user();
        let text = metrics.render();
        assert!(text.contains("toolgate_gate_open 0"), "{text}");
        assert!(text.contains("toolgate_pending_toolkits 0"), "{text}");
    }
}
