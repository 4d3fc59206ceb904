//! The device's control loop: a lease on each radio (the radio stacks' own DHCP), discovery of
//! the HomeSpot (a Query on each radio; only adverts signed by the pinned identity count), the
//! v2 handshake, the global address on the global stack, probes on both links, and the moves:
//! off a link that dies (at once: the global stack sends through the other radio before the
//! SwitchAck), back to the preferred link when it answers again (after the SwitchAck).

use core::net::Ipv4Addr;

use embassy_futures::select::{select3, Either3};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{ConfigV4, Ipv4Cidr, Stack, StaticConfigV4};
use embassy_time::Timer;
use phandoff::client::{Client, ClientConfig, ClientCounters, ClientEvent};
use phandoff::crypto::ClientKeys;
use phandoff::endpoint::{Dest, Instant};
use phandoff::wire::Advert;
use rand_core::CryptoRng;

use crate::switchboard::{Shared, RADIOS, TAG};

/// The protocol's UDP port.
pub const PORT: u16 = 4747;
/// Link numbers the core is given for a radio before the advert says which HomeSpot link it is.
const UNMAPPED: u8 = 0xf0;
/// A radio with a lease and no HomeSpot yet asks again this often.
const QUERY_EVERY: u64 = 500_000;
/// A failed handshake is tried again after this long.
const RETRY_ASSOCIATE: u64 = 1_000_000;
/// How often a radio without a lease is looked at again.
const LEASE_CHECK: u64 = 20_000;
/// Refusals are reported at most this often (microseconds).
const REFUSED_NOTE_EVERY: u64 = 1_000_000;
/// The largest datagram taken from the protocol's sockets (a full advert is below 1 KB).
const DATAGRAM: usize = 1024;

/// What the device needs to know.
#[derive(Debug, Clone, Copy)]
pub struct DeviceConfig {
    /// The HomeSpot identity (Ed25519 public key) the device was provisioned with.
    pub identity: [u8; 32],
    /// The device's long-lived secret key (its global address is tied to it).
    pub secret: [u8; 32],
    /// The radio whose link is preferred when both work.
    pub preferred: usize,
    /// Probes and retries.
    pub client: ClientConfig,
    /// Microseconds to add to the uptime clock for the protocol's time. Handshake timestamps
    /// must grow across restarts of the device: the wall clock, or a boot counter kept in flash
    /// shifted left by 40 bits.
    pub epoch_us: u64,
}

/// What the device reports, for a log or a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Radio `radio` has a lease.
    Lease {
        /// The radio.
        radio: usize,
        /// Its address.
        address: Ipv4Cidr,
        /// The router the lease named.
        router: Option<Ipv4Addr>,
    },
    /// The pinned HomeSpot answered; `radio` is its link `link`.
    Discovered {
        /// The radio.
        radio: usize,
        /// The HomeSpot's index of the link.
        link: u8,
    },
    /// An advert signed by another identity was ignored.
    IdentityMismatch,
    /// The handshake completed.
    Associated {
        /// The global address.
        global: Ipv4Addr,
        /// The HomeSpot's global address.
        homespot: Ipv4Addr,
        /// Over this radio.
        radio: usize,
        /// A session existed before.
        renewed: bool,
        /// From the first Initiation, in microseconds.
        took_us: u64,
    },
    /// The handshake was given up; it is tried again.
    AssociateFailed,
    /// The HomeSpot forgot the session; re-handshaking.
    SessionLost,
    /// The HomeSpot routes to the device through `radio` now.
    Switched {
        /// The radio.
        radio: usize,
        /// From the first Switch to its answer, in microseconds.
        took_us: u64,
    },
    /// No answer to a Switch.
    SwitchFailed {
        /// The radio.
        radio: usize,
    },
    /// Probes on `radio` went unanswered.
    LinkDead {
        /// The radio.
        radio: usize,
    },
    /// `radio` answers again.
    LinkAlive {
        /// The radio.
        radio: usize,
    },
    /// The client refused messages (forged, replayed, another identity, malformed).
    Refused(ClientCounters),
}

#[derive(Clone, Copy, Default)]
struct RadioState {
    lease: Option<(Ipv4Cidr, Option<Ipv4Addr>)>,
    link: Option<u8>,
    alive: bool,
    next_query: u64,
}

struct Control<'a> {
    cfg: DeviceConfig,
    sh: &'a Shared,
    client: Client,
    radios: [RadioState; RADIOS],
    advert: Option<Advert>,
    associating: bool,
    /// The link of the handshake in flight (its Confirm gives the HomeSpot's route).
    assoc_link: Option<u8>,
    associated: bool,
    retry_associate: Option<u64>,
    /// The link the HomeSpot routes the global address through (as far as we know).
    current: Option<u8>,
    counters: ClientCounters,
    next_refused_note: u64,
}

/// The protocol clock: microseconds, from the uptime clock plus the configured epoch.
fn now_us(cfg: &DeviceConfig) -> u64 {
    cfg.epoch_us
        .saturating_add(embassy_time::Instant::now().as_micros())
}

impl Control<'_> {
    fn now(&self) -> Instant {
        Instant(now_us(&self.cfg))
    }

    fn radio_of(&self, link: u8) -> Option<usize> {
        if link >= UNMAPPED {
            return Some(usize::from(link - UNMAPPED)).filter(|r| *r < RADIOS);
        }
        self.radios.iter().position(|r| r.link == Some(link))
    }

    /// Maps every radio with a lease to the advert's link whose router its lease names.
    fn map(&mut self, report: &mut dyn FnMut(Note)) {
        let Some(a) = self.advert.clone() else { return };
        let now = self.now();
        for (i, r) in self.radios.iter_mut().enumerate() {
            let Some((addr, router)) = r.lease else {
                continue;
            };
            let found = a.links.iter().find(|l| {
                Some(l.router) == router
                    && Ipv4Cidr::new(l.subnet, l.prefix).contains_addr(&addr.address())
            });
            let Some(l) = found else { continue };
            if r.link != Some(l.index) {
                r.link = Some(l.index);
                r.alive = true;
                self.client.link_up(now, l.index, addr.address());
                self.sh.set_router(i, Some(l.router));
                report(Note::Discovered {
                    radio: i,
                    link: l.index,
                });
            }
        }
    }

    fn start_association(&mut self) {
        if self.associating || self.associated {
            return;
        }
        let p = self.cfg.preferred;
        let link = self.radios[p]
            .link
            .or_else(|| self.radios.iter().find_map(|r| r.link));
        if let Some(link) = link {
            self.associating = true;
            self.assoc_link = Some(link);
            self.retry_associate = None;
            let now = self.now();
            self.client.associate(now, link);
        }
    }

    /// Another live link than `dead`, the preferred one first.
    fn fallback(&self, dead: u8) -> Option<u8> {
        let p = &self.radios[self.cfg.preferred];
        if p.alive && p.link.is_some_and(|l| l != dead) {
            return p.link;
        }
        self.radios
            .iter()
            .filter(|r| r.alive)
            .find_map(|r| r.link.filter(|l| *l != dead))
    }

    fn on_event(&mut self, e: ClientEvent, global: Stack<'_>, report: &mut dyn FnMut(Note)) {
        let now = self.now();
        match e {
            ClientEvent::Discovered { advert } => {
                self.advert = Some(advert);
                self.map(report);
                self.start_association();
            }
            ClientEvent::IdentityMismatch { .. } => report(Note::IdentityMismatch),
            ClientEvent::Associated {
                global: g,
                homespot,
                renewed,
                took,
            } => {
                self.associating = false;
                self.associated = true;
                let prefix = self.advert.as_ref().map_or(32, |a| a.global_prefix);
                if self.sh.global() != Some(g) {
                    global.set_config_v4(ConfigV4::Static(StaticConfigV4 {
                        address: Ipv4Cidr::new(g, prefix),
                        gateway: Some(homespot),
                        dns_servers: Default::default(),
                    }));
                }
                self.sh.set_global(Some(g));
                // The HomeSpot routes the global address only on a Switch: to the
                // handshake's link, or after a re-handshake back to where the device is.
                let link = match (renewed, self.current) {
                    (true, Some(c)) => c,
                    _ => match self.assoc_link.or(self.current) {
                        Some(l) => l,
                        None => return,
                    },
                };
                self.client.switch(now, link);
                let radio = self.radio_of(link).unwrap_or(self.cfg.preferred);
                self.sh.set_active(Some(radio));
                report(Note::Associated {
                    global: g,
                    homespot,
                    radio,
                    renewed,
                    took_us: took.as_micros() as u64,
                });
            }
            ClientEvent::AssociateFailed => {
                self.associating = false;
                self.retry_associate = Some(now.0 + RETRY_ASSOCIATE);
                report(Note::AssociateFailed);
            }
            ClientEvent::SessionLost { link } => {
                self.associating = true;
                self.assoc_link = Some(link);
                report(Note::SessionLost);
            }
            ClientEvent::SwitchDone { link, took } => {
                self.current = Some(link);
                if let Some(r) = self.radio_of(link) {
                    self.sh.set_active(Some(r));
                    report(Note::Switched {
                        radio: r,
                        took_us: took.as_micros() as u64,
                    });
                }
            }
            ClientEvent::SwitchFailed { link } => {
                if let Some(radio) = self.radio_of(link) {
                    report(Note::SwitchFailed { radio });
                }
            }
            ClientEvent::LinkDead { link } => {
                let Some(radio) = self.radio_of(link) else {
                    return;
                };
                self.radios[radio].alive = false;
                report(Note::LinkDead { radio });
                let using = self.current == Some(link) || self.sh.active() == Some(radio);
                if let (true, Some(to)) = (using, self.fallback(link)) {
                    // Upstream moves at once; the HomeSpot moves its route on the Switch.
                    self.sh.set_active(self.radio_of(to));
                    self.client.switch(now, to);
                }
            }
            ClientEvent::LinkAlive { link } => {
                let Some(radio) = self.radio_of(link) else {
                    return;
                };
                self.radios[radio].alive = true;
                report(Note::LinkAlive { radio });
                if radio == self.cfg.preferred && self.current != Some(link) && self.associated {
                    self.client.switch(now, link);
                }
            }
            // The device's radios are its own HomeSpot's by configuration.
            ClientEvent::LinkConfirmed { .. } => {}
        }
    }

    /// Leases that appeared or changed since the last look.
    fn leases(&mut self, links: &[Stack<'_>; RADIOS], report: &mut dyn FnMut(Note)) {
        let now = now_us(&self.cfg);
        let mut changed = false;
        for (i, s) in links.iter().enumerate() {
            let lease = s.config_v4().map(|c| (c.address, c.gateway));
            let r = &mut self.radios[i];
            if lease != r.lease {
                r.lease = lease;
                r.next_query = now;
                if r.link.is_some() {
                    // The radio is on another network or lost its address: unmapped until an
                    // advert maps it again.
                    if let Some(l) = r.link.take() {
                        self.client.link_down(l);
                    }
                    self.sh.set_router(i, None);
                }
                if let Some((address, router)) = lease {
                    report(Note::Lease {
                        radio: i,
                        address,
                        router,
                    });
                }
                changed = true;
            }
        }
        if changed {
            self.map(report);
            self.start_association();
        }
    }

    /// Queries on radios that have a lease and no HomeSpot yet.
    fn queries(&mut self) {
        let now = now_us(&self.cfg);
        for i in 0..RADIOS {
            let r = &mut self.radios[i];
            if r.lease.is_some() && r.link.is_none() && now >= r.next_query {
                r.next_query = now + QUERY_EVERY;
                self.client.query(UNMAPPED + i as u8);
            }
        }
    }

    fn next_wake(&self) -> u64 {
        let mut t = u64::MAX;
        if let Some(x) = self.client.poll_timeout() {
            t = t.min(x.0);
        }
        if let Some(x) = self.retry_associate {
            t = t.min(x);
        }
        let now = now_us(&self.cfg);
        for r in &self.radios {
            if r.lease.is_none() {
                t = t.min(now + LEASE_CHECK);
            } else if r.link.is_none() {
                t = t.min(r.next_query);
            }
        }
        if !self.associated {
            t = t.min(now + LEASE_CHECK);
        }
        if self.client.counters() != &self.counters {
            t = t.min(self.next_refused_note);
        }
        t
    }
}

/// Runs the device's protocol side forever: `links` are the radios' stacks (DHCP on each),
/// `global` the stack that gets the global address. `rng` must be a cryptographic generator
/// seeded from a true random source (a hardware TRNG, the OS).
pub async fn run(
    sh: &Shared,
    links: [Stack<'_>; RADIOS],
    global: Stack<'_>,
    cfg: DeviceConfig,
    rng: impl CryptoRng + Send + 'static,
    report: &mut dyn FnMut(Note),
) -> ! {
    let client = Client::new(
        cfg.client,
        ClientKeys::from_secret(cfg.secret),
        Some(cfg.identity),
        rng,
        PORT,
    );
    let mut c = Control {
        cfg,
        sh,
        client,
        radios: [RadioState::default(); RADIOS],
        advert: None,
        associating: false,
        assoc_link: None,
        associated: false,
        retry_associate: None,
        current: None,
        counters: ClientCounters::default(),
        next_refused_note: 0,
    };
    let mut meta = [[PacketMetadata::EMPTY; 4]; 2 * RADIOS];
    let mut bufs = [[0u8; DATAGRAM]; 2 * RADIOS];
    let [m0, m1, m2, m3] = &mut meta;
    let [b0, b1, b2, b3] = &mut bufs;
    let mut socks = [
        UdpSocket::new(links[0], m0, b0, m1, b1),
        UdpSocket::new(links[1], m2, b2, m3, b3),
    ];
    for s in &mut socks {
        // Cannot fail: the port is free on a stack of our own.
        let _ = s.bind(PORT);
    }
    let mut rx = [[0u8; DATAGRAM]; RADIOS];
    loop {
        c.leases(&links, report);
        c.queries();
        while let Some(e) = c.client.poll_event() {
            c.on_event(e, global, report);
        }
        // Refusals are reported at once, then at most once a second: a flood of forgeries
        // must not become a flood of log lines.
        let t = now_us(&c.cfg);
        if c.client.counters() != &c.counters && t >= c.next_refused_note {
            c.counters = c.client.counters().clone();
            c.next_refused_note = t + REFUSED_NOTE_EVERY;
            report(Note::Refused(c.counters.clone()));
        }
        while let Some(t) = c.client.poll_transmit() {
            let Some(radio) = c.radio_of(t.link) else {
                continue;
            };
            let to = match t.to {
                Dest::Broadcast => (Ipv4Addr::BROADCAST, PORT),
                Dest::Unicast(a) => (*a.ip(), a.port()),
            };
            // A full queue or no route yet loses the datagram; the core retransmits.
            let _ = socks[radio].send_to(&t.payload, to).await;
        }
        let wake = c.next_wake();
        let at = embassy_time::Instant::from_micros(wake.saturating_sub(c.cfg.epoch_us));
        let [s0, s1] = &socks;
        let [r0, r1] = &mut rx;
        let got = match select3(s0.recv_from(r0), s1.recv_from(r1), Timer::at(at)).await {
            Either3::First(Ok((n, m))) => Some((0, n, m)),
            Either3::Second(Ok((n, m))) => Some((1, n, m)),
            _ => None,
        };
        if let Some((radio, n, meta)) = got {
            let now = c.now();
            let link = c.radios[radio].link.unwrap_or(UNMAPPED + radio as u8);
            let data = &rx[radio][..n];
            let before = c.client.counters().clone();
            c.client.handle_datagram(now, link, data);
            // An authenticated transport message from the HomeSpot: its frame gives the
            // HomeSpot's MAC for the global stack's packets on this radio.
            let from_router = c.radios[radio]
                .lease
                .and_then(|(_, r)| r)
                .is_some_and(|r| meta.endpoint.addr == r.into());
            if from_router && data.len() >= TAG && data[3] == 6 && c.client.counters() == &before {
                sh.vouch(radio, &data[..TAG]);
            }
        } else if c.retry_associate.is_some_and(|t| now_us(&c.cfg) >= t) {
            c.retry_associate = None;
            c.start_association();
        }
        let now = c.now();
        c.client.handle_timeout(now);
    }
}
