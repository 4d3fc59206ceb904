//! The live state model (DESIGN.md section 9): links, devices and counters as they are now,
//! and a stream of events. The DHCP server, the P-Handoff responder and the proxy write into
//! [`Live`]; `homespotd status` reads it over a root-only Unix socket ([`socket`]), and the
//! admin panel will read the same model.
//!
//! Bounded: devices are those with a lease record (at most the pools' size) and agents those
//! with a host route (at most the global pool's size); the event channel keeps the last 256
//! events for a slow reader, which then skips ahead.

pub mod show;
pub mod socket;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::dhcp::engine::Counters as DhcpCounters;
use crate::dhcp::lease::{Lease, LeaseState};

/// Events kept for a slow reader.
const EVENT_BACKLOG: usize = 256;

/// One thing that happened, as `status --events` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A lease was acknowledged (new or renewed).
    Lease {
        /// The link's name.
        link: String,
        /// The address.
        address: Ipv4Addr,
        /// The client's MAC, if Ethernet.
        mac: Option<String>,
        /// Its hostname (option 12).
        hostname: Option<String>,
    },
    /// A client released its lease.
    Released {
        /// The link's name.
        link: String,
        /// The address.
        address: Ipv4Addr,
    },
    /// A P-Handoff client completed a handshake.
    Associated {
        /// Its global address.
        global: Ipv4Addr,
    },
    /// A P-Handoff client's traffic moved to a link.
    Switch {
        /// Its global address.
        global: Ipv4Addr,
        /// The link it moved from (none: its first route).
        from: Option<String>,
        /// The link it is on now.
        to: String,
        /// Its address on that link.
        via: Ipv4Addr,
        /// Why, as the HomeSpot sees it (the link it left was down, or the laptop chose).
        #[serde(default)]
        why: Option<String>,
    },
    /// A P-Handoff client left (session ended or assignment dropped).
    Left {
        /// Its global address.
        global: Ipv4Addr,
    },
    /// A link's pool ran out of addresses for new clients.
    PoolExhausted {
        /// The link's name.
        link: String,
    },
    /// A link's interface is gone (or not there yet): the link waits for it.
    LinkDown {
        /// The link's name.
        link: String,
    },
    /// A link's interface is there and served.
    LinkUp {
        /// The link's name.
        link: String,
    },
    /// The configuration was read again and applied.
    Reloaded {
        /// What changed, in words.
        changes: Vec<String>,
    },
    /// A reload was refused; the running configuration stays.
    ReloadRefused {
        /// Why, with file, key and reason.
        reason: String,
    },
}

/// An event with its time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamped {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Everything `homespotd status` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// homespotd's version.
    pub version: String,
    /// When it started (Unix ms) and the time of this snapshot.
    pub started_ms: u64,
    /// The time of this snapshot (Unix ms).
    pub now_ms: u64,
    /// The config file in use.
    pub config: String,
    /// The P-Handoff identity laptops pin (hex), when P-Handoff runs.
    #[serde(default)]
    pub identity: Option<String>,
    /// What the proxy's client connections use as TCP congestion control, when it runs.
    #[serde(default)]
    pub proxy_congestion: Option<String>,
    /// The links.
    pub links: Vec<LinkView>,
    /// The devices with a lease record.
    pub devices: Vec<DeviceView>,
    /// Counters by subsystem, `name -> value`.
    pub counters: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One link.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LinkView {
    /// Its name in the config.
    pub name: String,
    /// `wifi`, `bluetooth` or `ethernet`.
    pub kind: String,
    /// Its interface.
    pub interface: String,
    /// Whether the interface is there and served.
    pub present: bool,
    /// The HomeSpot's address and prefix on it.
    pub address: String,
    /// Addresses in its pools.
    pub pool_size: u64,
    /// Addresses bound to a client now.
    pub pool_used: u64,
    /// Times the pool ran out since start.
    pub exhausted: u64,
    /// Its L2 identity (SSID, Bluetooth address), as adverts carry it; empty if none.
    #[serde(default)]
    pub l2_id: String,
    /// Bytes the interface received (from clients) since it came up.
    #[serde(default)]
    pub rx_bytes: u64,
    /// Bytes the interface sent (to clients) since it came up.
    #[serde(default)]
    pub tx_bytes: u64,
}

/// One device (client key): its leases, names and, for an agent, its global address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceView {
    /// The hostname it sent (option 12).
    pub hostname: Option<String>,
    /// Its MAC (the last one seen with a lease).
    pub mac: Option<String>,
    /// Its addresses, one per link.
    pub leases: Vec<LeaseView>,
    /// The link it uses now: where its P-Handoff route points, else its latest lease.
    pub radio: Option<String>,
    /// When its latest lease was acknowledged (Unix ms), if since start.
    pub last_seen_ms: Option<u64>,
    /// Its P-Handoff global address, if it is an agent with a route.
    pub global: Option<Ipv4Addr>,
    /// When its traffic last moved between links (Unix ms).
    pub last_switch_ms: Option<u64>,
    /// How many times it moved since start.
    pub switches: u64,
    /// Why it last moved, as the HomeSpot saw it.
    #[serde(default)]
    pub last_switch_why: Option<String>,
}

/// One lease of a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseView {
    /// The link's name.
    pub link: String,
    /// The address.
    pub address: Ipv4Addr,
    /// When it expires (Unix seconds).
    pub expires: u64,
    /// `bound` or `released`.
    pub state: String,
    /// Whether the address is a reservation.
    pub reserved: bool,
}

struct LinkStatic {
    name: String,
    kind: String,
    interface: String,
    address: String,
    subnet: ipnet::Ipv4Net,
    pool_size: u64,
    reservations: Vec<Ipv4Addr>,
    l2_id: String,
}

#[derive(Default)]
struct Inner {
    links: Vec<LinkStatic>,
    config: String,
    present: Vec<bool>,
    exhausted: Vec<u64>,
    /// Lease records by address.
    leases: BTreeMap<Ipv4Addr, Lease>,
    /// When each address was last acknowledged (Unix ms).
    seen: BTreeMap<Ipv4Addr, u64>,
    /// P-Handoff routes: global -> (link, via, since ms, switches).
    agents: BTreeMap<Ipv4Addr, Agent>,
    dhcp: DhcpCounters,
    offers: u64,
    handoff: BTreeMap<String, u64>,
    /// Counters other subsystems add to (`bluetooth.pairing_refused`, ...).
    extra: BTreeMap<String, BTreeMap<String, u64>>,
    /// Bluetooth adapter addresses read from BlueZ, by link.
    bt_address: BTreeMap<usize, String>,
}

#[derive(Clone)]
struct Agent {
    link: usize,
    /// Its address on each link it has been routed through (link -> address).
    vias: BTreeMap<usize, Ipv4Addr>,
    since_ms: u64,
    switches: u64,
    why: Option<String>,
}

/// Counters another subsystem reports when asked.
pub trait CounterSource: Send + Sync {
    /// `name -> value` pairs.
    fn counters(&self) -> BTreeMap<String, u64>;
}

/// The live state, shared by the subsystems and the status socket.
pub struct Live {
    started_ms: u64,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Stamped>,
    proxy: OnceLock<Arc<dyn CounterSource>>,
    identity: OnceLock<String>,
    congestion: OnceLock<String>,
    /// `homespotd bluetooth pair` requests (a count; the Bluetooth tasks watch it).
    pair: tokio::sync::watch::Sender<u64>,
    /// Link identities learned at run time (Bluetooth adapters' addresses), for the adverts.
    l2: tokio::sync::watch::Sender<BTreeMap<usize, String>>,
}

impl Live {
    /// The model for `cfg`, read from `config_path`; every link starts as not present.
    pub fn new(cfg: &Config, config_path: &str) -> Arc<Live> {
        let live = Arc::new(Live {
            started_ms: now_ms(),
            inner: Mutex::new(Inner::default()),
            events: broadcast::channel(EVENT_BACKLOG).0,
            proxy: OnceLock::new(),
            identity: OnceLock::new(),
            congestion: OnceLock::new(),
            pair: tokio::sync::watch::channel(0).0,
            l2: tokio::sync::watch::channel(BTreeMap::new()).0,
        });
        live.configure(cfg, config_path);
        live
    }

    /// Takes the links of a (re)loaded config; presence is kept for links that stay.
    pub fn configure(&self, cfg: &Config, config_path: &str) {
        let mut g = self.lock();
        let old: BTreeMap<String, (bool, u64)> = g
            .links
            .iter()
            .zip(g.present.iter().zip(g.exhausted.iter()))
            .map(|(l, (p, e))| (l.interface.clone(), (*p, *e)))
            .collect();
        g.links = cfg
            .links
            .iter()
            .map(|l| LinkStatic {
                name: l.name.clone(),
                kind: format!("{:?}", l.kind).to_lowercase(),
                interface: l.interface.clone(),
                address: format!("{}/{}", l.address, l.subnet.prefix_len()),
                subnet: l.subnet,
                pool_size: l
                    .pools
                    .iter()
                    .map(|p| u64::from(u32::from(p.last) - u32::from(p.first)) + 1)
                    .sum(),
                reservations: l.reservations.iter().map(|r| r.address).collect(),
                l2_id: l2_text(l),
            })
            .collect();
        g.present = g
            .links
            .iter()
            .map(|l| old.get(&l.interface).is_some_and(|o| o.0))
            .collect();
        g.exhausted = g
            .links
            .iter()
            .map(|l| old.get(&l.interface).map_or(0, |o| o.1))
            .collect();
        g.config = config_path.to_string();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `event` to every `status --events` reader.
    pub fn emit(&self, event: Event) {
        let _ = self.events.send(Stamped {
            at_ms: now_ms(),
            event,
        });
    }

    /// A receiver of the events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.events.subscribe()
    }

    /// The name of link `i`.
    pub fn link_name(&self, i: usize) -> String {
        self.lock()
            .links
            .get(i)
            .map_or_else(|| format!("link{i}"), |l| l.name.clone())
    }

    /// Link `i`'s interface is there (true) or gone (false); emits the change.
    pub fn set_present(&self, i: usize, present: bool) {
        let (changed, name) = {
            let mut g = self.lock();
            let name = g.links.get(i).map(|l| l.name.clone()).unwrap_or_default();
            match g.present.get_mut(i) {
                Some(p) if *p != present => {
                    *p = present;
                    (true, name)
                }
                _ => (false, name),
            }
        };
        if changed {
            self.emit(if present {
                Event::LinkUp { link: name }
            } else {
                Event::LinkDown { link: name }
            });
        }
    }

    /// Leases loaded from the database at start.
    pub fn restore(&self, leases: impl IntoIterator<Item = Lease>) {
        let mut g = self.lock();
        for l in leases {
            g.leases.insert(l.addr, l);
        }
    }

    /// A lease record the DHCP engine made (acknowledged, released or declined).
    pub fn lease(&self, l: &Lease) {
        let event = {
            let mut g = self.lock();
            let link = g
                .links
                .iter()
                .find(|k| k.subnet.contains(&l.addr))
                .map(|k| k.name.clone())
                .unwrap_or_default();
            g.leases.insert(l.addr, l.clone());
            match l.state {
                LeaseState::Bound => {
                    g.seen.insert(l.addr, now_ms());
                    Some(Event::Lease {
                        link,
                        address: l.addr,
                        mac: l.mac.map(mac_text),
                        hostname: l.hostname.clone(),
                    })
                }
                LeaseState::Released => Some(Event::Released {
                    link,
                    address: l.addr,
                }),
                LeaseState::Declined => None,
            }
        };
        if let Some(e) = event {
            self.emit(e);
        }
    }

    /// A pool ran out (once per episode).
    pub fn exhausted(&self, link: usize) {
        let name = {
            let mut g = self.lock();
            if let Some(n) = g.exhausted.get_mut(link) {
                *n += 1;
            }
            g.links
                .get(link)
                .map(|l| l.name.clone())
                .unwrap_or_default()
        };
        self.emit(Event::PoolExhausted { link: name });
    }

    /// The DHCP engine's counters and outstanding offers.
    pub fn dhcp_counters(&self, c: &DhcpCounters, offers: usize) {
        let mut g = self.lock();
        if g.dhcp != *c {
            g.dhcp = c.clone();
        }
        g.offers = offers as u64;
    }

    /// The P-Handoff responder's counters.
    pub fn handoff_counters(&self, c: BTreeMap<String, u64>) {
        self.lock().handoff = c;
    }

    /// Adds one to counter `name` of `subsystem`.
    pub fn count(&self, subsystem: &str, name: &str) {
        *self
            .lock()
            .extra
            .entry(subsystem.to_string())
            .or_default()
            .entry(name.to_string())
            .or_default() += 1;
    }

    /// The Bluetooth address BlueZ reports for link `link`'s adapter.
    pub fn set_bluetooth_address(&self, link: usize, address: &str) {
        self.lock().bt_address.insert(link, address.to_string());
        self.l2.send_modify(|m| {
            m.insert(link, address.to_string());
        });
    }

    /// Link identities learned at run time (link -> Bluetooth address), for the adverts.
    pub fn l2_changes(&self) -> tokio::sync::watch::Receiver<BTreeMap<usize, String>> {
        self.l2.subscribe()
    }

    /// Asks the Bluetooth links to open their pairing window (`homespotd bluetooth pair`);
    /// false when no link listens.
    pub fn request_pairing(&self) -> bool {
        self.pair.send_modify(|n| *n += 1);
        self.pair.receiver_count() > 0
    }

    /// Pairing requests, for a Bluetooth link's task.
    pub fn pair_requests(&self) -> tokio::sync::watch::Receiver<u64> {
        self.pair.subscribe()
    }

    /// The P-Handoff identity (hex) the status shows.
    pub fn set_identity(&self, fingerprint: String) {
        let _ = self.identity.set(fingerprint);
    }

    /// What the proxy's client connections use as TCP congestion control.
    pub fn set_proxy_congestion(&self, what: String) {
        let _ = self.congestion.set(what);
    }

    /// Where the proxy's counters come from.
    pub fn set_proxy(&self, p: Arc<dyn CounterSource>) {
        let _ = self.proxy.set(p);
    }

    /// A P-Handoff client completed a handshake.
    pub fn associated(&self, global: Ipv4Addr) {
        self.emit(Event::Associated { global });
    }

    /// A P-Handoff client's host route now points into `link` via `via`.
    pub fn switched(&self, global: Ipv4Addr, link: usize, via: Ipv4Addr) {
        let event = {
            let mut g = self.lock();
            let name = |i: usize| g.links.get(i).map(|l| l.name.clone()).unwrap_or_default();
            let prev = g.agents.get(&global).cloned();
            let from = prev
                .as_ref()
                .filter(|p| p.link != link)
                .map(|p| name(p.link));
            let to = name(link);
            let moved = prev.as_ref().is_none_or(|p| p.link != link);
            // The HomeSpot cannot see the laptop's reason; it sees whether the link left
            // was still there.
            let why = prev.as_ref().filter(|p| p.link != link).map(|p| {
                if g.present.get(p.link).copied().unwrap_or(false) {
                    "the laptop moved".to_string()
                } else {
                    format!("{} is down", name(p.link))
                }
            });
            // The first route is not a switch; each later change of link is.
            let switches = prev
                .as_ref()
                .map_or(0, |p| p.switches + u64::from(p.link != link));
            let since_ms = match &prev {
                Some(p) if !moved => p.since_ms,
                _ => now_ms(),
            };
            let why = if moved {
                why
            } else {
                prev.as_ref().and_then(|p| p.why.clone())
            };
            let mut vias = prev.map(|p| p.vias).unwrap_or_default();
            // Bounded: one address per link.
            if g.links.get(link).is_some() {
                vias.insert(link, via);
            }
            g.agents.insert(
                global,
                Agent {
                    link,
                    vias,
                    since_ms,
                    switches,
                    why: why.clone(),
                },
            );
            moved.then_some(Event::Switch {
                global,
                from,
                to,
                via,
                why,
            })
        };
        if let Some(e) = event {
            self.emit(e);
        }
    }

    /// A P-Handoff client's route is gone.
    pub fn left(&self, global: Ipv4Addr) {
        self.lock().agents.remove(&global);
        self.emit(Event::Left { global });
    }

    /// Everything as it is now.
    pub fn snapshot(&self) -> Snapshot {
        let now = now_ms();
        let now_s = now / 1000;
        let proxy = self.proxy.get().map(|p| p.counters());
        let g = self.lock();
        let link_of = |a: Ipv4Addr| g.links.iter().position(|l| l.subnet.contains(&a));
        let mut links: Vec<LinkView> = g
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| LinkView {
                name: l.name.clone(),
                kind: l.kind.clone(),
                interface: l.interface.clone(),
                present: g.present.get(i).copied().unwrap_or(false),
                address: l.address.clone(),
                pool_size: l.pool_size,
                pool_used: 0,
                exhausted: g.exhausted.get(i).copied().unwrap_or(0),
                l2_id: g
                    .bt_address
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| l.l2_id.clone()),
                rx_bytes: if_counter(&l.interface, "rx_bytes"),
                tx_bytes: if_counter(&l.interface, "tx_bytes"),
            })
            .collect();
        // Devices by client key, from the lease records that are still meaningful.
        let mut devices: BTreeMap<Vec<u8>, DeviceView> = BTreeMap::new();
        let mut latest: BTreeMap<Vec<u8>, (u64, usize)> = BTreeMap::new();
        for l in g.leases.values() {
            if l.state == LeaseState::Declined || l.client.is_empty() {
                continue;
            }
            let bound = l.state == LeaseState::Bound && l.expires > now_s;
            if !bound && l.expires + 3600 < now_s {
                continue;
            }
            let Some(li) = link_of(l.addr) else { continue };
            if bound {
                if let Some(v) = links.get_mut(li) {
                    v.pool_used += 1;
                }
            }
            let d = devices.entry(l.client.clone()).or_default();
            d.hostname = l.hostname.clone().or(d.hostname.take());
            d.mac = l.mac.map(mac_text).or(d.mac.take());
            let seen = g.seen.get(&l.addr).copied();
            if let Some(s) = seen {
                d.last_seen_ms = Some(d.last_seen_ms.map_or(s, |x| x.max(s)));
            }
            // The latest lease's link is the radio, unless P-Handoff says otherwise.
            let order = seen.unwrap_or(l.expires * 1000);
            let e = latest.entry(l.client.clone()).or_insert((order, li));
            if bound && order >= e.0 {
                *e = (order, li);
            }
            d.leases.push(LeaseView {
                link: g.links[li].name.clone(),
                address: l.addr,
                expires: l.expires,
                state: if bound { "bound" } else { "released" }.into(),
                reserved: g.links[li].reservations.contains(&l.addr),
            });
        }
        for (key, d) in devices.iter_mut() {
            d.radio = latest.get(key).map(|(_, li)| g.links[*li].name.clone());
        }
        // An agent is one device whatever the number of its radios (each with its own MAC
        // and lease): the entries holding its addresses become one, named by the entry on
        // the link it uses now.
        let mut devices: Vec<DeviceView> = devices.into_values().collect();
        for (global, a) in &g.agents {
            let holds = |d: &DeviceView| {
                d.leases
                    .iter()
                    .any(|l| a.vias.values().any(|v| *v == l.address))
            };
            let now_via = a.vias.get(&a.link).copied();
            let (mine, rest): (Vec<DeviceView>, Vec<DeviceView>) =
                devices.into_iter().partition(|d| holds(d));
            devices = rest;
            let mut merged = DeviceView::default();
            for d in mine {
                let current = d.leases.iter().any(|l| Some(l.address) == now_via);
                if current || merged.mac.is_none() {
                    merged.mac = d.mac.clone().or(merged.mac.take());
                    merged.hostname = d.hostname.clone().or(merged.hostname.take());
                }
                merged.last_seen_ms = merged.last_seen_ms.max(d.last_seen_ms);
                merged.leases.extend(d.leases);
            }
            merged.leases.sort_by(|x, y| x.link.cmp(&y.link));
            merged.global = Some(*global);
            merged.radio = g.links.get(a.link).map(|l| l.name.clone());
            merged.last_switch_ms = (a.switches > 0).then_some(a.since_ms);
            merged.switches = a.switches;
            merged.last_switch_why = a.why.clone();
            devices.push(merged);
        }
        devices.sort_by(|x, y| x.hostname.cmp(&y.hostname).then(x.mac.cmp(&y.mac)));
        let mut counters = BTreeMap::new();
        let c = &g.dhcp;
        counters.insert(
            "dhcp".to_string(),
            [
                ("received", c.received),
                ("malformed", c.malformed),
                ("wrong_op", c.wrong_op),
                ("ignored", c.ignored),
                ("unknown_relay", c.unknown_relay),
                ("refused_relay", c.refused_relay),
                ("rate_limited", c.rate_limited),
                ("exhausted", c.exhausted),
                ("offers", c.offers),
                ("offers_outstanding", g.offers),
                ("acks", c.acks),
                ("unwritten", c.unwritten),
                ("naks", c.naks),
                ("informs", c.informs),
                ("releases", c.releases),
                ("declines", c.declines),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
        if let Some(p) = proxy {
            counters.insert("proxy".into(), p);
        }
        if !g.handoff.is_empty() {
            counters.insert("handoff".into(), g.handoff.clone());
        }
        for (k, v) in &g.extra {
            counters.insert(k.clone(), v.clone());
        }
        Snapshot {
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: self.started_ms,
            now_ms: now,
            config: g.config.clone(),
            identity: self.identity.get().cloned(),
            proxy_congestion: self.congestion.get().cloned(),
            links,
            devices,
            counters,
        }
    }
}

/// A link's L2 identity as text: the SSID, or a Bluetooth address.
fn l2_text(l: &crate::config::LinkConfig) -> String {
    match l.kind {
        phandoff::wire::LinkKind::Bluetooth if l.l2_id.len() == 6 => {
            let mut m = [0u8; 6];
            m.copy_from_slice(&l.l2_id);
            mac_text(m)
        }
        _ => String::from_utf8_lossy(&l.l2_id).into_owned(),
    }
}

/// An interface counter from sysfs (0 when the interface is missing).
fn if_counter(interface: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/statistics/{name}"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
