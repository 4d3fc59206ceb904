//! The client's side: discover a HomeSpot (pinning its identity on first use), associate,
//! switch links make-before-break, and watch every link with probes.
//!
//! Links are named by the HomeSpot's link indices from its advert; the caller maps its own
//! interfaces to them (an interface whose address is in a link's subnet is on that link) and
//! says which are up with [`Client::link_up`]. Call order as for the responder: feed
//! datagrams, call `handle_timeout` when `poll_timeout` says, drain transmits and events.

use alloc::collections::{BTreeMap, VecDeque};
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use crate::crypto::{self, ClientKeys, ReplayWindow, SessionKeys};
use crate::endpoint::{Dest, Drbg, Instant, Transmit};
use crate::wire::{Advert, Associate, Message, Query, Sealed, SealedBody};

/// Timers of the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Probe period per link.
    pub probe_interval: Duration,
    /// A link whose probes go unanswered this many times in a row is dead.
    pub probe_misses: u32,
    /// Retransmission period of Associate and Switch.
    pub retry: Duration,
    /// Attempts before an Associate or Switch is given up.
    pub tries: u32,
}

impl Default for ClientConfig {
    /// 50 ms probes, 5 misses: a dead link is found within 250-300 ms.
    fn default() -> ClientConfig {
        ClientConfig {
            probe_interval: Duration::from_millis(50),
            probe_misses: 5,
            retry: Duration::from_millis(50),
            tries: 10,
        }
    }
}

/// What the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A genuine advert from the pinned (or newly pinned) HomeSpot.
    Discovered {
        /// The advert.
        advert: Advert,
    },
    /// An advert signed by another identity than the pinned one: ignored.
    IdentityMismatch {
        /// What it claimed.
        got: [u8; 32],
    },
    /// Associated: put `global` on the loopback interface.
    Associated {
        /// The client's global address.
        global: Ipv4Addr,
        /// The HomeSpot's global address.
        homespot: Ipv4Addr,
    },
    /// The HomeSpot routes to us over `link` now: point our route to the HomeSpot there too.
    SwitchDone {
        /// The link.
        link: u8,
        /// From the first Switch sent to the SwitchAck.
        took: Duration,
    },
    /// No SwitchAck after every try.
    SwitchFailed {
        /// The link.
        link: u8,
    },
    /// Probes on `link` went unanswered `probe_misses` times.
    LinkDead {
        /// The link.
        link: u8,
    },
    /// A dead link answers again.
    LinkAlive {
        /// The link.
        link: u8,
    },
}

/// What the client refused, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientCounters {
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Adverts or acks with bad signatures, sealed messages with bad tags.
    pub forged: u64,
    /// Sealed messages seen before.
    pub replayed: u64,
    /// Adverts from another identity than the pinned one.
    pub wrong_identity: u64,
}

struct LinkState {
    local: Ipv4Addr,
    next_probe: Instant,
    unanswered: u32,
    alive: bool,
}

struct Pending {
    link: u8,
    started: Instant,
    next_try: Instant,
    tries: u32,
    seq: u64,
}

struct Session {
    id: u64,
    keys: SessionKeys,
    global: Ipv4Addr,
    tx_seq: u64,
    rx: ReplayWindow,
}

/// The client endpoint.
pub struct Client {
    cfg: ClientConfig,
    keys: ClientKeys,
    rng: Drbg,
    port: u16,
    pinned: Option<[u8; 32]>,
    advert: Option<Advert>,
    links: BTreeMap<u8, LinkState>,
    assoc: Option<(Pending, [u8; 16])>,
    session: Option<Session>,
    switch: Option<Pending>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
    counters: ClientCounters,
}

impl Client {
    /// A client with its key pair, the identity it pinned before (if any), seeded randomness,
    /// and the HomeSpot's protocol `port`.
    pub fn new(
        cfg: ClientConfig,
        keys: ClientKeys,
        pinned: Option<[u8; 32]>,
        seed: [u8; 32],
        port: u16,
    ) -> Client {
        Client {
            cfg,
            keys,
            rng: Drbg::new(seed),
            port,
            pinned,
            advert: None,
            links: BTreeMap::new(),
            assoc: None,
            session: None,
            switch: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: ClientCounters::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// The pinned identity (to persist).
    pub fn pinned(&self) -> Option<[u8; 32]> {
        self.pinned
    }

    /// Broadcasts a Query on the interface the caller calls `link` (before the advert, the
    /// caller's own number for it).
    pub fn query(&mut self, link: u8) {
        let nonce = self.rng.next_u64();
        self.transmits.push_back(Transmit {
            link,
            to: Dest::Broadcast,
            payload: Message::Query(Query { nonce }).emit(),
        });
    }

    /// Takes an advert another client already verified (a discovery probe's), so this one can
    /// associate at once. Ignored unless it comes from the pinned identity.
    pub fn learn(&mut self, advert: Advert) {
        if self.pinned == Some(advert.identity) {
            self.advert = Some(advert);
        }
    }

    /// Our interface with address `local` is on the HomeSpot's `link`.
    pub fn link_up(&mut self, now: Instant, link: u8, local: Ipv4Addr) {
        self.links.insert(
            link,
            LinkState {
                local,
                next_probe: now,
                unanswered: 0,
                alive: true,
            },
        );
    }

    /// Ends the association over `link`: the HomeSpot removes its route to our global address.
    /// Sent once (a lost Bye leaves the route until the HomeSpot restarts, as before); the
    /// session is gone either way.
    pub fn bye(&mut self, link: u8) {
        if self.session.is_some() {
            self.seal_and_send(link, SealedBody::Bye);
        }
        self.session = None;
        self.switch = None;
    }

    /// Traffic from the HomeSpot arrived on `link` (the caller watches the interface's
    /// counters): as good as an answered probe. A saturated slow link queues probe answers
    /// behind data; counting the data keeps it from being declared dead.
    pub fn heard(&mut self, link: u8) {
        if let Some(l) = self.links.get_mut(&link) {
            l.unanswered = 0;
            if !l.alive {
                l.alive = true;
                self.events.push_back(ClientEvent::LinkAlive { link });
            }
        }
    }

    /// Our interface on `link` is gone.
    pub fn link_down(&mut self, link: u8) {
        self.links.remove(&link);
    }

    fn homespot_on(&self, link: u8) -> Option<SocketAddrV4> {
        let a = self.advert.as_ref()?;
        let l = a.links.iter().find(|l| l.index == link)?;
        Some(SocketAddrV4::new(l.router, self.port))
    }

    /// Starts an association over `link` (retransmitted until answered or given up).
    pub fn associate(&mut self, now: Instant, link: u8) {
        let nonce = self.rng.next16();
        self.assoc = Some((
            Pending {
                link,
                started: now,
                next_try: now,
                tries: 0,
                seq: 0,
            },
            nonce,
        ));
        self.handle_timeout(now);
    }

    /// Asks the HomeSpot, over `link`, to route our global address through `link`
    /// (make-before-break: the old route keeps working until the SwitchAck).
    pub fn switch(&mut self, now: Instant, link: u8) {
        self.switch = Some(Pending {
            link,
            started: now,
            next_try: now,
            tries: 0,
            seq: 0,
        });
        self.handle_timeout(now);
    }

    fn seal_and_send(&mut self, link: u8, body: SealedBody) -> Option<u64> {
        let to = self.homespot_on(link)?;
        let s = self.session.as_mut()?;
        s.tx_seq += 1;
        let seq = s.tx_seq;
        let payload = crypto::sealed_message(s.id, seq, body, &s.keys.to_homespot);
        self.transmits.push_back(Transmit {
            link,
            to: Dest::Unicast(to),
            payload,
        });
        Some(seq)
    }

    /// Retransmissions and probes that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((p, nonce)) = self.assoc.as_mut() {
            if now >= p.next_try {
                if p.tries >= self.cfg.tries {
                    self.assoc = None;
                } else {
                    p.tries += 1;
                    p.next_try = now + self.cfg.retry;
                    let (link, nonce) = (p.link, *nonce);
                    if let Some(to) = self.homespot_on(link) {
                        let payload = Message::Associate(Associate {
                            client_key: self.keys.public(),
                            nonce,
                        })
                        .emit();
                        self.transmits.push_back(Transmit {
                            link,
                            to: Dest::Unicast(to),
                            payload,
                        });
                    }
                }
            }
        }
        if let Some(p) = self.switch.as_ref() {
            if now >= p.next_try {
                let link = p.link;
                if p.tries >= self.cfg.tries {
                    self.switch = None;
                    self.events.push_back(ClientEvent::SwitchFailed { link });
                } else if let Some(addr) = self.links.get(&link).map(|l| l.local) {
                    let global = self.session.as_ref().map(|s| s.global);
                    if let Some(global) = global {
                        let seq = self.seal_and_send(
                            link,
                            SealedBody::Switch {
                                link,
                                global,
                                client_addr: addr,
                            },
                        );
                        if let Some(p) = self.switch.as_mut() {
                            p.tries += 1;
                            p.next_try = now + self.cfg.retry;
                            p.seq = seq.unwrap_or(p.seq);
                        }
                    }
                }
            }
        }
        if self.session.is_none() {
            return;
        }
        let due: alloc::vec::Vec<u8> = self
            .links
            .iter()
            .filter(|(_, l)| now >= l.next_probe)
            .map(|(k, _)| *k)
            .collect();
        for link in due {
            let Some(l) = self.links.get_mut(&link) else {
                continue;
            };
            l.next_probe = now + self.cfg.probe_interval;
            l.unanswered += 1;
            // The probe about to be sent is the `unanswered`-th in a row; the link is dead when
            // `probe_misses` earlier ones went unanswered.
            if l.alive && l.unanswered > self.cfg.probe_misses {
                l.alive = false;
                self.events.push_back(ClientEvent::LinkDead { link });
            }
            self.seal_and_send(link, SealedBody::Probe { link });
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |i: Instant| t = Some(t.map_or(i, |x| x.min(i)));
        if let Some((p, _)) = &self.assoc {
            at(p.next_try);
        }
        if let Some(p) = &self.switch {
            at(p.next_try);
        }
        if self.session.is_some() {
            for l in self.links.values() {
                at(l.next_probe);
            }
        }
        t
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to act on.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Handles one datagram that arrived on `link`.
    pub fn handle_datagram(&mut self, now: Instant, link: u8, data: &[u8]) {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match msg {
            Message::Advert(a) => {
                if !crypto::advert_is_genuine(&a) {
                    self.counters.forged += 1;
                    return;
                }
                match self.pinned {
                    Some(p) if p != a.identity => {
                        self.counters.wrong_identity += 1;
                        self.events
                            .push_back(ClientEvent::IdentityMismatch { got: a.identity });
                        return;
                    }
                    Some(_) => {}
                    None => self.pinned = Some(a.identity),
                }
                let newer = self
                    .advert
                    .as_ref()
                    .is_none_or(|old| a.epoch >= old.epoch || old.identity != a.identity);
                if newer {
                    self.advert = Some(a.clone());
                    self.events.push_back(ClientEvent::Discovered { advert: a });
                }
            }
            Message::AssociateAck(ack) => {
                let (Some(pin), Some((_, nonce))) = (self.pinned, self.assoc.as_ref()) else {
                    return;
                };
                if ack.client_key != self.keys.public()
                    || !crypto::ack_is_genuine(&ack, &pin, nonce)
                {
                    self.counters.forged += 1;
                    return;
                }
                let keys = self.keys.session(&ack, nonce);
                self.assoc = None;
                self.session = Some(Session {
                    id: ack.session,
                    keys,
                    global: ack.global_addr,
                    tx_seq: 0,
                    rx: ReplayWindow::default(),
                });
                let homespot = self
                    .advert
                    .as_ref()
                    .map(|a| a.global_addr)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                self.events.push_back(ClientEvent::Associated {
                    global: ack.global_addr,
                    homespot,
                });
            }
            Message::Sealed(m) => self.sealed(now, link, m),
            Message::Query(_) | Message::Associate(_) => {}
        }
    }

    fn sealed(&mut self, now: Instant, link: u8, m: Sealed) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if m.session != s.id || !crypto::tag_is_valid(&m, &s.keys.to_client) {
            self.counters.forged += 1;
            return;
        }
        if !s.rx.accept(m.seq) {
            self.counters.replayed += 1;
            return;
        }
        match m.body {
            SealedBody::SwitchAck { link: l } => {
                if let Some(p) = self.switch.as_ref().filter(|p| p.link == l) {
                    let took = now.since(p.started);
                    self.switch = None;
                    self.events
                        .push_back(ClientEvent::SwitchDone { link: l, took });
                }
            }
            SealedBody::ProbeAck { link: l, .. } => {
                if let Some(st) = self.links.get_mut(&l) {
                    st.unanswered = 0;
                    if !st.alive {
                        st.alive = true;
                        self.events.push_back(ClientEvent::LinkAlive { link: l });
                    }
                }
                let _ = link;
            }
            _ => {}
        }
    }
}
