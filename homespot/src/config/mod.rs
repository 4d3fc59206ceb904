//! Configuration: raw TOML structs, validated into a [`Config`].
//!
//! A bad config is refused with the file, the key and the reason (`ConfigError`). Validation
//! that needs the running system (does the interface exist?) is a separate step,
//! [`system::check`], so unit tests can validate files without real interfaces.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;

pub mod admin;
pub mod diff;
mod handoff;
mod lines;
mod proxy;
pub mod system;
pub mod uci;
pub use admin::AdminConfig;
pub use handoff::HandoffConfig;
pub use proxy::ProxyConfig;

/// A configuration the daemon refuses, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {key}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// The line the key is on (1-based), when the file has it.
    pub line: Option<usize>,
    /// The key at fault, as a TOML path (`link[1].pools[0]`), or `(file)` for the file itself.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    link: Vec<RawLink>,
    #[serde(default)]
    proxy: proxy::RawProxy,
    #[serde(default)]
    handoff: handoff::RawHandoff,
    #[serde(default)]
    admin: admin::RawAdmin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    lease_db: Option<PathBuf>,
    decline_quarantine: Option<String>,
    offer_hold: Option<String>,
    worker_threads: Option<usize>,
    relays: Option<Vec<Ipv4Addr>>,
    status_socket: Option<PathBuf>,
    rate_per_client: Option<u32>,
    rate_per_link: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    name: String,
    interface: String,
    address: String,
    pools: Vec<String>,
    lease_time: Option<String>,
    router: Option<Ipv4Addr>,
    #[serde(default)]
    dns: Vec<Ipv4Addr>,
    domain: Option<String>,
    wpad_url: Option<String>,
    #[serde(default)]
    wpad_always: bool,
    #[serde(default)]
    reservations: Vec<RawReservation>,
    kind: Option<String>,
    l2_id: Option<String>,
    rate_mbps: Option<f64>,
    bluez_adapter: Option<String>,
    pairing: Option<String>,
    pairing_window: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReservation {
    mac: Option<String>,
    client_id: Option<String>,
    address: Ipv4Addr,
}

/// The validated configuration of homespotd.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where leases are kept (a redb file).
    pub lease_db: PathBuf,
    /// How long a DECLINEd address is kept out of the pool.
    pub decline_quarantine: Duration,
    /// How long an OFFERed address is held for the client before others may get it.
    pub offer_hold: Duration,
    /// Threads running the event loop (1: a single-threaded loop, as on a small router).
    pub worker_threads: usize,
    /// The Unix socket `homespotd status` reads (root only).
    pub status_socket: PathBuf,
    /// DHCP relay agents whose relayed packets (giaddr set) are taken; all others are
    /// refused.
    pub relays: Vec<Ipv4Addr>,
    /// DHCP packets a second taken from one client (hardware address), with twice that as
    /// a burst.
    pub rate_per_client: u32,
    /// DHCP packets a second taken on one link from clients without a lease there, with
    /// twice that as a burst.
    pub rate_per_link: u32,
    /// The LAN links, in file order. At least one.
    pub links: Vec<LinkConfig>,
    /// The HTTP proxy and PAC server.
    pub proxy: ProxyConfig,
    /// P-Handoff and Co-Link, when a global subnet is configured.
    pub handoff: Option<HandoffConfig>,
    /// The web admin panel.
    pub admin: AdminConfig,
}

/// One LAN link (a radio or an Ethernet port) with its own subnet and pool.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// A short name for logs.
    pub name: String,
    /// The network interface the link is on.
    pub interface: String,
    /// The HomeSpot's address on this link; also the DHCP server identifier.
    pub address: Ipv4Addr,
    /// The link's subnet (from `address`'s prefix).
    pub subnet: Ipv4Net,
    /// Inclusive address ranges handed out dynamically.
    pub pools: Vec<PoolRange>,
    /// Lease time given to clients.
    pub lease_time: Duration,
    /// Default router (option 3).
    pub router: Ipv4Addr,
    /// DNS servers (option 6); empty sends none.
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15).
    pub domain: Option<String>,
    /// WPAD URL (option 252); `None` sends none.
    pub wpad_url: Option<String>,
    /// Send option 252 even when the client did not ask for it.
    pub wpad_always: bool,
    /// Fixed addresses for known clients.
    pub reservations: Vec<Reservation>,
    /// What kind of radio or port it is (advertised by Co-Link).
    pub kind: phandoff::wire::LinkKind,
    /// Its L2 identity (SSID bytes, or a Bluetooth address), advertised by Co-Link.
    pub l2_id: Vec<u8>,
    /// BlueZ's PAN NAP on this link (a `bluetooth` link with `bluez_adapter`).
    pub bluez: Option<BluezConfig>,
    /// What the link carries (bytes per second), if configured: a client's proxy connections
    /// moved onto it by P-Handoff are paced at no more than this while they settle.
    pub rate: Option<u64>,
}

/// A Bluetooth link served as BlueZ's PAN NAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BluezConfig {
    /// The adapter (`hci0`).
    pub adapter: String,
    /// Who may pair.
    pub pairing: Pairing,
}

/// The pairing policy of a BlueZ link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Anyone, for `window` after `homespotd bluetooth pair` (the adapter is discoverable
    /// only then).
    Button {
        /// How long the window stays open.
        window: Duration,
    },
    /// Only devices paired and trusted before (for example with `bluetoothctl`).
    TrustedOnly,
}

/// An inclusive range of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolRange {
    /// First address of the range.
    pub first: Ipv4Addr,
    /// Last address of the range (inclusive).
    pub last: Ipv4Addr,
}

impl PoolRange {
    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.first <= addr && addr <= self.last
    }

    /// The addresses of the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

/// Who a reservation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservedFor {
    /// A hardware (MAC) address, matched against chaddr.
    Mac([u8; 6]),
    /// A client identifier (option 61), matched byte for byte.
    ClientId(Vec<u8>),
}

/// A static address for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The client.
    pub client: ReservedFor,
    /// Its address; inside the link's subnet.
    pub address: Ipv4Addr,
}

const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(12 * 3600);
const DEFAULT_QUARANTINE: Duration = Duration::from_secs(600);
const DEFAULT_OFFER_HOLD: Duration = Duration::from_secs(60);
/// Where `homespotd status` finds the running daemon unless the config says otherwise.
pub const DEFAULT_STATUS_SOCKET: &str = "/run/homespot/status.sock";

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        if uci::looks_like_uci(&text) {
            return uci::parse_config(path, &text);
        }
        Config::parse(path, &text)
    }

    /// Validates TOML `text`; `path` is used in error messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::validate(path, text).map_err(|mut e| {
            if e.line.is_none() {
                e.line = lines::line_of(text, &e.key);
            }
            e
        })
    }

    fn validate(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: key.to_string(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let reason = e.message().to_string();
            // The line the offending text starts on (1-based).
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let key = reason
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .map_or_else(|| "(syntax)".to_string(), |k| k.to_string());
            ConfigError {
                file: path.to_path_buf(),
                line,
                key,
                reason,
            }
        })?;

        let lease_db = raw
            .server
            .lease_db
            .unwrap_or_else(|| PathBuf::from("/var/lib/homespot/leases.redb"));
        let decline_quarantine =
            duration(raw.server.decline_quarantine.as_deref(), DEFAULT_QUARANTINE)
                .map_err(|r| err("server.decline_quarantine", r))?;
        let offer_hold = duration(raw.server.offer_hold.as_deref(), DEFAULT_OFFER_HOLD)
            .map_err(|r| err("server.offer_hold", r))?;

        let worker_threads = raw.server.worker_threads.unwrap_or(1);
        if !(1..=64).contains(&worker_threads) {
            return Err(err(
                "server.worker_threads",
                "must be between 1 and 64".into(),
            ));
        }
        let status_socket = raw
            .server
            .status_socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATUS_SOCKET));
        let relays = raw.server.relays.unwrap_or_default();
        if let Some(bad) = relays
            .iter()
            .find(|a| a.is_unspecified() || a.is_broadcast())
        {
            return Err(err(
                "server.relays",
                format!("{bad} is not a relay agent's address"),
            ));
        }
        let rate = |v: Option<u32>, default: u32, key: &str| {
            let v = v.unwrap_or(default);
            if (1..=100_000).contains(&v) {
                Ok(v)
            } else {
                Err(err(key, "must be between 1 and 100000".into()))
            }
        };
        let rate_per_client = rate(raw.server.rate_per_client, 10, "server.rate_per_client")?;
        let rate_per_link = rate(raw.server.rate_per_link, 1000, "server.rate_per_link")?;
        let proxy = proxy::validate(raw.proxy).map_err(|(k, r)| err(&format!("proxy.{k}"), r))?;
        // A link's default WPAD URL points at the port that serves the PAC file.
        let pac_port = match (proxy.enabled, proxy.pac_port) {
            (false, _) | (true, Some(80)) => String::new(),
            (true, Some(p)) => format!(":{p}"),
            (true, None) => format!(":{}", proxy.port),
        };
        if raw.link.is_empty() {
            return Err(err("link", "at least one [[link]] is needed".into()));
        }
        let mut links: Vec<LinkConfig> = Vec::with_capacity(raw.link.len());
        for (i, rl) in raw.link.into_iter().enumerate() {
            let at = |k: &str| format!("link[{i}].{k}");
            let link = validate_link(rl, &at, &pac_port).map_err(|(k, r)| err(&k, r))?;
            for (j, other) in links.iter().enumerate() {
                if other.name == link.name {
                    return Err(err(&at("name"), format!("same name as link[{j}]")));
                }
                if other.interface == link.interface {
                    return Err(err(
                        &at("interface"),
                        format!("same interface as link[{j}]"),
                    ));
                }
                if other.subnet.contains(&link.subnet.network())
                    || link.subnet.contains(&other.subnet.network())
                {
                    return Err(err(
                        &at("address"),
                        format!(
                            "subnet {} overlaps link[{j}]'s {}",
                            link.subnet, other.subnet
                        ),
                    ));
                }
            }
            links.push(link);
        }
        let handoff =
            handoff::validate(raw.handoff).map_err(|(k, r)| err(&format!("handoff.{k}"), r))?;
        let admin = admin::validate(raw.admin, &proxy, &lease_db)
            .map_err(|(k, r)| err(&format!("admin.{k}"), r))?;
        if let Some(h) = &handoff {
            for (i, l) in links.iter().enumerate() {
                if l.subnet.contains(&h.global_subnet.network())
                    || h.global_subnet.contains(&l.subnet.network())
                {
                    return Err(err(
                        "handoff.global_subnet",
                        format!("overlaps link[{i}]'s subnet {}", l.subnet),
                    ));
                }
                if l.wpad_url
                    .as_ref()
                    .is_some_and(|u| u.len() > phandoff::wire::MAX_URL)
                {
                    return Err(err(
                        &format!("link[{i}].wpad_url"),
                        format!(
                            "longer than {} bytes, too long for a Co-Link advert",
                            phandoff::wire::MAX_URL
                        ),
                    ));
                }
            }
        }
        Ok(Config {
            lease_db,
            decline_quarantine,
            offer_hold,
            worker_threads,
            relays,
            status_socket,
            rate_per_client,
            rate_per_link,
            links,
            proxy,
            handoff,
            admin,
        })
    }
}

type KeyReason = (String, String);

fn validate_link(
    rl: RawLink,
    at: &dyn Fn(&str) -> String,
    pac_port: &str,
) -> Result<LinkConfig, KeyReason> {
    if rl.name.is_empty() || rl.name.len() > 32 {
        return Err((at("name"), "must be 1 to 32 characters".into()));
    }
    if rl.interface.is_empty() || rl.interface.len() > 15 || rl.interface.contains('/') {
        return Err((at("interface"), "not a valid interface name".into()));
    }
    let net: Ipv4Net = rl.address.parse().map_err(|_| {
        (
            at("address"),
            format!(
                "{:?} is not an address with prefix, like 10.42.1.1/24",
                rl.address
            ),
        )
    })?;
    if net.prefix_len() > 30 {
        return Err((at("address"), "prefix must be /30 or shorter".into()));
    }
    let address = net.addr();
    let subnet = net.trunc();
    if address == subnet.network() || address == subnet.broadcast() {
        return Err((
            at("address"),
            "is the subnet's network or broadcast address".into(),
        ));
    }
    if rl.pools.is_empty() {
        return Err((at("pools"), "at least one pool range is needed".into()));
    }
    let mut pools: Vec<PoolRange> = Vec::new();
    for (j, p) in rl.pools.iter().enumerate() {
        let key = at(&format!("pools[{j}]"));
        let range = parse_range(p).ok_or_else(|| {
            (
                key.clone(),
                format!("{p:?} is not a range like 10.42.1.100-10.42.1.199"),
            )
        })?;
        let inside =
            |a: Ipv4Addr| subnet.contains(&a) && a != subnet.network() && a != subnet.broadcast();
        if !inside(range.first) || !inside(range.last) {
            return Err((
                key,
                format!("range {p} is outside the link's subnet {subnet}"),
            ));
        }
        if range.contains(address) {
            return Err((
                key,
                format!("range {p} contains the HomeSpot's own address"),
            ));
        }
        for (k, other) in pools.iter().enumerate() {
            if range.first <= other.last && other.first <= range.last {
                return Err((key, format!("range {p} overlaps pools[{k}]")));
            }
        }
        pools.push(range);
    }
    let lease_time = duration(rl.lease_time.as_deref(), DEFAULT_LEASE_TIME)
        .map_err(|r| (at("lease_time"), r))?;
    if lease_time < Duration::from_secs(10) || lease_time.as_secs() > u64::from(u32::MAX - 1) {
        return Err((
            at("lease_time"),
            "must be between 10 seconds and 136 years".into(),
        ));
    }
    let wpad_url = match rl.wpad_url {
        None => Some(format!("http://{address}{pac_port}/wpad.dat")),
        Some(s) if s.is_empty() => None,
        Some(s) => {
            check_url(&s).map_err(|r| (at("wpad_url"), r))?;
            Some(s)
        }
    };
    if let Some(d) = &rl.domain {
        if d.is_empty()
            || d.len() > 253
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err((at("domain"), format!("{d:?} is not a domain name")));
        }
    }
    let mut reservations = Vec::new();
    for (j, r) in rl.reservations.into_iter().enumerate() {
        let key = |k: &str| at(&format!("reservations[{j}].{k}"));
        let client = match (r.mac, r.client_id) {
            (Some(m), None) => ReservedFor::Mac(
                parse_mac(&m).ok_or_else(|| (key("mac"), format!("{m:?} is not a MAC address")))?,
            ),
            (None, Some(c)) => ReservedFor::ClientId(parse_hex(&c).ok_or_else(|| {
                (
                    key("client_id"),
                    format!("{c:?} is not hex bytes like 01:02:0a"),
                )
            })?),
            _ => {
                return Err((
                    at(&format!("reservations[{j}]")),
                    "give exactly one of mac or client_id".into(),
                ))
            }
        };
        if !subnet.contains(&r.address) || r.address == address {
            return Err((
                key("address"),
                format!("{} is not a client address of {subnet}", r.address),
            ));
        }
        if reservations
            .iter()
            .any(|x: &Reservation| x.address == r.address || x.client == client)
        {
            return Err((
                key("address"),
                "reservation repeats an address or a client".into(),
            ));
        }
        reservations.push(Reservation {
            client,
            address: r.address,
        });
    }
    let kind = match rl.kind.as_deref().unwrap_or("ethernet") {
        "wifi" => phandoff::wire::LinkKind::Wifi,
        "bluetooth" => phandoff::wire::LinkKind::Bluetooth,
        "ethernet" => phandoff::wire::LinkKind::Ethernet,
        other => {
            return Err((
                at("kind"),
                format!("{other:?} is not wifi, bluetooth or ethernet"),
            ))
        }
    };
    let l2_id = match (&kind, rl.l2_id) {
        (_, None) => Vec::new(),
        (phandoff::wire::LinkKind::Bluetooth, Some(m)) => parse_mac(&m)
            .map(|m| m.to_vec())
            .ok_or_else(|| (at("l2_id"), format!("{m:?} is not a Bluetooth address")))?,
        (_, Some(s)) if s.len() <= phandoff::wire::MAX_L2_ID => s.into_bytes(),
        (_, Some(_)) => {
            return Err((
                at("l2_id"),
                format!("longer than {} bytes", phandoff::wire::MAX_L2_ID),
            ))
        }
    };
    let rate = match rl.rate_mbps {
        None => None,
        Some(r) if r.is_finite() && r > 0.0 && r <= 100_000.0 => Some((r * 125_000.0) as u64),
        Some(r) => {
            return Err((
                at("rate_mbps"),
                format!("{r} is not a rate between 0 and 100000 Mbit/s"),
            ))
        }
    };
    let bluez = match rl.bluez_adapter {
        None => {
            if rl.pairing.is_some() || rl.pairing_window.is_some() {
                return Err((at("pairing"), "needs bluez_adapter".into()));
            }
            None
        }
        Some(_) if kind != phandoff::wire::LinkKind::Bluetooth => {
            return Err((
                at("bluez_adapter"),
                "only a kind = \"bluetooth\" link is served by BlueZ".into(),
            ))
        }
        Some(a) => {
            let ok = a.strip_prefix("hci").is_some_and(|n| {
                !n.is_empty() && n.len() <= 3 && n.bytes().all(|c| c.is_ascii_digit())
            });
            if !ok {
                return Err((
                    at("bluez_adapter"),
                    format!("{a:?} is not an adapter like hci0"),
                ));
            }
            let window = duration(rl.pairing_window.as_deref(), Duration::from_secs(120))
                .map_err(|r| (at("pairing_window"), r))?;
            if !(Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&window) {
                return Err((
                    at("pairing_window"),
                    "must be between 10 seconds and 1 hour".into(),
                ));
            }
            let pairing = match rl.pairing.as_deref().unwrap_or("button") {
                "button" => Pairing::Button { window },
                "trusted" => Pairing::TrustedOnly,
                other => {
                    return Err((
                        at("pairing"),
                        format!("{other:?} is not \"button\" or \"trusted\""),
                    ))
                }
            };
            Some(BluezConfig {
                adapter: a,
                pairing,
            })
        }
    };
    Ok(LinkConfig {
        kind,
        l2_id,
        rate,
        bluez,
        name: rl.name,
        interface: rl.interface,
        address,
        subnet,
        pools,
        lease_time,
        router: rl.router.unwrap_or(address),
        dns: rl.dns,
        domain: rl.domain,
        wpad_url,
        wpad_always: rl.wpad_always,
        reservations,
    })
}

pub(crate) fn duration(s: Option<&str>, default: Duration) -> Result<Duration, String> {
    match s {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| format!("{s:?}: {e} (write e.g. \"12h\" or \"90s\")")),
    }
}

fn parse_range(s: &str) -> Option<PoolRange> {
    let (a, b) = s.split_once('-')?;
    let first: Ipv4Addr = a.trim().parse().ok()?;
    let last: Ipv4Addr = b.trim().parse().ok()?;
    (first <= last).then_some(PoolRange { first, last })
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v = parse_hex(s)?;
    v.try_into().ok()
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let v: Option<Vec<u8>> = s
        .split([':', '-'])
        .map(|p| {
            (p.len() == 2)
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect();
    v.filter(|v| !v.is_empty() && v.len() <= 64)
}

fn check_url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?} must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{s:?} has no host"));
    }
    if s.len() > 255 {
        return Err("longer than 255 bytes, too long for a DHCP option".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{s:?} has spaces or non-ASCII characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
