//! Timeline tests of the engine: every call has an explicit `now`.

use std::net::Ipv4Addr;
use std::path::Path;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::Encodable;

use super::*;
use crate::config::Config;

const T0: Secs = 1_800_000_000;
/// Where the test's clients send from (a client without an address sends from 0.0.0.0).
const CLIENT_SRC: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
/// The relay agent the relay tests configure.
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 254);

fn config(extra_link: &str, server: &str) -> Config {
    let text = format!(
        r#"
[server]
lease_db = "/nonexistent/leases.redb"
decline_quarantine = "10m"
{server}
[[link]]
name = "wifi"
interface = "lan0"
address = "10.0.1.1/24"
pools = ["10.0.1.100-10.0.1.102"]
lease_time = "1h"
dns = ["10.0.1.1"]
{extra_link}
[[link]]
name = "bt"
interface = "lan1"
address = "10.0.2.1/24"
pools = ["10.0.2.100-10.0.2.199"]
"#
    );
    Config::parse(Path::new("t.toml"), &text).expect("test config")
}

fn engine() -> Engine {
    Engine::new(&config("", ""))
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn msg(typ: MessageType, n: u8) -> Message {
    let mut m = Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac(n),
    );
    m.opts_mut().insert(DhcpOption::MessageType(typ));
    m
}

fn with(mut m: Message, opt: DhcpOption) -> Message {
    m.opts_mut().insert(opt);
    m
}

fn send(e: &mut Engine, now: Secs, link: usize, m: &Message) -> Outcome {
    send_from(e, now, link, CLIENT_SRC, m)
}

fn send_from(e: &mut Engine, now: Secs, link: usize, src: Ipv4Addr, m: &Message) -> Outcome {
    let bytes = m.to_vec().expect("encode");
    e.handle_packet(now, link, src, &bytes)
}

fn reply_type(o: &Outcome) -> Option<MessageType> {
    o.reply.as_ref().and_then(|r| r.message.opts().msg_type())
}

/// DISCOVER then REQUEST (SELECTING) for client `n` on link 0; returns the ACKed address.
fn dora(e: &mut Engine, now: Secs, n: u8) -> Ipv4Addr {
    let offer = send(e, now, 0, &msg(MessageType::Discover, n));
    assert_eq!(reply_type(&offer), Some(MessageType::Offer));
    let addr = offer.reply.expect("offer").message.yiaddr();
    let req = with(
        with(
            msg(MessageType::Request, n),
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 1, 1)),
        ),
        DhcpOption::RequestedIpAddress(addr),
    );
    let ack = send(e, now, 0, &req);
    assert_eq!(
        reply_type(&ack),
        Some(MessageType::Ack),
        "{:?}",
        e.counters()
    );
    assert_eq!(ack.persist.as_ref().map(|l| l.addr), Some(addr));
    addr
}

#[test]
fn discover_offer_request_ack() {
    let mut e = engine();
    let d = with(
        msg(MessageType::Discover, 1),
        DhcpOption::ParameterRequestList(vec![OptionCode::Router, OptionCode::Unknown(252)]),
    );
    let o = send(&mut e, T0, 0, &d);
    let r = o.reply.expect("offer");
    assert!(o.persist.is_none(), "an OFFER is not a lease");
    assert_eq!(r.message.yiaddr(), Ipv4Addr::new(10, 0, 1, 100));
    assert_eq!(
        r.dest,
        Destination::Hardware {
            addr: Ipv4Addr::new(10, 0, 1, 100),
            chaddr: mac(1)
        }
    );
    let opts = r.message.opts();
    assert_eq!(
        opts.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 1, 1)]))
    );
    assert_eq!(
        opts.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        opts.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 1, 1)))
    );
    assert!(opts.get(OptionCode::Unknown(252)).is_some());
    assert_eq!(dora(&mut e, T0, 1), Ipv4Addr::new(10, 0, 1, 100));
    assert_eq!(e.counters().acks, 1);
}

#[test]
fn wpad_only_when_asked_or_always() {
    let mut e = engine();
    let o = send(&mut e, T0, 0, &msg(MessageType::Discover, 1));
    assert!(o
        .reply
        .expect("offer")
        .message
        .opts()
        .get(OptionCode::Unknown(252))
        .is_none());
    let mut e = Engine::new(&config("wpad_always = true", ""));
    let o = send(&mut e, T0, 0, &msg(MessageType::Discover, 1));
    assert!(o
        .reply
        .expect("offer")
        .message
        .opts()
        .get(OptionCode::Unknown(252))
        .is_some());
}

#[test]
fn repeated_discover_gets_the_same_offer() {
    let mut e = engine();
    let a = send(&mut e, T0, 0, &msg(MessageType::Discover, 1))
        .reply
        .expect("offer")
        .message
        .yiaddr();
    let b = send(&mut e, T0 + 2, 0, &msg(MessageType::Discover, 1))
        .reply
        .expect("offer")
        .message
        .yiaddr();
    assert_eq!(a, b);
    let c = send(&mut e, T0 + 2, 0, &msg(MessageType::Discover, 2))
        .reply
        .expect("offer")
        .message
        .yiaddr();
    assert_ne!(
        a, c,
        "an outstanding offer is not given to another client while free ones remain"
    );
}

#[test]
fn request_for_another_server_withdraws_our_offer() {
    let mut e = engine();
    let a = send(&mut e, T0, 0, &msg(MessageType::Discover, 1))
        .reply
        .expect("offer")
        .message
        .yiaddr();
    let req = with(
        with(
            msg(MessageType::Request, 1),
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 1, 9)),
        ),
        DhcpOption::RequestedIpAddress(a),
    );
    let o = send(&mut e, T0, 0, &req);
    assert!(o.reply.is_none() && o.persist.is_none());
    // Never-used addresses go first; then the withdrawn one is free again.
    let offered: Vec<Ipv4Addr> = (2..5)
        .map(|n| {
            send(&mut e, T0, 0, &msg(MessageType::Discover, n))
                .reply
                .expect("offer")
                .message
                .yiaddr()
        })
        .collect();
    assert_eq!(offered[2], a, "{offered:?}");
}

#[test]
fn init_reboot_ack_nak_or_silence() {
    let mut e = engine();
    let a = dora(&mut e, T0, 1);
    let reboot = |n: u8, addr: Ipv4Addr| {
        with(
            msg(MessageType::Request, n),
            DhcpOption::RequestedIpAddress(addr),
        )
    };
    // Its own address: ACK.
    assert_eq!(
        reply_type(&send(&mut e, T0 + 5, 0, &reboot(1, a))),
        Some(MessageType::Ack)
    );
    // An address of another subnet (the client moved): NAK, broadcast.
    let o = send(&mut e, T0 + 5, 0, &reboot(1, Ipv4Addr::new(192, 168, 1, 7)));
    assert_eq!(reply_type(&o), Some(MessageType::Nak));
    assert_eq!(o.reply.expect("nak").dest, Destination::Broadcast);
    // Another client's address: NAK.
    assert_eq!(
        reply_type(&send(&mut e, T0 + 5, 0, &reboot(2, a))),
        Some(MessageType::Nak)
    );
    // A client we have no record of, asking for a free address: silence (RFC 2131 4.3.2).
    let o = send(&mut e, T0 + 5, 0, &reboot(3, Ipv4Addr::new(10, 0, 1, 101)));
    assert!(o.reply.is_none());
    // A client we know, asking for a different address than its own: NAK.
    assert_eq!(
        reply_type(&send(
            &mut e,
            T0 + 5,
            0,
            &reboot(1, Ipv4Addr::new(10, 0, 1, 101))
        )),
        Some(MessageType::Nak)
    );
}

#[test]
fn renew_and_rebind_are_unicast_to_ciaddr() {
    let mut e = engine();
    let a = dora(&mut e, T0, 1);
    let mut renew = msg(MessageType::Request, 1);
    renew.set_ciaddr(a);
    let o = send(&mut e, T0 + 1800, 0, &renew);
    assert_eq!(reply_type(&o), Some(MessageType::Ack));
    assert_eq!(
        o.persist.as_ref().map(|l| l.expires),
        Some(T0 + 1800 + 3600)
    );
    let r = o.reply.expect("ack");
    assert_eq!(r.dest, Destination::Unicast(a));
    assert_eq!(r.message.ciaddr(), a);
}

#[test]
fn release_frees_and_remembers() {
    let mut e = engine();
    let a = dora(&mut e, T0, 1);
    let mut rel = with(
        msg(MessageType::Release, 1),
        DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 1, 1)),
    );
    rel.set_ciaddr(a);
    let o = send(&mut e, T0 + 10, 0, &rel);
    assert!(o.reply.is_none());
    assert_eq!(
        o.persist.as_ref().map(|l| l.state),
        Some(LeaseState::Released)
    );
    // Another client's RELEASE of it is ignored.
    let mut fake = msg(MessageType::Release, 9);
    fake.set_ciaddr(a);
    assert!(send(&mut e, T0 + 10, 0, &fake).persist.is_none());
    // The same client comes back to the same address.
    assert_eq!(dora(&mut e, T0 + 20, 1), a);
}

#[test]
fn decline_quarantines_the_address() {
    let mut e = engine();
    let a = dora(&mut e, T0, 1);
    let d = with(
        msg(MessageType::Decline, 1),
        DhcpOption::RequestedIpAddress(a),
    );
    let o = send(&mut e, T0 + 1, 0, &d);
    assert_eq!(
        o.persist.as_ref().map(|l| l.state),
        Some(LeaseState::Declined)
    );
    assert_eq!(e.counters().declines, 1);
    // The pool has three addresses: the other two go out, the declined one does not.
    let b = dora(&mut e, T0 + 2, 2);
    let c = dora(&mut e, T0 + 2, 3);
    assert!(b != a && c != a);
    assert!(send(&mut e, T0 + 2, 0, &msg(MessageType::Discover, 4))
        .reply
        .is_none());
    assert_eq!(e.counters().exhausted, 1);
    // After the quarantine, it is reused.
    assert_eq!(dora(&mut e, T0 + 601, 4), a);
}

#[test]
fn inform_answers_without_lease() {
    let mut e = engine();
    let mut inf = with(
        msg(MessageType::Inform, 1),
        DhcpOption::ParameterRequestList(vec![OptionCode::Unknown(252)]),
    );
    inf.set_ciaddr(Ipv4Addr::new(10, 0, 1, 50));
    let o = send(&mut e, T0, 0, &inf);
    assert!(o.persist.is_none());
    let r = o.reply.expect("ack");
    assert_eq!(r.dest, Destination::Unicast(Ipv4Addr::new(10, 0, 1, 50)));
    assert_eq!(r.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(r.message.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert!(r.message.opts().get(OptionCode::Unknown(252)).is_some());
}

#[test]
fn relayed_requests_use_the_giaddr_link_and_go_back_to_the_relay() {
    let mut e = Engine::new(&config("", "relays = [\"10.0.1.254\"]"));
    let mut d = msg(MessageType::Discover, 1);
    d.set_giaddr(Ipv4Addr::new(10, 0, 2, 1));
    d.opts_mut()
        .insert(DhcpOption::ClientIdentifier(vec![0xff, 1, 2, 3]));
    let mut info = dhcproto::v4::relay::RelayAgentInformation::default();
    info.insert(dhcproto::v4::relay::RelayInfo::AgentCircuitId(
        b"wifi-7".to_vec(),
    ));
    d.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(info.clone()));
    let r = send_from(&mut e, T0, 0, RELAY, &d).reply.expect("offer");
    assert_eq!(r.message.yiaddr(), Ipv4Addr::new(10, 0, 2, 100));
    assert_eq!(r.dest, Destination::Relay(Ipv4Addr::new(10, 0, 2, 1)));
    assert_eq!(r.link, 0, "sent back on the socket it came from");
    assert_eq!(
        r.message.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(vec![0xff, 1, 2, 3])),
        "option 61 echoed (RFC 6842)"
    );
    assert_eq!(
        r.message.opts().get(OptionCode::RelayAgentInformation),
        Some(&DhcpOption::RelayAgentInformation(info)),
        "option 82 echoed (RFC 3046)"
    );
    d.set_giaddr(Ipv4Addr::new(172, 16, 0, 1));
    assert!(send_from(&mut e, T0, 0, RELAY, &d).reply.is_none());
    assert_eq!(e.counters().unknown_relay, 1);
}

#[test]
fn relayed_packets_from_anyone_but_a_configured_relay_are_refused() {
    let mut e = engine();
    let host = Ipv4Addr::new(10, 0, 1, 50);
    for n in 1..=50 {
        let mut r = with(
            with(
                msg(MessageType::Request, n),
                DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 100 + n)),
            ),
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 1)),
        );
        r.set_giaddr(Ipv4Addr::new(10, 0, 2, 1));
        let o = send_from(&mut e, T0, 0, host, &r);
        assert!(o.reply.is_none() && o.persist.is_none());
        assert_eq!(
            o.notice,
            Some(Notice::RefusedRelay {
                src: host,
                giaddr: Ipv4Addr::new(10, 0, 2, 1)
            })
        );
    }
    assert_eq!(e.counters().refused_relay, 50);
    assert_eq!(e.table().active(T0), 0, "no address taken");
}

#[test]
fn an_overloaded_inform_gets_option_252() {
    let mut e = Engine::new(&config("wpad_url = \"http://10.0.1.1/wpad.dat\"", ""));
    let mut inf = with(msg(MessageType::Inform, 1), DhcpOption::OptionOverload(1));
    inf.set_ciaddr(Ipv4Addr::new(10, 0, 1, 50));
    // The parameter request list is in `file`: option 55 asking for 252 and 1.
    let mut bytes = inf.to_vec().expect("encode");
    bytes[108..113].copy_from_slice(&[55, 2, 252, 1, 255]);
    let o = e.handle_packet(T0, 0, CLIENT_SRC, &bytes);
    let r = o.reply.expect("ack");
    let wpad = r.message.opts().get(OptionCode::Unknown(252));
    assert!(wpad.is_some(), "{:?}", r.message.opts());
    // A truncated option in the overloaded field: dropped and counted.
    bytes[108..111].copy_from_slice(&[55, 200, 252]);
    assert!(e.handle_packet(T0, 0, CLIENT_SRC, &bytes).reply.is_none());
    assert_eq!(e.counters().malformed, 1);
}

#[test]
fn one_client_is_rate_limited() {
    let mut e = engine();
    let answered = (0..50)
        .filter(|_| {
            send(&mut e, T0, 0, &msg(MessageType::Discover, 1))
                .reply
                .is_some()
        })
        .count();
    assert_eq!(answered, 20, "a burst of twice the default 10 a second");
    assert_eq!(e.counters().rate_limited, 30);
    assert!(send(&mut e, T0, 0, &msg(MessageType::Discover, 2))
        .reply
        .is_some());
    assert!(send(&mut e, T0 + 1, 0, &msg(MessageType::Discover, 1))
        .reply
        .is_some());
}

#[test]
fn new_clients_on_a_link_are_rate_limited_but_known_ones_renew() {
    let mut e = Engine::new(&config("", "rate_per_link = 2"));
    let a = dora(&mut e, T0, 1);
    let offers = (10..30)
        .filter(|&n| {
            send(&mut e, T0 + 1, 0, &msg(MessageType::Discover, n))
                .reply
                .is_some()
        })
        .count();
    assert_eq!(offers, 4, "a burst of twice rate_per_link");
    let mut renew = msg(MessageType::Request, 1);
    renew.set_ciaddr(a);
    assert_eq!(
        reply_type(&send(&mut e, T0 + 1, 0, &renew)),
        Some(MessageType::Ack),
        "a client with a lease is not held back by the flood"
    );
}

#[test]
fn pool_exhaustion_is_noticed_once_per_episode() {
    let mut e = engine();
    let addrs: Vec<Ipv4Addr> = (1..=3).map(|n| dora(&mut e, T0, n)).collect();
    let first = send(&mut e, T0, 0, &msg(MessageType::Discover, 9));
    assert!(first.reply.is_none());
    assert_eq!(first.notice, Some(Notice::PoolExhausted { link: 0 }));
    let again = send(&mut e, T0, 0, &msg(MessageType::Discover, 10));
    assert_eq!(again.notice, None, "once per episode");
    let mut rel = msg(MessageType::Release, 1);
    rel.set_ciaddr(addrs[0]);
    send(&mut e, T0, 0, &rel);
    let back = send(&mut e, T0 + 1, 0, &msg(MessageType::Discover, 9));
    assert!(back.reply.is_some());
    assert_eq!(back.notice, Some(Notice::PoolAvailable { link: 0 }));
}

#[test]
fn broadcast_flag_is_honoured() {
    let mut e = engine();
    let mut d = msg(MessageType::Discover, 1);
    d.set_flags(Flags::default().set_broadcast());
    let r = send(&mut e, T0, 0, &d).reply.expect("offer");
    assert_eq!(r.dest, Destination::Broadcast);
    assert!(r.message.flags().broadcast());
}

#[test]
fn client_identifier_wins_over_chaddr() {
    let mut e = engine();
    let id = DhcpOption::ClientIdentifier(vec![1, 2, 3, 4]);
    let a = send(
        &mut e,
        T0,
        0,
        &with(msg(MessageType::Discover, 1), id.clone()),
    )
    .reply
    .expect("o")
    .message
    .yiaddr();
    let req = with(
        with(
            with(msg(MessageType::Request, 1), id.clone()),
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 1, 1)),
        ),
        DhcpOption::RequestedIpAddress(a),
    );
    assert_eq!(
        reply_type(&send(&mut e, T0, 0, &req)),
        Some(MessageType::Ack)
    );
    // Same identifier from another NIC: same client, same address.
    let b = send(&mut e, T0 + 1, 0, &with(msg(MessageType::Discover, 7), id))
        .reply
        .expect("o")
        .message
        .yiaddr();
    assert_eq!(a, b);
}

#[test]
fn expired_leases_are_reused_oldest_first() {
    let mut e = engine();
    let a = dora(&mut e, T0, 1);
    let b = dora(&mut e, T0 + 100, 2);
    let c = dora(&mut e, T0 + 50, 3);
    assert!(a != b && b != c);
    // All expired; the new client gets the one that expired first (a), then c, then b.
    let later = T0 + 10_000;
    assert_eq!(dora(&mut e, later, 4), a);
    assert_eq!(dora(&mut e, later, 5), c);
    assert_eq!(dora(&mut e, later, 6), b);
}

#[test]
fn reservations_are_kept_for_their_client() {
    let extra = "[[link.reservations]]\nmac = \"02:00:00:00:00:09\"\naddress = \"10.0.1.100\"\n";
    let mut e = Engine::new(&config(extra, ""));
    assert_ne!(dora(&mut e, T0, 1), Ipv4Addr::new(10, 0, 1, 100));
    assert_eq!(dora(&mut e, T0, 9), Ipv4Addr::new(10, 0, 1, 100));
}

#[test]
fn a_discover_flood_cannot_starve_the_pool() {
    let mut e = engine();
    for n in 10..40 {
        send(&mut e, T0, 0, &msg(MessageType::Discover, n));
    }
    // Every address is offered; a real client still gets one (the oldest offer).
    assert!(dora(&mut e, T0 + 1, 1).octets()[3] >= 100);
}

#[test]
fn leases_survive_a_restart_of_the_engine() {
    let mut e = engine();
    let a = dora(&mut e, T0, 1);
    let stored: Vec<Lease> = e.table().get(a).into_iter().cloned().collect();
    let mut e2 = engine();
    assert_eq!(e2.restore(stored), 1);
    assert_ne!(dora(&mut e2, T0 + 1, 2), a, "not given to another client");
    assert_eq!(
        dora(&mut e2, T0 + 1, 1),
        a,
        "the client gets its address back"
    );
}

#[test]
fn wrong_op_truncated_and_garbage_are_counted() {
    let mut e = engine();
    let mut m = msg(MessageType::Discover, 1).to_vec().expect("encode");
    m[0] = 2;
    e.handle_packet(T0, 0, CLIENT_SRC, &m);
    e.handle_packet(T0, 0, CLIENT_SRC, &m[..100]);
    m[0] = 1;
    m[2] = 200;
    e.handle_packet(T0, 0, CLIENT_SRC, &m);
    e.handle_packet(T0, 0, CLIENT_SRC, &[0u8; 5000]);
    let c = e.counters();
    assert_eq!((c.wrong_op, c.malformed, c.offers), (1, 3, 0));
}

/// In-process fuzzing with debug assertions on (they are dhcproto's tripwires): random and
/// mutated packets never panic. The cargo-fuzz target in fuzz/ does the same, guided.
#[test]
fn random_packets_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut e = engine();
    let seeds: Vec<Vec<u8>> = [
        MessageType::Discover,
        MessageType::Request,
        MessageType::Inform,
        MessageType::Decline,
    ]
    .into_iter()
    .map(|t| {
        with(
            with(
                msg(t, 1),
                DhcpOption::ParameterRequestList(vec![OptionCode::Router]),
            ),
            DhcpOption::ClientIdentifier(vec![1, 2]),
        )
        .to_vec()
        .expect("encode")
    })
    .collect();
    for i in 0..100_000u64 {
        let mut p = seeds[(i % 4) as usize].clone();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..p.len());
            match rng.random_range(0..3) {
                0 => p[at] = rng.random(),
                1 => p.insert(at, rng.random()),
                _ => p.truncate(at.max(1)),
            }
        }
        e.handle_packet(T0 + i / 1000, (i % 2) as usize, CLIENT_SRC, &p);
    }
    assert_eq!(e.counters().received, 100_000);
}

#[test]
fn a_reload_changes_pools_and_wpad_and_keeps_leases() {
    let mut e = engine();
    let a = dora(&mut e, T0, 1);
    e.reconfigure(&config("wpad_url = \"http://10.0.1.1/new.dat\"", ""));
    // The new pool is the same range here; a new client gets the next address and the new URL.
    let mut d = msg(MessageType::Discover, 2);
    d.opts_mut()
        .insert(DhcpOption::ParameterRequestList(vec![OptionCode::Unknown(
            252,
        )]));
    let offer = send(&mut e, T0 + 1, 0, &d).reply.expect("offer");
    assert_ne!(offer.message.yiaddr(), a);
    match offer.message.opts().get(OptionCode::Unknown(252)) {
        Some(DhcpOption::Unknown(u)) => assert_eq!(u.data(), b"http://10.0.1.1/new.dat"),
        other => panic!("{other:?}"),
    }
    // The first client renews its address.
    let mut renew = msg(MessageType::Request, 1);
    renew.set_ciaddr(a);
    let ack = send(&mut e, T0 + 2, 0, &renew);
    assert_eq!(reply_type(&ack), Some(MessageType::Ack));
    assert_eq!(ack.reply.expect("ack").message.yiaddr(), a);
}
