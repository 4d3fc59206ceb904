//! The client's side: take a HomeSpot's verified advert, run the Noise IK handshake (with
//! cookies when the HomeSpot is under load), switch links make-before-break, watch every link
//! with probes, and re-handshake at once when the HomeSpot says it no longer knows the session
//! (it restarted or evicted it), keeping the global address.
//!
//! Links are named by the HomeSpot's link indices from its advert; the caller maps its own
//! interfaces to them and says which are up with [`Client::link_up`]. Which identity to trust
//! on which network is the caller's decision (the agent pins identities per network); this
//! core only takes adverts genuinely signed by the identity it was given. Call order as for
//! the responder: feed datagrams, call `handle_timeout` when `poll_timeout` says, drain
//! transmits and events.
//!
//! Time: `now` doubles as the handshake timestamp, which must grow across restarts of the
//! client; the driver's clock counts microseconds since the Unix epoch for that reason.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use rand_core::CryptoRng;

use crate::crypto::{self, ClientKeys, ReplayWindow};
use crate::endpoint::{Dest, Instant, Transmit};
use crate::noise::{self, Initiator, Session};
use crate::wire::{
    Advert, Body, CookieReply, DecodeError, Initiation, Message, Query, Response, Transport,
    UnknownSession, INIT_MAC1_AT, RESP_MAC1_AT, TAG_LEN,
};

/// Timers of the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Probe period per link.
    pub probe_interval: Duration,
    /// A link whose probes go unanswered this many times in a row is dead.
    pub probe_misses: u32,
    /// A link probed faster than `probe_interval` (the one carrying traffic) that has been
    /// silent for this many of its periods plus one more if traffic was flowing on it, else
    /// plus twice its recent probe round trip (a slow radio's answers come late) is checked against
    /// the others: each other live link is probed at once, and if one answers and this one
    /// stays silent for a grace (half its period, twice the check's round trip, at least
    /// 20 ms), this one is dead without waiting for `probe_misses` (the HomeSpot is up
    /// and reachable, so the silence is this radio's). When every link is silent (the HomeSpot
    /// restarting or overloaded) nothing is decided before `probe_misses`. 0: never.
    pub suspect_misses: u32,
    /// Retransmission period of the handshake, Confirm and Switch.
    pub retry: Duration,
    /// Attempts before a handshake or Switch is given up.
    pub tries: u32,
}

impl Default for ClientConfig {
    /// 50 ms probes, 5 misses: a dead link is found within 250-300 ms.
    fn default() -> ClientConfig {
        ClientConfig {
            probe_interval: Duration::from_millis(50),
            probe_misses: 5,
            suspect_misses: 0,
            retry: Duration::from_millis(50),
            tries: 10,
        }
    }
}

/// What the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A genuine advert from the HomeSpot we were given.
    Discovered {
        /// The advert.
        advert: Advert,
    },
    /// An advert signed by another identity: ignored.
    IdentityMismatch {
        /// What it claimed.
        got: [u8; 32],
    },
    /// The handshake completed and the HomeSpot holds our address: put `global` on the
    /// loopback interface.
    Associated {
        /// The client's global address.
        global: Ipv4Addr,
        /// The HomeSpot's global address.
        homespot: Ipv4Addr,
        /// A session existed before (a re-handshake): the caller re-asserts its route with a
        /// Switch on the current link.
        renewed: bool,
        /// From the first Initiation to the Confirmed.
        took: Duration,
    },
    /// The handshake was given up after every try.
    AssociateFailed,
    /// The HomeSpot (signed notice) no longer knows our session: re-handshaking over `link`.
    SessionLost {
        /// The link the notice came on.
        link: u8,
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
    /// The HomeSpot answered on `link` for the first time since the link came up (a
    /// ProbeAck, a SwitchAck or a signed UnknownSession notice about our session): the
    /// network behind it is the HomeSpot's. Traffic
    /// seen on the interface ([`Client::heard`]) does not count.
    LinkConfirmed {
        /// The link.
        link: u8,
    },
}

/// What the client refused or saw, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientCounters {
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Adverts with bad signatures, handshake or transport messages that did not verify.
    pub forged: u64,
    /// Transport messages seen before.
    pub replayed: u64,
    /// Adverts from another identity than ours.
    pub wrong_identity: u64,
    /// Cookies received (the HomeSpot was under load).
    pub cookies: u64,
    /// Genuine UnknownSession notices (the HomeSpot forgot the session).
    pub unknown_session: u64,
}

struct LinkState {
    local: Ipv4Addr,
    /// This link's probe period, if not the configured one.
    every: Option<Duration>,
    next_probe: Instant,
    unanswered: u32,
    alive: bool,
    /// Silent since: the last answer or traffic heard on the link, or the last change of its
    /// period (silence is judged at the new period from then on).
    quiet_since: Instant,
    /// Last traffic heard on the link (see [`Client::heard`]).
    data_at: Option<Instant>,
    /// Recent probes (counter, sent), for round-trip samples.
    sent: VecDeque<(u64, Instant)>,
    /// Recent round trip: the largest sample, decaying by 1/8 per sample.
    rtt: Duration,
    /// Checked against the other links since it was last heard (or not to be checked before
    /// it is heard again).
    checked: bool,
    /// The HomeSpot has answered on it since it came up ([`ClientEvent::LinkConfirmed`]).
    confirmed: bool,
}

/// Probes per link remembered for round-trip samples.
const RTT_PROBES: usize = 8;

/// The least time a silent link checked against the others has to answer after they did.
/// Shorter, a busy Wi-Fi link whose answers were held up for a moment (a rate-limited HTTPS
/// download on a loaded machine) was declared dead about one run in two, its answer 1.3 ms
/// late; with this floor, none in eight.
const CHECK_GRACE: Duration = Duration::from_millis(20);

/// A silent link checked against the others: the probes sent on them for it, and once one
/// answered, when the suspect is dead if it is still silent then.
struct Contrast {
    suspect: u8,
    sent: Instant,
    probes: alloc::vec::Vec<(u8, u64)>,
    dead_at: Option<Instant>,
}

struct Pending {
    link: u8,
    started: Instant,
    next_try: Instant,
    tries: u32,
}

/// A handshake in flight: the Initiation sent last, or the Confirm awaiting its answer.
struct Handshake {
    p: Pending,
    sender: u32,
    init: Option<Initiator>,
    mac1: [u8; TAG_LEN],
    /// After the Response: the new session, not yet confirmed by the HomeSpot.
    confirming: Option<Live>,
}

struct Live {
    session: Session,
    /// The HomeSpot's index for the session.
    remote: u32,
    /// Ours.
    local: u32,
    global: Ipv4Addr,
    tx: u64,
    rx: ReplayWindow,
}

/// The client endpoint.
pub struct Client {
    cfg: ClientConfig,
    keys: ClientKeys,
    rng: Box<dyn CryptoRng + Send>,
    port: u16,
    pinned: Option<[u8; 32]>,
    advert: Option<Advert>,
    links: BTreeMap<u8, LinkState>,
    handshake: Option<Handshake>,
    session: Option<Live>,
    cookie: Option<([u8; TAG_LEN], Instant)>,
    last_timestamp: u64,
    switch: Option<Pending>,
    contrast: Option<Contrast>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
    counters: ClientCounters,
}

impl Client {
    /// A client with its key pair, the identity it trusts here (if decided), its randomness,
    /// and the HomeSpot's protocol `port`.
    pub fn new(
        cfg: ClientConfig,
        keys: ClientKeys,
        pinned: Option<[u8; 32]>,
        rng: impl CryptoRng + Send + 'static,
        port: u16,
    ) -> Client {
        Client {
            cfg,
            keys,
            rng: Box::new(rng),
            port,
            pinned,
            advert: None,
            links: BTreeMap::new(),
            handshake: None,
            session: None,
            cookie: None,
            last_timestamp: 0,
            switch: None,
            contrast: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: ClientCounters::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// The identity this client takes adverts from.
    pub fn pinned(&self) -> Option<[u8; 32]> {
        self.pinned
    }

    /// Our global address, once associated.
    pub fn global(&self) -> Option<Ipv4Addr> {
        self.session.as_ref().map(|s| s.global)
    }

    /// Broadcasts a Query on the interface the caller calls `link`.
    pub fn query(&mut self, link: u8) {
        let nonce = self.rng.next_u64();
        self.transmits.push_back(Transmit {
            link,
            to: Dest::Broadcast,
            payload: Message::Query(Query { nonce }).emit(),
        });
    }

    /// Takes an advert the caller already verified and decided to trust. Ignored unless it is
    /// genuine and from the identity this client was given (or, with none, pins it).
    pub fn learn(&mut self, advert: Advert) {
        if !crypto::advert_is_genuine(&advert) {
            return;
        }
        if self.pinned.is_none() {
            self.pinned = Some(advert.identity);
        }
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
                every: None,
                next_probe: now,
                unanswered: 0,
                alive: true,
                quiet_since: now,
                data_at: None,
                sent: VecDeque::new(),
                rtt: Duration::ZERO,
                checked: false,
                confirmed: false,
            },
        );
    }

    /// Probes `link` every `every` from now on (the link carrying the traffic often, the others
    /// seldom: a dead link is found within `probe_misses` periods of its own).
    pub fn set_probe_interval(&mut self, now: Instant, link: u8, every: Duration) {
        if let Some(l) = self.links.get_mut(&link) {
            if l.every != Some(every) {
                l.every = Some(every);
                l.quiet_since = now;
                // Not checked before an answer at the new period: a link that just began to
                // carry a download answers late (behind its queue), and its round trip so far
                // was measured idle.
                l.checked = true;
                l.next_probe = l.next_probe.min(now + every);
            }
        }
    }

    /// Ends the association over `link`: the HomeSpot removes its route to our global address.
    pub fn bye(&mut self, link: u8) {
        if self.session.is_some() {
            self.seal_and_send(link, Body::Bye);
        }
        self.session = None;
        self.switch = None;
        self.contrast = None;
        self.handshake = None;
    }

    /// Traffic from the HomeSpot arrived on `link` (the caller watches the interface's
    /// counters): as good as an answered probe.
    pub fn heard(&mut self, now: Instant, link: u8) {
        if let Some(l) = self.links.get_mut(&link) {
            l.unanswered = 0;
            l.quiet_since = now;
            l.data_at = Some(now);
            l.checked = false;
            if !l.alive {
                l.alive = true;
                self.events.push_back(ClientEvent::LinkAlive { link });
            }
            self.end_contrast_of(link);
        }
    }

    /// The HomeSpot answered on `link`: the first time since it came up, an event.
    fn confirm(&mut self, link: u8) {
        if let Some(st) = self.links.get_mut(&link).filter(|st| !st.confirmed) {
            st.confirmed = true;
            self.events.push_back(ClientEvent::LinkConfirmed { link });
        }
    }

    /// Our interface on `link` is gone.
    pub fn link_down(&mut self, link: u8) {
        self.links.remove(&link);
        self.end_contrast_of(link);
    }

    fn homespot_on(&self, link: u8) -> Option<SocketAddrV4> {
        let a = self.advert.as_ref()?;
        let l = a.links.iter().find(|l| l.index == link)?;
        Some(SocketAddrV4::new(l.router, self.port))
    }

    /// Starts a handshake over `link` (retransmitted until answered or given up). A session
    /// we hold keeps working until the new one is confirmed.
    pub fn associate(&mut self, now: Instant, link: u8) {
        self.handshake = Some(Handshake {
            p: Pending {
                link,
                started: now,
                next_try: now,
                tries: 0,
            },
            sender: 0,
            init: None,
            mac1: [0; TAG_LEN],
            confirming: None,
        });
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
        });
        self.handle_timeout(now);
    }

    fn seal_and_send(&mut self, link: u8, body: Body) -> Option<u64> {
        let to = self.homespot_on(link)?;
        let s = self.session.as_mut()?;
        let counter = s.tx;
        s.tx += 1;
        let sealed = s.session.seal(counter, &body).ok()?;
        let m = Message::Transport(Transport {
            receiver: s.remote,
            counter,
            sealed,
        });
        self.transmits.push_back(Transmit {
            link,
            to: Dest::Unicast(to),
            payload: m.emit(),
        });
        Some(counter)
    }

    /// A fresh Initiation (new ephemeral key, new index, a newer timestamp).
    fn send_initiation(&mut self, now: Instant, link: u8) {
        let (Some(to), Some(a)) = (self.homespot_on(link), self.advert.as_ref()) else {
            return;
        };
        let (remote, identity) = (a.noise_key, a.identity);
        let ts = now.0.max(self.last_timestamp + 1);
        self.last_timestamp = ts;
        let mut eph = [0u8; 32];
        self.rng.fill_bytes(&mut eph);
        let sender = self.rng.next_u32();
        let Ok((init, noise_part)) =
            Initiator::start(self.keys.secret(), &remote, &identity, eph, ts)
        else {
            return;
        };
        let mut m = Initiation {
            sender,
            noise: noise_part,
            mac1: [0; TAG_LEN],
            mac2: [0; TAG_LEN],
        };
        let bytes = Message::Initiation(m).emit();
        m.mac1 = noise::mac(&noise::mac1_key(&remote), &bytes[..INIT_MAC1_AT]);
        let fresh = self
            .cookie
            .filter(|(_, at)| now.since(*at) < crate::responder::COOKIE_LIFETIME);
        if let Some((cookie, _)) = fresh {
            let bytes = Message::Initiation(m).emit();
            m.mac2 = noise::mac(&cookie, &bytes[..INIT_MAC1_AT + TAG_LEN]);
        }
        if let Some(h) = self.handshake.as_mut() {
            h.sender = sender;
            h.init = Some(init);
            h.mac1 = m.mac1;
            h.confirming = None;
        }
        self.transmits.push_back(Transmit {
            link,
            to: Dest::Unicast(to),
            payload: Message::Initiation(m).emit(),
        });
    }

    fn send_confirm(&mut self) {
        let Some(h) = self.handshake.as_mut() else {
            return;
        };
        let link = h.p.link;
        let Some(c) = h.confirming.as_mut() else {
            return;
        };
        let counter = c.tx;
        c.tx += 1;
        let Ok(sealed) = c.session.seal(counter, &Body::Confirm) else {
            return;
        };
        let m = Message::Transport(Transport {
            receiver: c.remote,
            counter,
            sealed,
        });
        if let Some(to) = self.homespot_on(link) {
            self.transmits.push_back(Transmit {
                link,
                to: Dest::Unicast(to),
                payload: m.emit(),
            });
        }
    }

    /// Retransmissions and probes that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(h) = self.handshake.as_mut() {
            if now >= h.p.next_try {
                if h.p.tries >= self.cfg.tries {
                    self.handshake = None;
                    self.events.push_back(ClientEvent::AssociateFailed);
                } else {
                    h.p.tries += 1;
                    h.p.next_try = now + self.cfg.retry;
                    let link = h.p.link;
                    if h.confirming.is_some() {
                        self.send_confirm();
                    } else {
                        self.send_initiation(now, link);
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
                    if self.session.is_some() {
                        self.seal_and_send(
                            link,
                            Body::Switch {
                                link,
                                client_addr: addr,
                            },
                        );
                        if let Some(p) = self.switch.as_mut() {
                            p.tries += 1;
                            p.next_try = now + self.cfg.retry;
                        }
                    }
                }
            }
        }
        if self.session.is_none() {
            return;
        }
        if let Some(c) = self.contrast.as_ref() {
            if c.dead_at.is_some_and(|at| now >= at) {
                let suspect = c.suspect;
                self.contrast = None;
                if self
                    .links
                    .get(&suspect)
                    .is_some_and(|s| s.alive && s.unanswered > 0)
                {
                    self.dead(suspect);
                }
            }
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
            let every = l.every.unwrap_or(self.cfg.probe_interval);
            l.next_probe = now + every;
            l.unanswered += 1;
            let fast = every < self.cfg.probe_interval;
            // Traffic was flowing when the link went quiet: its own silence is the sign (a full
            // queue delays the answers to probes, not the traffic). Else the answers are
            // awaited for twice their recent round trip.
            let flowing = l.data_at.is_some_and(|d| d + every * 2 >= l.quiet_since);
            let quiet = if flowing {
                every * (self.cfg.suspect_misses + 1)
            } else {
                every * self.cfg.suspect_misses + l.rtt * 2
            };
            let suspect = fast
                && self.cfg.suspect_misses > 0
                && !l.checked
                && now.since(l.quiet_since) >= quiet;
            // The probe about to be sent is the `unanswered`-th in a row; the link is dead when
            // `probe_misses` earlier ones went unanswered.
            if l.alive && l.unanswered > self.cfg.probe_misses {
                self.dead(link);
            } else if l.alive && suspect && self.contrast.is_none() {
                l.checked = true;
                self.contrast_with_others(now, link);
            }
            if let Some(counter) = self.seal_and_send(link, Body::Probe { link }) {
                if let Some(l) = self.links.get_mut(&link) {
                    if l.sent.len() >= RTT_PROBES {
                        l.sent.pop_front();
                    }
                    l.sent.push_back((counter, now));
                }
            }
        }
    }

    /// `link` is dead: an event, and a Switch towards it fails now.
    fn dead(&mut self, link: u8) {
        if let Some(l) = self.links.get_mut(&link) {
            l.alive = false;
        }
        self.end_contrast_of(link);
        // A Switch over a dead link cannot be answered: it fails now, not after its last
        // retry, so the caller can move elsewhere at once.
        if self.switch.as_ref().is_some_and(|p| p.link == link) {
            self.switch = None;
            self.events.push_back(ClientEvent::SwitchFailed { link });
        }
        self.events.push_back(ClientEvent::LinkDead { link });
    }

    /// `suspect` went silent: every other live link is probed now (see
    /// [`ClientConfig::suspect_misses`]).
    /// A check of `link` against the others, if one runs, is over (the link answered, went
    /// down or was declared dead).
    fn end_contrast_of(&mut self, link: u8) {
        if self.contrast.as_ref().is_some_and(|c| c.suspect == link) {
            self.contrast = None;
        }
    }

    fn contrast_with_others(&mut self, now: Instant, suspect: u8) {
        let others: alloc::vec::Vec<u8> = self
            .links
            .iter()
            .filter(|(k, l)| **k != suspect && l.alive)
            .map(|(k, _)| *k)
            .collect();
        let mut probes = alloc::vec::Vec::new();
        for other in others {
            if let Some(counter) = self.seal_and_send(other, Body::Probe { link: other }) {
                probes.push((other, counter));
            }
        }
        if !probes.is_empty() {
            self.contrast = Some(Contrast {
                suspect,
                sent: now,
                probes,
                dead_at: None,
            });
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |i: Instant| t = Some(t.map_or(i, |x| x.min(i)));
        if let Some(h) = &self.handshake {
            at(h.p.next_try);
        }
        if let Some(p) = &self.switch {
            at(p.next_try);
        }
        if self.session.is_some() {
            for l in self.links.values() {
                at(l.next_probe);
            }
            if let Some(d) = self.contrast.as_ref().and_then(|c| c.dead_at) {
                at(d);
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
            Err(DecodeError::OldVersion) | Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match msg {
            Message::Advert(a) => self.on_advert(a),
            Message::Response(r) => self.on_response(now, data, r),
            Message::CookieReply(c) => self.on_cookie(now, c),
            Message::Transport(t) => self.on_transport(now, t),
            Message::UnknownSession(u) => self.on_unknown(now, link, u),
            Message::Query(_) | Message::Initiation(_) => {}
        }
    }

    fn on_advert(&mut self, a: Advert) {
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
            .is_none_or(|old| a.epoch >= old.epoch || old.noise_key != a.noise_key);
        if newer {
            self.advert = Some(a.clone());
            self.events.push_back(ClientEvent::Discovered { advert: a });
        }
    }

    fn on_response(&mut self, now: Instant, data: &[u8], r: Response) {
        let Some(h) = self.handshake.as_mut() else {
            return;
        };
        if h.sender != r.receiver || h.init.is_none() {
            return;
        }
        let key = noise::mac1_key(&self.keys.public());
        if !noise::mac_ok(&key, &data[..RESP_MAC1_AT], &r.mac1) {
            self.counters.forged += 1;
            return;
        }
        let Some(init) = h.init.take() else { return };
        let session = match init.finish(&r.noise) {
            Ok(s) => s,
            Err(_) => {
                self.counters.forged += 1;
                return;
            }
        };
        h.confirming = Some(Live {
            session,
            remote: r.sender,
            local: r.receiver,
            global: Ipv4Addr::UNSPECIFIED,
            tx: 0,
            rx: ReplayWindow::default(),
        });
        h.p.tries = 1;
        h.p.next_try = now + self.cfg.retry;
        self.send_confirm();
    }

    fn on_cookie(&mut self, now: Instant, c: CookieReply) {
        let (Some(h), Some(a)) = (self.handshake.as_mut(), self.advert.as_ref()) else {
            return;
        };
        if h.sender != c.receiver {
            return;
        }
        let key = noise::cookie_key(&a.noise_key);
        match noise::open_cookie(&key, &c.nonce, &c.cookie, &h.mac1) {
            Some(cookie) => {
                self.counters.cookies += 1;
                self.cookie = Some((cookie, now));
                // Try again at once, with the cookie.
                h.p.next_try = now;
                self.handle_timeout(now);
            }
            None => self.counters.forged += 1,
        }
    }

    fn on_transport(&mut self, now: Instant, t: Transport) {
        let confirming = self
            .handshake
            .as_ref()
            .and_then(|h| h.confirming.as_ref())
            .is_some_and(|c| c.local == t.receiver);
        if confirming {
            let Some(mut h) = self.handshake.take() else {
                return;
            };
            let Some(mut c) = h.confirming.take() else {
                return;
            };
            match c.session.open(t.counter, &t.sealed) {
                Ok(Body::Confirmed { global }) if c.rx.accept(t.counter) => {
                    c.global = global;
                    let renewed = self.session.is_some();
                    self.session = Some(c);
                    self.contrast = None;
                    let homespot = self
                        .advert
                        .as_ref()
                        .map(|a| a.global_addr)
                        .unwrap_or(Ipv4Addr::UNSPECIFIED);
                    for l in self.links.values_mut() {
                        l.next_probe = now;
                    }
                    self.events.push_back(ClientEvent::Associated {
                        global,
                        homespot,
                        renewed,
                        took: now.since(h.p.started),
                    });
                }
                _ => {
                    self.counters.forged += 1;
                    h.confirming = Some(c);
                    self.handshake = Some(h);
                }
            }
            return;
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.local != t.receiver {
            self.counters.forged += 1;
            return;
        }
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
        match body {
            Body::SwitchAck { link: l } => {
                self.confirm(l);
                if let Some(p) = self.switch.as_ref().filter(|p| p.link == l) {
                    let took = now.since(p.started);
                    self.switch = None;
                    self.events
                        .push_back(ClientEvent::SwitchDone { link: l, took });
                }
            }
            Body::ProbeAck { link: l, probe_seq } => {
                self.confirm(l);
                if let Some(st) = self.links.get_mut(&l) {
                    st.unanswered = 0;
                    st.quiet_since = now;
                    st.checked = false;
                    if let Some(&(_, sent)) = st.sent.iter().find(|(c, _)| *c == probe_seq) {
                        let sample = now.since(sent);
                        st.rtt = sample.max(st.rtt - st.rtt / 8);
                    }
                    if !st.alive {
                        st.alive = true;
                        self.events.push_back(ClientEvent::LinkAlive { link: l });
                    }
                }
                let Some(c) = self.contrast.as_ref() else {
                    return;
                };
                if c.suspect == l {
                    self.contrast = None;
                } else if c.dead_at.is_none() && c.probes.contains(&(l, probe_seq)) {
                    // The HomeSpot answered the check on another link while the suspect is
                    // still silent: dead unless it answers within a short grace (an answer
                    // queued behind a burst arrives just after the check's).
                    let every = self
                        .links
                        .get(&c.suspect)
                        .and_then(|s| s.every)
                        .unwrap_or(self.cfg.probe_interval);
                    let grace = (every / 2).max(now.since(c.sent) * 2).max(CHECK_GRACE);
                    if let Some(c) = self.contrast.as_mut() {
                        c.dead_at = Some(now + grace);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_unknown(&mut self, now: Instant, link: u8, u: UnknownSession) {
        let (Some(s), Some(pin)) = (self.session.as_ref(), self.pinned) else {
            return;
        };
        // Only a notice about our session, answering one of our recent messages, signed by
        // the HomeSpot: anyone else's costs us one signature check and nothing more.
        let recent = u.counter < s.tx && s.tx - u.counter <= 64;
        if u.receiver != s.remote || !recent || !crypto::unknown_is_genuine(&u, &pin) {
            self.counters.forged += 1;
            return;
        }
        self.counters.unknown_session += 1;
        // Signed by the HomeSpot for this session: it is on this link.
        self.confirm(link);
        if self.handshake.is_some() {
            return;
        }
        self.events.push_back(ClientEvent::SessionLost { link });
        self.associate(now, link);
    }
}
