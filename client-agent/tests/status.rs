//! Issue 12, acceptance 7: `homespotd status` on a bed with three real clients (dhclient with
//! a hostname on Wi-Fi, udhcpc with a hostname on Bluetooth, and the laptop with its agent)
//! shows each device on its radio with its hostname, and a P-Handoff switch appears in
//! `homespotd status --events`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::clients::Dhclient;
use testkit::journey::{homespotd_bin, JourneyBed};
use testkit::Netns;

fn status(bin: &str, sock: &str, json: bool) -> String {
    let mut args = vec!["status", "--socket", sock];
    if json {
        args.push("--json");
    }
    let out = Command::new(bin)
        .args(&args)
        .output()
        .expect("homespotd status");
    assert!(
        out.status.success(),
        "homespotd status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn device<'a>(snap: &'a Value, hostname: &str) -> Option<&'a Value> {
    snap["devices"]
        .as_array()?
        .iter()
        .find(|d| d["hostname"] == hostname)
}

#[test]
fn status_shows_each_device_on_its_radio_and_switches_as_events() {
    assert!(testkit::can_run());
    let bin = homespotd_bin().expect("homespotd");
    let mut bed = JourneyBed::start(&bin).expect("bed");
    let log = bed
        .start_agent(env!("CARGO_BIN_EXE_homespot-agent"), "")
        .expect("agent");
    let sock = bed.dir.join("status.sock").display().to_string();
    let events_out = bed.dir.join("events.jsonl");
    let mut follow = Command::new(&bin)
        .args(["status", "--events", "--json", "--socket", &sock])
        .stdout(std::fs::File::create(&events_out).expect("events file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("status --events");

    // A PC on Wi-Fi with dhclient, a sensor on Bluetooth with udhcpc, each naming itself.
    let pc = Netns::new("pc").expect("ns");
    bed.topo.attach(0, &pc, "wlan0").expect("attach");
    let c = Dhclient::new(&bed.dir, "pc").expect("files");
    let mut conf = std::fs::read_to_string(&c.conf).expect("conf");
    conf += "send host-name \"kitchen-pc\";\n";
    std::fs::write(&c.conf, conf).expect("conf");
    let args = c.args(&["-1", "wlan0"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = pc.output(&refs).expect("dhclient");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sensor = Netns::new("sn").expect("ns");
    bed.topo.attach(1, &sensor, "wlan0").expect("attach");
    let out = sensor
        .output(&[
            "timeout",
            "-s",
            "KILL",
            "20",
            "busybox",
            "udhcpc",
            "-i",
            "wlan0",
            "-n",
            "-q",
            "-t",
            "5",
            "-T",
            "1",
            "-x",
            "hostname:sensor-1",
            "-s",
            "/bin/true",
        ])
        .expect("udhcpc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The laptop moves to Bluetooth: a P-Handoff switch.
    bed.switch(&log, "eth1").expect("switch to Bluetooth");
    let deadline = Instant::now() + Duration::from_secs(10);
    let snap: Value = loop {
        let snap: Value = serde_json::from_str(&status(&bin, &sock, true)).expect("status JSON");
        let laptop_on_bt = device(&snap, "laptop")
            .is_some_and(|d| d["radio"] == "bluetooth" && d["global"].is_string());
        if laptop_on_bt || Instant::now() > deadline {
            break snap;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = status(&bin, &sock, false);
    eprintln!("{text}");
    let pc = device(&snap, "kitchen-pc").expect("the PC is listed");
    assert_eq!(pc["radio"], "wifi", "{pc}");
    assert!(pc["mac"].is_string());
    let sensor = device(&snap, "sensor-1").expect("the sensor is listed");
    assert_eq!(sensor["radio"], "bluetooth", "{sensor}");
    let laptop = device(&snap, "laptop").expect("the laptop is listed");
    assert_eq!(laptop["radio"], "bluetooth", "{laptop}");
    assert!(laptop["global"]
        .as_str()
        .is_some_and(|g| g.starts_with("10.200.0.")));
    assert_eq!(
        laptop["leases"].as_array().map(Vec::len),
        Some(2),
        "{laptop}"
    );
    for name in ["kitchen-pc", "sensor-1", "laptop", "P-Handoff"] {
        assert!(text.contains(name), "plain text shows {name}:\n{text}");
    }

    // The switch, as --events streamed it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let switch = loop {
        let events = std::fs::read_to_string(&events_out).unwrap_or_default();
        let found = events
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event"] == "switch" && e["to"] == "bluetooth");
        if found.is_some() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = follow.kill();
    let _ = follow.wait();
    let events = std::fs::read_to_string(&events_out).unwrap_or_default();
    eprintln!("status --events:\n{events}");
    let switch = switch.expect("a switch event");
    assert_eq!(switch["from"], "wifi");
    assert!(events.contains("\"event\":\"lease\""), "lease events too");
}
