//! Issue 4 on homespotd: the responder on every link of the test bed. One link's Query brings
//! an advert that lists all three links, signed by the identity homespotd keeps on disk; the
//! association gives a global address that stays the same across a restart; a Switch moves
//! the real host route; the proxy answers on the HomeSpot's global address.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::*;
use phandoff::client::{Client, ClientConfig, ClientEvent};
use phandoff::crypto::{ClientKeys, Identity};
use phandoff::driver::{run_client, Command, LinkSocket, PORT};
use phandoff::wire::Advert;
use testkit::origin::Origin;
use tokio::sync::mpsc;

const HANDOFF: &str =
    "[handoff]\nglobal_subnet = \"10.200.0.0/24\"\nidentity = \"{dir}/identity.key\"\n";

struct Session {
    discovery: Duration,
    advert: Advert,
    global: Ipv4Addr,
    switched: Option<Duration>,
}

/// In the client namespace: Query on link 0, associate with the key from `secret`, and switch
/// to `switch_to` if given.
fn session(bed: &Bed, secret: [u8; 32], switch_to: Option<u8>) -> Session {
    bed.topo
        .client
        .in_thread(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                let socks: Vec<LinkSocket> = (0..3u8)
                    .map(|i| LinkSocket::bind(i, &format!("eth{i}"), PORT).expect("socket"))
                    .collect();
                let c = Client::new(
                    ClientConfig::default(),
                    ClientKeys::from_secret(secret),
                    None,
                    [5; 32],
                    PORT,
                );
                let (cmd, cmd_rx) = mpsc::channel(8);
                let (ev_tx, mut ev) = mpsc::channel(64);
                let driver = tokio::spawn(run_client(c, socks, cmd_rx, ev_tx));
                let mut next = async || loop {
                    match tokio::time::timeout(Duration::from_secs(5), ev.recv()).await {
                        Ok(Some(ClientEvent::LinkDead { .. } | ClientEvent::LinkAlive { .. })) => {
                            continue
                        }
                        Ok(Some(e)) => return e,
                        other => panic!("no event: {other:?}"),
                    }
                };
                let t = Instant::now();
                cmd.send(Command::Query(0)).await.expect("cmd");
                let ClientEvent::Discovered { advert } = next().await else {
                    panic!("no advert")
                };
                // The first Query on a link includes ARP resolution; that is what a client sees.
                let discovery = t.elapsed();
                for i in 0..3u8 {
                    cmd.send(Command::LinkUp(i, Ipv4Addr::new(10, 77, i + 1, 100)))
                        .await
                        .expect("cmd");
                }
                cmd.send(Command::Associate(0)).await.expect("cmd");
                let global = loop {
                    match next().await {
                        ClientEvent::Associated { global, .. } => break global,
                        ClientEvent::Discovered { .. } => continue,
                        e => panic!("{e:?}"),
                    }
                };
                let mut switched = None;
                if let Some(link) = switch_to {
                    cmd.send(Command::Switch(link)).await.expect("cmd");
                    loop {
                        match next().await {
                            ClientEvent::SwitchDone { took, .. } => break switched = Some(took),
                            ClientEvent::Discovered { .. } => continue,
                            e => panic!("{e:?}"),
                        }
                    }
                }
                driver.abort();
                Session {
                    discovery,
                    advert,
                    global,
                    switched,
                }
            })
        })
        .expect("client thread")
}

#[test]
fn homespotd_advertises_associates_switches_and_keeps_addresses() {
    need_root!();
    let mut bed =
        Bed::start_with(3, "kind = \"wifi\"\nl2_id = \"HomeSpot\"\n", HANDOFF).expect("test bed");
    for (i, l) in bed.topo.links.iter().enumerate() {
        bed.topo
            .client
            .run(&[
                "ip",
                "addr",
                "add",
                &format!("10.77.{}.100/24", i + 1),
                "dev",
                &l.client_if,
            ])
            .expect("client address");
    }
    let first = session(&bed, [3; 32], Some(1));
    eprintln!(
        "Query answered in {:?}; Switch round trip {:?}",
        first.discovery, first.switched
    );
    assert!(
        first.discovery < Duration::from_millis(10),
        "Query answered in {:?}",
        first.discovery
    );
    // The advert: every link, with its router and PAC URL, signed by the identity on disk.
    let seed: [u8; 32] = std::fs::read(bed.dir.join("identity.key"))
        .expect("identity")
        .try_into()
        .expect("32 bytes");
    assert_eq!(first.advert.identity, Identity::from_seed(seed).public());
    assert_eq!(first.advert.links.len(), 3);
    for (i, l) in first.advert.links.iter().enumerate() {
        assert_eq!(l.router, Ipv4Addr::new(10, 77, i as u8 + 1, 1));
        assert_eq!(
            l.pac_url,
            format!("http://10.77.{}.1/wpad.dat", i + 1).into_bytes()
        );
        assert_eq!(l.l2_id, b"HomeSpot");
    }
    assert_eq!(first.advert.global_addr, Ipv4Addr::new(10, 200, 0, 1));
    assert_eq!(first.global, Ipv4Addr::new(10, 200, 0, 2));
    // The Switch over link 1 installed the real host route, with the TCP attributes.
    let route = bed
        .topo
        .homespot
        .run(&["ip", "route", "show", "10.200.0.2"])
        .expect("ip route");
    assert!(route.contains("via 10.77.2.100 dev lan1"), "{route}");
    assert!(
        route.contains("rto_min 20ms") && route.contains("quickack 1"),
        "{route}"
    );

    // The proxy answers on the global address, over the P-Handoff path.
    let origin =
        Origin::start(&bed.topo.net, "10.77.0.2:8080".parse().expect("addr")).expect("origin");
    let c = &bed.topo.client;
    c.run(&["ip", "addr", "add", "10.200.0.2/32", "dev", "lo"])
        .expect("global on lo");
    c.run(&[
        "ip",
        "route",
        "add",
        "10.200.0.1/32",
        "via",
        "10.77.2.1",
        "dev",
        "eth1",
        "src",
        "10.200.0.2",
    ])
    .expect("route");
    let out = c
        .output(&[
            "curl",
            "-sS",
            "--interface",
            "10.200.0.2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{local_ip}",
            "-x",
            "http://10.200.0.1:3128",
            &origin.url("/bytes/1000"),
        ])
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 10.200.0.2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // After a restart the same key gets the same address; another key gets another.
    bed.stop_daemon().expect("stop");
    bed.start_daemon().expect("restart");
    let again = session(&bed, [3; 32], None);
    assert_eq!(again.global, first.global);
    let other = session(&bed, [4; 32], None);
    assert_ne!(other.global, first.global);
    let log = bed.stop_daemon().expect("stop");
    assert!(
        log.contains("global address assignments loaded clients=1"),
        "{log}"
    );
}
