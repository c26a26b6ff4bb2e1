//! Pool tests on a paused clock: creation once per user, LRU eviction, idle sweeping.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

#[derive(Debug)]
struct Entry {
    user: String,
    closed: Arc<AtomicUsize>,
}

impl PoolEntry for Entry {
    fn close(&self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

struct Harness {
    pool: UserPool<Entry>,
    created: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl Harness {
    fn new(max_active: usize, idle_secs: u64) -> Self {
        Self {
            pool: UserPool::new(PoolConfig {
                max_active,
                idle_timeout: Duration::from_secs(idle_secs),
            }),
            created: Arc::new(AtomicUsize::new(0)),
            closed: Arc::new(AtomicUsize::new(0)),
        }
    }

    async fn get(&self, user: &str) -> Arc<Entry> {
        let (created, closed) = (Arc::clone(&self.created), Arc::clone(&self.closed));
        self.pool
            .get_or_create(user, || async move {
                created.fetch_add(1, Ordering::SeqCst);
                // A real constructor talks to Composio; yield so concurrent callers overlap.
                tokio::task::yield_now().await;
                Ok::<_, String>(Entry {
                    user: user.to_owned(),
                    closed,
                })
            })
            .await
            .unwrap()
    }

    fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn first_use_creates_once_even_when_requests_race() {
    let harness = Harness::new(10, 60);
    let (a, b, c) = tokio::join!(
        harness.get("alice"),
        harness.get("alice"),
        harness.get("bob")
    );
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(c.user, "bob");
    assert_eq!(harness.created(), 2);
    assert_eq!(harness.pool.len(), 2);
    assert_eq!(harness.pool.users(), ["alice", "bob"]);
    assert!(harness.pool.get("alice").is_some());
    assert!(harness.pool.get("carol").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failed_creation_is_retried_and_holds_no_place() {
    let harness = Harness::new(1, 60);
    let failed = harness
        .pool
        .get_or_create("alice", || async { Err::<Entry, _>("composio down") })
        .await;
    assert_eq!(failed.unwrap_err(), "composio down");
    assert!(harness.pool.is_empty());
    harness.get("bob").await;
    assert_eq!(harness.closed(), 0, "the failed slot was not an eviction");
    harness.get("alice").await;
    assert_eq!(harness.created(), 2);
}

#[tokio::test(start_paused = true)]
async fn over_capacity_the_least_recently_used_user_is_evicted_and_closed() {
    let harness = Harness::new(2, 3600);
    harness.get("alice").await;
    tokio::time::advance(Duration::from_secs(1)).await;
    harness.get("bob").await;
    tokio::time::advance(Duration::from_secs(1)).await;
    // Alice is used again, so bob is now the least recently used.
    assert!(harness.pool.get("alice").is_some());
    tokio::time::advance(Duration::from_secs(1)).await;
    harness.get("carol").await;
    assert_eq!(harness.pool.users(), ["alice", "carol"]);
    assert_eq!(harness.closed(), 1);
    // Bob comes back: recreated, evicting alice (now the oldest).
    tokio::time::advance(Duration::from_secs(1)).await;
    harness.get("bob").await;
    assert_eq!(harness.pool.users(), ["bob", "carol"]);
    assert_eq!(harness.created(), 4);
    assert_eq!(harness.closed(), 2);
}

#[tokio::test(start_paused = true)]
async fn idle_users_are_swept_and_used_ones_kept() {
    let harness = Harness::new(10, 60);
    harness.get("alice").await;
    harness.get("bob").await;
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(harness.pool.get("bob").is_some());
    assert_eq!(harness.pool.sweep(), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(harness.pool.sweep(), 1);
    assert_eq!(harness.pool.users(), ["bob"]);
    assert_eq!(harness.closed(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_runs_on_its_own_and_closes_everything_at_shutdown() {
    let harness = Harness::new(10, 60);
    harness.get("alice").await;
    let shutdown = CancellationToken::new();
    let sweeper = tokio::spawn(harness.pool.clone().run_sweeper(shutdown.clone()));
    harness.get("bob").await;
    // Sweeps happen every 15 s; alice (idle since t=0) goes at the first sweep after 60 s.
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(harness.pool.get("bob").is_some());
    tokio::time::advance(Duration::from_secs(31)).await;
    tokio::task::yield_now().await;
    assert_eq!(harness.pool.users(), ["bob"]);
    shutdown.cancel();
    sweeper.await.unwrap();
    assert!(harness.pool.is_empty());
    assert_eq!(harness.closed(), 2);
}

#[tokio::test(start_paused = true)]
async fn remove_lets_one_user_go() {
    let harness = Harness::new(10, 60);
    harness.get("alice").await;
    assert!(harness.pool.remove("alice"));
    assert!(!harness.pool.remove("alice"));
    assert_eq!(harness.closed(), 1);
    assert_eq!(
        UserPool::<Entry>::new(PoolConfig {
            max_active: 0,
            ..PoolConfig::default()
        })
        .config()
        .max_active,
        1
    );
}
