//! P-Handoff and Co-Link in homespotd: the phandoff responder on every LAN link, with the
//! HomeSpot's persisted identity, client global addresses kept in redb, and host routes
//! programmed through rtnetlink.
//!
//! At start ([`prepare`]): the global address goes on `lo` (the proxy listens there too), an
//! unreachable route covers the global subnet (an address without a client's /32 never
//! follows the default route out of the WAN), the identity is loaded (or made, mode 0600),
//! the OS's randomness is checked, a UDP socket is bound on each link, and reverse-path
//! filtering is set loose on the links (packets of the old link still arrive after a
//! switch). While running ([`run`]): each `Route` event replaces the client's /32 route; each
//! completed handshake's assignment is written; expired and evicted assignments are
//! forgotten and their routes removed; refusals are logged at `warn`, summed over at most
//! one line per 10 s. On shutdown the routes it installed are removed and `rp_filter` is
//! restored. After a `kill -9` the routes stay: clients re-handshake with the new process
//! (it answers their probes with a signed "unknown session") and re-assert them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use phandoff::crypto::Identity;
use phandoff::driver::{
    os_rng, run_responder_with_links, Clock, LinkChange, LinkSocket, ResponderStatus,
};
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
    /// The ifindex of each link set up, `None` for links not ready at start.
    set_up: Vec<Option<u32>>,
    cfg: HandoffConfig,
    identity: Identity,
    rng: rand_core::UnwrapErr<rand_core::OsRng>,
    sockets: Vec<LinkSocket>,
    netlink: Netlink,
    rp_restore: Vec<(String, String)>,
    gso_restore: Vec<(String, u32)>,
    ifaces: Vec<String>,
}

impl Prepared {
    /// The HomeSpot's identity as laptops pin it (hex of the public key).
    pub fn fingerprint(&self) -> String {
        hex(&self.identity.public())
    }
}

fn sys(e: impl std::fmt::Display) -> HandoffError {
    HandoffError::System(e.to_string())
}

/// Sets up P-Handoff if the config has a `[handoff]` section. Needs a tokio runtime.
pub async fn prepare(cfg: &Config) -> Result<Option<Prepared>, HandoffError> {
    let Some(h) = cfg.handoff.clone() else {
        return Ok(None);
    };
    let rng = os_rng().map_err(sys)?;
    let identity = load_identity(&h.identity)?;
    let netlink = Netlink::new().map_err(sys)?;
    netlink
        .ensure_address(ifindex("lo"), h.global_address)
        .await
        .map_err(|e| sys(format!("putting {} on lo: {e}", h.global_address)))?;
    let net = h.global_subnet;
    netlink
        .unreachable(net.network(), net.prefix_len())
        .await
        .map_err(|e| sys(format!("unreachable route for {net}: {e}")))?;
    let mut sockets = Vec::new();
    let mut rp_restore = Vec::new();
    let mut gso_restore = Vec::new();
    let ready = crate::linkwatch::present_now(&crate::linkwatch::watched(cfg));
    for (i, l) in cfg.links.iter().enumerate() {
        if ready[i].is_none() {
            // Not ready: set up when it is (`run`).
            continue;
        }
        let (s, rp, gso) = match set_up_link(&netlink, i, l, h.port).await {
            Ok(x) => x,
            Err(e) => {
                restore_links(&netlink, &rp_restore, &gso_restore).await;
                let _ = netlink
                    .remove_unreachable(net.network(), net.prefix_len())
                    .await;
                return Err(e);
            }
        };
        sockets.push(s);
        rp_restore.push(rp);
        gso_restore.extend(gso);
    }
    info!(
        identity = %hex(&identity.public()),
        global = %h.global_address,
        subnet = %h.global_subnet,
        port = h.port,
        "P-Handoff responder ready"
    );
    Ok(Some(Prepared {
        set_up: ready,
        cfg: h,
        identity,
        rng,
        sockets,
        netlink,
        rp_restore,
        gso_restore,
        ifaces: cfg.links.iter().map(|l| l.interface.clone()).collect(),
    }))
}

/// Binds link `i`'s responder socket and sets its interface up for P-Handoff (loose reverse
/// path filter; one TCP segment per packet on Bluetooth); returns the socket and the old
/// settings to restore.
async fn set_up_link(
    netlink: &Netlink,
    i: usize,
    l: &crate::config::LinkConfig,
    port: u16,
) -> Result<(LinkSocket, (String, String), Option<(String, u32)>), HandoffError> {
    let s = LinkSocket::bind_responder(i as u8, &l.interface, port)
        .map_err(|e| sys(format!("P-Handoff socket on {}: {e}", l.interface)))?;
    let old = routes::rp_filter_loose(&l.interface).map_err(sys)?;
    let gso = if l.kind == LinkKind::Bluetooth {
        one_segment_packets(netlink, &l.interface)
            .await
            .map(|old| (l.interface.clone(), old))
    } else {
        None
    };
    Ok((s, (l.interface.clone(), old), gso))
}

impl Prepared {
    /// Puts back what [`prepare`] changed, for a start that fails after it.
    pub async fn undo(self) {
        restore_links(&self.netlink, &self.rp_restore, &self.gso_restore).await;
        let net = self.cfg.global_subnet;
        let _ = self
            .netlink
            .remove_unreachable(net.network(), net.prefix_len())
            .await;
    }
}

/// Restores the links' reverse path filter and packet size, where the interface still exists.
async fn restore_links(
    netlink: &Netlink,
    rp_restore: &[(String, String)],
    gso_restore: &[(String, u32)],
) {
    for (ifname, old) in rp_restore {
        if ifindex(ifname) != 0 {
            let _ = routes::restore_rp_filter(ifname, old);
        }
    }
    for (ifname, old) in gso_restore {
        let index = ifindex(ifname);
        if index != 0 {
            let _ = netlink.set_gso_max_segs(index, *old).await;
        }
    }
}

/// What the responder shares with the rest of homespotd.
pub struct Shared {
    /// Where assignments are kept.
    pub store: Arc<LeaseStore>,
    /// Tells the proxy which clients moved.
    pub moves: Arc<crate::moves::Moves>,
    /// The global addresses routed now (the proxy serves those).
    pub globals: Arc<crate::globals::RoutedGlobals>,
    /// The live state for `homespotd status`.
    pub live: Arc<crate::status::Live>,
    /// Which links' interfaces exist.
    pub present: tokio::sync::watch::Receiver<crate::linkwatch::Present>,
}

/// Runs the responder until `shutdown`; returns its counters.
pub async fn run(
    cfg: &Config,
    p: Prepared,
    shared: Shared,
    shutdown: CancellationToken,
) -> Counters {
    let Shared {
        store,
        moves,
        globals,
        live,
        mut present,
    } = shared;
    let Prepared {
        mut set_up,
        cfg: h,
        identity,
        rng,
        sockets,
        mut netlink,
        mut rp_restore,
        mut gso_restore,
        ifaces,
    } = p;
    let rates: Vec<crate::moves::LinkPace> = cfg
        .links
        .iter()
        .map(|l| crate::moves::LinkPace::of(l.kind, l.rate))
        .collect();
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
    let clock = Clock::new();
    let known = store.load_globals(clock.now()).unwrap_or_else(|e| {
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
        expiry: h.expire_after,
        session_idle: h.session_idle,
        handshake_rate: h.handshake_rate,
    };
    let responder = Responder::new(rcfg, identity, rng, known);
    let (tx, mut rx) = mpsc::channel(256);
    let (stop_tx, stop_rx) = oneshot::channel();
    // Make-before-break: the responder answers a Switch only once its route is in place.
    let (installed, installed_rx) = mpsc::channel(256);
    let (status_tx, status) = tokio::sync::watch::channel(ResponderStatus::default());
    let (link_tx, link_rx) = mpsc::channel(16);
    let task = tokio::spawn(run_responder_with_links(
        responder,
        sockets,
        link_rx,
        tx,
        installed_rx,
        status_tx,
        stop_rx,
    ));
    // The route each client has now, to put back when its link's interface is re-created.
    let mut current: BTreeMap<Ipv4Addr, (u8, Ipv4Addr)> = BTreeMap::new();
    let mut routed: BTreeSet<Ipv4Addr> = BTreeSet::new();
    // Host routes an earlier run left (after a kill -9) keep serving their clients until the
    // clients re-handshake and switch again; they are ours to remove at a clean stop.
    let lan: Vec<u32> = ifaces.iter().map(|i| ifindex(i)).collect();
    match netlink.host_routes().await {
        Ok(found) => {
            for (dest, oif) in found {
                if h.global_subnet.contains(&dest) && dest != h.global_address && lan.contains(&oif)
                {
                    routed.insert(dest);
                    globals.insert(dest);
                }
            }
            if !routed.is_empty() {
                info!(routes = routed.len(), "host routes of an earlier run kept");
            }
        }
        Err(e) => warn!(error = %e, "cannot list host routes"),
    }
    let mut refusals = Refusals::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    // Bluetooth adapters' addresses read from BlueZ: into the adverts.
    let mut l2 = live.l2_changes();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            Ok(()) = l2.changed() => {
                let ids = l2.borrow_and_update().clone();
                for (link, addr) in ids {
                    let bytes: Option<Vec<u8>> = addr
                        .split(':')
                        .map(|b| u8::from_str_radix(b, 16).ok())
                        .collect();
                    if let Some(b) = bytes.filter(|b| b.len() == 6) {
                        let _ = link_tx.send(LinkChange::L2Id(link as u8, b)).await;
                    }
                }
                continue;
            }
            Ok(()) = present.changed() => {
                let now = present.borrow_and_update().clone();
                for (i, l) in cfg.links.iter().enumerate() {
                    let is = now.get(i).copied().flatten();
                    if set_up.get(i).copied().flatten() == is {
                        continue;
                    }
                    set_up[i] = is;
                    if is.is_none() {
                        let _ = link_tx.send(LinkChange::Detach(i as u8)).await;
                        continue;
                    }
                    match set_up_link(&netlink, i, l, h.port).await {
                        Ok((s, rp, gso)) => {
                            let _ = link_tx.send(LinkChange::Attach(s)).await;
                            // The first value seen is the one to restore.
                            if !rp_restore.iter().any(|(n, _)| *n == rp.0) {
                                rp_restore.push(rp);
                            }
                            if let Some(g) = gso.filter(|g| !gso_restore.iter().any(|(n, _)| *n == g.0)) {
                                gso_restore.push(g);
                            }
                            // The kernel dropped the routes through the old interface.
                            for (global, (link, via)) in &current {
                                if usize::from(*link) == i {
                                    let ev = Event::Route { global: *global, link: *link, via: *via };
                                    apply(&ev, &mut netlink, &h, &ifaces, &mut routed, &rates, &moves).await;
                                }
                            }
                            info!(link = %l.name, interface = %l.interface, "P-Handoff serving the link again");
                        }
                        Err(e) => {
                            set_up[i] = None;
                            warn!(link = %l.name, error = %e, "P-Handoff cannot serve the link yet");
                        }
                    }
                }
                continue;
            }
            _ = tick.tick() => {
                refusals.log(&status.borrow());
                live.handoff_counters(status_counters(&status.borrow()));
                continue;
            }
            ev = rx.recv() => match ev { Some(e) => e, None => break },
        };
        match ev {
            Event::Confirmed {
                client_key,
                global,
                new,
                assignment,
            } => {
                persist(&store, client_key, Some(assignment)).await;
                live.associated(global);
                if new {
                    info!(client = %hex(&client_key[..8]), %global, "global address assigned");
                } else {
                    info!(client = %hex(&client_key[..8]), %global, "client associated");
                }
            }
            Event::Route { global, link, via } => {
                if apply(&ev, &mut netlink, &h, &ifaces, &mut routed, &rates, &moves).await {
                    current.insert(global, (link, via));
                    live.switched(global, usize::from(link), via);
                    globals.insert(global);
                    let _ = installed.send(global).await;
                }
            }
            Event::Released {
                client_key,
                global,
                assignment,
            } => {
                globals.remove(global);
                current.remove(&global);
                live.left(global);
                apply(&ev, &mut netlink, &h, &ifaces, &mut routed, &rates, &moves).await;
                if assignment.is_some() {
                    persist(&store, client_key, assignment).await;
                }
            }
            Event::Evicted {
                client_key,
                global,
                expired,
            } => {
                globals.remove(global);
                current.remove(&global);
                live.left(global);
                apply(&ev, &mut netlink, &h, &ifaces, &mut routed, &rates, &moves).await;
                persist(&store, client_key, None).await;
                if expired {
                    info!(client = %hex(&client_key[..8]), %global, "global address expired (unused)");
                } else {
                    warn!(client = %hex(&client_key[..8]), %global,
                        "global address pool full: evicted the assignment unused the longest");
                }
            }
            Event::PoolNearlyFull { used, size } => {
                warn!(used, size, subnet = %h.global_subnet,
                    "global address pool nearly full (90 %); unused assignments will be evicted");
            }
        }
    }
    refusals.log(&status.borrow());
    let dropped = status.borrow().dropped;
    if dropped > 0 {
        info!(
            dropped,
            "unauthenticated P-Handoff datagrams dropped under load since start"
        );
    }
    let _ = stop_tx.send(());
    let counters = task.await.map(|r| r.counters().clone()).unwrap_or_default();
    for g in routed {
        let _ = netlink.remove(g, None).await;
    }
    let net = h.global_subnet;
    let _ = netlink
        .remove_unreachable(net.network(), net.prefix_len())
        .await;
    restore_links(&netlink, &rp_restore, &gso_restore).await;
    counters
}

/// The responder's status as `name -> value` for `homespotd status`.
fn status_counters(s: &ResponderStatus) -> std::collections::BTreeMap<String, u64> {
    let c = &s.counters;
    [
        ("sessions", s.sessions.0 as u64),
        ("handshakes_pending", s.sessions.1 as u64),
        ("globals_assigned", s.pool.0 as u64),
        ("global_pool_size", s.pool.1 as u64),
        ("handshakes", c.handshakes),
        ("switches", c.switches),
        ("malformed", c.malformed),
        ("old_version", c.old_version),
        ("bad_mac1", c.bad_mac1),
        ("cookie_replies", c.cookie_replies),
        ("rate_limited", c.rate_limited),
        ("bad_handshake", c.bad_handshake),
        ("stale_timestamp", c.stale_timestamp),
        ("forged", c.forged),
        ("replayed", c.replayed),
        ("unknown_session", c.unknown_session),
        ("pool_full", c.pool_full),
        ("evicted", c.evicted),
        ("expired", c.expired),
        ("wrong_link", c.wrong_link),
        ("queries_limited", c.queries_limited),
        ("dropped_under_load", s.dropped),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
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
    rates: &[crate::moves::LinkPace],
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
                    moves.moved(
                        global,
                        rates.get(usize::from(link)).copied().unwrap_or_default(),
                    );
                    info!(%global, interface = %ifname, %via, "route switched");
                    true
                }
                Err(e) => {
                    warn!(error = %e, %global, "route not switched");
                    false
                }
            }
        }
        Event::Released { global, .. } | Event::Evicted { global, .. } => {
            let done = match rp.remove(global, None).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, %global, "route not removed");
                    false
                }
            };
            routed.remove(&global);
            moves.forget(global);
            info!(%global, "client left");
            done
        }
        Event::Confirmed { .. } | Event::PoolNearlyFull { .. } => false,
    }
}

/// Writes (or, with `None`, forgets) `key`'s assignment off the async threads.
async fn persist(store: &Arc<LeaseStore>, key: [u8; 32], a: Option<phandoff::pool::Assignment>) {
    let s = store.clone();
    let r = tokio::task::spawn_blocking(move || match a {
        Some(a) => s.save_global(&key, &a),
        None => s.forget_global(&key),
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "global address assignment not saved"),
        Err(e) => warn!(error = %e, "saving the global address assignment failed"),
    }
}

/// Refusals that are attack patterns, logged at `warn` as one line per 10 s at most.
#[derive(Default)]
struct Refusals {
    last: Counters,
    pending: Counters,
    last_dropped: u64,
    dropped: u64,
    logged: Option<std::time::Instant>,
}

impl Refusals {
    fn log(&mut self, status: &ResponderStatus) {
        let now = &status.counters;
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.dropped += d(status.dropped, self.last_dropped);
        self.last_dropped = status.dropped;
        let (c, l) = (now, &self.last);
        let p = &mut self.pending;
        p.stale_timestamp += d(c.stale_timestamp, l.stale_timestamp);
        p.bad_handshake += d(c.bad_handshake, l.bad_handshake);
        p.bad_mac1 += d(c.bad_mac1, l.bad_mac1);
        p.cookie_demanded += d(c.cookie_demanded, l.cookie_demanded);
        p.rate_limited += d(c.rate_limited, l.rate_limited);
        p.forged += d(c.forged, l.forged);
        p.replayed += d(c.replayed, l.replayed);
        p.unknown_session += d(c.unknown_session, l.unknown_session);
        p.old_version += d(c.old_version, l.old_version);
        p.pool_full += d(c.pool_full, l.pool_full);
        p.queries_limited += d(c.queries_limited, l.queries_limited);
        p.malformed += d(c.malformed, l.malformed);
        self.last = now.clone();
        let any = p.stale_timestamp
            + p.bad_handshake
            + p.bad_mac1
            + p.cookie_demanded
            + p.rate_limited
            + p.forged
            + p.replayed
            + p.old_version
            + p.pool_full
            + p.queries_limited
            + p.malformed
            + self.dropped
            > 0;
        let due = self
            .logged
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10));
        if !any || !due {
            return;
        }
        let p = std::mem::take(&mut self.pending);
        let dropped = std::mem::take(&mut self.dropped);
        self.logged = Some(std::time::Instant::now());
        warn!(
            dropped_under_load = dropped,
            replayed_handshake = p.stale_timestamp,
            bad_handshake = p.bad_handshake,
            bad_mac1 = p.bad_mac1,
            cookie_demanded = p.cookie_demanded,
            rate_limited = p.rate_limited,
            forged = p.forged,
            replayed = p.replayed,
            unknown_session = p.unknown_session,
            version_1 = p.old_version,
            pool_full = p.pool_full,
            queries_limited = p.queries_limited,
            malformed = p.malformed,
            "P-Handoff refused messages (since the last such line)"
        );
    }
}

fn random32() -> Result<[u8; 32], HandoffError> {
    let mut b = [0u8; 32];
    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut b)
        .map_err(|e| sys(format!("no randomness from the OS: {e}")))?;
    Ok(b)
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
            let mode = std::fs::metadata(path)
                .ok()
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
            if let Some(mode) = mode.filter(|m| m & 0o077 != 0) {
                warn!(path = %path.display(), mode = format!("{mode:o}"),
                    "the HomeSpot's identity key is readable by others: anyone who reads it can pose as this HomeSpot (chmod 600 it)");
            }
            Ok(Identity::from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let seed = random32()?;
            // Whole or not at all: a torn key (a full disk, a power cut at first start) would
            // stop every later start until someone deletes it.
            web_admin::secret_file::write_private(path, seed)
                .map_err(|e| err(e.source.to_string()))?;
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

    #[test]
    fn the_identity_is_made_whole_and_private_then_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys/identity.key");
        let made = load_identity(&path).expect("made");
        let mode = std::fs::metadata(&path).expect("meta").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(&path).expect("read").len(), 32);
        assert_eq!(load_identity(&path).expect("kept").public(), made.public());
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("identity.key")]);
        // A torn key is refused with its path, not replaced (agents have it pinned).
        std::fs::write(&path, [0u8; 7]).expect("torn");
        let e = load_identity(&path).err().expect("refused").to_string();
        assert!(e.contains("identity.key") && e.contains("32 bytes"), "{e}");
    }

    fn cfg() -> HandoffConfig {
        HandoffConfig {
            global_subnet: "10.200.0.0/24".parse().expect("net"),
            global_address: Ipv4Addr::new(10, 200, 0, 1),
            port: 4747,
            identity: "/nonexistent".into(),
            advert_interval: std::time::Duration::from_secs(1),
            rto_min_ms: Some(20),
            quickack: true,
            expire_after: std::time::Duration::from_secs(30 * 86_400),
            session_idle: std::time::Duration::from_secs(180),
            handshake_rate: 200,
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
            &Event::Released {
                client_key: [0; 32],
                global: g,
                assignment: None,
            },
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
