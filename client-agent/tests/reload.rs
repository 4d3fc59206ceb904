//! Issue 12, acceptance 6: SIGHUP with a changed pool and WPAD URL: a new client sees the new
//! values, an existing lease and the laptop's P-Handoff association survive (its download
//! through the agent goes on); SIGHUP with a broken config: refused with file, key and
//! reason, the previous config still serving.

use std::time::Duration;

use testkit::clients::Dhclient;
use testkit::journey::{homespotd_bin, JourneyBed, ORIGIN};
use testkit::Netns;

/// dhclient -1 on `ns`'s wlan0 with its own files named `name`; the lease's (address, WPAD).
fn lease(bed: &JourneyBed, ns: &Netns, name: &str) -> (String, String) {
    let c = Dhclient::new(&bed.dir, name).expect("files");
    let args = c.args(&["-1", "wlan0"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ns.output(&refs).expect("dhclient");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = c.calls();
    let bound = calls
        .iter()
        .rev()
        .find(|e| {
            e.get("reason")
                .is_some_and(|r| r == "BOUND" || r == "REBOOT")
        })
        .expect("a bound lease")
        .clone();
    (
        bound.get("new_ip_address").cloned().unwrap_or_default(),
        bound.get("new_wpad").cloned().unwrap_or_default(),
    )
}

fn hup(bed: &JourneyBed) {
    let pid = bed.homespotd_pid().expect("running").to_string();
    let st = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(500));
}

#[test]
fn sighup_applies_a_new_pool_and_wpad_url_and_refuses_a_broken_file() {
    assert!(testkit::can_run());
    let mut bed = JourneyBed::start(&homespotd_bin().expect("homespotd")).expect("bed");
    let events = bed
        .start_agent(env!("CARGO_BIN_EXE_homespot-agent"), "")
        .expect("agent");
    let status = bed.request(r#"{"cmd":"status"}"#).expect("status");
    let global = status["homespot"]["global"].clone();
    assert!(global.is_string(), "associated: {status}");
    let url = format!("http://{ORIGIN}/bytes/30000000");
    let curl = bed
        .curl(&["--fail", "--limit-rate", "10M", &url])
        .expect("curl");
    curl.wait_bytes(1_000_000, Duration::from_secs(20))
        .expect("download started");

    // A neighbour with a lease from the old pool.
    let old = Netns::new("old").expect("ns");
    bed.topo.attach(0, &old, "wlan0").expect("attach");
    let (old_addr, old_wpad) = lease(&bed, &old, "old");
    assert_eq!(old_wpad, "http://10.77.1.1/wpad.dat");

    // New pool and WPAD URL on the Wi-Fi link.
    let conf = bed.dir.join("homespotd.toml");
    let text = std::fs::read_to_string(&conf).expect("config");
    let changed = text.replacen(
        "pools = [\"10.77.1.100-10.77.1.199\"]",
        "pools = [\"10.77.1.150-10.77.1.199\"]\nwpad_url = \"http://10.77.1.1/new-wpad.dat\"",
        1,
    );
    assert_ne!(changed, text);
    std::fs::write(&conf, &changed).expect("write");
    let n = events.len();
    hup(&bed);
    let log = bed.homespotd_log();
    assert!(log.contains("configuration reloaded"), "{log}");

    let new = Netns::new("new").expect("ns");
    bed.topo.attach(0, &new, "wlan0").expect("attach");
    let (new_addr, new_wpad) = lease(&bed, &new, "new");
    eprintln!("after the reload: new client {new_addr} with {new_wpad}; old client had {old_addr}");
    let last: u8 = new_addr
        .rsplit('.')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    assert!((150..=199).contains(&last), "from the new pool: {new_addr}");
    assert_eq!(new_wpad, "http://10.77.1.1/new-wpad.dat");
    // The old client keeps its address (outside the new pool) when it renews.
    let (renewed, _) = lease(&bed, &old, "old");
    assert_eq!(renewed, old_addr, "an existing lease survives the reload");

    // A broken file: refused, the running config stays.
    std::fs::write(
        &conf,
        changed.replacen(
            "pools = [\"10.77.1.150-10.77.1.199\"]",
            "pools = [\"10.77.1.150-nonsense\"]",
            1,
        ),
    )
    .expect("write");
    hup(&bed);
    let log = bed.homespotd_log();
    let refused = log
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap_or_default()
        .to_string();
    eprintln!("broken file: {refused}");
    assert!(
        refused.contains("homespotd.toml") && refused.contains("link[0].pools"),
        "{log}"
    );
    let third = Netns::new("thr").expect("ns");
    bed.topo.attach(0, &third, "wlan0").expect("attach");
    let (addr, wpad) = lease(&bed, &third, "third");
    assert!(addr
        .rsplit('.')
        .next()
        .and_then(|o| o.parse::<u8>().ok())
        .is_some_and(|o| o >= 150));
    assert_eq!(
        wpad, "http://10.77.1.1/new-wpad.dat",
        "still the last good config"
    );

    // The association and the download went on.
    let (st, err, dl) = curl.finish(Duration::from_secs(60)).expect("curl ends");
    assert!(st.success(), "curl: {err}");
    assert_eq!(dl.bytes, 30_000_000);
    let after = bed.request(r#"{"cmd":"status"}"#).expect("status");
    assert_eq!(after["homespot"]["global"], global, "{after}");
    let lost: Vec<_> = events
        .all()
        .into_iter()
        .skip(n)
        .filter(|e| e["event"] == "session_lost" || e["event"] == "associated")
        .collect();
    assert!(lost.is_empty(), "the association survived: {lost:?}");
}
