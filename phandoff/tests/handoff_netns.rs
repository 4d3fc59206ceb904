//! P-Handoff on the namespace test bed: the responder in the HomeSpot namespace programs real
//! host routes; the client in the laptop namespace puts its global address on `lo` and points
//! its route to the HomeSpot's global address over the link it switched to. A TCP stream
//! between the two global addresses is switched across three links and must arrive whole.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phandoff::client::{Client, ClientConfig, ClientEvent};
use phandoff::crypto::{ClientKeys, Identity};
use phandoff::driver::{run_client, run_responder, Command, LinkSocket, PORT};
use phandoff::responder::{Event, Responder, ResponderConfig};
use phandoff::routes::{self, ifindex, HostRoute, Netlink, RouteProgrammer};
use phandoff::wire::{LinkInfo, LinkKind};
use testkit::Topology;
use tokio::sync::mpsc;

const G_H: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

fn responder_cfg() -> ResponderConfig {
    let kinds = [LinkKind::Wifi, LinkKind::Bluetooth, LinkKind::Ethernet];
    ResponderConfig {
        links: (0..3u8)
            .map(|i| LinkInfo {
                index: i,
                kind: kinds[i as usize],
                l2_id: format!("homespot-{i}").into_bytes(),
                subnet: Ipv4Addr::new(10, 77, i + 1, 0),
                prefix: 24,
                router: Ipv4Addr::new(10, 77, i + 1, 1),
                proxy: Ipv4Addr::new(10, 77, i + 1, 1),
                proxy_port: 3128,
                pac_url: format!("http://10.77.{}.1/wpad.dat", i + 1).into_bytes(),
            })
            .collect(),
        global_subnet: Ipv4Addr::new(10, 200, 0, 0),
        global_prefix: 24,
        global_addr: G_H,
        pool: (
            Ipv4Addr::new(10, 200, 0, 10),
            Ipv4Addr::new(10, 200, 0, 250),
        ),
        advert_interval: Duration::from_secs(1),
        expiry: ResponderConfig::DEFAULT_EXPIRY,
        session_idle: ResponderConfig::DEFAULT_SESSION_IDLE,
        handshake_rate: ResponderConfig::DEFAULT_HANDSHAKE_RATE,
    }
}

/// The next event that is not about probes, within 5 s.
async fn next(ev: &mut mpsc::Receiver<ClientEvent>) -> ClientEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ev.recv()).await {
            Ok(Some(
                ClientEvent::LinkDead { .. }
                | ClientEvent::LinkAlive { .. }
                | ClientEvent::LinkConfirmed { .. },
            )) => continue,
            Ok(Some(e)) => return e,
            other => panic!("no event: {other:?}"),
        }
    }
}

/// Switches to `link`: Switch/SwitchAck over it, then (make-before-break: the HomeSpot already
/// routes to us over `link`) our own route to G_h follows. Returns the Switch round trip.
async fn switch(
    link: u8,
    global: Ipv4Addr,
    cmd: &mpsc::Sender<Command>,
    nl: &mut Netlink,
    ev: &mut mpsc::Receiver<ClientEvent>,
) -> Duration {
    cmd.send(Command::Switch(link)).await.expect("cmd");
    loop {
        match next(ev).await {
            ClientEvent::SwitchDone { link: l, took } if l == link => {
                let r = HostRoute {
                    dest: G_H,
                    via: Ipv4Addr::new(10, 77, link + 1, 1),
                    ifindex: ifindex(&format!("eth{link}")),
                    src: Some(global),
                    table: None,
                    rto_min_ms: Some(20),
                    quickack: true,
                };
                nl.replace(&r).await.expect("client route");
                return took;
            }
            ClientEvent::Discovered { .. } => continue,
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn a_tcp_stream_survives_switches_across_three_links() {
    if !testkit::can_run() {
        eprintln!("SKIPPED: needs root and iproute2 for network namespaces");
        return;
    }
    let topo = Topology::new(3).expect("topology");
    topo.homespot
        .run(&["ip", "addr", "add", &format!("{G_H}/32"), "dev", "lo"])
        .expect("G_h");
    for (i, l) in topo.links.iter().enumerate() {
        topo.client
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
    let stop = Arc::new(AtomicBool::new(false));

    // The HomeSpot: responder, routes, and a TCP sink on G_h:9000 that reports what it got.
    let hs_stop = stop.clone();
    let homespot = topo
        .homespot
        .spawn_thread(move || {
            let sink = TcpListener::bind((G_H, 9000)).expect("sink");
            let sink_thread = std::thread::spawn(move || {
                let (mut s, _) = sink.accept().expect("accept");
                let (mut total, mut max_gap, mut last) = (0u64, Duration::ZERO, Instant::now());
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => return Ok((total, max_gap)),
                        Ok(n) => {
                            let now = Instant::now();
                            if total > 0 {
                                max_gap = max_gap.max(now - last);
                            }
                            last = now;
                            total += n as u64;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            });
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                let socks: Vec<LinkSocket> = (0..3u8)
                    .map(|i| LinkSocket::bind(i, &format!("lan{i}"), PORT).expect("socket"))
                    .collect();
                let mut restore = Vec::new();
                for i in 0..3 {
                    let n = format!("lan{i}");
                    restore.push((n.clone(), routes::rp_filter_loose(&n).expect("rp_filter")));
                }
                let r = Responder::new(
                    responder_cfg(),
                    Identity::from_seed([1; 32]),
                    phandoff::driver::os_rng().expect("rng"),
                    [],
                );
                let (tx, mut rx) = mpsc::channel(64);
                let (_stop, stop_rx) = tokio::sync::oneshot::channel();
                let (installed, installed_rx) = mpsc::channel(64);
                let (status, _status_rx) = tokio::sync::watch::channel(Default::default());
                tokio::spawn(run_responder(r, socks, tx, installed_rx, status, stop_rx));
                let mut nl = Netlink::new().expect("netlink");
                let mut routes_done = 0;
                while !hs_stop.load(Ordering::Relaxed) {
                    let ev = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
                    if let Ok(Some(Event::Route { global, link, via })) = ev {
                        let r = HostRoute {
                            dest: global,
                            via,
                            ifindex: ifindex(&format!("lan{link}")),
                            src: Some(G_H),
                            table: None,
                            rto_min_ms: Some(20),
                            quickack: true,
                        };
                        nl.replace(&r).await.expect("route");
                        // The route is in place: now the SwitchAck may go.
                        installed.send(global).await.expect("responder");
                        routes_done += 1;
                    }
                }
                for (n, old) in restore {
                    let _ = routes::restore_rp_filter(&n, &old);
                }
                routes_done
            })
            .to_string();
            sink_thread.join().expect("sink thread")
        })
        .expect("homespot thread");

    // The laptop: discover, associate, take the global address, then stream and switch.
    let client = topo
        .client
        .spawn_thread(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                let socks: Vec<LinkSocket> = (0..3u8)
                    .map(|i| LinkSocket::bind(i, &format!("eth{i}"), PORT).expect("socket"))
                    .collect();
                for i in 0..3 {
                    routes::rp_filter_loose(&format!("eth{i}")).expect("rp_filter");
                }
                let c = Client::new(
                    ClientConfig::default(),
                    ClientKeys::from_secret([3; 32]),
                    None,
                    phandoff::driver::os_rng().expect("rng"),
                    PORT,
                );
                let (cmd_tx, cmd_rx) = mpsc::channel(16);
                let (ev_tx, mut ev) = mpsc::channel(64);
                tokio::spawn(run_client(c, socks, cmd_rx, ev_tx));
                let t = Instant::now();
                cmd_tx.send(Command::Query(0)).await.expect("cmd");
                let ClientEvent::Discovered { advert } = next(&mut ev).await else {
                    panic!("no advert")
                };
                let discovery = t.elapsed();
                assert_eq!(advert.links.len(), 3, "one link learns all three");
                for i in 0..3u8 {
                    cmd_tx
                        .send(Command::LinkUp(i, Ipv4Addr::new(10, 77, i + 1, 100)))
                        .await
                        .expect("cmd");
                }
                cmd_tx.send(Command::Associate(0)).await.expect("cmd");
                let global = loop {
                    match next(&mut ev).await {
                        ClientEvent::Associated { global, .. } => break global,
                        ClientEvent::Discovered { .. } => continue,
                        e => panic!("{e:?}"),
                    }
                };
                let out = std::process::Command::new("ip")
                    .args(["addr", "add", &format!("{global}/32"), "dev", "lo"])
                    .output();
                assert!(out.is_ok_and(|o| o.status.success()));
                let mut nl = Netlink::new().expect("netlink");
                let mut took = Vec::new();
                took.push(switch(0, global, &cmd_tx, &mut nl, &mut ev).await);
                // Stream from G_c to G_h:9000 on a thread, switching links meanwhile.
                let writer = std::thread::spawn(move || -> Result<u64, String> {
                    let s =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .map_err(|e| e.to_string())?;
                    s.bind(&SocketAddr::from((global, 0)).into())
                        .map_err(|e| e.to_string())?;
                    s.connect(&SocketAddr::from((G_H, 9000)).into())
                        .map_err(|e| e.to_string())?;
                    let mut s: TcpStream = s.into();
                    let chunk = vec![0x5a; 16 * 1024];
                    let (mut sent, start) = (0u64, Instant::now());
                    while start.elapsed() < Duration::from_secs(3) {
                        s.write_all(&chunk).map_err(|e| e.to_string())?;
                        sent += chunk.len() as u64;
                        std::thread::sleep(Duration::from_micros(500)); // about 250 Mbit/s at most
                    }
                    s.shutdown(std::net::Shutdown::Write)
                        .map_err(|e| e.to_string())?;
                    Ok(sent)
                });
                let mut switches = 0;
                while !writer.is_finished() && switches < 24 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    switches += 1;
                    took.push(
                        switch((switches % 3) as u8, global, &cmd_tx, &mut nl, &mut ev).await,
                    );
                }
                let sent = writer.join().expect("writer");
                (discovery, switches, took, sent)
            })
        })
        .expect("client thread");
    let (discovery, switches, took, sent) = client.join().expect("client").expect("client ns");
    stop.store(true, Ordering::Relaxed);
    let received = homespot.join().expect("homespot").expect("homespot ns");
    let sent = sent.expect("stream written without error");
    let (received, max_gap) = received.expect("stream read without error");
    let slowest = took.iter().max().copied().unwrap_or_default();
    eprintln!(
        "discovery {discovery:?}; {switches} switches, slowest Switch/SwitchAck {slowest:?}; \
         {sent} bytes sent, {received} received, largest gap {max_gap:?}"
    );
    assert!(
        discovery < Duration::from_secs(1),
        "discovery took {discovery:?}"
    );
    assert!(switches >= 20, "{switches}");
    assert_eq!(sent, received, "the stream arrived whole");
}
