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

/// homespotd with P-Handoff on three links (through air bridges if `air`), `link_extra` in
/// each [[link]], and the client at 10.77.N.100 on link N.
fn handoff_bed(air: bool, link_extra: &str) -> Bed {
    let topo = if air {
        testkit::Topology::with_air(3)
    } else {
        testkit::Topology::new(3)
    };
    let bed = Bed::start_on(topo.expect("topology"), link_extra, HANDOFF).expect("test bed");
    for (i, l) in bed.topo.links.iter().enumerate() {
        let addr = format!("10.77.{}.100/24", i + 1);
        bed.topo
            .client
            .run(&["ip", "addr", "add", &addr, "dev", &l.client_if])
            .expect("client address");
    }
    bed
}

struct Session {
    discovery: Duration,
    handshake: Duration,
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
                    phandoff::driver::os_rng().expect("rng"),
                    PORT,
                );
                let (cmd, cmd_rx) = mpsc::channel(8);
                let (ev_tx, mut ev) = mpsc::channel(64);
                let driver = tokio::spawn(run_client(c, socks, cmd_rx, ev_tx));
                let mut next = async || loop {
                    match tokio::time::timeout(Duration::from_secs(5), ev.recv()).await {
                        Ok(Some(
                            ClientEvent::LinkDead { .. }
                            | ClientEvent::LinkAlive { .. }
                            | ClientEvent::LinkConfirmed { .. },
                        )) => continue,
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
                let t = Instant::now();
                cmd.send(Command::Associate(0)).await.expect("cmd");
                let global = loop {
                    match next().await {
                        ClientEvent::Associated { global, .. } => break global,
                        ClientEvent::Discovered { .. } => continue,
                        e => panic!("{e:?}"),
                    }
                };
                let handshake = t.elapsed();
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
                    handshake,
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
    let mut bed = handoff_bed(false, "kind = \"wifi\"\nl2_id = \"HomeSpot\"\n");
    let first = session(&bed, [3; 32], Some(1));
    // A second session of the same key: ARP is resolved, as for a laptop already on the link.
    let warm = session(&bed, [3; 32], None);
    eprintln!(
        "Query answered in {:?} (then {:?}); handshake (Initiation, Response, Confirm, Confirmed) {:?} (then {:?}); Query + handshake {:?}; Switch round trip {:?}",
        first.discovery,
        warm.discovery,
        first.handshake,
        warm.handshake,
        warm.discovery + warm.handshake,
        first.switched
    );
    // The targets are benchmark figures (bench/handshake.sh sets HOMESPOT_STRICT); a loaded
    // CI machine only has to answer at all, promptly.
    let (query_limit, both_limit) = if std::env::var("HOMESPOT_STRICT").is_ok() {
        (Duration::from_millis(10), Duration::from_millis(5))
    } else {
        (Duration::from_secs(1), Duration::from_secs(1))
    };
    assert!(
        first.discovery < query_limit,
        "Query answered in {:?}",
        first.discovery
    );
    assert!(
        warm.discovery + warm.handshake <= both_limit,
        "Query + handshake {:?}",
        warm.discovery + warm.handshake
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
        route.contains("rto_min lock 20ms") && route.contains("quickack 1"),
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

    // An unassigned global address gets nothing: the unreachable route covers the subnet on
    // the HomeSpot (replies never leave by the WAN) and the proxy serves only routed ones.
    let unreachable = bed
        .topo
        .homespot
        .run(&["ip", "route", "show", "type", "unreachable"])
        .expect("ip route");
    assert!(unreachable.contains("10.200.0.0/24"), "{unreachable}");
    c.run(&["ip", "addr", "add", "10.200.0.77/32", "dev", "lo"])
        .expect("unassigned global on lo");
    let out = c
        .output(&[
            "curl",
            "-sS",
            "-m",
            "2",
            "--interface",
            "10.200.0.77",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            "http://10.200.0.1:3128",
            &origin.url("/bytes/1000"),
        ])
        .expect("curl");
    assert_ne!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "an unassigned global address is not served"
    );

    // The files that let anyone pose as this HomeSpot or list its clients are the owner's.
    for f in ["identity.key", "leases.redb"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(bed.dir.join(f)).expect(f).permissions(),
        ) & 0o777;
        assert_eq!(mode, 0o600, "{f}: {mode:o}");
    }
    // SIGHUP (a service manager's reload) does not stop it.
    bed.daemon
        .as_ref()
        .expect("running")
        .signal(nix::sys::signal::Signal::SIGHUP)
        .expect("SIGHUP");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        bed.log()
            .contains("nothing that can change while running has changed"),
        "{}",
        bed.log()
    );
    let after_hup = session(&bed, [3; 32], None);
    assert_eq!(after_hup.global, first.global, "still serving after SIGHUP");

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

/// Issue 11, acceptance 2 on homespotd: a /29 holds 5 client addresses. Five keys complete
/// handshakes: the "nearly full" warning is logged. Once their sessions are idle
/// (`session_idle`) a sixth key gets the address unused the longest, with a warning, and the
/// first key, returning, gets an address again. (That an active client is never evicted is
/// shown with explicit time in phandoff's tests.)
#[test]
fn a_full_global_pool_warns_and_evicts_the_longest_unused() {
    need_root!();
    let handoff = "[handoff]\nglobal_subnet = \"10.200.0.0/29\"\nidentity = \"{dir}/identity.key\"\nsession_idle = \"10s\"\n";
    let mut bed =
        Bed::start_on(testkit::Topology::new(3).expect("topology"), "", handoff).expect("test bed");
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
    let mut got = vec![];
    for k in 10..15u8 {
        got.push(session(&bed, [k; 32], None).global);
        std::thread::sleep(Duration::from_millis(20));
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 5, "five addresses: {got:?}");
    // The warning follows the assignments' writes to disk (fsync): wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bed.log().contains("global address pool nearly full") {
        assert!(Instant::now() < deadline, "no warning:\n{}", bed.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past session_idle (and the responder's once-a-second chores) the sessions are idle.
    std::thread::sleep(Duration::from_secs(12));
    let sixth = session(&bed, [20; 32], None).global;
    assert_eq!(
        sixth, got[0],
        "the address unused the longest (the first key's)"
    );
    let first_again = session(&bed, [10; 32], None).global;
    assert!(got.contains(&first_again), "{first_again}");
    let log = bed.stop_daemon().expect("stop");
    assert!(
        log.contains("global address pool full: evicted the assignment unused the longest"),
        "{log}"
    );
}

/// A Bluetooth link gets one TCP segment per packet while homespotd runs (a multi-segment
/// packet waits tens of ms for a 2 Mbit/s radio and arrives as a burst), and its old limit
/// back at a clean stop.
#[test]
fn bluetooth_links_carry_one_segment_per_packet_until_stop() {
    need_root!();
    let mut bed = handoff_bed(false, "kind = \"bluetooth\"\n");
    let gso = |bed: &Bed| {
        let out = bed
            .topo
            .homespot
            .run(&["ip", "-d", "link", "show", "lan0"])
            .expect("ip link");
        out.split_whitespace()
            .skip_while(|w| *w != "gso_max_segs")
            .nth(1)
            .and_then(|n| n.parse::<u32>().ok())
            .expect("gso_max_segs in ip -d link")
    };
    assert_eq!(gso(&bed), 1);
    let log = bed.stop_daemon().expect("stop");
    assert!(log.contains("one TCP segment per packet"), "{log}");
    assert_eq!(gso(&bed), 65535);
}

/// Arrival times of a stream at the HomeSpot's global address, port 9000.
fn sink(bed: &Bed) -> std::thread::JoinHandle<anyhow::Result<Vec<(Instant, usize)>>> {
    bed.topo
        .homespot
        .spawn_thread(|| {
            use std::io::Read;
            let l = std::net::TcpListener::bind(("10.200.0.1", 9000)).expect("sink");
            let (mut s, _) = l.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            let mut offset = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => {
                        got.push((Instant::now(), n));
                        // Byte-exact: every byte is the pattern byte of its offset.
                        assert!(
                            buf[..n] == testkit::origin::pattern(offset, offset + n as u64)[..],
                            "stream bytes differ near offset {offset}"
                        );
                        offset += n as u64;
                    }
                    Err(e) => panic!("sink: {e}"),
                }
            }
        })
        .expect("sink thread")
}

/// The largest gap between arrivals in `[from, to)`.
fn max_gap(arrivals: &[(Instant, usize)], from: Instant, to: Instant) -> Duration {
    arrivals
        .windows(2)
        .filter(|w| w[1].0 >= from && w[1].0 < to)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default()
}

/// Issue 4, points 3 and 4: a steady 20 Mbit/s TCP stream between the global addresses for
/// about 30 s, through air bridges: 3 s untouched (its own inter-arrival times), 100 policy
/// switches across three links, then the current radio is lost silently and the client fails
/// over when its probes find the link dead.
#[test]
fn a_stream_survives_100_switches_and_a_silent_radio_loss() {
    need_root!();
    let mut bed = handoff_bed(true, "");
    let sink = sink(&bed);
    std::thread::sleep(Duration::from_millis(100));
    let air = bed.topo.air.as_ref().expect("air").name().to_string();
    let client = bed
        .topo
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
                let fast = ClientConfig {
                    probe_interval: Duration::from_millis(20),
                    probe_misses: 3,
                    ..ClientConfig::default()
                };
                let c = Client::new(
                    fast,
                    ClientKeys::from_secret([3; 32]),
                    None,
                    phandoff::driver::os_rng().expect("rng"),
                    PORT,
                );
                let (cmd, cmd_rx) = mpsc::channel(8);
                let (ev_tx, mut ev) = mpsc::channel(256);
                tokio::spawn(run_client(c, socks, cmd_rx, ev_tx));
                cmd.send(Command::Query(0)).await.expect("cmd");
                let mut dead = Vec::new();
                // Let the advert arrive (Discovered is skipped by `next_event`).
                tokio::time::sleep(Duration::from_millis(50)).await;
                for i in 0..3u8 {
                    routes_loose(&format!("eth{i}"));
                    cmd.send(Command::LinkUp(i, Ipv4Addr::new(10, 77, i + 1, 100)))
                        .await
                        .expect("cmd");
                }
                cmd.send(Command::Associate(0)).await.expect("cmd");
                let ClientEvent::Associated { global, .. } = next_event(&mut ev, &mut dead).await
                else {
                    panic!("no association")
                };
                sh(&["ip", "addr", "add", &format!("{global}/32"), "dev", "lo"]);
                let mut nl = phandoff::routes::Netlink::new().expect("netlink");
                policy_switch(0, global, &cmd, &mut ev, &mut dead, &mut nl).await;
                // The stream: 2,500 bytes a millisecond (20 Mbit/s) from G_c to G_h:9000.
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let st = stop.clone();
                let writer = std::thread::spawn(move || -> Result<u64, String> {
                    use std::io::Write;
                    let s =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .map_err(|e| e.to_string())?;
                    s.bind(&std::net::SocketAddr::from((global, 0)).into())
                        .map_err(|e| e.to_string())?;
                    s.connect(&std::net::SocketAddr::from(([10, 200, 0, 1], 9000)).into())
                        .map_err(|e| e.to_string())?;
                    let mut s: std::net::TcpStream = s.into();
                    let (mut sent, start) = (0u64, Instant::now());
                    while !st.load(std::sync::atomic::Ordering::Relaxed)
                        && start.elapsed() < Duration::from_secs(60)
                    {
                        let chunk = testkit::origin::pattern(sent, sent + 2500);
                        s.write_all(&chunk).map_err(|e| e.to_string())?;
                        sent += chunk.len() as u64;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    s.shutdown(std::net::Shutdown::Write)
                        .map_err(|e| e.to_string())?;
                    Ok(sent)
                });
                tokio::time::sleep(Duration::from_secs(3)).await; // baseline, no switching
                let mut switches = Vec::new();
                for k in 1..=100u32 {
                    let at = Instant::now();
                    let took =
                        policy_switch((k % 3) as u8, global, &cmd, &mut ev, &mut dead, &mut nl)
                            .await;
                    switches.push((at, took));
                    // 100 switches over 25 s: with the baseline and the loss, 30 s of stream.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                // Silent loss of the current link (100 % 3 = 1): its port leaves the air bridge.
                let lost_at = Instant::now();
                sh(&[
                    "ip", "netns", "exec", &air, "ip", "link", "set", "c1", "nomaster",
                ]);
                let detected = loop {
                    if let Some((_, t)) = dead.iter().find(|(l, t)| *l == 1 && *t >= lost_at) {
                        break *t;
                    }
                    match tokio::time::timeout(Duration::from_millis(5), ev.recv()).await {
                        Ok(Some(ClientEvent::LinkDead { link })) => {
                            dead.push((link, Instant::now()))
                        }
                        _ if lost_at.elapsed() > Duration::from_secs(3) => {
                            panic!("loss not detected")
                        }
                        _ => {}
                    }
                };
                // Fail over to a live link.
                policy_switch(2, global, &cmd, &mut ev, &mut dead, &mut nl).await;
                let recovered = Instant::now();
                tokio::time::sleep(Duration::from_secs(2)).await;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let sent = writer.join().expect("writer");
                (switches, lost_at, detected, recovered, sent)
            })
        })
        .expect("client thread");
    let (switches, lost_at, detected, recovered, sent) =
        client.join().expect("join").expect("client ns");
    let sent = sent.expect("the stream was written without a reset");
    let arrivals = sink.join().expect("join").expect("sink ns");
    let received: u64 = arrivals.iter().map(|a| a.1 as u64).sum();
    assert_eq!(sent, received, "byte count");
    assert_eq!(switches.len(), 100);
    // The stream's own inter-arrival times before any switch.
    let first_switch = switches[0].0;
    let mut base: Vec<Duration> = arrivals
        .windows(2)
        .filter(|w| w[1].0 < first_switch && w[0].0 > arrivals[0].0 + Duration::from_millis(500))
        .map(|w| w[1].0 - w[0].0)
        .collect();
    base.sort();
    let p99 = base.get(base.len() * 99 / 100).copied().unwrap_or_default();
    let base_max = base.last().copied().unwrap_or_default();
    let per_switch: Vec<Duration> = switches
        .iter()
        .map(|(at, _)| max_gap(&arrivals, *at, *at + Duration::from_millis(50)))
        .collect();
    let worst_switch = per_switch.iter().max().copied().unwrap_or_default();
    // Control: the same 50 ms windows during the untouched baseline.
    let base_start = arrivals[0].0 + Duration::from_millis(500);
    let mut control: Vec<Duration> = (0..)
        .map(|k| base_start + Duration::from_millis(50 * k))
        .take_while(|t| *t + Duration::from_millis(50) < first_switch)
        .map(|t| max_gap(&arrivals, t, t + Duration::from_millis(50)))
        .collect();
    control.sort();
    let control_median = control.get(control.len() / 2).copied().unwrap_or_default();
    let control_worst = control.last().copied().unwrap_or_default();
    let mut sorted = per_switch.clone();
    sorted.sort();
    let median_switch = sorted[sorted.len() / 2];
    let slowest_ack = switches.iter().map(|s| s.1).max().unwrap_or_default();
    let detection = detected - lost_at;
    let loss_gap = max_gap(
        &arrivals,
        lost_at - Duration::from_millis(20),
        recovered + Duration::from_secs(1),
    );
    let after = max_gap(
        &arrivals,
        recovered + Duration::from_millis(600),
        recovered + Duration::from_millis(1900),
    );
    eprintln!(
        "stream {received} bytes whole; baseline inter-arrival p99 {p99:?}, max {base_max:?}; \
         100 switches: largest gap in the 50 ms after a switch {worst_switch:?} (median {median_switch:?}), \
         in 50 ms windows without switching {control_worst:?} (median {control_median:?}); slowest Switch/SwitchAck {slowest_ack:?}; \
         silent loss: detected in {detection:?}, application gap {loss_gap:?}, largest gap afterwards {after:?}"
    );
    // Correctness here; the timing targets are recorded in BENCHMARKS.md from this output.
    assert!(detection < Duration::from_secs(1), "{detection:?}");
    // Stalls after the recovery are a benchmark figure; here only a broken recovery fails.
    assert!(
        after < Duration::from_secs(1),
        "stalls after recovery: {after:?}"
    );
    let _ = bed.stop_daemon();
}

/// The next event that is not about discovery or probes, within 5 s; LinkDead events are
/// noted in `dead` with their time.
async fn next_event(
    ev: &mut mpsc::Receiver<ClientEvent>,
    dead: &mut Vec<(u8, Instant)>,
) -> ClientEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ev.recv()).await {
            Ok(Some(ClientEvent::LinkDead { link })) => dead.push((link, Instant::now())),
            Ok(Some(
                ClientEvent::LinkAlive { .. }
                | ClientEvent::LinkConfirmed { .. }
                | ClientEvent::Discovered { .. },
            )) => continue,
            Ok(Some(e)) => return e,
            other => panic!("no event: {other:?}"),
        }
    }
}

/// Switch over `link` (make-before-break), then point our route to G_h over it (rtnetlink:
/// no process is spawned while the stream runs).
async fn policy_switch(
    link: u8,
    global: Ipv4Addr,
    cmd: &mpsc::Sender<Command>,
    ev: &mut mpsc::Receiver<ClientEvent>,
    dead: &mut Vec<(u8, Instant)>,
    nl: &mut phandoff::routes::Netlink,
) -> Duration {
    use phandoff::routes::RouteProgrammer;
    cmd.send(Command::Switch(link)).await.expect("cmd");
    match next_event(ev, dead).await {
        ClientEvent::SwitchDone { link: l, took } if l == link => {
            let ifindex = phandoff::routes::ifindex(&format!("eth{link}"));
            let r = phandoff::routes::HostRoute {
                dest: Ipv4Addr::new(10, 200, 0, 1),
                via: Ipv4Addr::new(10, 77, link + 1, 1),
                ifindex,
                src: Some(global),
                table: None,
                rto_min_ms: Some(20),
                quickack: true,
            };
            nl.replace(&r).await.expect("client route");
            took
        }
        e => panic!("{e:?}"),
    }
}

fn sh(args: &[&str]) {
    let o = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn routes_loose(ifname: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{ifname}/rp_filter"), "2");
}

/// Issue 4, point 6, measured beside P-Handoff: Linux MPTCP on the same kind of test bed
/// (air bridges), a backup subflow on a second link, the same 20 Mbit/s stream and the same
/// silent loss of the active link. No homespotd: this is the kernel's own answer.
#[test]
fn mptcp_with_a_backup_subflow_under_the_same_silent_loss() {
    need_root!();
    let topo = testkit::Topology::with_air(2).expect("topology");
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
    for ns in [&topo.client, &topo.homespot] {
        ns.run(&[
            "ip",
            "mptcp",
            "limits",
            "set",
            "subflow",
            "2",
            "add_addr_accepted",
            "2",
        ])
        .expect("limits");
    }
    topo.client
        .run(&[
            "ip",
            "mptcp",
            "endpoint",
            "add",
            "10.77.2.100",
            "dev",
            "eth1",
            "subflow",
            "backup",
        ])
        .expect("backup endpoint");
    let sink = topo
        .homespot
        .spawn_thread(|| -> std::io::Result<Vec<(Instant, usize)>> {
            use std::io::Read;
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::MPTCP),
            )?;
            s.set_reuse_address(true)?;
            s.bind(&std::net::SocketAddr::from(([10, 77, 1, 1], 9001)).into())?;
            s.listen(4)?;
            let (c, _) = s.accept()?;
            let mut c: std::net::TcpStream = c.into();
            let (mut got, mut buf) = (Vec::new(), vec![0u8; 65536]);
            loop {
                match c.read(&mut buf)? {
                    0 => return Ok(got),
                    n => got.push((Instant::now(), n)),
                }
            }
        })
        .expect("sink thread");
    std::thread::sleep(Duration::from_millis(100));
    let stream_start = Instant::now();
    let writer = topo
        .client
        .spawn_thread(|| -> std::io::Result<u64> {
            use std::io::Write;
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::MPTCP),
            )?;
            s.connect(&std::net::SocketAddr::from(([10, 77, 1, 1], 9001)).into())?;
            let mut s: std::net::TcpStream = s.into();
            let (chunk, start, mut sent) = (vec![0x5a; 2500], Instant::now(), 0u64);
            while start.elapsed() < Duration::from_secs(8) {
                s.write_all(&chunk)?;
                sent += chunk.len() as u64;
                std::thread::sleep(Duration::from_millis(1));
            }
            s.shutdown(std::net::Shutdown::Write)?;
            Ok(sent)
        })
        .expect("writer thread");
    std::thread::sleep(Duration::from_secs(3));
    let subflows = topo.client.run(&["ss", "-tniM"]).unwrap_or_default();
    let lost_at = Instant::now();
    topo.lose(0).expect("silent loss of link 0");
    let sent = writer
        .join()
        .expect("join")
        .expect("client ns")
        .expect("the MPTCP stream was written");
    let arrivals = sink.join().expect("join").expect("sink ns").expect("read");
    let received: u64 = arrivals.iter().map(|a| a.1 as u64).sum();
    let mut base: Vec<Duration> = arrivals
        .windows(2)
        .filter(|w| w[1].0 > stream_start + Duration::from_millis(500) && w[1].0 < lost_at)
        .map(|w| w[1].0 - w[0].0)
        .collect();
    base.sort();
    let p99 = base.get(base.len() * 99 / 100).copied().unwrap_or_default();
    let gap = max_gap(
        &arrivals,
        lost_at - Duration::from_millis(20),
        lost_at + Duration::from_secs(2),
    );
    let mut stalls: Vec<Duration> = arrivals
        .windows(2)
        .filter(|w| w[1].0 > lost_at)
        .map(|w| w[1].0 - w[0].0)
        .filter(|g| *g > Duration::from_millis(100))
        .collect();
    stalls.sort();
    stalls.reverse();
    eprintln!(
        "MPTCP: {received} of {sent} bytes; own p99 {p99:?}; after the silent loss: largest gap {gap:?}, \
         gaps over 100 ms: {stalls:?}\nsubflows before the loss:\n{subflows}"
    );
    assert_eq!(sent, received, "MPTCP carried the stream whole");
}

/// `ip -d link show` field `gso_max_segs` of `ifname` in the HomeSpot namespace.
fn gso_of(topo: &testkit::Topology, ifname: &str) -> u32 {
    let out = topo
        .homespot
        .run(&["ip", "-d", "link", "show", ifname])
        .expect("ip link");
    out.split_whitespace()
        .skip_while(|w| *w != "gso_max_segs")
        .nth(1)
        .and_then(|n| n.parse::<u32>().ok())
        .expect("gso_max_segs in ip -d link")
}

/// Issue 12, acceptance 5 for P-Handoff: a link's interface deleted and re-created gets its
/// socket, its settings (one segment per packet on Bluetooth) and its clients' host routes
/// back within a second; and a start that fails puts the settings it changed back.
#[test]
fn a_recreated_link_gets_its_handoff_socket_settings_and_routes_back() {
    need_root!();
    let bed = handoff_bed(false, "kind = \"bluetooth\"\n");
    let s = session(&bed, [7; 32], Some(2));
    let global = s.global.to_string();
    let route = |bed: &Bed| {
        bed.topo
            .homespot
            .run(&["ip", "route", "show", &global])
            .unwrap_or_default()
    };
    assert!(route(&bed).contains("dev lan2"), "{}", route(&bed));
    bed.topo
        .homespot
        .run(&["ip", "link", "del", "lan2"])
        .expect("delete");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!route(&bed).contains("lan2"));
    testkit::veth(&bed.topo.homespot, "lan2", &bed.topo.client, "eth2").expect("veth");
    bed.topo
        .homespot
        .run(&["ip", "addr", "add", "10.77.3.1/24", "dev", "lan2"])
        .expect("addr");
    bed.topo
        .client
        .run(&["ip", "addr", "add", "10.77.3.100/24", "dev", "eth2"])
        .expect("addr");
    let back = Instant::now();
    bed.topo
        .homespot
        .run(&["ip", "link", "set", "lan2", "up"])
        .expect("up");
    bed.topo
        .client
        .run(&["ip", "link", "set", "eth2", "up"])
        .expect("up");
    let deadline = back + Duration::from_secs(3);
    while !(route(&bed).contains("dev lan2") && gso_of(&bed.topo, "lan2") == 1) {
        assert!(Instant::now() < deadline, "not back: {}", route(&bed));
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = back.elapsed();
    // The new interface's responder socket answers: a switch onto link 2 again.
    let again = session(&bed, [7; 32], Some(2));
    eprintln!(
        "re-created lan2: route and settings back after {took:?}; a switch onto it took {:?}",
        again.switched
    );
    assert!(took <= Duration::from_secs(1), "{took:?}");
    assert_eq!(again.global, s.global);
    assert!(again.switched.is_some());
}

#[test]
fn a_failed_start_puts_the_link_settings_back() {
    need_root!();
    let mut bed = handoff_bed(false, "kind = \"bluetooth\"\n");
    assert_eq!(gso_of(&bed.topo, "lan0"), 1);
    bed.stop_daemon().expect("stop");
    let before = gso_of(&bed.topo, "lan0");
    assert!(before > 1);
    // The proxy's port is taken: homespotd fails after P-Handoff changed the links.
    let mut holder = bed
        .topo
        .homespot
        .spawn(
            &["busybox", "nc", "-l", "-p", "3128"],
            &bed.dir.join("nc.log"),
        )
        .expect("nc");
    std::thread::sleep(Duration::from_millis(300));
    let started = bed.start_daemon();
    let _ = holder.stop(Duration::from_secs(1));
    let Err(e) = started else {
        panic!("homespotd must not start without its proxy port")
    };
    eprintln!("failed start: {e:#}");
    assert!(format!("{e:#}").contains("3128"), "{e:#}");
    assert_eq!(
        gso_of(&bed.topo, "lan0"),
        before,
        "the link's setting is back"
    );
}
