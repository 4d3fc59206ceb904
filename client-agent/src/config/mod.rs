//! The agent's configuration (TOML, every key optional). A bad file is refused with the file,
//! the key and the reason. `examples/homespot-agent.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::policy::{Kind, PolicyConfig};

/// A configuration the agent refuses, with where and why.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The key at fault (`policy.order[2]`), or `(file)`.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Mobility API's Unix socket.
    pub api_socket: PathBuf,
    /// Where the client key and the discovery cache live.
    pub state_dir: PathBuf,
    /// Interfaces the agent manages; empty: every interface but `lo`.
    pub interfaces: Vec<String>,
    /// Interface kinds for links that are not a HomeSpot's (a HomeSpot's advert says its own).
    pub kinds: Vec<(String, Kind)>,
    /// Local proxy settings.
    pub proxy: ProxySettings,
    /// Discovery settings.
    pub discovery: Discovery,
    /// Link choice.
    pub policy: PolicyConfig,
    /// P-Handoff probe period of the HomeSpot link in use.
    pub probe_interval: Duration,
    /// P-Handoff probe period of the HomeSpot's other links.
    pub standby_probe_interval: Duration,
    /// Unanswered probes that declare a link dead.
    pub probe_misses: u32,
    /// Unanswered probes after which the link in use is checked against the others (dead at
    /// once if another answers; 0: never).
    pub suspect_misses: u32,
    /// Before a planned P-Handoff, how long the old radio's queue drains under a clamped
    /// window (zero: switch at once).
    pub drain: Duration,
    /// The clamped window (bytes).
    pub drain_window: u32,
    /// Bringing a HomeSpot's Bluetooth PAN up on demand.
    pub bluetooth: BluetoothSettings,
}

/// The Bluetooth PAN to a HomeSpot, through BlueZ.
#[derive(Debug, Clone)]
pub struct BluetoothSettings {
    /// Whether the agent connects a HomeSpot's Bluetooth link itself when the policy wants it.
    pub enabled: bool,
    /// The laptop's BlueZ adapter (`hci0`).
    pub adapter: String,
    /// A PAN the agent brought up is disconnected after carrying no traffic this long while
    /// another link does.
    pub idle_disconnect: Duration,
    /// Finding, pairing and connecting the HomeSpot give up after this long.
    pub connect_timeout: Duration,
}

/// The local proxy.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Where it listens (loopback only).
    pub listen: SocketAddr,
    /// How long in-flight requests wait while no link is usable.
    pub hibernate: Duration,
    /// Request bodies up to this size are kept so they can be resent after a handoff.
    pub resend_body_limit: usize,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Receive buffer of connections to a HomeSpot proxy (bytes; 0: the kernel's). It bounds
    /// what the HomeSpot has in flight to us, so a move to a slower radio does not overflow
    /// that radio's queue.
    pub homespot_rcvbuf: u32,
}

/// Discovery per link.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// How long to wait for a HomeSpot's answer to a Query.
    pub query_timeout: Duration,
    /// How long one DHCPINFORM waits for its answer.
    pub inform_timeout: Duration,
    /// DHCPINFORM attempts.
    pub inform_tries: u32,
    /// PAC sandbox bounds.
    pub pac: crate::pac::Limits,
    /// A PAC file is fetched again after this long.
    pub pac_max_age: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    discovery: RawDiscovery,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    interface: Vec<RawInterface>,
    #[serde(default)]
    bluetooth: RawBluetooth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBluetooth {
    enabled: Option<bool>,
    adapter: Option<String>,
    idle_disconnect: Option<String>,
    connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    api_socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    interfaces: Option<Vec<String>>,
    probe_interval: Option<String>,
    standby_probe_interval: Option<String>,
    probe_misses: Option<u32>,
    suspect_misses: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Option<String>,
    hibernate: Option<String>,
    resend_body_limit: Option<usize>,
    connect_timeout: Option<String>,
    homespot_rcvbuf: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    query_timeout: Option<String>,
    inform_timeout: Option<String>,
    inform_tries: Option<u32>,
    pac_budget: Option<String>,
    pac_memory: Option<usize>,
    dns_timeout: Option<String>,
    pac_max_age: Option<String>,
    dns_wpad: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    prefer_homespot: Option<bool>,
    order: Option<Vec<String>>,
    throughput_rule: Option<bool>,
    low_power: Option<String>,
    up_kbps: Option<u64>,
    sustain: Option<String>,
    idle_kbps: Option<u64>,
    idle: Option<String>,
    drain: Option<String>,
    drain_window: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: String,
    kind: String,
}

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
    fn duration(
        &self,
        key: &str,
        v: Option<&String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s).map_err(|e| {
                self.err(
                    key,
                    format!("{s:?} is not a duration ({e}); write e.g. \"250ms\" or \"30s\""),
                )
            }),
        }
    }
    fn kind(&self, key: &str, s: &str) -> Result<Kind, ConfigError> {
        Kind::parse(s).ok_or_else(|| {
            self.err(
                key,
                format!("{s:?} is not a link kind (wifi, bluetooth, ethernet, other)"),
            )
        })
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: "(file)".into(),
            reason: e.to_string(),
        })?;
        Config::parse(path, &text)
    }

    /// The defaults (what an empty file gives).
    pub fn defaults() -> Config {
        match Config::parse(Path::new("(defaults)"), "") {
            Ok(c) => c,
            Err(e) => unreachable!("the defaults are valid: {e}"),
        }
    }

    /// Validates `text`, naming `file` in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let c = Ctx { file };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| {
                    // Line and column (1-based) of where the error starts.
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("(line {line}, column {col})")
                })
                .unwrap_or_else(|| "(file)".into());
            c.err(&key, e.message().to_string())
        })?;
        let listen: SocketAddr = match &raw.proxy.listen {
            None => SocketAddr::from(([127, 0, 0, 1], 3129)),
            Some(s) => s
                .parse()
                .map_err(|_| c.err("proxy.listen", format!("{s:?} is not an address:port")))?,
        };
        if !listen.ip().is_loopback() {
            return Err(c.err(
                "proxy.listen",
                "the local proxy listens on loopback only (127.0.0.1)",
            ));
        }
        // 10 ms x 8: a link silent for 80 ms is dead even when every link is silent (the
        // HomeSpot restarting or overloaded); 5 ms x 4 took live links down on a loaded machine
        // (issue 18, BENCHMARKS.md). A silent loss of the link in use is found sooner by the
        // check against the other links (`suspect_misses`).
        let probe_misses = raw.agent.probe_misses.unwrap_or(8);
        if !(1..=100).contains(&probe_misses) {
            return Err(c.err("agent.probe_misses", "must be 1..=100"));
        }
        let suspect_misses = raw.agent.suspect_misses.unwrap_or(1.min(probe_misses - 1));
        if suspect_misses >= probe_misses {
            return Err(c.err(
                "agent.suspect_misses",
                "must be less than agent.probe_misses (0: off)",
            ));
        }
        let probe_interval = c.duration(
            "agent.probe_interval",
            raw.agent.probe_interval.as_ref(),
            Duration::from_millis(10),
        )?;
        if probe_interval < Duration::from_millis(5) {
            return Err(c.err("agent.probe_interval", "must be at least 5ms"));
        }
        let standby_probe_interval = c.duration(
            "agent.standby_probe_interval",
            raw.agent.standby_probe_interval.as_ref(),
            probe_interval.max(Duration::from_millis(50)),
        )?;
        if standby_probe_interval < probe_interval {
            return Err(c.err(
                "agent.standby_probe_interval",
                "must be at least agent.probe_interval",
            ));
        }
        let mut kinds = Vec::new();
        for (i, x) in raw.interface.iter().enumerate() {
            kinds.push((
                x.name.clone(),
                c.kind(&format!("interface[{i}].kind"), &x.kind)?,
            ));
        }
        let d = &raw.discovery;
        if d.dns_wpad == Some(true) {
            return Err(c.err(
                "discovery.dns_wpad",
                "DNS-based WPAD (wpad.<domain>) is not supported: anyone who registers that name can take your traffic",
            ));
        }
        let tries = d.inform_tries.unwrap_or(3);
        if !(1..=10).contains(&tries) {
            return Err(c.err("discovery.inform_tries", "must be 1..=10"));
        }
        let pac = crate::pac::Limits {
            budget: c.duration(
                "discovery.pac_budget",
                d.pac_budget.as_ref(),
                Duration::from_millis(200),
            )?,
            memory: d.pac_memory.unwrap_or(crate::pac::DEFAULT_MEMORY),
            dns_timeout: c.duration(
                "discovery.dns_timeout",
                d.dns_timeout.as_ref(),
                Duration::from_secs(1),
            )?,
            lookup: crate::pac::dns::os_lookup,
        };
        if pac.memory < (1 << 20) {
            return Err(c.err("discovery.pac_memory", "must be at least 1 MiB (1048576)"));
        }
        let p = &raw.policy;
        let mut order = Vec::new();
        for (i, o) in p
            .order
            .clone()
            .unwrap_or_else(|| vec!["ethernet".into(), "wifi".into(), "bluetooth".into()])
            .into_iter()
            .enumerate()
        {
            if o.is_empty() {
                return Err(c.err(&format!("policy.order[{i}]"), "empty name"));
            }
            order.push(o);
        }
        let policy = PolicyConfig {
            prefer_homespot: p.prefer_homespot.unwrap_or(true),
            order,
            throughput_rule: p.throughput_rule.unwrap_or(true),
            low_power: c.kind(
                "policy.low_power",
                p.low_power.as_deref().unwrap_or("bluetooth"),
            )?,
            up_bps: p.up_kbps.unwrap_or(1000) * 1000,
            sustain: c.duration("policy.sustain", p.sustain.as_ref(), Duration::from_secs(2))?,
            idle_bps: p.idle_kbps.unwrap_or(50) * 1000,
            idle: c.duration("policy.idle", p.idle.as_ref(), Duration::from_secs(10))?,
        };
        if policy.idle_bps >= policy.up_bps {
            return Err(c.err("policy.idle_kbps", "must be below policy.up_kbps"));
        }
        let drain = c.duration("policy.drain", p.drain.as_ref(), Duration::from_millis(600))?;
        let drain_window = p.drain_window.unwrap_or(16 * 1024);
        if drain_window < 4096 {
            return Err(c.err("policy.drain_window", "must be at least 4096 bytes"));
        }
        let b = &raw.bluetooth;
        let adapter = b.adapter.clone().unwrap_or_else(|| "hci0".into());
        if adapter.is_empty()
            || adapter.len() > 15
            || !adapter.chars().all(|ch| ch.is_ascii_alphanumeric())
        {
            return Err(c.err(
                "bluetooth.adapter",
                format!("{adapter:?} is not a BlueZ adapter name (like \"hci0\")"),
            ));
        }
        let bluetooth = BluetoothSettings {
            enabled: b.enabled.unwrap_or(true),
            adapter,
            idle_disconnect: c.duration(
                "bluetooth.idle_disconnect",
                b.idle_disconnect.as_ref(),
                Duration::from_secs(60),
            )?,
            connect_timeout: c.duration(
                "bluetooth.connect_timeout",
                b.connect_timeout.as_ref(),
                Duration::from_secs(30),
            )?,
        };
        if bluetooth.connect_timeout < Duration::from_secs(1) {
            return Err(c.err("bluetooth.connect_timeout", "must be at least 1s"));
        }
        Ok(Config {
            bluetooth,
            api_socket: raw
                .agent
                .api_socket
                .unwrap_or_else(|| "/run/homespot-agent.sock".into()),
            state_dir: raw
                .agent
                .state_dir
                .unwrap_or_else(|| "/var/lib/homespot-agent".into()),
            interfaces: raw.agent.interfaces.unwrap_or_default(),
            kinds,
            proxy: ProxySettings {
                listen,
                hibernate: c.duration(
                    "proxy.hibernate",
                    raw.proxy.hibernate.as_ref(),
                    Duration::from_secs(30),
                )?,
                resend_body_limit: raw.proxy.resend_body_limit.unwrap_or(16 << 20),
                homespot_rcvbuf: raw.proxy.homespot_rcvbuf.unwrap_or(0),
                connect_timeout: c.duration(
                    "proxy.connect_timeout",
                    raw.proxy.connect_timeout.as_ref(),
                    Duration::from_secs(3),
                )?,
            },
            discovery: Discovery {
                query_timeout: c.duration(
                    "discovery.query_timeout",
                    d.query_timeout.as_ref(),
                    Duration::from_millis(50),
                )?,
                inform_timeout: c.duration(
                    "discovery.inform_timeout",
                    d.inform_timeout.as_ref(),
                    Duration::from_millis(500),
                )?,
                inform_tries: tries,
                pac,
                pac_max_age: c.duration(
                    "discovery.pac_max_age",
                    d.pac_max_age.as_ref(),
                    Duration::from_secs(3600),
                )?,
            },
            policy,
            probe_interval,
            standby_probe_interval,
            probe_misses,
            suspect_misses,
            drain,
            drain_window,
        })
    }

    /// The configured kind of a non-HomeSpot interface.
    pub fn kind_of(&self, ifname: &str) -> Kind {
        self.kinds
            .iter()
            .find(|(n, _)| n == ifname)
            .map(|(_, k)| *k)
            .unwrap_or(Kind::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_file_key_reason() {
        let d = Config::defaults();
        assert_eq!(d.proxy.listen.port(), 3129);
        assert_eq!(d.proxy.hibernate, Duration::from_secs(30));
        let bad = |t: &str| {
            Config::parse(Path::new("a.toml"), t)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad("[proxy]\nlisten = \"0.0.0.0:3129\"").starts_with("a.toml: proxy.listen: "));
        assert!(bad("[policy]\nsustain = \"soon\"").starts_with("a.toml: policy.sustain: "));
        assert!(bad("[[interface]]\nname = \"eth2\"\nkind = \"radio\"")
            .starts_with("a.toml: interface[0].kind: "));
        assert!(bad("[discovery]\ndns_wpad = true").contains("discovery.dns_wpad"));
        assert!(bad("[agent]\nfoo = 1").contains("unknown field"));
        assert!(bad("[bluetooth]\nadapter = \"../x\"").starts_with("a.toml: bluetooth.adapter: "));
        assert!(bad("[bluetooth]\nidle_disconnect = \"x\"")
            .starts_with("a.toml: bluetooth.idle_disconnect: "));
        assert_eq!(d.bluetooth.adapter, "hci0");
        assert_eq!(d.bluetooth.idle_disconnect, Duration::from_secs(60));
        let ok = Config::parse(
            Path::new("x"),
            "[[interface]]\nname = \"eth2\"\nkind = \"wifi\"\n",
        )
        .expect("valid");
        assert_eq!(ok.kind_of("eth2"), Kind::Wifi);
    }

    #[test]
    fn the_example_file_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/homespot-agent.toml");
        Config::load(&p).expect("example config");
    }
}
