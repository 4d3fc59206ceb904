//! The `[proxy]` section: the HTTP proxy and the PAC file it serves.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    enabled: Option<bool>,
    port: Option<u16>,
    pac_port: Option<u16>,
    connect_ports: Option<Vec<u16>>,
    parent: Option<String>,
    dns: Option<Vec<IpAddr>>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    connect_timeout: Option<String>,
    response_timeout: Option<String>,
    body_idle_timeout: Option<String>,
    max_connections: Option<usize>,
    max_link_share: Option<usize>,
    max_connections_per_client: Option<usize>,
    max_request_line: Option<usize>,
    max_header_bytes: Option<usize>,
    allow_destinations: Option<Vec<String>>,
    block_wan_subnet: Option<bool>,
    congestion_control: Option<String>,
}

/// The validated `[proxy]` section.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Whether to run the proxy at all.
    pub enabled: bool,
    /// The proxy port on every LAN link address.
    pub port: u16,
    /// A second port that serves only the HomeSpot's own pages (`/wpad.dat`); `None` for none.
    pub pac_port: Option<u16>,
    /// Ports CONNECT may reach.
    pub connect_ports: Vec<u16>,
    /// A parent proxy (`host:port`) that every plain-HTTP request is sent through.
    pub parent: Option<(String, u16)>,
    /// DNS servers for upstream names; empty: the system's (/etc/resolv.conf).
    pub dns: Vec<IpAddr>,
    /// A request head must be complete within this long, counted from when the proxy starts
    /// waiting for it; so it is also how long an idle keep-alive client connection is kept.
    pub header_timeout: Duration,
    /// How long an idle CONNECT tunnel (no byte either way) or pooled upstream connection
    /// is kept.
    pub idle_timeout: Duration,
    /// Upstream TCP connect timeout (504 after it).
    pub connect_timeout: Duration,
    /// How long the origin may take to send its response head once the request is sent
    /// (504 after it).
    pub response_timeout: Duration,
    /// How long a request or response body may go without a byte before it is cut.
    pub body_idle_timeout: Duration,
    /// Client connections at once, in all.
    pub max_connections: usize,
    /// Client connections at once from one device (its hardware address on the link, or its
    /// address where the neighbour table does not know it).
    pub max_connections_per_client: usize,
    /// The share of `max_connections` (percent) the devices of one link may hold together.
    pub max_link_share: usize,
    /// Longest request target, in bytes (414 past it).
    pub max_request_line: usize,
    /// Largest request head, in bytes (431 past it).
    pub max_header_bytes: usize,
    /// WAN-side subnets the proxy may reach although `block_wan_subnet` is on.
    pub allow_destinations: Vec<ipnet::Ipv4Net>,
    /// Refuse destinations on the HomeSpot's WAN-side subnets (default true).
    pub block_wan_subnet: bool,
    /// The TCP congestion control of the proxy's client connections (`None`: the kernel's
    /// default).
    pub congestion_control: Option<String>,
}

pub(super) fn validate(raw: RawProxy) -> Result<ProxyConfig, (String, String)> {
    let d = |v: Option<String>, default: u64, key: &str| {
        duration(v.as_deref(), Duration::from_secs(default)).map_err(|r| (key.to_string(), r))
    };
    let port = raw.port.unwrap_or(3128);
    if port == 0 {
        return Err(("port".into(), "must not be 0".into()));
    }
    let pac_port = match raw.pac_port.unwrap_or(80) {
        0 => None,
        p if p == port => {
            return Err((
                "pac_port".into(),
                "must differ from port (or be 0 for none)".into(),
            ))
        }
        p => Some(p),
    };
    let connect_ports = raw.connect_ports.unwrap_or_else(|| vec![443]);
    if connect_ports.contains(&0) {
        return Err(("connect_ports".into(), "0 is not a port".into()));
    }
    let parent = match raw.parent {
        None => None,
        Some(p) => Some(parent_host_port(&p).map_err(|r| ("parent".to_string(), r))?),
    };
    let limit = |v: Option<usize>, default: usize, min: usize, max: usize, key: &str| {
        let v = v.unwrap_or(default);
        if v < min || v > max {
            return Err((key.to_string(), format!("must be between {min} and {max}")));
        }
        Ok(v)
    };
    let mut allow_destinations = Vec::new();
    for a in raw.allow_destinations.unwrap_or_default() {
        let net: ipnet::Ipv4Net = a
            .parse()
            .or_else(|_| a.parse::<std::net::Ipv4Addr>().map(ipnet::Ipv4Net::from))
            .map_err(|_| {
                (
                    "allow_destinations".to_string(),
                    format!("{a:?} is not an IPv4 subnet like 10.0.0.0/24 or an address"),
                )
            })?;
        allow_destinations.push(net.trunc());
    }
    let congestion_control = match raw.congestion_control.as_deref() {
        None => Some("bbr".to_string()),
        Some("system") => None,
        Some(name) => {
            Some(congestion_name(name).map_err(|r| ("congestion_control".to_string(), r))?)
        }
    };
    Ok(ProxyConfig {
        congestion_control,
        allow_destinations,
        block_wan_subnet: raw.block_wan_subnet.unwrap_or(true),
        enabled: raw.enabled.unwrap_or(true),
        port,
        pac_port,
        connect_ports,
        parent,
        dns: raw.dns.unwrap_or_default(),
        header_timeout: d(raw.header_timeout, 10, "header_timeout")?,
        idle_timeout: d(raw.idle_timeout, 300, "idle_timeout")?,
        connect_timeout: d(raw.connect_timeout, 5, "connect_timeout")?,
        response_timeout: d(raw.response_timeout, 60, "response_timeout")?,
        body_idle_timeout: d(raw.body_idle_timeout, 60, "body_idle_timeout")?,
        max_connections: limit(raw.max_connections, 2048, 1, 1 << 20, "max_connections")?,
        max_link_share: limit(raw.max_link_share, 75, 1, 100, "max_link_share")?,
        max_connections_per_client: limit(
            raw.max_connections_per_client,
            256,
            1,
            1 << 20,
            "max_connections_per_client",
        )?,
        max_request_line: limit(raw.max_request_line, 8192, 256, 65_000, "max_request_line")?,
        max_header_bytes: limit(
            raw.max_header_bytes,
            16_384,
            1024,
            262_144,
            "max_header_bytes",
        )?,
    })
}

/// A congestion control's name as the kernel spells it (`bbr`, `cubic`; at most 15 bytes).
fn congestion_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!(
            "{name:?} is not a congestion control name like \"bbr\" or \"cubic\" (or \"system\" for the kernel's default)"
        ));
    }
    Ok(name.to_string())
}

/// `host:port`, or `http://host:port` (a trailing `/` allowed), with a host that is an IPv4
/// address or a DNS name.
fn parent_host_port(p: &str) -> Result<(String, u16), String> {
    let bare = match p.split_once("://") {
        Some(("http", rest)) => rest.trim_end_matches('/'),
        Some((scheme, _)) => {
            return Err(format!(
            "{p:?}: a parent proxy is spoken to in plain HTTP; write host:port (not {scheme}://)"
        ))
        }
        None => p,
    };
    let (host, port) = bare
        .rsplit_once(':')
        .ok_or_else(|| format!("{p:?} is not host:port, e.g. \"proxy.isp.example:3128\""))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&n| n != 0)
        .ok_or_else(|| format!("{p:?}: {port:?} is not a port"))?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !name_ok {
        return Err(format!(
            "{p:?}: {host:?} is not a host name or IPv4 address"
        ));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::parent_host_port;

    #[test]
    fn parent_shapes() {
        assert_eq!(
            parent_host_port("proxy.isp.example:3128"),
            Ok(("proxy.isp.example".into(), 3128))
        );
        assert_eq!(
            parent_host_port("http://10.0.0.1:8080/"),
            Ok(("10.0.0.1".into(), 8080))
        );
        for bad in [
            "https://p:1",
            "p",
            "p:0",
            "p:x",
            "bad_name:80",
            ":80",
            "a..b:80",
        ] {
            assert!(parent_host_port(bad).is_err(), "{bad}");
        }
    }
}
