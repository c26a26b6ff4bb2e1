//! A bounded memory of recent sessions, keyed by a string, that forgets its oldest entry first.
//!
//! The gateway remembers which upstream sessions declared URL elicitation, and the sealed-id
//! keys remember which ids they opened. Both are per process, both lose nothing but a little
//! speed or form when an entry is forgotten, and neither may grow with the number of sessions
//! clients can make, so each is one of these with a fixed capacity.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// At most `capacity` entries; inserting beyond that forgets the oldest insertion.
pub(crate) struct Recent<V> {
    capacity: usize,
    entries: Mutex<Entries<V>>,
}

struct Entries<V> {
    map: HashMap<Arc<str>, V>,
    /// Keys in insertion order, oldest first.
    order: VecDeque<Arc<str>>,
}

impl<V: Clone> Recent<V> {
    /// An empty memory; a capacity of 0 remembers nothing.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// Remembers `value` under `key` (replacing what was there, without renewing its age).
    pub(crate) fn insert(&self, key: &str, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if let Some(slot) = entries.map.get_mut(key) {
            *slot = value;
            return;
        }
        let key: Arc<str> = Arc::from(key);
        entries.map.insert(key.clone(), value);
        entries.order.push_back(key);
        while entries.order.len() > self.capacity {
            if let Some(oldest) = entries.order.pop_front() {
                entries.map.remove(&oldest);
            }
        }
    }

    /// What is remembered under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<V> {
        self.lock().map.get(key).cloned()
    }

    /// Whether anything is remembered under `key`.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.lock().map.contains_key(key)
    }

    /// Forgets `key`.
    pub(crate) fn remove(&self, key: &str) {
        let mut entries = self.lock();
        if entries.map.remove(key).is_some() {
            entries.order.retain(|entry| &**entry != key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries<V>> {
        // Nothing in these updates panics short of running out of memory, which aborts, so a
        // poisoned lock (a panic elsewhere while holding it) still guards consistent entries.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_first_and_replacing_keeps_the_age() {
        let recent = Recent::new(2);
        recent.insert("a", 1);
        recent.insert("b", 2);
        recent.insert("a", 10);
        assert_eq!(recent.get("a"), Some(10));
        recent.insert("c", 3);
        // "a" was inserted first: replacing its value did not make it younger.
        assert!(!recent.contains("a"));
        assert_eq!((recent.get("b"), recent.get("c")), (Some(2), Some(3)));
        recent.remove("b");
        recent.insert("d", 4);
        assert_eq!((recent.get("c"), recent.get("d")), (Some(3), Some(4)));
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let none = Recent::new(0);
        none.insert("a", ());
        assert!(!none.contains("a"));
    }
}
