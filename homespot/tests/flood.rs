//! Issue 12, acceptance 3: a 200 s DISCOVER flood from random MACs (500 a second, each MAC
//! new): the table of outstanding offers and homespotd's memory stay bounded (reported every
//! 20 s), and a real client still gets a lease during and after it.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dhcproto::v4::{DhcpOption, Message, MessageType};
use dhcproto::Encodable;
use rand::{Rng, SeedableRng};

const FLOOD: Duration = Duration::from_secs(200);
const RATE: u64 = 500;

fn status(bed: &Bed) -> serde_json::Value {
    let out = std::process::Command::new(HOMESPOTD)
        .args(["status", "--json", "--socket"])
        .arg(bed.dir.join("status.sock"))
        .output()
        .expect("homespotd status");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn a_discover_flood_from_random_macs_stays_bounded() {
    need_root!();
    let bed = Bed::start(1, "").expect("bed");
    let pid = bed.daemon.as_ref().expect("daemon").pid();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let flood = bed
        .topo
        .client
        .spawn_thread(move || -> u64 {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                .expect("socket");
            s.set_broadcast(true).expect("broadcast");
            s.bind_device(Some(b"eth0")).expect("device");
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())
                .expect("bind");
            let s: UdpSocket = s.into();
            let mut rng = rand::rngs::StdRng::seed_from_u64(200);
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < FLOOD && !flag.load(Ordering::Relaxed) {
                let mac: [u8; 6] = [
                    2,
                    rng.random(),
                    rng.random(),
                    rng.random(),
                    rng.random(),
                    rng.random(),
                ];
                let mut m = Message::new(
                    Ipv4Addr::UNSPECIFIED,
                    Ipv4Addr::UNSPECIFIED,
                    Ipv4Addr::UNSPECIFIED,
                    Ipv4Addr::UNSPECIFIED,
                    &mac,
                );
                m.opts_mut()
                    .insert(DhcpOption::MessageType(MessageType::Discover));
                if let Ok(b) = m.to_vec() {
                    if s.send_to(&b, (Ipv4Addr::BROADCAST, 67)).is_ok() {
                        sent += 1;
                    }
                }
                // Paced: `RATE` a second on average.
                let due = start + Duration::from_micros(sent * 1_000_000 / RATE);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            sent
        })
        .expect("flood thread");

    let start = Instant::now();
    let mut rows = Vec::new();
    let mut leases = Vec::new();
    let mut n = 0;
    while start.elapsed() < FLOOD {
        let into = start.elapsed().as_millis() as u64 % 20_000;
        std::thread::sleep(Duration::from_millis(20_000 - into));
        let s = status(&bed);
        let dhcp = &s["counters"]["dhcp"];
        let row = (
            start.elapsed().as_secs(),
            dhcp["received"].as_u64().unwrap_or(0),
            dhcp["offers"].as_u64().unwrap_or(0),
            dhcp["offers_outstanding"].as_u64().unwrap_or(u64::MAX),
            dhcp["rate_limited"].as_u64().unwrap_or(0),
            testkit::rss_kb(pid),
        );
        eprintln!(
            "t={:>3}s received={} offers={} outstanding_offers={} rate_limited={} rss={} kB",
            row.0, row.1, row.2, row.3, row.4, row.5
        );
        rows.push(row);
        // A real client, in the middle of the flood.
        if start.elapsed() > Duration::from_secs(90) && leases.is_empty() {
            n += 1;
            let c = Dhclient::new(&bed.dir, &format!("real{n}")).expect("files");
            let t = Instant::now();
            client_run(&bed, &c.args(&["-1", "eth0"])).expect("a lease during the flood");
            leases.push(t.elapsed());
            let _ = bed
                .topo
                .client
                .run(&["ip", "-4", "addr", "flush", "dev", "eth0"]);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().expect("join").expect("flood");
    let c = Dhclient::new(&bed.dir, "after").expect("files");
    let t = Instant::now();
    client_run(&bed, &c.args(&["-1", "eth0"])).expect("a lease after the flood");
    leases.push(t.elapsed());
    eprintln!(
        "flood: {sent} DISCOVERs from random MACs in {FLOOD:?}; real client leases took {leases:?}"
    );
    assert!(sent >= RATE * FLOOD.as_secs() * 9 / 10, "sent {sent}");
    let max_offers = rows.iter().map(|r| r.3).max().unwrap_or(u64::MAX);
    assert!(
        max_offers <= 100,
        "outstanding offers bounded by the pool: {max_offers}"
    );
    let first_rss = rows.first().map(|r| r.5).unwrap_or(0);
    let last_rss = rows.last().map(|r| r.5).unwrap_or(u64::MAX);
    assert!(
        last_rss < first_rss + 2048,
        "memory bounded: {first_rss} kB then {last_rss} kB"
    );
    assert_eq!(leases.len(), 2, "a lease during and after the flood");
}
