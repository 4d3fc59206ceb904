//! Which links are ready now: the interface exists, is up and carries the link's address.
//! Learnt from rtnetlink link and address messages (with a check every second besides, in
//! case a message is lost). Netifd and Wi-Fi drivers delete and re-create interfaces; a link
//! that is not ready waits while the others keep serving, and a re-created interface (a new
//! ifindex) is taken up again as soon as it is ready.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The ifindex of each link's interface, in config order; `None` while it is not ready.
pub type Present = Vec<Option<u32>>;

/// A link to watch: its name (for logs), interface and address.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The link's name.
    pub name: String,
    /// Its interface.
    pub interface: String,
    /// The HomeSpot's address on it.
    pub address: std::net::Ipv4Addr,
}

/// The links of `cfg`.
pub fn watched(cfg: &crate::config::Config) -> Vec<Watched> {
    cfg.links
        .iter()
        .map(|l| Watched {
            name: l.name.clone(),
            interface: l.interface.clone(),
            address: l.address,
        })
        .collect()
}

/// Looks at every link now: ready when its interface is up with the link's address.
pub fn present_now(links: &[Watched]) -> Present {
    let ready: Vec<(String, std::net::Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
                .filter_map(|a| {
                    let ip = a.address?.as_sockaddr_in()?.ip();
                    Some((a.interface_name, ip))
                })
                .collect()
        })
        .unwrap_or_default();
    links
        .iter()
        .map(|l| {
            ready
                .iter()
                .any(|(i, a)| *i == l.interface && *a == l.address)
                .then(|| index_of(&l.interface))
                .flatten()
        })
        .collect()
}

fn index_of(ifname: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(ifname)
        .ok()
        .filter(|&i| i != 0)
}

/// Watches `links` until `stop`, sending each change of [`Present`] to `tx` (and logging it).
pub async fn run(links: Vec<Watched>, tx: watch::Sender<Present>, stop: CancellationToken) {
    // Link messages from the kernel; without them, the one-second check alone.
    let mut messages = match subscribe() {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(error = %e, "cannot subscribe to rtnetlink link messages; checking interfaces every second");
            None
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            m = async {
                match messages.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => {
                if m.is_none() {
                    messages = None;
                }
            }
        }
        let now = present_now(&links);
        let old = tx.borrow().clone();
        if now == old {
            continue;
        }
        for (i, (was, is)) in old.iter().zip(&now).enumerate() {
            let (iface, link) = (&links[i].interface, &links[i].name);
            match (was, is) {
                (Some(_), None) => {
                    warn!(link = %link, interface = %iface, "interface gone (or down, or without the link's address); the link waits for it")
                }
                (None, Some(x)) => {
                    info!(link = %link, interface = %iface, ifindex = x, "interface present; serving the link")
                }
                (Some(a), Some(b)) if a != b => {
                    info!(link = %link, interface = %iface, ifindex = b, "interface re-created; serving the link again")
                }
                _ => {}
            }
        }
        let _ = tx.send(now);
    }
}

/// A message arrived (what it says does not matter: every interface is looked up again).
/// Holds the connection's handle, which keeps the connection running.
struct Messages {
    stream: futures_util::stream::BoxStream<'static, ()>,
    _handle: rtnetlink::Handle,
}

impl Messages {
    async fn next(&mut self) -> Option<()> {
        self.stream.next().await
    }
}

fn subscribe() -> std::io::Result<Messages> {
    use rtnetlink::sys::AsyncSocket as _;
    let (mut conn, handle, messages) = rtnetlink::new_connection()?;
    // RTMGRP_LINK (interfaces created, changed, deleted) and RTMGRP_IPV4_IFADDR (addresses).
    conn.socket_mut()
        .socket_mut()
        .bind(&rtnetlink::sys::SocketAddr::new(0, 0x1 | 0x10))?;
    tokio::spawn(conn);
    Ok(Messages {
        stream: messages.map(|_| ()).boxed(),
        _handle: handle,
    })
}
