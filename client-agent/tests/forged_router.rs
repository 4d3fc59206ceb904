//! DESIGN.md section 3, "nothing changes state before the sender is authenticated": on a
//! never-seen network, an advert whose datagram carries the router's address proves nothing
//! (any device on the link can write that source address into a UDP datagram). A forger
//! answers the laptop's Query on the foreign AP's network with a HomeSpot advert for that
//! network, signed by its own key, from the router's address; it answers no handshake (a
//! forger elsewhere on the link never sees the replies sent to the router). The agent must not
//! pin it: a pin is made only once a handshake with the identity has completed; while it uses
//! its own HomeSpot, the café's network is a plain one, WPAD and all. And a laptop
//! that meets it first (no HomeSpot known yet) must not be held by it: once its handshakes are
//! given up, the network is used as the plain network it is.
//!
//! The forger runs in the AP's namespace (the bed's AP link has no third device), so its
//! datagrams carry the router's address exactly as a forged one would.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use phandoff::crypto::Identity;
use phandoff::wire::{Advert, LinkInfo, LinkKind, Message};
use std::sync::Mutex;

use testkit::journey::{JourneyBed, ORIGIN};

/// The tests share the AP's address and port: one bed at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A stranger's key.
const FORGER: [u8; 32] = [0x5f; 32];

/// Runs [`replayer`] in the AP's namespace; returns the fingerprint of its identity, the flag
/// that stops it and the count of Queries it answered.
fn in_the_ap(
    bed: &JourneyBed,
    seed: [u8; 32],
    l2_id: &[u8],
) -> (String, Arc<AtomicBool>, Arc<AtomicU64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let (s2, a2, l2) = (stop.clone(), answered.clone(), l2_id.to_vec());
    let id = bed
        .ap
        .in_thread(move || replayer(seed, &l2, s2, a2))
        .expect("replayer");
    (hex(&id), stop, answered)
}

/// The journey bed with the HomeSpot's radios down on the laptop: no DHCP client runs, the
/// agent is not started.
fn at_the_cafe_first() -> JourneyBed {
    let bed = JourneyBed::start_bare(&testkit::journey::homespotd_bin().expect("homespotd"))
        .expect("bed");
    for l in ["eth0", "eth1"] {
        bed.topo
            .client
            .run(&["ip", "link", "set", l, "down"])
            .expect("HomeSpot radios off");
    }
    bed
}

/// Answers every Query on the AP's network with an advert signed by the identity of `seed`
/// for that network (Wi-Fi `l2_id`, the AP's router address) until `stop`; returns the
/// identity. With a HomeSpot's own key this is what a replay of its advert from a network with
/// the same router address looks like (the bed's HomeSpot links have other addresses than
/// the AP, so its recorded adverts cannot be replayed here as they are).
fn replayer(
    seed: [u8; 32],
    l2_id: &[u8],
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> [u8; 32] {
    let id = Identity::from_seed(seed);
    let mut a = Advert {
        identity: [0; 32],
        noise_key: [0; 32],
        epoch: 1,
        global_subnet: Ipv4Addr::new(10, 201, 0, 0),
        global_prefix: 24,
        global_addr: Ipv4Addr::new(10, 201, 0, 1),
        caps: 0,
        links: vec![LinkInfo {
            index: 0,
            kind: LinkKind::Wifi,
            l2_id: l2_id.to_vec(),
            subnet: Ipv4Addr::new(10, 88, 1, 0),
            prefix: 24,
            router: Ipv4Addr::new(10, 88, 1, 1),
            proxy: Ipv4Addr::new(10, 88, 1, 1),
            proxy_port: 3128,
            pac_url: vec![],
        }],
        signature: [0; 64],
    };
    id.sign_advert(&mut a);
    testkit::forger::answer_queries(Message::Advert(a).emit(), Duration::ZERO, stop, answered)
        .expect("forger");
    id.public()
}

/// The bed's HomeSpot's identity key (a replayer holding a recorded advert signed with it).
fn homespot_seed(bed: &JourneyBed) -> [u8; 32] {
    let b = std::fs::read(bed.dir.join("identity.key")).expect("identity key");
    b.try_into().expect("32 bytes")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The AP's network is a plain one in the agent's status, with the AP's WPAD.
fn assert_plain_with_wpad(bed: &JourneyBed) {
    let s = bed.request(r#"{"cmd":"status"}"#).expect("status");
    let eth2 = s["links"]
        .as_array()
        .and_then(|v| v.iter().find(|l| l["name"] == "eth2"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (eth2["state"].as_str(), eth2["info"]["wpad"].as_str()),
        (Some("plain"), Some("http://10.88.1.1/wpad.dat")),
        "the café's network with its WPAD: {s}"
    );
}

/// The journey bed with the agent on the HomeSpot's Wi-Fi.
fn at_home() -> (JourneyBed, testkit::journey::EventLog) {
    let mut bed =
        JourneyBed::start(&testkit::journey::homespotd_bin().expect("homespotd")).expect("bed");
    let events = bed
        .start_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            "[policy]\nthroughput_rule = false\n",
        )
        .expect("agent");
    events.handoff_to(0, "eth0").expect("at the HomeSpot");
    (bed, events)
}

/// Whether `e` is a `homespot_refused` event about `fp` whose reason says `why`.
fn refusal(e: &serde_json::Value, fp: &str, why: &str) -> bool {
    e["event"] == "homespot_refused"
        && e["identity"] == fp
        && e["reason"].as_str().is_some_and(|r| r.contains(why))
}

/// The agent's status lists `fp` as resting on the AP's network.
fn assert_resting(bed: &JourneyBed, fp: &str) {
    let s = bed.request(r#"{"cmd":"status"}"#).expect("status");
    let resting = s["resting"].as_array().cloned().unwrap_or_default();
    assert!(
        resting
            .iter()
            .any(|r| r["identity"] == fp && r["router"] == "10.88.1.1"),
        "resting on the AP's network: {s}"
    );
}

/// A 2 MB download through the agent, byte-exact.
fn download_through_the_cafe(bed: &JourneyBed) {
    let c = bed
        .curl(&["--fail", &format!("http://{ORIGIN}/bytes/2000000")])
        .expect("curl");
    let (st, err, dl) = c.finish(Duration::from_secs(20)).expect("curl ends");
    assert!(
        st.success(),
        "curl through the café's network: {err}\n{}",
        bed.agent_log()
    );
    assert_eq!((dl.bytes, dl.mismatch), (2_000_000, None), "byte-exact");
}

#[test]
fn an_advert_forged_from_the_routers_address_is_never_pinned() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (mut bed, events) = at_home();
    let (fp, stop, answered) = in_the_ap(&bed, FORGER, b"cafe");
    // To the AP: both HomeSpot radios lost, its link up with a lease.
    bed.topo
        .client
        .run(&["ip", "link", "set", "eth2", "down"])
        .expect("eth2 down");
    let mark = events.len();
    bed.topo.lose(0).expect("lose wifi");
    bed.topo.lose(1).expect("lose bluetooth");
    for l in ["eth0", "eth1"] {
        events
            .wait(mark, Duration::from_secs(5), |e| {
                e["event"] == "link_down" && e["link"] == l
            })
            .expect("declared dead");
    }
    bed.topo
        .client
        .run(&["ip", "link", "set", "eth2", "up"])
        .expect("eth2 up");
    bed.dhcp("eth2").expect("lease from the AP");
    // The laptop is associated with its own HomeSpot: the forged one is refused as another
    // HomeSpot, and the café's network used as a plain one, with its WPAD (it was DIRECT).
    let refused = events.wait(mark, Duration::from_secs(10), |e| {
        refusal(e, &fp, "is in use")
    });
    if let Err(e) = refused {
        panic!(
            "the forged HomeSpot was not refused: {e}\n{}",
            bed.agent_log()
        );
    }
    bed.wait_current("eth2", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", bed.agent_log()));
    assert_plain_with_wpad(&bed);
    std::thread::sleep(Duration::from_secs(1));
    let log = bed.stop_agent().expect("stop agent");
    stop.store(true, Ordering::Relaxed);
    let n = answered.load(Ordering::Relaxed);
    let pins = std::fs::read_to_string(bed.dir.join("agent-state/trust")).unwrap_or_default();
    println!("the forger answered {n} Queries; pins:\n{pins}");
    assert!(n > 0, "the forger answered the Query\n{log}");
    assert!(
        log.contains(&fp[..12]),
        "the agent met the forged advert\n{log}"
    );
    assert!(
        !pins.contains(&fp),
        "the forged identity was pinned without a handshake:\n{pins}\n{log}"
    );
}

/// The laptop opens its lid at the café first (it has met no HomeSpot in this run): the forged
/// advert is the only HomeSpot it sees. Its handshakes go unanswered; after three rounds the
/// agent gives it up (refused, with the reason) and uses the network with its own DHCP and WPAD:
/// a download goes through. Without the fallback the link stayed a HomeSpot link, retrying a
/// handshake nobody answers (this test then fails waiting for the refusal).
#[test]
fn a_forged_homespot_met_first_is_given_up_for_the_plain_network() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut bed = at_the_cafe_first();
    let (fp, stop, answered) = in_the_ap(&bed, FORGER, b"cafe");
    bed.dhcp("eth2").expect("lease from the AP");
    let events = bed
        .launch_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            "[policy]\nthroughput_rule = false\n",
        )
        .expect("agent");
    let refused = events.wait(0, Duration::from_secs(15), |e| {
        refusal(e, &fp, "never completed a handshake")
    });
    let refused = match refused {
        Ok((_, e)) => e,
        Err(e) => panic!(
            "the forged HomeSpot was not given up: {e}\n{}",
            bed.agent_log()
        ),
    };
    println!("refused: {}", refused["reason"]);
    bed.wait_current("eth2", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", bed.agent_log()));
    download_through_the_cafe(&bed);
    let s = bed.request(r#"{"cmd":"status"}"#).expect("status");
    println!("status: {s}");
    let log = bed.stop_agent().expect("stop agent");
    stop.store(true, Ordering::Relaxed);
    let pins = std::fs::read_to_string(bed.dir.join("agent-state/trust")).unwrap_or_default();
    assert!(
        !pins.contains(&fp),
        "the forged identity was pinned:\n{pins}\n{log}"
    );
    assert!(answered.load(Ordering::Relaxed) > 0, "the forger answered");
}

/// A replay of the pinned HomeSpot's advert on another network with the same router address
/// (192.168.1.1 at home and at the café, say), met before the laptop has associated in this
/// run: the handshakes go unanswered; after three rounds the HomeSpot rests on that network
/// (refused, with the reason), which is used as a plain one; after 15 s it is tried again
/// (the real HomeSpot, restarting, would answer then), and rests twice as long. Before, the
/// laptop retried the handshake there once a second for good, and the café was never used.
/// The café replaying the adverts of the laptop's HomeSpot, pinned at home whose router has
/// the café's router address; no association yet: the bed, the replayer's fingerprint, its
/// stop flag and count of answers, the agent's events, and the index and moment of the first
/// rest there.
struct Replayed {
    bed: JourneyBed,
    fp: String,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    events: testkit::journey::EventLog,
    first: usize,
    first_at: std::time::Instant,
}

fn rested(fp: &str) -> impl Fn(&serde_json::Value) -> bool + '_ {
    move |e| refusal(e, fp, "never answered a handshake or probe")
}

fn pinned_replay_at_the_cafe() -> Replayed {
    let mut bed = at_the_cafe_first();
    let (fp, stop, answered) = in_the_ap(&bed, homespot_seed(&bed), b"home");
    // Pinned at home, whose router has the café's router address.
    let state = bed.dir.join("agent-state");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(
        state.join("trust"),
        format!("{fp} 1 {} 10.88.1.1\n", hex(b"home")),
    )
    .expect("pin");
    bed.dhcp("eth2").expect("lease from the AP");
    let events = bed
        .launch_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            "[policy]\nthroughput_rule = false\n",
        )
        .expect("agent");
    let (first, e) = events
        .wait(0, Duration::from_secs(15), rested(&fp))
        .unwrap_or_else(|e| {
            panic!(
                "the replayed HomeSpot was not rested: {e}\n{}",
                bed.agent_log()
            )
        });
    let first_at = std::time::Instant::now();
    println!("refused: {}", e["reason"]);
    bed.wait_current("eth2", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", bed.agent_log()));
    Replayed {
        bed,
        fp,
        stop,
        answered,
        events,
        first,
        first_at,
    }
}

#[test]
fn a_replayed_advert_of_the_pinned_homespot_leaves_the_network_plain() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Replayed {
        mut bed,
        fp,
        stop,
        answered,
        events,
        first,
        first_at,
    } = pinned_replay_at_the_cafe();
    assert_plain_with_wpad(&bed);
    assert_resting(&bed, &fp);
    download_through_the_cafe(&bed);
    // Tried again once the rest is over, and rested again.
    let again = events.wait(first + 1, Duration::from_secs(30), rested(&fp));
    let again_after = first_at.elapsed();
    if let Err(e) = again {
        panic!("not tried again after the rest: {e}\n{}", bed.agent_log());
    }
    println!("tried again and rested again {again_after:?} after the first rest");
    let log = bed.stop_agent().expect("stop agent");
    stop.store(true, Ordering::Relaxed);
    assert!(
        again_after >= Duration::from_secs(15),
        "the rest lasted 15 s: {again_after:?}\n{log}"
    );
    assert!(
        log.contains("for 30s"),
        "the second rest is twice as long\n{log}"
    );
    assert!(
        answered.load(Ordering::Relaxed) > 1,
        "the replayer answered twice"
    );
}

/// A rest holds for the link the HomeSpot did not answer on; a link that comes up during it
/// is tried at once. What this is for: a laptop that rested its HomeSpot at a café replaying
/// its adverts, whose router has the address of the home router, comes home and uses its
/// HomeSpot there without waiting for the rest to end (up to ten minutes). The bed's HomeSpot
/// links have other addresses than the AP, so this test brings the café's own link back (its
/// carrier drops and returns): the agent must try there again within the first rest, and rest
/// again, twice as long, when the replay does not answer.
#[test]
fn a_link_that_comes_up_during_a_rest_is_tried_at_once() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Replayed {
        mut bed,
        fp,
        stop,
        events,
        first,
        first_at,
        ..
    } = pinned_replay_at_the_cafe();
    assert_resting(&bed, &fp);
    bed.ap
        .run(&["ip", "link", "set", "lan", "down"])
        .expect("café radio off");
    events
        .wait(first + 1, Duration::from_secs(5), |e| {
            e["event"] == "link_down" && e["link"] == "eth2"
        })
        .unwrap_or_else(|e| panic!("eth2 not down: {e}\n{}", bed.agent_log()));
    bed.ap
        .run(&["ip", "link", "set", "lan", "up"])
        .expect("café radio on");
    let up_at = std::time::Instant::now();
    // The link is tried (three handshakes, unanswered) and the next rest, twice as long,
    // begins: the agent says so in its log.
    let deadline = up_at + Duration::from_secs(12);
    while !bed.agent_log().contains("for 30s") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (after_up, after_first) = (up_at.elapsed(), first_at.elapsed());
    let log = bed.stop_agent().expect("stop agent");
    stop.store(true, Ordering::Relaxed);
    assert!(
        log.contains("for 30s"),
        "the link that came back was not tried (no second rest {after_up:?} after it came up)\n{log}"
    );
    println!(
        "tried on the link that came back and rested again {after_up:?} after it came up ({after_first:?} after the first rest began)"
    );
    assert!(
        after_first < Duration::from_secs(15),
        "tried within the first rest (15 s), not after it: {after_first:?}\n{log}"
    );
}

#[test]
fn a_replay_of_the_homespot_in_use_at_a_cafe_leaves_the_cafe_plain() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (mut bed, events) = at_home();
    // The home Wi-Fi's name, as pinned.
    let pins = std::fs::read_to_string(bed.dir.join("agent-state/trust")).expect("pins");
    let wifi = pins
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4 && w[1] == "1").then(|| (w[0].to_string(), w[2].to_string()))
        })
        .next()
        .unwrap_or_else(|| panic!("a Wi-Fi pin: {pins}"));
    let l2: Vec<u8> = (0..wifi.1.len() / 2)
        .map(|i| u8::from_str_radix(&wifi.1[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let (fp, stop, answered) = in_the_ap(&bed, homespot_seed(&bed), &l2);
    assert_eq!(fp, wifi.0, "the replayer holds the HomeSpot's key");
    let mark = events.len();
    let t = std::time::Instant::now();
    let (_, h) = bed
        .leave_for_ap(&events, true)
        .unwrap_or_else(|e| panic!("{e}\n{}", bed.agent_log()));
    println!("handoff to the café {:?} after leaving: {h}", t.elapsed());
    let refused = events.wait(mark, Duration::from_secs(1), |e| {
        refusal(e, &fp, "never answered a handshake or probe")
    });
    if let Err(e) = refused {
        panic!("the replay was not reported: {e}\n{}", bed.agent_log());
    }
    assert_plain_with_wpad(&bed);
    assert_resting(&bed, &fp);
    download_through_the_cafe(&bed);
    bed.stop_agent().expect("stop agent");
    stop.store(true, Ordering::Relaxed);
    assert!(
        answered.load(Ordering::Relaxed) > 0,
        "the replayer answered"
    );
}
