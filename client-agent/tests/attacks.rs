//! Issue 11, acceptance 1: an attacker on the same air bridge as the laptop's Wi-Fi (it sees
//! every frame the laptop sends there) captures the laptop's handshake and later messages,
//! replays all of them, sends Initiations that claim the laptop's public key with fresh
//! timestamps, and replays old transport messages, while a download runs through the agent.
//! The laptop's session, host route and download are untouched (no session_lost, no
//! link_down at the agent), and homespotd counts each refusal.
//!
//! Acceptance 3: a 10 s flood of Initiations at 50,000/s or more from the same attacker:
//! the idle laptop loses no link (its probes keep answering), the cookie path engages, and
//! homespotd's CPU time and resident memory during the flood are printed.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use phandoff::crypto::ClientKeys;
use phandoff::noise;
use phandoff::wire::{Initiation, Message, Query, INIT_MAC1_AT, TAG_LEN};
use testkit::journey::{JourneyBed, ORIGIN};
use testkit::rss_kb;

const SIZE: u64 = 60_000_000;

/// The flood's rate, per millisecond (HOMESPOT_FLOOD_PER_MS overrides): 60,000/s, above the
/// 50,000/s the issue asks for. At 80,000/s the laptop kept its links on an otherwise idle
/// machine (BENCHMARKS.md), and lost the flooded one when a fuzzer held the other core.
fn flood_per_ms() -> usize {
    std::env::var("HOMESPOT_FLOOD_PER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

/// The two tests run one at a time: each measures what a laptop sees under attack, and the
/// other's download or flood would be load of its own.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
const ATTACKER: &str = "10.77.1.66";

#[test]
fn an_eavesdroppers_replays_and_forgeries_change_nothing() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut bed =
        JourneyBed::start(&testkit::journey::homespotd_bin().expect("homespotd")).expect("bed");
    // What the air carries from the laptop, on both of its HomeSpot radios.
    let mut dumps = vec![];
    for i in 0..2 {
        let pcap = bed.dir.join(&format!("eth{i}.pcap")).display().to_string();
        let dump = bed
            .topo
            .client
            .capture(
                &format!("eth{i}"),
                &[],
                "udp port 4747",
                std::path::Path::new(&pcap),
                &bed.dir.join(&format!("tcpdump{i}.log")),
            )
            .expect("tcpdump");
        dumps.push((dump, pcap));
    }
    let ev = bed
        .start_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            "[policy]\nthroughput_rule = false\n",
        )
        .expect("agent");
    let c = bed
        .curl(&["--fail", &format!("http://{ORIGIN}/bytes/{SIZE}")])
        .expect("curl");
    c.wait_bytes(5_000_000, Duration::from_secs(30))
        .expect("started");
    let mut captured: Vec<Vec<u8>> = vec![];
    for (i, (mut dump, pcap)) in dumps.into_iter().enumerate() {
        dump.stop(Duration::from_secs(5)).expect("tcpdump stops");
        let victim = bed.address(&format!("eth{i}")).expect("laptop address");
        captured.extend(
            testkit::pcap::udp(&std::fs::read(&pcap).expect("capture"))
                .into_iter()
                .filter(|d| d.dst_port == 4747 && d.src == victim)
                .map(|d| d.payload),
        );
    }
    let initiations = captured
        .iter()
        .filter(|p| matches!(Message::parse(p), Ok(Message::Initiation(_))))
        .count();
    assert!(
        initiations >= 1,
        "the handshake was captured: {:?}\n{}",
        captured
            .iter()
            .map(|p| (p.len(), p.get(3)))
            .collect::<Vec<_>>(),
        bed.agent_log()
    );
    let key: [u8; 32] = std::fs::read(bed.dir.join("agent-state/client.key"))
        .expect("key")
        .try_into()
        .expect("32 bytes");
    let victim_pub = ClientKeys::from_secret(key).public();
    let route_before = bed
        .topo
        .homespot
        .run(&["ip", "route", "show", "10.200.0.2"])
        .expect("route");
    assert!(route_before.contains("dev lan0"), "{route_before}");

    // The attacker joins the Wi-Fi's air bridge.
    let evil = bed.neighbour("evil", 0, ATTACKER).expect("attacker");
    let n = ev.len();
    let t = Instant::now();
    let sent = evil
        .in_thread(move || attack(&captured, &victim_pub))
        .expect("attacker thread");
    println!("attacker sent {sent} datagrams in {:?}", t.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    let route_after = bed
        .topo
        .homespot
        .run(&["ip", "route", "show", "10.200.0.2"])
        .expect("route");
    let (st, err, d) = c.finish(Duration::from_secs(120)).expect("curl");
    let after: Vec<serde_json::Value> = ev.all().into_iter().skip(n).collect();
    assert!(st.success(), "{err}\n{}", bed.agent_log());
    assert_eq!((d.bytes, d.mismatch), (SIZE, None));
    assert_eq!(route_after, route_before, "the host route did not move");
    let bad: Vec<&serde_json::Value> = after
        .iter()
        .filter(|e| e["event"] == "session_lost" || e["event"] == "link_down")
        .collect();
    assert!(
        bad.is_empty(),
        "0 unknown-session, 0 link_down at the victim: {bad:?}"
    );
    let (log, line) = stop_with_counters(&mut bed);
    let count = |name: &str| counter(&line, name);
    assert!(
        count("stale_timestamp") >= 1,
        "the captured Initiation: {line}"
    );
    assert!(count("replayed") >= 1, "old transport messages: {line}");
    assert!(
        count("bad_handshake") >= 100,
        "the victim's key without its secret: {line}"
    );
    assert_eq!(count("handshakes"), 1, "only the victim's own: {line}");
    assert!(
        log.contains("P-Handoff refused messages"),
        "a warning in the log:\n{log}"
    );
}

#[test]
fn a_handshake_flood_costs_the_laptop_no_link() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut bed =
        JourneyBed::start(&testkit::journey::homespotd_bin().expect("homespotd")).expect("bed");
    let ev = bed
        .start_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            "[policy]\nthroughput_rule = false\n",
        )
        .expect("agent");
    let evil = bed.neighbour("evil", 0, ATTACKER).expect("attacker");
    let pid = bed.homespotd_pid().expect("homespotd pid");
    let n = ev.len();
    let cpu0 = cpu_ticks(pid);
    let sampler = std::thread::spawn(move || {
        // The largest resident set during the flood, sampled every 100 ms.
        let mut max_kb = 0u64;
        for _ in 0..110 {
            max_kb = max_kb.max(rss_kb(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        max_kb
    });
    let rss_before = rss_kb(pid);
    let (sent, took) = evil.in_thread(flood).expect("flooder");
    let cpu = cpu_ticks(pid).saturating_sub(cpu0);
    let max_kb = sampler.join().unwrap_or(0);
    let rate = sent as f64 / took.as_secs_f64();
    println!(
        "flood: {sent} Initiations in {took:?} = {rate:.0}/s; homespotd CPU {:.2} s in {took:?} ({:.0} % of a core), resident {rss_before} kB before, {max_kb} kB at most",
        cpu as f64 / 100.0,
        cpu as f64 / took.as_secs_f64(),
    );
    std::thread::sleep(Duration::from_millis(500));
    for (name, ns) in [
        ("HomeSpot", &bed.topo.homespot),
        ("laptop", &bed.topo.client),
    ] {
        let snmp = ns.run(&["cat", "/proc/net/snmp"]).unwrap_or_default();
        let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
        println!("{name} UDP counters: {udp:?}");
    }
    let after: Vec<serde_json::Value> = ev.all().into_iter().skip(n).collect();
    let lost: Vec<&serde_json::Value> = after
        .iter()
        .filter(|e| e["event"] == "link_down" || e["event"] == "session_lost")
        .collect();
    assert!(lost.is_empty(), "the laptop lost no link: {lost:?}");
    let status = bed.request(r#"{"cmd":"status"}"#).expect("status");
    let links = status["homespot"]["links"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        links.len() == 2 && links.iter().all(|l| l["alive"] == true),
        "{status}"
    );
    // The path still carries a request.
    let out = bed
        .topo
        .client
        .output(&[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            "http://127.0.0.1:3129",
            &format!("http://{ORIGIN}/bytes/100000"),
        ])
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let (_, line) = stop_with_counters(&mut bed);
    assert!(rate >= 50_000.0, "the flood reached {rate:.0}/s");
    let demanded = counter(&line, "cookie_demanded");
    assert!(
        demanded > sent as u64 / 2,
        "the cookie path engaged: {line}"
    );
}

/// Stops homespotd; its log and its "P-Handoff stopped" line (printed).
fn stop_with_counters(bed: &mut JourneyBed) -> (String, String) {
    let log = bed.stop_homespotd().expect("stop");
    let line = log
        .lines()
        .find(|l| l.contains("P-Handoff stopped"))
        .unwrap_or_default()
        .to_string();
    println!("{line}");
    (log, line)
}

/// The counter `name` in a "P-Handoff stopped" line (0 when absent).
fn counter(line: &str, name: &str) -> u64 {
    line.split(&format!("{name}: "))
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The HomeSpot's advert, asked for on `s` (public: anyone on the link can ask).
fn advert_via(s: &UdpSocket, hs: (Ipv4Addr, u16)) -> phandoff::wire::Advert {
    s.send_to(&Message::Query(Query { nonce: 1 }).emit(), hs)
        .expect("query");
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = s.recv_from(&mut buf).expect("advert");
        if let Ok(Message::Advert(a)) = Message::parse(&buf[..n]) {
            return a;
        }
    }
}

/// An Initiation with a valid `mac1` from the made-up static key `secret`; `claim`, if given,
/// replaces the encrypted static key (a key the sender does not hold).
fn initiation(
    advert: &phandoff::wire::Advert,
    secret: [u8; 32],
    sender: u32,
    ts: u64,
    claim: Option<&[u8; 32]>,
) -> Vec<u8> {
    let (_, mut n) =
        noise::Initiator::start(&secret, &advert.noise_key, &advert.identity, secret, ts)
            .expect("initiation");
    if let Some(c) = claim {
        n[32..64].copy_from_slice(c);
    }
    let mut m = Initiation {
        sender,
        noise: n,
        mac1: [0; TAG_LEN],
        mac2: [0; TAG_LEN],
    };
    let bytes = Message::Initiation(m).emit();
    m.mac1 = noise::mac(&noise::mac1_key(&advert.noise_key), &bytes[..INIT_MAC1_AT]);
    Message::Initiation(m).emit()
}

/// 10 s of Initiations with valid `mac1` from made-up keys (1,024 distinct ones, round
/// robin), as fast as the socket takes them up to `flood_per_ms()` a millisecond. Returns how many
/// and how long.
fn flood() -> (usize, Duration) {
    let s = UdpSocket::bind((ATTACKER, 4747)).expect("socket");
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let hs = (Ipv4Addr::new(10, 77, 1, 1), 4747);
    let advert = advert_via(&s, hs);
    let packets: Vec<Vec<u8>> = (0..1024u32)
        .map(|i| {
            let mut secret = [0x77u8; 32];
            secret[..4].copy_from_slice(&i.to_be_bytes());
            initiation(&advert, secret, i, 1, None)
        })
        .collect();
    s.set_nonblocking(true).expect("nonblocking");
    let per_ms = flood_per_ms();
    let start = Instant::now();
    let mut sent = 0usize;
    let mut ms = 0u64;
    while start.elapsed() < Duration::from_secs(10) {
        for _ in 0..per_ms {
            if s.send_to(&packets[sent % packets.len()], hs).is_ok() {
                sent += 1;
            }
        }
        ms += 1;
        let due = start + Duration::from_millis(ms);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    (sent, start.elapsed())
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: utime is the 14th field, stime the 15th.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    at(11) + at(12)
}

/// Replays every captured datagram three times, then 100 Initiations claiming `victim`.
fn attack(captured: &[Vec<u8>], victim: &[u8; 32]) -> usize {
    let s = UdpSocket::bind((ATTACKER, 4747)).expect("socket");
    s.set_broadcast(true).expect("broadcast");
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let hs = (Ipv4Addr::new(10, 77, 1, 1), 4747);
    let mut sent = 0;
    for _ in 0..3 {
        for p in captured {
            s.send_to(p, hs).expect("send");
            sent += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let advert = advert_via(&s, hs);
    for i in 0..100u32 {
        let mut secret = [0x5au8; 32];
        secret[..4].copy_from_slice(&i.to_be_bytes());
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
            + 1_000_000_000;
        // The victim's public key where the encrypted static key goes: the closest anyone
        // without the victim's secret gets.
        let m = initiation(&advert, secret, i, ts, Some(victim));
        s.send_to(&m, hs).expect("send");
        sent += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    sent
}
