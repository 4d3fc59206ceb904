//! Acceptance 3: under perfdhcp load, homespotd is killed with SIGKILL and restarted on the same
//! database. Every address a client saw ACKed (captured on the wire) is still that client's,
//! and no address was ever ACKed to two clients.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use dhcproto::v4::MessageType;
use homespot::dhcp::lease::LeaseState;
use testkit::Scratch;

#[test]
fn kill9_under_load_loses_no_acknowledged_lease() {
    need_root!();
    let dir = Scratch::new("durable").expect("scratch");
    let (topo, cfg) =
        perfdhcp_bed(&dir.join("leases.redb"), &dir.join("status.sock")).expect("topology");
    let link = topo.links[0].clone();
    let mut bed = Bed::launch(topo, dir, &cfg).expect("homespotd");
    let pcap = bed.dir.join("load.pcap");
    let mut dump = bed
        .topo
        .client
        .capture(
            &link.client_if,
            &["-B", "65536"],
            "udp port 67 or udp port 68",
            &pcap,
            &bed.dir.join("tcpdump.log"),
        )
        .expect("tcpdump");

    // 20,000 simulated clients at 2,000 DORA/s for 8 s; perfdhcp repeats clients, which must
    // get their own address back.
    let mut load = bed
        .topo
        .client
        .spawn(
            &[
                "perfdhcp",
                "-4",
                "-r",
                "2000",
                "-R",
                "20000",
                "-p",
                "8",
                "-l",
                &link.client_if,
            ],
            &bed.dir.join("perfdhcp.log"),
        )
        .expect("perfdhcp");
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = now_micros();
    bed.daemon
        .as_mut()
        .expect("running")
        .kill9()
        .expect("kill -9");
    bed.daemon = None;
    bed.start_daemon().expect("restart on the same database");
    let restarted_at = now_micros();
    load.wait(Duration::from_secs(30)).expect("perfdhcp ends");
    let log = bed.stop_daemon().expect("clean stop");
    std::thread::sleep(Duration::from_millis(300));
    dump.stop(Duration::from_secs(5)).expect("tcpdump stops");

    let data = std::fs::read(&pcap).expect("capture");
    let acks: Vec<(Vec<u8>, Ipv4Addr, u64)> = pcap::dhcp_messages(&data)
        .into_iter()
        .filter(|c| {
            c.msg.opts().msg_type() == Some(MessageType::Ack) && !c.msg.yiaddr().is_unspecified()
        })
        .map(|c| (c.msg.chaddr().to_vec(), c.msg.yiaddr(), c.micros))
        .collect();
    let before = acks.iter().filter(|a| a.2 < killed_at).count();
    let after = acks.iter().filter(|a| a.2 > restarted_at).count();
    eprintln!(
        "ACKs seen on the wire: {} ({before} before the kill -9, {after} after the restart)\n{}",
        acks.len(),
        dump.log()
            .lines()
            .filter(|l| l.contains("dropped"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        before > 1000,
        "load before the kill: {before}\n{}",
        std::fs::read_to_string(bed.dir.join("perfdhcp.log")).unwrap_or_default()
    );
    assert!(after > 1000, "load after the restart: {after}\n{log}");

    // No address ever went to two clients.
    let mut holders: HashMap<Ipv4Addr, HashSet<Vec<u8>>> = HashMap::new();
    for (mac, addr, _) in &acks {
        holders.entry(*addr).or_default().insert(mac.clone());
    }
    let shared: Vec<_> = holders.iter().filter(|(_, m)| m.len() > 1).collect();
    assert!(
        shared.is_empty(),
        "addresses ACKed to two clients: {shared:?}"
    );

    // Every ACKed address is still that client's in the database.
    let leases = leases_in(&bed.db).expect("the database");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut checked = 0;
    for (mac, addr, _) in &acks {
        let l = leases
            .get(addr)
            .unwrap_or_else(|| panic!("{addr} was ACKed but is not in the database"));
        assert!(
            l.client.ends_with(mac),
            "{addr} ACKed to {mac:02x?} but held by {:02x?}",
            l.client
        );
        assert_eq!(l.state, LeaseState::Bound);
        assert!(l.expires > now);
        checked += 1;
    }
    eprintln!(
        "checked {checked} ACKs against {} leases in the database: all held",
        leases.len()
    );
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
