//! Which links' interfaces exist now, learnt from rtnetlink link messages (with a check every
//! second besides, in case a message is lost). Netifd and Wi-Fi drivers delete and re-create
//! interfaces; a link whose interface is missing waits for it while the others keep serving,
//! and a re-created interface (a new ifindex) is taken up again within a second.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The ifindex of each link's interface, in config order; `None` while it is missing.
pub type Present = Vec<Option<u32>>;

/// Looks up every interface now.
pub fn present_now(ifaces: &[String]) -> Present {
    ifaces.iter().map(|i| index_of(i)).collect()
}

fn index_of(ifname: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(ifname)
        .ok()
        .filter(|&i| i != 0)
}

/// Watches `ifaces` until `stop`, sending each change of [`Present`] to `tx` (and logging it).
pub async fn run(
    ifaces: Vec<String>,
    names: Vec<String>,
    tx: watch::Sender<Present>,
    stop: CancellationToken,
) {
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
        let now = present_now(&ifaces);
        let old = tx.borrow().clone();
        if now == old {
            continue;
        }
        for (i, (was, is)) in old.iter().zip(&now).enumerate() {
            let (iface, link) = (&ifaces[i], &names[i]);
            match (was, is) {
                (Some(_), None) => {
                    warn!(link = %link, interface = %iface, "interface gone; the link waits for it to come back")
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
    // RTMGRP_LINK: interfaces created, changed, deleted.
    conn.socket_mut()
        .socket_mut()
        .bind(&rtnetlink::sys::SocketAddr::new(0, 1))?;
    tokio::spawn(conn);
    Ok(Messages {
        stream: messages.map(|_| ()).boxed(),
        _handle: handle,
    })
}
