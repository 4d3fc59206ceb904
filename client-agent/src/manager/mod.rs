//! The Connection Manager: watches links, runs discovery on each, keeps the association with
//! a HomeSpot, applies the policy, and publishes the path the local proxy uses. Every change
//! of path is a handoff: a P-Handoff between a HomeSpot's radios (the path stays, the host
//! routes move) or an L7 restart (a new path; the proxy restarts in-flight requests).

mod bt;
mod core;
#[cfg(test)]
mod core_tests;
mod homespot;
mod unanswered;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use self::core::{Core, Disc, Handoff, Radios, Step};
use crate::config::Config;
use crate::discovery::{self, Found, PacCache, Target};
use crate::events::{ms, Events};
use crate::links::{Iface, Snapshot};
use crate::path::{Gap, Meter, Path, Upstream};
use crate::policy::Kind;
use homespot::HomeSpot;

/// The P-Handoff client's view of the HomeSpot's radios, for the core.
struct View<'a>(Option<&'a HomeSpot>);

impl Radios for View<'_> {
    fn usable(&self, link: u8) -> bool {
        self.0.is_some_and(|h| h.usable(link))
    }
    fn switching(&self) -> bool {
        self.0.is_some_and(|h| h.switching())
    }
}

/// A request from the Mobility API.
pub enum ApiRequest {
    /// The whole state.
    Status,
    /// Move to this interface.
    Switch(String),
    /// Is this address on one of our links (a local peer)?
    Lookup(Ipv4Addr),
    /// How would a request for this URL go now?
    Connect(String),
    /// Trust this HomeSpot identity (a fingerprint) on the networks where it was refused.
    Trust(String),
    /// Drop every pin of this identity.
    Forget(String),
}

/// The manager.
pub struct Manager {
    cfg: Config,
    /// The link table, the handoff ledger and the decisions.
    core: Core,
    hs: Option<HomeSpot>,
    path: watch::Sender<Path>,
    events: Events,
    handle: rtnetlink::Handle,
    cache: PacCache,
    servers: std::collections::HashMap<String, Ipv4Addr>,
    /// When each link came up, for discovery ([`Target::up_at`]).
    up_at: std::collections::HashMap<String, Instant>,
    key: [u8; 32],
    disc_tx: mpsc::Sender<(String, u64, Found)>,
    disc_rx: Option<mpsc::Receiver<(String, u64, Found)>>,
    clamp: Arc<crate::proxy::clamp::Clamp>,
    /// Which HomeSpot identity is trusted on which network.
    trust: Arc<std::sync::Mutex<crate::trust::Trust>>,
    /// A first-use HomeSpot's advert, pinned once a handshake with it completes.
    pin_on_handshake: Option<Box<phandoff::wire::Advert>>,
    /// Handshakes given up with the HomeSpot so far, none having completed.
    handshake_failures: u32,
    /// When the next rest of a pinned HomeSpot on a network ends (`unanswered.rs`): its plain
    /// links are discovered again then.
    rested_until: Option<Instant>,
    /// Warnings for the status (the latest [`MAX_WARNINGS`]).
    warnings: std::collections::VecDeque<Value>,
    /// HomeSpots refused after discovery had decided (late answers).
    late_tx: mpsc::Sender<(String, discovery::Refused)>,
    late_rx: Option<mpsc::Receiver<(String, discovery::Refused)>>,
    /// When to bring the Bluetooth PAN up and down.
    bt: crate::bluetooth::plan::Plan,
    /// The user asked for Bluetooth at this time; it is being brought up.
    pending_bt: Option<Instant>,
    /// The PAN came up on this interface at this time (its lease is awaited).
    pan_up_at: Option<(String, Instant)>,
    pan_tx: mpsc::Sender<bt::PanResult>,
    pan_rx: Option<mpsc::Receiver<bt::PanResult>>,
}

/// How many warnings the status keeps.
const MAX_WARNINGS: usize = 8;

impl Manager {
    /// A manager publishing on `path`, measuring with `meter`, reporting on `events`.
    pub fn new(
        clamp: Arc<crate::proxy::clamp::Clamp>,
        cfg: Config,
        path: watch::Sender<Path>,
        meter: Arc<Meter>,
        events: Events,
    ) -> Result<Manager, crate::error::AgentError> {
        let key = crate::state::client_key(&cfg.state_dir)?;
        let trust = Arc::new(std::sync::Mutex::new(crate::trust::Trust::load(
            &cfg.state_dir,
        )));
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        let (disc_tx, disc_rx) = mpsc::channel(32);
        let (late_tx, late_rx) = mpsc::channel(32);
        let (pan_tx, pan_rx) = mpsc::channel(4);
        Ok(Manager {
            bt: crate::bluetooth::plan::Plan::new(cfg.bluetooth.idle_disconnect),
            pending_bt: None,
            pan_up_at: None,
            pan_tx,
            pan_rx: Some(pan_rx),
            core: Core::new(cfg.policy.clone(), cfg.drain, meter, Instant::now()),
            cfg,
            hs: None,
            path,
            events,
            handle,
            cache: PacCache::default(),
            servers: Default::default(),
            up_at: Default::default(),
            key,
            disc_tx,
            disc_rx: Some(disc_rx),
            clamp,
            trust,
            pin_on_handshake: None,
            handshake_failures: 0,
            rested_until: None,
            warnings: Default::default(),
            late_tx,
            late_rx: Some(late_rx),
        })
    }

    /// Runs until `stop` fires; then removes what it installed.
    pub async fn run(
        mut self,
        mut snapshots: watch::Receiver<Snapshot>,
        mut gaps: mpsc::UnboundedReceiver<Gap>,
        mut api: mpsc::Receiver<(ApiRequest, oneshot::Sender<Value>)>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let (Some(mut disc_rx), Some(mut late_rx), Some(mut pan_rx)) =
            (self.disc_rx.take(), self.late_rx.take(), self.pan_rx.take())
        else {
            return;
        };
        let (hs_tx, mut hs_rx) = mpsc::channel(64);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let first = snapshots.borrow_and_update().clone();
        let _ = self.on_snapshot(first);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                r = snapshots.changed() => {
                    if r.is_err() { break; }
                    let s = snapshots.borrow_and_update().clone();
                    // A link whose carrier or address went is left now, not at the next tick:
                    // the kernel's word is the fastest a radio's loss is known.
                    if self.on_snapshot(s) {
                        self.evaluate(None).await;
                    }
                }
                Some((name, generation, found)) = disc_rx.recv() => self.on_found(name, generation, found, &hs_tx).await,
                Some((name, r)) = late_rx.recv() => self.refused(&name, &r),
                Some(e) = hs_rx.recv() => self.on_homespot(e).await,
                Some(g) = gaps.recv() => self.on_gap(g),
                Some(r) = pan_rx.recv() => self.on_pan(r),
                Some((req, reply)) = api.recv() => {
                    let v = self.on_api(req).await;
                    let _ = reply.send(v);
                }
                _ = tick.tick() => {
                    // Fast probes only while requests flow over a HomeSpot link.
                    let on_hs = self
                        .hs
                        .as_ref()
                        .and_then(|h| h.current_link())
                        .is_some_and(|(_, n)| self.core.current.as_deref() == Some(n.as_str()));
                    let busy = on_hs && self.clamp.tracked() > 0;
                    if let Some(hs) = self.hs.as_mut() {
                        hs.retry_association().await;
                        hs.set_busy(busy).await;
                    }
                    self.drained().await;
                    self.evaluate(None).await;
                    self.bluetooth_tick().await;
                    self.expire_handoffs();
                    self.refresh_expired();
                    self.retry_rested(Instant::now());
                }
            }
        }
        self.cleanup().await;
    }

    /// Takes a new snapshot of the interfaces; true when a link in use may have gone.
    fn on_snapshot(&mut self, snap: Snapshot) -> bool {
        if self.bt.iface().is_some_and(|i| !snap.contains_key(i)) {
            tracing::info!("the Bluetooth PAN's interface is gone");
            self.bt.gone();
        }
        let cfg = &self.cfg;
        let pan = self.bt.iface();
        let changes = self.core.snapshot(
            Instant::now(),
            &snap,
            |n| {
                n != "lo"
                    && (cfg.interfaces.is_empty()
                        || cfg.interfaces.iter().any(|i| i == n)
                        || pan == Some(n))
            },
            |n| cfg.kind_of(n),
        );
        let went = !changes.down.is_empty();
        for (name, hs_link) in changes.down {
            self.up_at.remove(&name);
            self.events.emit(
                "link_down",
                json!({"link": name, "reason": "address or carrier gone"}),
            );
            if let (Some(link), Some(hs)) = (hs_link, self.hs.as_mut()) {
                hs.link_gone(link, &name);
            }
        }
        for (name, generation) in changes.up {
            let Some(iface) = snap.get(&name) else {
                continue;
            };
            let Some((addr, prefix)) = iface.addr else {
                continue;
            };
            self.events.emit(
                "link_up",
                json!({"link": name, "address": addr.to_string(), "prefix": prefix}),
            );
            self.bluetooth_lease(&name, addr);
            self.up_at.insert(name.clone(), Instant::now());
            self.spawn_discovery(name, generation, iface, addr, prefix);
        }
        went
    }

    /// Runs discovery on a link; the result comes back through `disc_tx`.
    fn spawn_discovery(
        &self,
        name: String,
        generation: u64,
        iface: &Iface,
        addr: Ipv4Addr,
        prefix: u8,
    ) {
        let t = Target {
            ifname: name.clone(),
            index: iface.index,
            mac: iface.mac,
            addr,
            prefix,
            server: self.servers.get(&name).copied(),
            up_at: self.up_at.get(&name).copied().unwrap_or_else(Instant::now),
        };
        {
            let (settings, cache, tx, handle, trust, late) = (
                self.cfg.discovery.clone(),
                self.cache.clone(),
                self.disc_tx.clone(),
                self.handle.clone(),
                self.trust.clone(),
                self.late_tx.clone(),
            );
            tokio::spawn(async move {
                let index = t.index;
                // Address resolution left failing from while the link was gone would hold
                // the first packets to the HomeSpot for up to a second (links.rs).
                let gone = crate::links::forget_unresolved(&handle, index).await;
                if gone > 0 {
                    tracing::debug!("{name}: {gone} unresolved neighbour entries deleted");
                }
                let (found, pending) = discovery::discover(
                    t,
                    settings,
                    cache,
                    trust,
                    late,
                    |r: Option<crate::inform::InformReply>| async move {
                        let router = r.as_ref().and_then(|r| r.router);
                        if let Err(e) =
                            crate::linkroute::install(&handle, index, addr, prefix, router).await
                        {
                            tracing::warn!("routing table for {addr}: {e}");
                        }
                    },
                )
                .await;
                if tx.send((name.clone(), generation, found)).await.is_err() {
                    return;
                }
                // A HomeSpot answering in the rest of the Query's window: the same
                // generation's discovery again, now a HomeSpot link.
                if let Some(p) = pending {
                    if let Some(found) = p.upgrade().await {
                        tracing::info!("{name}: a HomeSpot answered after the link was in use as a plain network");
                        let _ = tx.send((name, generation, found)).await;
                    }
                }
            });
        }
    }

    /// A plain link's PAC file is re-fetched when it is older than `discovery.pac_max_age`
    /// (the link keeps its current result until the new one arrives).
    fn refresh_expired(&mut self) {
        let (now, max) = (Instant::now(), self.cfg.discovery.pac_max_age);
        for name in self.core.stale_plain(now, max) {
            tracing::info!("{name}: PAC older than {max:?}; discovering again");
            self.discover_again(&name, Some(now));
        }
    }

    fn discover_again(&mut self, name: &str, refresh_at: Option<Instant>) {
        let Some(g) = self.core.rediscover(name, refresh_at) else {
            return;
        };
        let Some(iface) = self.core.links.get(name).map(|l| l.iface.clone()) else {
            return;
        };
        if let Some((addr, prefix)) = iface.addr {
            self.spawn_discovery(name.to_string(), g, &iface, addr, prefix);
        }
    }

    async fn on_found(
        &mut self,
        name: String,
        generation: u64,
        found: Found,
        hs_tx: &mpsc::Sender<phandoff::client::ClientEvent>,
    ) {
        let now = Instant::now();
        let Some(l) = self.core.links.get(&name) else {
            return;
        };
        if l.generation != generation {
            return;
        }
        let took = now.duration_since(l.addr_at);
        let iface = l.iface.clone();
        let (addr, prefix) = iface.addr.unwrap_or((Ipv4Addr::UNSPECIFIED, 0));
        match found {
            Found::HomeSpot {
                advert,
                first_use,
                refused,
            } => {
                for r in refused {
                    self.refused(&name, &r);
                }
                let info = advert
                    .links
                    .iter()
                    .find(|x| crate::links::same_subnet(x.subnet, addr, x.prefix));
                let Some(info) = info.cloned() else {
                    tracing::warn!(
                        "{name}: the HomeSpot's advert lists no link with {addr}/{prefix}"
                    );
                    self.core.found(now, &name, generation, Disc::direct());
                    return;
                };
                if let Some(hs) = &self.hs {
                    if hs.identity() != advert.identity {
                        // Judged before the other was in use (trust.rs): again, as a plain
                        // network with its own WPAD.
                        tracing::info!(
                            "{name}: another HomeSpot ({}) while one is in use; discovering again",
                            crate::state::short_id(&advert.identity)
                        );
                        self.discover_again(&name, None);
                        return;
                    }
                }
                // Only for the HomeSpot this laptop uses: another one met meanwhile does not
                // replace a pin still waiting for its handshake.
                if first_use {
                    tracing::info!(
                        "{name}: HomeSpot {} met from the network's router; pinned once the handshake with it completes",
                        crate::trust::fingerprint(&advert.identity),
                    );
                    self.pin_on_handshake = Some(advert.clone());
                }
                let kind = Kind::from(info.kind);
                self.core.found(
                    now,
                    &name,
                    generation,
                    Disc::HomeSpot {
                        link: info.index,
                        kind,
                    },
                );
                self.events.emit(
                    "discovered",
                    json!({"link": name, "homespot": crate::state::short_id(&advert.identity), "homespot_link": info.index,
                           "kind": kind.name(), "took_ms": ms(took)}),
                );
                if self.hs.is_none() {
                    let id = advert.identity;
                    match HomeSpot::start(&self.cfg, self.key, *advert, hs_tx.clone()) {
                        Ok(h) => {
                            self.hs = Some(h);
                            self.handshake_failures = 0;
                            self.trust
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .set_in_use(Some(id));
                        }
                        Err(e) => {
                            tracing::warn!("P-Handoff client: {e}");
                            return;
                        }
                    }
                }
                if let Some(hs) = self.hs.as_mut() {
                    hs.attach(&name, &iface, info.index, addr, info.router)
                        .await;
                }
            }
            Found::Plain {
                refused,
                inform,
                pac,
                wpad,
                cached,
                note,
            } => {
                for r in refused {
                    self.refused(&name, &r);
                }
                let router = inform.as_ref().and_then(|r| r.router);
                self.events.emit(
                    "discovered",
                    json!({"link": name, "homespot": null, "wpad": wpad, "pac": pac.is_some(), "cached": cached,
                           "note": note, "took_ms": ms(took)}),
                );
                // A refreshed PAC on the link in use: the same path, the new evaluator.
                if self.core.current.as_deref() == Some(name.as_str()) && iface.addr.is_some() {
                    let up = Upstream::Link {
                        addr,
                        pac: pac.clone(),
                    };
                    self.path.send_modify(|p| p.upstream = Some(up));
                }
                self.core.found(
                    now,
                    &name,
                    generation,
                    Disc::Plain {
                        pac,
                        wpad,
                        router,
                        cached,
                    },
                );
                if let Some(s) = inform.as_ref().and_then(|r| r.server) {
                    self.servers.insert(name.clone(), s);
                }
            }
        }
        self.evaluate(None).await;
    }

    /// A HomeSpot answered on `link` and is not trusted there: an event, a warning in the log
    /// and in the status.
    fn refused(&mut self, link: &str, r: &discovery::Refused) {
        use crate::trust::{fingerprint, Verdict};
        let fp = fingerprint(&r.identity);
        let (reason, pinned) = match r.verdict {
            Verdict::Mismatch { pinned } => (
                format!(
                    "this network is pinned to HomeSpot {}; another identity answered from {}: not used (to use it: homespot-agent trust {fp})",
                    &fingerprint(&pinned)[..12],
                    r.from
                ),
                Some(fingerprint(&pinned)),
            ),
            Verdict::OtherInUse { in_use } => (
                format!(
                    "a HomeSpot answered from {} while HomeSpot {} is in use (one at a time): the network is used as a plain one",
                    r.from,
                    &fingerprint(&in_use)[..12]
                ),
                None,
            ),
            Verdict::Unanswered { pinned: false } => (
                format!(
                    "a HomeSpot first met here from {} never completed a handshake: not used for {} minutes (a forged advert, or a HomeSpot in trouble); the network is used as a plain one",
                    r.from,
                    crate::trust::UNANSWERED_FOR.as_secs() / 60
                ),
                None,
            ),
            Verdict::Unanswered { pinned: true } => (
                format!(
                    "the HomeSpot pinned here, met from {}, never answered a handshake or probe on this network (a replay of its advert, or the HomeSpot in trouble): the network is used as a plain one; tried again after {} s at first, twice as long each time",
                    r.from,
                    crate::trust::FIRST_REST.as_secs()
                ),
                Some(fp.clone()),
            ),
            _ => (
                format!(
                    "a HomeSpot answered from {}, which is not this network's router or DHCP server: not used",
                    r.from
                ),
                None,
            ),
        };
        tracing::warn!("{link}: HomeSpot {}: {reason}", &fp[..12]);
        let v = json!({"link": link, "identity": fp, "pinned": pinned, "from": r.from.to_string(), "reason": reason});
        self.events.emit("homespot_refused", v.clone());
        if self.warnings.len() >= MAX_WARNINGS {
            self.warnings.pop_front();
        }
        self.warnings.push_back(v);
    }

    /// Discovery again on every link (after the user changed what is trusted).
    fn rediscover(&mut self) {
        let names: Vec<String> = self.core.links.keys().cloned().collect();
        for name in names {
            self.discover_again(&name, None);
        }
    }

    /// Applies the policy (or the user's choice, `user`).
    async fn evaluate(&mut self, user: Option<&str>) {
        let flows = self.clamp.tracked() > 0;
        let steps = self
            .core
            .evaluate(Instant::now(), &View(self.hs.as_ref()), user, flows);
        self.carry_out(steps).await;
    }

    /// Carries out the core's steps.
    async fn carry_out(&mut self, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Switch { link, to } => {
                    if let Some(hs) = self.hs.as_mut() {
                        hs.switch(link, &to).await;
                    }
                }
                Step::Drain { to, .. } => {
                    tracing::info!(
                        "planned move to {to}: draining the old radio's queue for {} ms",
                        self.cfg.drain.as_millis()
                    );
                    self.clamp.apply(Some(self.cfg.drain_window));
                }
                Step::Plain { to, addr, id } => {
                    let (pac, wpad) = match self.core.links.get(&to).map(|l| &l.disc) {
                        Some(Disc::Plain { pac, wpad, .. }) => (pac.clone(), wpad.clone()),
                        _ => (None, None),
                    };
                    tracing::info!(
                        "path: {to} ({addr}), proxy from {}",
                        wpad.as_deref().unwrap_or("DIRECT")
                    );
                    self.path.send_modify(|p| {
                        p.epoch += 1;
                        p.link = to.clone();
                        p.upstream = Some(Upstream::Link { addr, pac });
                    });
                    if let Some(h) = self.core.handoff(id) {
                        self.route_changed(h);
                    }
                }
                Step::Hibernate => self.path.send_modify(|p| p.upstream = None),
            }
        }
    }

    /// A drain that is due: switch now.
    async fn drained(&mut self) {
        if let Some(step) = self.core.drain_due(Instant::now()) {
            self.carry_out(vec![step]).await;
        }
    }

    fn route_changed(&self, h: &Handoff) {
        self.events.emit(
            "route_changed",
            json!({"handoff": h.id, "kind": h.kind.name(), "from": h.from, "to": h.to, "reason": h.reason_text(),
                   "signalling_ms": h.signalling.map(ms)}),
        );
    }

    fn on_gap(&mut self, g: Gap) {
        if let Some(h) = self.core.gap(&g) {
            self.emit_handoff(&h, Some(g));
        }
    }

    fn emit_handoff(&self, h: &Handoff, g: Option<Gap>) {
        self.events.emit(
            "handoff",
            json!({"handoff": h.id, "kind": h.kind.name(), "from": h.from, "to": h.to, "reason": h.reason_text(),
                   "discovery": if h.cached { "cached" } else { "fresh" },
                   "signalling_ms": h.signalling.map(ms),
                   "decided_to_done_ms": h.done.map(|d| ms(d - h.started)),
                   "interruption_ms": g.map(|g| ms(g.gap)),
                   "after_switch_ms": g.map(|g| ms(g.after_done)),
                   "address_to_bytes_ms": g.and_then(|g| g.from_address).map(ms)}),
        );
    }

    fn expire_handoffs(&mut self) {
        for h in self.core.expire(Instant::now()) {
            self.emit_handoff(&h, None);
        }
    }

    async fn on_api(&mut self, req: ApiRequest) -> Value {
        match req {
            ApiRequest::Status => self.status(),
            ApiRequest::Switch(to) => {
                let cands = self.core.candidates(&View(self.hs.as_ref()));
                // An interface name, or a kind word: the usable link of that kind (a
                // HomeSpot's first).
                let kind = Kind::parse(&to);
                let name = cands
                    .iter()
                    .filter(|c| c.name == to || Some(c.kind) == kind)
                    .max_by_key(|c| (c.name == to, c.homespot))
                    .map(|c| c.name.clone());
                match name {
                    Some(name) => {
                        self.evaluate(Some(&name)).await;
                        json!({"ok": true, "switching_to": name})
                    }
                    None if kind == Some(Kind::Bluetooth) => {
                        match self.user_wants_bluetooth().await {
                            Ok(()) => json!({"ok": true, "switching_to": "bluetooth",
                                             "note": "bringing the HomeSpot's Bluetooth link up first"}),
                            Err(e) => json!({"ok": false, "error": e}),
                        }
                    }
                    None => json!({"ok": false, "error": format!("{to} is not a usable link now")}),
                }
            }
            ApiRequest::Lookup(a) => {
                let on = self.core.links.iter().find(|(_, l)| {
                    l.iface
                        .addr
                        .is_some_and(|(x, p)| crate::links::same_subnet(x, a, p))
                });
                let global = self.hs.as_ref().is_some_and(|h| h.in_global_subnet(a));
                json!({"ok": true, "address": a.to_string(), "local": on.is_some() || global,
                       "link": on.map(|(n, _)| n.clone()), "homespot_global": global})
            }
            ApiRequest::Connect(url) => self.connect_plan(&url).await,
            ApiRequest::Trust(fp) => {
                let r = self
                    .trust
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .trust(&fp);
                match r {
                    Ok(id) => {
                        let fp = crate::trust::fingerprint(&id);
                        tracing::info!(
                            "the user trusts HomeSpot {fp} on the networks where it was refused"
                        );
                        self.warnings.retain(|w| w["identity"] != fp.as_str());
                        self.events.emit("trusted", json!({"identity": fp}));
                        self.rediscover();
                        json!({"ok": true, "trusted": fp})
                    }
                    Err(e) => json!({"ok": false, "error": e}),
                }
            }
            ApiRequest::Forget(fp) => {
                let r = self
                    .trust
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .forget(&fp);
                match r {
                    Ok(id) => {
                        let fp = crate::trust::fingerprint(&id);
                        tracing::info!("the user forgot HomeSpot {fp}");
                        self.events.emit("forgotten", json!({"identity": fp}));
                        json!({"ok": true, "forgotten": fp})
                    }
                    Err(e) => json!({"ok": false, "error": e}),
                }
            }
        }
    }

    async fn connect_plan(&self, url: &str) -> Value {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return json!({"ok": false, "error": "not a URL"});
        };
        let host = uri.host().unwrap_or("").to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let up = self.path.borrow().upstream.clone();
        let Some(up) = up else {
            return json!({"ok": true, "via": [], "note": "no usable link: requests wait (hibernation)"});
        };
        match crate::proxy::upstream::hops(&up, url, &host, port).await {
            Ok(h) => json!({"ok": true, "link": self.core.current, "via": h.iter().map(|h| json!({
                "to": h.to.to_string(), "from": h.from.to_string(), "proxy": h.via_proxy})).collect::<Vec<_>>()}),
            Err(e) => json!({"ok": false, "error": e.0}),
        }
    }

    fn status(&self) -> Value {
        let p = self.path.borrow();
        let links: Vec<Value> = self
            .core
            .links
            .iter()
            .map(|(n, l)| {
                let (state, extra) = match &l.disc {
                    Disc::Running => ("discovering", json!(null)),
                    Disc::HomeSpot { link, kind } => (
                        if self.hs.as_ref().is_some_and(|h| h.usable(*link)) { "homespot" } else { "homespot-dead" },
                        json!({"homespot_link": link, "kind": kind.name()}),
                    ),
                    Disc::Plain { wpad, router, .. } => ("plain", json!({"wpad": wpad, "router": router.map(|r| r.to_string())})),
                };
                json!({"name": n, "address": l.iface.addr.map(|(a, p)| format!("{a}/{p}")), "state": state, "info": extra})
            })
            .collect();
        let t = self.trust.lock().unwrap_or_else(|p| p.into_inner());
        let resting: Vec<Value> = t
            .resting(Instant::now())
            .iter()
            .map(|(id, router, left)| {
                json!({"identity": crate::trust::fingerprint(id),
                       "router": router.map(|r| r.to_string()), "left_s": left.as_secs()})
            })
            .collect();
        let pins: Vec<Value> = {
            t.pins()
                .iter()
                .map(|(id, n)| {
                    json!({"identity": crate::trust::fingerprint(id),
                    "kind": match n.kind { 1 => "wifi", 2 => "bluetooth", 3 => "ethernet", _ => "link" },
                    "l2_id": if n.kind == 2 { crate::bluetooth::plan::address_of(&n.l2_id) } else { None }
                        .unwrap_or_else(|| String::from_utf8_lossy(&n.l2_id).into_owned()), "router": n.router.to_string()})
                })
                .collect()
        };
        json!({"ok": true, "current": self.core.current, "epoch": p.epoch, "hibernating": p.upstream.is_none(),
               "pinned": pins, "resting": resting, "warnings": self.warnings.iter().collect::<Vec<_>>(),
               "homespot": self.hs.as_ref().map(|h| h.status()), "links": links,
               "bluetooth": {"pan": self.bt.iface(), "connecting": self.bt.connecting(),
                             "homespot_address": self.hs.as_ref().and_then(|h| h.bluetooth_address())}, "bytes": self.core.bytes(),
               "proxy": self.cfg.proxy.listen.to_string()})
    }

    async fn on_homespot(&mut self, e: phandoff::client::ClientEvent) {
        use phandoff::client::ClientEvent as E;
        let Some(hs) = self.hs.as_mut() else { return };
        match e {
            E::Associated {
                global,
                homespot,
                renewed,
                took,
            } => {
                let before = hs.global();
                if let Err(e) = hs.associated(global, homespot).await {
                    tracing::warn!("global address {global}: {e}");
                    return;
                }
                // A first-use HomeSpot answered the handshake sent to the router's address
                // with the key its advert signed: now it is pinned (discovery.rs).
                self.handshake_failures = 0;
                if let Some(a) = self.pin_on_handshake.take() {
                    if a.identity == hs.identity() {
                        let mut tr = self.trust.lock().unwrap_or_else(|p| p.into_inner());
                        match tr.pin(&a) {
                            Ok(()) => tracing::info!(
                                "HomeSpot {} pinned to its {} links",
                                crate::trust::fingerprint(&a.identity),
                                a.links.len()
                            ),
                            Err(e) => tracing::warn!("cannot save the HomeSpot's pin: {e}"),
                        }
                    }
                }
                self.events.emit(
                    "associated",
                    json!({"global": global.to_string(), "homespot_global": homespot.to_string(),
                           "renewed": renewed, "took_ms": ms(took)}),
                );
                if renewed && before.is_some() {
                    if before != Some(global) {
                        tracing::warn!(
                            "the HomeSpot gave a new global address {global} (was {before:?})"
                        );
                    } else {
                        tracing::info!("re-associated with the HomeSpot in {took:?}; global address {global} kept");
                    }
                    // The HomeSpot's new session has no route for us yet: re-assert it on the
                    // link in use.
                    if let Some((link, name)) = hs.current_link() {
                        hs.switch(link, &name).await;
                    }
                }
                self.evaluate(None).await;
            }
            E::SessionLost { link } => {
                tracing::info!("the HomeSpot no longer knows our session (restarted?): re-handshaking over its link {link}");
                self.events.emit(
                    "session_lost",
                    json!({"homespot_link": link, "reason": "unknown session (HomeSpot restarted or evicted it); re-handshaking"}),
                );
            }
            E::AssociateFailed => {
                // Never associated in this run: a forged or replayed advert looks like this.
                if hs.global().is_none() {
                    self.handshake_failures += 1;
                    if self.handshake_failures >= unanswered::HANDSHAKE_TRIES {
                        self.give_up_handshakes().await;
                        return;
                    }
                }
                tracing::warn!("no answer to the handshake; trying again");
                hs.associate_failed();
            }
            E::SwitchDone { link, took } => {
                if !hs.expects_switch(link) {
                    // Given up when its link was declared dead, and the traffic went elsewhere.
                    tracing::info!("late answer to a switch to HomeSpot link {link}: ignored");
                    self.clamp.apply(None);
                    return;
                }
                // Our route to the HomeSpot moves first, so that lifting the clamp sends the
                // window update over the new radio, not behind the old one's queue.
                let moved = hs.switched(link).await;
                self.clamp.apply(None);
                let Some((name, up)) = moved else {
                    return;
                };
                let (restart, id) = self.core.switched(Instant::now(), &name, took);
                self.path.send_modify(|p| {
                    if restart {
                        p.epoch += 1;
                    }
                    p.link = name.clone();
                    p.upstream = Some(up);
                });
                if let Some(h) = id.and_then(|id| self.core.handoff(id)) {
                    self.route_changed(h);
                }
            }
            E::SwitchFailed { link } => {
                self.clamp.apply(None);
                tracing::warn!("switch to HomeSpot link {link} failed");
                hs.switch_failed(link);
                let unconfirmed = hs.unconfirmed(link);
                self.events
                    .emit("switch_failed", json!({"homespot_link": link}));
                if let Some((name, router)) = unconfirmed {
                    self.not_answered_on(link, &name, router).await;
                    self.evaluate(None).await;
                }
            }
            E::LinkDead { link } => {
                if !hs.attached(link) {
                    // Detached meanwhile (`unanswered.rs`): stale.
                    return;
                }
                if let Some((name, router)) = hs.unconfirmed(link) {
                    self.not_answered_on(link, &name, router).await;
                    self.evaluate(None).await;
                    return;
                }
                let name = hs.dead(link);
                self.events.emit("link_down", json!({"link": name, "homespot_link": link, "reason": "probes unanswered (silent loss)"}));
                let draining = self.core.draining.clone();
                let flows = self.clamp.tracked() > 0;
                let steps = self.core.link_dead(
                    Instant::now(),
                    link,
                    name.as_deref(),
                    &View(self.hs.as_ref()),
                    flows,
                );
                if draining.is_some() && self.core.draining.is_none() {
                    match steps.first() {
                        // The drained radio died: the clamp stays until the switch is done,
                        // so that lifting it sends the window update over the new radio (the
                        // HomeSpot, window-limited, then sends new data at once and the
                        // client's SACKs bring the lost segments back before its
                        // retransmission timer would).
                        Some(Step::Switch { to, .. }) => tracing::info!(
                            "{} lost while draining: moving to {to} now",
                            name.clone().unwrap_or_default()
                        ),
                        _ => self.clamp.apply(None),
                    }
                }
                self.carry_out(steps).await;
                if draining.is_some() && self.core.draining.is_none() {
                    self.evaluate(None).await;
                }
            }
            E::LinkAlive { link } => {
                let name = hs.alive(link);
                self.events.emit(
                    "link_up",
                    json!({"link": name, "homespot_link": link, "reason": "probes answered again"}),
                );
                self.evaluate(None).await;
            }
            E::LinkConfirmed { link } => self.answered_on(link),
            E::Discovered { .. } | E::IdentityMismatch { .. } => {}
        }
    }

    async fn cleanup(&mut self) {
        if let Some(hs) = self.hs.as_mut() {
            hs.cleanup().await;
            if let Some(g) = hs.global() {
                crate::linkroute::remove_address(&self.handle, phandoff::routes::ifindex("lo"), g)
                    .await;
            }
        }
        for l in self.core.links.values() {
            if let (Disc::Plain { .. }, Some((addr, _))) = (&l.disc, l.iface.addr) {
                crate::linkroute::remove(&self.handle, l.iface.index, addr).await;
            }
        }
    }
}
