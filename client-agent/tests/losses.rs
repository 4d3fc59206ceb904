//! Issue 18, acceptance 2 and 3, on the journey bed during one long download through the agent:
//!
//! - ten silent losses of the Wi-Fi (its port leaves the air bridge; carrier stays): each
//!   loss's interruption at the agent, the download's gap around it, and the largest pause
//!   after that gap while on Bluetooth, against the stream's p99 on Bluetooth away from any
//!   move; the Wi-Fi returns and the agent goes home before the next loss;
//! - then six arrivals at the foreign AP (both HomeSpot radios lost, the AP's link up), each
//!   followed by the way home: each arrival's time from the new address to bytes (L7 restart;
//!   the first is the first visit to that network, then five returns), byte-exact.
//!
//! Prints `FIGURE silent_loss_ms`, `FIGURE silent_loss_after_over_p99`,
//! `FIGURE l7_first_visit_ms` and `FIGURE l7_address_to_bytes_ms` (the arrivals at a network
//! seen before) for bench/check (targets 100 ms, 1.0 and 40 ms); asserts
//! only what must always hold (a byte-exact download, every move made, each loss under 1 s).
//! Also prints `FIGURE silent_loss_control_over_p99`: the largest pause in the settled part
//! of each stay on Bluetooth (no move within 1 s), against the same p99, where no loss is the
//! cause. `HOMESPOT_DUMP_CHUNKS=FILE` writes every read of the download and every route change
//! to FILE for a closer look.

use std::time::{Duration, Instant, SystemTime};

use testkit::journey::{event_instant, JourneyBed, ORIGIN};

const SIZE: u64 = 1_000_000_000;

fn p99(g: Vec<Duration>) -> Duration {
    testkit::journey::quantile(g, 0.99)
}

#[test]
fn ten_silent_losses_and_six_arrivals_at_the_foreign_ap() {
    assert!(testkit::can_run(), "needs root (network namespaces)");
    let mut bed = JourneyBed::start(&testkit::journey::homespotd_bin().expect("homespotd"))
        .expect("test bed");
    let events = bed
        .start_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            &format!(
                "{}\n[policy]\nthroughput_rule = false\n",
                std::env::var("HOMESPOT_AGENT_EXTRA").unwrap_or_default()
            ),
        )
        .expect("agent");
    let anchor = (Instant::now(), SystemTime::now());
    let curl = bed
        .curl(&["--fail", &format!("http://{ORIGIN}/bytes/{SIZE}")])
        .expect("curl");
    curl.wait_bytes(5_000_000, Duration::from_secs(30))
        .expect("download started");
    std::thread::sleep(Duration::from_secs(1));
    let mut i = events.len();
    // (loss's route change, time Wi-Fi came back) per loss.
    let mut losses = vec![];
    for _ in 0..10 {
        let lost_at = Instant::now();
        bed.topo.lose(0).expect("lose wifi");
        let (j, loss) = events.handoff_to(i, "eth1").expect("handoff");
        let found = events
            .wait(i, Duration::from_secs(1), |e| {
                e["event"] == "link_down" && e["link"] == "eth0"
            })
            .map(|(_, e)| event_instant(&e, anchor).saturating_duration_since(lost_at))
            .unwrap_or_default();
        println!(
            "loss {}: eth0 found dead {:.1} ms after its port left the bridge",
            losses.len() + 1,
            found.as_secs_f64() * 1e3
        );
        std::thread::sleep(Duration::from_millis(1500));
        let back = Instant::now();
        bed.topo.restore(0).expect("restore wifi");
        let (k, _) = events.handoff_to(j + 1, "eth0").expect("handoff");
        // When it was home: the route's change (the handoff's report comes a second later).
        if let Ok((_, home)) = events.wait(j + 1, Duration::from_secs(1), |e| {
            e["event"] == "route_changed" && e["to"] == "eth0"
        }) {
            println!(
                "loss {}: home again {:.0} ms after the Wi-Fi returned (answered, then 600 ms of drain)",
                losses.len() + 1,
                event_instant(&home, anchor)
                    .saturating_duration_since(back)
                    .as_secs_f64()
                    * 1e3
            );
        }
        losses.push((loss, back));
        i = k + 1;
        std::thread::sleep(Duration::from_millis(1000));
    }
    // The foreign AP, six times (a first visit, then five returns): its link down while at home, both HomeSpot radios lost,
    // the AP's link up (the first time with a lease from its dnsmasq), then home again.
    let mut arrivals = vec![];
    for n in 0..6 {
        let (j, a) = bed
            .leave_for_ap(&events, n == 0)
            .unwrap_or_else(|e| panic!("at the AP: {e:#}"));
        arrivals.push(a);
        std::thread::sleep(Duration::from_millis(1000));
        bed.topo.restore(0).expect("restore wifi");
        bed.topo.restore(1).expect("restore bluetooth");
        let (k, _) = events
            .wait(j + 1, Duration::from_secs(20), |e| {
                e["event"] == "handoff" && (e["to"] == "eth0" || e["to"] == "eth1")
            })
            .expect("home again");
        i = k + 1;
        std::thread::sleep(Duration::from_millis(1000));
    }
    let _ = i;
    // Not to the end of the gigabyte: the check is of what arrived.
    std::thread::sleep(Duration::from_secs(3));
    let all = events.all();
    let _ = bed.stop_agent();
    let (_, _, d) = curl
        .finish(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.mismatch, None, "spliced or corrupt body");
    assert!(d.bytes > 50_000_000, "{} bytes", d.bytes);

    // Route changes: which link carried each stretch.
    let moves = testkit::journey::route_changes(&all, anchor);
    let settled = |t: Instant| {
        moves
            .iter()
            .all(|(m, _)| t < *m || t.duration_since(*m) > Duration::from_millis(1000))
            && moves
                .iter()
                .all(|(m, _)| t > *m || m.duration_since(t) > Duration::from_millis(300))
    };
    let on = |t: Instant| {
        moves
            .iter()
            .rev()
            .find(|(m, _)| *m <= t)
            .map(|(_, l)| l.as_str())
            .unwrap_or("eth0")
            .to_string()
    };
    let steady_bt: Vec<Duration> = d
        .chunks
        .windows(2)
        .filter(|w| settled(w[1].0) && on(w[1].0) == "eth1")
        .map(|w| w[1].0 - w[0].0)
        .collect();
    let bt_p99 = p99(steady_bt);
    d.dump_if_asked(anchor.0, &moves);
    println!(
        "the stream's p99 on Bluetooth away from any move: {:.2} ms",
        bt_p99.as_secs_f64() * 1e3
    );
    for (n, (loss, back)) in losses.iter().enumerate() {
        let rc = all
            .iter()
            .find(|r| r["event"] == "route_changed" && r["handoff"] == loss["handoff"])
            .map(|r| event_instant(r, anchor))
            .unwrap_or_else(|| event_instant(loss, anchor));
        // The loss's own gap: the largest around the route change; after it, the rest of the
        // stay on Bluetooth.
        let win: Vec<&(Instant, usize)> = d
            .chunks
            .iter()
            .filter(|c| c.0 + Duration::from_millis(500) >= rc && c.0 <= *back)
            .collect();
        let mut own = (Duration::ZERO, rc);
        for w in win.windows(2) {
            if w[1].0 <= rc + Duration::from_millis(500) && w[1].0 - w[0].0 > own.0 {
                own = (w[1].0 - w[0].0, w[1].0);
            }
        }
        let after = win
            .windows(2)
            .filter(|w| w[0].0 >= own.1)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default();
        let agent = loss["interruption_ms"].as_f64().unwrap_or(f64::NAN);
        let at = |t: Instant| t.saturating_duration_since(anchor.0).as_secs_f64();
        let worst_after = win
            .windows(2)
            .filter(|w| w[0].0 >= own.1)
            .max_by_key(|w| w[1].0 - w[0].0)
            .map(|w| at(w[1].0))
            .unwrap_or_default();
        println!(
            "loss {}: route changed at {:.3} s, its gap ends at {:.3} s, the largest pause after it ends at {worst_after:.3} s, Wi-Fi back at {:.3} s",
            n + 1,
            at(rc),
            at(own.1),
            at(*back)
        );
        println!(
            "loss {}: agent {agent:.1} ms, download's gap {:.1} ms, largest pause after it on Bluetooth {:.1} ms",
            n + 1,
            own.0.as_secs_f64() * 1e3,
            after.as_secs_f64() * 1e3
        );
        // The control: the same measure over the settled part of the same stay (no move
        // within 1 s before nor 300 ms after), where the loss cannot be the cause; and the
        // largest pause in the unsettled part, the first second after the move.
        let (settled_max, early_max) = win.windows(2).filter(|w| w[0].0 >= own.1).fold(
            (Duration::ZERO, Duration::ZERO),
            |(s, e), w| {
                let g = w[1].0 - w[0].0;
                if settled(w[0].0) && settled(w[1].0) {
                    (s.max(g), e)
                } else {
                    (s, e.max(g))
                }
            },
        );
        println!(
            "loss {}: largest pause in the first second after the move {:.1} ms, in the settled rest of the stay (control) {:.1} ms",
            n + 1,
            early_max.as_secs_f64() * 1e3,
            settled_max.as_secs_f64() * 1e3
        );
        println!("FIGURE silent_loss_ms {agent:.1}");
        println!(
            "FIGURE silent_loss_control_over_p99 {:.2}",
            settled_max.as_secs_f64() / bt_p99.as_secs_f64().max(1e-6)
        );
        println!(
            "FIGURE silent_loss_after_over_p99 {:.2}",
            after.as_secs_f64() / bt_p99.as_secs_f64().max(1e-6)
        );
        assert!(agent < 1000.0, "loss {}: {loss}", n + 1);
    }
    // The first arrival is the first visit (WPAD asked, the PAC fetched, the Query's window
    // waited out); the later ones come back to a network seen before.
    for (n, a) in arrivals.iter().enumerate() {
        let v = a["address_to_bytes_ms"].as_f64().unwrap_or(f64::NAN);
        println!(
            "arrival {} at the AP: address -> bytes {v:.1} ms, discovery {}, kind {}",
            n + 1,
            a["discovery"],
            a["kind"]
        );
        if n == 0 {
            println!("FIGURE l7_first_visit_ms {v:.1}");
        } else {
            println!("FIGURE l7_address_to_bytes_ms {v:.1}");
        }
        assert_eq!(a["kind"], "l7-restart", "{a}");
    }
}
