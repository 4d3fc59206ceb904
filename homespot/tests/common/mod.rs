//! The DHCP test bed: a topology, a config for it, homespotd running in the HomeSpot namespace,
//! and the real DHCP clients driven from the client namespace.
#![allow(dead_code)] // each test binary uses part of this

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
#[allow(unused_imports)]
pub use testkit::clients::{hook_calls, hook_script, Dhclient, HookCalls};
use testkit::{Proc, Scratch, Topology};

pub mod pcap;

/// The proxy tests' bed: homespotd on `topo`'s first link with `global` before the links,
/// a client at 10.77.1.50 and an origin at 10.77.0.2:8080.
pub fn proxy_bed(topo: Topology, global: &str) -> (Bed, testkit::origin::Origin) {
    let bed = Bed::start_on(topo, "", global).expect("test bed");
    let link = &bed.topo.links[0];
    bed.topo
        .client
        .run(&["ip", "addr", "add", "10.77.1.50/24", "dev", &link.client_if])
        .expect("client address");
    let origin =
        testkit::origin::Origin::start(&bed.topo.net, "10.77.0.2:8080".parse().expect("addr"))
            .expect("origin");
    (bed, origin)
}

pub const HOMESPOTD: &str = env!("CARGO_BIN_EXE_homespotd");

/// Skips the test (with a line saying so) unless the machine can build a test bed.
#[macro_export]
macro_rules! need_root {
    () => {
        if !testkit::can_run() {
            eprintln!("SKIPPED: needs root and iproute2 for network namespaces");
            return;
        }
    };
}

pub struct Bed {
    pub topo: Topology,
    pub dir: Scratch,
    pub config: PathBuf,
    pub db: PathBuf,
    pub daemon: Option<Proc>,
    starts: usize,
}

impl Bed {
    /// A topology with `links` LAN links and homespotd serving them; `extra` is appended to
    /// each [[link]] table.
    pub fn start(links: usize, extra: &str) -> Result<Bed> {
        Bed::start_with(links, extra, "")
    }

    /// Like `start`, with `global` (e.g. a `[proxy]` table) placed before the links; `{dir}`
    /// in it becomes the test's scratch folder.
    pub fn start_with(links: usize, extra: &str, global: &str) -> Result<Bed> {
        Bed::start_on(Topology::new(links)?, extra, global)
    }

    /// Like `start_with`, on a topology the caller built (e.g. `Topology::with_air`).
    pub fn start_on(topo: Topology, extra: &str, global: &str) -> Result<Bed> {
        let dir = Scratch::new("dhcp")?;
        let global = global.replace("{dir}", &dir.path().display().to_string());
        // The origin (10.77.0.2, in `net`) is on the HomeSpot's WAN side, which the proxy
        // refuses by default: the test beds allow it, as a router allows its ISP's servers.
        let allow = "allow_destinations = [\"10.77.0.2\"]\n";
        let global = if global.contains("allow_destinations") {
            global
        } else if global.contains("[proxy]\n") {
            global.replacen("[proxy]\n", &format!("[proxy]\n{allow}"), 1)
        } else {
            format!("[proxy]\n{allow}{global}")
        };
        let db = dir.join("leases.redb");
        let mut cfg = format!(
            "[server]\nlease_db = \"{}\"\nstatus_socket = \"{}\"\ndecline_quarantine = \"10m\"\n{global}\n",
            db.display(),
            dir.join("status.sock").display()
        );
        for (i, l) in topo.links.iter().enumerate() {
            cfg += &format!(
                "\n[[link]]\nname = \"link{i}\"\ninterface = \"{}\"\naddress = \"{}/24\"\n\
                 pools = [\"{}-{}\"]\nlease_time = \"1h\"\ndns = [\"{}\"]\n{extra}\n",
                l.hs_if,
                l.hs_addr,
                l.host(100),
                l.host(199),
                l.hs_addr
            );
        }
        Bed::launch(topo, dir, &cfg)
    }

    /// Starts homespotd on `topo` with the config text `cfg` (its lease_db must be `dir`/leases.redb).
    pub fn launch(topo: Topology, dir: Scratch, cfg: &str) -> Result<Bed> {
        let db = dir.join("leases.redb");
        let config = dir.join("homespotd.toml");
        std::fs::write(&config, cfg)?;
        let mut bed = Bed {
            topo,
            dir,
            config,
            db,
            daemon: None,
            starts: 0,
        };
        bed.start_daemon()?;
        Ok(bed)
    }

    /// Starts homespotd (again) on the same config and database.
    pub fn start_daemon(&mut self) -> Result<()> {
        self.starts += 1;
        let log = self.dir.join(&format!("homespotd.{}.log", self.starts));
        let config = self.config.to_string_lossy().into_owned();
        let mut p = self
            .topo
            .homespot
            .spawn(&[HOMESPOTD, "--config", &config, "--log", "debug"], &log)?;
        p.wait_for_log("lease database loaded", Duration::from_secs(10))?;
        self.daemon = Some(p);
        Ok(())
    }

    /// Stops homespotd with SIGTERM and returns its log.
    pub fn stop_daemon(&mut self) -> Result<String> {
        let mut p = self.daemon.take().context("not running")?;
        let st = p.stop(Duration::from_secs(5))?;
        if !st.success() {
            bail!("homespotd exited with {st}:\n{}", p.log());
        }
        Ok(p.log())
    }

    pub fn log(&self) -> String {
        self.daemon.as_ref().map(|p| p.log()).unwrap_or_default()
    }

    /// The counter `name` from the "stopped" line of a log.
    pub fn counter(log: &str, name: &str) -> Option<u64> {
        let line = log.lines().rev().find(|l| l.contains("stopped"))?;
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

/// Runs `args` in the client namespace, failing with its output unless it exits 0.
pub fn client_run(bed: &Bed, args: &[String]) -> Result<String> {
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = bed.topo.client.output(&refs)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "{args:?} failed ({}):\n{text}\nhomespotd:\n{}",
            out.status,
            bed.log()
        );
    }
    Ok(text)
}

/// A one-link topology for perfdhcp's load: a /16 beside the topology's /24 on both ends, so
/// the pool holds every perfdhcp client; perfdhcp speaks as a relay agent (giaddr = its
/// address, 10.78.0.2), so it is a configured relay. Returns the topology and homespotd's
/// config for it, with the lease database `db` and status socket `status`.
pub fn perfdhcp_bed(db: &std::path::Path, status: &std::path::Path) -> Result<(Topology, String)> {
    let topo = Topology::new(1)?;
    let link = topo.links[0].clone();
    topo.homespot
        .run(&["ip", "addr", "add", "10.78.0.1/16", "dev", &link.hs_if])?;
    topo.client
        .run(&["ip", "addr", "add", "10.78.0.2/16", "dev", &link.client_if])?;
    let cfg = format!(
        "[server]\nlease_db = \"{}\"\nstatus_socket = \"{}\"\nrate_per_link = 100000\nrelays = [\"10.78.0.2\"]\n[[link]]\nname = \"load\"\ninterface = \"{}\"\n\
         address = \"10.78.0.1/16\"\npools = [\"10.78.1.0-10.78.255.254\"]\nlease_time = \"1h\"\n",
        db.display(),
        status.display(),
        link.hs_if
    );
    Ok((topo, cfg))
}

/// Every lease in the database at `db`, by address.
pub fn leases_in(
    db: &std::path::Path,
) -> Result<std::collections::HashMap<std::net::Ipv4Addr, homespot::dhcp::lease::Lease>> {
    let store = homespot::store::LeaseStore::open(db)?;
    Ok(store
        .load()?
        .leases
        .into_iter()
        .map(|l| (l.addr, l))
        .collect())
}
