//! Issue 17: the tiny client over two TAP devices against the real homespotd.
//!
//! The device program runs in the `air` namespace, its TAP devices ports of the two air bridges
//! (Wi-Fi and Bluetooth of the namespace bed). A telemetry service in the HomeSpot's namespace
//! records every datagram (sequence number, arrival time, source) and echoes it.
//!
//! 1. Leases on both links from homespotd, the pinned identity, the handshake, 50 datagrams/s
//!    from the global address; the preferred radio's port leaves its bridge (a silent loss):
//!    the switch, the datagrams lost in the gap, the gap (target 150 ms; the test asserts
//!    `HOMESPOT_TINY_MAX_GAP_MS`, default 400, as machines running the whole suite are noisy:
//!    `bench/tiny.sh` holds it to 150 ms), no loss after it, one global address throughout, and
//!    the move back when the radio returns.
//! 3. An eavesdropper on the Wi-Fi's air replays everything the HomeSpot sent the device and
//!    everything the device sent the HomeSpot, and sends adverts signed by another identity,
//!    tampered adverts, forged transport messages and garbage: the device counts each refusal
//!    and nothing moves (no switch, no lost session, the HomeSpot's route unchanged, no pause).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phandoff::crypto::Identity;
use phandoff::wire::Message;
use testkit::Topology;
use testkit::{Netns, Proc, Scratch};

const PORT: u16 = 5555;
const ATTACKER: &str = "10.77.1.66";

struct Arrival {
    seq: u32,
    at: Instant,
    from: Ipv4Addr,
}

/// The telemetry service: records and echoes until told to stop.
struct Sink {
    seen: Arc<Mutex<Vec<Arrival>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Sink {
    fn start(ns: &Netns) -> Sink {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (seen.clone(), stop.clone());
        let thread = ns
            .spawn_thread(move || {
                let s = UdpSocket::bind(("0.0.0.0", PORT)).expect("sink socket");
                s.set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("timeout");
                let mut buf = [0u8; 64];
                while !st2.load(Ordering::Relaxed) {
                    let Ok((n, from)) = s.recv_from(&mut buf) else {
                        continue;
                    };
                    let at = Instant::now();
                    if n != 16 || &buf[..4] != b"HSTL" {
                        continue;
                    }
                    let seq = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    let SocketAddr::V4(f) = from else { continue };
                    s2.lock().unwrap_or_else(|p| p.into_inner()).push(Arrival {
                        seq,
                        at,
                        from: *f.ip(),
                    });
                    let _ = s.send_to(&buf[..n], from);
                }
            })
            .expect("sink thread");
        Sink {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The largest pause between arrivals in `[from, to]`, with the sequence numbers around it.
    fn largest_gap(&self, from: Instant, to: Instant) -> (Duration, u32, u32) {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut best = (Duration::ZERO, 0, 0);
        for w in seen.windows(2) {
            if w[1].at < from || w[0].at > to {
                continue;
            }
            let g = w[1].at.duration_since(w[0].at);
            if g > best.0 {
                best = (g, w[0].seq, w[1].seq);
            }
        }
        best
    }

    /// Sequence numbers missing after `seq` (up to the last received).
    fn missing_after(&self, seq: u32) -> Vec<u32> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let got: std::collections::BTreeSet<u32> =
            seen.iter().map(|a| a.seq).filter(|s| *s > seq).collect();
        let last = got.iter().next_back().copied().unwrap_or(seq);
        (seq + 1..=last).filter(|s| !got.contains(s)).collect()
    }

    fn sources(&self) -> std::collections::BTreeSet<Ipv4Addr> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().map(|a| a.from).collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Bed {
    topo: Topology,
    dir: Scratch,
    hs: Proc,
    identity: String,
}

fn bed() -> Bed {
    let topo = Topology::with_air(2).expect("topology");
    let dir = Scratch::new("tiny").expect("scratch");
    let mut cfg = format!(
        "[server]\nlease_db = \"{}\"\nstatus_socket = \"{}\"\n[handoff]\nglobal_subnet = \"10.200.0.0/24\"\nidentity = \"{}\"\n",
        dir.join("leases.redb").display(),
        dir.join("status.sock").display(),
        dir.join("identity.key").display()
    );
    for (l, kind) in topo.links.iter().zip(["wifi", "bluetooth"]) {
        cfg += &format!(
            "\n[[link]]\nname = \"{kind}\"\nkind = \"{kind}\"\ninterface = \"{}\"\naddress = \"{}/24\"\npools = [\"{}-{}\"]\nlease_time = \"1h\"\n",
            l.hs_if,
            l.hs_addr,
            l.host(100),
            l.host(199)
        );
    }
    let conf = dir.join("homespotd.toml");
    std::fs::write(&conf, cfg).expect("config");
    let bin = testkit::journey::homespotd_bin().expect("homespotd");
    let mut hs = topo
        .homespot
        .spawn(
            &[&bin, "--config", &conf.display().to_string()],
            &dir.join("homespotd.log"),
        )
        .expect("homespotd");
    hs.wait_for_log("P-Handoff responder ready", Duration::from_secs(10))
        .expect("homespotd ready");
    let log = hs.log();
    let at = log.find("identity=").expect("identity in the log") + "identity=".len();
    let identity = log[at..at + 64].to_string();
    Bed {
        topo,
        dir,
        hs,
        identity,
    }
}

fn air(b: &Bed) -> &Netns {
    b.topo.air.as_ref().expect("air")
}

/// Waits for `needle` in the device's output after byte `from`; returns the line.
fn wait_line(dev: &Proc, from: usize, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = dev.log();
        if let Some(l) = log
            .get(from..)
            .unwrap_or("")
            .lines()
            .find(|l| l.contains(needle))
        {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no '{needle}' within {timeout:?}; device:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|w| w.strip_prefix('=')))
        .unwrap_or("")
}

fn last_line(dev: &Proc, prefix: &str) -> String {
    dev.log()
        .lines()
        .rfind(|l| l.split_whitespace().nth(1) == Some(prefix))
        .unwrap_or("")
        .to_string()
}

fn max_gap_ms() -> u128 {
    std::env::var("HOMESPOT_TINY_MAX_GAP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

#[test]
fn the_tiny_client_keeps_its_address_and_its_telemetry_across_radios_and_refuses_forgeries() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let b = bed();
    let a = air(&b);
    let sink = Sink::start(&b.topo.homespot);
    // The radios: TAP devices on the air bridges, up before the device opens them (a TAP that
    // is down fails every write).
    for i in 0..2 {
        let tap = format!("tap{i}");
        a.run(&["ip", "tuntap", "add", "dev", &tap, "mode", "tap"])
            .expect("tap");
        a.run(&["ip", "link", "set", &tap, "master", &format!("br{i}")])
            .expect("bridge port");
        a.run(&["ip", "link", "set", &tap, "up"]).expect("up");
    }
    // What an eavesdropper on the Wi-Fi's air records, from the first frame.
    let pcap = b.dir.join("tap0.pcap").display().to_string();
    let mut dump = a
        .spawn(
            &[
                "tcpdump",
                "-i",
                "tap0",
                "-n",
                "-U",
                "--immediate-mode",
                "-w",
                &pcap,
                "udp port 4747",
            ],
            &b.dir.join("tcpdump.log"),
        )
        .expect("tcpdump");
    dump.wait_for_log("listening on", Duration::from_secs(10))
        .expect("tcpdump ready");
    let key = b.dir.join("device.key").display().to_string();
    let mut dev = a
        .spawn(
            &[
                env!("CARGO_BIN_EXE_tiny-device"),
                "--tap",
                "tap0",
                "tap1",
                "--identity",
                &b.identity,
                "--key",
                &key,
                "--port",
                &PORT.to_string(),
                "--rate",
                "50",
            ],
            &b.dir.join("device.log"),
        )
        .expect("device");
    dev.wait_for_log("started", Duration::from_secs(10))
        .expect("device started");
    let lease0 = wait_line(&dev, 0, "lease radio=0", Duration::from_secs(20));
    let lease1 = wait_line(&dev, 0, "lease radio=1", Duration::from_secs(20));
    let assoc = wait_line(&dev, 0, "associated", Duration::from_secs(20));
    let joined = wait_line(&dev, 0, "switched radio=0", Duration::from_secs(10));
    let ms = |l: &str| l.split_whitespace().next().unwrap_or("?").to_string();
    println!(
        "joined (ms after the device started): leases {} and {}, associated {}, routed {}\n  {assoc}",
        ms(&lease0),
        ms(&lease1),
        ms(&assoc),
        ms(&joined)
    );
    let global: Ipv4Addr = field(&assoc, "global").parse().expect("global address");
    let dev0: Ipv4Addr = field(&lease0, "address")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("radio 0 address");
    assert!(dev0.octets()[..3] == [10, 77, 1], "{lease0}");
    assert!(
        field(&lease1, "address").starts_with("10.77.2."),
        "{lease1}"
    );
    let route = |b: &Bed| {
        b.topo
            .homespot
            .run(&["ip", "route", "show", &global.to_string()])
            .expect("route")
    };
    assert!(route(&b).contains("dev lan0"), "{}", route(&b));
    // Steady telemetry, echoed.
    std::thread::sleep(Duration::from_secs(2));
    assert!(sink.count() >= 80, "50/s for 2 s: {}", sink.count());

    // 3. The eavesdropper.
    dump.stop(Duration::from_secs(5)).expect("tcpdump stops");
    let captured = testkit::pcap::udp(&std::fs::read(&pcap).expect("capture"));
    let to_device: Vec<Vec<u8>> = captured
        .iter()
        .filter(|d| d.src == Ipv4Addr::new(10, 77, 1, 1))
        .map(|d| d.payload.clone())
        .collect();
    let to_homespot: Vec<Vec<u8>> = captured
        .iter()
        .filter(|d| d.src == dev0)
        .map(|d| d.payload.clone())
        .collect();
    let transports = to_device
        .iter()
        .filter(|p| matches!(Message::parse(p), Ok(Message::Transport(_))))
        .count();
    assert!(
        transports >= 3 && !to_homespot.is_empty(),
        "the air carried the session: {} to the device ({transports} transport), {} to the HomeSpot",
        to_device.len(),
        to_homespot.len()
    );
    let evil = Netns::new("evil").expect("attacker");
    b.topo.attach(0, &evil, "wlan0").expect("attach");
    evil.run(&[
        "ip",
        "addr",
        "add",
        &format!("{ATTACKER}/24"),
        "dev",
        "wlan0",
    ])
    .expect("address");
    let before_attack = dev.log().len();
    let route_before = route(&b);
    let t_attack = Instant::now();
    let sent = evil
        .in_thread(move || attack(dev0, &to_device, &to_homespot))
        .expect("attacker");
    std::thread::sleep(Duration::from_millis(1500));
    let t_attack_end = Instant::now();
    let after = dev.log()[before_attack..].to_string();
    let refused = last_line(&dev, "refused");
    println!("attacker sent {sent} datagrams; device: {refused}");
    for k in ["malformed", "forged", "replayed", "wrong_identity"] {
        let n: u64 = field(&refused, k).parse().unwrap_or(0);
        assert!(n >= 1, "{k} counted: {refused}\n{after}");
    }
    for bad in [
        "link_dead",
        "switched",
        "session_lost",
        "associated",
        "switch_failed",
    ] {
        assert!(
            !after.contains(bad),
            "nothing moved under attack ({bad}):\n{after}"
        );
    }
    assert_eq!(route(&b), route_before, "the HomeSpot's route did not move");
    let (g, _, _) = sink.largest_gap(t_attack, t_attack_end);
    println!("largest telemetry pause under attack: {g:?}");
    assert!(
        g < Duration::from_millis(200),
        "telemetry carried on: {g:?}"
    );
    drop(evil);

    // 1. The silent loss of the preferred radio.
    let before_loss = dev.log().len();
    let echoes_before: u64 = field(&last_line(&dev, "status"), "echoes")
        .parse()
        .unwrap_or(0);
    let t_loss = Instant::now();
    a.run(&["ip", "link", "set", "tap0", "nomaster"])
        .expect("loss");
    let dead = wait_line(
        &dev,
        before_loss,
        "link_dead radio=0",
        Duration::from_secs(3),
    );
    let switched = wait_line(
        &dev,
        before_loss,
        "switched radio=1",
        Duration::from_secs(3),
    );
    let t_switched = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let (gap, last_before, first_after) = sink.largest_gap(t_loss, t_switched);
    let lost = first_after.saturating_sub(last_before).saturating_sub(1);
    let after_gap = sink.missing_after(first_after);
    println!(
        "silent loss: {dead} / {switched}\n  telemetry gap {:.1} ms, {lost} datagrams lost in it (#{} .. #{}), missing after it: {after_gap:?}",
        gap.as_secs_f64() * 1000.0,
        last_before + 1,
        first_after.saturating_sub(1)
    );
    assert!(route(&b).contains("dev lan1"), "{}", route(&b));
    let status = last_line(&dev, "status");
    let echoes_after: u64 = field(&status, "echoes").parse().unwrap_or(0);
    assert!(
        echoes_after >= echoes_before + 100,
        "echoes come back over the new radio: {echoes_before} -> {echoes_after}"
    );
    assert!(after_gap.is_empty(), "no loss after the gap: {after_gap:?}");
    assert!(
        gap.as_millis() <= max_gap_ms(),
        "gap {gap:?} within {} ms",
        max_gap_ms()
    );

    // The radio comes back: the device moves home, make-before-break.
    let before_back = dev.log().len();
    let t_back = Instant::now();
    a.run(&["ip", "link", "set", "tap0", "master", "br0"])
        .expect("restore");
    let back = wait_line(
        &dev,
        before_back,
        "switched radio=0",
        Duration::from_secs(5),
    );
    let t_home = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let (gap_back, _, first_back) = sink.largest_gap(t_back, t_home);
    let missing_back = sink.missing_after(first_back);
    println!(
        "back home: {back}; largest pause {:.1} ms; missing after: {missing_back:?}",
        gap_back.as_secs_f64() * 1000.0
    );
    assert!(route(&b).contains("dev lan0"), "{}", route(&b));
    assert!(missing_back.is_empty(), "{missing_back:?}");

    // One global address throughout.
    let log = dev.log();
    let globals: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains(" associated "))
        .map(|l| field(l, "global"))
        .collect();
    assert_eq!(globals.len(), 1, "{log}");
    assert_eq!(
        sink.sources().into_iter().collect::<Vec<_>>(),
        vec![global],
        "every datagram from the global address"
    );
    drop(sink);
    let _ = dev.stop(Duration::from_secs(2));
    let _ = b.hs.log();
}

/// What the eavesdropper sends: the HomeSpot's messages to the device replayed to the device
/// (three times), the device's to the HomeSpot replayed to the HomeSpot, an advert signed by
/// another identity, the HomeSpot's advert with one byte changed, transport messages with a
/// flipped bit, and garbage.
fn attack(device: Ipv4Addr, to_device: &[Vec<u8>], to_homespot: &[Vec<u8>]) -> usize {
    let s = UdpSocket::bind((ATTACKER, 4747)).expect("socket");
    let dev = (device, 4747);
    let hs = (Ipv4Addr::new(10, 77, 1, 1), 4747);
    let mut sent = 0;
    let mut send = |p: &[u8], to: (Ipv4Addr, u16)| {
        s.send_to(p, to).expect("send");
        sent += 1;
        std::thread::sleep(Duration::from_micros(500));
    };
    for _ in 0..3 {
        for p in to_device {
            send(p, dev);
        }
    }
    for p in to_homespot {
        send(p, hs);
    }
    let advert = to_device.iter().find_map(|p| match Message::parse(p) {
        Ok(Message::Advert(a)) => Some(a),
        _ => None,
    });
    if let Some(a) = advert {
        // Another identity's advert, claiming the same links with the attacker as router.
        let mut fake = a.clone();
        for l in &mut fake.links {
            l.router = ATTACKER.parse().expect("address");
        }
        let evil = Identity::from_seed([0x66; 32]);
        fake.identity = evil.public();
        fake.noise_key = evil.noise_public();
        fake.epoch += 1000;
        evil.sign_advert(&mut fake);
        send(&Message::Advert(fake).emit(), dev);
        // The genuine advert with the attacker as router, signature unchanged.
        let mut tampered = a.clone();
        tampered.links[0].router = ATTACKER.parse().expect("address");
        tampered.epoch += 1000;
        send(&Message::Advert(tampered).emit(), dev);
    }
    for p in to_device
        .iter()
        .filter(|p| matches!(Message::parse(p), Ok(Message::Transport(_))))
        .take(20)
    {
        let mut f = p.clone();
        let last = f.len() - 1;
        f[last] ^= 1;
        send(&f, dev);
    }
    for n in [0usize, 1, 3, 17, 200] {
        send(&vec![0xa5; n], dev);
    }
    sent
}
