//! The protocol under attack, with explicit time: what an eavesdropper on the air can replay,
//! what someone with only the victim's public key can send, floods of made-up keys, and
//! floods of handshakes. The same attacks run on the namespace test bed in homespotd's tests.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::*;
use phandoff::client::ClientEvent;
use phandoff::crypto::ClientKeys;
use phandoff::endpoint::Instant;
use phandoff::noise;
use phandoff::responder::{Event, Responder, ResponderConfig};
use phandoff::wire::{Initiation, Message, INIT_MAC1_AT, TAG_LEN};

fn attacker_at() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 77, 1, 66), PORT)
}

fn routes(b: &Bed) -> usize {
    b.hs_events
        .iter()
        .filter(|e| matches!(e, Event::Route { .. } | Event::Released { .. }))
        .count()
}

/// Everything the victim ever sent, replayed from the attacker's address and from the
/// victim's own, then Initiations with the victim's public key made by someone without its
/// secret: no route changes, the victim's session and probes carry on, every refusal counted.
#[test]
fn replays_and_the_victims_public_key_change_nothing() {
    let mut b = Bed::new(responder(vec![]));
    let global = b.associate();
    let later = b.after(Duration::from_millis(300));
    b.run_until(later);
    let before = routes(&b);
    let captured = b.sniffed.clone();
    for (link, bytes) in &captured {
        b.hs.handle_datagram(b.now, *link, attacker_at(), bytes);
        b.hs.handle_datagram(
            b.now,
            *link,
            SocketAddrV4::new(client_addr(*link), PORT),
            bytes,
        );
    }
    // Only the victim's public key: the attacker makes an Initiation with its own static
    // secret but claims nothing else; the HomeSpot sees the attacker's key, not the victim's.
    // With the victim's key in the encrypted `s` and no matching secret, the Noise layer fails.
    let victim_pub = ClientKeys::from_secret([3; 32]).public();
    let a = b.cl_events.iter().find_map(|e| match e {
        ClientEvent::Discovered { advert } => Some(advert.clone()),
        _ => None,
    });
    let a = a.expect("advert");
    for i in 0..50u8 {
        let mut m = forged_initiation(&a.noise_key, &a.identity, &victim_pub, i);
        let bytes = Message::Initiation(m).emit();
        m.mac1 = noise::mac(&noise::mac1_key(&a.noise_key), &bytes[..INIT_MAC1_AT]);
        b.hs.handle_datagram(b.now, 0, attacker_at(), &Message::Initiation(m).emit());
    }
    b.pump();
    let later = b.after(Duration::from_secs(1));
    b.run_until(later);
    assert_eq!(routes(&b), before, "no route changed");
    assert!(!b.cl_events.iter().any(|e| matches!(
        e,
        ClientEvent::LinkDead { .. } | ClientEvent::SessionLost { .. }
    )));
    assert_eq!(b.cl.global(), Some(global));
    let c = b.hs.counters().clone();
    assert!(c.replayed > 0, "{c:?}");
    assert!(c.stale_timestamp >= 1, "the captured Initiation: {c:?}");
    assert_eq!(c.bad_handshake, 50, "{c:?}");
    assert_eq!(c.handshakes, 1, "only the victim's own: {c:?}");
    assert_eq!(b.hs.sessions().0, 1);
}

/// An Initiation whose encrypted static key claims to be `claimed` is impossible to build
/// without its secret; the closest an attacker gets is Noise with a guessed secret, which
/// encrypts the public key of that guess. Here: `s` from a made-up secret, then the bytes of
/// the victim's key spliced over the encrypted `s` (the AEAD tag then fails).
fn forged_initiation(
    remote: &[u8; 32],
    identity: &[u8; 32],
    claimed: &[u8; 32],
    i: u8,
) -> Initiation {
    let (_, mut n) =
        noise::Initiator::start(&[100 + i; 32], remote, identity, [i; 32], u64::MAX - 1)
            .expect("start");
    n[32..64].copy_from_slice(claimed);
    Initiation {
        sender: u32::from(i),
        noise: n,
        mac1: [0; TAG_LEN],
        mac2: [0; TAG_LEN],
    }
}

/// 10,000 handshakes with made-up keys that never send their Confirm: no address is held for
/// any of them, and the pending table stays at its bound.
#[test]
fn made_up_keys_that_do_not_complete_hold_no_address() {
    let mut hs = responder(vec![]);
    let mut now = Instant(1_000_000);
    hs.handle_timeout(now);
    let mut c = client(200);
    c.query(0);
    exchange(&mut hs, &mut c, now, 0, attacker_at());
    let advert = std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
        ClientEvent::Discovered { advert } => Some(advert),
        _ => None,
    });
    let advert = advert.expect("advert");
    let mut responses = 0;
    for i in 0..10_000u32 {
        let secret: [u8; 32] = {
            let mut s = [7u8; 32];
            s[..4].copy_from_slice(&i.to_be_bytes());
            s
        };
        let (_, n) =
            noise::Initiator::start(&secret, &advert.noise_key, &advert.identity, secret, 1)
                .expect("start");
        let mut m = Initiation {
            sender: i,
            noise: n,
            mac1: [0; TAG_LEN],
            mac2: [0; TAG_LEN],
        };
        let bytes = Message::Initiation(m).emit();
        m.mac1 = noise::mac(&noise::mac1_key(&advert.noise_key), &bytes[..INIT_MAC1_AT]);
        // Spread over 100 s so that the handshake budget is not what stops them.
        now = now + Duration::from_millis(10);
        hs.handle_datagram(now, 0, attacker_at(), &Message::Initiation(m).emit());
        while let Some(t) = hs.poll_transmit() {
            responses += usize::from(matches!(
                Message::parse(&t.payload),
                Ok(Message::Response(_))
            ));
        }
        hs.handle_timeout(now);
        assert!(hs.sessions().1 <= phandoff::responder::MAX_PENDING);
    }
    assert!(responses > 9_000, "they were answered: {responses}");
    assert_eq!(hs.pool_usage().0, 0, "no address for an unconfirmed key");
    assert_eq!(hs.sessions().0, 0);
    assert!(std::iter::from_fn(|| hs.poll_event()).all(|e| !matches!(e, Event::Confirmed { .. })));
}

/// 300 fresh keys complete handshakes into a pool of 241: the pool fills, the warning comes
/// once, and a returning real client still gets an address by evicting the oldest unused.
#[test]
fn a_flood_of_completed_handshakes_cannot_lock_out_a_real_client() {
    let mut b = Bed::new(responder(vec![]));
    let real = b.associate();
    let t = b.now;
    b.cl.bye(0);
    b.pump();
    let mut now = t + Duration::from_secs(60);
    let mut refused = 0;
    for i in 0..300u32 {
        let mut c = phandoff::client::Client::new(
            Default::default(),
            ClientKeys::from_secret({
                let mut s = [9u8; 32];
                s[..4].copy_from_slice(&i.to_be_bytes());
                s
            }),
            None,
            rng(u64::from(i) + 5000),
            PORT,
        );
        c.learn(advert_of(&b));
        let at = SocketAddrV4::new(Ipv4Addr::new(10, 77, 1, 100 + (i % 100) as u8), PORT);
        now = now + Duration::from_millis(20);
        c.associate(now, 0);
        exchange(&mut b.hs, &mut c, now, 0, at);
        let ok = std::iter::from_fn(|| c.poll_event())
            .any(|e| matches!(e, ClientEvent::Associated { .. }));
        refused += usize::from(!ok);
    }
    b.hs_events.extend(std::iter::from_fn(|| b.hs.poll_event()));
    let (used, size) = b.hs.pool_usage();
    assert_eq!(size, 241);
    assert_eq!(used, size, "the pool is full");
    assert!(
        refused > 0,
        "past the pool's size, active keys are not evicted"
    );
    let warnings = b
        .hs_events
        .iter()
        .filter(|e| matches!(e, Event::PoolNearlyFull { .. }))
        .count();
    assert_eq!(warnings, 1);
    // Later the real client comes back: the flood's sessions have gone idle (past
    // `session_idle`), the assignment unused the longest goes.
    b.now = now + ResponderConfig::DEFAULT_SESSION_IDLE + Duration::from_secs(20);
    b.hs.handle_timeout(b.now);
    b.cl = client(3);
    let again = b.associate();
    assert!(
        again == real
            || b.hs_events
                .iter()
                .any(|e| matches!(e, Event::Evicted { expired: false, .. })),
        "its address ({again}) or a fresh one by eviction"
    );
    assert!(b.hs.counters().evicted >= 1 || again == real);
}

fn advert_of(b: &Bed) -> phandoff::wire::Advert {
    b.cl_events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Discovered { advert } => Some(advert.clone()),
            _ => None,
        })
        .expect("advert")
}

/// Past the handshake budget the HomeSpot answers Initiations with cookies and does no
/// Diffie-Hellman; a real client that receives the cookie gets through at once.
#[test]
fn under_a_flood_cookies_are_demanded_and_a_real_client_still_gets_in() {
    let mut cfg = config();
    cfg.handshake_rate = 50;
    let mut hs = Responder::new(
        cfg,
        phandoff::crypto::Identity::from_seed([1; 32]),
        rng(2),
        vec![],
    );
    let mut now = Instant(1_000_000);
    hs.handle_timeout(now);
    let mut probe = client(201);
    probe.query(0);
    exchange(&mut hs, &mut probe, now, 0, attacker_at());
    let advert = std::iter::from_fn(|| probe.poll_event())
        .find_map(|e| match e {
            ClientEvent::Discovered { advert } => Some(advert),
            _ => None,
        })
        .expect("advert");
    // One flood packet with a valid mac1, sent over and over (what a fast flooder does).
    let (_, n) = noise::Initiator::start(&[5; 32], &advert.noise_key, &advert.identity, [6; 32], 1)
        .expect("start");
    let mut m = Initiation {
        sender: 1,
        noise: n,
        mac1: [0; TAG_LEN],
        mac2: [0; TAG_LEN],
    };
    let bytes = Message::Initiation(m).emit();
    m.mac1 = noise::mac(&noise::mac1_key(&advert.noise_key), &bytes[..INIT_MAC1_AT]);
    let flood = Message::Initiation(m).emit();
    for _ in 0..5_000 {
        hs.handle_datagram(now, 0, attacker_at(), &flood);
        while hs.poll_transmit().is_some() {}
    }
    let c = hs.counters().clone();
    assert!(c.cookie_demanded >= 4_900, "{c:?}");
    assert!(
        c.bad_handshake + c.stale_timestamp <= 50,
        "DH work bounded by the budget: {c:?}"
    );
    // A real client in the middle of the flood: its first try gets a cookie, the second
    // (with mac2) gets through.
    let mut real = client(3);
    real.learn(advert);
    let at = SocketAddrV4::new(client_addr(0), PORT);
    real.link_up(now, 0, client_addr(0));
    now = now + Duration::from_millis(1);
    real.associate(now, 0);
    exchange(&mut hs, &mut real, now, 0, at);
    assert_eq!(real.counters().cookies, 1);
    assert!(std::iter::from_fn(|| real.poll_event())
        .any(|e| matches!(e, ClientEvent::Associated { .. })));
}

/// Query -> Advert is the one unauthenticated reply that is larger than its request: at most
/// a burst of 5 and 10 a second per source, so a spoofed source cannot be flooded with adverts.
#[test]
fn queries_are_answered_at_a_bounded_rate_per_source() {
    let mut hs = responder(vec![]);
    let now = Instant(1_000_000);
    hs.handle_timeout(now);
    while hs.poll_transmit().is_some() {}
    let q = Message::Query(phandoff::wire::Query { nonce: 1 }).emit();
    let adverts = |hs: &mut Responder| {
        std::iter::from_fn(|| hs.poll_transmit())
            .filter(|t| matches!(Message::parse(&t.payload), Ok(Message::Advert(_))))
            .count()
    };
    for _ in 0..100 {
        hs.handle_datagram(now, 0, attacker_at(), &q);
    }
    assert_eq!(adverts(&mut hs), 5);
    assert_eq!(hs.counters().queries_limited, 95);
    // Another source is answered; the first one again a second later.
    hs.handle_datagram(now, 0, SocketAddrV4::new(client_addr(0), PORT), &q);
    assert_eq!(adverts(&mut hs), 1);
    let later = now + Duration::from_secs(1);
    for _ in 0..100 {
        hs.handle_datagram(later, 0, attacker_at(), &q);
    }
    assert_eq!(adverts(&mut hs), 5, "10 a second, at most the burst of 5");
    // Version 1 (an unauthenticated Associate: header, client key, nonce) is refused and counted.
    let mut v1 = b"PH\x01\x03".to_vec();
    v1.extend_from_slice(&[7; 48]);
    hs.handle_datagram(later, 0, attacker_at(), &v1);
    assert_eq!(hs.counters().old_version, 1);
    assert!(hs.poll_transmit().is_none());
}
