//! The tracker's own ceiling on timer-driven Composio calls: a sliding one-minute window.
//!
//! Composio's rate limit is per organization and shared by every gateway and every real tool
//! call of it, so a gateway that nobody uses must not be the one that spends it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The window the ceiling counts over.
const WINDOW: Duration = Duration::from_secs(60);

/// Calls made in the last minute, against a per-minute ceiling.
#[derive(Debug)]
pub(super) struct Budget {
    per_minute: usize,
    calls: VecDeque<Instant>,
}

impl Budget {
    /// A budget of `per_minute` calls (at least one).
    pub(super) fn new(per_minute: u32) -> Self {
        Self {
            per_minute: usize::try_from(per_minute.max(1)).unwrap_or(usize::MAX),
            calls: VecDeque::new(),
        }
    }

    /// Counts one call made at `now`.
    pub(super) fn spend(&mut self, now: Instant) {
        self.forget_before(now);
        self.calls.push_back(now);
    }

    /// `None` when a call may be made at `now`, else when the oldest counted call leaves the
    /// window.
    pub(super) fn next_free(&mut self, now: Instant) -> Option<Instant> {
        self.forget_before(now);
        if self.calls.len() < self.per_minute {
            return None;
        }
        self.calls.front().map(|oldest| *oldest + WINDOW)
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .calls
            .front()
            .is_some_and(|call| now.saturating_duration_since(*call) >= WINDOW)
        {
            self.calls.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let mut budget = Budget::new(2);
        let start = Instant::now();
        assert_eq!(budget.next_free(start), None);
        budget.spend(start);
        tokio::time::advance(Duration::from_secs(10)).await;
        budget.spend(Instant::now());
        assert_eq!(budget.next_free(Instant::now()), Some(start + WINDOW));
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(
            budget.next_free(Instant::now()),
            None,
            "the first call left"
        );
    }
}
