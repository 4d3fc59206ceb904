//! HomeSpot identities not used for a while because they never answered: a device can write
//! the router's address into a forged advert, or replay a real one signed by a pinned
//! HomeSpot on another network with the same router address, and answer no handshake or
//! probe. While such an identity rests, the network is used as the plain one it is.
//!
//! Two kinds of rest, both in memory and bounded at [`MAX_RESTS`] (the oldest goes first):
//! - a first-use identity whose handshake was given up rests everywhere for
//!   [`UNANSWERED_FOR`];
//! - a pinned identity that never answered on one network (its handshake or probes there)
//!   rests on that network only, for [`FIRST_REST`], doubling with each rest in a row up to
//!   [`UNANSWERED_FOR`]: the real HomeSpot, restarting or in trouble, is tried again soon; a
//!   replay costs the laptop a few seconds per rest. An answer there ends it
//!   ([`Rests::answered`]). It holds only for links that were up when it began: a link that
//!   comes up later (the laptop came home, whose router has the same address as the café's
//!   where the replay was) is tried at once, and rests anew if it is not answered there either.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A first-use identity whose handshake was given up is not used for this long; a pinned
/// one's rests grow up to it.
pub const UNANSWERED_FOR: Duration = Duration::from_secs(600);
/// A pinned identity's first rest on a network where it did not answer.
pub const FIRST_REST: Duration = Duration::from_secs(15);
/// At most this many rests are remembered.
pub const MAX_RESTS: usize = 16;

#[derive(Debug, Clone)]
struct Rest {
    id: [u8; 32],
    /// The network's router address; `None`: every network (a first-use identity).
    router: Option<Ipv4Addr>,
    /// When it began: a pinned identity's rest holds for links up by then.
    since: Instant,
    until: Instant,
    /// Rests in a row on this network (the next one is twice as long).
    count: u32,
}

/// The identities resting now (and, for a while after, how many rests each had in a row).
#[derive(Debug, Default, Clone)]
pub struct Rests {
    rests: Vec<Rest>,
}

impl Rests {
    /// A first-use identity's handshake was given up at `now`.
    pub fn first_use(&mut self, id: [u8; 32], now: Instant) {
        self.put(id, None, now, UNANSWERED_FOR, 1);
    }

    /// A pinned identity did not answer on the network whose router is `router`: it rests
    /// there; returns for how long.
    pub fn on_network(&mut self, id: [u8; 32], router: Ipv4Addr, now: Instant) -> Duration {
        self.prune(now);
        let count = self
            .rests
            .iter()
            .find(|r| r.id == id && r.router == Some(router))
            .map_or(0, |r| r.count);
        let rest = FIRST_REST
            .saturating_mul(1 << count.min(10))
            .min(UNANSWERED_FOR);
        self.put(id, Some(router), now, rest, count + 1);
        rest
    }

    /// `id` answered on the network whose router is `router`: no rest there any more, and the
    /// next one starts short again.
    pub fn answered(&mut self, id: [u8; 32], router: Ipv4Addr) {
        self.rests
            .retain(|r| !(r.id == id && r.router == Some(router)));
    }

    /// Whether `id` rests at `now` on the network whose router is `router`, for a link that
    /// came up at `link_up`: a pinned identity's rest holds for a link up before it began.
    pub fn resting(&self, id: &[u8; 32], router: Ipv4Addr, now: Instant, link_up: Instant) -> bool {
        self.rests.iter().any(|r| {
            r.id == *id
                && r.until > now
                && match r.router {
                    None => true,
                    Some(x) => x == router && link_up <= r.since,
                }
        })
    }

    /// The rests at `now`: identity, network's router (`None`: every network), time left.
    pub fn list(&self, now: Instant) -> Vec<([u8; 32], Option<Ipv4Addr>, Duration)> {
        self.rests
            .iter()
            .filter(|r| r.until > now)
            .map(|r| (r.id, r.router, r.until - now))
            .collect()
    }

    /// When the next rest of a pinned identity on a network ends, after `now`.
    pub fn next_end(&self, now: Instant) -> Option<Instant> {
        self.rests
            .iter()
            .filter(|r| r.router.is_some() && r.until > now)
            .map(|r| r.until)
            .min()
    }

    /// A rest over for longer than the longest one is forgotten (its count with it).
    fn prune(&mut self, now: Instant) {
        self.rests.retain(|r| r.until + UNANSWERED_FOR > now);
    }

    fn put(
        &mut self,
        id: [u8; 32],
        router: Option<Ipv4Addr>,
        now: Instant,
        rest: Duration,
        count: u32,
    ) {
        self.prune(now);
        self.rests.retain(|r| !(r.id == id && r.router == router));
        if self.rests.len() >= MAX_RESTS {
            self.rests.remove(0);
        }
        self.rests.push(Rest {
            id,
            router,
            since: now,
            until: now + rest,
            count,
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const CAFE: Ipv4Addr = Ipv4Addr::new(10, 88, 1, 1);

    /// With a virtual clock: a pinned identity rests on the network where it did not answer,
    /// 15 s, then 30, 60, ... up to ten minutes; only there; an answer ends it and starts the
    /// next one short again; an old count is forgotten.
    #[test]
    fn a_pinned_identity_rests_on_one_network_and_longer_each_time() {
        let mut r = Rests::default();
        let (id, t0) = ([7; 32], Instant::now());
        assert_eq!(r.on_network(id, CAFE, t0), FIRST_REST);
        assert!(r.resting(&id, CAFE, t0 + FIRST_REST - Duration::from_millis(1), t0));
        assert!(!r.resting(&id, CAFE, t0 + FIRST_REST, t0));
        assert!(!r.resting(&id, HOME, t0, t0), "only on that network");
        assert_eq!(r.next_end(t0), Some(t0 + FIRST_REST));
        assert_eq!(r.next_end(t0 + FIRST_REST), None);
        assert_eq!(r.list(t0), [(id, Some(CAFE), FIRST_REST)]);
        assert!(!r.resting(&[8; 32], CAFE, t0, t0), "only that identity");
        let mut t = t0 + FIRST_REST;
        let mut rests = vec![];
        for _ in 0..8 {
            let d = r.on_network(id, CAFE, t);
            rests.push(d.as_secs());
            t += d;
        }
        assert_eq!(rests, [30, 60, 120, 240, 480, 600, 600, 600]);
        r.answered(id, CAFE);
        assert!(!r.resting(&id, CAFE, t0, t0));
        assert_eq!(r.on_network(id, CAFE, t), FIRST_REST, "short again");
        // Long after its end, the count is forgotten.
        let much_later = t + FIRST_REST + UNANSWERED_FOR;
        r.on_network(id, CAFE, t);
        assert_eq!(
            r.on_network(id, CAFE, much_later + FIRST_REST * 2),
            FIRST_REST
        );
    }

    /// A pinned identity's rest holds for the links that were up when it began; a link that
    /// comes up later is tried (its failure there starts the next, longer rest); a first-use
    /// identity's rest holds for every link.
    #[test]
    fn a_link_that_comes_up_after_a_rest_began_is_tried() {
        let mut r = Rests::default();
        let (id, t0) = ([7; 32], Instant::now());
        let rest_at = t0 + Duration::from_secs(4);
        r.on_network(id, CAFE, rest_at);
        let during = rest_at + Duration::from_secs(5);
        assert!(
            r.resting(&id, CAFE, during, t0),
            "the café's link, up before"
        );
        assert!(
            r.resting(&id, CAFE, during, rest_at),
            "up at the same moment"
        );
        let home_up = rest_at + Duration::from_secs(3);
        assert!(!r.resting(&id, CAFE, during, home_up), "a link up since");
        // Not answered there either: it rests anew, twice as long, for that link too.
        let d = r.on_network(id, CAFE, during);
        assert_eq!(d, FIRST_REST * 2);
        assert!(r.resting(&id, CAFE, during + Duration::from_secs(1), home_up));
        let other = [9; 32];
        r.first_use(other, rest_at);
        assert!(
            r.resting(&other, HOME, during, home_up),
            "first use: every link"
        );
    }

    #[test]
    fn a_first_use_identity_rests_everywhere_and_the_list_is_bounded() {
        let mut r = Rests::default();
        let (id, t0) = ([3; 32], Instant::now());
        r.first_use(id, t0);
        assert!(r.resting(&id, CAFE, t0 + UNANSWERED_FOR - Duration::from_secs(1), t0));
        assert!(r.resting(&id, HOME, t0, t0));
        assert!(!r.resting(&id, HOME, t0 + UNANSWERED_FOR, t0));
        for i in 0..MAX_RESTS as u8 {
            r.on_network([i + 100; 32], CAFE, t0 + Duration::from_secs(1));
        }
        assert_eq!(r.len(), MAX_RESTS);
        assert!(
            !r.resting(&id, CAFE, t0 + Duration::from_secs(2), t0),
            "the oldest went"
        );
    }
}
