//! A HomeSpot and a client joined by two simulated links, with a virtual clock and a switch
//! per link that drops everything (quinn's tests/util.rs idea). Every step has explicit time.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use phandoff::client::{Client, ClientConfig, ClientEvent};
use phandoff::crypto::{ClientKeys, Identity};
use phandoff::endpoint::{Dest, Instant};
use phandoff::responder::{Event, Responder, ResponderConfig};
use phandoff::wire::{LinkInfo, LinkKind, Message, Sealed, SealedBody};

const PORT: u16 = 4747;

fn link(i: u8, kind: LinkKind) -> LinkInfo {
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

fn client_addr(link: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, link + 1, 100)
}

fn responder(assigned: Vec<([u8; 32], Ipv4Addr)>) -> Responder {
    let cfg = ResponderConfig {
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
    };
    Responder::new(cfg, Identity::from_seed([1; 32]), [2; 32], assigned)
}

struct Bed {
    now: Instant,
    hs: Responder,
    cl: Client,
    up: [bool; 3],
    hs_events: Vec<Event>,
    cl_events: Vec<ClientEvent>,
    /// Every datagram the client sent, as (link, bytes): what an eavesdropper on the LAN sees.
    sniffed: Vec<(u8, Vec<u8>)>,
}

impl Bed {
    fn new(hs: Responder) -> Bed {
        let cl = Client::new(
            ClientConfig::default(),
            ClientKeys::from_secret([3; 32]),
            None,
            [4; 32],
            PORT,
        );
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
    fn pump(&mut self) {
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
            for e in &new {
                // The caller installs the route at once here, which releases the SwitchAck.
                if let Event::Route { global, .. } = e {
                    self.hs.route_installed(*global);
                    moved = true;
                }
            }
            self.hs_events.extend(new);
            self.cl_events
                .extend(std::iter::from_fn(|| self.cl.poll_event()));
            if !moved {
                return;
            }
        }
    }

    /// Advances the clock to `to`, running every timer on the way.
    fn run_until(&mut self, to: Instant) {
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

    fn after(&self, d: Duration) -> Instant {
        self.now + d
    }

    /// Discovery and association over link 0, interfaces up on all three links.
    fn associate(&mut self) -> Ipv4Addr {
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

#[test]
fn discover_associate_switch_and_detect_a_dead_link() {
    let mut b = Bed::new(responder(vec![]));
    let global = b.associate();
    assert_eq!(global, Ipv4Addr::new(10, 200, 0, 10));
    assert!(b.hs_events.contains(&Event::Assigned {
        client_key: ClientKeys::from_secret([3; 32]).public(),
        global
    }));
    // Policy switch to Bluetooth: one round trip over the new link.
    let t = b.now;
    b.cl.switch(t, 1);
    b.pump();
    assert!(b.hs_events.contains(&Event::Route {
        global,
        link: 1,
        via: client_addr(1)
    }));
    assert!(b.cl_events.contains(&ClientEvent::SwitchDone {
        link: 1,
        took: Duration::ZERO
    }));
    // Probes keep every link alive for a second.
    let later = b.after(Duration::from_secs(1));
    b.run_until(later);
    assert!(!b
        .cl_events
        .iter()
        .any(|e| matches!(e, ClientEvent::LinkDead { .. })));
    // The Bluetooth radio goes silent: found dead within the default 300 ms.
    b.up[1] = false;
    let lost = b.now;
    let mut found = None;
    for _ in 0..100 {
        let step = b.after(Duration::from_millis(5));
        b.run_until(step);
        if b.cl_events.contains(&ClientEvent::LinkDead { link: 1 }) {
            found = Some(b.now.since(lost));
            break;
        }
    }
    let found = found.expect("link 1 declared dead");
    assert!(
        found <= Duration::from_millis(300),
        "detection took {found:?}"
    );
    assert!(!b
        .cl_events
        .iter()
        .any(|e| matches!(e, ClientEvent::LinkDead { link } if *link != 1)));
    // And back.
    b.up[1] = true;
    let later = b.after(Duration::from_millis(200));
    b.run_until(later);
    assert!(b.cl_events.contains(&ClientEvent::LinkAlive { link: 1 }));
}

#[test]
fn bye_releases_the_route() {
    let mut b = Bed::new(responder(vec![]));
    let global = b.associate();
    b.cl.bye(0);
    b.pump();
    assert!(b.hs_events.contains(&Event::Released { global }));
    // No session any more: no probes, no switch.
    let later = b.after(Duration::from_millis(500));
    let sent = b.sniffed.len();
    b.run_until(later);
    assert_eq!(b.sniffed.len(), sent, "nothing sent after Bye");
}

#[test]
fn a_lost_switch_is_retransmitted() {
    let mut b = Bed::new(responder(vec![]));
    b.associate();
    b.up[2] = false;
    let t = b.now;
    b.cl.switch(t, 2);
    b.pump();
    let step = b.after(Duration::from_millis(120));
    b.run_until(step);
    b.up[2] = true;
    let step = b.after(Duration::from_millis(100));
    b.run_until(step);
    let took = b.cl_events.iter().find_map(|e| match e {
        ClientEvent::SwitchDone { link: 2, took } => Some(*took),
        _ => None,
    });
    let took = took.expect("switch done after retransmission");
    assert!(
        took >= Duration::from_millis(100) && took <= Duration::from_millis(200),
        "{took:?}"
    );
}

#[test]
fn the_same_key_gets_the_same_address_after_a_restart() {
    let mut b = Bed::new(responder(vec![]));
    let first = b.associate();
    let persisted: Vec<([u8; 32], Ipv4Addr)> = b
        .hs_events
        .iter()
        .filter_map(|e| match e {
            Event::Assigned { client_key, global } => Some((*client_key, *global)),
            _ => None,
        })
        .collect();
    // Another client first, so a fresh allocation would not give the same address.
    let mut b2 = Bed::new(responder(persisted));
    let again = b2.associate();
    assert_eq!(first, again);
    assert!(
        !b2.hs_events
            .iter()
            .any(|e| matches!(e, Event::Assigned { .. })),
        "nothing new to persist"
    );
}

#[test]
fn forgeries_replays_foreign_switches_and_garbage_change_no_route() {
    let mut b = Bed::new(responder(vec![]));
    let victim = b.associate();
    let routes = |b: &Bed| {
        b.hs_events
            .iter()
            .filter(|e| matches!(e, Event::Route { .. }))
            .count()
    };
    let before = routes(&b);
    let attacker_at = SocketAddrV4::new(Ipv4Addr::new(10, 77, 2, 66), PORT);
    // 1. A forged Switch for the victim's address on the victim's session (wrong tag).
    let session = b
        .sniffed
        .iter()
        .rev()
        .find_map(|(_, bytes)| match Message::parse(bytes) {
            Ok(Message::Sealed(s)) => Some(s.session),
            _ => None,
        });
    let forged = Sealed {
        session: session.expect("a sealed message was sniffed"),
        seq: 1_000,
        body: SealedBody::Switch {
            link: 1,
            global: victim,
            client_addr: *attacker_at.ip(),
        },
        tag: [0xab; 16],
    };
    b.hs.handle_datagram(b.now, 1, attacker_at, &Message::Sealed(forged).emit());
    // 2. A replay of the victim's own Switch, captured on the air.
    let captured = b
        .sniffed
        .iter()
        .find(|(_, bytes)| {
            matches!(
                Message::parse(bytes),
                Ok(Message::Sealed(Sealed {
                    body: SealedBody::Switch { .. },
                    ..
                }))
            )
        })
        .cloned()
        .expect("captured switch");
    let from = SocketAddrV4::new(client_addr(captured.0), PORT);
    b.hs.handle_datagram(b.now, captured.0, from, &captured.1);
    // 3. The attacker associates with its own key, then asks for the victim's address.
    let mut attacker = Client::new(
        ClientConfig::default(),
        ClientKeys::from_secret([66; 32]),
        None,
        [67; 32],
        PORT,
    );
    attacker.query(1);
    while let Some(t) = attacker.poll_transmit() {
        b.hs.handle_datagram(b.now, 1, attacker_at, &t.payload);
    }
    while let Some(t) = b.hs.poll_transmit() {
        attacker.handle_datagram(b.now, t.link, &t.payload);
    }
    attacker.link_up(b.now, 1, *attacker_at.ip());
    attacker.associate(b.now, 1);
    for _ in 0..2 {
        while let Some(t) = attacker.poll_transmit() {
            b.hs.handle_datagram(b.now, 1, attacker_at, &t.payload);
        }
        while let Some(t) = b.hs.poll_transmit() {
            attacker.handle_datagram(b.now, t.link, &t.payload);
        }
    }
    let own = std::iter::from_fn(|| attacker.poll_event())
        .find_map(|e| match e {
            ClientEvent::Associated { global, .. } => Some(global),
            _ => None,
        })
        .expect("the attacker gets its own address");
    assert_ne!(own, victim);
    // Its Switch must carry its own global address; a hand-made one naming the victim's is
    // tagged with the attacker's own session key, which the HomeSpot checks against the session.
    attacker.switch(b.now, 1);
    let mut sw = None;
    while let Some(t) = attacker.poll_transmit() {
        if let Ok(Message::Sealed(s)) = Message::parse(&t.payload) {
            if matches!(s.body, SealedBody::Switch { .. }) {
                sw = Some(s);
            }
        }
    }
    let mut sw = sw.expect("attacker switch");
    sw.body = SealedBody::Switch {
        link: 1,
        global: victim,
        client_addr: *attacker_at.ip(),
    };
    b.hs.handle_datagram(b.now, 1, attacker_at, &Message::Sealed(sw).emit());
    // 4. Garbage.
    for g in [&b"PH\x01\x05garbage"[..], b"", &[0xff; 300]] {
        b.hs.handle_datagram(b.now, 1, attacker_at, g);
    }
    b.hs_events.extend(std::iter::from_fn(|| b.hs.poll_event()));
    assert_eq!(routes(&b), before, "no route changed: {:?}", b.hs_events);
    let c = b.hs.counters();
    assert!(c.forged >= 2, "{c:?}"); // the forged tag, and the altered attacker switch
    assert_eq!(c.replayed, 1, "{c:?}");
    assert_eq!(c.malformed, 3, "{c:?}");
}

#[test]
fn a_pinned_identity_is_not_replaced() {
    let other = Identity::from_seed([9; 32]).public();
    let mut cl = Client::new(
        ClientConfig::default(),
        ClientKeys::from_secret([3; 32]),
        Some(other),
        [4; 32],
        PORT,
    );
    let mut hs = responder(vec![]);
    hs.handle_timeout(Instant(0));
    while let Some(t) = hs.poll_transmit() {
        cl.handle_datagram(Instant(0), t.link, &t.payload);
    }
    let events: Vec<ClientEvent> = std::iter::from_fn(|| cl.poll_event()).collect();
    assert!(
        events
            .iter()
            .all(|e| matches!(e, ClientEvent::IdentityMismatch { .. })),
        "{events:?}"
    );
    assert_eq!(cl.counters().wrong_identity, 3);
    assert_eq!(cl.pinned(), Some(other));
}
