//! The HomeSpot's global addresses: which client key holds which, since when unused, and the
//! greatest handshake timestamp seen from each key. Bounded by the pool's size: an address is
//! assigned only to a key that completed a handshake; assignments unused for longer than the
//! expiry go; when the pool is full the one unused the longest is evicted, never one whose
//! session is active.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use crate::endpoint::Instant;

/// One key's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// The global address.
    pub global: Ipv4Addr,
    /// When the key last completed a handshake or sent an authenticated message.
    pub last_used: Instant,
    /// The greatest handshake timestamp accepted from the key.
    pub timestamp: u64,
}

/// Why no address could be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFull;

/// What [`Pool::assign`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    /// The key's address.
    pub global: Ipv4Addr,
    /// Whether it is new for this key.
    pub new: bool,
    /// The assignment evicted to make room: its key and address.
    pub evicted: Option<([u8; 32], Ipv4Addr)>,
}

/// The pool.
#[derive(Debug, Clone)]
pub struct Pool {
    first: u32,
    last: u32,
    reserved: Ipv4Addr,
    by_key: BTreeMap<[u8; 32], Assignment>,
    by_addr: BTreeMap<Ipv4Addr, [u8; 32]>,
    warned: bool,
}

impl Pool {
    /// Addresses `first..=last` except `reserved` (the HomeSpot's own), with the assignments
    /// loaded from storage (those outside the range, or a second key on one address, are
    /// dropped).
    pub fn new(
        first: Ipv4Addr,
        last: Ipv4Addr,
        reserved: Ipv4Addr,
        loaded: impl IntoIterator<Item = ([u8; 32], Assignment)>,
    ) -> Pool {
        let mut p = Pool {
            first: u32::from(first),
            last: u32::from(last),
            reserved,
            by_key: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            warned: false,
        };
        for (k, a) in loaded {
            let g = u32::from(a.global);
            if g < p.first
                || g > p.last
                || a.global == reserved
                || p.by_addr.contains_key(&a.global)
            {
                continue;
            }
            p.by_addr.insert(a.global, k);
            p.by_key.insert(k, a);
        }
        p
    }

    /// How many addresses the pool has.
    pub fn size(&self) -> usize {
        let n = (self.last.saturating_sub(self.first) as usize) + 1;
        let r = u32::from(self.reserved);
        n - usize::from(r >= self.first && r <= self.last)
    }

    /// How many are assigned.
    pub fn used(&self) -> usize {
        self.by_key.len()
    }

    /// `key`'s assignment.
    pub fn get(&self, key: &[u8; 32]) -> Option<&Assignment> {
        self.by_key.get(key)
    }

    /// Every assignment.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 32], &Assignment)> {
        self.by_key.iter()
    }

    /// Whether `ts` is newer than every handshake timestamp accepted from `key` (always true
    /// for a key without an assignment: it has no session a replay could disturb).
    pub fn timestamp_is_new(&self, key: &[u8; 32], ts: u64) -> bool {
        self.by_key.get(key).is_none_or(|a| ts > a.timestamp)
    }

    /// Records an accepted handshake timestamp for an assigned key.
    pub fn record_timestamp(&mut self, key: &[u8; 32], ts: u64) {
        if let Some(a) = self.by_key.get_mut(key) {
            a.timestamp = a.timestamp.max(ts);
        }
    }

    /// `key` was heard from now.
    pub fn touch(&mut self, key: &[u8; 32], now: Instant) {
        if let Some(a) = self.by_key.get_mut(key) {
            a.last_used = a.last_used.max(now);
        }
    }

    /// The address for `key`, which just completed a handshake with timestamp `ts`: its own,
    /// or a free one, or the one of the assignment unused the longest (`active` says which
    /// keys have an active session; those are never evicted).
    pub fn assign(
        &mut self,
        key: [u8; 32],
        now: Instant,
        ts: u64,
        active: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<Assigned, PoolFull> {
        if let Some(a) = self.by_key.get_mut(&key) {
            a.last_used = a.last_used.max(now);
            a.timestamp = a.timestamp.max(ts);
            return Ok(Assigned {
                global: a.global,
                new: false,
                evicted: None,
            });
        }
        let mut evicted = None;
        let global = match self.free() {
            Some(g) => g,
            None => {
                let (old_key, old) = self
                    .by_key
                    .iter()
                    .filter(|(k, _)| !active(k))
                    .min_by_key(|(_, a)| a.last_used)
                    .map(|(k, a)| (*k, a.global))
                    .ok_or(PoolFull)?;
                self.by_key.remove(&old_key);
                self.by_addr.remove(&old);
                evicted = Some((old_key, old));
                old
            }
        };
        self.by_addr.insert(global, key);
        self.by_key.insert(
            key,
            Assignment {
                global,
                last_used: now,
                timestamp: ts,
            },
        );
        Ok(Assigned {
            global,
            new: true,
            evicted,
        })
    }

    fn free(&self) -> Option<Ipv4Addr> {
        (self.first..=self.last)
            .map(Ipv4Addr::from)
            .find(|a| *a != self.reserved && !self.by_addr.contains_key(a))
    }

    /// Removes the assignments unused for longer than `max_unused` (never an active key's).
    pub fn expire(
        &mut self,
        now: Instant,
        max_unused: Duration,
        active: impl Fn(&[u8; 32]) -> bool,
    ) -> Vec<([u8; 32], Ipv4Addr)> {
        let old: Vec<([u8; 32], Ipv4Addr)> = self
            .by_key
            .iter()
            .filter(|(k, a)| now.since(a.last_used) > max_unused && !active(k))
            .map(|(k, a)| (*k, a.global))
            .collect();
        for (k, g) in &old {
            self.by_key.remove(k);
            self.by_addr.remove(g);
        }
        old
    }

    /// `Some((used, size))` once when use crosses 90 %; again only after it fell below 80 %.
    pub fn nearly_full(&mut self) -> Option<(usize, usize)> {
        let (used, size) = (self.used(), self.size().max(1));
        if used * 10 >= size * 9 {
            if !self.warned {
                self.warned = true;
                return Some((used, size));
            }
        } else if used * 10 < size * 8 {
            self.warned = false;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000_000;

    fn pool(n: u8) -> Pool {
        Pool::new(
            Ipv4Addr::new(10, 200, 0, 1),
            Ipv4Addr::new(10, 200, 0, n),
            Ipv4Addr::new(10, 200, 0, 1),
            [],
        )
    }

    #[test]
    fn the_same_key_keeps_its_address_and_the_reserved_one_is_never_given() {
        let mut p = pool(4);
        assert_eq!(p.size(), 3);
        let a = p.assign([1; 32], Instant(10), 1, |_| false).expect("a");
        assert!(a.new);
        assert_eq!(a.global, Ipv4Addr::new(10, 200, 0, 2));
        let again = p.assign([1; 32], Instant(20), 2, |_| false).expect("again");
        assert_eq!(again.global, a.global);
        assert!(!again.new);
        assert!(!p.timestamp_is_new(&[1; 32], 2));
        assert!(p.timestamp_is_new(&[1; 32], 3));
        assert!(
            p.timestamp_is_new(&[9; 32], 0),
            "no assignment, nothing to protect"
        );
    }

    #[test]
    fn when_full_the_longest_unused_goes_but_never_an_active_one() {
        let mut p = pool(4);
        for (i, t) in [(1u8, 100u64), (2, 50), (3, 200)] {
            p.assign([i; 32], Instant(t), 1, |_| false).expect("fill");
        }
        // Key 2 is the oldest, but active: key 1 goes.
        let r = p
            .assign([9; 32], Instant(300), 1, |k| *k == [2; 32])
            .expect("evict");
        assert_eq!(r.evicted, Some(([1; 32], Ipv4Addr::new(10, 200, 0, 2))));
        assert_eq!(r.global, Ipv4Addr::new(10, 200, 0, 2));
        assert!(p.get(&[1; 32]).is_none());
        // Everyone active: refused.
        assert_eq!(p.assign([8; 32], Instant(400), 1, |_| true), Err(PoolFull));
        assert_eq!(p.used(), 3);
    }

    #[test]
    fn unused_assignments_expire_with_explicit_time() {
        let mut p = pool(10);
        p.assign([1; 32], Instant(DAY), 1, |_| false).expect("a");
        p.assign([2; 32], Instant(20 * DAY), 1, |_| false)
            .expect("b");
        let thirty = Duration::from_secs(30 * 86_400);
        assert!(p.expire(Instant(30 * DAY), thirty, |_| false).is_empty());
        let gone = p.expire(Instant(31 * DAY + 1), thirty, |_| false);
        assert_eq!(gone, [([1; 32], Ipv4Addr::new(10, 200, 0, 2))]);
        // Used again on day 40: kept past day 50.
        p.touch(&[2; 32], Instant(40 * DAY));
        assert!(p.expire(Instant(55 * DAY), thirty, |_| false).is_empty());
        // Active keys never expire.
        assert!(p.expire(Instant(500 * DAY), thirty, |_| true).is_empty());
        assert_eq!(p.used(), 1);
    }

    #[test]
    fn the_nearly_full_warning_comes_once_per_crossing() {
        let mut p = pool(11); // 10 addresses
        let mut warnings = 0;
        for i in 0..10u8 {
            p.assign([i; 32], Instant(u64::from(i)), 1, |_| false)
                .expect("fill");
            warnings += usize::from(p.nearly_full().is_some());
        }
        assert_eq!(warnings, 1);
    }

    #[test]
    fn loaded_records_outside_the_pool_are_dropped() {
        let a = |g| Assignment {
            global: g,
            last_used: Instant(0),
            timestamp: 0,
        };
        let p = Pool::new(
            Ipv4Addr::new(10, 200, 0, 1),
            Ipv4Addr::new(10, 200, 0, 10),
            Ipv4Addr::new(10, 200, 0, 1),
            [
                ([1; 32], a(Ipv4Addr::new(10, 200, 0, 5))),
                ([2; 32], a(Ipv4Addr::new(10, 201, 0, 5))),
                ([3; 32], a(Ipv4Addr::new(10, 200, 0, 5))),
                ([4; 32], a(Ipv4Addr::new(10, 200, 0, 1))),
            ],
        );
        assert_eq!(p.used(), 1);
    }
}
