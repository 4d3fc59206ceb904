//! An emulated router board: Debian's kernel for the board's CPU and a busybox initramfs
//! holding the HomeSpot package as opkg would install it (its data unpacked, its control
//! files under `/usr/lib/opkg/info/`, its postinst run), booted under QEMU TCG with three
//! NICs on taps in test namespaces: `eth0` (WAN) in `wan`, `eth1` and `eth2` (two LAN links)
//! in `client` (named `eth0` and `eth1` there). homespotd is started by the package's init
//! script's own command line, as procd would start it (a stub `procd_set_param` collects it).
//!
//! Addresses: WAN 10.91.0.0/24 (board .1, `wan` .2), LAN links 10.91.1.0/24 and
//! 10.91.2.0/24 (board .1). The console (serial) is read into [`Board::console`]; commands
//! are sent to the board's shell with [`Board::run`].

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{Netns, Scratch};

/// One board kind.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The CPU as Rust and `image/build` name it (`x86_64`, `aarch64`, `mipsel`).
    pub arch: &'static str,
    /// Debian's name for it.
    pub debian: &'static str,
    /// OpenWrt's package architecture.
    pub pkgarch: &'static str,
    qemu: &'static str,
    machine: &'static [&'static str],
    console: &'static str,
}

/// The boards: x86_64 on `-M pc`, aarch64 on `-M virt`, mipsel on `-M malta`.
pub fn spec(arch: &str) -> Result<Spec> {
    Ok(match arch {
        "x86_64" => Spec {
            arch: "x86_64",
            debian: "amd64",
            pkgarch: "x86_64",
            qemu: "qemu-system-x86_64",
            machine: &["-M", "pc", "-cpu", "qemu64"],
            console: "ttyS0",
        },
        "aarch64" => Spec {
            arch: "aarch64",
            debian: "arm64",
            pkgarch: "aarch64_generic",
            qemu: "qemu-system-aarch64",
            machine: &["-M", "virt", "-cpu", "cortex-a53"],
            console: "ttyAMA0",
        },
        "mipsel" => Spec {
            arch: "mipsel",
            debian: "mipsel",
            pkgarch: "mipsel_24kc",
            qemu: "qemu-system-mipsel",
            machine: &["-M", "malta", "-cpu", "24Kf"],
            console: "ttyS0",
        },
        other => bail!("no board for {other}"),
    })
}

/// The repository's root (testkit's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The package `image/build` made for `spec`.
pub fn ipk(spec: &Spec) -> Result<PathBuf> {
    let out = repo_root().join("image/out");
    let found = std::fs::read_dir(&out)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&format!("_{}.ipk", spec.pkgarch)))
        });
    found.with_context(|| {
        format!(
            "no {} package in {}: run `image/build {}` first (scripts/test does)",
            spec.pkgarch,
            out.display(),
            spec.arch
        )
    })
}

/// A running board.
pub struct Board {
    /// The namespace QEMU runs in.
    pub qemu_ns: Netns,
    /// The WAN side: the board's `eth0` is `wan0` here, at 10.91.0.2.
    pub wan: Netns,
    /// The LAN side: the board's `eth1` and `eth2` are `eth0` and `eth1` here.
    pub client: Netns,
    /// From QEMU's start to homespotd's "serving DHCP".
    pub boot_to_serving: Duration,
    child: Child,
    stdin: ChildStdin,
    console: Arc<Mutex<String>>,
}

/// Modules to load, in order, for `wanted` (and what they need), from `modules.dep`.
pub(crate) fn module_order(dep: &str, wanted: &[&str]) -> Vec<String> {
    let deps: std::collections::HashMap<&str, Vec<&str>> = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    let mut order: Vec<String> = Vec::new();
    for w in wanted {
        let Some((path, needs)) = deps
            .iter()
            .find(|(p, _)| p.rsplit('/').next() == Some(&format!("{w}.ko")[..]))
        else {
            continue; // built in
        };
        // modules.dep lists a module's needs so that the last is loaded first.
        for m in needs
            .iter()
            .rev()
            .map(|s| s.to_string())
            .chain([path.to_string()])
        {
            if !order.contains(&m) {
                order.push(m);
            }
        }
    }
    order
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /tmp /var/run /var/lock
for m in @MODULES@; do insmod "/lib/modules/$m"; done
# netifd's part: the interfaces and their addresses.
ip link set lo up
ip addr add 10.91.0.1/24 dev eth0 && ip link set eth0 up
ip addr add 10.91.1.1/24 dev eth1 && ip link set eth1 up
ip addr add 10.91.2.1/24 dev eth2 && ip link set eth2 up
ip route add default via 10.91.0.2
echo "board: network up"
# opkg's part: the package's postinst.
sh /usr/lib/opkg/info/homespot.postinst configure && echo "board: postinst ok"
# procd's part: the init script's own command line, and its reload.
procd_open_instance() { :; }
procd_close_instance() { :; }
procd_set_param() { if [ "$1" = command ]; then shift; HS_CMD="$*"; fi; }
procd_add_reload_trigger() { :; }
procd_send_signal() { kill -HUP "$HS_PID"; }
. /etc/init.d/homespot
start_service
echo "board: starting $HS_CMD"
$HS_CMD &
HS_PID=$!
( while sleep 2; do echo "board-rss: $(awk '/VmRSS/ {print $2}' /proc/$HS_PID/status)"; done ) &
# Commands from the test, one per line, in this shell (its functions and HS_PID).
while read -r line; do eval "$line"; done
"#;

impl Board {
    /// Boots `spec`'s board with the package `ipk` installed and `uci` as
    /// `/etc/config/homespot`; returns once homespotd serves DHCP.
    pub fn boot(spec: &Spec, ipk: &Path, uci: &str, dir: &Scratch) -> Result<Board> {
        let fetch = repo_root().join("image/boards/fetch");
        let out = Command::new(&fetch)
            .arg(spec.debian)
            .output()
            .with_context(|| format!("running {}", fetch.display()))?;
        if !out.status.success() {
            bail!(
                "{} {}: {}",
                fetch.display(),
                spec.debian,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
        let initrd = build_initramfs(&root, ipk, uci, dir)?;

        let qemu_ns = Netns::new("bq")?;
        let wan = Netns::new("bw")?;
        let client = Netns::new("bc")?;
        let mut args: Vec<String> = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            qemu_ns.name().into(),
            spec.qemu.into(),
        ];
        args.extend(spec.machine.iter().map(|s| s.to_string()));
        args.extend(
            [
                "-m",
                "256",
                "-nographic",
                "-no-reboot",
                "-kernel",
                &root.join("vmlinuz").display().to_string(),
                "-initrd",
                &initrd.display().to_string(),
                "-append",
                &format!("console={} panic=-1 quiet", spec.console),
            ]
            .map(String::from),
        );
        for (i, tap) in ["hsw0", "hsl1", "hsl2"].iter().enumerate() {
            args.extend([
                "-netdev".into(),
                format!("tap,id=n{i},ifname={tap},script=no,downscript=no"),
                "-device".into(),
                // No option ROM (iPXE): nothing boots from the network, and it costs seconds.
                format!("virtio-net-pci,netdev=n{i},mac=52:54:00:91:00:1{i},romfile="),
            ]);
        }
        let started = Instant::now();
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", spec.qemu))?;
        let stdin = child.stdin.take().context("stdin")?;
        let console = Arc::new(Mutex::new(String::new()));
        let log_path = dir.join(&format!("board-{}.log", spec.arch));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (c, path) = (console.clone(), log_path.clone());
            std::thread::spawn(move || {
                let mut log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .ok();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(l) = log.as_mut() {
                        let _ = writeln!(l, "{line}");
                    }
                    let mut g = c.lock().unwrap_or_else(|p| p.into_inner());
                    g.push_str(&line);
                    g.push('\n');
                }
            });
        }
        let mut board = Board {
            qemu_ns,
            wan,
            client,
            boot_to_serving: Duration::ZERO,
            child,
            stdin,
            console,
        };
        // QEMU makes the taps in its namespace as it opens them; they move to theirs.
        let deadline = Instant::now() + Duration::from_secs(30);
        for (tap, to, name) in [
            ("hsw0", board.wan.name().to_string(), "wan0"),
            ("hsl1", board.client.name().to_string(), "eth0"),
            ("hsl2", board.client.name().to_string(), "eth1"),
        ] {
            loop {
                if board.qemu_ns.run(&["ip", "link", "show", tap]).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("QEMU made no {tap}: {}", board.console());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            board
                .qemu_ns
                .run(&["ip", "link", "set", tap, "netns", &to])?;
            let ns = if name == "wan0" {
                &board.wan
            } else {
                &board.client
            };
            ns.run(&["ip", "link", "set", tap, "name", name])?;
            ns.run(&["ip", "link", "set", name, "up"])?;
        }
        board
            .wan
            .run(&["ip", "addr", "add", "10.91.0.2/24", "dev", "wan0"])?;
        board.wait_console("serving DHCP", Duration::from_secs(180))?;
        board.boot_to_serving = started.elapsed();
        Ok(board)
    }

    /// Everything the board printed so far.
    pub fn console(&self) -> String {
        self.console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until the console shows `needle`.
    pub fn wait_console(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.console().contains(needle) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the board did not say {needle:?} within {timeout:?}:\n{}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `cmd` in the board's shell (its output goes to the console).
    pub fn run(&mut self, cmd: &str) -> Result<()> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// homespotd's latest RSS on the board (KiB), as the board reports it every 2 s.
    pub fn rss_kb(&self) -> Option<u64> {
        self.console()
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("board-rss: "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The largest RSS the board reported after `skip` reports.
    pub fn rss_reports(&self) -> Vec<u64> {
        self.console()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("board-rss: "))
            .filter_map(|v| v.trim().parse().ok())
            .collect()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The initramfs: busybox, the modules for virtio NICs, the package as opkg installs it, the
/// test's `/etc/config/homespot`, and `/init`.
fn build_initramfs(root: &Path, ipk: &Path, uci: &str, dir: &Scratch) -> Result<PathBuf> {
    let w = dir.join("initramfs");
    crate::initramfs::tree(
        &w,
        &[
            "proc",
            "sys",
            "dev",
            "tmp",
            "etc",
            "usr/lib/opkg/info",
            "lib/modules",
        ],
        root,
    )?;
    let kv = crate::initramfs::kernel_version(root)?;
    let names = crate::initramfs::modules(
        root,
        &kv,
        &["virtio_pci", "virtio_net"],
        &w.join("lib/modules"),
    )?;
    // The package, as opkg installs it.
    let pkg = dir.join("ipk");
    let _ = std::fs::remove_dir_all(&pkg);
    std::fs::create_dir_all(&pkg)?;
    sh(&[
        "tar",
        "-xzf",
        &ipk.display().to_string(),
        "-C",
        &pkg.display().to_string(),
    ])?;
    sh(&[
        "tar",
        "-xzf",
        &pkg.join("data.tar.gz").display().to_string(),
        "-C",
        &w.display().to_string(),
    ])?;
    let control = pkg.join("control");
    std::fs::create_dir_all(&control)?;
    sh(&[
        "tar",
        "-xzf",
        &pkg.join("control.tar.gz").display().to_string(),
        "-C",
        &control.display().to_string(),
    ])?;
    for f in std::fs::read_dir(&control)? {
        let f = f?;
        let name = f.file_name().to_string_lossy().to_string();
        std::fs::copy(
            f.path(),
            w.join("usr/lib/opkg/info").join(format!("homespot.{name}")),
        )?;
    }
    std::fs::write(w.join("etc/config/homespot"), uci)?;
    let init = INIT.replace("@MODULES@", &names.join(" "));
    crate::initramfs::pack(&w, &init, dir.join("initramfs.cpio.gz"))
}

fn sh(args: &[&str]) -> Result<()> {
    let st = Command::new(args[0]).args(&args[1..]).status()?;
    if !st.success() {
        bail!("{args:?} failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::module_order;

    #[test]
    fn modules_load_after_what_they_need() {
        let dep = "kernel/a/virtio_pci.ko: kernel/v/virtio_pci_modern_dev.ko kernel/v/virtio.ko kernel/v/virtio_ring.ko\n\
                   kernel/v/virtio.ko:\nkernel/v/virtio_ring.ko:\nkernel/v/virtio_pci_modern_dev.ko:\n\
                   kernel/n/virtio_net.ko: kernel/n/net_failover.ko kernel/c/failover.ko kernel/v/virtio.ko kernel/v/virtio_ring.ko\n";
        let o = module_order(dep, &["virtio_pci", "virtio_net", "builtin"]);
        assert_eq!(
            o,
            vec![
                "kernel/v/virtio_ring.ko",
                "kernel/v/virtio.ko",
                "kernel/v/virtio_pci_modern_dev.ko",
                "kernel/a/virtio_pci.ko",
                "kernel/c/failover.ko",
                "kernel/n/net_failover.ko",
                "kernel/n/virtio_net.ko",
            ]
        );
    }
}
