//! Login rate limiting per source address, with backoff: a few failures are free, then each
//! further failure doubles the wait before the next attempt is heard (up to [`MAX_WAIT`]). The
//! table is bounded; when full, the entry seen least recently goes. Sans-IO (explicit `now`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures allowed before waiting starts.
pub const FREE_FAILURES: u32 = 5;
/// The first wait.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Sources tracked at once.
pub const MAX_SOURCES: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    until: Option<Instant>,
    seen: Instant,
}

/// Failures per source.
#[derive(Debug, Default)]
pub struct LoginLimit {
    by_source: HashMap<IpAddr, Entry>,
}

impl LoginLimit {
    /// `Err(wait)`: `from` must wait this long before a login attempt is heard.
    pub fn check(&self, from: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.by_source.get(&from).and_then(|e| e.until) {
            Some(t) if t > now => Err(t - now),
            _ => Ok(()),
        }
    }

    /// A wrong password from `from` at `now`.
    pub fn failed(&mut self, from: IpAddr, now: Instant) {
        if !self.by_source.contains_key(&from) && self.by_source.len() >= MAX_SOURCES {
            if let Some(old) = self
                .by_source
                .iter()
                .min_by_key(|(_, e)| e.seen)
                .map(|(ip, _)| *ip)
            {
                self.by_source.remove(&old);
            }
        }
        let e = self.by_source.entry(from).or_insert(Entry {
            failures: 0,
            until: None,
            seen: now,
        });
        e.failures = e.failures.saturating_add(1);
        e.seen = now;
        if e.failures >= FREE_FAILURES {
            let doublings = (e.failures - FREE_FAILURES).min(16);
            let wait = FIRST_WAIT.saturating_mul(1 << doublings).min(MAX_WAIT);
            e.until = Some(now + wait);
        }
    }

    /// A good password from `from`: its record is cleared.
    pub fn succeeded(&mut self, from: IpAddr) {
        self.by_source.remove(&from);
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.by_source.len()
    }

    /// None tracked.
    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_per_source_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let a: IpAddr = "10.77.1.50".parse().expect("ip");
        let b: IpAddr = "10.77.1.51".parse().expect("ip");
        let mut l = LoginLimit::default();
        for i in 0..FREE_FAILURES - 1 {
            assert_eq!(l.check(a, t0), Ok(()), "failure {i} is free");
            l.failed(a, t0);
        }
        assert_eq!(l.check(a, t0), Ok(()));
        l.failed(a, t0);
        assert_eq!(l.check(a, t0), Err(FIRST_WAIT));
        assert_eq!(l.check(b, t0), Ok(()), "another source is not held back");
        let t1 = t0 + FIRST_WAIT;
        assert_eq!(l.check(a, t1), Ok(()));
        l.failed(a, t1);
        assert_eq!(l.check(a, t1), Err(FIRST_WAIT * 2), "doubles");
        for _ in 0..30 {
            l.failed(a, t1);
        }
        assert_eq!(l.check(a, t1), Err(MAX_WAIT), "capped");
        l.succeeded(a);
        assert_eq!(l.check(a, t1), Ok(()));
        // Bounded.
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.failed(ip, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(l.len(), MAX_SOURCES);
    }
}
