//! Issue 13, acceptance 4: a seeded random schedule of 40 user switches and silent radio losses
//! during a download through the agent. Checked: the download stays byte-exact, every handoff
//! event has its figures, and the interruption the agent reports for each handoff is within
//! 5 ms of the largest gap the download itself saw in the same window. The download's gaps are
//! taken where its bytes reach curl's socket (a capture on the laptop's loopback), not where
//! curl's output is read: on a busy two-core machine curl or its reader were once descheduled
//! for 40 ms, a pause of the test's own processes, not of the network (curl runs with `-N` too:
//! its buffered output had made a floor of ~19 ms between reads).

use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};
use serde_json::Value;
use testkit::journey::{homespotd_bin, JourneyBed, ORIGIN};

const SIZE: u64 = 600_000_000;
const STEPS: usize = 40;

fn at(ms: u64, anchor: (Instant, SystemTime)) -> Instant {
    testkit::journey::instant_of(ms, anchor)
}

#[test]
fn a_random_schedule_of_switches_and_losses_keeps_the_download_and_the_figures() {
    assert!(testkit::can_run());
    let mut bed = JourneyBed::start(&homespotd_bin().expect("homespotd")).expect("bed");
    let events = bed
        .start_agent(
            env!("CARGO_BIN_EXE_homespot-agent"),
            "\n[policy]\nthroughput_rule = false\n",
        )
        .expect("agent");
    let anchor = (Instant::now(), SystemTime::now());
    let n0 = events.len();
    // What the agent's proxy (port 3129) delivers to curl, as it reaches curl's socket.
    let pcap = bed.dir.join("lo.pcap");
    let mut dump = bed
        .topo
        .client
        .capture(
            "lo",
            &["-s", "128"],
            "tcp src port 3129",
            &pcap,
            &bed.dir.join("tcpdump.log"),
        )
        .expect("tcpdump");
    let url = format!("http://{ORIGIN}/bytes/{SIZE}");
    let curl = bed.curl(&["--fail", &url]).expect("curl");
    curl.wait_bytes(3_000_000, Duration::from_secs(20))
        .expect("download started");
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut on = 0usize;
    let (mut switches, mut losses) = (0, 0);
    for step in 0..STEPS {
        let other = 1 - on;
        if rng.random_bool(0.7) {
            bed.switch(&events, &format!("eth{other}")).expect("switch");
            switches += 1;
        } else {
            let n = events.len();
            bed.topo.lose(on).expect("lose");
            events
                .wait(n, Duration::from_secs(10), |e| {
                    e["event"] == "route_changed" && e["to"] == format!("eth{other}")
                })
                .unwrap_or_else(|e| panic!("step {step}: no move after the loss: {e}"));
            std::thread::sleep(Duration::from_millis(1300));
            bed.topo.restore(on).expect("restore");
            losses += 1;
        }
        std::thread::sleep(Duration::from_millis(1300 + rng.random_range(0..400)));
        // A restored Wi-Fi is preferred again: follow where the agent is.
        let s = bed.request(r#"{"cmd":"status"}"#).expect("status");
        on = if s["current"] == "eth0" { 0 } else { 1 };
    }
    let (st, err, dl) = curl.finish(Duration::from_secs(170)).expect("curl ends");
    assert!(st.success(), "curl: {err}");
    assert_eq!((dl.bytes, dl.mismatch), (SIZE, None), "byte-exact");
    std::thread::sleep(Duration::from_secs(2));
    dump.stop(Duration::from_secs(5)).expect("tcpdump stops");
    let epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    };
    let a = epoch(anchor.1);
    let segments: Vec<testkit::pcap::Segment> =
        testkit::pcap::tcp(&std::fs::read(&pcap).expect("capture"))
            .into_iter()
            .filter(|s| s.src_port == 3129 && s.len > 0)
            .collect();
    let bytes: u64 = segments.iter().map(|s| s.len as u64).sum();
    assert!(
        bytes >= SIZE,
        "the capture holds {bytes} bytes from the proxy, fewer than the download's {SIZE}"
    );
    let arrivals: Vec<Instant> = segments
        .iter()
        .map(|s| {
            if s.micros >= a {
                anchor.0 + Duration::from_micros(s.micros - a)
            } else {
                anchor.0 - Duration::from_micros(a - s.micros)
            }
        })
        .collect();
    let all: Vec<Value> = events.all().into_iter().skip(n0).collect();
    let moves: Vec<&Value> = all
        .iter()
        .filter(|e| e["event"] == "route_changed")
        .collect();
    let handoffs: Vec<&Value> = all.iter().filter(|e| e["event"] == "handoff").collect();
    println!(
        "{switches} user switches and {losses} silent losses: {} route changes, {} handoff events",
        moves.len(),
        handoffs.len()
    );
    let mut worst = Duration::ZERO;
    let mut nulls = Vec::new();
    for h in &handoffs {
        let Some(agent) = h["interruption_ms"].as_f64() else {
            nulls.push(h.to_string());
            continue;
        };
        let id = &h["handoff"];
        let Some(rc) = moves.iter().find(|m| m["handoff"] == *id) else {
            continue;
        };
        let done = at(rc["time_ms"].as_u64().unwrap_or(0), anchor);
        let decided = done
            - Duration::from_secs_f64(h["decided_to_done_ms"].as_f64().unwrap_or(0.0) / 1000.0);
        // The agent's window: from the decision until its report (with the first bytes a
        // second after done), or until the next handoff started.
        let next = moves
            .iter()
            .filter_map(|m| m["time_ms"].as_u64())
            .map(|t| at(t, anchor))
            .filter(|t| *t > done)
            .min()
            .unwrap_or(done + Duration::from_secs(2));
        let settled = done + Duration::from_secs(1);
        let end = arrivals
            .iter()
            .find(|t| **t > settled)
            .map_or(settled, |t| *t)
            .min(next);
        // As the agent counts: a gap whose later read is in the window, counted from the
        // window's start when a decision overtook a handoff still open (a loss's silence is
        // its own, whole).
        let loss = h["reason"].as_str().is_some_and(|r| r.contains(" lost"));
        let overtook = !loss
            && moves.iter().any(|m| {
                m["time_ms"]
                    .as_u64()
                    .map(|t| at(t, anchor))
                    .is_some_and(|t| t < decided && t + Duration::from_millis(1100) > decided)
            });
        let largest = |times: &mut dyn Iterator<Item = Instant>| {
            let times: Vec<Instant> = times.collect();
            times
                .windows(2)
                .filter(|w| w[1] >= decided && w[1] <= end)
                .map(|w| {
                    let gap = w[1] - if overtook { w[0].max(decided) } else { w[0] };
                    (gap, w[1])
                })
                .max()
                .unwrap_or((Duration::ZERO, done))
        };
        let (seen, seen_end) = largest(&mut arrivals.iter().copied());
        let (read, _) = largest(&mut dl.chunks.iter().map(|c| c.0));
        let diff = Duration::from_secs_f64((agent / 1000.0 - seen.as_secs_f64()).abs());
        // Where the largest gap ended, against the decision and the route change.
        let off = |t: Instant, from: Instant| {
            if t >= from {
                (t - from).as_secs_f64() * 1000.0
            } else {
                -((from - t).as_secs_f64() * 1000.0)
            }
        };
        println!(
            "handoff {id} {} -> {} ({}): agent {agent:.1} ms, download {:.1} ms (read by \
             the test {:.1}; decided {:.0} ms before the route change; the gap ended {:.0} ms \
             after it)",
            h["from"],
            h["to"],
            h["reason"],
            seen.as_secs_f64() * 1000.0,
            read.as_secs_f64() * 1000.0,
            off(done, decided),
            off(seen_end, done),
        );
        worst = worst.max(diff);
    }
    println!("worst difference between the agent's figure and the download's: {worst:?}");
    assert!(
        nulls.is_empty(),
        "handoff events without figures: {nulls:?}"
    );
    assert!(
        worst <= Duration::from_millis(5),
        "the agent's figures and the download's differ by {worst:?}"
    );
    assert!(switches + losses >= 40);
    assert!(
        handoffs.len() >= moves.len(),
        "a handoff event for every route change"
    );
}
