//! Where the proxy may connect, checked on the addresses a name resolved to (and on IP
//! literals in every spelling): never the router's loopback, "this host" (0.0.0.0/8, ::),
//! link-local (169.254/16, fe80::/10, cloud metadata), multicast or broadcast, never the
//! HomeSpot's own addresses (its pages are served before this check), and, unless
//! `block_wan_subnet = false`, not the subnets of its WAN side; `allow_destinations` opens
//! parts of the WAN side (never the rest). A LAN client must not reach, through the proxy, what
//! only the router itself can reach.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

/// How often the router's own addresses are read again (the WAN address may change).
const REFRESH: Duration = Duration::from_secs(5);

/// The policy.
pub struct DestPolicy {
    lan: Vec<Ipv4Net>,
    allow: Vec<Ipv4Net>,
    block_wan: bool,
    local: Mutex<Option<(Instant, Local)>>,
}

#[derive(Clone, Default)]
struct Local {
    addrs: Vec<IpAddr>,
    wan: Vec<Ipv4Net>,
}

impl DestPolicy {
    /// `lan`: the link subnets and the global subnet (not WAN); `allow`: WAN-side subnets the
    /// proxy may reach anyway; `block_wan`: refuse the rest of the WAN side.
    pub fn new(lan: Vec<Ipv4Net>, allow: Vec<Ipv4Net>, block_wan: bool) -> DestPolicy {
        DestPolicy {
            lan,
            allow,
            block_wan,
            local: Mutex::new(None),
        }
    }

    fn local(&self) -> Local {
        let mut l = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, v)) = l.as_ref() {
            if at.elapsed() < REFRESH {
                return v.clone();
            }
        }
        let v = read_local(&self.lan);
        *l = Some((Instant::now(), v.clone()));
        v
    }

    /// Why `ip` may not be reached, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            v4 => v4,
        };
        let why = match ip {
            IpAddr::V4(a) if a.is_loopback() => Some("is the router's loopback"),
            IpAddr::V4(a) if a.octets()[0] == 0 => Some("is \"this host\" (0.0.0.0/8)"),
            IpAddr::V4(a) if a.is_link_local() => Some("is link-local (169.254.0.0/16)"),
            IpAddr::V4(a) if a.is_multicast() || a.is_broadcast() => {
                Some("is multicast or broadcast")
            }
            IpAddr::V6(a) if a.is_loopback() => Some("is the router's loopback"),
            IpAddr::V6(a) if a.is_unspecified() => Some("is \"this host\" (::)"),
            IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => {
                Some("is link-local (fe80::/10)")
            }
            IpAddr::V6(a) if a.is_multicast() => Some("is multicast"),
            _ => None,
        };
        if let Some(w) = why {
            return Some(format!("{ip} {w}"));
        }
        let local = self.local();
        if local.addrs.contains(&ip) {
            return Some(format!("{ip} is the HomeSpot itself"));
        }
        if let IpAddr::V4(a) = ip {
            if self.block_wan
                && !self.allow.iter().any(|n| n.contains(&a))
                && local.wan.iter().any(|n| n.contains(&a))
            {
                return Some(format!(
                    "{ip} is on the HomeSpot's WAN side (allow it with proxy.allow_destinations)"
                ));
            }
        }
        None
    }
}

/// The router's addresses, and the subnets of its interfaces that are not LAN (nor loopback).
fn read_local(lan: &[Ipv4Net]) -> Local {
    let mut out = Local::default();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for a in addrs {
        let Some(addr) = a.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            let ip = v4.ip();
            out.addrs.push(IpAddr::V4(ip));
            let prefix = a
                .netmask
                .and_then(|m| {
                    m.as_sockaddr_in()
                        .map(|m| u32::from(m.ip()).count_ones() as u8)
                })
                .unwrap_or(32);
            if let Ok(net) = Ipv4Net::new(ip, prefix) {
                let net = net.trunc();
                if !ip.is_loopback() && !lan.iter().any(|l| l.contains(&ip)) {
                    out.wan.push(net);
                }
            }
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            out.addrs.push(IpAddr::V6(v6.ip()));
        }
    }
    out
}

/// The address a URL's host names by itself, in every spelling resolvers and browsers take:
/// `[::1]`, `[::ffff:127.0.0.1]`, and inet_aton's forms (`127.1`, `0x7f.0.0.1`, `2130706433`,
/// `0177.0.0.1`). `None` for a name.
pub fn numeric_host(host: &str) -> Option<IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = bare.trim_end_matches('.').split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let n = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u64::from_str_radix(h, 16).ok()?
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else {
            p.parse::<u64>().ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    let mut v: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        if *n > 255 {
            return None;
        }
        v |= n << (24 - 8 * i);
    }
    let room = 32 - 8 * head.len() as u32;
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    v |= last;
    Some(IpAddr::V4(Ipv4Addr::from(u32::try_from(v).ok()?)))
}

/// Names that are the local host by definition (RFC 6761), whatever DNS says.
pub fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_address() {
        let ip = |s: &str| numeric_host(s);
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        for s in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "0x7f.0.0.1",
            "0x7f000001",
            "2130706433",
            "0177.0.0.1",
            "127.0.0.1.",
        ] {
            assert_eq!(ip(s), lo, "{s}");
        }
        assert_eq!(ip("[::1]"), Some("::1".parse().expect("ip")));
        assert_eq!(ip("0"), Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        for s in [
            "example.com",
            "256.0.0.1",
            "1.2.3.4.5",
            "",
            "0x",
            "08.0.0.1",
            "1.2.3.999999999",
        ] {
            assert_eq!(ip(s), None, "{s}");
        }
        assert!(is_localhost_name("LocalHost."));
        assert!(is_localhost_name("a.localhost"));
        assert!(!is_localhost_name("localhost.example"));
    }

    #[test]
    fn the_router_itself_is_refused_and_the_world_is_not() {
        let p = DestPolicy::new(vec!["10.77.1.0/24".parse().expect("net")], vec![], true);
        for s in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.169.254",
            "::1",
            "::ffff:127.0.0.1",
            "fe80::1",
            "224.0.0.1",
            "::",
        ] {
            let a: IpAddr = s.parse().expect("ip");
            assert!(p.refusal(a).is_some(), "{s}");
        }
        // (The WAN side here is the test machine's own; leave it out of this check.)
        let p = DestPolicy::new(vec!["10.77.1.0/24".parse().expect("net")], vec![], false);
        for s in ["93.184.216.34", "10.77.1.50", "2001:db8::1"] {
            let a: IpAddr = s.parse().expect("ip");
            assert_eq!(p.refusal(a), None, "{s}");
        }
    }
}
