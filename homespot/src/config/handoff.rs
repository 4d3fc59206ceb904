//! The `[handoff]` section: P-Handoff and Co-Link (the phandoff responder).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;

use super::duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHandoff {
    global_subnet: Option<String>,
    global_address: Option<Ipv4Addr>,
    port: Option<u16>,
    identity: Option<PathBuf>,
    advert_interval: Option<String>,
    rto_min_ms: Option<u32>,
    quickack: Option<bool>,
    expire_after: Option<String>,
    session_idle: Option<String>,
    handshake_rate: Option<u32>,
}

/// The validated `[handoff]` section; present only when a global subnet is configured.
#[derive(Debug, Clone)]
pub struct HandoffConfig {
    /// The subnet clients' stable global addresses come from.
    pub global_subnet: Ipv4Net,
    /// The HomeSpot's own global address (put on `lo`; the proxy listens there too).
    pub global_address: Ipv4Addr,
    /// The UDP port of the protocol on every link.
    pub port: u16,
    /// Where the HomeSpot's Ed25519 identity seed is kept (made on first start, mode 0600).
    pub identity: PathBuf,
    /// Period of the signed adverts on every link.
    pub advert_interval: Duration,
    /// TCP's minimum retransmission timeout on client host routes, in ms (none: kernel default).
    pub rto_min_ms: Option<u32>,
    /// TCP quick acknowledgements on client host routes.
    pub quickack: bool,
    /// A global address unused this long is taken back (default 30 days).
    pub expire_after: Duration,
    /// A session silent this long ends and its host route goes (default 3 minutes).
    pub session_idle: Duration,
    /// Handshakes a second before cookies are demanded (default 200).
    pub handshake_rate: u32,
}

impl HandoffConfig {
    /// The pool of client addresses: every host of the subnet but the HomeSpot's own.
    pub fn pool(&self) -> (Ipv4Addr, Ipv4Addr) {
        let first = u32::from(self.global_subnet.network()) + 1;
        let last = u32::from(self.global_subnet.broadcast()) - 1;
        (Ipv4Addr::from(first), Ipv4Addr::from(last))
    }
}

pub(super) fn validate(raw: RawHandoff) -> Result<Option<HandoffConfig>, (String, String)> {
    let Some(subnet) = raw.global_subnet else {
        return Ok(None);
    };
    let net: Ipv4Net = subnet.parse().map_err(|_| {
        (
            "global_subnet".to_string(),
            format!("{subnet:?} is not a subnet like 10.200.0.0/24"),
        )
    })?;
    if net.prefix_len() > 29 {
        return Err((
            "global_subnet".into(),
            "prefix must be /29 or shorter".into(),
        ));
    }
    if net.prefix_len() < 16 {
        return Err((
            "global_subnet".into(),
            format!("{net} is too large: at most a /16 (65,534 clients)"),
        ));
    }
    let net = net.trunc();
    let address = raw
        .global_address
        .unwrap_or_else(|| Ipv4Addr::from(u32::from(net.network()) + 1));
    if !net.contains(&address) || address == net.network() || address == net.broadcast() {
        return Err((
            "global_address".into(),
            format!("{address} is not a host of {net}"),
        ));
    }
    let interval = duration(raw.advert_interval.as_deref(), Duration::from_secs(1))
        .map_err(|r| ("advert_interval".to_string(), r))?;
    if interval < Duration::from_millis(100) {
        return Err(("advert_interval".into(), "must be at least 100ms".into()));
    }
    let expire_after = duration(
        raw.expire_after.as_deref(),
        Duration::from_secs(30 * 86_400),
    )
    .map_err(|r| ("expire_after".to_string(), r))?;
    if expire_after < Duration::from_secs(60) {
        return Err(("expire_after".into(), "must be at least 1m".into()));
    }
    let session_idle = duration(raw.session_idle.as_deref(), Duration::from_secs(180))
        .map_err(|r| ("session_idle".to_string(), r))?;
    if session_idle < Duration::from_secs(10) {
        return Err(("session_idle".into(), "must be at least 10s".into()));
    }
    let handshake_rate = raw.handshake_rate.unwrap_or(200);
    if handshake_rate == 0 {
        return Err(("handshake_rate".into(), "must be at least 1".into()));
    }
    Ok(Some(HandoffConfig {
        expire_after,
        session_idle,
        handshake_rate,
        global_subnet: net,
        global_address: address,
        port: raw.port.unwrap_or(phandoff::driver::PORT),
        identity: raw
            .identity
            .unwrap_or_else(|| PathBuf::from("/var/lib/homespot/identity.key")),
        advert_interval: interval,
        rto_min_ms: raw.rto_min_ms.or(Some(20)),
        quickack: raw.quickack.unwrap_or(true),
    }))
}
