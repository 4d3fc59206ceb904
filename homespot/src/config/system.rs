//! Checks of a valid config against the system it runs on: interfaces and their addresses,
//! ports already taken (and by which program), DNS promised to clients that nothing
//! answers, and a congestion control the kernel lacks. `--check-config` reports them all; at start, only warnings apply (a missing
//! interface is waited for).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::Config;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// homespotd cannot serve as configured.
    Error,
    /// It can, but something needs the operator's eye.
    Warning,
}

/// One finding, at a key of the config.
#[derive(Debug, Clone)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// The key at fault (`link[1].address`).
    pub key: String,
    /// What is wrong, in words.
    pub message: String,
}

/// What the config asks of this system that it does not have. With `ports`, also the ports
/// homespotd would bind (only meaningful while homespotd is not running).
pub fn check(cfg: &Config, ports: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut f = |severity, key: String, message: String| {
        out.push(Finding {
            severity,
            key,
            message,
        })
    };
    let own = own_addresses();
    for (i, l) in cfg.links.iter().enumerate() {
        let key = |k: &str| format!("link[{i}].{k}");
        match own.iter().find(|(ifname, _)| *ifname == l.interface) {
            None if !interface_exists(&l.interface) => f(
                Severity::Warning,
                key("interface"),
                format!(
                    "no interface named {:?} now; the link waits for it (the other links serve)",
                    l.interface
                ),
            ),
            _ => {
                let has = own
                    .iter()
                    .any(|(ifname, a)| *ifname == l.interface && *a == l.address);
                if !has {
                    f(
                        Severity::Error,
                        key("address"),
                        format!(
                            "{} is not an address of {} (add it there, e.g. in /etc/config/network, or fix the config)",
                            l.address, l.interface
                        ),
                    );
                }
            }
        }
        // DNS handed to clients that points at the HomeSpot itself.
        for d in &l.dns {
            let ours = own.iter().any(|(_, a)| a == d);
            if ours && !listening(Proto::Udp, 53, Some(*d)) {
                f(
                    Severity::Warning,
                    key("dns"),
                    format!(
                        "clients are told to use {d} for DNS, but nothing answers DNS there (run a resolver such as dnsmasq with --port=53 --no-dhcp-interface, or hand out another server)"
                    ),
                );
            }
        }
    }
    if let Some((host, port)) = &cfg.proxy.parent {
        if !resolves(host, *port, &cfg.proxy.dns) {
            f(
                Severity::Warning,
                "proxy.parent".into(),
                format!("{host} does not resolve now; every request will fail until it does"),
            );
        }
    }
    if ports {
        let mut seen = BTreeSet::new();
        if seen.insert((Proto::Udp, 67)) {
            if let Some(who) = holder(Proto::Udp, 67) {
                f(
                    Severity::Error,
                    "link".into(),
                    format!("UDP port 67 (DHCP) is taken by {who}; stop its DHCP service on these interfaces"),
                );
            }
        }
        if cfg.proxy.enabled {
            let mut tcp = vec![("proxy.port", cfg.proxy.port)];
            tcp.extend(cfg.proxy.pac_port.map(|p| ("proxy.pac_port", p)));
            for (key, port) in tcp {
                if let Some(who) = holder(Proto::Tcp, port) {
                    f(
                        Severity::Error,
                        key.into(),
                        format!("TCP port {port} is taken by {who}; choose another port"),
                    );
                }
            }
        }
        // At start the proxy says this itself when it binds.
        if let (true, Some(cc)) = (cfg.proxy.enabled, &cfg.proxy.congestion_control) {
            if let Err(e) = congestion_available(cc) {
                f(
                    Severity::Warning,
                    "proxy.congestion_control".into(),
                    format!(
                        "the kernel refuses {cc:?} ({e}); the proxy's client connections would use its default (OpenWrt: install kmod-tcp-bbr)"
                    ),
                );
            }
        }
        if let Some(h) = &cfg.handoff {
            if let Some(who) = holder(Proto::Udp, h.port) {
                f(
                    Severity::Error,
                    "handoff.port".into(),
                    format!("UDP port {} is taken by {who}", h.port),
                );
            }
        }
    }
    out
}

/// Whether a TCP socket may use the congestion control `name` (asking may load its module).
fn congestion_available(name: &str) -> std::io::Result<()> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_tcp_congestion(name.as_bytes())
}

fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok_and(|i| i != 0)
}

/// (interface, IPv4 address) of every address on this system.
fn own_addresses() -> Vec<(String, Ipv4Addr)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let ip = a.address?.as_sockaddr_in()?.ip();
            Some((a.interface_name, ip))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Tcp,
    Udp,
}

/// Sockets bound to `port` (on `addr` or the wildcard): their inodes, from /proc/net.
fn bound(proto: Proto, port: u16, addr: Option<Ipv4Addr>) -> Vec<u64> {
    let file = match proto {
        Proto::Tcp => "/proc/net/tcp",
        Proto::Udp => "/proc/net/udp",
    };
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (ip, p) = f.get(1)?.split_once(':')?;
            let p = u16::from_str_radix(p, 16).ok()?;
            // State 0A is LISTEN for TCP; UDP sockets are 07 (unconnected).
            let state = f.get(3)?;
            if p != port || (proto == Proto::Tcp && *state != "0A") {
                return None;
            }
            let ip = Ipv4Addr::from(u32::from_be(u32::from_str_radix(ip, 16).ok()?));
            let matches = ip.is_unspecified() || addr.is_none_or(|a| a == ip);
            matches.then(|| f.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

fn listening(proto: Proto, port: u16, addr: Option<Ipv4Addr>) -> bool {
    !bound(proto, port, addr).is_empty()
}

/// Who holds `port`: "dnsmasq (pid 812)", or "another program" when /proc does not say.
fn holder(proto: Proto, port: u16) -> Option<String> {
    let inodes = bound(proto, port, None);
    if inodes.is_empty() {
        return None;
    }
    let wanted: BTreeSet<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let procs = std::fs::read_dir("/proc").ok()?;
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if wanted.contains(&target.to_string_lossy().to_string()) {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                return Some(format!("{} (pid {pid})", comm.trim()));
            }
        }
    }
    Some("another program".into())
}

/// Whether `host` resolves now, asked the way the proxy will ask (hickory, the configured
/// servers; glibc's getaddrinfo would add its NSS code to the static binary for this one
/// question). Called before homespotd's runtime exists: a runtime of its own for 5 s at most.
fn resolves(host: &str, port: u16, servers: &[std::net::IpAddr]) -> bool {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return true;
    };
    rt.block_on(async {
        let Ok(dns) = crate::proxy::dns::Dns::new(servers) else {
            return false;
        };
        let lookup = dns.lookup(host, port);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await,
            Ok(Ok(a)) if !a.is_empty()
        )
    })
}
