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
    Ok(Some(HandoffConfig {
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
