//! Issue 13, acceptance 2: an HTTPS download (a CONNECT tunnel through the agent) on Wi-Fi
//! for 30 s counts for the throughput rule as an HTTP one does: no move to Bluetooth while it
//! runs; after it ends and the idle period passes, back to Bluetooth.

use std::time::{Duration, Instant};

use testkit::journey::{homespotd_bin, JourneyBed};

/// At curl's `--limit-rate 2M` (2 MiB/s): 31.5 s.
const SIZE: u64 = 66_000_000;

#[test]
fn an_https_download_keeps_wifi_and_idle_goes_back_to_bluetooth() {
    assert!(testkit::can_run());
    let mut bed = JourneyBed::start(&homespotd_bin().expect("homespotd")).expect("bed");
    // A TLS origin in `net` on 10.77.0.2:443 serving the test pattern.
    let server = testkit::origin::tls_origin(
        &bed.topo.net,
        &bed.dir,
        "10.77.0.2:443".parse().expect("addr"),
        &[("big.bin", SIZE)],
    )
    .expect("s_server");
    let events = bed
        .start_agent(env!("CARGO_BIN_EXE_homespot-agent"), "")
        .expect("agent");
    let status = bed.request(r#"{"cmd":"status"}"#).expect("status");
    assert_eq!(status["current"], "eth0", "starts on Wi-Fi: {status}");
    let n0 = events.len();
    // 2 MiB/s for over 30 s: far above the idle threshold (50 kbit/s), all of it inside TLS.
    let t = Instant::now();
    let curl = bed
        .curl(&[
            "--fail",
            "-k",
            "--limit-rate",
            "2M",
            "https://10.77.0.2/big.bin",
        ])
        .expect("curl");
    let (st, err, dl) = curl.finish(Duration::from_secs(60)).expect("curl ends");
    let took = t.elapsed();
    drop(server);
    assert!(st.success(), "curl: {err}");
    assert_eq!((dl.bytes, dl.mismatch), (SIZE, None), "byte-exact");
    let moves: Vec<_> = events
        .all()
        .into_iter()
        .skip(n0)
        .filter(|e| e["event"] == "handoff" && e["to"] == "eth1")
        .collect();
    eprintln!(
        "HTTPS download of {SIZE} bytes in {took:?}; moves to Bluetooth meanwhile: {moves:?}"
    );
    assert!(took >= Duration::from_secs(30), "a 30 s download: {took:?}");
    assert!(
        moves.is_empty(),
        "no move while the HTTPS download runs: {moves:?}"
    );
    // Idle now: after the idle period (10 s), back to Bluetooth.
    let n1 = events.len();
    let (_, back) = events
        .wait(n1, Duration::from_secs(20), |e| {
            e["event"] == "handoff" && e["to"] == "eth1"
        })
        .expect("back to Bluetooth when idle");
    eprintln!("idle: {back}");
    assert_eq!(back["reason"], "idle");
}
