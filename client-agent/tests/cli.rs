//! Issue 13, acceptance 6: `homespot-agent status` and `events` for people (text: link names
//! and kinds, the HomeSpot by fingerprint, local times; `--json` for programs), and a user
//! without the rights to the API socket is told what to do.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::journey::{homespotd_bin, JourneyBed};

const AGENT: &str = env!("CARGO_BIN_EXE_homespot-agent");

#[test]
fn status_and_events_read_as_text_and_a_user_is_told_to_be_root() {
    assert!(testkit::can_run());
    let mut bed = JourneyBed::start(&homespotd_bin().expect("homespotd")).expect("bed");
    let events = bed.start_agent(AGENT, "").expect("agent");
    let api = bed.api.display().to_string();
    let out = Command::new(AGENT)
        .args(["--api", &api, "status"])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("$ homespot-agent status\n{text}");
    assert!(out.status.success());
    assert!(text.contains("Traffic goes over eth0."), "{text}");
    assert!(
        text.contains("HomeSpot wifi link") && text.contains("HomeSpot bluetooth link"),
        "{text}"
    );
    assert!(text.contains("our global address 10.200.0."), "{text}");
    assert!(
        !text.contains("homespot_link") && !text.contains("time_ms"),
        "{text}"
    );
    let json = Command::new(AGENT)
        .args(["--api", &api, "status", "--json"])
        .output()
        .expect("status --json");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(v["current"], "eth0");

    // Events as text while the laptop moves to Bluetooth.
    let mut follow = Command::new(AGENT)
        .args(["--api", &api, "events"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("events");
    std::thread::sleep(Duration::from_millis(300));
    // A download under way, so the handoff's interruption is measured.
    let url = format!("http://{}/bytes/20000000", testkit::journey::ORIGIN);
    let curl = bed
        .curl(&["--fail", "--limit-rate", "4M", &url])
        .expect("curl");
    curl.wait_bytes(2_000_000, Duration::from_secs(10))
        .expect("download started");
    bed.switch(&events, "eth1").expect("switch");
    // The handoff's figures come once its settling second is over.
    std::thread::sleep(Duration::from_millis(2500));
    let _ = follow.kill();
    let out = follow.wait_with_output().expect("events output");
    let (st, err, _) = curl.finish(Duration::from_secs(30)).expect("curl");
    assert!(st.success(), "{err}");
    let lines = String::from_utf8_lossy(&out.stdout).to_string();
    println!("$ homespot-agent events\n{lines}");
    assert!(
        lines.contains("traffic moves eth0 -> eth1 (p-handoff, user)"),
        "{lines}"
    );
    assert!(
        lines
            .lines()
            .all(|l| l.len() > 14 && l.as_bytes()[2] == b':' && l.as_bytes()[8] == b'.'),
        "each line starts with a local time: {lines}"
    );

    // A user who is not root.
    let t = Instant::now();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            AGENT,
            "--api",
            &api,
            "status",
        ])
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    println!("$ (as nobody) homespot-agent status\n{err}");
    assert!(!out.status.success());
    assert!(err.contains("run this as root"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
}
