//! Issue 12: `--check-config` checks a valid file against the system: a link address missing
//! from its interface is an error, a missing interface a warning, ports held by another
//! program are named, DNS promised to clients that nothing answers is warned about, a parent
//! proxy whose name does not resolve is warned about, and a parent proxy written as an https
//! URL is refused at its line.

mod common;

use std::time::Duration;

use common::HOMESPOTD;
use testkit::{Scratch, Topology};

fn check(topo: &Topology, dir: &Scratch, cfg: &str) -> (bool, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, cfg).expect("write");
    let out = topo
        .homespot
        .output(&[
            HOMESPOTD,
            "--config",
            &path.display().to_string(),
            "--check-config",
        ])
        .expect("homespotd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    (out.status.success(), text)
}

#[test]
fn check_config_checks_the_system() {
    assert!(testkit::can_run());
    let topo = Topology::new(1).expect("topology");
    let dir = Scratch::new("check").expect("scratch");
    let base = format!(
        "[server]\nlease_db = \"{}\"\n\n[[link]]\nname = \"wifi\"\ninterface = \"lan0\"\naddress = \"10.77.1.1/24\"\npools = [\"10.77.1.100-10.77.1.199\"]\ndns = [\"10.77.1.1\"]\n",
        dir.join("l.redb").display()
    );
    // Good, but nothing answers DNS at 10.77.1.1, which clients are told to use.
    let (ok, text) = check(&topo, &dir, &base);
    assert!(ok, "{text}");
    assert!(
        text.contains("warning: link[0].dns") && text.contains("nothing answers DNS"),
        "{text}"
    );

    // The address is not on lan0.
    let (ok, text) = check(&topo, &dir, &base.replace("10.77.1.1/24", "10.77.1.9/24"));
    assert!(!ok);
    assert!(
        text.contains("error: link[0].address: 10.77.1.9 is not an address of lan0"),
        "{text}"
    );

    // A missing interface only waits.
    let extra = "\n[[link]]\nname = \"bt\"\ninterface = \"bnep9\"\naddress = \"10.77.9.1/24\"\npools = [\"10.77.9.100-10.77.9.199\"]\ndns = [\"10.77.0.2\"]\n";
    let (ok, text) = check(&topo, &dir, &format!("{base}{extra}"));
    assert!(ok, "{text}");
    assert!(
        text.contains("warning: link[1].interface") && text.contains("waits for it"),
        "{text}"
    );

    // A parent proxy written as an https URL: refused at its line.
    let (ok, text) = check(
        &topo,
        &dir,
        &format!("{base}\n[proxy]\nparent = \"https://proxy.example:3128\"\n"),
    );
    assert!(!ok);
    assert!(text.contains("check.toml:12: proxy.parent"), "{text}");

    // A congestion control name the kernel could not have: refused at its line.
    let (ok, text) = check(
        &topo,
        &dir,
        &format!("{base}\n[proxy]\ncongestion_control = \"BBR v3\"\n"),
    );
    assert!(!ok);
    assert!(
        text.contains("check.toml:12: proxy.congestion_control"),
        "{text}"
    );

    // A congestion control the kernel lacks: warned, as the proxy would run without it.
    let (ok, text) = check(
        &topo,
        &dir,
        &format!("{base}\n[proxy]\ncongestion_control = \"nosuchcc\"\n"),
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("warning: proxy.congestion_control: the kernel refuses \"nosuchcc\""),
        "{text}"
    );
    let (ok, text) = check(&topo, &dir, &base);
    assert!(ok && !text.contains("congestion"), "{text}");

    // A parent proxy whose name does not resolve (asked the way the proxy asks, of the
    // configured servers, where nothing answers): warned; an address is taken as it is.
    let (ok, text) = check(
        &topo,
        &dir,
        &format!("{base}\n[proxy]\nparent = \"nowhere.invalid:3128\"\ndns = [\"10.77.1.1\"]\n"),
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("warning: proxy.parent: nowhere.invalid does not resolve now"),
        "{text}"
    );
    let (ok, text) = check(
        &topo,
        &dir,
        &format!("{base}\n[proxy]\nparent = \"10.77.0.2:3128\"\ndns = [\"10.77.1.1\"]\n"),
    );
    assert!(ok && !text.contains("does not resolve"), "{text}");

    // DHCP's port held by dnsmasq: named.
    let mut dnsmasq = topo
        .homespot
        .spawn(
            &[
                "dnsmasq",
                "-k",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=lan0",
                "--bind-interfaces",
                "--dhcp-range=10.77.1.50,10.77.1.60,1h",
                "--pid-file=",
                "--user=root",
                "--dhcp-leasefile=/dev/null",
            ],
            &dir.join("dnsmasq.log"),
        )
        .expect("dnsmasq");
    // Until dnsmasq holds the port (a fixed 500 ms was too short on a busy machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !topo
        .homespot
        .run(&["ss", "-Hulpn", "sport", "= :67"])
        .unwrap_or_default()
        .contains("dnsmasq")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "dnsmasq never bound UDP 67"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, text) = check(&topo, &dir, &base);
    let _ = dnsmasq.stop(Duration::from_secs(2));
    assert!(!ok);
    assert!(
        text.contains("UDP port 67 (DHCP) is taken by dnsmasq (pid"),
        "{text}"
    );
}
