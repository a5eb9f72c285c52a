//! A short-lived cache of rows that change rarely (requestors' verified API keys, TSPs), so a
//! request on the hot path reads none of them from the store. An entry is reused for at most its
//! time to live by the hub's clock (a change made on another node is seen within it); a change
//! made on this node drops the entry at once ([`TtlCache::forget`]), and a read of the store that
//! began before that drop cannot put the old row back ([`TtlCache::ticket`]).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

pub struct TtlCache<V> {
    ttl_ms: i64,
    /// The most entries kept: past it, expired ones are dropped, then all if need be (a cache
    /// that misses costs a store read, never a wrong answer).
    capacity: usize,
    inner: RwLock<Inner<V>>,
}

struct Inner<V> {
    /// Moved on by every forget: an insert whose ticket is older was read before it.
    generation: u64,
    /// Value and when it was read (ms, the hub's clock).
    entries: HashMap<String, (V, i64)>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl_ms: ttl.as_millis() as i64,
            capacity,
            inner: RwLock::new(Inner {
                generation: 0,
                entries: HashMap::new(),
            }),
        }
    }

    fn fresh(&self, read_ms: i64, now_ms: i64) -> bool {
        // A clock that went back does not stretch an entry's life.
        (0..self.ttl_ms).contains(&(now_ms - read_ms))
    }

    /// The value read within the time to live, if any.
    pub fn get(&self, key: &str, now_ms: i64) -> Option<V> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let (value, read_ms) = inner.entries.get(key)?;
        self.fresh(*read_ms, now_ms).then(|| value.clone())
    }

    /// Taken before reading the store; [`TtlCache::insert`] keeps what was read only if nothing
    /// was forgotten since.
    pub fn ticket(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    /// Keeps `value`, read from the store at `now_ms` after taking `ticket`.
    pub fn insert(&self, ticket: u64, key: &str, value: V, now_ms: i64) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.generation != ticket {
            return;
        }
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(key) {
            inner
                .entries
                .retain(|_, (_, read_ms)| (0..self.ttl_ms).contains(&(now_ms - *read_ms)));
            if inner.entries.len() >= self.capacity {
                inner.entries.clear();
            }
        }
        inner.entries.insert(key.to_string(), (value, now_ms));
    }

    /// Drops one entry (it was just changed on this node).
    pub fn forget(&self, key: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
        inner.entries.remove(key);
    }

    /// Drops every entry.
    pub fn forget_all(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
        inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_its_time_to_live_and_no_longer() {
        let c = TtlCache::new(Duration::from_millis(1000), 8);
        c.insert(c.ticket(), "k", 1, 5_000);
        assert_eq!(c.get("k", 5_000), Some(1));
        assert_eq!(c.get("k", 5_999), Some(1));
        assert_eq!(c.get("k", 6_000), None);
        assert_eq!(c.get("k", 4_999), None, "a clock that went back");
        assert_eq!(c.get("other", 5_000), None);
    }

    #[test]
    fn a_read_that_began_before_a_forget_is_not_kept() {
        let c = TtlCache::new(Duration::from_secs(1), 8);
        let before = c.ticket();
        c.forget("k");
        c.insert(before, "k", 1, 0);
        assert_eq!(c.get("k", 0), None);
        c.insert(c.ticket(), "k", 2, 0);
        assert_eq!(c.get("k", 0), Some(2));
        c.forget_all();
        assert_eq!(c.get("k", 0), None);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_all() {
        let c = TtlCache::new(Duration::from_millis(10), 2);
        c.insert(c.ticket(), "a", 1, 0);
        c.insert(c.ticket(), "b", 2, 5);
        c.insert(c.ticket(), "c", 3, 12);
        assert_eq!((c.get("a", 12), c.get("b", 12)), (None, Some(2)));
        c.insert(c.ticket(), "d", 4, 13);
        assert_eq!(c.get("b", 13), None);
        assert_eq!((c.get("c", 13), c.get("d", 13)), (None, Some(4)));
    }
}
