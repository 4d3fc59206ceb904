//! P-Handoff and Co-Link in homespotd: the phandoff responder on every LAN link, with the
//! HomeSpot's persisted identity, client global addresses kept in redb, and host routes
//! programmed through rtnetlink.
//!
//! At start ([`prepare`]): the global address goes on `lo` (the proxy listens there too), the
//! identity is loaded (or made, mode 0600), a UDP socket is bound on each link, and
//! reverse-path filtering is set loose on the links (packets of the old link still arrive
//! after a switch). While running ([`run`]): each `Route` event replaces the client's /32
//! route, each new assignment is written before it is used again. On shutdown the routes it
//! installed are removed and `rp_filter` is restored.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use phandoff::crypto::Identity;
use phandoff::driver::{run_responder, LinkSocket};
use phandoff::responder::{Counters, Event, Responder, ResponderConfig};
use phandoff::routes::{self, ifindex, HostRoute, Netlink, RouteProgrammer};
use phandoff::wire::{LinkInfo, LinkKind};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, HandoffConfig};
use crate::store::LeaseStore;

/// Why P-Handoff could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoffError {
    /// The identity file could not be read or made.
    #[error("identity {path}: {reason}")]
    Identity {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A socket, route, address or sysctl operation failed.
    #[error("{0}")]
    System(String),
}

/// Everything bound and set up, ready to [`run`].
pub struct Prepared {
    cfg: HandoffConfig,
    identity: Identity,
    sockets: Vec<LinkSocket>,
    netlink: Netlink,
    rp_restore: Vec<(String, String)>,
    gso_restore: Vec<(u32, u32)>,
    ifaces: Vec<String>,
}

fn sys(e: impl std::fmt::Display) -> HandoffError {
    HandoffError::System(e.to_string())
}

/// Sets up P-Handoff if the config has a `[handoff]` section. Needs a tokio runtime.
pub async fn prepare(cfg: &Config) -> Result<Option<Prepared>, HandoffError> {
    let Some(h) = cfg.handoff.clone() else {
        return Ok(None);
    };
    let identity = load_identity(&h.identity)?;
    let netlink = Netlink::new().map_err(sys)?;
    netlink
        .ensure_address(ifindex("lo"), h.global_address)
        .await
        .map_err(|e| sys(format!("putting {} on lo: {e}", h.global_address)))?;
    let mut sockets = Vec::new();
    let mut rp_restore = Vec::new();
    let mut gso_restore = Vec::new();
    for (i, l) in cfg.links.iter().enumerate() {
        let s = LinkSocket::bind(i as u8, &l.interface, h.port)
            .map_err(|e| sys(format!("P-Handoff socket on {}: {e}", l.interface)))?;
        sockets.push(s);
        let old = routes::rp_filter_loose(&l.interface).map_err(sys)?;
        rp_restore.push((l.interface.clone(), old));
        if l.kind == LinkKind::Bluetooth {
            if let Some(old) = one_segment_packets(&netlink, &l.interface).await {
                gso_restore.push((ifindex(&l.interface), old));
            }
        }
    }
    info!(
        identity = %hex(&identity.public()),
        global = %h.global_address,
        subnet = %h.global_subnet,
        port = h.port,
        "P-Handoff responder ready"
    );
    Ok(Some(Prepared {
        cfg: h,
        identity,
        sockets,
        netlink,
        rp_restore,
        gso_restore,
        ifaces: cfg.links.iter().map(|l| l.interface.clone()).collect(),
    }))
}

/// Runs the responder until `shutdown`; returns its counters.
pub async fn run(
    cfg: &Config,
    p: Prepared,
    store: Arc<LeaseStore>,
    moves: Arc<crate::moves::Moves>,
    shutdown: CancellationToken,
) -> Counters {
    let Prepared {
        cfg: h,
        identity,
        sockets,
        mut netlink,
        rp_restore,
        gso_restore,
        ifaces,
    } = p;
    let rates: Vec<Option<u64>> = cfg.links.iter().map(|l| l.rate).collect();
    let links: Vec<LinkInfo> = cfg
        .links
        .iter()
        .enumerate()
        .map(|(i, l)| LinkInfo {
            index: i as u8,
            kind: l.kind,
            l2_id: l.l2_id.clone(),
            subnet: l.subnet.network(),
            prefix: l.subnet.prefix_len(),
            router: l.address,
            proxy: l.address,
            proxy_port: cfg.proxy.port,
            pac_url: l.wpad_url.clone().unwrap_or_default().into_bytes(),
        })
        .collect();
    let known = store.load_globals().unwrap_or_else(|e| {
        warn!(error = %e, "cannot read global address assignments; starting without them");
        Vec::new()
    });
    info!(clients = known.len(), "global address assignments loaded");
    let rcfg = ResponderConfig {
        links,
        global_subnet: h.global_subnet.network(),
        global_prefix: h.global_subnet.prefix_len(),
        global_addr: h.global_address,
        pool: h.pool(),
        advert_interval: h.advert_interval,
    };
    let responder = Responder::new(rcfg, identity, random32(), known);
    let (tx, mut rx) = mpsc::channel(256);
    let (stop_tx, stop_rx) = oneshot::channel();
    // Make-before-break: the responder answers a Switch only once its route is in place.
    let (installed, installed_rx) = mpsc::channel(256);
    let task = tokio::spawn(run_responder(responder, sockets, tx, installed_rx, stop_rx));
    let mut routed: BTreeSet<Ipv4Addr> = BTreeSet::new();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = rx.recv() => match ev { Some(e) => e, None => break },
        };
        match ev {
            Event::Assigned { client_key, global } => {
                let s = store.clone();
                let saved =
                    tokio::task::spawn_blocking(move || s.save_global(&client_key, global)).await;
                match saved {
                    Ok(Ok(())) => {
                        info!(client = %hex(&client_key[..8]), %global, "global address assigned")
                    }
                    Ok(Err(e)) => warn!(error = %e, %global, "global address not saved"),
                    Err(e) => warn!(error = %e, "saving the global address failed"),
                }
            }
            Event::Route { global, .. } => {
                if apply(&ev, &mut netlink, &h, &ifaces, &mut routed, &rates, &moves).await {
                    let _ = installed.send(global).await;
                }
            }
            Event::Released { .. } => {
                apply(&ev, &mut netlink, &h, &ifaces, &mut routed, &rates, &moves).await;
            }
        }
    }
    let _ = stop_tx.send(());
    let counters = task.await.map(|r| r.counters().clone()).unwrap_or_default();
    for g in routed {
        let _ = netlink.remove(g, None).await;
    }
    for (ifname, old) in rp_restore {
        let _ = routes::restore_rp_filter(&ifname, &old);
    }
    for (index, old) in gso_restore {
        let _ = netlink.set_gso_max_segs(index, old).await;
    }
    counters
}

/// Makes TCP hand a Bluetooth link one segment per packet; returns the old limit to restore.
///
/// TCP sizes its segmentation-offload packets from its pacing rate and sends at least two
/// segments per packet (BBR: two above 1.2 Mbit/s; BBR's estimate on a bursty radio is often
/// far higher). A 2 Mbit/s radio takes 6 ms per segment, so a packet of four or five segments
/// waits 25-30 ms for the radio and arrives as one burst: the download on Bluetooth stalls
/// that long every few hundred ms, and the packets queued behind it are what a move to Wi-Fi
/// must wait for. Measured in BENCHMARKS.md (the journey). Offload saves nothing at this rate.
async fn one_segment_packets(netlink: &Netlink, ifname: &str) -> Option<u32> {
    let index = ifindex(ifname);
    let old = netlink.gso_max_segs(index).await.ok().flatten()?;
    if old <= 1 {
        return None;
    }
    match netlink.set_gso_max_segs(index, 1).await {
        Ok(()) => {
            info!(interface = %ifname, was = old, "Bluetooth link: one TCP segment per packet");
            Some(old)
        }
        Err(e) => {
            warn!(interface = %ifname, error = %e, "cannot limit the Bluetooth link's packet size");
            None
        }
    }
}

/// Carries out a `Route` or `Released` event on `rp`; `routed` tracks what is installed.
/// Returns whether the kernel took it.
async fn apply<R: RouteProgrammer>(
    ev: &Event,
    rp: &mut R,
    h: &HandoffConfig,
    ifaces: &[String],
    routed: &mut BTreeSet<Ipv4Addr>,
    rates: &[Option<u64>],
    moves: &crate::moves::Moves,
) -> bool {
    match *ev {
        Event::Route { global, link, via } => {
            let Some(ifname) = ifaces.get(usize::from(link)) else {
                return false;
            };
            let r = HostRoute {
                dest: global,
                via,
                ifindex: ifindex(ifname),
                src: Some(h.global_address),
                table: None,
                rto_min_ms: h.rto_min_ms,
                quickack: h.quickack,
            };
            match rp.replace(&r).await {
                Ok(()) => {
                    routed.insert(global);
                    moves.moved(global, rates.get(usize::from(link)).copied().flatten());
                    info!(%global, interface = %ifname, %via, "route switched");
                    true
                }
                Err(e) => {
                    warn!(error = %e, %global, "route not switched");
                    false
                }
            }
        }
        Event::Released { global } => {
            let done = match rp.remove(global, None).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, %global, "route not removed");
                    false
                }
            };
            routed.remove(&global);
            info!(%global, "client left");
            done
        }
        Event::Assigned { .. } => false,
    }
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b
}

/// Loads the 32-byte identity seed, or makes one (mode 0600) on first start.
fn load_identity(path: &Path) -> Result<Identity, HandoffError> {
    let err = |reason: String| HandoffError::Identity {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read(path) {
        Ok(b) => {
            let seed: [u8; 32] = b
                .try_into()
                .map_err(|_| err("must hold exactly 32 bytes".into()))?;
            Ok(Identity::from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let seed = random32();
            if seed == [0; 32] {
                return Err(err("no randomness from /dev/urandom".into()));
            }
            let mut f = std::fs::OpenOptions::new();
            std::os::unix::fs::OpenOptionsExt::mode(f.write(true).create_new(true), 0o600);
            let mut file = f.open(path).map_err(|e| err(e.to_string()))?;
            file.write_all(&seed)
                .and_then(|()| file.sync_all())
                .map_err(|e| err(e.to_string()))?;
            info!(path = %path.display(), "made a new HomeSpot identity");
            Ok(Identity::from_seed(seed))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use phandoff::routes::{Recorder, RouteOp};

    fn cfg() -> HandoffConfig {
        HandoffConfig {
            global_subnet: "10.200.0.0/24".parse().expect("net"),
            global_address: Ipv4Addr::new(10, 200, 0, 1),
            port: 4747,
            identity: "/nonexistent".into(),
            advert_interval: std::time::Duration::from_secs(1),
            rto_min_ms: Some(20),
            quickack: true,
        }
    }

    #[tokio::test]
    async fn events_become_route_operations() {
        let (h, mut rec, mut routed) = (cfg(), Recorder::default(), BTreeSet::new());
        let ifaces = vec!["lo".to_string(), "nosuch0".to_string()];
        let g = Ipv4Addr::new(10, 200, 0, 7);
        let via = Ipv4Addr::new(10, 77, 2, 100);
        apply(
            &Event::Route {
                global: g,
                link: 1,
                via,
            },
            &mut rec,
            &h,
            &ifaces,
            &mut routed,
            &[],
            &crate::moves::Moves::default(),
        )
        .await;
        apply(
            &Event::Route {
                global: g,
                link: 9,
                via,
            },
            &mut rec,
            &h,
            &ifaces,
            &mut routed,
            &[],
            &crate::moves::Moves::default(),
        )
        .await;
        apply(
            &Event::Released { global: g },
            &mut rec,
            &h,
            &ifaces,
            &mut routed,
            &[],
            &crate::moves::Moves::default(),
        )
        .await;
        assert_eq!(
            rec.ops,
            vec![
                RouteOp::Replace(HostRoute {
                    dest: g,
                    via,
                    ifindex: 0,
                    src: Some(Ipv4Addr::new(10, 200, 0, 1)),
                    table: None,
                    rto_min_ms: Some(20),
                    quickack: true,
                }),
                RouteOp::Remove(g, None),
            ],
            "an unknown link index changes nothing"
        );
        assert!(routed.is_empty());
    }
}
