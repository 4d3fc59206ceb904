//! Which link to use, sans-IO: prefer a HomeSpot's links, then the user's order (kinds or
//! interface names); at a HomeSpot an optional throughput rule keeps a low-power link while
//! idle, moves to a faster link of the same HomeSpot when sustained throughput exceeds a
//! threshold, and back after an idle period. Time is passed in; nothing here reads a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// 802.11.
    Wifi,
    /// Bluetooth PAN.
    Bluetooth,
    /// Wired.
    Ethernet,
    /// Unknown.
    Other,
}

impl Kind {
    /// From a config word.
    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "wifi" | "wlan" | "802.11" => Some(Kind::Wifi),
            "bluetooth" | "bt" => Some(Kind::Bluetooth),
            "ethernet" | "eth" | "wired" => Some(Kind::Ethernet),
            "other" => Some(Kind::Other),
            _ => None,
        }
    }

    /// Its config word.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Wifi => "wifi",
            Kind::Bluetooth => "bluetooth",
            Kind::Ethernet => "ethernet",
            Kind::Other => "other",
        }
    }

    fn speed(self) -> u8 {
        match self {
            Kind::Ethernet => 3,
            Kind::Wifi => 2,
            Kind::Other => 1,
            Kind::Bluetooth => 0,
        }
    }
}

impl From<phandoff::wire::LinkKind> for Kind {
    fn from(k: phandoff::wire::LinkKind) -> Kind {
        use phandoff::wire::LinkKind as L;
        match k {
            L::Wifi => Kind::Wifi,
            L::Bluetooth => Kind::Bluetooth,
            L::Ethernet => Kind::Ethernet,
        }
    }
}

/// The policy's settings.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// A HomeSpot's links before any other.
    pub prefer_homespot: bool,
    /// Preference order: interface names or kind words, best first.
    pub order: Vec<String>,
    /// Whether the throughput rule runs (at a HomeSpot only).
    pub throughput_rule: bool,
    /// The kind kept while idle.
    pub low_power: Kind,
    /// Above this rate (bit/s), sustained, leave the low-power link.
    pub up_bps: u64,
    /// For this long.
    pub sustain: Duration,
    /// Below this rate (bit/s) for `idle`, go back to the low-power link.
    pub idle_bps: u64,
    /// The idle period.
    pub idle: Duration,
}

/// A usable link (address known, discovery done, alive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Interface name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// On the HomeSpot we are associated with.
    pub homespot: bool,
}

/// Why a move was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The best usable link by the configured order (also: the only one left).
    Preferred,
    /// Sustained throughput on the low-power link: up to a faster one.
    Throughput,
    /// Idle on a fast link: down to the low-power one.
    Idle,
    /// The user asked for this link.
    User,
}

impl Reason {
    /// Its name in events and logs.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Preferred => "preferred",
            Reason::Throughput => "throughput",
            Reason::Idle => "idle",
            Reason::User => "user",
        }
    }
}

/// A decision to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The interface to use.
    pub to: String,
    /// Why.
    pub reason: Reason,
}

/// The policy's state: when we last moved and recent byte counts.
pub struct Policy {
    cfg: PolicyConfig,
    since: Option<Instant>,
    samples: VecDeque<(Instant, u64)>,
    held: Option<String>,
}

impl Policy {
    /// A policy with `cfg`.
    pub fn new(cfg: PolicyConfig) -> Policy {
        Policy {
            cfg,
            since: None,
            samples: VecDeque::new(),
            held: None,
        }
    }

    /// We moved at `now` (by this policy, by the user or by a loss): rates start over.
    pub fn switched(&mut self, now: Instant) {
        self.since = Some(now);
        self.samples.clear();
    }

    /// The user chose `link`: it stays while usable; only the throughput rule may move away
    /// from it (a rule the user configured).
    pub fn hold(&mut self, link: &str) {
        self.held = Some(link.to_string());
    }

    fn rank(&self, c: &Candidate) -> usize {
        self.cfg
            .order
            .iter()
            .position(|o| *o == c.name || Kind::parse(o) == Some(c.kind))
            .unwrap_or(self.cfg.order.len())
    }

    /// Rates (bit/s) over each half second of the last `w`, if we have been on this link
    /// that long: "sustained" means every slice, not the mean (a burst is not sustained).
    fn slice_rates(&self, now: Instant, w: Duration) -> Option<Vec<u64>> {
        let since = self.since?;
        if now.checked_duration_since(since)? < w {
            return None;
        }
        let slice = Duration::from_millis(500).min(w);
        let n = (w.as_millis() / slice.as_millis()).max(1) as u32;
        let at = |t: Instant| self.samples.iter().find(|(s, _)| *s >= t).copied();
        let mut out = Vec::new();
        for i in 0..n {
            let a = at(now - w + slice * i)?;
            let b = at(now - w + slice * (i + 1)).or_else(|| self.samples.back().copied())?;
            let secs = b.0.duration_since(a.0).as_secs_f64();
            if secs <= 0.0 {
                return None;
            }
            out.push(((b.1 - a.1) as f64 * 8.0 / secs) as u64);
        }
        Some(out)
    }

    /// The idle rule would move to the low-power kind, but no usable link of the HomeSpot is
    /// of that kind (so it should be brought up): the link in use is a faster link of a
    /// HomeSpot and every half second of the last `idle` was below `idle_bps`. Uses the byte
    /// counts [`Policy::decide`] recorded.
    pub fn wants_low_power(
        &self,
        now: Instant,
        current: Option<&str>,
        cands: &[Candidate],
    ) -> bool {
        if !self.cfg.throughput_rule {
            return false;
        }
        let Some(cur) = current.and_then(|n| cands.iter().find(|c| c.name == n)) else {
            return false;
        };
        if !cur.homespot
            || cur.kind == self.cfg.low_power
            || cands
                .iter()
                .any(|c| c.homespot && c.kind == self.cfg.low_power)
        {
            return false;
        }
        self.slice_rates(now, self.cfg.idle)
            .is_some_and(|r| r.iter().all(|r| *r < self.cfg.idle_bps))
    }

    /// Where to be, given `total` bytes carried so far, the link in use and the usable links.
    /// `None`: stay.
    pub fn decide(
        &mut self,
        now: Instant,
        total: u64,
        current: Option<&str>,
        cands: &[Candidate],
    ) -> Option<Decision> {
        self.samples.push_back((now, total));
        let keep = self.cfg.sustain.max(self.cfg.idle) + Duration::from_secs(1);
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > keep)
        {
            self.samples.pop_front();
        }
        let at_home = self.cfg.prefer_homespot && cands.iter().any(|c| c.homespot);
        let group: Vec<&Candidate> = cands.iter().filter(|c| !at_home || c.homespot).collect();
        let best = group.iter().min_by_key(|c| self.rank(c))?;
        let held = current.is_some() && self.held.as_deref() == current;
        let cur = current.and_then(|n| {
            let pool: Vec<&Candidate> = if held {
                cands.iter().collect()
            } else {
                group.clone()
            };
            pool.into_iter().find(|c| c.name == n)
        });
        let Some(cur) = cur else {
            self.held = None;
            return Some(Decision {
                to: best.name.clone(),
                reason: Reason::Preferred,
            });
        };
        if !(self.cfg.throughput_rule && cur.homespot) {
            if !held && self.rank(best) < self.rank(cur) {
                return Some(Decision {
                    to: best.name.clone(),
                    reason: Reason::Preferred,
                });
            }
            return None;
        }
        if cur.kind == self.cfg.low_power {
            let fast = group
                .iter()
                .filter(|c| c.kind != self.cfg.low_power)
                .max_by_key(|c| (c.kind.speed(), std::cmp::Reverse(self.rank(c))))?;
            if self
                .slice_rates(now, self.cfg.sustain)?
                .iter()
                .all(|r| *r > self.cfg.up_bps)
            {
                return Some(Decision {
                    to: fast.name.clone(),
                    reason: Reason::Throughput,
                });
            }
        } else if let Some(low) = group.iter().find(|c| c.kind == self.cfg.low_power) {
            if self
                .slice_rates(now, self.cfg.idle)?
                .iter()
                .all(|r| *r < self.cfg.idle_bps)
            {
                return Some(Decision {
                    to: low.name.clone(),
                    reason: Reason::Idle,
                });
            }
        }
        None
    }
}

/// The settings the unit tests use: HomeSpot first, then Ethernet, Wi-Fi, Bluetooth; up at
/// 1 Mbit/s sustained for 2 s, down below 50 kbit/s for 10 s.
#[cfg(test)]
pub(crate) fn test_config() -> PolicyConfig {
    PolicyConfig {
        prefer_homespot: true,
        order: vec!["ethernet".into(), "wifi".into(), "bluetooth".into()],
        throughput_rule: true,
        low_power: Kind::Bluetooth,
        up_bps: 1_000_000,
        sustain: Duration::from_secs(2),
        idle_bps: 50_000,
        idle: Duration::from_secs(10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PolicyConfig {
        test_config()
    }

    fn c(name: &str, kind: Kind, homespot: bool) -> Candidate {
        Candidate {
            name: name.into(),
            kind,
            homespot,
        }
    }

    #[test]
    fn homespot_first_then_order() {
        let mut p = Policy::new(cfg());
        let t = Instant::now();
        let cands = [
            c("eth2", Kind::Ethernet, false),
            c("eth0", Kind::Wifi, true),
            c("eth1", Kind::Bluetooth, true),
        ];
        assert_eq!(
            p.decide(t, 0, None, &cands).map(|d| d.to),
            Some("eth0".into())
        );
        assert_eq!(
            p.decide(t, 0, Some("eth2"), &cands).map(|d| d.to),
            Some("eth0".into())
        );
        let away = [
            c("eth2", Kind::Ethernet, false),
            c("eth3", Kind::Wifi, false),
        ];
        assert_eq!(
            p.decide(t, 0, Some("eth0"), &away).map(|d| d.to),
            Some("eth2".into())
        );
        assert_eq!(p.decide(t, 0, None, &[]), None);
    }

    #[test]
    fn throughput_moves_up_when_sustained_and_back_when_idle() {
        let mut p = Policy::new(cfg());
        let cands = [
            c("eth0", Kind::Wifi, true),
            c("eth1", Kind::Bluetooth, true),
        ];
        let t0 = Instant::now();
        p.switched(t0);
        let mut bytes = 0u64;
        let mut moved = None;
        // 1.9 Mbit/s on Bluetooth: after the 2 s sustain window, move to Wi-Fi.
        for i in 1..=40u64 {
            bytes += 1_900_000 / 8 / 10;
            let now = t0 + Duration::from_millis(100 * i);
            if let Some(d) = p.decide(now, bytes, Some("eth1"), &cands) {
                moved = Some((i, d));
                break;
            }
        }
        let (i, d) = moved.expect("moved");
        assert_eq!((d.to.as_str(), d.reason), ("eth0", Reason::Throughput));
        assert!((20..=22).contains(&i), "after {i} ticks");
        // A short burst is not sustained.
        let mut p2 = Policy::new(cfg());
        p2.switched(t0);
        let mut b = 0;
        for i in 1..=40u64 {
            if i < 5 {
                b += 1_000_000;
            }
            assert_eq!(
                p2.decide(t0 + Duration::from_millis(100 * i), b, Some("eth1"), &cands),
                None
            );
        }
        // On Wi-Fi, idle for 10 s: back to Bluetooth.
        p.switched(t0);
        let mut back = None;
        for i in 1..=150u64 {
            if let Some(d) = p.decide(
                t0 + Duration::from_millis(100 * i),
                bytes,
                Some("eth0"),
                &cands,
            ) {
                back = Some((i, d));
                break;
            }
        }
        let (i, d) = back.expect("moved back");
        assert_eq!((d.to.as_str(), d.reason), ("eth1", Reason::Idle));
        assert!((100..=102).contains(&i));
        // No Bluetooth link up: idle on Wi-Fi, the rule wants one brought up (not before).
        let wifi_only = [c("eth0", Kind::Wifi, true)];
        p.switched(t0);
        let mut wanted = None;
        for i in 1..=150u64 {
            let now = t0 + Duration::from_millis(100 * i);
            assert_eq!(p.decide(now, bytes, Some("eth0"), &wifi_only), None);
            if p.wants_low_power(now, Some("eth0"), &wifi_only) {
                wanted = Some(i);
                break;
            }
        }
        assert!(
            wanted.is_some_and(|i| (100..=102).contains(&i)),
            "{wanted:?}"
        );
        assert!(!p.wants_low_power(t0 + Duration::from_secs(20), Some("eth0"), &cands));
    }

    #[test]
    fn without_the_rule_the_order_wins() {
        let mut p = Policy::new(PolicyConfig {
            throughput_rule: false,
            order: vec!["eth1".into(), "wifi".into()],
            ..cfg()
        });
        let cands = [
            c("eth0", Kind::Wifi, true),
            c("eth1", Kind::Bluetooth, true),
        ];
        let t = Instant::now();
        assert_eq!(
            p.decide(t, 0, Some("eth0"), &cands).map(|d| d.to),
            Some("eth1".into())
        );
        assert_eq!(p.decide(t, 0, Some("eth1"), &cands), None);
        // The user's choice holds while usable.
        p.hold("eth0");
        assert_eq!(p.decide(t, 0, Some("eth0"), &cands), None);
        assert_eq!(
            p.decide(t, 0, Some("eth0"), &cands[1..]).map(|d| d.to),
            Some("eth1".into())
        );
        assert_eq!(p.decide(t, 0, Some("eth1"), &cands), None);
    }
}
