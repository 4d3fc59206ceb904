//! The HomeSpot's side: adverts on every link, rate-limited answers to Query, the Noise IK
//! handshake with cookies under load, global addresses from the [`Pool`], and authenticated
//! Switch/Probe/Bye.
//!
//! What may change before a client is authenticated: nothing but bounded, expiring state.
//! An Initiation with a valid `mac1` (and, under load, `mac2`) costs two Diffie-Hellman and
//! leaves a pending handshake (at most [`MAX_PENDING`], gone after [`PENDING_TTL`]). Only a
//! `Confirm` under the new session keys completes it: then the key gets its address (assigned
//! and persisted now, never earlier) and replaces the key's older session, which kept working
//! until that moment.
//!
//! Call order: feed every datagram to [`Responder::handle_datagram`], call
//! [`Responder::handle_timeout`] when [`Responder::poll_timeout`] says, and after each call
//! drain [`Responder::poll_transmit`] and [`Responder::poll_event`]. The caller persists
//! [`Event::Confirmed`], forgets [`Event::Evicted`], and programs host routes for
//! [`Event::Route`] and removes them for [`Event::Released`] and [`Event::Evicted`].
//! Make-before-break: the SwitchAck for a `Route` is sent only when the caller reports the
//! route in place with [`Responder::route_installed`].

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use rand_core::CryptoRng;

use crate::crypto::{Identity, ReplayWindow};
use crate::endpoint::{Dest, Instant, Transmit};
use crate::limiter::{Bucket, Limiter};
use crate::noise::{self, Accepted, Session};
use crate::pool::{Assignment, Pool};
use crate::wire::{
    Advert, Body, CookieReply, DecodeError, LinkInfo, Message, Response, Transport, UnknownSession,
    INIT_MAC1_AT, RESP_MAC1_AT, TAG_LEN,
};

/// At most this many handshakes wait for their Confirm.
pub const MAX_PENDING: usize = 256;
/// A handshake not confirmed within this time is dropped.
pub const PENDING_TTL: Duration = Duration::from_secs(5);
/// Cookies change this often (WireGuard: two minutes).
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(120);

/// How the HomeSpot describes itself, and its limits.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    /// Every LAN link, indexed by `LinkInfo::index`.
    pub links: Vec<LinkInfo>,
    /// The global subnet.
    pub global_subnet: Ipv4Addr,
    /// Its prefix length.
    pub global_prefix: u8,
    /// The HomeSpot's own global address.
    pub global_addr: Ipv4Addr,
    /// Client global addresses are given from this inclusive range.
    pub pool: (Ipv4Addr, Ipv4Addr),
    /// Period of the broadcast adverts.
    pub advert_interval: Duration,
    /// Assignments unused for this long expire (default 30 days).
    pub expiry: Duration,
    /// A session with no authenticated message for this long ends and its route goes.
    pub session_idle: Duration,
    /// Handshakes a second (Diffie-Hellman work) before cookies are demanded.
    pub handshake_rate: u32,
}

impl ResponderConfig {
    /// The defaults for what a config file does not say.
    pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(30 * 86_400);
    /// See [`ResponderConfig::session_idle`].
    pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(180);
    /// See [`ResponderConfig::handshake_rate`].
    pub const DEFAULT_HANDSHAKE_RATE: u32 = 200;
}

/// What the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client completed a handshake: persist its assignment.
    Confirmed {
        /// The client's key.
        client_key: [u8; 32],
        /// Its global address.
        global: Ipv4Addr,
        /// Whether the address is new for this key.
        new: bool,
        /// The assignment as it is now (to persist).
        assignment: Assignment,
    },
    /// Route `global`/32 via `via` on `link` (replace any older route).
    Route {
        /// The client's global address.
        global: Ipv4Addr,
        /// The link index.
        link: u8,
        /// The client's address on that link.
        via: Ipv4Addr,
    },
    /// The session ended (Bye, or idle): remove the route to `global`; persist the
    /// assignment's last use.
    Released {
        /// The client's key.
        client_key: [u8; 32],
        /// Its global address.
        global: Ipv4Addr,
        /// The assignment as it is now, if the key still holds one.
        assignment: Option<Assignment>,
    },
    /// An assignment went (expired, or evicted for a new client): forget it, remove its route.
    Evicted {
        /// The key that held it.
        client_key: [u8; 32],
        /// The address.
        global: Ipv4Addr,
        /// Expired (true) or evicted because the pool was full (false).
        expired: bool,
    },
    /// The pool crossed 90 % use.
    PoolNearlyFull {
        /// Addresses assigned.
        used: usize,
        /// Addresses in the pool.
        size: usize,
    },
}

/// What the responder refused or did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Version-1 messages (refused).
    pub old_version: u64,
    /// Initiations whose `mac1` was wrong (dropped before any Diffie-Hellman).
    pub bad_mac1: u64,
    /// Initiations refused for want of a valid cookie while under load.
    pub cookie_demanded: u64,
    /// Cookie replies sent.
    pub cookie_replies: u64,
    /// Initiations with a valid cookie over their source's rate.
    pub rate_limited: u64,
    /// Initiations the Noise layer refused (wrong key, tampered, not the holder of the key).
    pub bad_handshake: u64,
    /// Initiations whose timestamp was not newer than the key's last (replays).
    pub stale_timestamp: u64,
    /// Transport messages that did not decrypt.
    pub forged: u64,
    /// Transport messages seen before or too old.
    pub replayed: u64,
    /// Transport messages naming no session.
    pub unknown_session: u64,
    /// Completed handshakes refused: the pool is full of active clients.
    pub pool_full: u64,
    /// Assignments evicted for a new client.
    pub evicted: u64,
    /// Assignments expired.
    pub expired: u64,
    /// Switches whose link or address does not match where they came from.
    pub wrong_link: u64,
    /// Queries over their source's rate (no advert sent).
    pub queries_limited: u64,
    /// Messages a HomeSpot does not take.
    pub ignored: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Route switches done.
    pub switches: u64,
}

struct Pending {
    client_key: [u8; 32],
    timestamp: u64,
    peer: u32,
    session: Session,
    created: Instant,
}

struct Live {
    client_key: [u8; 32],
    global: Ipv4Addr,
    peer: u32,
    session: Session,
    rx: ReplayWindow,
    tx: u64,
    heard: Instant,
}

/// The HomeSpot endpoint.
pub struct Responder {
    cfg: ResponderConfig,
    identity: Identity,
    rng: Box<dyn CryptoRng + Send>,
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    cookie_secret: [u8; 32],
    cookie_at: Instant,
    epoch: u64,
    current: Option<Vec<u8>>,
    next_advert: Instant,
    next_chores: Instant,
    pending: BTreeMap<u32, Pending>,
    sessions: BTreeMap<u32, Live>,
    by_key: BTreeMap<[u8; 32], u32>,
    pool: Pool,
    budget: Bucket,
    queries: Limiter,
    cookies: Limiter,
    per_source: Limiter,
    notices: Limiter,
    /// SwitchAcks waiting for their route: global -> (link, client, session).
    pending_acks: BTreeMap<Ipv4Addr, (u8, SocketAddrV4, u32)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Responder {
    /// A responder with `identity`, its randomness (the OS's in the driver, a seeded
    /// generator in tests) and the assignments persisted so far. The first adverts go out at
    /// the first `handle_timeout`.
    pub fn new(
        cfg: ResponderConfig,
        identity: Identity,
        mut rng: impl CryptoRng + Send + 'static,
        assigned: impl IntoIterator<Item = ([u8; 32], Assignment)>,
    ) -> Responder {
        let pool = Pool::new(cfg.pool.0, cfg.pool.1, cfg.global_addr, assigned);
        let pubkey = identity.noise_public();
        let mut cookie_secret = [0u8; 32];
        rng.fill_bytes(&mut cookie_secret);
        let rate = cfg.handshake_rate.max(1);
        Responder {
            mac1_key: noise::mac1_key(&pubkey),
            cookie_key: noise::cookie_key(&pubkey),
            cookie_secret,
            cookie_at: Instant(0),
            rng: Box::new(rng),
            identity,
            epoch: 0,
            current: None,
            next_advert: Instant(0),
            next_chores: Instant(0),
            pending: BTreeMap::new(),
            sessions: BTreeMap::new(),
            by_key: BTreeMap::new(),
            pool,
            budget: Bucket::full(rate, Instant(0)),
            queries: Limiter::new(10, 5, 1000, 1024),
            cookies: Limiter::new(20, 20, 5000, 1024),
            per_source: Limiter::new(20, 5, rate, 1024),
            notices: Limiter::new(5, 5, 100, 1024),
            pending_acks: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            cfg,
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Addresses assigned, and the pool's size.
    pub fn pool_usage(&self) -> (usize, usize) {
        (self.pool.used(), self.pool.size())
    }

    /// Whether `key` holds an address.
    pub fn assignment(&self, key: &[u8; 32]) -> Option<Assignment> {
        self.pool.get(key).copied()
    }

    /// Live sessions, and handshakes waiting for their Confirm.
    pub fn sessions(&self) -> (usize, usize) {
        (self.sessions.len(), self.pending.len())
    }

    fn random32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.rng.fill_bytes(&mut b);
        b
    }

    /// Link `link`'s L2 identity is now `l2_id` (a Bluetooth adapter's address read from the
    /// OS at run time): the next advert, and every answer to a Query after it, carry it.
    pub fn set_l2_id(&mut self, link: u8, l2_id: Vec<u8>) {
        if let Some(l) = self.cfg.links.iter_mut().find(|l| l.index == link) {
            if l.l2_id != l2_id {
                l.l2_id = l2_id;
                self.current = None;
            }
        }
    }

    /// A freshly signed advert.
    fn advert(&mut self) -> Vec<u8> {
        self.epoch += 1;
        let mut a = Advert {
            identity: [0; 32],
            noise_key: [0; 32],
            epoch: self.epoch,
            global_subnet: self.cfg.global_subnet,
            global_prefix: self.cfg.global_prefix,
            global_addr: self.cfg.global_addr,
            caps: 0,
            links: self.cfg.links.clone(),
            signature: [0; 64],
        };
        self.identity.sign_advert(&mut a);
        let bytes = Message::Advert(a).emit();
        self.current = Some(bytes.clone());
        bytes
    }

    /// Sends the periodic adverts when due; drops stale handshakes, idle sessions and
    /// expired assignments; changes the cookie secret.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_advert {
            let bytes = self.advert();
            let links: Vec<u8> = self.cfg.links.iter().map(|l| l.index).collect();
            for link in links {
                self.transmits.push_back(Transmit {
                    link,
                    to: Dest::Broadcast,
                    payload: bytes.clone(),
                });
            }
            self.next_advert = now + self.cfg.advert_interval;
        }
        if now >= self.next_chores {
            self.chores(now);
            self.next_chores = now + Duration::from_secs(1);
        }
    }

    fn chores(&mut self, now: Instant) {
        self.pending
            .retain(|_, p| now.since(p.created) <= PENDING_TTL);
        if now.since(self.cookie_at) >= COOKIE_LIFETIME {
            self.cookie_secret = self.random32();
            self.cookie_at = now;
        }
        let idle: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.since(s.heard) > self.cfg.session_idle)
            .map(|(i, _)| *i)
            .collect();
        for i in idle {
            self.end_session(i);
        }
        let (sessions, by_key) = (&self.sessions, &self.by_key);
        let gone = self.pool.expire(now, self.cfg.expiry, |k| {
            by_key.get(k).and_then(|i| sessions.get(i)).is_some()
        });
        for (client_key, global) in gone {
            self.counters.expired += 1;
            self.events.push_back(Event::Evicted {
                client_key,
                global,
                expired: true,
            });
        }
    }

    fn end_session(&mut self, index: u32) {
        if let Some(s) = self.sessions.remove(&index) {
            if self.by_key.get(&s.client_key) == Some(&index) {
                self.by_key.remove(&s.client_key);
            }
            self.pending_acks.remove(&s.global);
            self.events.push_back(Event::Released {
                client_key: s.client_key,
                global: s.global,
                assignment: self.pool.get(&s.client_key).copied(),
            });
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_advert.min(self.next_chores))
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to act on.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn send(&mut self, link: u8, to: SocketAddrV4, payload: Vec<u8>) {
        self.transmits.push_back(Transmit {
            link,
            to: Dest::Unicast(to),
            payload,
        });
    }

    /// Handles one datagram that arrived on `link` from `from`.
    pub fn handle_datagram(&mut self, now: Instant, link: u8, from: SocketAddrV4, data: &[u8]) {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(DecodeError::OldVersion) => {
                self.counters.old_version += 1;
                return;
            }
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match msg {
            Message::Query(_) => {
                if !self.queries.allow(now, *from.ip()) {
                    self.counters.queries_limited += 1;
                    return;
                }
                let payload = match &self.current {
                    Some(b) => b.clone(),
                    None => self.advert(),
                };
                self.send(link, from, payload);
            }
            Message::Initiation(m) => self.initiation(now, link, from, data, m.sender, &m.noise),
            Message::Transport(t) => self.transport(now, link, from, t),
            Message::Advert(_)
            | Message::Response(_)
            | Message::CookieReply(_)
            | Message::UnknownSession(_) => self.counters.ignored += 1,
        }
    }

    fn cookie_for(&self, from: SocketAddrV4) -> [u8; TAG_LEN] {
        let mut src = [0u8; 6];
        src[..4].copy_from_slice(&from.ip().octets());
        src[4..].copy_from_slice(&from.port().to_be_bytes());
        noise::mac(&self.cookie_secret, &src)
    }

    fn initiation(
        &mut self,
        now: Instant,
        link: u8,
        from: SocketAddrV4,
        data: &[u8],
        sender: u32,
        init_noise: &[u8; crate::wire::INIT_NOISE_LEN],
    ) {
        let mut mac1 = [0u8; TAG_LEN];
        mac1.copy_from_slice(&data[INIT_MAC1_AT..INIT_MAC1_AT + TAG_LEN]);
        if !noise::mac_ok(&self.mac1_key, &data[..INIT_MAC1_AT], &mac1) {
            self.counters.bad_mac1 += 1;
            return;
        }
        let mac2_at = INIT_MAC1_AT + TAG_LEN;
        let mut mac2 = [0u8; TAG_LEN];
        mac2.copy_from_slice(&data[mac2_at..mac2_at + TAG_LEN]);
        let cookie = self.cookie_for(from);
        let rate = self.cfg.handshake_rate.max(1);
        if noise::mac_ok(&cookie, &data[..mac2_at], &mac2) {
            // A proven source address: handshakes it sends are limited per address.
            let _ = self.budget.take(now, rate, rate);
            if !self.per_source.allow(now, *from.ip()) {
                self.counters.rate_limited += 1;
                return;
            }
        } else if !self.budget.take(now, rate, rate) {
            // Under load: no Diffie-Hellman for an address that has not shown it receives.
            self.counters.cookie_demanded += 1;
            if self.cookies.allow(now, *from.ip()) {
                let mut nonce = [0u8; 24];
                self.rng.fill_bytes(&mut nonce);
                let sealed = noise::seal_cookie(&self.cookie_key, &nonce, &cookie, &mac1);
                self.counters.cookie_replies += 1;
                let reply = Message::CookieReply(CookieReply {
                    receiver: sender,
                    nonce,
                    cookie: sealed,
                });
                self.send(link, from, reply.emit());
            }
            return;
        }
        let eph = self.random32();
        let acc = match Accepted::read(
            self.identity.noise_secret(),
            &self.identity.public(),
            eph,
            init_noise,
        ) {
            Ok(a) => a,
            Err(_) => {
                self.counters.bad_handshake += 1;
                return;
            }
        };
        if !self.pool.timestamp_is_new(&acc.client_key, acc.timestamp) {
            self.counters.stale_timestamp += 1;
            return;
        }
        self.pool.record_timestamp(&acc.client_key, acc.timestamp);
        let (client_key, ts) = (acc.client_key, acc.timestamp);
        let (session, resp_noise) = match acc.respond() {
            Ok(x) => x,
            Err(_) => {
                self.counters.bad_handshake += 1;
                return;
            }
        };
        let index = self.fresh_index();
        let mut resp = Response {
            sender: index,
            receiver: sender,
            noise: resp_noise,
            mac1: [0; TAG_LEN],
            mac2: [0; TAG_LEN],
        };
        let bytes = Message::Response(resp).emit();
        resp.mac1 = noise::mac(&noise::mac1_key(&client_key), &bytes[..RESP_MAC1_AT]);
        if self.pending.len() >= MAX_PENDING {
            self.pending
                .retain(|_, p| now.since(p.created) <= PENDING_TTL);
            if self.pending.len() >= MAX_PENDING {
                let oldest = self
                    .pending
                    .iter()
                    .min_by_key(|(_, p)| p.created)
                    .map(|(i, _)| *i);
                if let Some(i) = oldest {
                    self.pending.remove(&i);
                }
            }
        }
        self.pending.insert(
            index,
            Pending {
                client_key,
                timestamp: ts,
                peer: sender,
                session,
                created: now,
            },
        );
        self.send(link, from, Message::Response(resp).emit());
    }

    fn fresh_index(&mut self) -> u32 {
        loop {
            let i = self.rng.next_u32();
            if i != 0 && !self.pending.contains_key(&i) && !self.sessions.contains_key(&i) {
                return i;
            }
        }
    }

    fn transport(&mut self, now: Instant, link: u8, from: SocketAddrV4, t: Transport) {
        if let Some(p) = self.pending.get(&t.receiver) {
            match p.session.open(t.counter, &t.sealed) {
                Ok(Body::Confirm) => {}
                Ok(_) => {
                    self.counters.ignored += 1;
                    return;
                }
                Err(_) => {
                    self.counters.forged += 1;
                    return;
                }
            }
            if let Some(p) = self.pending.remove(&t.receiver) {
                self.complete(now, link, from, t.receiver, t.counter, p);
            }
            return;
        }
        let Some(s) = self.sessions.get_mut(&t.receiver) else {
            self.counters.unknown_session += 1;
            if self.notices.allow(now, *from.ip()) {
                let mut m = UnknownSession {
                    receiver: t.receiver,
                    counter: t.counter,
                    signature: [0; 64],
                };
                self.identity.sign_unknown(&mut m);
                self.send(link, from, Message::UnknownSession(m).emit());
            }
            return;
        };
        let body = match s.session.open(t.counter, &t.sealed) {
            Ok(b) => b,
            Err(_) => {
                self.counters.forged += 1;
                return;
            }
        };
        if !s.rx.accept(t.counter) {
            self.counters.replayed += 1;
            return;
        }
        s.heard = now;
        let (key, global) = (s.client_key, s.global);
        self.pool.touch(&key, now);
        let reply = match body {
            Body::Confirm => Body::Confirmed { global },
            Body::Switch {
                link: target,
                client_addr,
            } => {
                let on_link = self
                    .cfg
                    .links
                    .iter()
                    .find(|l| l.index == target)
                    .is_some_and(|l| same_subnet(l.subnet, l.prefix, client_addr));
                if target != link || client_addr != *from.ip() || !on_link {
                    self.counters.wrong_link += 1;
                    return;
                }
                self.counters.switches += 1;
                self.events.push_back(Event::Route {
                    global,
                    link,
                    via: client_addr,
                });
                // Answered once the route is in place (`route_installed`).
                self.pending_acks.insert(global, (link, from, t.receiver));
                return;
            }
            Body::Probe { link: l } => Body::ProbeAck {
                link: l,
                probe_seq: t.counter,
            },
            Body::Bye => {
                self.end_session(t.receiver);
                return;
            }
            Body::Confirmed { .. } | Body::SwitchAck { .. } | Body::ProbeAck { .. } => {
                self.counters.ignored += 1;
                return;
            }
        };
        self.reply(t.receiver, link, from, reply);
    }

    fn reply(&mut self, index: u32, link: u8, to: SocketAddrV4, body: Body) {
        let Some(s) = self.sessions.get_mut(&index) else {
            return;
        };
        let counter = s.tx;
        s.tx += 1;
        if let Ok(sealed) = s.session.seal(counter, &body) {
            let m = Message::Transport(Transport {
                receiver: s.peer,
                counter,
                sealed,
            });
            self.send(link, to, m.emit());
        }
    }

    /// A Confirm under a pending handshake's keys: the client is who it claimed and holds the
    /// session keys. Only now: an address, a session, the old session replaced.
    fn complete(
        &mut self,
        now: Instant,
        link: u8,
        from: SocketAddrV4,
        index: u32,
        counter: u64,
        p: Pending,
    ) {
        let ts = p.timestamp;
        // A session heard from within `session_idle` is active: its address is never evicted.
        let (sessions, by_key, idle) = (&self.sessions, &self.by_key, self.cfg.session_idle);
        let assigned = self.pool.assign(p.client_key, now, ts, |k| {
            by_key
                .get(k)
                .and_then(|i| sessions.get(i))
                .is_some_and(|s| now.since(s.heard) < idle)
        });
        let a = match assigned {
            Ok(a) => a,
            Err(_) => {
                self.counters.pool_full += 1;
                return;
            }
        };
        if let Some((old_key, old_global)) = a.evicted {
            self.counters.evicted += 1;
            if let Some(i) = self.by_key.get(&old_key).copied() {
                self.sessions.remove(&i);
                self.by_key.remove(&old_key);
            }
            self.pending_acks.remove(&old_global);
            self.events.push_back(Event::Evicted {
                client_key: old_key,
                global: old_global,
                expired: false,
            });
        }
        if let Some(old) = self.by_key.insert(p.client_key, index) {
            self.sessions.remove(&old);
        }
        let mut rx = ReplayWindow::default();
        rx.accept(counter);
        self.sessions.insert(
            index,
            Live {
                client_key: p.client_key,
                global: a.global,
                peer: p.peer,
                session: p.session,
                rx,
                tx: 0,
                heard: now,
            },
        );
        self.counters.handshakes += 1;
        if let Some(assignment) = self.pool.get(&p.client_key).copied() {
            self.events.push_back(Event::Confirmed {
                client_key: p.client_key,
                global: a.global,
                new: a.new,
                assignment,
            });
        }
        if let Some((used, size)) = self.pool.nearly_full() {
            self.events.push_back(Event::PoolNearlyFull { used, size });
        }
        self.reply(index, link, from, Body::Confirmed { global: a.global });
    }

    /// The route of the last [`Event::Route`] for `global` is in place: answer the Switch.
    pub fn route_installed(&mut self, global: Ipv4Addr) {
        let Some((link, to, index)) = self.pending_acks.remove(&global) else {
            return;
        };
        self.reply(index, link, to, Body::SwitchAck { link });
    }
}

fn same_subnet(net: Ipv4Addr, prefix: u8, addr: Ipv4Addr) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(net) & mask == u32::from(addr) & mask
}
