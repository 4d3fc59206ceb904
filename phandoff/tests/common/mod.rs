//! A HomeSpot and a client joined by three simulated links, with a virtual clock and a switch
//! per link that drops everything (quinn's tests/util.rs idea). Every step has explicit time.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use phandoff::client::{Client, ClientConfig, ClientEvent};
use phandoff::crypto::{ClientKeys, Identity};
use phandoff::endpoint::{Dest, Instant};
use phandoff::pool::Assignment;
use phandoff::responder::{Event, Responder, ResponderConfig};
use phandoff::wire::{LinkInfo, LinkKind};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub const PORT: u16 = 4747;

/// A seeded generator (tests are deterministic; the drivers use the OS's).
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn link(i: u8, kind: LinkKind) -> LinkInfo {
    LinkInfo {
        index: i,
        kind,
        l2_id: b"homespot".to_vec(),
        subnet: Ipv4Addr::new(10, 77, i + 1, 0),
        prefix: 24,
        router: Ipv4Addr::new(10, 77, i + 1, 1),
        proxy: Ipv4Addr::new(10, 77, i + 1, 1),
        proxy_port: 3128,
        pac_url: format!("http://10.77.{}.1/wpad.dat", i + 1).into_bytes(),
    }
}

pub fn client_addr(link: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, link + 1, 100)
}

pub fn config() -> ResponderConfig {
    ResponderConfig {
        links: vec![
            link(0, LinkKind::Wifi),
            link(1, LinkKind::Bluetooth),
            link(2, LinkKind::Ethernet),
        ],
        global_subnet: Ipv4Addr::new(10, 200, 0, 0),
        global_prefix: 24,
        global_addr: Ipv4Addr::new(10, 200, 0, 1),
        pool: (
            Ipv4Addr::new(10, 200, 0, 10),
            Ipv4Addr::new(10, 200, 0, 250),
        ),
        advert_interval: Duration::from_secs(1),
        expiry: ResponderConfig::DEFAULT_EXPIRY,
        session_idle: ResponderConfig::DEFAULT_SESSION_IDLE,
        handshake_rate: ResponderConfig::DEFAULT_HANDSHAKE_RATE,
    }
}

pub fn responder(assigned: Vec<([u8; 32], Assignment)>) -> Responder {
    Responder::new(config(), Identity::from_seed([1; 32]), rng(2), assigned)
}

/// A client with key `[secret; 32]`.
pub fn client(secret: u8) -> Client {
    Client::new(
        ClientConfig::default(),
        ClientKeys::from_secret([secret; 32]),
        None,
        rng(u64::from(secret) + 1000),
        PORT,
    )
}

pub struct Bed {
    pub now: Instant,
    pub hs: Responder,
    pub cl: Client,
    pub up: [bool; 3],
    pub hs_events: Vec<Event>,
    pub cl_events: Vec<ClientEvent>,
    /// Every datagram the client sent, as (link, bytes): what an eavesdropper on the LAN sees.
    pub sniffed: Vec<(u8, Vec<u8>)>,
}

impl Bed {
    pub fn new(hs: Responder) -> Bed {
        let cl = client(3);
        Bed {
            now: Instant(1_000_000),
            hs,
            cl,
            up: [true; 3],
            hs_events: vec![],
            cl_events: vec![],
            sniffed: vec![],
        }
    }

    /// Delivers everything queued, repeatedly, until both sides are quiet.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.hs.poll_transmit() {
                moved = true;
                if self.up[t.link as usize] {
                    self.cl.handle_datagram(self.now, t.link, &t.payload);
                }
            }
            while let Some(t) = self.cl.poll_transmit() {
                moved = true;
                assert!(matches!(t.to, Dest::Unicast(_) | Dest::Broadcast));
                self.sniffed.push((t.link, t.payload.clone()));
                if self.up[t.link as usize] {
                    let from = SocketAddrV4::new(client_addr(t.link), PORT);
                    self.hs.handle_datagram(self.now, t.link, from, &t.payload);
                }
            }
            let new: Vec<Event> = std::iter::from_fn(|| self.hs.poll_event()).collect();
            moved |= !new.is_empty();
            for e in &new {
                // The caller installs the route at once here, which releases the SwitchAck.
                if let Event::Route { global, .. } = e {
                    self.hs.route_installed(*global);
                    moved = true;
                }
            }
            self.hs_events.extend(new);
            let cl_new: Vec<ClientEvent> = std::iter::from_fn(|| self.cl.poll_event()).collect();
            moved |= !cl_new.is_empty();
            self.cl_events.extend(cl_new);
            if !moved {
                return;
            }
        }
    }

    /// Advances the clock to `to`, running every timer on the way.
    pub fn run_until(&mut self, to: Instant) {
        loop {
            let next = [self.hs.poll_timeout(), self.cl.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= to => {
                    self.now = self.now.max(t);
                    self.hs.handle_timeout(self.now);
                    self.cl.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = to;
    }

    pub fn after(&self, d: Duration) -> Instant {
        self.now + d
    }

    /// Discovery and association over link 0, interfaces up on all three links.
    pub fn associate(&mut self) -> Ipv4Addr {
        self.cl.query(0);
        self.pump();
        assert!(self
            .cl_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Discovered { advert } if advert.links.len() == 3)));
        for l in 0..3 {
            self.cl.link_up(self.now, l, client_addr(l));
        }
        self.cl.associate(self.now, 0);
        self.pump();
        let global = self
            .cl_events
            .iter()
            .find_map(|e| match e {
                ClientEvent::Associated { global, .. } => Some(*global),
                _ => None,
            })
            .expect("associated");
        self.cl.switch(self.now, 0);
        self.pump();
        global
    }
}

/// What the HomeSpot asked to persist, as the store would load it after a restart.
pub fn persisted(events: &[Event]) -> Vec<([u8; 32], Assignment)> {
    let mut out: std::collections::BTreeMap<[u8; 32], Assignment> = Default::default();
    for e in events {
        match e {
            Event::Confirmed {
                client_key,
                assignment,
                ..
            } => {
                out.insert(*client_key, *assignment);
            }
            Event::Evicted { client_key, .. } => {
                out.remove(client_key);
            }
            _ => {}
        }
    }
    out.into_iter().collect()
}

/// Runs a stand-alone client against `hs` from `at` until quiet (a few rounds).
pub fn exchange(hs: &mut Responder, c: &mut Client, now: Instant, link: u8, at: SocketAddrV4) {
    for _ in 0..4 {
        while let Some(t) = c.poll_transmit() {
            hs.handle_datagram(now, link, at, &t.payload);
        }
        while let Some(t) = hs.poll_transmit() {
            if t.to == Dest::Unicast(at) {
                c.handle_datagram(now, t.link, &t.payload);
            }
        }
    }
}
