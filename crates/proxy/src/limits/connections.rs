//! The open connections: whether each has a request in flight, since when it has been idle,
//! and the deadline that closes it when it stays idle too long.
//!
//! "Idle" means no request in flight, which is the same thing for every protocol: a socket that
//! sent nothing, one that sent half an HTTP/2 preface or trickles a header, and a keep-alive
//! connection between requests all look alike here. That is what lets one deadline cover them
//! all without knowing how far hyper got in parsing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::socket::Socket;

/// What a connection is doing, as the activity layer reports it.
#[derive(Clone, Copy, Debug)]
struct Activity {
    /// Requests on this connection whose answer is not fully sent yet.
    in_flight: usize,
    /// Of those, the ones the client is waiting on: all but standing GET event streams.
    awaited: usize,
    /// When `in_flight` last became zero (or when the connection was accepted).
    idle_since: Instant,
    /// Whether any request has been answered: the first head gets `header_timeout`, later
    /// ones `idle_timeout`.
    answered: bool,
}

/// One connection's shared state: read by the registry (to pick whom to evict) and by the
/// connection's watchdog, written by the activity layer.
#[derive(Debug)]
struct SlotShared {
    activity: Mutex<Activity>,
    /// Whether only standing streams are in flight: the one change the watchdog must hear of
    /// at once (it peeks at the socket only then). A plain request never flips it, so it
    /// never wakes the watchdog.
    standing_only: watch::Sender<bool>,
    evicted: CancellationToken,
}

/// Every admitted connection, for the cap and for eviction.
#[derive(Debug)]
pub(crate) struct Connections {
    max: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<SlotShared>>>,
}

/// An admitted connection. Dropping it (when the connection's task ends) takes it out of the
/// registry.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    id: u64,
    shared: Arc<SlotShared>,
    registry: Arc<Connections>,
}

/// A new connection's admission.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Its slot.
    pub(crate) slot: ConnectionSlot,
    /// Whether another connection was closed to make room for it.
    pub(crate) evicted: bool,
}

/// What a connection's watchdog task holds: enough of its slot to tell when it must close.
#[derive(Debug)]
pub(crate) struct Watchdog {
    shared: Arc<SlotShared>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

/// Held by the activity layer for as long as one request is in flight.
#[derive(Debug)]
pub(crate) struct Busy {
    shared: Arc<SlotShared>,
    standing: bool,
}

// === impl Connections ===

impl Connections {
    /// An empty registry admitting at most `max` connections.
    pub(crate) fn new(max: usize, header_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            max,
            header_timeout,
            idle_timeout,
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a new connection, closing the longest-idle one first when the cap is reached.
    /// `None` when the cap is reached and every connection has a request in flight.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.lock();
        let evicted = open.len() >= self.max;
        if evicted && !Self::evict_oldest_idle(&mut open) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(SlotShared {
            activity: Mutex::new(Activity {
                in_flight: 0,
                awaited: 0,
                idle_since: Instant::now(),
                answered: false,
            }),
            standing_only: watch::Sender::new(false),
            evicted: CancellationToken::new(),
        });
        open.insert(id, Arc::clone(&shared));
        Some(Admitted {
            slot: ConnectionSlot {
                id,
                shared,
                registry: Arc::clone(self),
            },
            evicted,
        })
    }

    /// Closes the longest-idle connection (to get a file descriptor back after EMFILE).
    /// Returns whether there was one.
    pub(crate) fn evict_one(&self) -> bool {
        Self::evict_oldest_idle(&mut self.lock())
    }

    /// How many connections are admitted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn evict_oldest_idle(open: &mut HashMap<u64, Arc<SlotShared>>) -> bool {
        let oldest = open
            .iter()
            .filter_map(|(id, shared)| {
                let activity = shared.activity();
                (activity.in_flight == 0).then_some((activity.idle_since, *id))
            })
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        // Taken out at once, so the cap counts it gone even before its task closes the socket.
        if let Some(shared) = open.remove(&id) {
            shared.evicted.cancel();
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<SlotShared>>> {
        // The map stays consistent whatever panicked while holding it: every update is one call.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl SlotShared ===

impl SlotShared {
    fn activity(&self) -> Activity {
        *self.lock_activity()
    }

    /// Applies `change` to the activity, and tells the watchdog if that flipped whether only
    /// standing streams are in flight.
    fn update(&self, change: impl FnOnce(&mut Activity)) {
        let standing_only = {
            let mut activity = self.lock_activity();
            change(&mut activity);
            activity.in_flight > 0 && activity.awaited == 0
        };
        self.standing_only
            .send_if_modified(|now| std::mem::replace(now, standing_only) != standing_only);
    }

    fn lock_activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        // No update can panic midway (they only count, with saturating subtraction), so a
        // poisoned lock still holds a consistent value.
        self.activity.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl ConnectionSlot ===

impl ConnectionSlot {
    /// Whether this connection was evicted to make room.
    #[cfg(test)]
    pub(crate) fn is_evicted(&self) -> bool {
        self.shared.evicted.is_cancelled()
    }

    /// A handle the activity layer keeps (the slot itself stays with the connection's task).
    pub(crate) fn handle(&self) -> SlotHandle {
        SlotHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// What the connection's watchdog task needs of this slot.
    pub(crate) fn watchdog(&self) -> Watchdog {
        Watchdog {
            shared: Arc::clone(&self.shared),
            header_timeout: self.registry.header_timeout,
            idle_timeout: self.registry.idle_timeout,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

// === impl Watchdog ===

impl Watchdog {
    /// Completes when the connection must close: it stayed idle past its deadline, it was
    /// evicted to make room, or its client is gone while only standing streams are open.
    pub(crate) async fn closed(&self, stream: &Socket) {
        tokio::select! {
            () = self.idle_expired() => {}
            () = self.shared.evicted.cancelled() => {}
            () = self.abandoned(stream) => {}
        }
    }

    /// Completes when the client has closed its side while nothing it waits for is pending.
    ///
    /// At the TCP level a half-close (`shutdown(SHUT_WR)` after the request) and a client gone
    /// away look the same: one FIN. hyper is told to allow half-closes, so the first kind gets
    /// its answer, and then stops reading while it writes an answer. A standing GET event
    /// stream would then stay open for hours with nobody reading it, so while only such streams
    /// are in flight this peeks at the socket (never consuming a byte) and ends the connection
    /// at EOF.
    async fn abandoned(&self, stream: &Socket) {
        let mut standing_only = self.shared.standing_only.subscribe();
        loop {
            if *standing_only.borrow_and_update() {
                let mut probe = [0_u8; 1];
                tokio::select! {
                    peeked = stream.peek(&mut probe) => match peeked {
                        Ok(0) | Err(_) => return,
                        // Bytes hyper will read after this answer: wait for a change rather
                        // than peek them again and again.
                        Ok(_) => {
                            let _ = standing_only.changed().await;
                        }
                    },
                    _ = standing_only.changed() => {}
                }
            } else {
                // The sender lives in `self.shared`, so `changed` cannot fail while we wait.
                let _ = standing_only.changed().await;
            }
        }
    }

    /// One timer for the connection's whole life, which never hears of requests: it fires at
    /// the idle deadline or, when that may still come closer, a little before (see
    /// [`Self::next_check`]), and looks again. Arming a timer per request would register one
    /// per request (tokio then wakes its driver whenever one registers earlier than the
    /// driver's next wake), and listening to every request would wake this task twice per
    /// request.
    async fn idle_expired(&self) {
        let timer = tokio::time::sleep_until(self.next_check(self.idle_deadline()));
        tokio::pin!(timer);
        loop {
            (&mut timer).await;
            let due = self.idle_deadline();
            if due.is_some_and(|due| due <= Instant::now()) {
                return;
            }
            timer.as_mut().reset(self.next_check(due));
        }
    }

    /// When to look at the deadline `due` again: when it falls, or sooner, the shorter of the
    /// two timeouts from now. Any deadline set from now on (a request that ends later) is at
    /// least that far away, so looking that often never closes a connection late.
    fn next_check(&self, due: Option<Instant>) -> Instant {
        let soonest = Instant::now() + self.idle_timeout.min(self.header_timeout);
        due.map_or(soonest, |due| due.min(soonest))
    }

    /// When the connection must close if it stays idle; `None` while a request is in flight.
    fn idle_deadline(&self) -> Option<Instant> {
        let now = self.shared.activity();
        let limit = if now.answered {
            self.idle_timeout
        } else {
            self.header_timeout
        };
        (now.in_flight == 0).then(|| now.idle_since + limit)
    }
}

/// What the activity layer holds of a connection.
#[derive(Clone, Debug)]
pub(crate) struct SlotHandle {
    shared: Arc<SlotShared>,
}

impl SlotHandle {
    /// Marks one request in flight until the returned guard is dropped.
    pub(crate) fn busy(&self) -> Busy {
        self.shared.update(|activity| {
            activity.in_flight += 1;
            activity.awaited += 1;
        });
        Busy {
            shared: Arc::clone(&self.shared),
            standing: false,
        }
    }
}

impl Busy {
    /// Marks this request as a standing stream (a GET answered with an event stream): the
    /// client is not waiting for it to end.
    pub(crate) fn standing(&mut self) {
        if !std::mem::replace(&mut self.standing, true) {
            self.shared.update(|activity| {
                activity.awaited = activity.awaited.saturating_sub(1);
            });
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let standing = self.standing;
        self.shared.update(|activity| {
            activity.in_flight = activity.in_flight.saturating_sub(1);
            if !standing {
                activity.awaited = activity.awaited.saturating_sub(1);
            }
            activity.answered = true;
            if activity.in_flight == 0 {
                activity.idle_since = Instant::now();
            }
        });
    }
}
