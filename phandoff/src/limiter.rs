//! Token buckets: one per source address (bounded table) and one global, for replies to
//! unauthenticated requests and for the HomeSpot's handshake budget.

use alloc::collections::BTreeMap;
use core::net::Ipv4Addr;

use crate::endpoint::Instant;

/// One bucket: `rate` tokens a second, at most `burst`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f32,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: burst as f32,
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant, rate: u32, burst: u32) {
        let dt = now.since(self.at).as_secs_f32();
        self.tokens = (self.tokens + dt * rate as f32).min(burst as f32);
        self.at = now;
    }

    /// Whether the bucket is full again (its entry can go).
    fn idle(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        self.refill(now, rate, burst);
        self.tokens >= burst as f32
    }
}

/// A bucket per source address, at most `cap` of them, plus a global bucket over all
/// sources. When the table is full and no entry is idle, new sources are refused: the table
/// never grows past its bound whatever the number of (spoofed) sources.
#[derive(Debug, Clone)]
pub struct Limiter {
    per_source: BTreeMap<Ipv4Addr, Bucket>,
    global: Bucket,
    rate: u32,
    burst: u32,
    global_rate: u32,
    cap: usize,
}

impl Limiter {
    /// `rate`/`burst` per source, `global_rate` over all (burst: one second of it), at most
    /// `cap` sources tracked.
    pub fn new(rate: u32, burst: u32, global_rate: u32, cap: usize) -> Limiter {
        Limiter {
            per_source: BTreeMap::new(),
            global: Bucket::full(global_rate, Instant(0)),
            rate,
            burst,
            global_rate,
            cap,
        }
    }

    /// Whether a reply to `src` may go now (takes a token from both buckets if so).
    pub fn allow(&mut self, now: Instant, src: Ipv4Addr) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        if !self.per_source.contains_key(&src) && self.per_source.len() >= self.cap {
            self.per_source.retain(|_, b| !b.idle(now, rate, burst));
            if self.per_source.len() >= self.cap {
                return false;
            }
        }
        let b = self
            .per_source
            .entry(src)
            .or_insert_with(|| Bucket::full(burst, now));
        if !b.take(now, rate, burst) {
            return false;
        }
        self.global.take(now, self.global_rate, self.global_rate)
    }

    /// How many sources are tracked.
    pub fn len(&self) -> usize {
        self.per_source.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.per_source.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_and_global_limits() {
        let mut l = Limiter::new(10, 5, 100, 4);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let t = Instant(1_000_000);
        let n = (0..100).filter(|_| l.allow(t, a)).count();
        assert_eq!(n, 5, "the burst, then nothing");
        // 100 ms later: one more token.
        assert!(l.allow(Instant(1_100_000), a));
        assert!(!l.allow(Instant(1_100_000), a));
        // A fifth source while four are busy: refused, the table stays at its bound.
        for i in 2..=4 {
            assert!(l.allow(t, Ipv4Addr::new(10, 0, 0, i)));
        }
        assert!(!l.allow(t, Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(l.len(), 4);
        // Once the others are idle, their entries go.
        assert!(l.allow(Instant(10_000_000), Ipv4Addr::new(10, 0, 0, 9)));
        assert!(l.len() <= 4);
    }

    #[test]
    fn the_global_bucket_caps_many_sources() {
        let mut l = Limiter::new(10, 5, 20, 1000);
        let t = Instant(1_000_000);
        let n = (0..100u8)
            .filter(|i| l.allow(t, Ipv4Addr::new(10, 0, 1, *i)))
            .count();
        assert_eq!(n, 20);
    }
}
