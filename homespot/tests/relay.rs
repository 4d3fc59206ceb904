//! Issue 12, acceptance 4: relayed packets from a LAN host that is not a configured relay take
//! no address (each refusal warned, rate-limited); a configured relay still works, with options
//! 82 and 61 echoed; an INFORM whose parameter list is in the overloaded `file` field gets
//! option 252.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use dhcproto::v4::relay::{RelayAgentInformation, RelayInfo};
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};

const HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 50);
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 254);
/// The relay's address on the network it relays for (link 1's subnet).
const GIADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 254);

fn message(typ: MessageType, mac: u8, giaddr: Ipv4Addr) -> Message {
    let mut m = Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        giaddr,
        &[2, 0, 0, 0, 0x42, mac],
    );
    m.set_hops(1);
    m.opts_mut().insert(DhcpOption::MessageType(typ));
    m
}

/// Sends `m` from `from`:`port` in the client namespace; the first answer within 2 s, if any.
fn exchange(bed: &Bed, from: Ipv4Addr, port: u16, m: &Message) -> Option<Message> {
    let bytes = m.to_vec().expect("encode");
    bed.topo
        .client
        .in_thread(move || -> Option<Message> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).ok()?;
            s.set_reuse_address(true).ok()?;
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
                .ok()?;
            let s: UdpSocket = s.into();
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            // Sent from `from`:`port` by a second socket (both bound with SO_REUSEADDR).
            let tx =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).ok()?;
            tx.set_reuse_address(true).ok()?;
            tx.bind(&SocketAddr::from((from, port)).into()).ok()?;
            let tx: UdpSocket = tx.into();
            tx.send_to(&bytes, (Ipv4Addr::new(10, 77, 1, 1), 67)).ok()?;
            let mut buf = [0u8; 1500];
            let (n, _) = s.recv_from(&mut buf).ok()?;
            Message::from_bytes(&buf[..n]).ok()
        })
        .expect("client thread")
}

#[test]
fn only_configured_relays_are_served_and_options_are_echoed() {
    need_root!();
    let mut bed = Bed::start_with(
        2,
        "wpad_url = \"http://10.77.1.1/wpad.dat\"",
        "relays = [\"10.77.1.254\"]\n[proxy]\n",
    )
    .expect("bed");
    for a in [HOST, RELAY, GIADDR] {
        bed.topo
            .client
            .run(&["ip", "addr", "add", &format!("{a}/32"), "dev", "eth0"])
            .expect("address");
    }
    bed.topo
        .client
        .run(&["ip", "route", "add", "10.77.1.0/24", "dev", "eth0"])
        .expect("route");
    // A LAN host claims to relay for link 1: 50 REQUESTs for its addresses, no DISCOVER.
    let mut answered = 0;
    for n in 0..50u8 {
        let mut r = message(MessageType::Request, n, Ipv4Addr::new(10, 77, 2, 1));
        r.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                10,
                77,
                2,
                100 + n,
            )));
        r.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 77, 2, 1)));
        if n < 3 {
            answered += usize::from(exchange(&bed, HOST, 67, &r).is_some());
        } else {
            let bytes = r.to_vec().expect("encode");
            bed.topo
                .client
                .in_thread(move || {
                    let s = UdpSocket::bind((HOST, 0)).expect("socket");
                    s.send_to(&bytes, (Ipv4Addr::new(10, 77, 1, 1), 67))
                        .expect("send");
                })
                .expect("thread");
        }
    }
    assert_eq!(answered, 0, "a spoofed relay gets no answer");

    // The configured relay: DISCOVER and REQUEST for a client on link 1, with 61 and 82.
    let mut info = RelayAgentInformation::default();
    info.insert(RelayInfo::AgentCircuitId(b"ap-7".to_vec()));
    let id = DhcpOption::ClientIdentifier(b"\x01laptop-7".to_vec());
    let mut d = message(MessageType::Discover, 200, GIADDR);
    d.opts_mut().insert(id.clone());
    d.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(info.clone()));
    let offer = exchange(&bed, RELAY, 67, &d).expect("an OFFER to the relay");
    let addr = offer.yiaddr();
    assert!(
        (100..200).contains(&addr.octets()[3]) && addr.octets()[2] == 2,
        "from link 1's pool: {addr}"
    );
    assert_eq!(offer.opts().get(OptionCode::ClientIdentifier), Some(&id));
    assert_eq!(
        offer.opts().get(OptionCode::RelayAgentInformation),
        Some(&DhcpOption::RelayAgentInformation(info.clone()))
    );
    let mut r = message(MessageType::Request, 200, GIADDR);
    r.opts_mut().insert(id.clone());
    r.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(info.clone()));
    r.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
    r.opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 77, 2, 1)));
    let ack = exchange(&bed, RELAY, 67, &r).expect("an ACK to the relay");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), addr);
    assert_eq!(
        ack.opts().get(OptionCode::RelayAgentInformation),
        Some(&DhcpOption::RelayAgentInformation(info))
    );

    // An INFORM with its parameter request list in `file` (option 52 = 1).
    let mut inf = Message::new(
        HOST,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &[2, 0, 0, 0, 0x43, 1],
    );
    inf.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Inform));
    inf.opts_mut().insert(DhcpOption::OptionOverload(1));
    let mut bytes = inf.to_vec().expect("encode");
    bytes[108..113].copy_from_slice(&[55, 2, 252, 1, 255]);
    let reply = bed
        .topo
        .client
        .in_thread(move || -> Option<Message> {
            let s = UdpSocket::bind((HOST, 68)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.send_to(&bytes, (Ipv4Addr::new(10, 77, 1, 1), 67)).ok()?;
            let mut buf = [0u8; 1500];
            let (n, _) = s.recv_from(&mut buf).ok()?;
            Message::from_bytes(&buf[..n]).ok()
        })
        .expect("thread")
        .expect("an answer to the overloaded INFORM");
    match reply.opts().get(OptionCode::Unknown(252)) {
        Some(DhcpOption::Unknown(u)) => assert_eq!(u.data(), b"http://10.77.1.1/wpad.dat"),
        other => panic!("no option 252: {other:?}"),
    }

    let log = bed.stop_daemon().expect("stops");
    let refused = Bed::counter(&log, "refused_relay").unwrap_or(0);
    let acks = Bed::counter(&log, "acks").unwrap_or(0);
    let warned = log.matches("refused a relayed DHCP packet").count();
    eprintln!(
        "spoofed relay: {refused} refused, {warned} warn lines; configured relay: {acks} ACK"
    );
    assert_eq!(refused, 50, "{log}");
    assert_eq!(acks, 1, "only the configured relay's client got an address");
    assert!((1..=10).contains(&warned), "warned, rate-limited: {warned}");
    assert!(
        log.contains("DHCP packet"),
        "--log debug has a line per packet"
    );
}
