//! The HomeSpot test bed: network namespaces joined by veth pairs, on one machine.
//!
//! What it does: creates namespaces with names unique to this process and call
//! ([`Netns::new`]), removes them in `Drop` (also when a test panics), builds the topologies of
//! DESIGN.md section 7 ([`Topology`], and the agent's journey bed with a foreign access point,
//! [`journey::JourneyBed`]), runs commands and long-lived programs inside a namespace
//! ([`Netns::run`], [`Netns::spawn`], ending them by PID), and runs Rust code inside one on a
//! thread of its own ([`Netns::in_thread`]).
//!
//! What it does not do: touch the root namespace's interfaces, routes, sysctls or resolver.
//! Everything it makes lives in namespaces it created. It needs root (CI runs as root);
//! [`can_run`] tells tests whether to run.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod bluez;
pub mod board;
pub mod clients;
pub mod forger;
mod initramfs;
pub mod journey;
pub mod origin;
pub mod pcap;
mod topology;
pub mod webdriver;
pub use topology::{veth, Link, Topology};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The resident memory of process `pid` in KiB (VmRSS), 0 if it cannot be read.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Whether this process can build test beds (root, with `ip` available). When it cannot,
/// the test fails here (a test that cannot run must not pass), unless `HOMESPOT_ALLOW_SKIP`
/// is set: then this returns false and the caller skips.
pub fn can_run() -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok && std::env::var_os("HOMESPOT_ALLOW_SKIP").is_none() {
        panic!(
            "this test needs root and iproute2 (network namespaces); run it as root \
             (scripts/test), or set HOMESPOT_ALLOW_SKIP=1 to skip it"
        );
    }
    ok
}

/// A network namespace this process created. Dropping it ends every process still inside it
/// and deletes it.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `hs<pid>x<n><tag>`, unique to this process and call, with `lo` up.
    pub fn new(tag: &str) -> Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("hs{}x{}{}", std::process::id(), n, tag);
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Command` that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `args` in the namespace and fails unless it exits 0; returns its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().context("empty command")?;
        let out = self.command(program).args(rest).output()?;
        check(args, out)
    }

    /// Runs `args` in the namespace and returns whatever happened.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        let (program, rest) = args.split_first().context("empty command")?;
        Ok(self.command(program).args(rest).output()?)
    }

    /// Starts `args` in the namespace, its stdout and stderr going to `log`.
    pub fn spawn(&self, args: &[&str], log: &Path) -> Result<Proc> {
        let (program, rest) = args.split_first().context("empty command")?;
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = self
            .command(program)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {args:?}"))?;
        Ok(Proc {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Starts tcpdump on `iface` in the namespace, writing packets that match `filter` to
    /// `pcap` as they come (`-U --immediate-mode`: a capture stopped at once keeps its tail),
    /// and waits until it listens. `options`: more tcpdump options (`-s 128`, `-B 65536`).
    pub fn capture(
        &self,
        iface: &str,
        options: &[&str],
        filter: &str,
        pcap: &Path,
        log: &Path,
    ) -> Result<Proc> {
        let pcap = pcap.display().to_string();
        let mut args = vec!["tcpdump", "-i", iface, "-n", "-U", "--immediate-mode"];
        args.extend_from_slice(options);
        args.extend_from_slice(&["-w", &pcap, filter]);
        let mut p = self.spawn(&args, log)?;
        p.wait_for_log("listening on", Duration::from_secs(10))
            .context("tcpdump ready")?;
        Ok(p)
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    /// Sockets `f` creates belong to the namespace.
    pub fn in_thread<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        in_netns(&self.name, f)
    }

    /// Starts `f` on a new thread that has entered this namespace and returns at once.
    pub fn spawn_thread<T, F>(&self, f: F) -> Result<std::thread::JoinHandle<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let file = open_netns(&self.name)?;
        Ok(std::thread::spawn(move || -> Result<T> {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .context("setns")?;
            Ok(f())
        }))
    }

    /// PIDs of processes in the namespace.
    pub fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes left in a namespace we made are ours (tests start them there).
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A program this process started. Dropping it ends it (SIGTERM, then SIGKILL) by its PID.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// The process ID (of `ip netns exec`, which execs the program, so it is the program's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until its log contains `needle`, or fails after `timeout` (or if it exits).
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if let Some(st) = self.child.try_wait()? {
                bail!(
                    "exited ({st}) before logging {needle:?}; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "no {needle:?} in the log after {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).context("kill")
    }

    /// SIGTERM, then waits up to `timeout` for it to exit; SIGKILL after that.
    pub fn stop(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        if let Some(st) = self.child.try_wait()? {
            return Ok(st);
        }
        self.signal(nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    /// SIGKILL at once (a crash), and reap it.
    pub fn kill9(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Waits for it to exit by itself, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("did not exit within {timeout:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop(Duration::from_secs(2));
        }
    }
}

/// Runs a command in this (the test's) namespace; only for `ip netns` and `ip -n` commands,
/// which act on namespaces we made.
fn sh(args: &[&str]) -> Result<String> {
    let (program, rest) = args.split_first().context("empty command")?;
    let out = Command::new(program).args(rest).output()?;
    check(args, out)
}

fn check(args: &[&str], out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn open_netns(name: &str) -> Result<File> {
    let path = PathBuf::from("/run/netns").join(name);
    File::open(&path).with_context(|| format!("opening {}", path.display()))
}

/// Runs `f` on a new thread that has entered the namespace `name` (one `ip netns` made, owned
/// by someone else: a [`Netns`] or a program's), and returns its result.
pub fn in_netns<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = open_netns(name)?;
    let h = std::thread::spawn(move || -> Result<T> {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(f())
    });
    match h.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// A scratch directory for logs and files of one test, removed on drop unless
/// `HOMESPOT_KEEP_LOGS` is set.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A new empty directory under the system temp dir.
    pub fn new(tag: &str) -> Result<Scratch> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("homespot-{}-{}-{}", tag, std::process::id(), n));
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path })
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("HOMESPOT_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
