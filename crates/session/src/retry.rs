//! Retry policy of the Composio client, mirroring the official SDKs' HTTP layer: which answers
//! are retried, how long to wait (server-requested delay first, else capped exponential
//! backoff with jitter).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

/// First backoff step; doubles per retry.
const INITIAL_RETRY_DELAY_SECS: f64 = 0.5;
/// Cap of the exponential backoff.
const MAX_RETRY_DELAY_SECS: f64 = 8.0;
/// A server-requested delay is honoured only up to this; a longer one falls back to backoff,
/// as the SDKs do (a minute-long stall inside one call helps nobody).
const MAX_SERVER_DELAY: Duration = Duration::from_secs(60);
/// Largest fraction shaved off a backoff step by jitter.
const MAX_JITTER: f64 = 0.25;

/// Whether an answer with this status and headers should be retried. `x-should-retry`
/// overrides the status rule in both directions.
pub(crate) fn should_retry(status: StatusCode, headers: &HeaderMap) -> bool {
    match headers
        .get("x-should-retry")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
    {
        Some(value) if value.eq_ignore_ascii_case("true") => return true,
        Some(value) if value.eq_ignore_ascii_case("false") => return false,
        _ => {}
    }
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// The delay the server asked for: `retry-after-ms` (milliseconds), else `Retry-After`
/// (seconds or an HTTP date relative to `now`). Only a delay in (0, 60 s] counts.
pub(crate) fn server_requested_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let millis = header("retry-after-ms")
        .and_then(|text| text.parse::<f64>().ok())
        .and_then(|millis| Duration::try_from_secs_f64(millis / 1000.0).ok());
    let delay = millis.or_else(|| {
        let text = header("retry-after")?;
        match text.parse::<f64>() {
            Ok(seconds) => Duration::try_from_secs_f64(seconds).ok(),
            Err(_) => httpdate::parse_http_date(text)
                .ok()
                .and_then(|date| date.duration_since(now).ok()),
        }
    })?;
    (!delay.is_zero() && delay <= MAX_SERVER_DELAY).then_some(delay)
}

/// Exponential backoff for retry number `retry_index` (0 for the first retry):
/// `min(0.5 * 2^n, 8)` seconds, reduced by up to 25 % by `jitter` in `[0, 1)`.
pub(crate) fn backoff_delay(retry_index: u32, jitter: f64) -> Duration {
    let exponent = i32::try_from(retry_index.min(16)).unwrap_or(16);
    let base = (INITIAL_RETRY_DELAY_SECS * 2f64.powi(exponent)).min(MAX_RETRY_DELAY_SECS);
    let jitter = jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64(base * (1.0 - MAX_JITTER * jitter))
}

/// The delay before retry number `retry_index`: the server's, when it gave a usable one, else
/// jittered backoff.
pub(crate) fn retry_delay(headers: Option<&HeaderMap>, retry_index: u32) -> Duration {
    headers
        .and_then(|headers| server_requested_delay(headers, SystemTime::now()))
        .unwrap_or_else(|| backoff_delay(retry_index, rand::random::<f64>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                *name,
                HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
            );
        }
        map
    }

    #[test]
    fn retryable_statuses() {
        let none = HeaderMap::new();
        for status in [408, 409, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            assert!(should_retry(status, &none), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            assert!(!should_retry(status, &none), "{status}");
        }
    }

    #[test]
    fn should_retry_header_overrides_both_ways() {
        assert!(!should_retry(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(&[("x-should-retry", "false")])
        ));
        assert!(should_retry(
            StatusCode::BAD_REQUEST,
            &headers(&[("x-should-retry", "true")])
        ));
        assert!(should_retry(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("x-should-retry", "maybe")])
        ));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            server_requested_delay(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            server_requested_delay(&headers(&[("retry-after", "1.5")]), now),
            Some(Duration::from_millis(1500))
        );
        // Milliseconds win over seconds.
        assert_eq!(
            server_requested_delay(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "30")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(20));
        assert_eq!(
            server_requested_delay(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(20))
        );
    }

    #[test]
    fn retry_after_outside_the_window_is_ignored() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for value in ["0", "61", "3600", "-1", "soon", ""] {
            assert_eq!(
                server_requested_delay(&headers(&[("retry-after", value)]), now),
                None,
                "{value}"
            );
        }
        let past = httpdate::fmt_http_date(now - Duration::from_secs(20));
        assert_eq!(
            server_requested_delay(&headers(&[("retry-after", &past)]), now),
            None
        );
        let far = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            server_requested_delay(&headers(&[("retry-after", &far)]), now),
            None
        );
        assert_eq!(server_requested_delay(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_down_at_most_a_quarter() {
        assert_eq!(backoff_delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(4, 0.0), Duration::from_secs(8));
        assert_eq!(backoff_delay(50, 0.0), Duration::from_secs(8));
        assert_eq!(backoff_delay(u32::MAX, 0.0), Duration::from_secs(8));
        assert_eq!(backoff_delay(0, 1.0), Duration::from_millis(375));
        assert_eq!(backoff_delay(4, 1.0), Duration::from_secs(6));
        let jittered = backoff_delay(1, 0.5);
        assert!(jittered < Duration::from_secs(1) && jittered > Duration::from_millis(750));
    }

    #[test]
    fn retry_delay_prefers_the_server() {
        assert_eq!(
            retry_delay(Some(&headers(&[("retry-after", "7")])), 0),
            Duration::from_secs(7)
        );
        let backoff = retry_delay(None, 0);
        assert!(backoff <= Duration::from_millis(500) && backoff >= Duration::from_millis(375));
    }
}
