//! Replay protection for locally verified Hawk headers.
//!
//! Taskcluster itself does not detect replays (taskcluster.md §1.5), but a
//! roller request reboots hardware, so a captured header must not work twice.
//! A header is accepted while `|ts - now| <= skew`; an entry recorded at time
//! `t` for a header with `ts >= t - skew` is therefore needed until at most
//! `ts + skew <= t + 2·skew`. Keeping entries for `2·skew` after insertion is
//! enough, and keeps the queue in insertion order also in expiry order.
//!
//! Only MAC-verified headers may be recorded (see [`NonceCache::check_and_insert`]),
//! so filling the cache needs valid credentials.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Default hard cap on remembered nonces. At ~100 bytes an entry this is
/// about 100 MB in the worst case, far above any real request rate.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// Entries are keyed by a digest so that an entry costs the same whatever
/// the lengths of the client id and nonce (up to the 4 KiB header limit).
type Key = [u8; 32];

struct Inner {
    seen: HashMap<Key, SystemTime>,
    /// Insertion order; expiry order too, as every entry lives for `ttl`.
    order: VecDeque<(Key, SystemTime)>,
}

/// A bounded set of `(client id, ts, nonce)` seen recently.
pub struct NonceCache {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl NonceCache {
    /// A cache for headers accepted within `skew` of the clock, holding at most `capacity` entries.
    pub fn new(skew: Duration, capacity: usize) -> Self {
        Self {
            ttl: skew.saturating_mul(2),
            capacity: capacity.max(1),
            inner: Mutex::new(Inner { seen: HashMap::new(), order: VecDeque::new() }),
        }
    }

    fn key(client_id: &str, ts: u64, nonce: &str) -> Key {
        let mut h = Sha256::new();
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        h.update((client_id.len() as u64).to_be_bytes());
        h.update(client_id.as_bytes());
        h.update(ts.to_be_bytes());
        h.update((nonce.len() as u64).to_be_bytes());
        h.update(nonce.as_bytes());
        h.finalize().into()
    }

    /// Record the triple and return `true`, or return `false` if it was
    /// already recorded and has not expired (a replay).
    ///
    /// Call this only after the MAC has been verified: otherwise anyone could
    /// fill the cache, or "burn" a nonce a legitimate client is about to use.
    pub fn check_and_insert(&self, client_id: &str, ts: u64, nonce: &str, now: SystemTime) -> bool {
        let key = Self::key(client_id, ts, nonce);
        // A poisoned lock only means another thread panicked mid-update; the
        // map and queue are still individually valid, so keep going.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.seen.get(&key).is_some_and(|expires| *expires > now) {
            return false;
        }
        inner.evict_expired(now);
        // When still full, drop the oldest live entry rather than refusing the
        // request: refusing would let one client holding valid credentials lock
        // everybody out, whereas evicting only reopens a replay window for the
        // header closest to expiry, and only under a flood of a million
        // authenticated requests within 2·skew.
        while inner.seen.len() >= self.capacity {
            match inner.order.pop_front() {
                Some((k, expires)) => {
                    if inner.seen.get(&k) == Some(&expires) {
                        inner.seen.remove(&k);
                    }
                }
                None => break,
            }
        }
        // `SystemTime + Duration` panics on overflow; a huge skew given to
        // `new` should mean "remember for a very long time", not a crash.
        let expires = now.checked_add(self.ttl).unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(1 << 40));
        inner.seen.insert(key, expires);
        inner.order.push_back((key, expires));
        true
    }

    /// Entries currently held (expired ones may linger until the next insert).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn evict_expired(&mut self, now: SystemTime) {
        while let Some((k, expires)) = self.order.front().copied() {
            if expires > now {
                break;
            }
            self.order.pop_front();
            // The key may have been re-inserted after expiring (same triple
            // replayed after 2·skew, which the timestamp check then refuses
            // anyway); only drop the map entry if it is this one.
            if self.seen.get(&k) == Some(&expires) {
                self.seen.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(15 * 60);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn replay_is_refused_within_twice_the_skew() {
        let c = NonceCache::new(SKEW, 10);
        assert!(c.check_and_insert("a", 1000, "n1", at(1000)));
        assert!(!c.check_and_insert("a", 1000, "n1", at(1000)));
        assert!(!c.check_and_insert("a", 1000, "n1", at(1000 + 30 * 60 - 1)));
        // After 2·skew the entry has expired (the timestamp check refuses such a header anyway).
        assert!(c.check_and_insert("a", 1000, "n1", at(1000 + 30 * 60)));
    }

    #[test]
    fn each_part_of_the_triple_counts() {
        let c = NonceCache::new(SKEW, 10);
        assert!(c.check_and_insert("a", 1, "n", at(0)));
        assert!(c.check_and_insert("b", 1, "n", at(0)));
        assert!(c.check_and_insert("a", 2, "n", at(0)));
        assert!(c.check_and_insert("a", 1, "m", at(0)));
        assert!(c.check_and_insert("ab", 1, "c", at(0)));
        assert!(c.check_and_insert("a", 1, "bc", at(0)));
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn expired_entries_are_evicted_on_insert() {
        let c = NonceCache::new(SKEW, 100);
        for i in 0..50 {
            assert!(c.check_and_insert("a", 0, &i.to_string(), at(0)));
        }
        assert_eq!(c.len(), 50);
        assert!(c.check_and_insert("a", 0, "late", at(30 * 60)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_huge_skew_does_not_overflow() {
        let c = NonceCache::new(Duration::MAX, 10);
        assert!(c.check_and_insert("a", 0, "n", at(1_700_000_000)));
        assert!(!c.check_and_insert("a", 0, "n", at(1_800_000_000)));
    }

    #[test]
    fn capacity_is_a_hard_cap_evicting_oldest() {
        let c = NonceCache::new(SKEW, 3);
        for (i, n) in ["n0", "n1", "n2", "n3"].iter().enumerate() {
            assert!(c.check_and_insert("a", 0, n, at(i as u64)));
        }
        assert_eq!(c.len(), 3);
        // The oldest was evicted to make room; the others are still remembered.
        assert!(!c.check_and_insert("a", 0, "n3", at(5)));
        assert!(!c.check_and_insert("a", 0, "n1", at(5)));
        assert!(c.check_and_insert("a", 0, "n0", at(5)));
        assert_eq!(c.len(), 3);
        assert!(!c.is_empty());
    }
}
