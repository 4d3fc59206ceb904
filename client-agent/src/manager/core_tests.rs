//! The Connection Manager's core with a virtual clock: which link, when, and what the ledger
//! says about each move. The links, the HomeSpot's radios and the bytes are made up here;
//! the journey and schedule tests run the same core with real ones.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::core::{Core, Disc, HandoffKind, Radios, Step};
use crate::links::{Iface, Snapshot};
use crate::path::{Gap, Meter};
use crate::policy::{Kind, PolicyConfig, Reason};

/// HomeSpot link numbers.
const WIFI: u8 = 1;
const BT: u8 = 2;

#[derive(Default)]
struct Fake {
    usable: BTreeSet<u8>,
    switching: bool,
}

impl Radios for Fake {
    fn usable(&self, link: u8) -> bool {
        self.usable.contains(&link)
    }
    fn switching(&self) -> bool {
        self.switching
    }
}

fn policy() -> PolicyConfig {
    crate::policy::test_config()
}

fn iface(index: u32, addr: [u8; 4]) -> Iface {
    Iface {
        index,
        mac: [2, 0, 0, 0, 0, index as u8],
        up: true,
        addr: Some((Ipv4Addr::from(addr), 24)),
    }
}

/// The test's world: the core, its meter's reports, the clock.
struct Bed {
    core: Core,
    gaps: mpsc::UnboundedReceiver<Gap>,
    meter: Arc<Meter>,
    t0: Instant,
    radios: Fake,
    snap: Snapshot,
}

impl Bed {
    fn new(drain_ms: u64) -> Bed {
        let (tx, gaps) = mpsc::unbounded_channel();
        let meter = Arc::new(Meter::new(tx));
        let t0 = Instant::now();
        Bed {
            core: Core::new(policy(), Duration::from_millis(drain_ms), meter.clone(), t0),
            gaps,
            meter,
            t0,
            radios: Fake::default(),
            snap: Snapshot::new(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// The interfaces change at `ms`; discovery on the new ones finishes at once with what
    /// `disc` says for each.
    fn links(&mut self, ms: u64, snap: Snapshot, disc: impl Fn(&str) -> Disc) {
        self.snap = snap;
        let now = self.at(ms);
        let ch = self.core.snapshot(
            now,
            &self.snap,
            |_| true,
            |n| {
                if n.starts_with("eth") {
                    Kind::Ethernet
                } else {
                    Kind::Wifi
                }
            },
        );
        for (name, g) in ch.up {
            assert!(self.core.found(now, &name, g, disc(&name)));
        }
    }

    fn evaluate(&mut self, ms: u64, user: Option<&str>, flows: bool) -> Vec<Step> {
        self.core.evaluate(self.at(ms), &self.radios, user, flows)
    }

    /// The P-Handoff switch to `name` completed at `ms`.
    fn switched(&mut self, ms: u64, name: &str) -> (bool, Option<u64>) {
        self.core
            .switched(self.at(ms), name, Duration::from_millis(2))
    }

    /// `bytes` every 10 ms from `from` to `to` (ms), evaluating every 100 ms as the shell's
    /// tick does; the steps seen.
    fn traffic(&mut self, from: u64, to: u64, bytes: usize, flows: bool) -> Vec<(u64, Step)> {
        let mut steps = Vec::new();
        let mut t = from;
        while t <= to {
            if bytes > 0 {
                self.meter.bytes_at(bytes, self.at(t));
            }
            if t % 100 == 0 {
                if let Some(s) = self.core.drain_due(self.at(t)) {
                    steps.push((t, s));
                }
                for s in self.evaluate(t, None, flows) {
                    steps.push((t, s));
                }
            }
            t += 10;
        }
        steps
    }
}

fn homespot_links() -> Snapshot {
    [
        ("wlan0".to_string(), iface(2, [10, 77, 1, 50])),
        ("bt0".to_string(), iface(3, [10, 77, 2, 50])),
    ]
    .into_iter()
    .collect()
}

fn homespot_disc(name: &str) -> Disc {
    match name {
        "wlan0" => Disc::HomeSpot {
            link: WIFI,
            kind: Kind::Wifi,
        },
        _ => Disc::HomeSpot {
            link: BT,
            kind: Kind::Bluetooth,
        },
    }
}

/// At a HomeSpot with Wi-Fi and Bluetooth usable: the bed on Wi-Fi (the preferred link)
/// with the first P-Handoff done at 5 ms.
fn at_home(drain_ms: u64) -> Bed {
    let mut b = Bed::new(drain_ms);
    b.links(0, homespot_links(), homespot_disc);
    // Nothing usable before the handshake: no step.
    assert_eq!(b.evaluate(0, None, false), vec![]);
    b.radios.usable = [WIFI, BT].into();
    let steps = b.evaluate(1, None, false);
    assert_eq!(
        steps,
        vec![Step::Switch {
            link: WIFI,
            to: "wlan0".into()
        }]
    );
    let (restart, id) = b.switched(5, "wlan0");
    assert!(restart, "the first path is new: in-flight requests restart");
    let h = b
        .core
        .handoff(id.expect("a handoff"))
        .expect("in the ledger");
    assert_eq!(h.kind, HandoffKind::PHandoffRestart);
    assert_eq!(h.reason, Reason::Preferred);
    assert_eq!(b.core.current.as_deref(), Some("wlan0"));
    b
}

#[test]
fn the_preferred_link_is_chosen_and_kept() {
    let mut b = at_home(300);
    // Stays while nothing changes (a steady download below the throughput rule's interest).
    let steps = b.traffic(100, 20_000, 1000, true);
    assert_eq!(steps, vec![]);
    // A plain Ethernet appears: the HomeSpot's links stay first.
    let mut snap = homespot_links();
    snap.insert("eth0".into(), iface(4, [192, 168, 9, 20]));
    b.links(20_100, snap, |_| Disc::direct());
    assert_eq!(b.evaluate(20_200, None, true), vec![]);
}

#[test]
fn the_users_switch_is_held() {
    let mut b = at_home(300);
    // The user picks Bluetooth while a download runs: a planned move drains the Wi-Fi queue
    // first, then switches.
    let steps = b.evaluate(1000, Some("bt0"), true);
    let until = b.at(1300);
    assert_eq!(
        steps,
        vec![Step::Drain {
            link: BT,
            to: "bt0".into(),
            until
        }]
    );
    assert_eq!(b.core.drain_due(b.at(1200)), None);
    assert_eq!(
        b.core.drain_due(b.at(1300)),
        Some(Step::Switch {
            link: BT,
            to: "bt0".into()
        })
    );
    let (restart, id) = b.switched(1305, "bt0");
    assert!(!restart, "a P-Handoff keeps the path: nothing restarts");
    let h = b.core.handoff(id.expect("handoff")).expect("ledger");
    assert_eq!(
        (h.kind, h.reason, h.from.as_str()),
        (HandoffKind::PHandoff, Reason::User, "wlan0")
    );
    // Wi-Fi ranks higher, but the user's choice holds (idle traffic: no rule moves it).
    let steps = b.traffic(1400, 30_000, 100, true);
    assert_eq!(steps, vec![]);
    assert_eq!(b.core.current.as_deref(), Some("bt0"));
}

#[test]
fn a_lost_link_moves_the_traffic_and_the_gap_is_reported() {
    let mut b = at_home(300);
    b.traffic(100, 2000, 1000, true);
    // Wi-Fi goes silent at 2000 ms; the probes find it dead at 2120 ms.
    b.radios.usable.remove(&WIFI);
    let steps = b
        .core
        .link_dead(b.at(2120), WIFI, Some("wlan0"), &b.radios, true);
    assert_eq!(
        steps,
        vec![Step::Switch {
            link: BT,
            to: "bt0".into()
        }],
        "a loss moves at once, with no drain"
    );
    let (_, id) = b.switched(2125, "bt0");
    let id = id.expect("handoff");
    {
        let h = b.core.handoff(id).expect("ledger");
        assert_eq!(h.reason_text(), "preferred; wlan0 lost");
        assert_eq!(h.started, b.at(2120));
    }
    // Bytes again from 2130 ms: the meter reports the handoff's interruption a second later.
    b.traffic(2130, 3500, 1000, true);
    // (The first handoff's window, still open, was reported when this one overtook it.)
    let g = std::iter::from_fn(|| b.gaps.try_recv().ok())
        .find(|g| g.handoff == id)
        .expect("a gap report");
    assert_eq!(g.gap, Duration::from_millis(130), "2000 -> 2130 ms");
    let h = b.core.gap(&g).expect("the handoff, done with");
    assert_eq!(h.id, id);
    assert!(b.core.handoff(id).is_none());
}

#[test]
fn homespot_then_plain_network_then_home_again() {
    let mut b = at_home(300);
    b.traffic(100, 1000, 1000, true);
    // Both HomeSpot interfaces go (out of range); a foreign Wi-Fi is there.
    let foreign: Snapshot = [("wlan1".to_string(), iface(5, [192, 168, 50, 7]))]
        .into_iter()
        .collect();
    b.links(1010, foreign, |_| Disc::direct());
    b.radios.usable.clear();
    let steps = b.evaluate(1100, None, true);
    assert_eq!(
        steps,
        vec![Step::Plain {
            to: "wlan1".into(),
            addr: Ipv4Addr::new(192, 168, 50, 7),
            id: 2
        }]
    );
    let h = b.core.handoff(2).expect("ledger");
    assert_eq!(
        (h.kind, h.reason_text().as_str(), h.from.as_str()),
        (HandoffKind::L7Restart, "preferred; wlan0 lost", "wlan0")
    );
    assert_eq!(
        h.started,
        b.at(1010),
        "from the loss, not from the decision"
    );
    // Home again: the HomeSpot's Wi-Fi comes back and is preferred over the plain network.
    let mut snap = b.snap.clone();
    snap.insert("wlan0".into(), iface(2, [10, 77, 1, 51]));
    b.links(5000, snap, homespot_disc);
    b.radios.usable = [WIFI].into();
    let steps = b.evaluate(5100, None, true);
    assert_eq!(
        steps,
        vec![Step::Switch {
            link: WIFI,
            to: "wlan0".into()
        }],
        "from a plain network there is no drain"
    );
    let (restart, id) = b.switched(5103, "wlan0");
    assert!(
        restart,
        "coming back to the HomeSpot's path restarts requests"
    );
    let h = b.core.handoff(id.expect("handoff")).expect("ledger");
    assert_eq!(
        (h.kind, h.reason, h.from.as_str()),
        (HandoffKind::PHandoffRestart, Reason::Preferred, "wlan1")
    );
}

#[test]
fn throughput_moves_up_and_idle_moves_down() {
    let mut b = at_home(300);
    // Onto Bluetooth first (idle at start: 10 s with no bytes).
    let steps = b.traffic(100, 10_200, 0, false);
    assert_eq!(
        steps,
        vec![(
            10_100,
            Step::Switch {
                link: BT,
                to: "bt0".into()
            }
        )],
        "idle for 10 s on Wi-Fi: down to Bluetooth (nothing in flight: no drain)"
    );
    b.switched(10_105, "bt0");
    assert_eq!(b.core.handoffs.last().map(|h| h.reason), Some(Reason::Idle));
    // A download at 8 Mbit/s (10 kB every 10 ms) on Bluetooth: after 2 s sustained, up to
    // Wi-Fi, draining Bluetooth's queue first.
    let steps = b.traffic(10_200, 12_600, 10_000, true);
    let (t, first) = steps.first().expect("a move up");
    assert!(
        (12_100..=12_300).contains(t),
        "2 s sustained since the move to Bluetooth at 10.1 s: {t}"
    );
    assert!(
        matches!(first, Step::Drain { link: WIFI, to, .. } if to == "wlan0"),
        "{first:?}"
    );
    assert!(
        steps.iter().any(|(_, s)| *s
            == Step::Switch {
                link: WIFI,
                to: "wlan0".into()
            }),
        "{steps:?}"
    );
    b.switched(12_610, "wlan0");
    assert_eq!(
        b.core.handoffs.last().map(|h| (h.reason, h.kind)),
        Some((Reason::Throughput, HandoffKind::PHandoff))
    );
    // The download ends: 10 s idle, back down.
    let steps = b.traffic(12_700, 23_000, 0, false);
    assert_eq!(
        steps.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        vec![&Step::Switch {
            link: BT,
            to: "bt0".into()
        }]
    );
    assert!(steps[0].0 >= 22_600, "{}", steps[0].0);
}

#[test]
fn a_drain_whose_source_dies_switches_at_once_and_one_whose_target_dies_is_off() {
    let mut b = at_home(500);
    let steps = b.evaluate(1000, Some("bt0"), true);
    assert!(matches!(steps.as_slice(), [Step::Drain { .. }]));
    // Wi-Fi (being drained) dies at 1100 ms: switch now, not at 1500 ms.
    b.radios.usable.remove(&WIFI);
    let steps = b
        .core
        .link_dead(b.at(1100), WIFI, Some("wlan0"), &b.radios, true);
    assert_eq!(
        steps,
        vec![Step::Switch {
            link: BT,
            to: "bt0".into()
        }]
    );
    assert!(b.core.draining.is_none());

    let mut b = at_home(500);
    b.evaluate(1000, Some("bt0"), true);
    // Bluetooth (the target) dies during the drain: the move is off, Wi-Fi stays.
    b.radios.usable.remove(&BT);
    let steps = b
        .core
        .link_dead(b.at(1100), BT, Some("bt0"), &b.radios, true);
    assert_eq!(steps, vec![]);
    assert!(b.core.draining.is_none());
    assert_eq!(b.core.current.as_deref(), Some("wlan0"));
}

#[test]
fn stale_discoveries_are_dropped_and_old_handoffs_expire() {
    let mut b = at_home(300);
    let g = b.core.rediscover("wlan0", None).expect("generation");
    assert!(!b.core.found(b.at(10), "wlan0", g - 1, Disc::direct()));
    assert!(b.core.found(b.at(10), "wlan0", g, homespot_disc("wlan0")));
    // The first handoff is done at 5 ms; with no traffic after it, it is reported empty
    // after 5 s.
    assert!(b.core.expire(b.at(4000)).is_empty());
    let old = b.core.expire(b.at(5100));
    assert_eq!(old.len(), 1);
    assert!(b.core.handoffs.is_empty());
}

#[test]
fn home_over_bluetooth_first_then_throughput_takes_it_to_wifi() {
    let mut b = Bed::new(300);
    b.links(0, homespot_links(), homespot_disc);
    // Bluetooth answers first: the laptop goes home over it.
    b.radios.usable = [BT].into();
    assert_eq!(
        b.evaluate(1, None, true),
        vec![Step::Switch {
            link: BT,
            to: "bt0".into()
        }]
    );
    b.switched(5, "bt0");
    // The Wi-Fi answers 25 ms later; the download runs at Bluetooth's capacity.
    b.radios.usable = [WIFI, BT].into();
    let steps = b.traffic(30, 4_000, 2_300, true);
    assert!(
        steps
            .iter()
            .any(|(_, s)| matches!(s, Step::Drain { link, .. } | Step::Switch { link, .. } if *link == WIFI)),
        "{steps:?}"
    );
}
