//! A small P-Handoff client: discovers a HomeSpot, associates, puts the global address on
//! `lo` with its host route, and switches links (on a timer, or when a link dies).
//!
//! Usage (root, in the laptop's network namespace):
//!   phandoff-client --iface eth0 --iface eth1 [--switch-every SECS] [--key FILE] [--for SECS]
//!
//! The first interface is used for discovery; each interface is matched to the HomeSpot's link
//! whose subnet holds its address. The key file (32 bytes, made if missing, mode 0600) is the
//! client's identity: the same key gets the same global address.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use phandoff::client::{Client, ClientConfig, ClientEvent};
use phandoff::crypto::ClientKeys;
use phandoff::driver::{run_client, Command, LinkSocket, PORT};
use phandoff::routes::{ifindex, HostRoute, Netlink, RouteProgrammer};
use tokio::sync::mpsc;

struct Args {
    ifaces: Vec<String>,
    switch_every: Option<Duration>,
    key: String,
    run_for: Option<Duration>,
}

fn secs(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 && *s < 1e6)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{v:?} is not a number of seconds"))
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        ifaces: vec![],
        switch_every: None,
        key: "/var/lib/homespot/client.key".into(),
        run_for: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().ok_or(format!("{x} needs a value"));
        match x.as_str() {
            "--iface" => a.ifaces.push(val()?),
            "--switch-every" => a.switch_every = Some(secs(&val()?)?),
            "--key" => a.key = val()?,
            "--for" => a.run_for = Some(secs(&val()?)?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.ifaces.is_empty() {
        return Err("give at least one --iface".into());
    }
    Ok(a)
}

fn random32() -> Result<[u8; 32], String> {
    let mut k = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(k)
}

/// The client's key: read, or made (mode 0600) on first use.
fn key(path: &str) -> Result<[u8; 32], String> {
    if let Ok(b) = std::fs::read(path) {
        return b
            .try_into()
            .map_err(|_| format!("{path}: must hold 32 bytes"));
    }
    let k = random32()?;
    let mut o = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(o.write(true).create_new(true), 0o600);
    o.open(path)
        .and_then(|mut f| f.write_all(&k))
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(k)
}

fn ipv4_of(iface: &str) -> Option<Ipv4Addr> {
    let o = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", iface])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?
        .split('/')
        .next()?
        .parse()
        .ok()
}
async fn next(ev: &mut mpsc::Receiver<ClientEvent>) -> Result<ClientEvent, String> {
    tokio::time::timeout(Duration::from_secs(5), ev.recv())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| "no answer from a HomeSpot".to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        if e.is_empty() {
            println!("usage: phandoff-client --iface IF [--iface IF ...] [--switch-every SECS] [--key FILE] [--for SECS]");
        } else {
            eprintln!("phandoff-client: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() -> Result<(), String> {
    let a = args()?;
    let secret = key(&a.key)?;
    let e = |e: &dyn std::fmt::Display| e.to_string();

    // 1. Discovery on the first interface.
    let sock = LinkSocket::bind(0, &a.ifaces[0], PORT).map_err(|x| e(&x))?;
    let c = Client::new(
        ClientConfig::default(),
        ClientKeys::from_secret(secret),
        None,
        phandoff::driver::os_rng().map_err(|x| e(&x))?,
        PORT,
    );
    let (cmd, cmd_rx) = mpsc::channel(8);
    let (ev_tx, mut ev) = mpsc::channel(64);
    let probe = tokio::spawn(run_client(c, vec![sock], cmd_rx, ev_tx));
    cmd.send(Command::Query(0)).await.map_err(|x| e(&x))?;
    let advert = loop {
        if let ClientEvent::Discovered { advert } = next(&mut ev).await? {
            break advert;
        }
    };
    probe.abort();
    let _ = probe.await;
    let id: String = advert.identity[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!(
        "HomeSpot {id}... at {}, {} links",
        advert.global_addr,
        advert.links.len()
    );

    // 2. Our interfaces on its links.
    let mask = |p: u8| {
        if p == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(p.min(32)))
        }
    };
    let mut mine = Vec::new();
    for ifname in &a.ifaces {
        let Some(addr) = ipv4_of(ifname) else {
            continue;
        };
        let on = advert
            .links
            .iter()
            .find(|l| u32::from(l.subnet) & mask(l.prefix) == u32::from(addr) & mask(l.prefix));
        if let Some(l) = on {
            println!(
                "  {ifname} ({addr}) is on link {} ({:?}, router {})",
                l.index, l.kind, l.router
            );
            mine.push((l.index, ifname.clone(), addr, l.router));
        }
    }
    if mine.is_empty() {
        return Err("none of the interfaces is on the HomeSpot's links".into());
    }
    let socks = mine
        .iter()
        .map(|(i, n, ..)| LinkSocket::bind(*i, n, PORT))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|x| e(&x))?;
    let pinned = Some(advert.identity);
    let c = Client::new(
        ClientConfig::default(),
        ClientKeys::from_secret(secret),
        pinned,
        phandoff::driver::os_rng().map_err(|x| e(&x))?,
        PORT,
    );
    let (cmd, cmd_rx) = mpsc::channel(8);
    let (ev_tx, mut ev) = mpsc::channel(64);
    tokio::spawn(run_client(c, socks, cmd_rx, ev_tx));
    cmd.send(Command::Query(mine[0].0))
        .await
        .map_err(|x| e(&x))?;
    for (i, _, addr, _) in &mine {
        cmd.send(Command::LinkUp(*i, *addr))
            .await
            .map_err(|x| e(&x))?;
    }
    cmd.send(Command::Associate(mine[0].0))
        .await
        .map_err(|x| e(&x))?;
    let global = loop {
        if let ClientEvent::Associated { global, .. } = next(&mut ev).await? {
            break global;
        }
    };
    let mut nl = Netlink::new().map_err(|x| e(&x))?;
    nl.ensure_address(ifindex("lo"), global)
        .await
        .map_err(|x| e(&x))?;
    // Packets of the old link still arrive after a switch: loose reverse-path filtering.
    let mut restore = Vec::new();
    for (_, ifname, ..) in &mine {
        restore.push((
            ifname.clone(),
            phandoff::routes::rp_filter_loose(ifname).map_err(|x| e(&x))?,
        ));
    }
    println!("associated: global address {global} on lo");

    // 3. Switch to the first link, then on the timer or when the current link dies.
    let mut current = 0usize;
    cmd.send(Command::Switch(mine[current].0))
        .await
        .map_err(|x| e(&x))?;
    let mut timer = a
        .switch_every
        .map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
    let deadline = a.run_for.map(|d| tokio::time::Instant::now() + d);
    loop {
        let tick = async {
            match timer.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let end = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = end => break,
            _ = tick => {
                current = (current + 1) % mine.len();
                cmd.send(Command::Switch(mine[current].0)).await.map_err(|x| e(&x))?;
            }
            ev = ev.recv() => match ev {
                Some(ClientEvent::SwitchDone { link, took }) => {
                    let Some((_, ifname, _, router)) = mine.iter().find(|m| m.0 == link) else { continue };
                    let r = HostRoute {
                        dest: advert.global_addr,
                        via: *router,
                        ifindex: ifindex(ifname),
                        src: Some(global),
                        table: None,
                        rto_min_ms: Some(20),
                        quickack: true,
                    };
                    nl.replace(&r).await.map_err(|x| e(&x))?;
                    println!("switched to link {link} ({ifname}) in {} us", took.as_micros());
                }
                Some(ClientEvent::LinkDead { link }) if link == mine[current].0 && mine.len() > 1 => {
                    current = (current + 1) % mine.len();
                    println!("link {link} is dead; moving to link {}", mine[current].0);
                    cmd.send(Command::Switch(mine[current].0)).await.map_err(|x| e(&x))?;
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    let _ = nl.remove(advert.global_addr, None).await;
    for (ifname, old) in restore {
        let _ = phandoff::routes::restore_rp_filter(&ifname, &old);
    }
    println!("done");
    Ok(())
}
