//! Leases in memory: who holds which address, offers in flight, and the allocator.
//!
//! Pure data structure, no I/O and no clock: every call takes `now` in seconds since the Unix
//! epoch. The durable copy lives in `store`; this table is rebuilt from it at start.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::config::{LinkConfig, PoolRange};

/// Seconds since the Unix epoch.
pub type Secs = u64;

/// A client's identity: option 61 if it sent one, else its hardware type and address.
/// The first byte tells which (`1`: client identifier, `0`: htype + chaddr), so the two never
/// collide.
pub type ClientKey = Vec<u8>;

/// What a lease record means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LeaseState {
    /// Acknowledged to the client; valid until `expires`.
    Bound = 0,
    /// Given back by the client (DHCPRELEASE); free, remembered for the same client.
    Released = 1,
    /// Declined by a client as in use by someone else; quarantined until `expires`.
    Declined = 2,
}

impl LeaseState {
    /// The state for a stored byte, if it is one.
    pub fn from_u8(b: u8) -> Option<LeaseState> {
        match b {
            0 => Some(LeaseState::Bound),
            1 => Some(LeaseState::Released),
            2 => Some(LeaseState::Declined),
            _ => None,
        }
    }
}

/// One address's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub addr: Ipv4Addr,
    /// Who holds or last held it; empty for a declined address.
    pub client: ClientKey,
    /// When it stops being the client's (or, declined, when the quarantine ends).
    pub expires: Secs,
    /// What the record means.
    pub state: LeaseState,
    /// The client's Ethernet address, when it has one.
    pub mac: Option<[u8; 6]>,
    /// The name the client sent (option 12), cleaned for display.
    pub hostname: Option<String>,
}

impl Lease {
    /// Whether the address is taken for anyone other than `client` at `now`.
    fn blocks(&self, client: &[u8], now: Secs) -> bool {
        self.expires > now && self.client != client
    }
}

struct Offer {
    client: ClientKey,
    until: Secs,
    /// When it was made, in order: offers made in the same second are reused first made,
    /// first reused (not by address, which would take the newest offer on a low address).
    seq: u64,
}

/// Per-link allocation state.
struct LinkPool {
    pools: Vec<PoolRange>,
    reserved: HashSet<Ipv4Addr>,
    /// Next never-used address: (pool index, address as u32). Past the end: none left.
    cursor: (usize, u32),
    /// Reuse candidates ordered by expiry, oldest first: every lease on this link, plus offered
    /// never-used addresses at time 0 so they come back if the offer lapses.
    by_expiry: BTreeSet<(Secs, Ipv4Addr)>,
}

/// Every lease and offer of every link.
pub struct LeaseTable {
    links: Vec<LinkPool>,
    by_addr: HashMap<Ipv4Addr, Lease>,
    by_client: HashMap<(usize, ClientKey), Ipv4Addr>,
    offers: HashMap<Ipv4Addr, Offer>,
    /// The last offer to each client, so a repeated DISCOVER gets the same address.
    offered: HashMap<(usize, ClientKey), Ipv4Addr>,
    subnets: Vec<ipnet::Ipv4Net>,
    /// The next offer's sequence number.
    offer_seq: u64,
}

impl LeaseTable {
    /// An empty table for `links`.
    pub fn new(links: &[LinkConfig]) -> LeaseTable {
        LeaseTable {
            links: links
                .iter()
                .map(|l| LinkPool {
                    pools: l.pools.clone(),
                    reserved: l.reservations.iter().map(|r| r.address).collect(),
                    cursor: (0, u32::from(l.pools[0].first)),
                    by_expiry: BTreeSet::new(),
                })
                .collect(),
            by_addr: HashMap::new(),
            by_client: HashMap::new(),
            offers: HashMap::new(),
            offered: HashMap::new(),
            subnets: links.iter().map(|l| l.subnet).collect(),
            offer_seq: 0,
        }
    }

    /// The link whose subnet holds `addr`.
    pub fn link_of(&self, addr: Ipv4Addr) -> Option<usize> {
        self.subnets.iter().position(|s| s.contains(&addr))
    }

    /// Loads a stored record. Records outside every link's subnet are ignored (returns false).
    pub fn restore(&mut self, lease: Lease) -> bool {
        let Some(link) = self.link_of(lease.addr) else {
            return false;
        };
        self.put(link, lease);
        true
    }

    /// The record for `addr`.
    /// Every lease record.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.by_addr.values()
    }

    pub fn get(&self, addr: Ipv4Addr) -> Option<&Lease> {
        self.by_addr.get(&addr)
    }

    /// The address `client` holds or last held on `link`, if it is still its own.
    pub fn address_of(&self, link: usize, client: &[u8]) -> Option<Ipv4Addr> {
        let addr = *self.by_client.get(&(link, client.to_vec()))?;
        let lease = self.by_addr.get(&addr)?;
        (lease.client == client).then_some(addr)
    }

    /// Whether `client` may be given `addr` on `link` at `now`: in a pool (or reserved for it,
    /// `reserved_for_client`), not reserved for someone else, not held or offered to anyone else.
    pub fn is_free_for(
        &self,
        link: usize,
        addr: Ipv4Addr,
        client: &[u8],
        reserved_for_client: bool,
        now: Secs,
    ) -> bool {
        let Some(pool) = self.links.get(link) else {
            return false;
        };
        // A lease the client holds now stays its own until it ends, even if a reload moved
        // the pool away from it.
        let holds = self
            .by_addr
            .get(&addr)
            .is_some_and(|l| l.client == client && l.state == LeaseState::Bound && l.expires > now);
        if holds && (reserved_for_client || !pool.reserved.contains(&addr)) {
            return self
                .offers
                .get(&addr)
                .is_none_or(|o| o.until <= now || o.client == client);
        }
        if !reserved_for_client
            && (pool.reserved.contains(&addr) || !pool.pools.iter().any(|p| p.contains(addr)))
        {
            return false;
        }
        if let Some(o) = self.offers.get(&addr) {
            if o.until > now && o.client != client {
                return false;
            }
        }
        !self
            .by_addr
            .get(&addr)
            .is_some_and(|l| l.blocks(client, now))
    }

    /// Picks an address for a new client on `link`: a never-used one first, else the lease that
    /// expired longest ago, else (the pool is full of offers, as in a DISCOVER flood) the oldest
    /// outstanding offer: an offer is a courtesy, not a lease. `None` when every address is
    /// leased.
    pub fn allocate(&mut self, link: usize, client: &[u8], now: Secs) -> Option<Ipv4Addr> {
        if let Some(a) = self.next_fresh(link, client, now) {
            return Some(a);
        }
        let pool = self.links.get(link)?;
        let mut stale = Vec::new();
        let mut found = None;
        for &(t, addr) in pool.by_expiry.iter() {
            if t > now {
                break;
            }
            match self.by_addr.get(&addr) {
                Some(l) if l.expires != t => {
                    stale.push((t, addr));
                    continue;
                }
                None if t != 0 => {
                    stale.push((t, addr));
                    continue;
                }
                _ => {}
            }
            if self.is_free_for(link, addr, client, false, now) {
                found = Some(addr);
                break;
            }
        }
        if let Some(pool) = self.links.get_mut(link) {
            for s in stale {
                pool.by_expiry.remove(&s);
            }
        }
        found.or_else(|| self.oldest_offer(link, client, now))
    }

    fn oldest_offer(&self, link: usize, client: &[u8], now: Secs) -> Option<Ipv4Addr> {
        let pool = self.links.get(link)?;
        self.offers
            .iter()
            .filter(|(a, o)| {
                o.client != client
                    && !pool.reserved.contains(a)
                    && pool.pools.iter().any(|p| p.contains(**a))
                    && !self.by_addr.get(a).is_some_and(|l| l.blocks(client, now))
            })
            .min_by_key(|(_, o)| (o.until, o.seq))
            .map(|(a, _)| *a)
    }

    fn next_fresh(&mut self, link: usize, client: &[u8], now: Secs) -> Option<Ipv4Addr> {
        loop {
            let pool = self.links.get(link)?;
            let (pi, next) = pool.cursor;
            let range = *pool.pools.get(pi)?;
            if next > u32::from(range.last) {
                let after = pool.pools.get(pi + 1).map(|r| u32::from(r.first));
                let pool = self.links.get_mut(link)?;
                pool.cursor = (pi + 1, after.unwrap_or(0));
                continue;
            }
            let addr = Ipv4Addr::from(next);
            if let Some(pool) = self.links.get_mut(link) {
                pool.cursor.1 = next + 1;
            }
            let used = self.by_addr.contains_key(&addr)
                || self.offers.contains_key(&addr)
                || self
                    .links
                    .get(link)
                    .is_some_and(|p| p.reserved.contains(&addr));
            if !used && self.is_free_for(link, addr, client, false, now) {
                return Some(addr);
            }
        }
    }

    /// Holds `addr` for `client` until `until`.
    pub fn offer(&mut self, link: usize, addr: Ipv4Addr, client: &[u8], until: Secs) {
        if !self.by_addr.contains_key(&addr) {
            if let Some(pool) = self.links.get_mut(link) {
                pool.by_expiry.insert((0, addr));
            }
        }
        let previous = self.offers.insert(
            addr,
            Offer {
                client: client.to_vec(),
                until,
                seq: self.offer_seq,
            },
        );
        self.offer_seq += 1;
        // The address's earlier client holds no offer any more: forget it, so that the
        // table of offers made stays bounded by the pool whatever the number of clients.
        if let Some(p) = previous.filter(|p| p.client != client) {
            self.offered.remove(&(link, p.client));
        }
        self.offered.insert((link, client.to_vec()), addr);
    }

    /// How many clients hold an outstanding offer (at most the pool's size).
    pub fn offers_outstanding(&self) -> usize {
        self.offered.len()
    }

    /// Drops the offer of `addr` to `client`, if there is one.
    pub fn withdraw_offer(&mut self, addr: Ipv4Addr, client: &[u8]) {
        if self.offers.get(&addr).is_some_and(|o| o.client == client) {
            self.offers.remove(&addr);
        }
    }

    /// The address currently offered to `client` on `link`, if any.
    pub fn offered_to(&self, link: usize, client: &[u8], now: Secs) -> Option<Ipv4Addr> {
        let addr = *self.offered.get(&(link, client.to_vec()))?;
        self.is_offered_to(addr, client, now).then_some(addr)
    }

    /// Whether `addr` is currently offered to `client`.
    pub fn is_offered_to(&self, addr: Ipv4Addr, client: &[u8], now: Secs) -> bool {
        self.offers
            .get(&addr)
            .is_some_and(|o| o.client == client && o.until > now)
    }

    /// Records `lease` (on `link`) and returns it for the caller to persist.
    pub fn put(&mut self, link: usize, lease: Lease) -> Lease {
        let addr = lease.addr;
        if let Some(o) = self.offers.remove(&addr) {
            let key = (link, o.client);
            if self.offered.get(&key) == Some(&addr) {
                self.offered.remove(&key);
            }
        }
        let old = self.by_addr.insert(addr, lease.clone());
        if let Some(pool) = self.links.get_mut(link) {
            match &old {
                Some(o) => pool.by_expiry.remove(&(o.expires, addr)),
                None => pool.by_expiry.remove(&(0, addr)),
            };
            pool.by_expiry.insert((lease.expires, addr));
        }
        if let Some(o) = old {
            if o.client != lease.client {
                let key = (link, o.client);
                if self.by_client.get(&key) == Some(&addr) {
                    self.by_client.remove(&key);
                }
            }
        }
        if !lease.client.is_empty() {
            self.by_client.insert((link, lease.client.clone()), addr);
        }
        lease
    }

    /// Forgets offers that lapsed before `now`, so the map does not grow without bound.
    pub fn prune_offers(&mut self, now: Secs) {
        self.offers.retain(|_, o| o.until > now);
        let offers = &self.offers;
        self.offered
            .retain(|(_, c), a| offers.get(a).is_some_and(|o| o.client == *c));
    }

    /// Number of bound, unexpired leases.
    pub fn active(&self, now: Secs) -> usize {
        self.by_addr
            .values()
            .filter(|l| l.state == LeaseState::Bound && l.expires > now)
            .count()
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
