//! The Connection Manager's state and decisions, without IO: the link table, the handoff
//! ledger, and the next step, each call with an explicit `now`. The async shell (`mod.rs`)
//! runs discovery, the P-Handoff client, events and the published path; it feeds their
//! results in here and carries out the [`Step`]s this returns. Unit tests (`core_tests.rs`)
//! drive it with a virtual clock.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::links::{Iface, Snapshot};
use crate::pac::PacHandle;
use crate::path::{Gap, Meter};
use crate::policy::{Candidate, Decision, Kind, Policy, PolicyConfig, Reason};

/// What discovery found for an interface.
pub enum Disc {
    /// Not finished.
    Running,
    /// A radio of the HomeSpot we trust here: its link number and kind.
    HomeSpot { link: u8, kind: Kind },
    /// Any other network: its proxy configuration.
    Plain {
        pac: Option<PacHandle>,
        wpad: Option<String>,
        router: Option<Ipv4Addr>,
        cached: bool,
    },
}

impl Disc {
    /// A plain network with no proxy configuration: DIRECT.
    pub fn direct() -> Disc {
        Disc::Plain {
            pac: None,
            wpad: None,
            router: None,
            cached: false,
        }
    }
}

/// One interface with an address.
pub struct Link {
    pub iface: Iface,
    /// Its configured kind (used on plain networks; a HomeSpot's advert says its own).
    pub kind: Kind,
    /// When its address appeared.
    pub addr_at: Instant,
    pub disc: Disc,
    /// When its discovery last finished.
    pub disc_done: Option<Instant>,
    /// Bumped at every new discovery: older results are dropped.
    pub generation: u64,
}

/// The HomeSpot's radios as the P-Handoff client sees them.
pub trait Radios {
    /// Associated and answering probes over HomeSpot link `link`.
    fn usable(&self, link: u8) -> bool;
    /// A switch is under way.
    fn switching(&self) -> bool;
}

/// How a handoff moves the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffKind {
    /// A new path; the local proxy restarts in-flight requests.
    L7Restart,
    /// Between a HomeSpot's radios: the host routes move, the path stays.
    PHandoff,
    /// Onto a HomeSpot from elsewhere: a P-Handoff and a new path.
    PHandoffRestart,
}

impl HandoffKind {
    /// Its name in events.
    pub fn name(self) -> &'static str {
        match self {
            HandoffKind::L7Restart => "l7-restart",
            HandoffKind::PHandoff => "p-handoff",
            HandoffKind::PHandoffRestart => "p-handoff+restart",
        }
    }
}

/// A handoff, until its interruption is measured.
pub struct Handoff {
    pub id: u64,
    pub kind: HandoffKind,
    pub from: String,
    pub to: String,
    pub reason: Reason,
    /// The link whose loss started it.
    pub lost: Option<String>,
    pub started: Instant,
    /// The P-Handoff switch's round trip.
    pub signalling: Option<Duration>,
    /// Whether the target's discovery finished before the handoff started.
    pub cached: bool,
    pub done: Option<Instant>,
}

impl Handoff {
    /// "user", "preferred; wlan0 lost", ...
    pub fn reason_text(&self) -> String {
        match &self.lost {
            Some(l) => format!("{}; {l} lost", self.reason.name()),
            None => self.reason.name().to_string(),
        }
    }
}

/// What the shell does next.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// P-Handoff onto HomeSpot link `link`, interface `to`, now.
    Switch { link: u8, to: String },
    /// A planned P-Handoff: hold new data off the old radio and switch at `until`.
    Drain {
        link: u8,
        to: String,
        until: Instant,
    },
    /// Publish interface `to` (a plain network, address `addr`) as the path; in-flight
    /// requests restart on it. Handoff `id` is done.
    Plain { to: String, addr: Ipv4Addr, id: u64 },
    /// No usable link: publish no path (requests wait).
    Hibernate,
}

/// What a new snapshot of the interfaces changed.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Interfaces gone (and their HomeSpot link, if any).
    pub down: Vec<(String, Option<u8>)>,
    /// Interfaces (new or with a new address) to run discovery on, with their generation.
    pub up: Vec<(String, u64)>,
}

/// The state.
pub struct Core {
    pub links: BTreeMap<String, Link>,
    policy: Policy,
    meter: Arc<Meter>,
    /// The link in use.
    pub current: Option<String>,
    previous: Option<String>,
    none_since: Option<Instant>,
    /// The path in use goes through the HomeSpot (a P-Handoff keeps it).
    on_homespot: bool,
    seq: u64,
    pub handoffs: Vec<Handoff>,
    loss: Option<(u64, Instant, String)>,
    /// A planned P-Handoff waiting for the old radio's queue: link, interface, until.
    pub draining: Option<(u8, String, Instant)>,
    drain: Duration,
}

/// A handoff's interruption is reported this long after it is done at the latest.
const REPORT_AFTER_DONE: Duration = Duration::from_secs(5);
/// ... and this long after it started.
const REPORT_AFTER_START: Duration = Duration::from_secs(60);

impl Core {
    /// No links yet. `drain`: how long a planned P-Handoff drains the old radio (zero: never).
    pub fn new(policy: PolicyConfig, drain: Duration, meter: Arc<Meter>, now: Instant) -> Core {
        Core {
            links: BTreeMap::new(),
            policy: Policy::new(policy),
            meter,
            current: None,
            previous: None,
            none_since: Some(now),
            on_homespot: false,
            seq: 0,
            handoffs: Vec::new(),
            loss: None,
            draining: None,
            drain,
        }
    }

    /// The interfaces now: links whose address or carrier went are dropped (a loss when it
    /// was the one in use); new addresses start discovery.
    pub fn snapshot(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        managed: impl Fn(&str) -> bool,
        kind_of: impl Fn(&str) -> Kind,
    ) -> Changes {
        let mut out = Changes::default();
        let gone: Vec<String> = self
            .links
            .keys()
            .filter(|n| !snap.get(*n).is_some_and(|i| i.up && i.addr.is_some()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(l) = self.links.remove(&name) {
                let hs_link = match l.disc {
                    Disc::HomeSpot { link, .. } => Some(link),
                    _ => None,
                };
                if self.current.as_deref() == Some(&name) {
                    self.start_loss(now, &name);
                }
                out.down.push((name, hs_link));
            }
        }
        for (name, iface) in snap {
            if !managed(name) || !iface.up || iface.addr.is_none() {
                continue;
            }
            if self
                .links
                .get(name)
                .is_some_and(|l| l.iface.addr == iface.addr)
            {
                continue;
            }
            let generation = self.links.get(name).map(|l| l.generation + 1).unwrap_or(0);
            self.links.insert(
                name.clone(),
                Link {
                    iface: iface.clone(),
                    kind: kind_of(name),
                    addr_at: now,
                    disc: Disc::Running,
                    disc_done: None,
                    generation,
                },
            );
            out.up.push((name.clone(), generation));
        }
        out
    }

    /// Discovery on `name` (of `generation`) finished with `disc`. False: a stale result,
    /// dropped.
    pub fn found(&mut self, now: Instant, name: &str, generation: u64, disc: Disc) -> bool {
        match self.links.get_mut(name) {
            Some(l) if l.generation == generation => {
                l.disc = disc;
                l.disc_done = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Discovery again on `name` (a new generation; `refresh_at`: a refresh of a plain
    /// link's PAC, which keeps its current result until the new one arrives); `None` if it
    /// is gone.
    pub fn rediscover(&mut self, name: &str, refresh_at: Option<Instant>) -> Option<u64> {
        let l = self.links.get_mut(name)?;
        l.generation += 1;
        if refresh_at.is_some() {
            l.disc_done = refresh_at;
        }
        Some(l.generation)
    }

    /// The links whose discovery result is `which`.
    pub fn names(&self, which: impl Fn(&Disc) -> bool) -> Vec<String> {
        self.links
            .iter()
            .filter(|(_, l)| which(&l.disc))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Plain links whose discovery is older than `max` (their PAC is re-fetched).
    pub fn stale_plain(&self, now: Instant, max: Duration) -> Vec<String> {
        self.links
            .iter()
            .filter(|(_, l)| {
                matches!(l.disc, Disc::Plain { .. })
                    && l.disc_done.is_some_and(|d| now.duration_since(d) > max)
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The links the policy may choose from.
    pub fn candidates(&self, radios: &dyn Radios) -> Vec<Candidate> {
        let mut out = Vec::new();
        for (name, l) in &self.links {
            match &l.disc {
                Disc::Running => {}
                Disc::HomeSpot { link, kind } => {
                    if radios.usable(*link) {
                        out.push(Candidate {
                            name: name.clone(),
                            kind: *kind,
                            homespot: true,
                        });
                    }
                }
                Disc::Plain { .. } => out.push(Candidate {
                    name: name.clone(),
                    kind: l.kind,
                    homespot: false,
                }),
            }
        }
        out
    }

    /// The idle rule would move to the low-power link, and none is usable (bring one up).
    pub fn wants_low_power(&self, now: Instant, radios: &dyn Radios) -> bool {
        let cands = self.candidates(radios);
        self.policy
            .wants_low_power(now, self.current.as_deref(), &cands)
    }

    /// The policy (or the user's choice, `user`) applied now. `flows`: requests are in
    /// flight through the local proxy (a planned P-Handoff then drains the old radio).
    pub fn evaluate(
        &mut self,
        now: Instant,
        radios: &dyn Radios,
        user: Option<&str>,
        flows: bool,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        let cands = self.candidates(radios);
        let current_ok = self
            .current
            .as_ref()
            .is_some_and(|c| cands.iter().any(|x| &x.name == c));
        if !current_ok && self.current.is_some() && cands.is_empty() {
            self.hibernate(now);
            steps.push(Step::Hibernate);
        }
        let decision = match user {
            Some(to) => {
                self.policy.hold(to);
                Some(Decision {
                    to: to.to_string(),
                    reason: Reason::User,
                })
            }
            None => {
                if self.draining.is_some() || radios.switching() {
                    return steps;
                }
                let cur = self.current.clone().filter(|_| current_ok);
                self.policy
                    .decide(now, self.meter.total(), cur.as_deref(), &cands)
            }
        };
        let Some(d) = decision else { return steps };
        if current_ok && self.current.as_deref() == Some(d.to.as_str()) {
            return steps;
        }
        steps.extend(self.move_to(now, &d.to, d.reason, flows));
        steps
    }

    fn start_loss(&mut self, now: Instant, name: &str) {
        self.seq += 1;
        self.meter.loss_detected(self.seq, now);
        self.loss = Some((self.seq, now, name.to_string()));
    }

    fn hibernate(&mut self, now: Instant) {
        self.none_since.get_or_insert(now);
        if let Some(c) = self.current.take() {
            self.previous = Some(c);
        }
        self.on_homespot = false;
    }

    fn move_to(&mut self, now: Instant, to: &str, reason: Reason, flows: bool) -> Option<Step> {
        let l = self.links.get(to)?;
        let (id, started, lost) = match self.loss.take() {
            Some((id, t, lost)) => (id, t, Some(lost)),
            None => {
                self.seq += 1;
                self.meter.handoff_started(self.seq, now);
                (self.seq, now, None)
            }
        };
        let from = self
            .current
            .clone()
            .or_else(|| self.previous.clone())
            .unwrap_or_default();
        let mut h = Handoff {
            id,
            kind: HandoffKind::L7Restart,
            from,
            to: to.to_string(),
            reason,
            lost,
            started,
            signalling: None,
            cached: l.disc_done.is_some_and(|d| d < started),
            done: None,
        };
        let step = match &l.disc {
            Disc::Running => return None,
            Disc::HomeSpot { link, .. } => {
                h.kind = HandoffKind::PHandoff;
                let planned =
                    h.lost.is_none() && self.on_homespot && !self.drain.is_zero() && flows;
                if planned {
                    let until = now + self.drain;
                    self.draining = Some((*link, to.to_string(), until));
                    Step::Drain {
                        link: *link,
                        to: to.to_string(),
                        until,
                    }
                } else {
                    Step::Switch {
                        link: *link,
                        to: to.to_string(),
                    }
                }
            }
            Disc::Plain { cached, .. } => {
                let (addr, _) = l.iface.addr?;
                h.cached |= *cached;
                let addr_at = l.addr_at;
                self.set_current(now, to, false);
                h.done = Some(now);
                let recent = started
                    .checked_sub(Duration::from_secs(30))
                    .is_none_or(|t| addr_at >= t);
                self.meter
                    .handoff_done_at(id, Some(addr_at).filter(|_| recent), now);
                Step::Plain {
                    to: to.to_string(),
                    addr,
                    id,
                }
            }
        };
        self.handoffs.push(h);
        self.policy.switched(now);
        Some(step)
    }

    /// `link` is now the path; whether in-flight requests restart (a new path, or after a
    /// long outage).
    fn set_current(&mut self, now: Instant, link: &str, homespot: bool) -> bool {
        let long_outage = self
            .none_since
            .take()
            .is_some_and(|t| now.duration_since(t) > Duration::from_secs(1));
        let restart = !(homespot && self.on_homespot) || long_outage;
        self.current = Some(link.to_string());
        self.on_homespot = homespot;
        restart
    }

    /// A drain that is due: the switch to make now.
    pub fn drain_due(&mut self, now: Instant) -> Option<Step> {
        if self.draining.as_ref().is_none_or(|(_, _, t)| now < *t) {
            return None;
        }
        let (link, to, _) = self.draining.take()?;
        Some(Step::Switch { link, to })
    }

    /// The P-Handoff client moved the routes to `name`, a switch that took `took`. Returns
    /// whether in-flight requests restart (the path was not the HomeSpot before) and the
    /// handoff it completed.
    pub fn switched(&mut self, now: Instant, name: &str, took: Duration) -> (bool, Option<u64>) {
        let was_homespot = self.on_homespot;
        let restart = self.set_current(now, name, true);
        let Some(h) = self
            .handoffs
            .iter_mut()
            .rev()
            .find(|h| h.kind == HandoffKind::PHandoff && h.done.is_none())
        else {
            return (restart, None);
        };
        h.done = Some(now);
        h.signalling = Some(took);
        if !was_homespot {
            h.kind = HandoffKind::PHandoffRestart;
        }
        self.meter.handoff_done_at(h.id, None, now);
        (restart, Some(h.id))
    }

    /// The HomeSpot's link `link` (interface `name`, if we have one there) stopped answering
    /// probes. The steps to take now.
    pub fn link_dead(
        &mut self,
        now: Instant,
        link: u8,
        name: Option<&str>,
        radios: &dyn Radios,
        flows: bool,
    ) -> Vec<Step> {
        let source_died = name.is_some() && name == self.current.as_deref();
        match self.draining.take() {
            // The drain's target died: the planned move is off.
            Some((l, _, _)) if l == link => {}
            // The radio being drained died: nothing more comes over it, so the move happens
            // now rather than when the drain would have ended.
            Some((l, to, _)) if source_died => return vec![Step::Switch { link: l, to }],
            other => self.draining = other,
        }
        if let Some(n) = name.filter(|_| source_died) {
            self.start_loss(now, n);
        }
        self.evaluate(now, radios, None, flows)
    }

    /// The meter measured a handoff's interruption: the handoff, done with.
    pub fn gap(&mut self, g: &Gap) -> Option<Handoff> {
        let i = self.handoffs.iter().position(|h| h.id == g.handoff)?;
        Some(self.handoffs.remove(i))
    }

    /// Handoffs the meter will not report on any more (to report with no interruption).
    pub fn expire(&mut self, now: Instant) -> Vec<Handoff> {
        self.meter.expire(now);
        let (old, keep) = std::mem::take(&mut self.handoffs)
            .into_iter()
            .partition(|h| {
                h.done
                    .is_some_and(|d| now.duration_since(d) > REPORT_AFTER_DONE)
                    || now.duration_since(h.started) > REPORT_AFTER_START
            });
        self.handoffs = keep;
        old
    }

    /// Bytes carried so far (the meter's count).
    pub fn bytes(&self) -> u64 {
        self.meter.total()
    }

    /// The handoff under way with this id.
    pub fn handoff(&self, id: u64) -> Option<&Handoff> {
        self.handoffs.iter().find(|h| h.id == id)
    }
}
