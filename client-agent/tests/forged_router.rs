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

/// Answers every Query on the AP's network with the forged advert until `stop`; returns the
/// forger's identity.
fn forger(stop: Arc<AtomicBool>, answered: Arc<AtomicU64>) -> [u8; 32] {
    let id = Identity::from_seed([0x5f; 32]);
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
            l2_id: b"cafe".to_vec(),
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

#[test]
fn an_advert_forged_from_the_routers_address_is_never_pinned() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut bed =
        JourneyBed::start(&testkit::journey::homespotd_bin().expect("homespotd")).expect("bed");
    let events = bed
        .start_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            "[policy]\nthroughput_rule = false\n",
        )
        .expect("agent");
    events.handoff_to(0, "eth0").expect("at the HomeSpot");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let (s2, a2) = (stop.clone(), answered.clone());
    let forged = bed.ap.in_thread(move || forger(s2, a2)).expect("forger");
    let fp: String = forged.iter().map(|b| format!("{b:02x}")).collect();
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
        e["event"] == "homespot_refused"
            && e["identity"] == fp.as_str()
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("is in use"))
    });
    if let Err(e) = refused {
        panic!(
            "the forged HomeSpot was not refused: {e}\n{}",
            bed.agent_log()
        );
    }
    bed.wait_current("eth2", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", bed.agent_log()));
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
    let mut bed = JourneyBed::start_bare(&testkit::journey::homespotd_bin().expect("homespotd"))
        .expect("bed");
    for l in ["eth0", "eth1"] {
        bed.topo
            .client
            .run(&["ip", "link", "set", l, "down"])
            .expect("HomeSpot radios off");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let (s2, a2) = (stop.clone(), answered.clone());
    let forged = bed.ap.in_thread(move || forger(s2, a2)).expect("forger");
    let fp: String = forged.iter().map(|b| format!("{b:02x}")).collect();
    bed.dhcp("eth2").expect("lease from the AP");
    let events = bed
        .launch_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            "[policy]\nthroughput_rule = false\n",
        )
        .expect("agent");
    let refused = events.wait(0, Duration::from_secs(15), |e| {
        e["event"] == "homespot_refused"
            && e["identity"] == fp.as_str()
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("never completed a handshake"))
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
