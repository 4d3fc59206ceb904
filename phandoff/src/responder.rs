//! The HomeSpot's side: adverts on every link, answers to Query, associations with stable
//! global addresses, and authenticated Switch/Probe/Bye.
//!
//! Call order: feed every datagram to [`Responder::handle_datagram`], call
//! [`Responder::handle_timeout`] when [`Responder::poll_timeout`] says, and after each call
//! drain [`Responder::poll_transmit`] and [`Responder::poll_event`]. The caller persists
//! [`Event::Assigned`] and programs host routes for [`Event::Route`] and [`Event::Released`].
//! Make-before-break: the SwitchAck for a `Route` is sent only when the caller reports the
//! route in place with [`Responder::route_installed`]; only then does the client move its own.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use crate::crypto::{self, Ephemeral, Identity, ReplayWindow, SessionKeys};
use crate::endpoint::{Dest, Drbg, Instant, Transmit};
use crate::wire::{Advert, AssociateAck, LinkInfo, Message, Sealed, SealedBody};

/// How the HomeSpot describes itself.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    /// Every LAN link, indexed by `LinkInfo::index`.
    pub links: Vec<LinkInfo>,
    /// The global subnet and prefix.
    pub global_subnet: Ipv4Addr,
    /// Its prefix length.
    pub global_prefix: u8,
    /// The HomeSpot's own global address.
    pub global_addr: Ipv4Addr,
    /// Client global addresses are given from this inclusive range.
    pub pool: (Ipv4Addr, Ipv4Addr),
    /// Period of the broadcast adverts.
    pub advert_interval: Duration,
}

/// What the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client key got a global address for the first time: persist the pair.
    Assigned {
        /// The client's key.
        client_key: [u8; 32],
        /// Its address from now on.
        global: Ipv4Addr,
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
    /// The client left: remove the route to `global`.
    Released {
        /// Its global address.
        global: Ipv4Addr,
    },
}

/// What the responder refused or did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Sealed messages whose tag was wrong.
    pub forged: u64,
    /// Sealed messages seen before or too old.
    pub replayed: u64,
    /// Sealed messages naming no session.
    pub unknown_session: u64,
    /// Switches for a global address that is not the session's.
    pub foreign_global: u64,
    /// Switches whose link or address does not match where they came from.
    pub wrong_link: u64,
    /// Associations refused: the pool is full.
    pub pool_full: u64,
    /// Messages a HomeSpot does not take (adverts, acks).
    pub ignored: u64,
    /// Route switches done.
    pub switches: u64,
}

struct Session {
    client_key: [u8; 32],
    global: Ipv4Addr,
    keys: SessionKeys,
    rx: ReplayWindow,
    tx_seq: u64,
}

/// The HomeSpot endpoint.
pub struct Responder {
    cfg: ResponderConfig,
    identity: Identity,
    rng: Drbg,
    epoch: u64,
    /// The last signed advert: answers Queries without signing again.
    current: Option<Vec<u8>>,
    next_advert: Instant,
    sessions: BTreeMap<u64, Session>,
    assigned: BTreeMap<[u8; 32], Ipv4Addr>,
    /// SwitchAcks waiting for their route: global -> (link, client, session).
    pending_acks: BTreeMap<Ipv4Addr, (u8, SocketAddrV4, u64)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Responder {
    /// A responder with `identity`, seeded randomness, and the assignments persisted so far.
    /// The first adverts go out at the first `handle_timeout`.
    pub fn new(
        cfg: ResponderConfig,
        identity: Identity,
        seed: [u8; 32],
        assigned: impl IntoIterator<Item = ([u8; 32], Ipv4Addr)>,
    ) -> Responder {
        Responder {
            cfg,
            identity,
            rng: Drbg::new(seed),
            epoch: 0,
            current: None,
            next_advert: Instant(0),
            sessions: BTreeMap::new(),
            assigned: assigned.into_iter().collect(),
            pending_acks: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A freshly signed advert.
    fn advert(&mut self) -> Vec<u8> {
        self.epoch += 1;
        let mut a = Advert {
            identity: [0; 32],
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

    /// Sends the periodic adverts when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_advert {
            return;
        }
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

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_advert)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to act on.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Handles one datagram that arrived on `link` from `from`.
    pub fn handle_datagram(&mut self, _now: Instant, link: u8, from: SocketAddrV4, data: &[u8]) {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match msg {
            Message::Query(_) => {
                let payload = match &self.current {
                    Some(b) => b.clone(),
                    None => self.advert(),
                };
                self.transmits.push_back(Transmit {
                    link,
                    to: Dest::Unicast(from),
                    payload,
                });
            }
            Message::Associate(a) => self.associate(link, from, a.client_key, a.nonce),
            Message::Sealed(s) => self.sealed(link, from, s),
            Message::Advert(_) | Message::AssociateAck(_) => self.counters.ignored += 1,
        }
    }

    fn global_for(&mut self, client_key: [u8; 32]) -> Option<Ipv4Addr> {
        if let Some(g) = self.assigned.get(&client_key) {
            return Some(*g);
        }
        let used: alloc::collections::BTreeSet<Ipv4Addr> =
            self.assigned.values().copied().collect();
        let (first, last) = (u32::from(self.cfg.pool.0), u32::from(self.cfg.pool.1));
        let g = (first..=last)
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a) && *a != self.cfg.global_addr)?;
        self.assigned.insert(client_key, g);
        self.events.push_back(Event::Assigned {
            client_key,
            global: g,
        });
        Some(g)
    }

    fn associate(
        &mut self,
        link: u8,
        from: SocketAddrV4,
        client_key: [u8; 32],
        client_nonce: [u8; 16],
    ) {
        let Some(global) = self.global_for(client_key) else {
            self.counters.pool_full += 1;
            return;
        };
        // One session per client key: a new association replaces the old one.
        self.sessions.retain(|_, s| s.client_key != client_key);
        let eph = Ephemeral::from_random(self.rng.next32());
        let session = self.rng.next_u64();
        let mut ack = AssociateAck {
            session,
            client_key,
            global_addr: global,
            ephemeral: eph.public(),
            nonce: self.rng.next16(),
            signature: [0; 64],
        };
        self.identity.sign_ack(&mut ack, &client_nonce);
        let keys = eph.session(&client_key, &client_nonce, &ack.nonce);
        self.sessions.insert(
            session,
            Session {
                client_key,
                global,
                keys,
                rx: ReplayWindow::default(),
                tx_seq: 0,
            },
        );
        self.transmits.push_back(Transmit {
            link,
            to: Dest::Unicast(from),
            payload: Message::AssociateAck(ack).emit(),
        });
    }

    /// The route of the last [`Event::Route`] for `global` is in place: answer the Switch.
    pub fn route_installed(&mut self, global: Ipv4Addr) {
        let Some((link, to, session)) = self.pending_acks.remove(&global) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.tx_seq += 1;
        let payload = crypto::sealed_message(
            session,
            s.tx_seq,
            SealedBody::SwitchAck { link },
            &s.keys.to_client,
        );
        self.transmits.push_back(Transmit {
            link,
            to: Dest::Unicast(to),
            payload,
        });
    }

    fn sealed(&mut self, link: u8, from: SocketAddrV4, m: Sealed) {
        let Some(s) = self.sessions.get_mut(&m.session) else {
            self.counters.unknown_session += 1;
            return;
        };
        if !crypto::tag_is_valid(&m, &s.keys.to_homespot) {
            self.counters.forged += 1;
            return;
        }
        if !s.rx.accept(m.seq) {
            self.counters.replayed += 1;
            return;
        }
        let reply = match m.body {
            SealedBody::Switch {
                link: target,
                global,
                client_addr,
            } => {
                if global != s.global {
                    self.counters.foreign_global += 1;
                    return;
                }
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
                self.pending_acks.insert(global, (link, from, m.session));
                return;
            }
            SealedBody::Probe { link: l } => SealedBody::ProbeAck {
                link: l,
                probe_seq: m.seq,
            },
            SealedBody::Bye => {
                let global = s.global;
                self.sessions.remove(&m.session);
                self.events.push_back(Event::Released { global });
                return;
            }
            SealedBody::SwitchAck { .. } | SealedBody::ProbeAck { .. } => {
                self.counters.ignored += 1;
                return;
            }
        };
        s.tx_seq += 1;
        let payload = crypto::sealed_message(m.session, s.tx_seq, reply, &s.keys.to_client);
        self.transmits.push_back(Transmit {
            link,
            to: Dest::Unicast(from),
            payload,
        });
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
