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

/// A bed whose client probes link 0 (the one in use) every 10 ms and the others every 50 ms,
/// dead after 8 misses, checked against the others after 1 silent period (the agent's
/// defaults).
fn checked_bed() -> Bed {
    let mut b = Bed::new(responder(vec![]));
    b.cl = Client::new(
        ClientConfig {
            probe_interval: Duration::from_millis(50),
            probe_misses: 8,
            suspect_misses: 1,
            ..ClientConfig::default()
        },
        ClientKeys::from_secret([3; 32]),
        None,
        rng(1003),
        PORT,
    );
    b.associate();
    let now = b.now;
    b.cl.set_probe_interval(now, 0, Duration::from_millis(10));
    let later = b.after(Duration::from_secs(1));
    b.run_until(later);
    assert!(
        !b.cl_events
            .iter()
            .any(|e| matches!(e, ClientEvent::LinkDead { .. })),
        "every link answers: none is dead"
    );
    b
}

/// Steps 1 ms at a time (at most `max`) until `link` is dead; how long that took.
fn until_dead(b: &mut Bed, link: u8, max: Duration) -> Option<Duration> {
    let from = b.now;
    while b.now.since(from) < max {
        let step = b.after(Duration::from_millis(1));
        b.run_until(step);
        if b.cl_events.contains(&ClientEvent::LinkDead { link }) {
            return Some(b.now.since(from));
        }
    }
    None
}

/// The link in use goes silent while the HomeSpot answers on the others: it is dead after one
/// silent period, the check's round trip and a short grace, not after 8 misses (80 ms).
#[test]
fn a_silent_link_in_use_is_checked_against_the_others() {
    let mut b = checked_bed();
    b.up[0] = false;
    let found = until_dead(&mut b, 0, Duration::from_millis(200)).expect("link 0 dead");
    assert!(found <= Duration::from_millis(30), "found after {found:?}");
    assert!(!b
        .cl_events
        .iter()
        .any(|e| matches!(e, ClientEvent::LinkDead { link } if *link != 0)));
}

/// Every link silent (the HomeSpot restarting, or too busy to answer): nothing is decided
/// before the 8 misses.
#[test]
fn every_link_silent_waits_for_the_misses() {
    let mut b = checked_bed();
    b.up = [false; 3];
    let found = until_dead(&mut b, 0, Duration::from_millis(300)).expect("link 0 dead");
    assert!(found >= Duration::from_millis(70), "found after {found:?}");
}

/// The link in use answers just after the check's answer on another link (its answer was
/// queued behind a burst): it is not declared dead.
#[test]
fn an_answer_within_the_grace_keeps_the_link() {
    answered_after_the_check(Duration::from_millis(2));
}

/// The same, 15 ms late (a busy Wi-Fi link under a rate-limited HTTPS download was declared
/// dead with its answer 1.3 ms past a 5 ms grace): the grace is at least 20 ms.
#[test]
fn an_answer_15_ms_after_the_check_keeps_the_link() {
    answered_after_the_check(Duration::from_millis(15));
}

fn answered_after_the_check(late: Duration) {
    let mut b = checked_bed();
    // Just after a standby probe on link 1, so the next datagram there is the check.
    let on1 = |b: &Bed| b.sniffed.iter().filter(|(l, _)| *l == 1).count();
    let n = on1(&b);
    while on1(&b) == n {
        let step = b.after(Duration::from_millis(1));
        b.run_until(step);
    }
    b.up[0] = false;
    let n = on1(&b);
    let silent = b.now;
    while on1(&b) == n {
        let step = b.after(Duration::from_millis(1));
        b.run_until(step);
        assert!(b.now.since(silent) < Duration::from_millis(45), "no check");
    }
    // The check went out on link 1 and was answered at once; link 0 is heard `late` later.
    let step = b.after(late);
    b.run_until(step);
    b.up[0] = true;
    let now = b.now;
    b.cl.heard(now, 0);
    let later = b.after(Duration::from_millis(300));
    b.run_until(later);
    assert!(
        !b.cl_events.contains(&ClientEvent::LinkDead { link: 0 }),
        "{:?}",
        b.cl_events
    );
}

/// A link whose period just changed (it began to carry traffic) is not checked before it
/// answers at the new period: its round trip so far was measured idle.
#[test]
fn a_new_period_is_not_checked_before_an_answer() {
    let mut b = checked_bed();
    let now = b.now;
    b.cl.set_probe_interval(now, 1, Duration::from_millis(10));
    b.up[1] = false;
    // Link 1 silent from its first fast probe: only the 8 misses decide.
    let found = until_dead(&mut b, 1, Duration::from_millis(300)).expect("link 1 dead");
    assert!(found >= Duration::from_millis(70), "found after {found:?}");
}

/// A link the HomeSpot never answers on (a replayed advert on another network looks like
/// this) is never confirmed; each link it answers on is confirmed once, and again after the
/// link came up anew.
#[test]
fn a_link_is_confirmed_by_the_homespots_first_answer_only() {
    let mut b = Bed::new(responder(vec![]));
    b.up[1] = false;
    b.associate();
    let later = b.after(Duration::from_millis(500));
    b.run_until(later);
    let confirmed = |b: &Bed, link: u8| {
        b.cl_events
            .iter()
            .filter(|e| **e == ClientEvent::LinkConfirmed { link })
            .count()
    };
    assert_eq!(confirmed(&b, 0), 1, "{:?}", b.cl_events);
    assert_eq!(confirmed(&b, 1), 0, "never answered there");
    assert!(b.cl_events.contains(&ClientEvent::LinkDead { link: 1 }));
    // The link comes up anew: confirmed again by the first answer on it.
    let at = b.now;
    b.cl.link_down(0);
    b.cl.link_up(at, 0, client_addr(0));
    let later = b.after(Duration::from_millis(200));
    b.run_until(later);
    assert_eq!(confirmed(&b, 0), 2, "{:?}", b.cl_events);
}
