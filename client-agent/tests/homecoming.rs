//! Coming home from a foreign AP when the slow radio answers first: during a download through
//! the agent the laptop is at the foreign AP, then the HomeSpot's Bluetooth returns a little
//! before its Wi-Fi. The agent may go home over Bluetooth, but it must not stay there: the
//! download runs at Bluetooth's capacity, so the throughput rule (or the preference) takes it
//! to the Wi-Fi within a few seconds. The demo once sat on Bluetooth for the rest of its run:
//! the connection of the response abandoned at the restart was never closed, and kept half of
//! Bluetooth busy filling its socket buffer, so the download never reached the rule's rate.

use std::time::Duration;

use testkit::journey::{homespotd_bin, JourneyBed, ORIGIN};

#[test]
fn home_over_bluetooth_first_then_on_to_wifi() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let mut bed = JourneyBed::start(&homespotd_bin().expect("homespotd")).expect("test bed");
    let events = bed
        .start_agent(env!("CARGO_BIN_EXE_homespot-agent"), "")
        .expect("agent");
    let curl = bed
        .curl(&["--fail", &format!("http://{ORIGIN}/bytes/1000000000")])
        .expect("curl");
    curl.wait_bytes(5_000_000, Duration::from_secs(30))
        .expect("download started");
    for n in 0..3 {
        let (j, _) = bed
            .leave_for_ap(&events, n == 0)
            .unwrap_or_else(|e| panic!("at the AP: {e:#}"));
        std::thread::sleep(Duration::from_millis(1000));
        // Bluetooth first, the Wi-Fi a probe period or so later.
        bed.topo.restore(1).expect("restore bluetooth");
        std::thread::sleep(Duration::from_millis(60));
        bed.topo.restore(0).expect("restore wifi");
        let (k, home) = events
            .wait(j + 1, Duration::from_secs(20), |e| {
                e["event"] == "route_changed" && (e["to"] == "eth0" || e["to"] == "eth1")
            })
            .expect("home again");
        println!(
            "round {}: home over {} ({})",
            n + 1,
            home["to"],
            home["reason"]
        );
        if home["to"] == "eth1" {
            let (_, on) = events
                .wait(k + 1, Duration::from_secs(8), |e| {
                    e["event"] == "route_changed" && e["to"] == "eth0"
                })
                .unwrap_or_else(|e| {
                    println!("status: {:?}", bed.request(r#"{"cmd":"status"}"#));
                    panic!(
                        "round {}: stayed on Bluetooth: {e}\n{}",
                        n + 1,
                        bed.agent_log()
                    )
                });
            println!(
                "round {}: then on to the Wi-Fi ({}) {} ms later",
                n + 1,
                on["reason"],
                on["time_ms"].as_u64().unwrap_or(0) - home["time_ms"].as_u64().unwrap_or(0)
            );
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    let _ = bed.stop_agent();
    let (_, _, d) = curl
        .finish(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.mismatch, None, "spliced or corrupt body");
}
