//! The DHCP test bed: a topology, a config for it, homespotd running in the HomeSpot namespace,
//! and the real DHCP clients driven from the client namespace.
#![allow(dead_code)] // each test binary uses part of this

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use testkit::{Proc, Scratch, Topology};

pub mod pcap;

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
        let topo = Topology::new(links)?;
        let dir = Scratch::new("dhcp")?;
        let db = dir.join("leases.redb");
        let mut cfg = format!(
            "[server]\nlease_db = \"{}\"\ndecline_quarantine = \"10m\"\n",
            db.display()
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

/// The environment a client's hook script saw, one map per invocation, in order.
pub type HookCalls = Vec<HashMap<String, String>>;

/// A hook script that appends its environment to `out`, one `KEY=value` per line and a
/// `----` line after each call, and puts the address on the interface for the events where a
/// real hook would, so renewals (unicast from the address) work.
pub fn hook_script(dir: &Scratch, name: &str) -> Result<(PathBuf, PathBuf)> {
    let out = dir.join(&format!("{name}.env"));
    let script = dir.join(&format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
env >> {out}
echo ---- >> {out}
IF="${{interface:-$IFACE}}"
case "$reason$1" in
  BOUND|RENEW|REBIND|REBOOT)
    ip addr replace "$new_ip_address/24" dev "$IF" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    [ -n "$old_ip_address" ] && ip addr del "$old_ip_address/24" dev "$IF" ;;
  bound|renew)
    ip addr replace "$ip/24" dev "$IF" ;;
  deconfig)
    ip -4 addr flush dev "$IF" ;;
esac
exit 0
"#,
            out = out.display()
        ),
    )?;
    let mut perm = std::fs::metadata(&script)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm)?;
    Ok((script, out))
}

pub fn hook_calls(out: &PathBuf) -> HookCalls {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.split("----\n")
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            c.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
                .collect()
        })
        .collect()
}

/// dhclient, configured to ask for option 252.
pub struct Dhclient {
    pub conf: PathBuf,
    pub pidfile: PathBuf,
    pub leases: PathBuf,
    pub script: PathBuf,
    pub out: PathBuf,
}

impl Dhclient {
    pub fn new(dir: &Scratch, name: &str) -> Result<Dhclient> {
        let conf = dir.join(&format!("{name}.conf"));
        std::fs::write(
            &conf,
            "option wpad code 252 = text;\n\
             request subnet-mask, broadcast-address, routers, domain-name-servers, wpad;\n",
        )?;
        let (script, out) = hook_script(dir, name)?;
        Ok(Dhclient {
            conf,
            pidfile: dir.join(&format!("{name}.pid")),
            leases: dir.join(&format!("{name}.leases")),
            script,
            out,
        })
    }

    /// `dhclient` with our files and `args` (e.g. `-1`, `-r`, interface).
    pub fn args(&self, more: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "timeout".into(),
            "-s".into(),
            "KILL".into(),
            "20".into(),
            "dhclient".into(),
            "-4".into(),
            "-v".into(),
            "-cf".into(),
            self.conf.display().to_string(),
            "-pf".into(),
            self.pidfile.display().to_string(),
            "-lf".into(),
            self.leases.display().to_string(),
            "-sf".into(),
            self.script.display().to_string(),
        ];
        v.extend(more.iter().map(|s| s.to_string()));
        v
    }

    pub fn calls(&self) -> HookCalls {
        hook_calls(&self.out)
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
