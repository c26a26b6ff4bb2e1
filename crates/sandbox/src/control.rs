//! The test backdoor's state: injected faults and the log of received requests.
//!
//! Both are reachable over HTTP under `/_sandbox/` (see `crate::router`) and, for the request
//! log, through [`crate::Sandbox::requests`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::ApiError;

/// The request log keeps at most this many entries (the oldest are dropped), so a long-running
/// `toolgate sandbox` process does not grow without bound.
const MAX_LOGGED_REQUESTS: usize = 10_000;

/// One request the sandbox received, as `GET /_sandbox/requests` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The path with its query string, e.g. `/api/v3.1/tool_router/session/trs_x/toolkits?limit=50`.
    pub path: String,
    /// Header names (lowercase) and values; repeated headers are joined with `", "`. Nothing
    /// is redacted: this is a test tool, and asserting what a client sent is its purpose.
    pub headers: BTreeMap<String, String>,
    /// The `x-request-id` the sandbox answered with.
    pub request_id: String,
}

/// A fault to inject, as posted to `POST /_sandbox/faults`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultSpec {
    /// Requests whose path starts with this prefix are affected (control-plane paths never are).
    path_prefix: String,
    /// The status to answer with; `0` drops the connection without an answer; absent means
    /// "only delay, then serve normally".
    status: Option<u16>,
    /// Seconds for the `Retry-After` header.
    retry_after: Option<u64>,
    /// Delay before answering (or dropping, or serving).
    delay_ms: Option<u64>,
    /// How many matching requests are affected; absent means every one until
    /// `DELETE /_sandbox/faults` (an outage).
    count: Option<u64>,
}

/// What to do with one request that matched a fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FaultAction {
    /// `None`: serve normally after the delay; `Some(0)`: drop the connection.
    pub(crate) status: Option<u16>,
    /// `Retry-After` seconds.
    pub(crate) retry_after: Option<u64>,
    /// Wait this long first.
    pub(crate) delay: Duration,
}

#[derive(Debug)]
struct ActiveFault {
    spec: FaultSpec,
    /// Remaining matches; `None` is unlimited.
    remaining: Option<u64>,
}

/// Injected faults and the request log.
#[derive(Debug, Default)]
pub(crate) struct Control {
    faults: Mutex<Vec<ActiveFault>>,
    requests: Mutex<VecDeque<RecordedRequest>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain lists, updated in one step: a panicked holder cannot leave them half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Control {
    /// Validates and installs a fault.
    pub(crate) fn add_fault(&self, spec: FaultSpec) -> Result<(), ApiError> {
        if !spec.path_prefix.starts_with('/') || spec.path_prefix.starts_with("/_sandbox") {
            return Err(ApiError::bad_request(
                "path_prefix must start with / and must not be a /_sandbox/ path",
            ));
        }
        if let Some(status) = spec.status
            && status != 0
            && !(100..=599).contains(&status)
        {
            return Err(ApiError::bad_request(
                "status must be 0 (drop the connection) or an HTTP status 100-599",
            ));
        }
        if spec.status.is_none() && spec.delay_ms.is_none() {
            return Err(ApiError::bad_request(
                "a fault needs a status, a delay_ms, or both",
            ));
        }
        if spec.count == Some(0) {
            return Err(ApiError::bad_request(
                "count must be at least 1 (omit it for every request)",
            ));
        }
        let remaining = spec.count;
        locked(&self.faults).push(ActiveFault { spec, remaining });
        Ok(())
    }

    /// Removes every fault.
    pub(crate) fn clear_faults(&self) {
        locked(&self.faults).clear();
    }

    /// Consumes one use of the first fault matching `path`, if any.
    pub(crate) fn take_fault(&self, path: &str) -> Option<FaultAction> {
        let mut faults = locked(&self.faults);
        let index = faults
            .iter()
            .position(|fault| path.starts_with(&fault.spec.path_prefix))?;
        let fault = &mut faults[index];
        let action = FaultAction {
            status: fault.spec.status,
            retry_after: fault.spec.retry_after,
            delay: Duration::from_millis(fault.spec.delay_ms.unwrap_or(0)),
        };
        if let Some(remaining) = &mut fault.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                faults.remove(index);
            }
        }
        Some(action)
    }

    /// Appends to the request log.
    pub(crate) fn record(&self, request: RecordedRequest) {
        let mut requests = locked(&self.requests);
        if requests.len() >= MAX_LOGGED_REQUESTS {
            requests.pop_front();
        }
        requests.push_back(request);
    }

    /// The request log, oldest first.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        locked(&self.requests).iter().cloned().collect()
    }

    /// Empties the request log.
    pub(crate) fn clear_requests(&self) {
        locked(&self.requests).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<FaultSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn counted_faults_run_out_and_unlimited_ones_do_not() -> Result<(), Box<dyn std::error::Error>>
    {
        let control = Control::default();
        control
            .add_fault(spec(r#"{"path_prefix":"/api","status":503,"count":2}"#)?)
            .map_err(|error| error.message)?;
        assert_eq!(
            control
                .take_fault("/api/v3.1/x")
                .and_then(|action| action.status),
            Some(503)
        );
        assert!(control.take_fault("/other").is_none());
        assert!(control.take_fault("/api/v3.1/x").is_some());
        assert!(control.take_fault("/api/v3.1/x").is_none());
        control
            .add_fault(spec(r#"{"path_prefix":"/","status":0}"#)?)
            .map_err(|error| error.message)?;
        for _ in 0..5 {
            assert_eq!(
                control.take_fault("/x").and_then(|action| action.status),
                Some(0)
            );
        }
        control.clear_faults();
        assert!(control.take_fault("/x").is_none());
        Ok(())
    }

    #[test]
    fn the_request_log_keeps_the_newest_entries() {
        let control = Control::default();
        for index in 0..=MAX_LOGGED_REQUESTS {
            control.record(RecordedRequest {
                method: "GET".to_owned(),
                path: format!("/{index}"),
                headers: BTreeMap::new(),
                request_id: index.to_string(),
            });
        }
        let requests = control.requests();
        assert_eq!(requests.len(), MAX_LOGGED_REQUESTS);
        assert_eq!(requests[0].path, "/1");
        assert_eq!(
            requests[MAX_LOGGED_REQUESTS - 1].path,
            format!("/{MAX_LOGGED_REQUESTS}")
        );
    }

    #[test]
    fn bad_faults_are_refused() -> Result<(), serde_json::Error> {
        let control = Control::default();
        for bad in [
            r#"{"path_prefix":"/_sandbox/","status":500}"#,
            r#"{"path_prefix":"api","status":500}"#,
            r#"{"path_prefix":"/","status":42}"#,
            r#"{"path_prefix":"/"}"#,
            r#"{"path_prefix":"/","status":500,"count":0}"#,
        ] {
            assert!(control.add_fault(spec(bad)?).is_err(), "{bad}");
        }
        assert!(spec(r#"{"path_prefix":"/","status":500,"colour":"red"}"#).is_err());
        Ok(())
    }
}
