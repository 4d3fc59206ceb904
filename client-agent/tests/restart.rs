//! Issue 5, acceptance 3 and 4: L7 restart semantics. The laptop has a HomeSpot (eth0 Wi-Fi,
//! eth1 Bluetooth) and the foreign AP (eth2, tinyproxy by WPAD); the test moves it between
//! them through the Mobility API while requests are in flight:
//! - no Range support at the origin: read-and-discard, still byte-exact;
//! - an entity that changed between attempts (ETag differs), or one without a validator (a
//!   chunked body; an echo's response; issue 13): the client connection is closed, what
//!   arrived is a clean prefix, never a spliced body;
//! - GET, HEAD and PUT with a body are resent; POST without `Idempotency-Key` gets a 502 with
//!   the reason (or, when its response was under way, a closed connection), with the key it is
//!   resent;
//! - CONNECT at the HomeSpot survives P-Handoff; CONNECT on the foreign AP is closed at handoff;
//! - on the AP, the PAC's `PROXY 10.88.1.1:8888; DIRECT`: with tinyproxy gone, DIRECT.

use std::time::Duration;

use testkit::journey::{JourneyBed, ORIGIN};
use testkit::origin::{pattern, Origin};

const POLICY: &str = "[policy]\nprefer_homespot = false\norder = [\"eth2\", \"eth0\", \"eth1\"]\nthroughput_rule = false\n";

fn bed() -> (JourneyBed, testkit::journey::EventLog) {
    let mut bed =
        JourneyBed::start(&testkit::journey::homespotd_bin().expect("homespotd")).expect("bed");
    bed.dhcp("eth2").expect("AP lease");
    let ev = bed
        .start_agent(env!("CARGO_BIN_EXE_homespot-agent"), POLICY)
        .expect("agent");
    bed.wait_current("eth2", Duration::from_secs(10))
        .expect("on the AP");
    (bed, ev)
}

/// Starts curl with `args`, moves the laptop to `to` once `after` bytes have arrived, and
/// returns how curl ended.
fn moved_mid_transfer(
    bed: &JourneyBed,
    ev: &testkit::journey::EventLog,
    args: &[&str],
    after: u64,
    to: &str,
) -> (std::process::ExitStatus, String, testkit::journey::Download) {
    let c = bed.curl(args).expect("curl");
    // If a request does not start, the agent's log and events say where it waited.
    if let Err(e) = c.wait_bytes(after, Duration::from_secs(20)) {
        panic!(
            "{args:?} did not start: {e}\nevents: {:?}\nagent log:\n{}",
            ev.all(),
            bed.agent_log()
        );
    }
    let e = bed.switch(ev, to).expect("switch");
    println!("{args:?}: moved to {to}: {e}");
    c.finish(Duration::from_secs(60)).expect("curl")
}

#[test]
fn resume_fallbacks_and_methods() {
    if !testkit::can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let (bed, ev) = bed();
    let at = |p: &str| format!("http://{ORIGIN}{p}");

    // No Range support: read and discard.
    let url = at("/norange/20000000");
    let (st, err, d) = moved_mid_transfer(&bed, &ev, &["--fail", &url], 3_000_000, "eth0");
    assert!(st.success(), "{err}\n{}", bed.agent_log());
    assert_eq!((d.bytes, d.mismatch), (20_000_000, None));
    assert!(bed.agent_log().contains("reading and discarding"));

    // The entity changed: closed, never spliced.
    let url = at("/changing/20000000");
    let (st, err, d) = moved_mid_transfer(&bed, &ev, &["--fail", &url], 3_000_000, "eth2");
    println!("changed entity: curl {st}: {err} after {} bytes", d.bytes);
    assert!(!st.success(), "curl must see the connection closed");
    assert!(
        d.bytes < 20_000_000 && d.mismatch.is_none(),
        "a clean prefix: {} {:?}",
        d.bytes,
        d.mismatch
    );
    assert!(bed.agent_log().contains("ETag differs"));

    // No validator and no length (chunked): nothing proves a restart is the same entity, so
    // the client connection is closed after a clean prefix; never a body with a seam.
    let url = at("/chunked/20000000");
    let (st, err, d) = moved_mid_transfer(&bed, &ev, &["--fail", &url], 3_000_000, "eth0");
    println!("no validator: curl {st}: {err} after {} bytes", d.bytes);
    assert!(!st.success(), "curl must see an error");
    assert!(
        d.bytes < 20_000_000 && d.mismatch.is_none(),
        "a clean prefix: {} {:?}",
        d.bytes,
        d.mismatch
    );
    assert!(
        bed.agent_log().contains("no validator"),
        "{}",
        bed.agent_log()
    );
    bed.switch(&ev, "eth2").expect("back to the AP");

    let body = bed.dir.join("put.bin");
    std::fs::write(&body, pattern(0, 6_000_000)).expect("body");
    let b = body.display().to_string();
    let echo = at("/echo");
    // PUT with a body, response under way: the request may be resent, but its response (an
    // echo, with a length and no validator) cannot be proven the same: closed after a clean
    // prefix (issue 13), never spliced. Through the AP's tinyproxy, the origin sends the body
    // back once it has all of it (`/echo-whole`): tinyproxy relays no response before the
    // request body's end, and a streamed echo stalled there whenever the buffers between
    // held less than the echo (twice in CI, once in 5 and in 4 runs here).
    let whole = at("/echo-whole");
    let (st, err, d) =
        moved_mid_transfer(&bed, &ev, &["--fail", "-T", &b, &whole], 1_000_000, "eth0");
    println!(
        "PUT, no validator: curl {st}: {err} after {} bytes",
        d.bytes
    );
    assert!(!st.success(), "curl must see an error");
    assert!(
        d.bytes < 6_000_000 && d.mismatch.is_none(),
        "{} {:?}",
        d.bytes,
        d.mismatch
    );

    // POST without a key, response under way: not resent; the client connection is closed
    // and what arrived is a clean prefix.
    let data = format!("@{b}");
    let post = ["--fail", "-X", "POST", "--data-binary", &data, &echo];
    let (st, err, d) = moved_mid_transfer(&bed, &ev, &post, 1_000_000, "eth2");
    println!("POST cut: curl {st}: {err} after {} bytes", d.bytes);
    assert!(!st.success(), "curl must see the connection closed");
    assert!(
        d.bytes < 6_000_000 && d.mismatch.is_none(),
        "{} {:?}",
        d.bytes,
        d.mismatch
    );
    assert!(bed.agent_log().contains(
        "POST http://10.77.0.2/echo: 502: the network changed during the response; not resent"
    ));

    // Response not started (the origin waits 1.5 s): GET and HEAD are resent, POST only with a key.
    for (args, want_ok) in [
        (vec!["--fail", "-s"], true),
        (vec!["--fail", "-I"], true),
        (
            vec!["--fail", "-X", "POST", "--data-binary", "hello"],
            false,
        ),
        (
            vec![
                "--fail",
                "-X",
                "POST",
                "--data-binary",
                "hello",
                "-H",
                "Idempotency-Key: k-1",
            ],
            true,
        ),
    ] {
        let to = if bed.request(r#"{"cmd":"status"}"#).expect("status")["current"] == "eth0" {
            "eth2"
        } else {
            "eth0"
        };
        let mut a = args.clone();
        let url = at("/delay/2500");
        a.push(&url);
        let c = bed.curl(&a).expect("curl");
        std::thread::sleep(Duration::from_millis(800));
        bed.switch(&ev, to).expect("switch");
        let (st, err, d) = c.finish(Duration::from_secs(30)).expect("curl");
        println!("{args:?}: curl {st} {err} ({} bytes)", d.bytes);
        assert_eq!(
            st.success(),
            want_ok,
            "{args:?}: {err}\n{}",
            bed.agent_log()
        );
    }
    let log = bed.agent_log();
    assert!(log.contains("without Idempotency-Key"), "{log}");
    for m in ["GET", "HEAD", "POST"] {
        assert!(
            log.contains(&format!(
                "{m} http://10.77.0.2/delay/2500: the path changed before the response; resending"
            )),
            "{m}: {log}"
        );
    }
}

#[test]
fn connect_survives_p_handoff_and_is_closed_on_a_foreign_network() {
    if !testkit::can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let (bed, ev) = bed();
    // A second origin on port 443: CONNECT carries plain HTTP here, it does not look inside.
    let tls_port =
        Origin::start(&bed.topo.net, "10.77.0.2:443".parse().expect("addr")).expect("origin 443");
    let url = format!("http://{}/bytes/30000000", tls_port.addr);

    // On the foreign AP: through tinyproxy's CONNECT; the handoff closes it cleanly.
    let c = bed.curl(&["--fail", "-p", &url]).expect("curl");
    c.wait_bytes(2_000_000, Duration::from_secs(20))
        .expect("started");
    bed.switch(&ev, "eth0").expect("switch");
    let (st, err, d) = c.finish(Duration::from_secs(30)).expect("curl");
    println!(
        "CONNECT on the AP at handoff: curl {st}: {err} after {} bytes",
        d.bytes
    );
    assert!(!st.success());
    assert!(d.bytes < 30_000_000 && d.mismatch.is_none());

    // At the HomeSpot: Wi-Fi -> Bluetooth -> Wi-Fi under the tunnel.
    let c = bed.curl(&["--fail", "-p", &url]).expect("curl");
    c.wait_bytes(3_000_000, Duration::from_secs(20))
        .expect("started");
    let e1 = bed.switch(&ev, "eth1").expect("to bluetooth");
    std::thread::sleep(Duration::from_millis(500));
    let e2 = bed.switch(&ev, "eth0").expect("to wifi");
    let (st, err, d) = c.finish(Duration::from_secs(60)).expect("curl");
    println!("CONNECT at the HomeSpot: {e1}\n{e2}");
    assert!(st.success(), "{err}\n{}", bed.agent_log());
    assert_eq!((d.bytes, d.mismatch), (30_000_000, None));
    assert_eq!(e1["kind"], "p-handoff");
}

#[test]
fn a_dead_pac_proxy_is_skipped_for_the_next_choice() {
    if !testkit::can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let (bed, _ev) = bed();
    // DIRECT from the AP's network: the AP forwards and the Internet routes back to it.
    bed.ap
        .run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .expect("forwarding");
    bed.topo
        .net
        .run(&["ip", "route", "add", "10.88.1.0/24", "via", "10.88.0.1"])
        .expect("route back");
    let url = format!("http://{ORIGIN}/bytes/100000");
    let get = || {
        bed.curl(&["--fail", "-s", &url])
            .expect("curl")
            .finish(Duration::from_secs(20))
            .expect("curl")
    };
    let (st, err, d) = get();
    assert!(st.success(), "{err}\n{}", bed.agent_log());
    assert_eq!((d.bytes, d.mismatch), (100_000, None));
    assert!(!bed.agent_log().contains("via 10.88.1.1:8888"));

    // tinyproxy (the PAC's first choice) ends, by its PID in the AP's namespace.
    for pid in bed.ap.pids() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "tinyproxy" {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (st, err, d) = get();
    let log = bed.agent_log();
    assert!(st.success(), "{err}\n{log}");
    assert_eq!((d.bytes, d.mismatch), (100_000, None));
    assert!(
        log.contains("GET http://10.77.0.2/bytes/100000 via 10.88.1.1:8888: connect"),
        "{log}"
    );
}
