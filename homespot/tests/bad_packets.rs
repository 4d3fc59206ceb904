//! Acceptance 4: 10,000+ random and mutated packets at the server are dropped and counted, no
//! panic; a real client gets a lease afterwards. Also our own DHCPINFORM sender: the answer
//! carries option 252, no lease time, no yiaddr, and comes to ciaddr.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 50);

fn valid(typ: MessageType, rng: &mut StdRng) -> Vec<u8> {
    let mac: [u8; 6] = [2, 0, rng.random(), rng.random(), rng.random(), rng.random()];
    let mut m = Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.opts_mut().insert(DhcpOption::MessageType(typ));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::Router,
        OptionCode::Unknown(252),
    ]));
    if typ == MessageType::Request {
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                10,
                77,
                1,
                rng.random(),
            )));
    }
    m.to_vec().unwrap_or_default()
}

/// One bad packet: random bytes, or a valid message mutated in one of several ways.
fn bad_packet(rng: &mut StdRng) -> Vec<u8> {
    let types = [
        MessageType::Discover,
        MessageType::Request,
        MessageType::Inform,
        MessageType::Release,
        MessageType::Decline,
    ];
    let mut p = valid(types[rng.random_range(0..types.len())], rng);
    match rng.random_range(0..8) {
        0 => (0..rng.random_range(0..1400))
            .map(|_| rng.random())
            .collect(),
        1 => {
            p.truncate(rng.random_range(0..p.len()));
            p
        }
        2 => {
            for _ in 0..rng.random_range(1..20) {
                let i = rng.random_range(0..p.len());
                p[i] ^= 1 << rng.random_range(0..8);
            }
            p
        }
        3 => {
            p[2] = rng.random_range(17..=255); // hlen past chaddr
            p
        }
        4 => {
            p[0] = 2; // a BOOTREPLY sent to the server
            p
        }
        5 => {
            // Options with lengths that run past the end.
            p.truncate(240);
            for _ in 0..rng.random_range(1..10) {
                p.push(rng.random());
                p.push(rng.random());
            }
            p
        }
        6 => {
            p.resize(rng.random_range(4097..6000), 0xff); // oversized
            p
        }
        _ => {
            let i = rng.random_range(240..p.len().max(241)).min(p.len());
            p.splice(
                i..i,
                (0..rng.random_range(1..300)).map(|_| rng.random::<u8>()),
            );
            p
        }
    }
}

#[test]
fn ten_thousand_bad_packets_then_a_real_lease() {
    need_root!();
    let mut bed = Bed::start(1, "").expect("test bed");
    let link = bed.topo.links[0].clone();
    bed.topo
        .client
        .run(&[
            "ip",
            "addr",
            "add",
            &format!("{CLIENT_ADDR}/24"),
            "dev",
            &link.client_if,
        ])
        .expect("addr");
    let iface = link.client_if.clone();
    let server = link.hs_addr;
    let sent = bed
        .topo
        .client
        .in_thread(move || -> std::io::Result<usize> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            s.set_broadcast(true)?;
            s.bind_device(Some(iface.as_bytes()))?;
            s.bind(&SocketAddr::from((CLIENT_ADDR, 0)).into())?;
            let s: UdpSocket = s.into();
            let mut rng = StdRng::seed_from_u64(0x5eed);
            let mut sent = 0;
            for i in 0..10_500 {
                let p = bad_packet(&mut rng);
                let to = if i % 2 == 0 {
                    (server, 67)
                } else {
                    (Ipv4Addr::BROADCAST, 67)
                };
                if s.send_to(&p, to).is_ok() {
                    sent += 1;
                }
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok(sent)
        })
        .expect("thread")
        .expect("send");
    assert!(sent >= 10_000, "sent {sent}");

    // A real client still gets a lease.
    bed.topo
        .client
        .run(&["ip", "-4", "addr", "flush", "dev", &link.client_if])
        .expect("flush");
    let c = Dhclient::new(&bed.dir, "after").expect("files");
    client_run(&bed, &c.args(&["-1", &link.client_if])).expect("a lease after the storm");
    let log = bed
        .stop_daemon()
        .expect("homespotd survived and stops cleanly");
    let received = Bed::counter(&log, "received").unwrap_or(0);
    let malformed = Bed::counter(&log, "malformed").unwrap_or(0);
    let wrong_op = Bed::counter(&log, "wrong_op").unwrap_or(0);
    eprintln!("sent {sent} bad packets; server: received={received} malformed={malformed} wrong_op={wrong_op}");
    assert!(received >= 10_000, "{log}");
    assert!(malformed >= 3_000, "{log}");
    assert!(wrong_op >= 500, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn inform_from_our_sender() {
    need_root!();
    let bed = Bed::start(1, "").expect("test bed");
    let link = bed.topo.links[0].clone();
    bed.topo
        .client
        .run(&[
            "ip",
            "addr",
            "add",
            &format!("{CLIENT_ADDR}/24"),
            "dev",
            &link.client_if,
        ])
        .expect("addr");
    let server = link.hs_addr;
    let reply = bed
        .topo
        .client
        .in_thread(move || -> std::io::Result<Message> {
            let s = UdpSocket::bind((CLIENT_ADDR, 68))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut m = Message::new(
                CLIENT_ADDR,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                &[2, 0, 0, 0, 0, 9],
            );
            m.opts_mut()
                .insert(DhcpOption::MessageType(MessageType::Inform));
            m.opts_mut()
                .insert(DhcpOption::ParameterRequestList(vec![OptionCode::Unknown(
                    252,
                )]));
            s.send_to(&m.to_vec().map_err(std::io::Error::other)?, (server, 67))?;
            let mut buf = [0u8; 1500];
            let (n, _) = s.recv_from(&mut buf)?;
            Message::from_bytes(&buf[..n]).map_err(std::io::Error::other)
        })
        .expect("thread")
        .expect("an answer to the INFORM, unicast to ciaddr");
    assert_eq!(reply.opcode(), Opcode::BootReply);
    assert_eq!(reply.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(reply.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(reply.ciaddr(), CLIENT_ADDR);
    assert!(reply.opts().get(OptionCode::AddressLeaseTime).is_none());
    match reply.opts().get(OptionCode::Unknown(252)) {
        Some(DhcpOption::Unknown(u)) => {
            assert_eq!(u.data(), format!("http://{server}/wpad.dat").as_bytes())
        }
        other => panic!("no option 252: {other:?}"),
    }
}
