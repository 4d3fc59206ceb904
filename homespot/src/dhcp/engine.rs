//! The DHCP server logic of RFC 2131, sans-IO.
//!
//! [`Engine::handle_packet`] takes the bytes of one datagram, the link it arrived on and `now`
//! (seconds since the Unix epoch), and returns what to send and what to persist. It never
//! panics on any input: malformed, truncated, oversized or wrong-op packets are dropped and
//! counted in [`Counters`]. The engine does no I/O; the caller must make `persist` durable
//! before it sends the reply (see `dhcp::server`).

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, OptionCode};
use dhcproto::Decodable;

use super::lease::{ClientKey, Lease, LeaseState, LeaseTable, Secs};
use super::limits::Limits;
use super::{overload, reply};
use crate::config::{Config, LinkConfig, ReservedFor};

/// Largest datagram accepted; larger ones are dropped as oversized.
pub const MAX_PACKET: usize = 4096;
/// Fixed BOOTP header plus the magic cookie.
const MIN_PACKET: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:68 on the link.
    Broadcast,
    /// `addr`:68, a client that already has its address.
    Unicast(Ipv4Addr),
    /// `addr`:68 for a client without its address yet: the caller must tell the kernel the
    /// hardware address first (or broadcast if it cannot).
    Hardware {
        /// The address being given.
        addr: Ipv4Addr,
        /// The client's Ethernet address.
        chaddr: [u8; 6],
    },
    /// A relay agent, `giaddr`:67.
    Relay(Ipv4Addr),
}

/// A reply to send.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The link (index into `Config::links`) to send it on: the one the request came in on.
    pub link: usize,
    /// Where to.
    pub dest: Destination,
    /// The message.
    pub message: Message,
}

/// The result of one datagram.
#[derive(Debug, Default)]
pub struct Outcome {
    /// What to send, if anything.
    pub reply: Option<Reply>,
    /// A lease record that must be durable before `reply` is sent.
    pub persist: Option<Lease>,
    /// Something the operator should hear about.
    pub notice: Option<Notice>,
}

/// Events worth a log line (the caller rate-limits them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A relayed packet (giaddr set) from an address that is not a configured relay.
    RefusedRelay {
        /// Where it came from.
        src: Ipv4Addr,
        /// The giaddr it claimed.
        giaddr: Ipv4Addr,
    },
    /// A link's pool has no address left for a new client (once per episode).
    PoolExhausted {
        /// The link (index into `Config::links`).
        link: usize,
    },
    /// A link's pool gave an address again after being exhausted.
    PoolAvailable {
        /// The link.
        link: usize,
    },
}

/// What the engine has seen, for logs and the admin panel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams handed to the engine.
    pub received: u64,
    /// Dropped: too short, too long, bad cookie, bad hlen, undecodable.
    pub malformed: u64,
    /// Dropped: BOOTREPLY or unknown op.
    pub wrong_op: u64,
    /// Dropped: no message type, a type a server does not take, or a request that is not for us.
    pub ignored: u64,
    /// Dropped: relayed from a giaddr outside every link.
    pub unknown_relay: u64,
    /// Dropped: relayed, but not sent by a configured relay agent.
    pub refused_relay: u64,
    /// Dropped: over the per-client or per-link rate.
    pub rate_limited: u64,
    /// DISCOVERs that found no free address.
    pub exhausted: u64,
    /// OFFERs sent.
    pub offers: u64,
    /// ACKs for REQUESTs sent.
    pub acks: u64,
    /// ACKs not sent because their lease could not be written (a full or failing disk; the
    /// caller says so with [`Engine::not_written`]). The client asks again.
    pub unwritten: u64,
    /// NAKs sent.
    pub naks: u64,
    /// INFORMs answered.
    pub informs: u64,
    /// RELEASEs taken.
    pub releases: u64,
    /// DECLINEs taken (address quarantined).
    pub declines: u64,
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "received={} malformed={} wrong_op={} ignored={} unknown_relay={} refused_relay={} \
             rate_limited={} exhausted={} offers={} acks={} unwritten={} naks={} informs={} \
             releases={} declines={}",
            self.received,
            self.malformed,
            self.wrong_op,
            self.ignored,
            self.unknown_relay,
            self.refused_relay,
            self.rate_limited,
            self.exhausted,
            self.offers,
            self.acks,
            self.unwritten,
            self.naks,
            self.informs,
            self.releases,
            self.declines
        )
    }
}

/// The DHCP server state machine for all links.
pub struct Engine {
    links: Vec<LinkConfig>,
    table: LeaseTable,
    quarantine: Secs,
    offer_hold: Secs,
    counters: Counters,
    last_prune: Secs,
    relays: Vec<Ipv4Addr>,
    limits: Limits,
    /// Links whose pool is exhausted now (warned once per episode).
    exhausted: Vec<bool>,
}

/// A request after the checks every message gets.
struct Request<'a> {
    msg: &'a Message,
    link: usize,
    client: ClientKey,
}

impl Engine {
    /// An engine with no leases yet.
    pub fn new(cfg: &Config) -> Engine {
        Engine {
            links: cfg.links.clone(),
            table: LeaseTable::new(&cfg.links),
            quarantine: cfg.decline_quarantine.as_secs(),
            offer_hold: cfg.offer_hold.as_secs().max(1),
            counters: Counters::default(),
            last_prune: 0,
            relays: cfg.relays.clone(),
            limits: Limits::new(cfg.links.len(), cfg.rate_per_client, cfg.rate_per_link),
            exhausted: vec![false; cfg.links.len()],
        }
    }

    /// Takes a reloaded config: pools, options, WPAD URLs, reservations, relays and limits
    /// change; every lease record is kept (outstanding offers are dropped: those clients
    /// ask again). The links' interfaces and subnets must be the same (`config::diff`).
    pub fn reconfigure(&mut self, cfg: &Config) {
        let leases: Vec<Lease> = self.table.leases().cloned().collect();
        self.links = cfg.links.clone();
        self.table = LeaseTable::new(&cfg.links);
        for l in leases {
            self.table.restore(l);
        }
        self.quarantine = cfg.decline_quarantine.as_secs();
        self.offer_hold = cfg.offer_hold.as_secs().max(1);
        self.relays = cfg.relays.clone();
        self.limits = Limits::new(cfg.links.len(), cfg.rate_per_client, cfg.rate_per_link);
        self.exhausted = vec![false; cfg.links.len()];
    }

    /// Loads stored leases; returns how many belong to a configured link.
    pub fn restore(&mut self, leases: Vec<Lease>) -> usize {
        leases
            .into_iter()
            .filter(|l| self.table.restore(l.clone()))
            .count()
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// `acks` of the ACKs this engine decided were not sent: their leases could not be written.
    pub fn not_written(&mut self, acks: u64) {
        let n = acks.min(self.counters.acks);
        self.counters.acks -= n;
        self.counters.unwritten += n;
    }

    /// The lease table (read-only), for status and tests.
    pub fn table(&self) -> &LeaseTable {
        &self.table
    }

    /// Forgets the bound lease on `addr` (the admin panel's "forget this lease"): it ends
    /// now, as if released, and the address goes back to the pool. The record to persist, or
    /// None when no lease is bound there.
    pub fn forget(&mut self, now: Secs, addr: Ipv4Addr) -> Option<Lease> {
        let l = self.table.get(addr)?;
        if l.state != LeaseState::Bound || l.expires <= now {
            return None;
        }
        let link = self.table.link_of(addr)?;
        let lease = Lease {
            addr,
            client: l.client.clone(),
            expires: now,
            state: LeaseState::Released,
            mac: l.mac,
            hostname: l.hostname.clone(),
        };
        Some(self.table.put(link, lease))
    }

    /// Handles one datagram that arrived on `link` (an index into `Config::links`) from the
    /// IPv4 address `src`.
    pub fn handle_packet(&mut self, now: Secs, link: usize, src: Ipv4Addr, data: &[u8]) -> Outcome {
        self.counters.received += 1;
        if now >= self.last_prune + 60 {
            self.table.prune_offers(now);
            self.last_prune = now;
        }
        if data.len() < MIN_PACKET || data.len() > MAX_PACKET || data[236..240] != MAGIC {
            self.counters.malformed += 1;
            return Outcome::default();
        }
        if data[0] != 1 {
            self.counters.wrong_op += 1;
            return Outcome::default();
        }
        // dhcproto's chaddr() slices by hlen and would panic past 16.
        if data[2] > 16 {
            self.counters.malformed += 1;
            return Outcome::default();
        }
        if !options_well_formed(&data[MIN_PACKET..]) {
            self.counters.malformed += 1;
            return Outcome::default();
        }
        let Ok(mut msg) = Message::from_bytes(data) else {
            self.counters.malformed += 1;
            return Outcome::default();
        };
        if !overload::merge(&mut msg) {
            self.counters.malformed += 1;
            return Outcome::default();
        }
        self.handle(now, link, src, &msg)
    }

    /// Handles one decoded BOOTREQUEST from `src`. `msg.hlen()` must be at most 16.
    pub fn handle(
        &mut self,
        now: Secs,
        arrived_on: usize,
        src: Ipv4Addr,
        msg: &Message,
    ) -> Outcome {
        if arrived_on >= self.links.len() {
            self.counters.ignored += 1;
            return Outcome::default();
        }
        let giaddr = msg.giaddr();
        let link = if giaddr.is_unspecified() {
            arrived_on
        } else if !self.relays.contains(&src) {
            self.counters.refused_relay += 1;
            return Outcome {
                notice: Some(Notice::RefusedRelay { src, giaddr }),
                ..Outcome::default()
            };
        } else {
            match self.table.link_of(giaddr) {
                Some(l) => l,
                None => {
                    self.counters.unknown_relay += 1;
                    return Outcome::default();
                }
            }
        };
        let req = Request {
            msg,
            link,
            client: client_key(msg),
        };
        let known = self.table.address_of(link, &req.client).is_some();
        if !self.limits.client(msg.chaddr(), now) || (!known && !self.limits.link(link, now)) {
            self.counters.rate_limited += 1;
            return Outcome::default();
        }
        let mut out = match msg.opts().msg_type() {
            Some(MessageType::Discover) => self.discover(now, &req),
            Some(MessageType::Request) => self.request(now, &req),
            Some(MessageType::Release) => self.release(now, &req),
            Some(MessageType::Decline) => self.decline(now, &req),
            Some(MessageType::Inform) => self.inform(&req),
            _ => {
                self.counters.ignored += 1;
                Outcome::default()
            }
        };
        // Replies leave by the link the request arrived on, relayed or not.
        if let Some(r) = out.reply.as_mut() {
            r.link = arrived_on;
            reply::echo(&mut r.message, msg);
        }
        out
    }

    fn reservation(&self, req: &Request) -> Option<Ipv4Addr> {
        let msg = req.msg;
        let id = match msg.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) => Some(id.as_slice()),
            _ => None,
        };
        self.links[req.link]
            .reservations
            .iter()
            .find(|r| match &r.client {
                ReservedFor::Mac(mac) => msg.htype() == HType::Eth && msg.chaddr() == mac,
                ReservedFor::ClientId(c) => id == Some(c.as_slice()),
            })
            .map(|r| r.address)
    }

    /// Whether `addr` may be (re)bound to the client now.
    fn acceptable(&self, now: Secs, req: &Request, addr: Ipv4Addr) -> bool {
        match self.reservation(req) {
            Some(r) => {
                r == addr
                    && self
                        .table
                        .is_free_for(req.link, addr, &req.client, true, now)
            }
            None => self
                .table
                .is_free_for(req.link, addr, &req.client, false, now),
        }
    }

    fn discover(&mut self, now: Secs, req: &Request) -> Outcome {
        let requested = requested_addr(req.msg);
        let addr = self
            .reservation(req)
            .filter(|&a| self.acceptable(now, req, a))
            .or_else(|| {
                self.table
                    .address_of(req.link, &req.client)
                    .filter(|&a| self.acceptable(now, req, a))
            })
            .or_else(|| self.table.offered_to(req.link, &req.client, now))
            .or_else(|| requested.filter(|&a| self.acceptable(now, req, a)))
            .or_else(|| {
                if self.reservation(req).is_some() {
                    None
                } else {
                    self.table.allocate(req.link, &req.client, now)
                }
            });
        let Some(addr) = addr else {
            self.counters.exhausted += 1;
            let first = !std::mem::replace(&mut self.exhausted[req.link], true);
            return Outcome {
                notice: first.then_some(Notice::PoolExhausted { link: req.link }),
                ..Outcome::default()
            };
        };
        let recovered = std::mem::replace(&mut self.exhausted[req.link], false);
        self.table
            .offer(req.link, addr, &req.client, now + self.offer_hold);
        self.counters.offers += 1;
        let link = &self.links[req.link];
        let mut m = reply::header(req.msg, MessageType::Offer, link.address);
        m.set_yiaddr(addr);
        reply::add_lease_times(&mut m, link.lease_time);
        reply::add_link_options(&mut m, req.msg, link);
        Outcome {
            reply: Some(self.addressed(req, m, addr)),
            persist: None,
            notice: recovered.then_some(Notice::PoolAvailable { link: req.link }),
        }
    }

    fn request(&mut self, now: Secs, req: &Request) -> Outcome {
        let msg = req.msg;
        let link_addr = self.links[req.link].address;
        let requested = requested_addr(msg);
        let server_id = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
            _ => None,
        };
        if let Some(sid) = server_id {
            // SELECTING: the client answers an OFFER, ours or another server's.
            let Some(addr) = requested.or(nonzero(msg.ciaddr())) else {
                self.counters.ignored += 1;
                return Outcome::default();
            };
            if sid != link_addr {
                self.table.withdraw_offer(addr, &req.client);
                self.counters.ignored += 1;
                return Outcome::default();
            }
            return if self.acceptable(now, req, addr) {
                self.ack(now, req, addr)
            } else {
                self.nak(req)
            };
        }
        // INIT-REBOOT (option 50) or RENEWING/REBINDING (ciaddr).
        let Some(addr) = requested.or(nonzero(msg.ciaddr())) else {
            self.counters.ignored += 1;
            return Outcome::default();
        };
        if !self.links[req.link].subnet.contains(&addr) {
            return self.nak(req);
        }
        let ours = self.table.get(addr).is_some_and(|l| l.client == req.client);
        if ours && self.acceptable(now, req, addr) {
            return self.ack(now, req, addr);
        }
        let taken = !self.acceptable(now, req, addr);
        let knows_other = self
            .table
            .address_of(req.link, &req.client)
            .is_some_and(|a| a != addr)
            || self.reservation(req).is_some_and(|r| r != addr);
        if taken || knows_other {
            return self.nak(req);
        }
        // RFC 2131 4.3.2: no record of this client: remain silent.
        self.counters.ignored += 1;
        Outcome::default()
    }

    fn ack(&mut self, now: Secs, req: &Request, addr: Ipv4Addr) -> Outcome {
        let link = &self.links[req.link];
        let lease = Lease {
            addr,
            client: req.client.clone(),
            expires: now + link.lease_time.as_secs(),
            state: LeaseState::Bound,
            mac: mac_of(req.msg),
            hostname: hostname_of(req.msg),
        };
        let mut m = reply::header(req.msg, MessageType::Ack, link.address);
        m.set_yiaddr(addr).set_ciaddr(req.msg.ciaddr());
        reply::add_lease_times(&mut m, link.lease_time);
        reply::add_link_options(&mut m, req.msg, link);
        let reply = self.addressed(req, m, addr);
        let persist = self.table.put(req.link, lease);
        self.counters.acks += 1;
        Outcome {
            reply: Some(reply),
            persist: Some(persist),
            notice: None,
        }
    }

    fn nak(&mut self, req: &Request) -> Outcome {
        let link = &self.links[req.link];
        let mut m = reply::header(req.msg, MessageType::Nak, link.address);
        let giaddr = req.msg.giaddr();
        let dest = if giaddr.is_unspecified() {
            Destination::Broadcast
        } else {
            m.set_flags(req.msg.flags().set_broadcast());
            Destination::Relay(giaddr)
        };
        self.counters.naks += 1;
        Outcome {
            reply: Some(Reply {
                link: req.link,
                dest,
                message: m,
            }),
            persist: None,
            notice: None,
        }
    }

    fn release(&mut self, now: Secs, req: &Request) -> Outcome {
        let addr = req.msg.ciaddr();
        match self.table.get(addr) {
            Some(l) if l.client == req.client && l.state == LeaseState::Bound => {
                let lease = Lease {
                    addr,
                    client: req.client.clone(),
                    expires: now,
                    state: LeaseState::Released,
                    mac: l.mac,
                    hostname: l.hostname.clone(),
                };
                self.counters.releases += 1;
                Outcome {
                    reply: None,
                    persist: Some(self.table.put(req.link, lease)),
                    notice: None,
                }
            }
            _ => {
                self.counters.ignored += 1;
                Outcome::default()
            }
        }
    }

    fn decline(&mut self, now: Secs, req: &Request) -> Outcome {
        let Some(addr) = requested_addr(req.msg) else {
            self.counters.ignored += 1;
            return Outcome::default();
        };
        let held = self.table.get(addr).is_some_and(|l| l.client == req.client)
            || self.table.is_offered_to(addr, &req.client, now);
        if !held {
            self.counters.ignored += 1;
            return Outcome::default();
        }
        let lease = Lease {
            addr,
            client: Vec::new(),
            expires: now + self.quarantine,
            state: LeaseState::Declined,
            mac: None,
            hostname: None,
        };
        self.counters.declines += 1;
        Outcome {
            reply: None,
            persist: Some(self.table.put(req.link, lease)),
            notice: None,
        }
    }

    fn inform(&mut self, req: &Request) -> Outcome {
        let link = &self.links[req.link];
        let mut m = reply::header(req.msg, MessageType::Ack, link.address);
        m.set_ciaddr(req.msg.ciaddr());
        reply::add_link_options(&mut m, req.msg, link);
        let giaddr = req.msg.giaddr();
        let dest = if !giaddr.is_unspecified() {
            Destination::Relay(giaddr)
        } else if let Some(c) = nonzero(req.msg.ciaddr()) {
            Destination::Unicast(c)
        } else {
            Destination::Broadcast
        };
        self.counters.informs += 1;
        Outcome {
            reply: Some(Reply {
                link: req.link,
                dest,
                message: m,
            }),
            persist: None,
            notice: None,
        }
    }

    /// Where an OFFER or ACK for `yiaddr` goes (RFC 2131 section 4.1).
    fn addressed(&self, req: &Request, message: Message, yiaddr: Ipv4Addr) -> Reply {
        let msg = req.msg;
        let dest = if !msg.giaddr().is_unspecified() {
            Destination::Relay(msg.giaddr())
        } else if let Some(c) = nonzero(msg.ciaddr()) {
            Destination::Unicast(c)
        } else if msg.flags().broadcast() || msg.htype() != HType::Eth {
            Destination::Broadcast
        } else {
            match <[u8; 6]>::try_from(msg.chaddr()) {
                Ok(chaddr) => Destination::Hardware {
                    addr: yiaddr,
                    chaddr,
                },
                Err(_) => Destination::Broadcast,
            }
        };
        Reply {
            link: req.link,
            dest,
            message,
        }
    }
}

/// Whether the options area is sound enough to hand to dhcproto: every option fits in the
/// packet, and the options whose decoders assume a length (and would assert, or underflow,
/// otherwise) have it. None of those options is one we use; such a packet is dropped.
pub(super) fn options_well_formed(mut opts: &[u8]) -> bool {
    let mut last_code = None;
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            0 => {
                opts = rest;
                continue;
            }
            255 => return true,
            _ => {}
        }
        let Some((&len, rest)) = rest.split_first() else {
            return false;
        };
        let len = usize::from(len);
        if rest.len() < len {
            return false;
        }
        let fixed_ok = match code {
            80 => len == 0,
            81 => len >= 3,
            94 => len == 3,
            151 => len >= 1,
            152..=155 => len == 4,
            _ => true,
        };
        // Repeats of one code are concatenated (RFC 3396), which would defeat the check above.
        let constrained = matches!(code, 80 | 81 | 94 | 151..=155);
        if !fixed_ok || (constrained && last_code == Some(code)) {
            return false;
        }
        last_code = Some(code);
        opts = &rest[len..];
    }
    true
}

/// Option 61 if present and non-empty, else htype + chaddr.
fn client_key(msg: &Message) -> ClientKey {
    match msg.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => {
            let mut k = Vec::with_capacity(id.len() + 1);
            k.push(1);
            k.extend_from_slice(id);
            k
        }
        _ => {
            let mut k = Vec::with_capacity(18);
            k.push(0);
            k.push(u8::from(msg.htype()));
            k.extend_from_slice(msg.chaddr());
            k
        }
    }
}

/// The client's Ethernet address, for display.
fn mac_of(msg: &Message) -> Option<[u8; 6]> {
    if msg.htype() != HType::Eth {
        return None;
    }
    <[u8; 6]>::try_from(msg.chaddr()).ok()
}

/// Option 12, kept for display: printable ASCII only (others become `?`), at most 63 bytes.
fn hostname_of(msg: &Message) -> Option<String> {
    let Some(DhcpOption::Hostname(h)) = msg.opts().get(OptionCode::Hostname) else {
        return None;
    };
    let clean: String = h
        .chars()
        .take(63)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    (!clean.is_empty()).then_some(clean)
}

fn requested_addr(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(a)) => nonzero(*a),
        _ => None,
    }
}

fn nonzero(a: Ipv4Addr) -> Option<Ipv4Addr> {
    (!a.is_unspecified()).then_some(a)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
