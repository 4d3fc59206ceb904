//! The agent's test bed (issue 5): a HomeSpot with a Wi-Fi-like link (tbf 50 Mbit/s, 20 ms
//! queue) and a Bluetooth-like link (tbf 2 Mbit/s, 500 ms queue), both through air bridges; a foreign access point `ap`
//! with real dnsmasq (option 252), real tinyproxy and its PAC file on busybox httpd (tbf
//! 20 Mbit/s); the origin server in `net`, reachable from both. The laptop's addresses come
//! from dhclient; homespot-agent runs in the laptop's namespace.
//!
//! Addresses: HomeSpot links 10.77.1.0/24 (wifi, `eth0`) and 10.77.2.0/24 (bluetooth, `eth1`);
//! AP link 10.88.1.0/24 (`eth2`, AP at .1, proxy 10.88.1.1:8888); AP uplink 10.88.0.0/24;
//! origin 10.77.0.2:80.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::clients::Dhclient;
use crate::origin::Origin;
use crate::{veth, Netns, Proc, Scratch, Topology};

/// The PAC file the foreign AP serves.
pub const AP_PAC: &str = r#"function FindProxyForURL(url, host) {
  if (isPlainHostName(host) || isInNet(host, "10.88.1.0", "255.255.255.0")) return "DIRECT";
  return "PROXY 10.88.1.1:8888; DIRECT";
}
"#;

/// The origin's address.
pub const ORIGIN: &str = "10.77.0.2:80";

/// The `Instant` of an agent event `e` (its `time_ms`), given an `anchor` taken at one moment
/// on both clocks.
pub fn event_instant(e: &Value, anchor: (Instant, std::time::SystemTime)) -> Instant {
    instant_of(e["time_ms"].as_u64().unwrap_or(0), anchor)
}

/// The route changes among the agent's `events`: when (by `anchor`) and to which link.
pub fn route_changes(
    events: &[Value],
    anchor: (Instant, std::time::SystemTime),
) -> Vec<(Instant, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "route_changed")
        .map(|e| {
            (
                event_instant(e, anchor),
                e["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The `Instant` of a wall-clock stamp `ms` (Unix milliseconds, as the agent's events carry),
/// given an `anchor` taken at one moment on both clocks.
pub fn instant_of(ms: u64, anchor: (Instant, std::time::SystemTime)) -> Instant {
    let a = anchor
        .1
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if ms >= a {
        anchor.0 + Duration::from_millis(ms - a)
    } else {
        anchor.0 - Duration::from_millis(a - ms)
    }
}

/// The homespotd binary next to the running test's target folder (`cargo test --workspace`
/// builds it; a lone `cargo test -p homespot-agent` builds it here with `$CARGO`), or the one
/// `HOMESPOT_HOMESPOTD_BIN` names (benchmarks of the static release build).
pub fn homespotd_bin() -> Result<String> {
    if let Ok(p) = std::env::var("HOMESPOT_HOMESPOTD_BIN") {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("target dir")?;
    let p = dir.join("homespotd");
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // The profile of the test binary that asks (bench/check runs the timing tests with
        // `--release`).
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-p", "homespot", "--bin", "homespotd"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let st = build.status()?;
        if !st.success() {
            bail!("building homespotd failed");
        }
    }
    Ok(p.display().to_string())
}

/// Events from the agent's Mobility API, collected by a reader thread.
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<Value>>>);

impl EventLog {
    /// The first `handoff` event to link `to` after index `from`, within 20 s (the agent
    /// emits it once the handoff's figures are measured, about a second after the move).
    pub fn handoff_to(&self, from: usize, to: &str) -> Result<(usize, Value)> {
        self.wait(from, Duration::from_secs(20), |e| {
            e["event"] == "handoff" && e["to"] == to
        })
        .with_context(|| format!("handoff to {to}"))
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<Value> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits for an event after index `from` for which `pred` holds; returns its index and it.
    pub fn wait(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<(usize, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let all = self.all();
            if let Some((i, e)) = all.iter().enumerate().skip(from).find(|(_, e)| pred(e)) {
                return Ok((i, e.clone()));
            }
            if Instant::now() > deadline {
                bail!(
                    "no such event within {timeout:?}; events: {}",
                    all.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many events so far.
    pub fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// No events yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The running bed. Dropping it stops everything and removes the namespaces.
pub struct JourneyBed {
    /// HomeSpot, laptop, net, air.
    pub topo: Topology,
    /// The foreign access point.
    pub ap: Netns,
    /// Scratch files (configs, logs).
    pub dir: Scratch,
    /// The origin in `net`.
    pub origin: Origin,
    /// The agent's API socket.
    pub api: PathBuf,
    procs: Vec<Proc>,
    agent: Option<Proc>,
    homespotd: Option<Proc>,
    homespotd_cmd: Vec<String>,
    homespotd_starts: u32,
}

fn tbf(ns: &Netns, dev: &str, rate: &str, burst: &str, latency: &str) -> Result<()> {
    ns.run(&[
        "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", burst,
        "latency", latency,
    ])?;
    Ok(())
}

impl JourneyBed {
    /// Builds the bed, starts homespotd (`homespotd` is its path), the AP's programs, and
    /// gets the laptop leases on both HomeSpot links. The agent is started by
    /// [`JourneyBed::start_agent`].
    pub fn start(homespotd: &str) -> Result<JourneyBed> {
        let mut bed = JourneyBed::start_bare(homespotd)?;
        for i in 0..2 {
            bed.dhcp(&format!("eth{i}"))?;
        }
        Ok(bed)
    }

    /// Like [`JourneyBed::start`], with no DHCP client started: the laptop's interfaces are up
    /// and have no address.
    pub fn start_bare(homespotd: &str) -> Result<JourneyBed> {
        let topo = Topology::with_air(2)?;
        let dir = Scratch::new("journey")?;
        let ap = Netns::new("ap")?;
        // HOMESPOT_JOURNEY_CC=reno gives every namespace of the bed another default congestion
        // control than the machine's (a namespace may choose among
        // net.ipv4.tcp_allowed_congestion_control): homespotd asks for its own.
        if let Ok(cc) = std::env::var("HOMESPOT_JOURNEY_CC") {
            for ns in [&topo.homespot, &topo.client, &ap, &topo.net] {
                ns.run(&[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.tcp_congestion_control={cc}"),
                ])?;
            }
        }
        let origin = Origin::start(&topo.net, ORIGIN.parse::<SocketAddr>()?)?;
        // HomeSpot.
        // Kinds and the rates the radios below are shaped to (`rate_mbps`: the HomeSpot knows
        // what its radios carry).
        let kinds = [("wifi", 50), ("bluetooth", 2)];
        let mut cfg = format!(
            "[server]\nlease_db = \"{}\"\nstatus_socket = \"{}\"\n[proxy]\nallow_destinations = [\"10.77.0.2\"]\n[handoff]\nglobal_subnet = \"10.200.0.0/24\"\nidentity = \"{}\"\n",
            dir.join("leases.redb").display(),
            dir.join("status.sock").display(),
            dir.join("identity.key").display()
        );
        for (l, (kind, mbps)) in topo.links.iter().zip(kinds) {
            cfg += &format!(
                "\n[[link]]\nname = \"{kind}\"\nkind = \"{kind}\"\nrate_mbps = {mbps}\ninterface = \"{}\"\naddress = \"{}/24\"\n\
                 pools = [\"{}-{}\"]\nlease_time = \"1h\"\n",
                l.hs_if,
                l.hs_addr,
                l.host(100),
                l.host(199),
            );
        }
        let conf = dir.join("homespotd.toml");
        std::fs::write(&conf, cfg)?;
        let homespotd_cmd = vec![
            homespotd.to_string(),
            "--config".to_string(),
            conf.display().to_string(),
        ];
        let mut hs = topo.homespot.spawn(
            &[homespotd, "--config", &conf.display().to_string()],
            &dir.join("homespotd.log"),
        )?;
        hs.wait_for_log("lease database loaded", Duration::from_secs(10))?;
        // Queues: Wi-Fi short (20 ms, as drivers with AQM keep it), Bluetooth deep (500 ms).
        // HOMESPOT_JOURNEY_TBF="wifi,bluetooth" (tbf `latency` values) tries others.
        let exp = std::env::var("HOMESPOT_JOURNEY_TBF").unwrap_or_else(|_| "20ms,500ms".into());
        let (wl, bl) = exp.split_once(',').unwrap_or(("20ms", "500ms"));
        tbf(&topo.homespot, "lan0", "50mbit", "64kb", wl)?;
        tbf(&topo.homespot, "lan1", "2mbit", "8kb", bl)?;
        tbf(&topo.client, "eth0", "50mbit", "64kb", wl)?;
        tbf(&topo.client, "eth1", "2mbit", "8kb", bl)?;
        // The foreign AP: a link to the laptop (eth2) and an uplink to `net`.
        veth(&ap, "lan", &topo.client, "eth2")?;
        veth(&ap, "uplink", &topo.net, "ap")?;
        ap.run(&["ip", "addr", "add", "10.88.1.1/24", "dev", "lan"])?;
        ap.run(&["ip", "addr", "add", "10.88.0.1/24", "dev", "uplink"])?;
        ap.run(&["ip", "link", "set", "lan", "up"])?;
        ap.run(&["ip", "link", "set", "uplink", "up"])?;
        ap.run(&["ip", "route", "add", "10.77.0.0/24", "via", "10.88.0.2"])?;
        topo.net
            .run(&["ip", "addr", "add", "10.88.0.2/24", "dev", "ap"])?;
        topo.net.run(&["ip", "link", "set", "ap", "up"])?;
        topo.client.run(&["ip", "link", "set", "eth2", "up"])?;
        tbf(&ap, "lan", "20mbit", "32kb", "100ms")?;
        let mut procs = vec![];
        let leases = dir.join("ap.leases");
        procs.push(ap.spawn(
            &[
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=lan",
                "--bind-interfaces",
                "--dhcp-range=10.88.1.100,10.88.1.150,1h",
                "--dhcp-option=3,10.88.1.1",
                "--dhcp-option=252,http://10.88.1.1/wpad.dat",
                "--no-ping",
                "--log-dhcp",
                "--pid-file=",
                &format!("--dhcp-leasefile={}", leases.display()),
                "--user=root",
            ],
            &dir.join("dnsmasq.log"),
        )?);
        let tp = dir.join("tinyproxy.conf");
        std::fs::write(
            &tp,
            "Port 8888\nListen 10.88.1.1\nTimeout 600\nMaxClients 100\nAllow 10.88.1.0/24\nConnectPort 443\nConnectPort 8443\nLogLevel Info\n",
        )?;
        procs.push(ap.spawn(
            &["tinyproxy", "-d", "-c", &tp.display().to_string()],
            &dir.join("tinyproxy.log"),
        )?);
        let www = dir.join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("wpad.dat"), AP_PAC)?;
        procs.push(ap.spawn(
            &[
                "busybox",
                "httpd",
                "-f",
                "-p",
                "10.88.1.1:80",
                "-h",
                &www.display().to_string(),
            ],
            &dir.join("httpd.log"),
        )?);
        Ok(JourneyBed {
            api: dir.join("agent.sock"),
            topo,
            ap,
            dir,
            origin,
            procs,
            agent: None,
            homespotd: Some(hs),
            homespotd_cmd,
            homespotd_starts: 1,
        })
    }

    /// Runs dhclient on `ifname` in the laptop (it stays, renewing) and waits for the address.
    pub fn dhcp(&mut self, ifname: &str) -> Result<Ipv4Addr> {
        let c = Dhclient::new(&self.dir, &format!("dhclient-{ifname}"))?;
        // The laptop names itself, as a desktop's DHCP client does (`homespotd status`).
        let mut conf = std::fs::read_to_string(&c.conf)?;
        conf += "send host-name \"laptop\";\n";
        std::fs::write(&c.conf, conf)?;
        let mut args = c.args(&["-d", ifname]);
        args.drain(..4); // no `timeout` wrapper: it runs for the whole test
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = self
            .topo
            .client
            .spawn(&refs, &self.dir.join(&format!("dhclient-{ifname}.log")))?;
        self.procs.push(p);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(a) = self.address(ifname) {
                return Ok(a);
            }
            if Instant::now() > deadline {
                bail!("no lease on {ifname}; homespotd:\n{}", self.homespotd_log());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The laptop's address on `ifname`.
    pub fn address(&self, ifname: &str) -> Option<Ipv4Addr> {
        let out = self
            .topo
            .client
            .run(&["ip", "-4", "-o", "addr", "show", "dev", ifname])
            .ok()?;
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)?
            .split('/')
            .next()?
            .parse()
            .ok()
    }

    /// Starts the agent (`agent` is its path) with `extra` appended to its config, and waits
    /// until it uses a HomeSpot link. Returns a log of its API events.
    pub fn start_agent(&mut self, agent: &str, extra: &str) -> Result<EventLog> {
        let log = self.launch_agent(agent, extra)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.request(r#"{"cmd":"status"}"#)?;
            if s["current"].is_string() && !s["hibernating"].as_bool().unwrap_or(true) {
                return Ok(log);
            }
            if Instant::now() > deadline {
                bail!("the agent found no path: {s}\n{}", self.agent_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the agent and returns as soon as its API answers (it may have no link yet).
    pub fn launch_agent(&mut self, agent: &str, extra: &str) -> Result<EventLog> {
        let conf = self.dir.join("agent.toml");
        std::fs::write(
            &conf,
            format!(
                "[agent]\napi_socket = \"{}\"\nstate_dir = \"{}\"\ninterfaces = [\"eth0\", \"eth1\", \"eth2\"]\n{extra}\n\
                 [[interface]]\nname = \"eth2\"\nkind = \"wifi\"\n",
                self.api.display(),
                self.dir.join("agent-state").display()
            ),
        )?;
        // `HOMESPOT_TEST_AGENT_LOG=debug` for a closer look at a failing test.
        let level = format!(
            "HOMESPOT_LOG={}",
            std::env::var("HOMESPOT_TEST_AGENT_LOG").unwrap_or_else(|_| "info".into())
        );
        let mut p = self.topo.client.spawn(
            &[
                "env",
                &level,
                agent,
                "--config",
                &conf.display().to_string(),
                "run",
            ],
            &self.dir.join("agent.log"),
        )?;
        p.wait_for_log("homespot-agent: proxy on", Duration::from_secs(10))?;
        self.agent = Some(p);
        self.events()
    }

    /// The laptop leaves the HomeSpot for the foreign AP: the AP's link (eth2) goes down, both
    /// HomeSpot radios are lost silently and the agent declares them dead, then the AP's link
    /// comes up (with a lease from the AP's dnsmasq when `lease`: the first time). Returns the
    /// handoff to eth2 and its index in `events`.
    pub fn leave_for_ap(&mut self, events: &EventLog, lease: bool) -> Result<(usize, Value)> {
        self.topo
            .client
            .run(&["ip", "link", "set", "eth2", "down"])?;
        let mark = events.len();
        self.topo.lose(0)?;
        self.topo.lose(1)?;
        for l in ["eth0", "eth1"] {
            events
                .wait(mark, Duration::from_secs(5), |e| {
                    e["event"] == "link_down" && e["link"] == l
                })
                .with_context(|| format!("{l} declared dead"))?;
        }
        let mark = events.len();
        self.topo.client.run(&["ip", "link", "set", "eth2", "up"])?;
        if lease {
            self.dhcp("eth2")?;
        }
        events.handoff_to(mark, "eth2")
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        self.agent.as_ref().map(|p| p.log()).unwrap_or_default()
    }

    /// Stops the agent (SIGTERM) and returns its log.
    pub fn stop_agent(&mut self) -> Result<String> {
        let mut p = self.agent.take().context("no agent")?;
        p.stop(Duration::from_secs(5))?;
        Ok(p.log())
    }

    /// One API request; its one-line answer.
    pub fn request(&self, req: &str) -> Result<Value> {
        let mut s = UnixStream::connect(&self.api)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        writeln!(s, "{req}")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Subscribes to the agent's events; a thread collects them until the agent stops.
    pub fn events(&self) -> Result<EventLog> {
        let mut s = UnixStream::connect(&self.api)?;
        writeln!(s, "{{\"cmd\":\"events\"}}")?;
        let log = EventLog::default();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(s).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v.get("event").is_some() {
                        if let Ok(mut g) = l.0.lock() {
                            g.push(v);
                        }
                    }
                }
            }
        });
        Ok(log)
    }

    /// homespotd's log (of its current run).
    pub fn homespotd_log(&self) -> String {
        self.homespotd.as_ref().map(|p| p.log()).unwrap_or_default()
    }

    /// Stops homespotd with SIGTERM and returns its log (with its counters).
    pub fn stop_homespotd(&mut self) -> Result<String> {
        let mut p = self.homespotd.take().context("homespotd is not running")?;
        p.stop(Duration::from_secs(10))?;
        Ok(p.log())
    }

    /// Another device on the HomeSpot's link `link` (its air bridge: it sees what the air
    /// carries there), with address `addr`/24 on its interface `wlan0`.
    pub fn neighbour(&self, tag: &str, link: usize, addr: &str) -> Result<Netns> {
        let ns = Netns::new(tag)?;
        self.topo.attach(link, &ns, "wlan0")?;
        ns.run(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "wlan0"])?;
        Ok(ns)
    }

    /// homespotd's process id.
    pub fn homespotd_pid(&self) -> Option<u32> {
        self.homespotd.as_ref().map(|p| p.pid())
    }

    /// Kills homespotd with SIGKILL (no cleanup: its routes and addresses stay).
    pub fn kill9_homespotd(&mut self) -> Result<()> {
        let mut p = self.homespotd.take().context("homespotd is not running")?;
        p.kill9()
    }

    /// Starts homespotd again on the same config, identity and database; returns once it
    /// serves P-Handoff (its log says the assignments are loaded).
    pub fn restart_homespotd(&mut self) -> Result<()> {
        self.homespotd_starts += 1;
        let args: Vec<&str> = self.homespotd_cmd.iter().map(String::as_str).collect();
        let log = self
            .dir
            .join(&format!("homespotd.{}.log", self.homespotd_starts));
        let mut p = self.topo.homespot.spawn(&args, &log)?;
        p.wait_for_log("global address assignments loaded", Duration::from_secs(10))?;
        self.homespotd = Some(p);
        Ok(())
    }
}

impl Drop for JourneyBed {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.stop(Duration::from_secs(3));
        }
    }
}

/// A download read from a child's stdout: checks every byte against the origin's pattern and
/// records when each chunk arrived.
pub struct Download {
    /// Bytes read.
    pub bytes: u64,
    /// Offset of the first byte that did not match, if any.
    pub mismatch: Option<u64>,
    /// (arrival time, bytes) of each read.
    pub chunks: Vec<(Instant, usize)>,
}

impl Download {
    /// Reads `r` to the end.
    pub fn read(
        mut r: impl std::io::Read,
        progress: Arc<std::sync::atomic::AtomicU64>,
    ) -> Download {
        let mut d = Download {
            bytes: 0,
            mismatch: None,
            chunks: Vec::new(),
        };
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            d.chunks.push((Instant::now(), n));
            if d.mismatch.is_none() {
                for (i, b) in buf[..n].iter().enumerate() {
                    let at = d.bytes + i as u64;
                    if *b != crate::origin::pattern_byte(at) {
                        d.mismatch = Some(at);
                        break;
                    }
                }
            }
            d.bytes += n as u64;
            progress.store(d.bytes, std::sync::atomic::Ordering::Relaxed);
        }
        d
    }

    /// Inter-arrival times between reads.
    pub fn gaps(&self) -> Vec<Duration> {
        self.chunks.windows(2).map(|w| w[1].0 - w[0].0).collect()
    }

    /// The `q` quantile (0..1) of the inter-arrival times.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(self.gaps(), q)
    }

    /// With `HOMESPOT_DUMP_CHUNKS=FILE` set, writes every read (`c SECONDS BYTES`) and every
    /// route change (`m SECONDS LINK`), in seconds from `start`, to FILE for a closer look.
    pub fn dump_if_asked(&self, start: Instant, moves: &[(Instant, String)]) {
        let Ok(path) = std::env::var("HOMESPOT_DUMP_CHUNKS") else {
            return;
        };
        let at = |t: Instant| t.saturating_duration_since(start).as_secs_f64();
        let mut out: String = self
            .chunks
            .iter()
            .map(|c| format!("c {:.6} {}\n", at(c.0), c.1))
            .collect();
        out.extend(moves.iter().map(|(m, l)| format!("m {:.6} {l}\n", at(*m))));
        if let Err(e) = std::fs::write(&path, out) {
            eprintln!("HOMESPOT_DUMP_CHUNKS: {path}: {e}");
        }
    }

    /// The largest inter-arrival time whose later read is in `[from, to]`.
    pub fn max_gap_in(&self, from: Instant, to: Instant) -> Duration {
        self.chunks
            .windows(2)
            .filter(|w| w[1].0 >= from && w[1].0 <= to)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default()
    }
}

/// curl through the agent's proxy, its output checked against the pattern as it arrives.
pub struct Curl {
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<Download>>,
    /// Bytes received so far.
    pub progress: Arc<std::sync::atomic::AtomicU64>,
}

impl Curl {
    /// Waits until `n` bytes arrived.
    pub fn wait_bytes(&self, n: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.progress.load(std::sync::atomic::Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                bail!(
                    "download stalled at {} bytes",
                    self.progress.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Waits for curl to exit; its status, its stderr and what it delivered.
    pub fn finish(
        mut self,
        timeout: Duration,
    ) -> Result<(std::process::ExitStatus, String, Download)> {
        let deadline = Instant::now() + timeout;
        let st = loop {
            if let Some(st) = self.child.try_wait()? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("curl did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let d = self
            .reader
            .take()
            .context("reader")?
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))?;
        Ok((st, err, d))
    }
}

impl Drop for Curl {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl JourneyBed {
    /// Starts `curl -sS -x <agent proxy> ARGS -o -` in the laptop (at most 170 s).
    pub fn curl(&self, args: &[&str]) -> Result<Curl> {
        curl_in(&self.topo.client, "http://127.0.0.1:3129", args)
    }

    /// Asks the agent to move to `to` and waits for the route change.
    pub fn switch(&self, events: &EventLog, to: &str) -> Result<Value> {
        let n = events.len();
        let r = self.request(&format!("{{\"cmd\":\"switch\",\"link\":\"{to}\"}}"))?;
        if r["ok"] != true {
            bail!("switch to {to}: {r}");
        }
        Ok(events
            .wait(n, Duration::from_secs(10), |e| {
                e["event"] == "route_changed" && e["to"] == to
            })?
            .1)
    }

    /// Waits until the agent's current link is `link`.
    pub fn wait_current(&self, link: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.request(r#"{"cmd":"status"}"#)?;
            if s["current"] == link && !s["hibernating"].as_bool().unwrap_or(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not on {link}: {s}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// curl in `ns` through `proxy`, its output checked against the origin's pattern as it comes.
pub fn curl_in(ns: &Netns, proxy: &str, args: &[&str]) -> Result<Curl> {
    let mut child = ns
        .command("curl")
        // -N: curl writes what it receives at once (buffered, its output came in steps
        // of ~19 ms, and the download's gaps could not be compared with the agent's).
        .args(["-sS", "-N", "--max-time", "170", "-x", proxy])
        .args(args)
        .args(["-o", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().context("stdout")?;
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p = progress.clone();
    let reader = std::thread::spawn(move || Download::read(out, p));
    Ok(Curl {
        child,
        reader: Some(reader),
        progress,
    })
}

/// The `q` quantile (0..1) of `v` (zero when empty).
pub fn quantile(mut v: Vec<Duration>, q: f64) -> Duration {
    v.sort();
    v.get(((v.len() as f64 - 1.0).max(0.0) * q).round() as usize)
        .copied()
        .unwrap_or_default()
}
