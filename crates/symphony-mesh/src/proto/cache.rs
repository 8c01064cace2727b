//! A bounded first-in-first-out cache with a time-to-live, an entry cap and a byte cap:
//! the shape of both PlumTree caches (seen message ids, payloads for IWANT/GRAFT).
//!
//! Entries are inserted once and never refreshed, so insertion order is expiry order and
//! eviction is a pop from the front of a queue.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The bounds of one cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub ttl: Duration,
    pub max_entries: usize,
    pub max_bytes: usize,
}

/// Why entries left the cache, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Evictions {
    /// Entries older than the TTL.
    pub expired: u64,
    /// Entries evicted to respect the entry cap.
    pub over_entries: u64,
    /// Entries evicted to respect the byte cap.
    pub over_bytes: u64,
    /// Inserts refused because one entry alone exceeds the byte cap.
    pub too_large: u64,
}

#[derive(Debug)]
pub(crate) struct ExpiringCache<K, V> {
    limits: Limits,
    map: HashMap<K, (V, usize)>,
    order: VecDeque<(Instant, K)>,
    bytes: usize,
    evictions: Evictions,
}

impl<K: Hash + Eq + Clone, V> ExpiringCache<K, V> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            evictions: Evictions::default(),
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    /// Inserts `key` unless present, accounting `size` bytes, then evicts the oldest entries
    /// until both caps hold. Returns whether the entry was stored.
    pub fn insert(&mut self, key: K, value: V, size: usize, now: Instant) -> bool {
        if self.map.contains_key(&key) {
            return false;
        }
        if size > self.limits.max_bytes || self.limits.max_entries == 0 {
            self.evictions.too_large += 1;
            return false;
        }
        self.expire(now);
        while self.map.len() >= self.limits.max_entries {
            self.evictions.over_entries += 1;
            self.pop_oldest();
        }
        while self.bytes + size > self.limits.max_bytes {
            self.evictions.over_bytes += 1;
            self.pop_oldest();
        }
        self.map.insert(key.clone(), (value, size));
        self.order.push_back((now, key));
        self.bytes += size;
        true
    }

    /// Drops the entries inserted more than the TTL before `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some((inserted, _)) = self.order.front() {
            if now.saturating_duration_since(*inserted) < self.limits.ttl {
                break;
            }
            self.evictions.expired += 1;
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front()
            && let Some((_, size)) = self.map.remove(&key)
        {
            self.bytes -= size;
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Entries in insertion order (oldest first).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.order
            .iter()
            .filter_map(|(_, key)| self.map.get_key_value(key).map(|(k, (v, _))| (k, v)))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn evictions(&self) -> Evictions {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_entries: usize, max_bytes: usize) -> Limits {
        Limits {
            ttl: Duration::from_secs(10),
            max_entries,
            max_bytes,
        }
    }

    #[test]
    fn entries_expire_after_ttl() {
        let t0 = Instant::now();
        let mut cache = ExpiringCache::new(limits(10, 1000));
        assert!(cache.insert(1, (), 10, t0));
        assert!(cache.insert(2, (), 10, t0 + Duration::from_secs(5)));
        cache.expire(t0 + Duration::from_secs(10));
        assert!(!cache.contains(&1));
        assert!(cache.contains(&2));
        assert_eq!(cache.evictions().expired, 1);
        assert_eq!(cache.bytes(), 10);
    }

    #[test]
    fn entry_cap_evicts_oldest() {
        let t0 = Instant::now();
        let mut cache = ExpiringCache::new(limits(2, 1000));
        for key in 0..3 {
            cache.insert(key, key * 10, 1, t0);
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&0), None);
        assert_eq!(cache.get(&2), Some(&20));
        assert_eq!(cache.evictions().over_entries, 1);
    }

    #[test]
    fn byte_cap_evicts_oldest_and_refuses_oversized() {
        let t0 = Instant::now();
        let mut cache = ExpiringCache::new(limits(100, 100));
        cache.insert(1, (), 60, t0);
        cache.insert(2, (), 30, t0);
        cache.insert(3, (), 30, t0);
        assert!(!cache.contains(&1));
        assert_eq!(cache.bytes(), 60);
        assert_eq!(cache.evictions().over_bytes, 1);
        assert!(!cache.insert(4, (), 101, t0));
        assert_eq!(cache.evictions().too_large, 1);
    }

    #[test]
    fn reinsert_does_not_refresh_or_double_count() {
        let t0 = Instant::now();
        let mut cache = ExpiringCache::new(limits(10, 100));
        assert!(cache.insert(1, (), 10, t0));
        assert!(!cache.insert(1, (), 10, t0 + Duration::from_secs(9)));
        assert_eq!(cache.bytes(), 10);
        cache.expire(t0 + Duration::from_secs(10));
        assert_eq!(cache.len(), 0);
    }
}
