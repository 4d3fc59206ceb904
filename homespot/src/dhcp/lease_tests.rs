use std::path::Path;

use super::*;
use crate::config::Config;

fn table() -> LeaseTable {
    let cfg = Config::parse(
        Path::new("t.toml"),
        "[[link]]\nname=\"a\"\ninterface=\"x0\"\naddress=\"10.0.0.1/24\"\n\
         pools=[\"10.0.0.10-10.0.0.11\", \"10.0.0.20-10.0.0.20\"]\n",
    )
    .expect("config");
    LeaseTable::new(&cfg.links)
}

fn bound(addr: [u8; 4], client: u8, expires: Secs) -> Lease {
    Lease {
        addr: addr.into(),
        client: vec![0, 1, client],
        expires,
        state: LeaseState::Bound,
        mac: None,
        hostname: None,
    }
}

#[test]
fn fresh_addresses_span_every_pool_range() {
    let mut t = table();
    let mut got = Vec::new();
    for c in 0..3u8 {
        let a = t.allocate(0, &[c], 100).expect("free address");
        t.put(0, bound(a.octets(), c, 1000));
        got.push(a.octets()[3]);
    }
    assert_eq!(got, vec![10, 11, 20]);
    assert_eq!(t.allocate(0, &[9], 100), None);
    assert_eq!(t.active(100), 3);
}

#[test]
fn restored_leases_are_not_fresh() {
    let mut t = table();
    assert!(t.restore(bound([10, 0, 0, 10], 1, 1000)));
    assert!(
        !t.restore(bound([192, 168, 0, 10], 1, 1000)),
        "outside every link"
    );
    assert_eq!(t.allocate(0, &[2], 100), Some([10, 0, 0, 11].into()));
    assert_eq!(t.address_of(0, &[0, 1, 1]), Some([10, 0, 0, 10].into()));
}

#[test]
fn lapsed_offers_come_back() {
    let mut t = table();
    for c in 0..3u8 {
        let a = t.allocate(0, &[c], 100).expect("free");
        t.offer(0, a, &[c], 160);
    }
    t.prune_offers(200);
    assert!(t.allocate(0, &[7], 200).is_some());
}

/// Issue 12: offers to ever new clients (a DISCOVER flood from random MACs) never grow the
/// table past the pool: an address offered to a newcomer is no longer the old client's.
#[test]
fn offers_stay_bounded_by_the_pool_under_a_flood_of_clients() {
    let mut t = table();
    for i in 0..10_000u32 {
        let client = i.to_be_bytes();
        let addr = [10, 0, 0, [10, 11, 20][(i % 3) as usize]];
        t.offer(0, addr.into(), &client, 1_000);
        assert!(
            t.offers_outstanding() <= 3,
            "after {i}: {}",
            t.offers_outstanding()
        );
    }
    t.prune_offers(2_000);
    assert_eq!(t.offers_outstanding(), 0);
}

#[test]
fn under_a_flood_the_first_offer_made_is_reused_first_even_within_one_second() {
    // Three addresses, all offered within the same second (the clock has whole seconds):
    // the next newcomer takes the offer made first, never the one just made on a lower
    // address (which would take a real client's offer before its REQUEST arrives).
    let mut t = table();
    let now: Secs = 100;
    let until = now + 60;
    for c in [1u8, 2, 3] {
        let a = t.allocate(0, &[9, c], now).expect("an address");
        t.offer(0, a, &[9, c], until);
    }
    // The newest offer goes on the lowest address: the one the first client held before.
    let first = t.offered_to(0, &[9, 1], now).expect("offered");
    let a = t.allocate(0, &[9, 4], now).expect("reused");
    assert_eq!(a, first, "the first offer made is reused first");
    t.offer(0, a, &[9, 4], until);
    let second = t.offered_to(0, &[9, 2], now).expect("offered");
    let b = t.allocate(0, &[9, 5], now).expect("reused");
    assert_eq!(b, second, "then the second; not the newest on {a}");
    assert!(
        t.is_offered_to(a, &[9, 4], now),
        "client 4's offer survives"
    );
}
