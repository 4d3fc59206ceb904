//! The README demo: builds a namespace test bed with a HomeSpot of two radios, a laptop and an
//! origin server on the "Internet", starts homespotd, and shows the laptop getting a lease and
//! the WPAD URL on each radio with real dhclient, fetching the PAC file from that URL, and
//! downloading through the HomeSpot proxy. Everything it makes is removed when it ends.
//!
//! Usage: homespot-demo --homespotd PATH   (scripts/demo builds and runs it)

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use testkit::clients::Dhclient;
use testkit::origin::{pattern, Origin};
use testkit::{Scratch, Topology};

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut homespotd = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--homespotd" => homespotd = args.next(),
            "-h" | "--help" => {
                println!("usage: homespot-demo --homespotd PATH\n\nRuns the HomeSpot demo on network namespaces (needs root).");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let homespotd = homespotd.context("--homespotd PATH is required")?;
    if !testkit::can_run() {
        bail!("the demo needs root and iproute2 (it builds network namespaces)");
    }

    step("Building the test bed: a HomeSpot with two radios (wifi, bluetooth) and a laptop");
    let topo = Topology::new(2)?;
    let dir = Scratch::new("demo")?;
    let names = ["wifi", "bluetooth"];
    let mut cfg = format!(
        "[server]\nlease_db = \"{}\"\n",
        dir.join("leases.redb").display()
    );
    for (l, name) in topo.links.iter().zip(names) {
        println!(
            "  {name:10} HomeSpot {}: {}/24   laptop {}",
            l.hs_if, l.hs_addr, l.client_if
        );
        cfg += &format!(
            "\n[[link]]\nname = \"{name}\"\ninterface = \"{}\"\naddress = \"{}/24\"\n\
             pools = [\"{}-{}\"]\nlease_time = \"1h\"\ndns = [\"{}\"]\n",
            l.hs_if,
            l.hs_addr,
            l.host(100),
            l.host(199),
            l.hs_addr
        );
    }
    let config = dir.join("homespotd.toml");
    std::fs::write(&config, &cfg)?;

    step("Starting homespotd");
    let log = dir.join("homespotd.log");
    let config_s = config.display().to_string();
    let mut daemon = topo
        .homespot
        .spawn(&[&homespotd, "--config", &config_s], &log)?;
    daemon.wait_for_log("lease database loaded", Duration::from_secs(10))?;
    println!("  serving DHCP on {} links", topo.links.len());

    let mut wpad: Option<String> = None;
    for (l, name) in topo.links.iter().zip(names) {
        step(&format!(
            "The laptop asks for a lease on {name} ({}) with dhclient",
            l.client_if
        ));
        let c = Dhclient::new(&dir, &format!("dhclient-{name}"))?;
        let t = Instant::now();
        let out = topo.client.output(
            &c.args(&["-1", &l.client_if])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?;
        if !out.status.success() {
            bail!("dhclient failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let took = t.elapsed();
        let calls = c.calls();
        let bound = calls
            .iter()
            .find(|e| e.get("reason").map(String::as_str) == Some("BOUND"))
            .context("dhclient reported no lease")?;
        let get = |k: &str| bound.get(k).map(String::as_str).unwrap_or("-");
        println!(
            "  lease       {} for {} s (in {} ms)",
            get("new_ip_address"),
            get("new_dhcp_lease_time"),
            took.as_millis()
        );
        println!("  router      {}", get("new_routers"));
        println!("  DNS         {}", get("new_domain_name_servers"));
        println!(
            "  WPAD URL    {}   <- DHCP option 252: where the proxy configuration lives",
            get("new_wpad")
        );
        wpad.get_or_insert_with(|| get("new_wpad").to_string());
    }

    let wpad = wpad.context("no WPAD URL")?;
    step(&format!(
        "The laptop fetches the proxy configuration from {wpad}"
    ));
    let pac = dir.join("wpad.dat").display().to_string();
    let out = topo
        .client
        .output(&["curl", "-sS", "-o", &pac, "-w", "%{content_type}", &wpad])?;
    if !out.status.success() {
        bail!(
            "fetching the PAC file failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("  Content-Type: {}", String::from_utf8_lossy(&out.stdout));
    for line in std::fs::read_to_string(&pac)?.lines() {
        println!("  | {line}");
    }

    step("The laptop downloads 50 MB from the Internet through the HomeSpot proxy");
    let origin = Origin::start(&topo.net, "10.77.0.2:8080".parse()?)?;
    let proxy = format!("http://{}:3128", topo.links[0].hs_addr);
    let got = dir.join("download").display().to_string();
    let out = topo.client.output(&[
        "curl",
        "-sS",
        "-x",
        &proxy,
        "-o",
        &got,
        "-w",
        "%{http_code} %{size_download} %{time_total} %{speed_download}",
        &origin.url("/bytes/50000000"),
    ])?;
    let w = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<&str> = w.split_whitespace().collect();
    if !out.status.success() || f.len() < 4 {
        bail!("download failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let exact = std::fs::read(&got)? == pattern(0, 50_000_000);
    let mbit = f[3].parse::<f64>().unwrap_or(0.0) * 8.0 / 1e6;
    println!(
        "  HTTP {}  {} bytes in {} s ({mbit:.0} Mbit/s), byte-exact: {exact}",
        f[0], f[1], f[2]
    );
    let _ = std::fs::remove_file(&got);

    step("Stopping homespotd");
    daemon.stop(Duration::from_secs(5))?;
    for line in daemon
        .log()
        .lines()
        .filter(|l| l.contains("lease acknowledged") || l.contains("stopped"))
    {
        println!(
            "  {}",
            line.split_once("  ").map(|x| x.1).unwrap_or(line).trim()
        );
    }
    println!("\nDone. The namespaces are removed. Not shown yet: P-Handoff between the radios (issue 4).");
    Ok(())
}

fn step(s: &str) {
    println!("\n== {s}");
}
