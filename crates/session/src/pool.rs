//! The per-user pool: one gateway serving many users keeps, per user, the state that user's
//! requests need (for Composio: the user's tool-router session and connection tracker),
//! created on the user's first request and bounded in number and age.
//!
//! The pool is generic over its entry so it stays free of MCP and of how an entry is made:
//! the binary supplies the constructor on each [`UserPool::get_or_create`] and the pool calls
//! [`PoolEntry::close`] when it lets an entry go.
//!
//! Bounds: at most [`PoolConfig::max_active`] users; admitting one more evicts the least
//! recently used. An entry unused for [`PoolConfig::idle_timeout`] is evicted by
//! [`UserPool::sweep`] (run periodically by [`UserPool::run_sweeper`]). Eviction loses nothing
//! a user needs: connected accounts live at Composio, so the next request recreates the entry.
//!
//! Concurrent first requests of one user share one construction (a per-user `OnceCell`); a
//! failed construction is not cached, the next request tries again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Pool bounds (`users.max_active`, `users.idle_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The most users held at once; at least 1.
    pub max_active: usize,
    /// How long an unused user's entry is kept.
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    /// 1,000 users, 30 minutes.
    fn default() -> Self {
        Self {
            max_active: 1000,
            idle_timeout: Duration::from_secs(1800),
        }
    }
}

/// What a pool holds per user.
pub trait PoolEntry: Send + Sync + 'static {
    /// The pool let this entry go (evicted, idle, or removed): stop its background work.
    /// Requests that still hold the entry may finish with it.
    fn close(&self);
}

/// A bounded map from user id to that user's entry. Cheap to clone (shared).
pub struct UserPool<E> {
    shared: Arc<Shared<E>>,
}

impl<E> Clone for UserPool<E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E> std::fmt::Debug for UserPool<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPool")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

struct Shared<E> {
    config: PoolConfig,
    slots: Mutex<HashMap<String, Held<E>>>,
}

struct Held<E> {
    slot: Arc<OnceCell<Arc<E>>>,
    last_used: Instant,
}

// === impl UserPool ===

impl<E: PoolEntry> UserPool<E> {
    /// An empty pool; a `max_active` of 0 is taken as 1.
    pub fn new(mut config: PoolConfig) -> Self {
        config.max_active = config.max_active.max(1);
        Self {
            shared: Arc::new(Shared {
                config,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The pool's bounds.
    pub fn config(&self) -> PoolConfig {
        self.shared.config
    }

    /// `user`'s entry, made by `create` when the pool has none. Marks the user as used now.
    pub async fn get_or_create<F, Fut, Err>(&self, user: &str, create: F) -> Result<Arc<E>, Err>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<E, Err>>,
    {
        let slot = self.admit(user);
        let result = slot
            .get_or_try_init(|| async { create().await.map(Arc::new) })
            .await
            .cloned();
        if result.is_err() {
            // Do not let a user whose entry could not be made hold a place in the pool.
            let mut slots = self.lock();
            if slots
                .get(user)
                .is_some_and(|held| Arc::ptr_eq(&held.slot, &slot) && held.slot.get().is_none())
            {
                slots.remove(user);
            }
        }
        result
    }

    /// `user`'s entry when the pool has one (made and not evicted); marks the user as used.
    pub fn get(&self, user: &str) -> Option<Arc<E>> {
        let mut slots = self.lock();
        let held = slots.get_mut(user)?;
        let entry = held.slot.get()?.clone();
        held.last_used = Instant::now();
        Some(entry)
    }

    /// How many users have an entry now (the `toolgate_active_users` gauge).
    pub fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|held| held.slot.initialized())
            .count()
    }

    /// True when no user has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The users with an entry, sorted (for status pages; never for metric labels).
    pub fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, held)| held.slot.initialized())
            .map(|(user, _)| user.clone())
            .collect();
        users.sort();
        users
    }

    /// Lets `user`'s entry go now. True when there was one.
    pub fn remove(&self, user: &str) -> bool {
        let removed = self.lock().remove(user);
        removed.map(close).is_some()
    }

    /// Evicts every entry unused for the idle timeout; returns how many went.
    pub fn sweep(&self) -> usize {
        let idle = self.shared.config.idle_timeout;
        let now = Instant::now();
        let gone: Vec<Held<E>> = {
            let mut slots = self.lock();
            let stale: Vec<String> = slots
                .iter()
                .filter(|(_, held)| now.duration_since(held.last_used) >= idle)
                .map(|(user, _)| user.clone())
                .collect();
            stale.iter().filter_map(|user| slots.remove(user)).collect()
        };
        let count = gone.len();
        gone.into_iter().for_each(close);
        count
    }

    /// Sweeps every quarter of the idle timeout (at least every second) until `shutdown`,
    /// then closes every entry.
    pub async fn run_sweeper(self, shutdown: CancellationToken) {
        let period = (self.shared.config.idle_timeout / 4).max(Duration::from_secs(1));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    let evicted = self.sweep();
                    if evicted > 0 {
                        tracing::debug!(evicted, active = self.len(), "idle users evicted");
                    }
                }
            }
        }
        let all: Vec<Held<E>> = self.lock().drain().map(|(_, held)| held).collect();
        all.into_iter().for_each(close);
    }

    /// The slot for `user`, inserted (evicting the least recently used when full) if new.
    fn admit(&self, user: &str) -> Arc<OnceCell<Arc<E>>> {
        let now = Instant::now();
        let (slot, evicted) = {
            let mut slots = self.lock();
            if let Some(held) = slots.get_mut(user) {
                held.last_used = now;
                return Arc::clone(&held.slot);
            }
            let evicted = if slots.len() >= self.shared.config.max_active {
                let oldest = slots
                    .iter()
                    .min_by_key(|(_, held)| held.last_used)
                    .map(|(user, _)| user.clone());
                oldest.and_then(|user| slots.remove(&user))
            } else {
                None
            };
            let slot = Arc::new(OnceCell::new());
            slots.insert(
                user.to_owned(),
                Held {
                    slot: Arc::clone(&slot),
                    last_used: now,
                },
            );
            (slot, evicted)
        };
        // Closed outside the lock: `close` is the entry's code.
        if let Some(held) = evicted {
            close(held);
        }
        slot
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Held<E>>> {
        // No code runs under this lock that can panic halfway through an update (plain map
        // operations), so a poisoned lock still holds a consistent map.
        self.shared
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn close<E: PoolEntry>(held: Held<E>) {
    if let Some(entry) = held.slot.get() {
        entry.close();
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
