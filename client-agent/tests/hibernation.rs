//! Issue 5, acceptance 5: hibernation. Every link of the laptop goes silent for 10 s (the
//! HomeSpot's radios lost, no other network): the download waits and resumes when a radio
//! returns. A request made while no link returns within the bound gets 504 with a reason.

use std::time::{Duration, Instant};

use testkit::journey::{JourneyBed, ORIGIN};

#[test]
fn downloads_wait_for_a_link_and_give_up_after_the_bound() {
    if !testkit::can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut bed =
        JourneyBed::start(&testkit::journey::homespotd_bin().expect("homespotd")).expect("bed");
    let ev = bed
        .start_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            "[proxy]\nhibernate = \"14s\"\n[policy]\nthroughput_rule = false\n",
        )
        .expect("agent");
    let c = bed
        .curl(&["--fail", &format!("http://{ORIGIN}/bytes/60000000")])
        .expect("curl");
    c.wait_bytes(5_000_000, Duration::from_secs(20))
        .expect("started");
    let n = ev.len();
    bed.topo.lose(0).expect("lose wifi");
    bed.topo.lose(1).expect("lose bluetooth");
    let t = Instant::now();
    ev.wait(n, Duration::from_secs(5), |e| {
        e["event"] == "link_down" && e["link"] == "eth1"
    })
    .expect("both dead");
    let before = c.progress.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(10).saturating_sub(t.elapsed()));
    let status = bed.request(r#"{"cmd":"status"}"#).expect("status");
    assert_eq!(status["hibernating"], true, "{status}");
    bed.topo.restore(0).expect("wifi back");
    let (st, err, d) = c.finish(Duration::from_secs(60)).expect("curl");
    println!("every link down for 10 s at byte {before}; the download finished {:?} after the loss; curl {st}", t.elapsed());
    assert!(st.success(), "{err}\n{}", bed.agent_log());
    assert_eq!((d.bytes, d.mismatch), (60_000_000, None));

    // Gone for longer than the bound: 504 with the reason.
    bed.topo.lose(0).expect("lose wifi");
    let n = ev.len();
    ev.wait(n, Duration::from_secs(5), |e| {
        e["event"] == "link_down" && e["link"] == "eth0"
    })
    .expect("dead");
    let t = Instant::now();
    let out = bed
        .topo
        .client
        .output(&[
            "curl",
            "-sS",
            "-x",
            "http://127.0.0.1:3129",
            "-w",
            "\n%{http_code}",
            &format!("http://{ORIGIN}/bytes/1000"),
        ])
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("after {:?}: {text}", t.elapsed());
    assert!(text.ends_with("504"), "{text}");
    assert!(text.contains("no network link for 14s"), "{text}");
    assert!(t.elapsed() >= Duration::from_secs(13), "{:?}", t.elapsed());
}
