//! Issue 12, acceptance 5: a link's interface deleted and re-created (as netifd and Wi-Fi
//! drivers do) is served again within 1 s of its return; homespotd started with one interface
//! missing serves the others, and the missing one once it appears.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType};
use dhcproto::{Decodable, Encodable};
use testkit::{veth, Topology};

const MAC: [u8; 6] = [2, 0, 0, 0x1f, 0, 1];

/// Broadcasts a DISCOVER (broadcast flag set) on `ifname` in the client namespace every
/// 50 ms until an OFFER comes or `limit` passes; returns when the OFFER came, counted from
/// the call.
fn first_offer(bed: &Bed, ifname: &str, limit: Duration) -> Option<(Duration, Ipv4Addr)> {
    let ifname = ifname.to_string();
    bed.topo
        .client
        .in_thread(move || -> Option<(Duration, Ipv4Addr)> {
            let t = Instant::now();
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).ok()?;
            s.set_reuse_address(true).ok()?;
            s.set_broadcast(true).ok()?;
            s.bind_device(Some(ifname.as_bytes())).ok()?;
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)).into())
                .ok()?;
            let s: UdpSocket = s.into();
            s.set_read_timeout(Some(Duration::from_millis(50))).ok()?;
            let mut d = Message::new(
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                &MAC,
            );
            d.set_flags(Flags::default().set_broadcast());
            d.opts_mut()
                .insert(DhcpOption::MessageType(MessageType::Discover));
            let bytes = d.to_vec().ok()?;
            let mut buf = [0u8; 1500];
            while t.elapsed() < limit {
                let _ = s.send_to(&bytes, (Ipv4Addr::BROADCAST, 67));
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    if let Ok(m) = Message::from_bytes(&buf[..n]) {
                        if m.opts().msg_type() == Some(MessageType::Offer) && m.chaddr() == MAC {
                            return Some((t.elapsed(), m.yiaddr()));
                        }
                    }
                }
            }
            None
        })
        .expect("client thread")
}

/// Re-creates link `i`'s veth pair with its address, both ends up.
fn create_link(topo: &Topology, i: usize) {
    let l = &topo.links[i];
    veth(&topo.homespot, &l.hs_if, &topo.client, &l.client_if).expect("veth");
    topo.homespot
        .run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", l.hs_addr),
            "dev",
            &l.hs_if,
        ])
        .expect("address");
    topo.homespot
        .run(&["ip", "link", "set", &l.hs_if, "up"])
        .expect("up");
    topo.client
        .run(&["ip", "link", "set", &l.client_if, "up"])
        .expect("up");
}

fn delete_link(topo: &Topology, i: usize) {
    topo.homespot
        .run(&["ip", "link", "del", &topo.links[i].hs_if])
        .expect("delete");
}

#[test]
fn a_recreated_interface_is_served_again_within_a_second() {
    need_root!();
    let mut bed = Bed::start(2, "").expect("bed");
    let (_, first) = first_offer(&bed, "eth0", Duration::from_secs(3)).expect("an offer");
    // A dhclient lease on the other link, renewed across the outage of link 0.
    let c = Dhclient::new(&bed.dir, "other").expect("files");
    client_run(&bed, &c.args(&["-1", "eth1"])).expect("lease on link 1");

    delete_link(&bed.topo, 0);
    std::thread::sleep(Duration::from_millis(1500));
    let gone = bed.log();
    create_link(&bed.topo, 0);
    let (took, again) =
        first_offer(&bed, "eth0", Duration::from_secs(5)).expect("an offer after the return");
    eprintln!("interface re-created: first OFFER after {took:?} (the same address: {again})");
    assert!(
        took <= Duration::from_secs(1),
        "served again after {took:?}"
    );
    assert_eq!(again, first, "the client's address is kept");
    assert!(gone.contains("interface gone"), "{gone}");
    // The other link never stopped: its client renews.
    client_run(&bed, &c.args(&["-1", "eth1"])).expect("renewal on link 1");
    let log = bed.stop_daemon().expect("stops cleanly");
    assert!(
        log.contains("interface re-created") || log.contains("interface present"),
        "{log}"
    );
}

#[test]
fn a_missing_interface_at_start_is_waited_for() {
    need_root!();
    let topo = Topology::new(2).expect("topology");
    delete_link(&topo, 1);
    let mut bed = Bed::start_on(topo, "", "").expect("homespotd starts without lan1");
    // Link 0 serves.
    let c = Dhclient::new(&bed.dir, "first").expect("files");
    client_run(&bed, &c.args(&["-1", "eth0"])).expect("lease on link 0");
    let status = std::process::Command::new(HOMESPOTD)
        .args(["status", "--json", "--socket"])
        .arg(bed.dir.join("status.sock"))
        .output()
        .expect("status");
    let snap: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(snap["links"][1]["present"], false, "{snap}");
    assert_eq!(snap["links"][0]["present"], true);
    create_link(&bed.topo, 1);
    let (took, addr) =
        first_offer(&bed, "eth1", Duration::from_secs(5)).expect("an offer once lan1 exists");
    eprintln!("missing interface appeared: first OFFER after {took:?} ({addr})");
    assert!(took <= Duration::from_secs(1), "{took:?}");
    assert_eq!(addr.octets()[2], 2, "from link 1's pool");
    let log = bed.stop_daemon().expect("stops cleanly");
    assert!(log.contains("the link waits for it"), "{log}");
}
