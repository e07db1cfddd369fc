//! The Hawk nonce digest every roller process agrees on, and the in-process
//! replay cache in front of the shared record (`replay`).
//!
//! Taskcluster itself does not detect replays (taskcluster.md §1.5), but a
//! roller request reboots hardware, so a captured header must not work twice.
//! Whether a header was used before is decided by the queue backend, shared by
//! every process and kept across restarts (`replay`); this cache only refuses,
//! without a round trip, a replay this process has already seen.
//!
//! **The digest.** A header is identified by a 128-bit digest: SHA-256 of the
//! length-prefixed client id, `ts` and length-prefixed nonce, truncated. It has
//! no per-process key because every process on one backend must compute the same
//! digest for the same header, before and after a restart. Being public does not
//! make it aimable: a collision only makes a header look replayed (a real replay
//! always has the same digest, so none can get through), the client id is part of
//! it, so a client can only collide with its own headers (2⁶⁴ work for a birthday
//! pair, which only refuses the attacker's own request) or with another client's
//! header whose nonce it would have to know before that client sends it (a second
//! preimage: 2¹²⁸). The hash table below keys its slots with std's per-process
//! SipHash, so nobody can pile entries into one slot either.
//!
//! **What must be remembered.** A header is accepted only while
//! `|ts - now| <= skew`. Once `now > ts + skew` that check refuses a replay by
//! itself, so the entry for a header is needed until then and no longer: it
//! expires by the header's `ts`, not by when it was recorded. An honest client
//! (`ts ≈ now`) costs `skew` (15 minutes) of entries; one whose clock runs
//! ahead costs at most `2·skew`. The cache also applies the window itself
//! ([`NonceCache::check_and_insert`] refuses a `ts` outside it), with the same
//! clock it expires entries by, so the guarantee does not rest on the caller's
//! check.
//!
//! **Layout.** A replay carries the same `ts`, so entries are grouped in
//! buckets by `ts` (whole seconds) and a lookup touches one bucket. Expiry
//! drops whole buckets from the old end, without a per-entry expiry queue;
//! live buckets all lie within `2·skew + 1` seconds. A bucket keeps its digests
//! in a hash table while its second is current (20–40 bytes an entry), then
//! sorted in a plain slice (16 bytes an entry; see `Bucket`). Measured with
//! 900,000 entries recorded at 1,000 a second (15 minutes' worth): ~17 bytes an
//! entry, 15 MiB.
//!
//! **Clock steps.** A bucket dropped because the clock passed `ts + skew` is
//! gone if the clock is then stepped back: after a backward step of `d`
//! seconds, this cache forgets headers between `skew` and `skew + d` seconds
//! old (the shared record still has them, see `replay`).
//!
//! Only MAC-verified headers may be recorded (see [`NonceCache::check_and_insert`]),
//! so filling the cache needs valid credentials.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Default hard cap on remembered nonces. At 17–40 bytes an entry (the most
/// if they all arrive within seconds) this is at most about 40 MB, far above
/// any real request rate (a million headers within 15 minutes is over 1,100
/// a second).
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// A header's identity: the same in every process (see the module doc).
pub type NonceDigest = [u8; 16];

/// The digest of `(client id, ts, nonce)`. Length prefixes keep ("ab","c") and
/// ("a","bc") apart.
pub fn digest(client_id: &str, ts: u64, nonce: &str) -> NonceDigest {
    let mut h = Sha256::new();
    h.update((client_id.len() as u64).to_be_bytes());
    h.update(client_id.as_bytes());
    h.update(ts.to_be_bytes());
    h.update((nonce.len() as u64).to_be_bytes());
    h.update(nonce.as_bytes());
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// A digest as the table holds it.
type Key = u128;

/// How long after its second a bucket is sealed: past this, only clients
/// whose clocks lag (or requests delayed) by more add to it.
const SEAL_AFTER_SECS: u64 = 10;

/// The entries for one header timestamp.
///
/// While its second is current, entries go into a hash table, which is 44–88 %
/// full between doublings (16 bytes a slot plus a control byte). Once the clock
/// is [`SEAL_AFTER_SECS`] past the second, the table is sorted into a boxed
/// slice, exactly 16 bytes an entry and searched in `log2(n)` steps; later
/// arrivals go into a new, small table beside it.
#[derive(Default)]
struct Bucket {
    sealed: Box<[Key]>,
    /// std's default hasher, keyed per process: the digests themselves are
    /// public (see the module doc), so their bits must not pick the slot.
    open: HashSet<Key>,
}

impl Bucket {
    fn contains(&self, key: &Key) -> bool {
        self.open.contains(key) || self.sealed.binary_search(key).is_ok()
    }

    fn len(&self) -> usize {
        self.sealed.len() + self.open.len()
    }

    /// Move the open entries into the sorted slice: O(n log n), once per
    /// bucket in the usual case, so amortized O(log n) an entry.
    fn seal(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let mut all = Vec::with_capacity(self.len());
        all.extend_from_slice(&self.sealed);
        // Replaced rather than drained: a drained table keeps its allocation.
        all.extend(std::mem::take(&mut self.open));
        all.sort_unstable();
        self.sealed = all.into_boxed_slice();
    }
}

struct Inner {
    /// Header timestamp (seconds since the epoch) → digests seen with it.
    /// No bucket is ever empty.
    buckets: BTreeMap<u64, Bucket>,
    /// Entries over all buckets.
    len: usize,
    /// The clock (seconds) at the previous call, to seal each bucket once.
    last_now_secs: u64,
}

/// A bounded set of the digests of headers seen recently, by their `ts`.
pub struct NonceCache {
    /// The skew in whole seconds, rounded up so that the cache's window
    /// always contains the caller's.
    skew_secs: u64,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl NonceCache {
    /// A cache for headers accepted within `skew` of the clock, holding at most `capacity` entries.
    pub fn new(skew: Duration, capacity: usize) -> Self {
        let skew_secs = skew.as_secs().saturating_add(u64::from(skew.subsec_nanos() > 0));
        Self {
            skew_secs,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner { buckets: BTreeMap::new(), len: 0, last_now_secs: 0 }),
        }
    }

    /// Whether `digest` (of a header with this `ts`) is remembered: a replay
    /// this process has seen. Changes nothing.
    pub fn contains(&self, digest: &NonceDigest, ts: u64) -> bool {
        let key = Key::from_le_bytes(*digest);
        self.lock().buckets.get(&ts).is_some_and(|b| b.contains(&key))
    }

    /// Record the header's digest and return `true`, or return `false` if it
    /// was already recorded (a replay) or if `ts` is more than the skew away
    /// from `now` (a header the caller's timestamp check should have refused,
    /// and which the cache could not vouch for once it had expired).
    ///
    /// Call this only after the MAC has been verified: otherwise anyone could
    /// fill the cache, or "burn" a nonce a legitimate client is about to use.
    pub fn check_and_insert(&self, digest: &NonceDigest, ts: u64, now: SystemTime) -> bool {
        // Whole seconds, rounded down; a clock before the epoch counts as the
        // epoch. Both only widen the window compared with the caller's exact
        // check, and expiry below uses the same bounds, so every `ts` the
        // cache accepts stays remembered for as long as it would accept it.
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let oldest = now_secs.saturating_sub(self.skew_secs);
        let newest = now_secs.saturating_add(self.skew_secs);
        let in_window = (oldest..=newest).contains(&ts);
        let key = Key::from_le_bytes(*digest);

        let mut inner = self.lock();
        inner.expire_before(oldest);
        inner.seal_up_to(now_secs);
        if !in_window || inner.buckets.get(&ts).is_some_and(|b| b.contains(&key)) {
            return false;
        }
        // When still full, drop the oldest bucket rather than refusing the
        // request: refusing would let one client holding valid credentials lock
        // everybody out, whereas evicting only means the shared record
        // (`replay`) answers for the headers closest to expiry.
        while inner.len >= self.capacity {
            match inner.buckets.pop_first() {
                Some((_, bucket)) => inner.len -= bucket.len(),
                None => {
                    inner.len = 0;
                    break;
                }
            }
        }
        inner.buckets.entry(ts).or_default().open.insert(key);
        inner.len += 1;
        true
    }

    /// Entries currently held (expired ones may linger until the next call
    /// to [`NonceCache::check_and_insert`]).
    pub fn len(&self) -> usize {
        self.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            // Another thread panicked mid-update. Each bucket is still a valid
            // set, but the count may be off by the unfinished step: recount,
            // and carry on rather than fail every later request.
            let mut inner = poisoned.into_inner();
            inner.len = inner.buckets.values().map(Bucket::len).sum();
            self.inner.clear_poison();
            inner
        })
    }
}

impl Inner {
    /// Drop the buckets for timestamps before `oldest`, which the window now
    /// refuses anyway. Each is one deallocation, whatever its size.
    fn expire_before(&mut self, oldest: u64) {
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() >= oldest {
                break;
            }
            self.len -= entry.remove().len();
        }
    }

    /// Seal the buckets that went [`SEAL_AFTER_SECS`] into the past since the
    /// previous call. A clock stepped back only delays sealing; one stepped
    /// forward seals everything it passed (at most the live buckets).
    fn seal_up_to(&mut self, now_secs: u64) {
        let from = self.last_now_secs.saturating_sub(SEAL_AFTER_SECS);
        let to = now_secs.saturating_sub(SEAL_AFTER_SECS);
        if from < to {
            for bucket in self.buckets.range_mut(from..to).map(|(_, b)| b) {
                bucket.seal();
            }
        }
        self.last_now_secs = now_secs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl NonceCache {
        /// `check_and_insert` of the triple's digest.
        fn cai(&self, client_id: &str, ts: u64, nonce: &str, now: SystemTime) -> bool {
            self.check_and_insert(&digest(client_id, ts, nonce), ts, now)
        }
    }

    const SKEW: Duration = Duration::from_secs(15 * 60);
    const S: u64 = SKEW.as_secs();
    /// A plausible present, so that `now - skew` is well after the epoch.
    const T: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn replay_is_refused_until_ts_plus_skew() {
        let c = NonceCache::new(SKEW, 10);
        assert!(c.cai("a", T, "n1", at(T)));
        assert!(!c.cai("a", T, "n1", at(T)));
        assert!(!c.cai("a", T, "n1", at(T + S)));
        assert_eq!(c.len(), 1);
        // After ts + skew the entry is gone, and the header is refused as stale.
        assert!(!c.cai("a", T, "n1", at(T + S + 1)));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn each_part_of_the_triple_counts() {
        let c = NonceCache::new(SKEW, 10);
        assert!(c.cai("a", T + 1, "n", at(T)));
        assert!(c.cai("b", T + 1, "n", at(T)));
        assert!(c.cai("a", T + 2, "n", at(T)));
        assert!(c.cai("a", T + 1, "m", at(T)));
        assert!(c.cai("ab", T + 1, "c", at(T)));
        assert!(c.cai("a", T + 1, "bc", at(T)));
        assert_eq!(c.len(), 6);
        assert!(!c.cai("ab", T + 1, "c", at(T)));
        assert!(!c.cai("a", T + 2, "n", at(T)));
    }

    #[test]
    fn entries_expire_by_their_ts_and_are_released() {
        let c = NonceCache::new(SKEW, 1000);
        for i in 0..50 {
            assert!(c.cai("a", T, &i.to_string(), at(T)));
            assert!(c.cai("a", T + 1, &i.to_string(), at(T)));
        }
        assert_eq!(c.len(), 100);
        // Still needed at ts + skew: the timestamp check accepts the header then.
        assert!(c.cai("a", T + S, "x", at(T + S)));
        assert_eq!(c.len(), 101);
        // Expiry goes by ts, not by when the entry was recorded.
        assert!(c.cai("a", T + S, "y", at(T + S + 1)));
        assert_eq!(c.len(), 52);
        assert!(c.cai("a", T + S, "z", at(T + S + 2)));
        assert_eq!(c.len(), 3);
        assert!(!c.cai("a", T + S, "x", at(T + S + 2)));
    }

    #[test]
    fn a_future_ts_is_remembered_until_ts_plus_skew() {
        let c = NonceCache::new(SKEW, 10);
        let ts = T + S; // a client clock a full skew ahead
        assert!(c.cai("a", ts, "n", at(T)));
        for now in [T, T + 1, T + S, T + 2 * S] {
            assert!(!c.cai("a", ts, "n", at(now)), "replay at {now}");
        }
        assert_eq!(c.len(), 1);
        assert!(c.cai("a", T + 2 * S + 1, "other", at(T + 2 * S + 1)));
        assert_eq!(c.len(), 1, "the entry for ts expired once now > ts + skew");
    }

    #[test]
    fn a_ts_outside_the_window_is_refused_and_not_recorded() {
        let c = NonceCache::new(SKEW, 10);
        assert!(!c.cai("a", T - S - 1, "n", at(T)));
        assert!(!c.cai("a", T + S + 1, "n", at(T)));
        assert!(c.is_empty());
        // Inclusive bounds, as the caller's `|ts - now| <= skew`.
        assert!(c.cai("a", T - S, "n", at(T)));
        assert!(c.cai("a", T + S, "n", at(T)));
        // Sub-second clocks: at ts + skew + 0.5 s the caller refuses; the cache
        // may still hold the entry, but must not forget it any earlier.
        let half = Duration::from_millis(500);
        assert!(!c.cai("a", T - S, "n", at(T) - half));
        assert!(!c.cai("a", T - S, "n", at(T) + half));
    }

    #[test]
    fn a_huge_skew_does_not_overflow() {
        let c = NonceCache::new(Duration::MAX, 10);
        assert!(c.cai("a", 0, "n", at(T)));
        assert!(!c.cai("a", 0, "n", at(T + 100_000_000)));
        assert!(c.cai("a", u64::MAX, "n", at(T)));
        assert!(!c.cai("a", u64::MAX, "n", at(0)));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn absurd_inputs_do_not_panic() {
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1_000_000);
        let far_future = UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64 / 2)).unwrap_or(at(T));
        for skew in [Duration::ZERO, Duration::from_nanos(1), SKEW, Duration::from_secs(u64::MAX), Duration::MAX] {
            for capacity in [0, 1, 3] {
                let c = NonceCache::new(skew, capacity);
                for now in [UNIX_EPOCH, before_epoch, at(T), far_future] {
                    for ts in [0, 1, T, u64::MAX - 1, u64::MAX] {
                        let first = c.cai("", ts, "", now);
                        assert!(!(first && c.cai("", ts, "", now)));
                        assert!(c.len() <= capacity.max(1));
                    }
                }
            }
        }
        // A clock before the epoch counts as the epoch: ts 0 is current.
        let c = NonceCache::new(SKEW, 10);
        assert!(c.cai("a", 0, "n", before_epoch));
        assert!(!c.cai("a", 0, "n", before_epoch));
        assert!(c.cai("a", S, "n", before_epoch));
        assert!(!c.cai("a", S + 1, "n", before_epoch));
    }

    #[test]
    fn capacity_is_a_hard_cap_evicting_the_oldest_ts_first() {
        let c = NonceCache::new(SKEW, 3);
        // Recorded newest-ts first, to show eviction goes by ts, not by arrival.
        for ts in [T + 2, T + 1, T] {
            assert!(c.cai("a", ts, "n", at(T)));
        }
        assert_eq!(c.len(), 3);
        assert!(c.cai("a", T + 3, "n", at(T)));
        assert_eq!(c.len(), 3);
        // The oldest ts made room; the others are still remembered.
        assert!(!c.cai("a", T + 3, "n", at(T)));
        assert!(!c.cai("a", T + 2, "n", at(T)));
        assert!(!c.cai("a", T + 1, "n", at(T)));
        assert!(c.cai("a", T, "n", at(T)));
        assert_eq!(c.len(), 3);
        // Recording T again evicted T + 1, the oldest left.
        assert!(c.cai("a", T + 1, "n", at(T)));
        assert!(!c.is_empty());
    }

    #[test]
    fn eviction_drops_a_whole_bucket() {
        let c = NonceCache::new(SKEW, 3);
        for n in ["n0", "n1", "n2"] {
            assert!(c.cai("a", T, n, at(T)));
        }
        assert!(c.cai("a", T, "n3", at(T)));
        assert_eq!(c.len(), 1);
        assert!(!c.cai("a", T, "n3", at(T)));
        assert!(c.cai("a", T, "n0", at(T)));
    }

    #[test]
    fn sealed_buckets_still_refuse_replays_and_take_late_arrivals() {
        let c = NonceCache::new(SKEW, 100);
        for i in 0..20 {
            assert!(c.cai("a", T, &i.to_string(), at(T)));
        }
        let later = T + SEAL_AFTER_SECS + 1;
        assert!(c.cai("a", later, "x", at(later)));
        {
            let inner = c.lock();
            let b = &inner.buckets[&T];
            assert_eq!((b.sealed.len(), b.open.len()), (20, 0));
            assert!(b.sealed.is_sorted());
        }
        for i in 0..20 {
            assert!(!c.cai("a", T, &i.to_string(), at(later)));
        }
        // A client whose clock lags adds to the sealed second.
        assert!(c.cai("a", T, "late", at(later)));
        assert!(!c.cai("a", T, "late", at(later)));
        assert_eq!(c.len(), 22);
        // A clock stepped back and forward again seals the late entry in too.
        assert!(c.cai("a", T, "y", at(T)));
        assert!(c.cai("a", later, "z", at(later)));
        assert_eq!(c.lock().buckets[&T].len(), 22);
        assert_eq!(c.lock().buckets[&T].open.len(), 0);
        for n in ["late", "y", "0", "19"] {
            assert!(!c.cai("a", T, n, at(T + S)));
        }
        assert_eq!(c.len(), 24);
    }

    #[test]
    fn a_poisoned_lock_is_recovered_with_a_true_count() {
        let c = NonceCache::new(SKEW, 10);
        assert!(c.cai("a", T, "n", at(T)));
        let poisoner = std::thread::scope(|s| {
            s.spawn(|| {
                let mut inner = c.inner.lock().unwrap();
                inner.len = 99; // as if a panic had cut an update short
                panic!("poison the lock (expected in this test)");
            })
            .join()
        });
        assert!(poisoner.is_err());
        assert_eq!(c.len(), 1);
        assert!(!c.cai("a", T, "n", at(T)));
        assert!(c.cai("a", T, "m", at(T)));
        assert_eq!(c.len(), 2);
    }

    fn hex(d: &NonceDigest) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The digest is what the shared replay record is keyed by, so every process,
    /// and every roller version sharing one backend, must compute the same one:
    /// known answers (SHA-256 of the length-prefixed triple, computed apart from
    /// this code), not just "equal twice in one process".
    #[test]
    fn the_digest_is_the_same_everywhere_and_pinned() {
        let d = digest("project/releng/roller-test", 1_700_000_000, "abc123");
        assert_eq!(hex(&d), "698f316c6c8388755770458294f1ea29");
        assert_eq!(hex(&digest("", 0, "")), "9d908ecfb6b256def8b49a7c504e6c88");
        // Another thread stands in for another process: nothing per-process goes in.
        let there = std::thread::spawn(|| digest("project/releng/roller-test", 1_700_000_000, "abc123"));
        assert_eq!(there.join().unwrap(), d);
    }

    #[test]
    fn each_part_of_the_triple_changes_the_digest() {
        let all = [
            digest("a", T, "n"),
            digest("b", T, "n"),
            digest("a", T + 1, "n"),
            digest("a", T, "m"),
            // Length prefixes: the same bytes split differently.
            digest("ab", T, "c"),
            digest("a", T, "bc"),
        ];
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
    }

    #[test]
    fn contains_sees_what_was_recorded_and_changes_nothing() {
        let c = NonceCache::new(SKEW, 10);
        let d = digest("a", T, "n");
        assert!(!c.contains(&d, T));
        assert!(c.is_empty(), "a lookup records nothing");
        assert!(c.check_and_insert(&d, T, at(T)));
        assert!(c.contains(&d, T));
        assert!(!c.contains(&d, T + 1), "looked up under its own ts");
        assert!(!c.contains(&digest("a", T, "m"), T));
    }

    /// Properties over arbitrary clocks, skews and request sequences.
    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use std::collections::HashSet;

        const NANOS: i128 = 1_000_000_000;

        fn at_nanos(n: i128) -> SystemTime {
            let d = Duration::from_nanos(n.unsigned_abs() as u64);
            if n >= 0 { UNIX_EPOCH + d } else { UNIX_EPOCH - d }
        }

        /// Few clients and nonces, so that equal triples are common.
        fn triple() -> impl Strategy<Value = (usize, usize)> {
            (0..3usize, 0..4usize)
        }

        const CLIENTS: [&str; 3] = ["a", "b", "ab"];
        const NONCES: [&str; 4] = ["n", "m", "c", "bc"];

        proptest! {
            /// Once accepted, a triple is refused at every instant the caller's
            /// `|ts - now| <= skew` check would let it through, in any order and
            /// with other traffic in between.
            #[test]
            fn an_accepted_triple_is_refused_throughout_its_window(
                skew in 0u64..3_000,
                ts in 0u64..4_000_000_000,
                first in -NANOS..=NANOS,
                later in prop::collection::vec((-NANOS..=NANOS, triple(), -2i64..=2), 1..24),
            ) {
                let window = i128::from(skew) * NANOS;
                // `first` and `later` are fractions of the window around ts.
                let when = |f: i128| i128::from(ts) * NANOS + f * window / NANOS;
                let c = NonceCache::new(Duration::from_secs(skew), 1_000);
                prop_assert!(c.cai("a", ts, "n", at_nanos(when(first))));
                for (f, (ci, ni), dts) in later {
                    let now = at_nanos(when(f));
                    prop_assert!(!c.cai("a", ts, "n", now));
                    // Other traffic, near the same timestamp.
                    let other_ts = ts.saturating_add_signed(dts);
                    c.cai(CLIENTS[ci], other_ts, NONCES[ni], now);
                    prop_assert!(!c.cai("a", ts, "n", now));
                }
            }

            /// Against a model: with the clock moving forward, a triple is
            /// accepted exactly when its ts is within the skew and it was never
            /// accepted before; with room enough, `len` counts the live entries.
            #[test]
            fn decisions_match_a_model_and_len_never_exceeds_capacity(
                skew in 0u64..40,
                start in 0u64..2_000_000_000,
                capacity in prop_oneof![1usize..6, Just(10_000)],
                ops in prop::collection::vec((0u64..15, -45i64..=45, triple()), 0..80),
            ) {
                let c = NonceCache::new(Duration::from_secs(skew), capacity);
                let mut accepted: HashSet<(usize, u64, usize)> = HashSet::new();
                let mut now = start;
                for (dt, dts, (ci, ni)) in ops {
                    now += dt;
                    let ts = now.saturating_add_signed(dts);
                    let in_window = ts.abs_diff(now) <= skew;
                    let got = c.cai(CLIENTS[ci], ts, NONCES[ni], at_nanos(i128::from(now) * NANOS));
                    if !in_window {
                        prop_assert!(!got, "outside the window");
                    } else if !accepted.contains(&(ci, ts, ni)) {
                        prop_assert!(got, "a new triple is never a replay");
                    } else if capacity == 10_000 {
                        prop_assert!(!got, "a replay within the window");
                    }
                    if got {
                        accepted.insert((ci, ts, ni));
                    }
                    prop_assert!(c.len() <= capacity);
                    if capacity == 10_000 {
                        let live = accepted.iter().filter(|(_, t, _)| t.saturating_add(skew) >= now).count();
                        prop_assert_eq!(c.len(), live);
                    }
                }
            }
        }
    }
}
