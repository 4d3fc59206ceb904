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
        "[server]\nlease_db = \"{}\"\n[handoff]\nglobal_subnet = \"10.200.0.0/24\"\nidentity = \"{}\"\n",
        dir.join("leases.redb").display(),
        dir.join("identity.key").display()
    );
    for (l, name) in topo.links.iter().zip(names) {
        println!(
            "  {name:10} HomeSpot {}: {}/24   laptop {}",
            l.hs_if, l.hs_addr, l.client_if
        );
        cfg += &format!(
            "\n[[link]]\nname = \"{name}\"\nkind = \"{name}\"\ninterface = \"{}\"\naddress = \"{}/24\"\n\
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

    handoff_demo(&topo)?;

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
    println!("\nDone. The namespaces are removed.");
    Ok(())
}

/// P-Handoff: the laptop associates, takes its global address, and streams to the HomeSpot's
/// global address while moving from wifi to bluetooth and back.
fn handoff_demo(topo: &Topology) -> Result<()> {
    use phandoff::client::{Client, ClientConfig, ClientEvent};
    use phandoff::crypto::ClientKeys;
    use phandoff::driver::{run_client, Command, LinkSocket, PORT};
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr};

    step("P-Handoff: the laptop asks the HomeSpot on wifi who it is (Co-Link advert)");
    let sink = topo.homespot.spawn_thread(|| -> Result<Vec<Instant>> {
        let l = std::net::TcpListener::bind(("10.200.0.1", 9000))?;
        let (mut s, _) = l.accept()?;
        let (mut buf, mut t) = (vec![0u8; 65536], Vec::new());
        while s.read(&mut buf)? > 0 {
            t.push(Instant::now());
        }
        Ok(t)
    })?;
    let out = topo.client.spawn_thread(move || -> Result<(Vec<Instant>, u64)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let socks = (0..2u8)
                .map(|i| LinkSocket::bind(i, &format!("eth{i}"), PORT))
                .collect::<std::io::Result<Vec<_>>>()?;
            let secret: [u8; 32] = std::array::from_fn(|i| i as u8 ^ 0x5a);
            let c = Client::new(ClientConfig::default(), ClientKeys::from_secret(secret), None, [7; 32], PORT);
            let (cmd, cmd_rx) = tokio::sync::mpsc::channel(8);
            let (ev_tx, mut ev) = tokio::sync::mpsc::channel(64);
            tokio::spawn(run_client(c, socks, cmd_rx, ev_tx));
            let mut next = async || -> Result<ClientEvent> {
                loop {
                    match tokio::time::timeout(Duration::from_secs(5), ev.recv()).await {
                        Ok(Some(ClientEvent::LinkDead { .. } | ClientEvent::LinkAlive { .. })) => continue,
                        Ok(Some(e)) => return Ok(e),
                        _ => bail!("no answer from the HomeSpot"),
                    }
                }
            };
            let t = Instant::now();
            cmd.send(Command::Query(0)).await?;
            let ClientEvent::Discovered { advert } = next().await? else { bail!("no advert") };
            println!("  advert in {} us, identity {}..., signed and pinned", t.elapsed().as_micros(),
                     advert.identity[..6].iter().map(|b| format!("{b:02x}")).collect::<String>());
            for l in &advert.links {
                println!("  link {}: {:?} {}/{} router {} proxy {}:{}", l.index, l.kind, l.subnet, l.prefix, l.router, l.proxy, l.proxy_port);
            }
            let mut mine = Vec::new();
            for i in 0..2u8 {
                let a = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", &format!("eth{i}")]).output()?;
                let text = String::from_utf8_lossy(&a.stdout).to_string();
                let addr: Ipv4Addr = text.split_whitespace().skip_while(|w| *w != "inet").nth(1)
                    .and_then(|c| c.split('/').next()).and_then(|a| a.parse().ok()).context("no lease address")?;
                mine.push(addr);
                cmd.send(Command::LinkUp(i, addr)).await?;
            }
            cmd.send(Command::Associate(0)).await?;
            let global = loop {
                match next().await? {
                    ClientEvent::Associated { global, .. } => break global,
                    ClientEvent::Discovered { .. } => continue,
                    e => bail!("unexpected {e:?}"),
                }
            };
            println!("  associated: global address {global} (stable for this laptop's key)");
            sh(&["ip", "addr", "add", &format!("{global}/32"), "dev", "lo"])?;
            let mut switch = async |link: u8| -> Result<Duration> {
                cmd.send(Command::Switch(link)).await?;
                loop {
                    match next().await? {
                        ClientEvent::SwitchDone { took, .. } => {
                            sh(&["ip", "route", "replace", "10.200.0.1/32", "via", &format!("10.77.{}.1", link + 1),
                                  "dev", &format!("eth{link}"), "src", &global.to_string(), "rto_min", "20ms", "quickack", "1"])?;
                            return Ok(took);
                        }
                        ClientEvent::Discovered { .. } => continue,
                        e => bail!("unexpected {e:?}"),
                    }
                }
            };
            switch(0).await?;
            step("P-Handoff: a 20 Mbit/s TCP stream to the HomeSpot's global address, moved wifi -> bluetooth -> wifi");
            let writer = std::thread::spawn(move || -> Result<u64> {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                s.bind(&SocketAddr::from((global, 0)).into())?;
                s.connect(&SocketAddr::from(([10, 200, 0, 1], 9000)).into())?;
                let mut s: std::net::TcpStream = s.into();
                let (chunk, start, mut sent) = (vec![0x5a; 2500], Instant::now(), 0u64);
                while start.elapsed() < Duration::from_secs(3) {
                    s.write_all(&chunk)?;
                    sent += chunk.len() as u64;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(sent)
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut at = Vec::new();
            for link in [1u8, 0] {
                at.push(Instant::now());
                let took = switch(link).await?;
                println!("  switched to {}: Switch/SwitchAck {} us", ["wifi", "bluetooth"][link as usize], took.as_micros());
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
            let sent = writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
            Ok((at, sent))
        })
    })?;
    let (at, sent) = out
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))???;
    let arrivals = sink
        .join()
        .map_err(|_| anyhow::anyhow!("sink panicked"))???;
    let gaps: Vec<(Instant, Duration)> = arrivals.windows(2).map(|w| (w[1], w[1] - w[0])).collect();
    let mut own: Vec<Duration> = gaps
        .iter()
        .filter(|(t, _)| *t < at[0])
        .map(|g| g.1)
        .collect();
    own.sort();
    let p99 = own.get(own.len() * 99 / 100).copied().unwrap_or_default();
    for (i, t) in at.iter().enumerate() {
        let worst = gaps
            .iter()
            .filter(|(x, _)| *x >= *t && *x < *t + Duration::from_millis(100))
            .map(|g| g.1)
            .max()
            .unwrap_or_default();
        println!("  switch {}: largest gap in the stream {:.1} ms (the stream's own p99 without switching: {:.1} ms)",
                 i + 1, worst.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
    }
    println!("  {sent} bytes sent, connection never broken");
    Ok(())
}

fn sh(args: &[&str]) -> Result<()> {
    let o = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()?;
    if !o.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

fn step(s: &str) {
    println!("\n== {s}");
}
