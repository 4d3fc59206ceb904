//! Rate limits for DHCP: token buckets per client hardware address and per link, in whole
//! seconds (the engine's clock). Bounded: the per-client table never holds more than
//! [`MAX_CLIENTS`] entries.

use std::collections::HashMap;

use super::lease::Secs;

/// Most per-client buckets kept at once; past it, buckets untouched this second are dropped
/// (they would be full again anyway), then all of them.
pub const MAX_CLIENTS: usize = 4096;

/// A token bucket: `rate` a second, up to `2 * rate` saved.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: u64,
    last: Secs,
}

impl Bucket {
    fn full(rate: u32, now: Secs) -> Bucket {
        Bucket {
            tokens: 2 * u64::from(rate),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: u32, now: Secs) -> bool {
        let cap = 2 * u64::from(rate);
        let gained = now
            .saturating_sub(self.last)
            .saturating_mul(u64::from(rate));
        self.tokens = (self.tokens + gained).min(cap);
        self.last = self.last.max(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The DHCP rate limits.
pub struct Limits {
    per_client: u32,
    per_link: u32,
    clients: HashMap<Vec<u8>, Bucket>,
    links: Vec<Bucket>,
}

impl Limits {
    /// Limits for `links` links.
    pub fn new(links: usize, per_client: u32, per_link: u32) -> Limits {
        Limits {
            per_client,
            per_link,
            clients: HashMap::new(),
            links: vec![Bucket::full(per_link, 0); links],
        }
    }

    /// Whether one more packet from the client with hardware address `chaddr` is taken now.
    pub fn client(&mut self, chaddr: &[u8], now: Secs) -> bool {
        if let Some(b) = self.clients.get_mut(chaddr) {
            return b.take(self.per_client, now);
        }
        if self.clients.len() >= MAX_CLIENTS {
            self.clients.retain(|_, b| b.last >= now);
            if self.clients.len() >= MAX_CLIENTS {
                self.clients.clear();
            }
        }
        let mut b = Bucket::full(self.per_client, now);
        let ok = b.take(self.per_client, now);
        self.clients.insert(chaddr.to_vec(), b);
        ok
    }

    /// Whether one more packet from a client without a lease on `link` is taken now.
    pub fn link(&mut self, link: usize, now: Secs) -> bool {
        let rate = self.per_link;
        self.links.get_mut(link).is_some_and(|b| b.take(rate, now))
    }

    /// Per-client buckets held now.
    pub fn tracked(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = Limits::new(1, 3, 100);
        let taken = (0..10).filter(|_| l.client(b"aa", 100)).count();
        assert_eq!(taken, 6, "a burst of twice the rate");
        assert!(l.client(b"bb", 100), "another client has its own bucket");
        let next = (0..10).filter(|_| l.client(b"aa", 101)).count();
        assert_eq!(next, 3, "then the rate");
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut l = Limits::new(1, 3, 100);
        for i in 0..(3 * MAX_CLIENTS as u32) {
            l.client(&i.to_be_bytes(), 5 + u64::from(i) / 1000);
            assert!(l.tracked() <= MAX_CLIENTS);
        }
    }

    #[test]
    fn a_link_has_one_bucket() {
        let mut l = Limits::new(2, 3, 5);
        assert_eq!((0..50).filter(|_| l.link(0, 7)).count(), 10);
        assert!(l.link(1, 7));
        assert!(!l.link(5, 7), "no such link");
    }
}
