//! The association with one HomeSpot: the P-Handoff client (an identity trusted on this
//! network, see [`crate::trust`]), our interfaces
//! on its links, the global address on `lo`, and the host route to the HomeSpot's global
//! address through the current link (`rto_min` and `quickack` as DESIGN.md section 8 says).

use crate::error::AgentError;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use phandoff::client::{Client, ClientConfig, ClientEvent};
use phandoff::crypto::ClientKeys;
use phandoff::driver::{run_client, Command, LinkSocket, PORT};
use phandoff::routes::{ifindex, HostRoute, Netlink, RouteProgrammer};
use phandoff::wire::Advert;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::links::Iface;
use crate::path::Upstream;

struct Mine {
    ifname: String,
    /// Our address on it.
    addr: Ipv4Addr,
    /// The router address of the network, as the advert met on it gave it.
    router: Ipv4Addr,
    alive: bool,
    /// The HomeSpot has answered on it since it was attached (`ClientEvent::LinkConfirmed`).
    confirmed: bool,
    rp_filter: Option<String>,
}

/// The association.
pub struct HomeSpot {
    advert: Advert,
    cmd: mpsc::Sender<Command>,
    nl: Netlink,
    global: Option<Ipv4Addr>,
    links: BTreeMap<u8, Mine>,
    /// An interface of ours that was on a link until another was attached to it (an advert
    /// for the same link met on another network): back if the HomeSpot never answers there.
    displaced: BTreeMap<u8, Mine>,
    current: Option<u8>,
    switching: Option<u8>,
    associating: bool,
    retry_at: Option<std::time::Instant>,
    route: bool,
    watched: Arc<Mutex<Vec<(u8, String)>>>,
    rcvbuf: u32,
    fast: std::time::Duration,
    standby: std::time::Duration,
    busy: bool,
    /// `busy`, for the traffic watcher.
    traffic: Arc<AtomicBool>,
}

/// Every `fast` while `busy` (requests in flight), else every `standby`, tells the P-Handoff
/// client which links delivered data (the interface received at least [`HEARD_BYTES`] per
/// 20 ms since the last look), so data queued on a busy slow link counts as liveness. The
/// threshold keeps stray small frames (IPv6 neighbour discovery, say) from reviving a lost
/// link. An idle laptop reads the counters at the standby period, not 100 times a second.
/// It ends with the association (a weak sender: the P-Handoff client stops once the
/// association's own sender is dropped).
fn watch_traffic(
    watched: Arc<Mutex<Vec<(u8, String)>>>,
    cmd: mpsc::WeakSender<Command>,
    (fast, standby): (std::time::Duration, std::time::Duration),
    busy: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let mut last: BTreeMap<u8, (u64, std::time::Instant)> = BTreeMap::new();
        loop {
            let period = if busy.load(Ordering::Relaxed) {
                fast
            } else {
                standby
            };
            tokio::time::sleep(period).await;
            if cmd.strong_count() == 0 {
                return;
            }
            let links = watched.lock().map(|v| v.clone()).unwrap_or_default();
            for (link, ifname) in links {
                let path = format!("/sys/class/net/{ifname}/statistics/rx_bytes");
                let Some(rx) = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                else {
                    continue;
                };
                let now = std::time::Instant::now();
                let heard = last.insert(link, (rx, now)).is_some_and(|(old, at)| {
                    // HEARD_BYTES is per 20 ms: a 2 Mbit/s link delivers 5,000 bytes then.
                    let ms = now.duration_since(at).as_millis().max(1) as u64;
                    rx >= old + (HEARD_BYTES * ms / 20).max(HEARD_BYTES / 4)
                });
                if !heard {
                    continue;
                }
                let Some(cmd) = cmd.upgrade() else { return };
                if cmd.send(Command::Heard(link)).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// Bytes a link must deliver within 20 ms (scaled to the probe period) to count as alive.
const HEARD_BYTES: u64 = 3000;

impl HomeSpot {
    /// Starts the P-Handoff client for the HomeSpot of `advert` (trusted on this network).
    pub fn start(
        cfg: &Config,
        key: [u8; 32],
        advert: Advert,
        events: mpsc::Sender<ClientEvent>,
    ) -> Result<HomeSpot, AgentError> {
        let pc = ClientConfig {
            // Links start at the standby period; the one in use is sped up (`probe_schedule`).
            probe_interval: cfg.standby_probe_interval,
            probe_misses: cfg.probe_misses,
            suspect_misses: cfg.suspect_misses,
            ..ClientConfig::default()
        };
        let mut c = Client::new(
            pc,
            ClientKeys::from_secret(key),
            Some(advert.identity),
            phandoff::driver::os_rng().map_err(|e| AgentError::Random(e.to_string()))?,
            PORT,
        );
        c.learn(advert.clone());
        let (cmd, rx) = mpsc::channel(32);
        tokio::spawn(run_client(c, Vec::new(), rx, events));
        let watched = Arc::new(Mutex::new(Vec::new()));
        let traffic = Arc::new(AtomicBool::new(false));
        watch_traffic(
            watched.clone(),
            cmd.downgrade(),
            (cfg.probe_interval, cfg.standby_probe_interval),
            traffic.clone(),
        );
        Ok(HomeSpot {
            advert,
            cmd,
            nl: Netlink::new().map_err(|e| AgentError::Netlink(e.to_string()))?,
            global: None,
            links: BTreeMap::new(),
            displaced: BTreeMap::new(),
            current: None,
            switching: None,
            associating: false,
            retry_at: None,
            route: false,
            fast: cfg.probe_interval,
            standby: cfg.standby_probe_interval,
            busy: false,
            traffic,
            watched,
            rcvbuf: cfg.proxy.homespot_rcvbuf,
        })
    }

    /// The address of the HomeSpot's Bluetooth adapter, from its verified advert.
    pub fn bluetooth_address(&self) -> Option<String> {
        self.advert
            .links
            .iter()
            .filter(|l| l.kind == phandoff::wire::LinkKind::Bluetooth)
            .find_map(|l| crate::bluetooth::plan::address_of(&l.l2_id))
    }

    /// Its identity.
    pub fn identity(&self) -> [u8; 32] {
        self.advert.identity
    }

    /// Our interface `ifname` (address `addr`) is on the HomeSpot's `link`, whose router
    /// address on that network is `router`.
    pub async fn attach(
        &mut self,
        ifname: &str,
        _iface: &Iface,
        link: u8,
        addr: Ipv4Addr,
        router: Ipv4Addr,
    ) {
        let rp = phandoff::routes::rp_filter_loose(ifname).ok();
        let mine = Mine {
            ifname: ifname.to_string(),
            addr,
            router,
            alive: true,
            confirmed: false,
            rp_filter: rp,
        };
        self.put(link, mine).await;
        if self.global.is_none() && !self.associating {
            self.associating = true;
            let _ = self.cmd.send(Command::Associate(link)).await;
        }
    }

    /// `mine` is on `link` now: its socket goes to the client, the link (re)starts there.
    async fn put(&mut self, link: u8, mut mine: Mine) {
        let sock = match LinkSocket::bind(link, &mine.ifname, PORT) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{}: P-Handoff socket: {e}", mine.ifname);
                restore(mine);
                return;
            }
        };
        let ifname = mine.ifname.clone();
        let addr = mine.addr;
        if let Some(mut old) = self.links.remove(&link) {
            if old.ifname == mine.ifname {
                if let Some(o) = old.rp_filter.take() {
                    mine.rp_filter = Some(o);
                }
            } else {
                tracing::info!(
                    "HomeSpot link {link}: {} instead of {} (an advert for it met there)",
                    mine.ifname,
                    old.ifname
                );
                if let Some(d) = self.displaced.insert(link, old) {
                    restore(d);
                }
            }
        }
        self.links.insert(link, mine);
        if let Ok(mut w) = self.watched.lock() {
            w.retain(|(l, _)| *l != link);
            w.push((link, ifname));
        }
        let _ = self.cmd.send(Command::Attach(sock)).await;
        let _ = self.cmd.send(Command::LinkUp(link, addr)).await;
    }

    /// The interface that was on `link` before the one detached now comes back to it, as it
    /// was (alive again for the client, which starts the link afresh).
    pub async fn restore_displaced(&mut self, link: u8) {
        if let Some(mut d) = self.displaced.remove(&link) {
            tracing::info!("HomeSpot link {link}: {} again", d.ifname);
            d.alive = true;
            self.put(link, d).await;
        }
    }

    /// The handshake was given up: try again in a second (see [`HomeSpot::retry_association`]).
    pub fn associate_failed(&mut self) {
        self.associating = false;
        self.retry_at = Some(std::time::Instant::now() + std::time::Duration::from_secs(1));
    }

    /// Called on every tick: a handshake that was given up while we have no address is
    /// tried again over a link of ours, once a second.
    pub async fn retry_association(&mut self) {
        if self.global.is_some() || self.associating {
            return;
        }
        let due = self
            .retry_at
            .is_some_and(|t| std::time::Instant::now() >= t);
        let Some(link) = self.links.keys().next().copied() else {
            return;
        };
        if due {
            self.retry_at = None;
            self.associating = true;
            let _ = self.cmd.send(Command::Associate(link)).await;
        }
    }

    /// The link our route to the HomeSpot uses now, and its interface.
    pub fn current_link(&self) -> Option<(u8, String)> {
        let l = self.current?;
        Some((l, self.links.get(&l)?.ifname.clone()))
    }

    /// Our interface `ifname` on `link` lost its address (or is detached from it).
    pub fn link_gone(&mut self, link: u8, ifname: &str) {
        if self
            .displaced
            .get(&link)
            .is_some_and(|d| d.ifname == ifname)
        {
            if let Some(d) = self.displaced.remove(&link) {
                restore(d);
            }
            return;
        }
        if self.links.get(&link).is_some_and(|m| m.ifname != ifname) {
            return;
        }
        if let Some(m) = self.links.remove(&link) {
            restore(m);
        }
        if let Ok(mut w) = self.watched.lock() {
            w.retain(|(l, _)| *l != link);
        }
        let _ = self.cmd.try_send(Command::LinkDown(link));
        if self.current == Some(link) {
            self.current = None;
        }
    }

    /// Associated and alive on `link`.
    pub fn usable(&self, link: u8) -> bool {
        self.global.is_some() && self.links.get(&link).is_some_and(|m| m.alive)
    }

    /// A switch is under way.
    pub fn switching(&self) -> bool {
        self.switching.is_some()
    }

    /// A switch to `link` is under way (a SwitchAck for any other is stale).
    pub fn expects_switch(&self, link: u8) -> bool {
        self.switching == Some(link)
    }

    /// Whether `a` is in the HomeSpot's global subnet.
    pub fn in_global_subnet(&self, a: Ipv4Addr) -> bool {
        let p = self.advert.global_prefix;
        self.global.is_some() && crate::links::same_subnet(a, self.advert.global_subnet, p)
    }

    /// We got `global`: put it on `lo`.
    pub async fn associated(
        &mut self,
        global: Ipv4Addr,
        _homespot: Ipv4Addr,
    ) -> Result<(), AgentError> {
        self.associating = false;
        self.nl
            .ensure_address(ifindex("lo"), global)
            .await
            .map_err(|e| AgentError::Netlink(e.to_string()))?;
        self.global = Some(global);
        Ok(())
    }

    /// Asks the HomeSpot to route to us over `link` (make-before-break: our own route moves
    /// when it answers, in [`HomeSpot::switched`]).
    pub async fn switch(&mut self, link: u8, _ifname: &str) {
        self.switching = Some(link);
        let _ = self.cmd.send(Command::Switch(link)).await;
    }

    /// Whether requests are in flight through the agent (looked at every 100 ms): only then is
    /// the link in use probed at the fast period, where a silent loss would cost the user.
    /// An idle laptop probes every link at the standby period, which also keeps a HomeSpot
    /// under a flood of handshakes (answering probes late) from looking dead to it.
    pub async fn set_busy(&mut self, busy: bool) {
        if self.busy != busy {
            self.busy = busy;
            self.traffic.store(busy, Ordering::Relaxed);
            self.probe_schedule().await;
        }
    }

    /// Probes the link in use every `probe_interval` while busy and the others every
    /// `standby_probe_interval`. A Bluetooth link too: its probes take about 4 % of its airtime
    /// at 10 ms, inside the 10 % the HomeSpot leaves free by pacing its connections there, and
    /// at 20 ms a loss of it while draining cost 77-106 ms instead of 63-71.
    async fn probe_schedule(&self) {
        for link in self.links.keys() {
            let every = if self.busy && self.current == Some(*link) {
                self.fast
            } else {
                self.standby
            };
            let _ = self.cmd.send(Command::ProbeInterval(*link, every)).await;
        }
    }

    /// The switch failed.
    pub fn switch_failed(&mut self, link: u8) {
        if self.switching == Some(link) {
            self.switching = None;
        }
        if let Some(m) = self.links.get_mut(&link) {
            m.alive = false;
        }
    }

    /// The HomeSpot routes to us over `link`: move our host route there. Returns the interface
    /// and the upstream to publish.
    pub async fn switched(&mut self, link: u8) -> Option<(String, Upstream)> {
        self.switching = None;
        let global = self.global?;
        let m = self.links.get(&link)?;
        let info = self.advert.links.iter().find(|l| l.index == link)?;
        let r = HostRoute {
            dest: self.advert.global_addr,
            via: info.router,
            ifindex: ifindex(&m.ifname),
            src: Some(global),
            table: None,
            rto_min_ms: Some(20),
            quickack: true,
        };
        if let Err(e) = self.nl.replace(&r).await {
            tracing::warn!(
                "host route to {} via {}: {e}",
                self.advert.global_addr,
                m.ifname
            );
            return None;
        }
        self.route = true;
        self.current = Some(link);
        self.probe_schedule().await;
        Some((
            m.ifname.clone(),
            Upstream::HomeSpot {
                rcvbuf: self.rcvbuf,
                global,
                proxy: SocketAddrV4::new(self.advert.global_addr, info.proxy_port),
            },
        ))
    }

    /// Probes on `link` went unanswered; returns the interface.
    pub fn dead(&mut self, link: u8) -> Option<String> {
        // A switch towards it cannot complete: the manager may move elsewhere now (a late
        // SwitchAck for it is ignored, see `expects_switch`).
        if self.switching == Some(link) {
            self.switching = None;
        }
        let m = self.links.get_mut(&link)?;
        m.alive = false;
        Some(m.ifname.clone())
    }

    /// The HomeSpot answered on `link` for the first time since it was attached; returns the
    /// router address of the network there (for [`crate::trust`]).
    pub fn confirmed(&mut self, link: u8) -> Option<Ipv4Addr> {
        let m = self.links.get_mut(&link)?;
        m.confirmed = true;
        Some(m.router)
    }

    /// `link`'s interface and its network's router address if the HomeSpot has never
    /// answered on it since it was attached: an advert met there that the HomeSpot does not
    /// stand behind (a replay on another network with the same router address) looks just
    /// like this.
    pub fn unconfirmed(&self, link: u8) -> Option<(String, Ipv4Addr)> {
        let m = self.links.get(&link).filter(|m| !m.confirmed)?;
        Some((m.ifname.clone(), m.router))
    }

    /// Whether `link` has an interface of ours.
    pub fn attached(&self, link: u8) -> bool {
        self.links.contains_key(&link)
    }

    /// The router addresses of the networks we met the HomeSpot's links on.
    pub fn attached_routers(&self) -> Vec<Ipv4Addr> {
        self.links.values().map(|m| m.router).collect()
    }

    /// `link` answers again; returns the interface.
    pub fn alive(&mut self, link: u8) -> Option<String> {
        let m = self.links.get_mut(&link)?;
        m.alive = true;
        Some(m.ifname.clone())
    }

    /// For the API.
    pub fn status(&self) -> Value {
        json!({"identity": crate::state::short_id(&self.advert.identity),
               "global": self.global.map(|g| g.to_string()),
               "homespot_global": self.advert.global_addr.to_string(),
               "current_link": self.current,
               "links": self.links.iter().map(|(i, m)| json!({"index": i, "interface": m.ifname, "alive": m.alive})).collect::<Vec<_>>()})
    }

    /// Our global address, once associated.
    pub fn global(&self) -> Option<Ipv4Addr> {
        self.global
    }

    /// Says Bye over the current link (the HomeSpot drops its route to us), removes our host
    /// route and restores rp_filter (the caller removes the global address).
    pub async fn cleanup(&mut self) {
        if let (Some(link), Some(_)) = (self.current, self.global) {
            let _ = self.cmd.send(Command::Bye(link)).await;
            // The driver sends it on its next turn.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if self.route {
            let _ = self.nl.remove(self.advert.global_addr, None).await;
        }
        let links = std::mem::take(&mut self.links);
        let displaced = std::mem::take(&mut self.displaced);
        links
            .into_values()
            .chain(displaced.into_values())
            .for_each(restore);
    }
}

/// Gives `m`'s interface its `rp_filter` back.
fn restore(m: Mine) {
    if let Some(old) = m.rp_filter {
        let _ = phandoff::routes::restore_rp_filter(&m.ifname, &old);
    }
}
