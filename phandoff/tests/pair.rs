//! The two endpoints over simulated links with explicit time: discovery, the handshake,
//! switches, dead links, Bye, and recovery when the HomeSpot forgets the session.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use phandoff::client::{Client, ClientConfig, ClientEvent};
use phandoff::crypto::{ClientKeys, Identity};
use phandoff::endpoint::Instant;
use phandoff::responder::Event;

#[test]
fn discover_associate_switch_and_detect_a_dead_link() {
    let mut b = Bed::new(responder(vec![]));
    let global = b.associate();
    assert_eq!(global, Ipv4Addr::new(10, 200, 0, 10));
    assert!(b.hs_events.iter().any(|e| matches!(e,
        Event::Confirmed { client_key, global: g, new: true, .. }
            if *client_key == ClientKeys::from_secret([3; 32]).public() && *g == global)));
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
    assert!(b
        .hs_events
        .iter()
        .any(|e| matches!(e, Event::Released { global: g, .. } if *g == global)));
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
    let kept = persisted(&b.hs_events);
    let mut b2 = Bed::new(responder(kept));
    b2.now = b.now + Duration::from_secs(1);
    let again = b2.associate();
    assert_eq!(first, again);
    assert!(
        b2.hs_events
            .iter()
            .any(|e| matches!(e, Event::Confirmed { new: false, .. })),
        "the same assignment, not a new one"
    );
}

/// The HomeSpot restarts (its sessions are gone, its assignments persisted): the client's
/// next probe meets "unknown session", a signed notice, and the client re-handshakes at once
/// over that link, keeping its address; no link is declared dead.
#[test]
fn a_homespot_restart_is_recovered_by_a_new_handshake() {
    let mut b = Bed::new(responder(vec![]));
    let global = b.associate();
    let later = b.after(Duration::from_millis(200));
    b.run_until(later);
    let kept = persisted(&b.hs_events);
    b.hs = responder(kept);
    b.hs.handle_timeout(b.now);
    let restarted = b.now;
    let later = b.after(Duration::from_millis(300));
    b.run_until(later);
    let (again, renewed_at) = b
        .cl_events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Associated {
                global,
                renewed: true,
                ..
            } => Some(*global),
            _ => None,
        })
        .map(|g| (g, b.now))
        .expect("re-associated");
    assert_eq!(again, global, "the same global address");
    assert!(b
        .cl_events
        .iter()
        .any(|e| matches!(e, ClientEvent::SessionLost { .. })));
    assert!(
        !b.cl_events
            .iter()
            .any(|e| matches!(e, ClientEvent::LinkDead { .. })),
        "{:?}",
        b.cl_events
    );
    assert!(
        b.cl.counters().unknown_session >= 1,
        "one notice per link probed"
    );
    assert!(renewed_at.since(restarted) <= Duration::from_millis(300));
    // The caller re-asserts the route, and probes answer under the new session.
    let t = b.now;
    b.cl.switch(t, 0);
    let later = b.after(Duration::from_millis(500));
    b.run_until(later);
    assert!(b.hs_events.contains(&Event::Route {
        global,
        link: 0,
        via: client_addr(0)
    }));
    assert_eq!(b.hs.sessions().0, 1);
}

#[test]
fn a_pinned_identity_is_not_replaced() {
    let other = Identity::from_seed([9; 32]).public();
    let mut cl = Client::new(
        ClientConfig::default(),
        ClientKeys::from_secret([3; 32]),
        Some(other),
        rng(4),
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

#[test]
fn a_link_identity_learned_at_run_time_is_in_the_next_advert() {
    use phandoff::wire::{Message, Query};
    let mut hs = responder(vec![]);
    let now = Instant(1_000_000);
    let from = std::net::SocketAddrV4::new(client_addr(1), 4747);
    let ask = |hs: &mut phandoff::responder::Responder| {
        hs.handle_datagram(now, 1, from, &Message::Query(Query { nonce: 7 }).emit());
        let t = hs.poll_transmit().expect("an advert");
        match Message::parse(&t.payload).expect("parses") {
            Message::Advert(a) => a,
            other => panic!("not an advert: {other:?}"),
        }
    };
    let before = ask(&mut hs);
    assert_eq!(before.links[1].l2_id, b"homespot".to_vec());
    // The Bluetooth adapter's address, read from BlueZ after start.
    hs.set_l2_id(1, vec![0x00, 0xaa, 0x01, 0x00, 0x00, 0x00]);
    let after = ask(&mut hs);
    assert_eq!(
        after.links[1].l2_id,
        vec![0x00, 0xaa, 0x01, 0x00, 0x00, 0x00]
    );
    assert_eq!(after.links[0].l2_id, b"homespot".to_vec(), "only that link");
    assert!(after.epoch > before.epoch, "a new, freshly signed advert");
}

/// A Switch towards a link that is declared dead meanwhile fails at once (with the LinkDead),
/// not after its last retry: the caller can move elsewhere without waiting.
#[test]
fn a_switch_to_a_link_that_dies_fails_with_it() {
    let mut b = Bed::new(responder(vec![]));
    b.associate();
    b.up[1] = false;
    let at = b.now;
    b.cl.switch(at, 1);
    b.pump();
    let later = b.after(Duration::from_millis(400));
    b.run_until(later);
    let failed = b
        .cl_events
        .iter()
        .position(|e| matches!(e, ClientEvent::SwitchFailed { link: 1 }))
        .expect("switch failed");
    let dead = b
        .cl_events
        .iter()
        .position(|e| matches!(e, ClientEvent::LinkDead { link: 1 }))
        .expect("link dead");
    assert_eq!(failed + 1, dead, "{:?}", b.cl_events);
    // Dead after probe_misses (5) unanswered 50 ms probes, long before 10 retries of the Switch
    // (500 ms) would have ended.
    let switch_failed_count = b
        .cl_events
        .iter()
        .filter(|e| matches!(e, ClientEvent::SwitchFailed { .. }))
        .count();
    assert_eq!(switch_failed_count, 1);
}
