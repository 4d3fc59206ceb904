//! Trust per network, not per device (DESIGN.md section 3): which HomeSpot identity the agent
//! uses on which network, kept in `state_dir/trust`.
//!
//! A network is a HomeSpot link as its signed advert describes it: link kind, L2 identity
//! (SSID, Bluetooth address) and the router address on it. The first time the agent meets a
//! HomeSpot on a network nobody holds, it uses it only if the advert came from the link's own
//! router or DHCP server (the addresses the network's DHCP answer named) and from the address
//! the advert gives for that link; once a handshake with it has completed (the manager
//! calls [`Trust::pin`] then, not discovery: a source address alone proves nothing), it pins
//! the identity to every link the advert lists (Co-Link: the HomeSpot vouches for its other
//! links with the same signature). On a network
//! pinned to one identity, another identity is never used: [`Verdict::Mismatch`] is reported
//! (event, warning, status) and the link is treated as a plain network until the user runs
//! `homespot-agent trust <fingerprint>`; `forget` drops an identity's pins. An identity that
//! never answered is [`Verdict::Unanswered`] for a while ([`rest`]): a first-use one whose
//! handshake was given up, everywhere; a pinned one, on the network where its handshake or
//! probes went unanswered (a replay of its advert on another network with the same router
//! address). The network is used as a plain one meanwhile: a forged or replayed advert would
//! otherwise hold the link for good. While the agent is associated with one HomeSpot, another
//! is [`Verdict::OtherInUse`]: that network too is a plain one.
//!
//! What it does not do: defend a never-seen network against a device that also answers DHCP
//! or takes over the router's address (trust on first use cannot; one that only writes it
//! into its datagrams answers no handshake and is never pinned), or
//! trust any identity the user did not either meet from the router or name.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use phandoff::wire::{Advert, LinkInfo};

pub mod rest;

pub use rest::{FIRST_REST, UNANSWERED_FOR};

/// One network an identity was met on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// `wifi`, `bluetooth` or `ethernet`.
    pub kind: u8,
    /// SSID or Bluetooth address, as advertised.
    pub l2_id: Vec<u8>,
    /// The HomeSpot's address on the link.
    pub router: Ipv4Addr,
}

impl Network {
    /// The network a link of an advert describes.
    pub fn of(l: &LinkInfo) -> Network {
        Network {
            kind: l.kind as u8,
            l2_id: l.l2_id.clone(),
            router: l.router,
        }
    }

    /// The same network: the same radio name of the same kind, or the same router address.
    fn same(&self, o: &Network) -> bool {
        (self.kind == o.kind && self.l2_id == o.l2_id) || self.router == o.router
    }
}

/// What to do with a verified advert met on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The identity is pinned to this network: use it.
    Use,
    /// A never-seen network, and the advert came from its router: pin and use.
    PinAndUse,
    /// The network is pinned to another identity: report, do not use.
    Mismatch {
        /// The identity pinned there.
        pinned: [u8; 32],
    },
    /// Not from the link's router/DHCP server (or not from the address it claims): ignore.
    NotRouter,
    /// A never-seen network whose DHCP answer has not come yet: wait for it.
    Undecided,
    /// From the network's router, but the identity never answered lately (see [`rest`]): not
    /// used (a forged or replayed advert, or a HomeSpot in trouble).
    Unanswered {
        /// The identity is pinned here (it rests on this network only, for a shorter time).
        pinned: bool,
    },
    /// Trusted here, but the agent is associated with another HomeSpot (one at a time): the
    /// network is used as a plain one.
    OtherInUse {
        /// The HomeSpot in use.
        in_use: [u8; 32],
    },
}

/// An identity the agent refused on a pinned network, kept so the user can trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// What it claimed to be.
    pub identity: [u8; 32],
    /// The networks its advert listed.
    pub networks: Vec<Network>,
    /// The identity pinned there.
    pub pinned: [u8; 32],
}

/// The pins, and the conflicts seen since the agent started (at most [`MAX_CONFLICTS`]).
#[derive(Debug, Default, Clone)]
pub struct Trust {
    path: PathBuf,
    pins: Vec<([u8; 32], Network)>,
    conflicts: Vec<Conflict>,
    /// Identities that never answered, not used for a while.
    rests: rest::Rests,
    /// The HomeSpot the agent is associated with (or trying to be).
    in_use: Option<[u8; 32]>,
}

/// At most this many refused identities are kept for `trust`.
pub const MAX_CONFLICTS: usize = 16;
/// At most this many pinned networks.
pub const MAX_PINS: usize = 256;

/// Hex of the whole identity: what `trust` and `forget` take.
pub fn fingerprint(id: &[u8; 32]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

impl Trust {
    /// Loads `dir/trust` (absent: nothing pinned). Lines that do not parse are skipped.
    pub fn load(dir: &Path) -> Trust {
        let path = dir.join("trust");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let pins = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let id: [u8; 32] = parse_hex(w.next()?)?.try_into().ok()?;
                let kind = w.next()?.parse().ok()?;
                let l2 = w.next()?;
                let l2_id = if l2 == "-" { vec![] } else { parse_hex(l2)? };
                let router = w.next()?.parse().ok()?;
                Some((
                    id,
                    Network {
                        kind,
                        l2_id,
                        router,
                    },
                ))
            })
            .take(MAX_PINS)
            .collect();
        Trust {
            path,
            pins,
            conflicts: vec![],
            rests: Default::default(),
            in_use: None,
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let mut text =
            String::from("# identity kind l2_id(hex) router: HomeSpots pinned per network\n");
        for (id, n) in &self.pins {
            let l2: String = n.l2_id.iter().map(|b| format!("{b:02x}")).collect();
            let l2 = if l2.is_empty() { "-".to_string() } else { l2 };
            text += &format!("{} {} {l2} {}\n", fingerprint(id), n.kind, n.router);
        }
        crate::state::write_private(&self.path, text.as_bytes())
    }

    /// A first-use identity's handshake was given up at `now`: it is not used on a never-seen
    /// network for [`UNANSWERED_FOR`] (see [`Trust::check_now`]).
    pub fn unanswered(&mut self, id: [u8; 32], now: Instant) {
        self.rests.first_use(id, now);
    }

    /// A pinned identity never answered on the network whose router is `router`: not used
    /// there for a while; returns how long ([`rest::Rests::on_network`]).
    pub fn unanswered_on(&mut self, id: [u8; 32], router: Ipv4Addr, now: Instant) -> Duration {
        self.rests.on_network(id, router, now)
    }

    /// `id` answered on the network whose router is `router` (its rest there ends).
    pub fn answered_on(&mut self, id: [u8; 32], router: Ipv4Addr) {
        self.rests.answered(id, router);
    }

    /// The identities resting at `now` ([`rest::Rests::list`]).
    pub fn resting(&self, now: Instant) -> Vec<([u8; 32], Option<Ipv4Addr>, Duration)> {
        self.rests.list(now)
    }

    /// When the next rest of a pinned identity on a network ends (after `now`).
    pub fn next_rest_end(&self, now: Instant) -> Option<Instant> {
        self.rests.next_end(now)
    }

    /// Whether `id` is pinned to any network.
    pub fn is_pinned(&self, id: &[u8; 32]) -> bool {
        self.pins.iter().any(|(i, _)| i == id)
    }

    /// The agent is now associated with `id` (or trying to be), or with none.
    pub fn set_in_use(&mut self, id: Option<[u8; 32]>) {
        self.in_use = id;
    }

    /// `v`, a verdict on `id` met on the network whose router is `router`, on a link that came
    /// up at `link_up`, as it stands at `now`: [`Verdict::PinAndUse`] and [`Verdict::Use`]
    /// become [`Verdict::Unanswered`] while `id` rests there ([`rest::Rests::resting`]), and a
    /// usable identity other than the one in use becomes [`Verdict::OtherInUse`].
    pub fn check_now(
        &self,
        v: Verdict,
        id: &[u8; 32],
        router: Ipv4Addr,
        now: Instant,
        link_up: Instant,
    ) -> Verdict {
        let usable = matches!(v, Verdict::Use | Verdict::PinAndUse);
        if usable && self.rests.resting(id, router, now, link_up) {
            return Verdict::Unanswered {
                pinned: v == Verdict::Use,
            };
        }
        match self.in_use {
            Some(in_use) if in_use != *id && matches!(v, Verdict::Use | Verdict::PinAndUse) => {
                Verdict::OtherInUse { in_use }
            }
            _ => v,
        }
    }

    /// Every identity pinned, with its networks.
    pub fn pins(&self) -> &[([u8; 32], Network)] {
        &self.pins
    }

    /// The identities refused since start.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// Judges `advert`, verified and received from `src` on our link `ours` (the advert's
    /// link for our subnet). `vouched`: the link's router and DHCP server from its DHCP
    /// answer, `None` while that answer has not come.
    pub fn judge(
        &self,
        advert: &Advert,
        ours: &LinkInfo,
        src: Ipv4Addr,
        vouched: Option<&[Ipv4Addr]>,
    ) -> Verdict {
        let net = Network::of(ours);
        let mine = self
            .pins
            .iter()
            .any(|(id, n)| *id == advert.identity && n.same(&net));
        if mine {
            return if src == ours.router {
                Verdict::Use
            } else {
                Verdict::NotRouter
            };
        }
        if let Some((id, _)) = self.pins.iter().find(|(_, n)| n.same(&net)) {
            return Verdict::Mismatch { pinned: *id };
        }
        if src != ours.router {
            return Verdict::NotRouter;
        }
        match vouched {
            None => Verdict::Undecided,
            Some(v) if v.contains(&src) => Verdict::PinAndUse,
            Some(_) => Verdict::NotRouter,
        }
    }

    /// Pins `advert`'s identity to every link it lists (saved at once).
    pub fn pin(&mut self, advert: &Advert) -> std::io::Result<()> {
        for l in &advert.links {
            let n = Network::of(l);
            if !self
                .pins
                .iter()
                .any(|(id, x)| *id == advert.identity && *x == n)
                && self.pins.len() < MAX_PINS
            {
                self.pins.push((advert.identity, n));
            }
        }
        self.save()
    }

    /// Records a refused identity (for `trust` and the status).
    pub fn conflict(&mut self, advert: &Advert, pinned: [u8; 32]) {
        if self.conflicts.iter().any(|c| c.identity == advert.identity) {
            return;
        }
        if self.conflicts.len() >= MAX_CONFLICTS {
            self.conflicts.remove(0);
        }
        self.conflicts.push(Conflict {
            identity: advert.identity,
            networks: advert.links.iter().map(Network::of).collect(),
            pinned,
        });
    }

    /// The user trusts `fp` (a fingerprint, or at least 12 of its first hex digits) on the
    /// networks where it was refused: those networks are pinned to it instead.
    pub fn trust(&mut self, fp: &str) -> Result<[u8; 32], String> {
        let c = self.find(fp, self.conflicts.iter().map(|c| c.identity))?;
        let Some(conflict) = self.conflicts.iter().find(|x| x.identity == c).cloned() else {
            return Err("no such identity was refused".into());
        };
        self.pins
            .retain(|(_, n)| !conflict.networks.iter().any(|x| x.same(n)));
        for n in conflict.networks {
            self.pins.push((c, n));
        }
        self.conflicts.retain(|x| x.identity != c);
        self.save()
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(c)
    }

    /// Drops every pin of `fp`.
    pub fn forget(&mut self, fp: &str) -> Result<[u8; 32], String> {
        let id = self.find(fp, self.pins.iter().map(|(id, _)| *id))?;
        self.pins.retain(|(x, _)| *x != id);
        self.save()
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(id)
    }

    fn find(&self, fp: &str, ids: impl Iterator<Item = [u8; 32]>) -> Result<[u8; 32], String> {
        let fp = fp.trim().to_ascii_lowercase();
        if fp.len() < 12 {
            return Err("give at least the first 12 hex digits of the fingerprint".into());
        }
        let mut found: Vec<[u8; 32]> = ids.filter(|id| fingerprint(id).starts_with(&fp)).collect();
        found.dedup();
        match found.len() {
            1 => Ok(found[0]),
            0 => Err(format!(
                "no identity {fp} here (see `homespot-agent status`)"
            )),
            _ => Err(format!("{fp} is ambiguous: give more digits")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phandoff::crypto::Identity;
    use phandoff::wire::LinkKind;

    fn advert(seed: u8, ssid: &[u8]) -> Advert {
        let mut a = Advert {
            identity: [0; 32],
            noise_key: [0; 32],
            epoch: 1,
            global_subnet: Ipv4Addr::new(10, 200, 0, 0),
            global_prefix: 24,
            global_addr: Ipv4Addr::new(10, 200, 0, 1),
            caps: 0,
            links: vec![
                LinkInfo {
                    index: 0,
                    kind: LinkKind::Wifi,
                    l2_id: ssid.to_vec(),
                    subnet: Ipv4Addr::new(10, 77, 1, 0),
                    prefix: 24,
                    router: Ipv4Addr::new(10, 77, 1, 1),
                    proxy: Ipv4Addr::new(10, 77, 1, 1),
                    proxy_port: 3128,
                    pac_url: vec![],
                },
                LinkInfo {
                    index: 1,
                    kind: LinkKind::Bluetooth,
                    l2_id: vec![1, 2, 3, 4, 5, 6],
                    subnet: Ipv4Addr::new(10, 77, 2, 0),
                    prefix: 24,
                    router: Ipv4Addr::new(10, 77, 2, 1),
                    proxy: Ipv4Addr::new(10, 77, 2, 1),
                    proxy_port: 3128,
                    pac_url: vec![],
                },
            ],
            signature: [0; 64],
        };
        Identity::from_seed([seed; 32]).sign_advert(&mut a);
        a
    }

    const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
    const ROGUE: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 66);

    #[test]
    fn first_use_only_from_the_router_then_pinned_per_network() {
        let dir = tempfile::tempdir().expect("dir");
        let mut t = Trust::load(dir.path());
        let real = advert(1, b"Home");
        let l = &real.links[0];
        // Not from the router's address, or not vouched by DHCP: refused.
        assert_eq!(
            t.judge(&real, l, ROGUE, Some(&[ROUTER])),
            Verdict::NotRouter
        );
        assert_eq!(
            t.judge(&real, l, ROUTER, Some(&[ROGUE])),
            Verdict::NotRouter
        );
        assert_eq!(t.judge(&real, l, ROUTER, None), Verdict::Undecided);
        assert_eq!(
            t.judge(&real, l, ROUTER, Some(&[ROUTER])),
            Verdict::PinAndUse
        );
        t.pin(&real).expect("pin");
        // Pinned on both its links, and kept on disk.
        let t = Trust::load(dir.path());
        assert_eq!(t.pins().len(), 2);
        assert_eq!(t.judge(&real, l, ROUTER, None), Verdict::Use);
        assert_eq!(
            t.judge(&real, &real.links[1], Ipv4Addr::new(10, 77, 2, 1), None),
            Verdict::Use
        );
        // A rogue claiming the same SSID, from anywhere (even the router's address): refused.
        let rogue = advert(2, b"Home");
        let pinned = real.identity;
        for src in [ROGUE, ROUTER] {
            assert_eq!(
                t.judge(&rogue, &rogue.links[0], src, Some(&[ROUTER])),
                Verdict::Mismatch { pinned }
            );
        }
        // Another SSID but the same router address: the same network.
        let other = advert(2, b"Elsewhere");
        assert_eq!(
            t.judge(&other, &other.links[0], ROUTER, Some(&[ROUTER])),
            Verdict::Mismatch { pinned }
        );
    }

    /// With a virtual clock: a first-use identity whose handshake was given up is not used for
    /// ten minutes, anywhere; a pinned one that did not answer on a network rests there only
    /// (rest.rs has the schedules); another HomeSpot in use makes a usable one OtherInUse.
    #[test]
    fn unanswered_identities_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let mut t = Trust::load(dir.path());
        let t0 = Instant::now();
        let forged = advert(3, b"Cafe");
        let l = &forged.links[0];
        let v = t.judge(&forged, l, ROUTER, Some(&[ROUTER]));
        assert_eq!(v, Verdict::PinAndUse);
        t.unanswered(forged.identity, t0);
        let later = t0 + UNANSWERED_FOR - Duration::from_secs(1);
        let unanswered = Verdict::Unanswered { pinned: false };
        assert_eq!(
            t.check_now(v.clone(), &forged.identity, ROUTER, later, t0),
            unanswered
        );
        assert_eq!(
            t.check_now(v.clone(), &forged.identity, ROUTER, t0 + UNANSWERED_FOR, t0),
            Verdict::PinAndUse,
            "tried again once the time is over"
        );
        // Other identities, other verdicts: unchanged.
        let other = advert(4, b"Cafe");
        assert_eq!(
            t.check_now(v.clone(), &other.identity, ROUTER, t0, t0),
            Verdict::PinAndUse
        );
        assert_eq!(
            t.check_now(Verdict::NotRouter, &forged.identity, ROUTER, t0, t0),
            Verdict::NotRouter
        );
        // A pinned identity silent on one network (a replay of its advert there): not used
        // there for a while, still used on its other networks; an answer there ends it.
        let home = advert(5, b"Home");
        t.pin(&home).expect("pin");
        let bt = home.links[1].router;
        assert_eq!(t.unanswered_on(home.identity, ROUTER, t0), FIRST_REST);
        assert_eq!(
            t.check_now(Verdict::Use, &home.identity, ROUTER, t0, t0),
            Verdict::Unanswered { pinned: true }
        );
        assert_eq!(
            t.check_now(Verdict::Use, &home.identity, bt, t0, t0),
            Verdict::Use
        );
        assert_eq!(
            t.check_now(Verdict::Use, &home.identity, ROUTER, t0 + FIRST_REST, t0),
            Verdict::Use
        );
        // A link that came up after the rest began (the laptop came home, its router at the
        // same address) is tried.
        assert_eq!(
            t.check_now(
                Verdict::Use,
                &home.identity,
                ROUTER,
                t0 + Duration::from_secs(1),
                t0 + Duration::from_millis(500)
            ),
            Verdict::Use
        );
        t.answered_on(home.identity, ROUTER);
        assert_eq!(
            t.check_now(Verdict::Use, &home.identity, ROUTER, t0, t0),
            Verdict::Use
        );
        // While another HomeSpot is in use, a trusted one is not used either.
        t.set_in_use(Some(other.identity));
        let in_use = other.identity;
        assert_eq!(
            t.check_now(Verdict::PinAndUse, &home.identity, ROUTER, t0, t0),
            Verdict::OtherInUse { in_use }
        );
        assert_eq!(
            t.check_now(Verdict::Use, &home.identity, ROUTER, t0, t0),
            Verdict::OtherInUse { in_use }
        );
        assert_eq!(
            t.check_now(v, &other.identity, ROUTER, t0, t0),
            Verdict::PinAndUse
        );
    }

    #[test]
    fn trust_and_forget() {
        let dir = tempfile::tempdir().expect("dir");
        let mut t = Trust::load(dir.path());
        let real = advert(1, b"Home");
        t.pin(&real).expect("pin");
        let new = advert(2, b"Home");
        t.conflict(&new, real.identity);
        assert_eq!(t.conflicts().len(), 1);
        assert!(t.trust("abc").is_err(), "too short");
        let fp = fingerprint(&new.identity);
        assert_eq!(t.trust(&fp[..12]), Ok(new.identity));
        assert_eq!(t.judge(&new, &new.links[0], ROUTER, None), Verdict::Use);
        assert!(matches!(
            t.judge(&real, &real.links[0], ROUTER, None),
            Verdict::Mismatch { .. }
        ));
        assert_eq!(t.forget(&fp), Ok(new.identity));
        assert!(t.pins().is_empty());
        assert!(t.forget(&fp).is_err());
    }
}
