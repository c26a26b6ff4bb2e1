//! What the accept loop does when `accept` fails: classify the error, pause without spinning,
//! and log at a bounded rate (a flood of EMFILE must not become a flood of log lines).

use std::io;
use std::time::Duration;

use tokio::time::Instant;

/// Lets one log line through per `every`, counting the ones held back in between.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// One line per `every`.
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held back since the
    /// last one; `None` when this one should be dropped.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The accept loop's failure state: the current pause and the log limiter.
#[derive(Debug)]
pub(crate) struct AcceptFailures {
    log: LogLimiter,
    pause: Duration,
}

/// The first pause after a failed accept; doubled on each further failure in a row.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause: a persistent failure costs at most a few wake-ups a second.
const MAX_PAUSE: Duration = Duration::from_millis(500);

impl AcceptFailures {
    /// No failure yet; logs at most one line every ten seconds.
    pub(crate) fn new() -> Self {
        Self {
            log: LogLimiter::new(Duration::from_secs(10)),
            pause: FIRST_PAUSE,
        }
    }

    /// A successful accept ends the run of failures.
    pub(crate) fn succeeded(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// Records `error` (logged if the limiter allows) and returns how long to pause before
    /// the next accept. `freed` says whether the caller just closed an idle connection to get
    /// a descriptor back: then no pause (zero) is needed, only a yield so that connection's task
    /// can close its socket; that cannot spin for long, as each round closes one connection.
    pub(crate) fn failed(&mut self, error: &io::Error, freed: bool) -> Duration {
        if let Some(suppressed) = self.log.allow() {
            tracing::warn!(
                %error,
                suppressed,
                fd_exhausted = is_fd_exhaustion(error),
                "accept failed"
            );
        }
        if freed {
            return Duration::ZERO;
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        pause
    }
}

/// Whether `error` means the process or the system is out of descriptors or socket memory,
/// the case where closing an idle connection lets the next accept succeed.
pub(crate) fn is_fd_exhaustion(error: &io::Error) -> bool {
    // Linux numbers: EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12.
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
}
