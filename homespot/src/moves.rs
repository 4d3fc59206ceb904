//! Pacing a client's proxy connections to the link P-Handoff has it on.
//!
//! A connection that moves keeps the congestion state it learned on the old radio, and the
//! HomeSpot's own sender is what fills a radio's queue. Two rules, both applied by each
//! connection's own task through a [`Follower`], CONNECT tunnels included (so a socket is
//! never touched after it closed):
//!
//! - **Settle** after a move to a faster link (higher configured `rate_mbps`): moving from
//!   Bluetooth to Wi-Fi, BBR's estimate is soon inflated by the burst of acknowledgements that
//!   arrives once the new path is in use, and the sender overfills the Wi-Fi queue: hundreds of
//!   drops within 100 ms, each costing the download a 25-30 ms pause to repair (packet traces
//!   in BENCHMARKS.md). Each connection is paced at no more than the new link's rate for
//!   [`SETTLE`], which is what the link can carry anyway, and then let go.
//! - **Hold** on a Bluetooth link: its controller queues deeply (half a second on the test
//!   bed's radio), and BBR on that path keeps ~170 KB in flight there. All of it is lost with
//!   the radio, and the retransmission timer it then waits for was inflated by the same queue
//!   (gaps of 174-336 ms after a loss); a planned move away from it has that queue arrive after
//!   newer data on the faster radio (a 15 ms pause at every move). While a client is on a
//!   Bluetooth link with a known rate, its connections are paced at [`HOLD_SHARE`] of it, so
//!   the queue stays near empty. The cap starts [`SETTLE`] after the move (capping at the
//!   moment of a move to a slower link measured a 33-45 ms pause) and at once for a
//!   connection opened there.
//!
//! A move to a slower link that is not held, or to one of unknown rate, is left alone.

use portable_atomic::AtomicU64;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use phandoff::wire::LinkKind;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a moved connection is held to the new link's rate, and how long after a move to
/// a held link its cap starts.
pub const SETTLE: Duration = Duration::from_millis(300);

/// The share of a held link's rate its connections are paced at (the rest drains its queue).
pub const HOLD_SHARE: (u64, u64) = (9, 10);

/// How a link paces the connections of the clients on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkPace {
    /// What the link carries (bytes per second), if configured.
    pub rate: Option<u64>,
    /// The cap held while a client is on it (bytes per second): Bluetooth links with a rate.
    pub hold: Option<u64>,
}

impl LinkPace {
    /// A link of `kind` carrying `rate` bytes per second.
    pub fn of(kind: LinkKind, rate: Option<u64>) -> LinkPace {
        let hold = match kind {
            LinkKind::Bluetooth => rate.map(|r| r * HOLD_SHARE.0 / HOLD_SHARE.1),
            _ => None,
        };
        LinkPace { rate, hold }
    }
}

/// What a client's move means for its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// No cap.
    Free,
    /// Capped at this rate (bytes per second) for [`SETTLE`], then free.
    Settle(u64),
    /// Capped at this rate from [`SETTLE`] on, until the next move.
    Hold(u64),
    /// Moved, the pacing as it was.
    Keep,
}

/// The news a move from `before` to `now` brings (`None`: nothing changes).
pub fn news(before: Option<LinkPace>, now: LinkPace) -> Option<Pace> {
    if let Some(h) = now.hold {
        return Some(Pace::Hold(h));
    }
    let before = before.unwrap_or_default();
    match (before.rate, now.rate) {
        (Some(b), Some(r)) if r > b => Some(Pace::Settle(r)),
        _ if before.hold.is_some() => Some(Pace::Free),
        _ => None,
    }
}

/// One connection's news: what its client's last move means for it, numbered.
#[derive(Default)]
pub struct Mover {
    news: Mutex<(u64, Option<Pace>)>,
    notify: Notify,
    /// The cap to set when the connection starts (bytes per second; 0: none).
    start: AtomicU64,
}

impl Mover {
    fn tell(&self, p: Pace) {
        if let Ok(mut n) = self.news.lock() {
            *n = (n.0.wrapping_add(1), Some(p));
        }
        self.notify.notify_waiters();
    }

    /// The news after the one numbered `seen` (0: none yet), with its number.
    pub fn since(&self, seen: u64) -> Option<(u64, Pace)> {
        let n = self.news.lock().ok()?;
        match *n {
            (v, Some(p)) if v != seen => Some((v, p)),
            _ => None,
        }
    }

    /// The cap for a connection opened now (held link), if any.
    pub fn start(&self) -> Option<u64> {
        Some(self.start.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }
}

/// A connection following its client's moves: sets its socket's pacing cap as they come.
pub struct Follower {
    mover: Arc<Mover>,
    seen: u64,
    pacer: Pacer,
    fd: RawFd,
}

impl Follower {
    /// Starts following for socket `fd` (capped at once on a held link). Poll [`Follower::run`]
    /// only while `fd` is open: select it against the work that owns the socket.
    pub fn new(mover: Arc<Mover>, fd: RawFd) -> Follower {
        if let Some(r) = mover.start() {
            cap_pacing(fd, r);
        }
        let seen = mover.since(0).map(|n| n.0).unwrap_or(0);
        Follower {
            mover,
            seen,
            pacer: Pacer::default(),
            fd,
        }
    }

    /// Sets caps as moves and their timers come; never returns. Cancel-safe: dropping it
    /// between polls loses no move (each is numbered).
    pub async fn run(&mut self) -> std::convert::Infallible {
        loop {
            let notified = self.mover.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some((v, p)) = self.mover.since(self.seen) {
                self.seen = v;
                // Whatever the pacing: what the old radio swallowed goes again now.
                crate::revert::kick(self.fd);
                if let Some(r) = self.pacer.news(p, Instant::now()) {
                    cap_pacing(self.fd, r);
                }
                continue;
            }
            match self.pacer.next_at() {
                None => notified.await,
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {
                            if let Some(r) = self.pacer.due(Instant::now()) {
                                cap_pacing(self.fd, r);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One connection's pacing over time: which cap to set when (sans-IO; the connection's task
/// sets it on its socket).
#[derive(Default)]
pub struct Pacer {
    /// When the cap in force is lifted (after a Settle).
    lift: Option<Instant>,
    /// When a held cap starts, and its rate.
    hold: Option<(Instant, u64)>,
}

impl Pacer {
    /// A move's news at `now`: the cap to set at once, if any (`u64::MAX`: none).
    pub fn news(&mut self, p: Pace, now: Instant) -> Option<u64> {
        match p {
            Pace::Keep => None,
            Pace::Free => {
                *self = Pacer::default();
                Some(u64::MAX)
            }
            Pace::Settle(r) => {
                *self = Pacer {
                    lift: Some(now + SETTLE),
                    hold: None,
                };
                Some(r)
            }
            Pace::Hold(r) => {
                let capped = self.lift.is_some();
                *self = Pacer {
                    lift: None,
                    hold: Some((now + SETTLE, r)),
                };
                capped.then_some(u64::MAX)
            }
        }
    }

    /// When [`Pacer::due`] has something to do.
    pub fn next_at(&self) -> Option<Instant> {
        self.lift.or(self.hold.map(|h| h.0))
    }

    /// The cap to set at `now`, if one is due.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        if self.lift.is_some_and(|t| t <= now) {
            self.lift = None;
            return Some(u64::MAX);
        }
        match self.hold {
            Some((t, r)) if t <= now => {
                self.hold = None;
                Some(r)
            }
            _ => None,
        }
    }
}

/// The proxy connections of each client address, and the link each client is on.
#[derive(Default)]
pub struct Moves {
    by_client: Mutex<HashMap<Ipv4Addr, Vec<Weak<Mover>>>>,
    on: Mutex<HashMap<Ipv4Addr, LinkPace>>,
    registered: AtomicU64,
}

/// Every this many registrations, closed connections of all clients are forgotten.
const SWEEP: u64 = 1024;

impl Moves {
    /// Tracks a connection from `client` while the returned handle lives. Closed connections
    /// are dropped from the client's own list here (so an accept costs that client's
    /// connections, not everyone's), and from every list once every [`SWEEP`] registrations.
    pub fn register(&self, client: Ipv4Addr) -> Arc<Mover> {
        let m = Arc::new(Mover::default());
        let held = self
            .on
            .lock()
            .ok()
            .and_then(|on| on.get(&client).and_then(|l| l.hold));
        m.start.store(held.unwrap_or(0), Ordering::Relaxed);
        if let Ok(mut map) = self.by_client.lock() {
            if self.registered.fetch_add(1, Ordering::Relaxed) % SWEEP == SWEEP - 1 {
                map.retain(|_, v| {
                    v.retain(|w| w.strong_count() > 0);
                    !v.is_empty()
                });
            }
            let v = map.entry(client).or_default();
            v.retain(|w| w.strong_count() > 0);
            v.push(Arc::downgrade(&m));
        }
        m
    }

    /// `client`'s traffic now takes a link paced as `link`. Its connections hear what it
    /// means for them ([`news`]).
    pub fn moved(&self, client: Ipv4Addr, link: LinkPace) {
        let before = match self.on.lock() {
            Ok(mut on) => on.insert(client, link),
            Err(_) => None,
        };
        let p = news(before, link).unwrap_or(Pace::Keep);
        if let Ok(map) = self.by_client.lock() {
            for m in map
                .get(&client)
                .into_iter()
                .flatten()
                .filter_map(Weak::upgrade)
            {
                m.tell(p);
            }
        }
    }

    /// `client` is gone (released or evicted): forget its link.
    pub fn forget(&self, client: Ipv4Addr) {
        if let Ok(mut on) = self.on.lock() {
            on.remove(&client);
        }
    }
}

/// Caps the pacing rate of socket `fd` (`u64::MAX`: no cap).
pub fn cap_pacing(fd: RawFd, bytes_per_sec: u64) {
    // SAFETY: `fd` is an open socket owned by the caller; the value is a u64 of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&bytes_per_sec as *const u64).cast(),
            std::mem::size_of::<u64>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIFI: LinkPace = LinkPace {
        rate: Some(6_250_000),
        hold: None,
    };
    const BT: LinkPace = LinkPace {
        rate: Some(250_000),
        hold: Some(225_000),
    };

    #[test]
    fn bluetooth_links_are_held_below_their_rate() {
        assert_eq!(LinkPace::of(LinkKind::Bluetooth, Some(250_000)), BT);
        assert_eq!(LinkPace::of(LinkKind::Wifi, Some(6_250_000)), WIFI);
        assert_eq!(LinkPace::of(LinkKind::Bluetooth, None), LinkPace::default());
    }

    #[test]
    fn what_each_move_means() {
        let unknown = LinkPace::default();
        assert_eq!(news(Some(BT), WIFI), Some(Pace::Settle(6_250_000)));
        assert_eq!(news(Some(WIFI), BT), Some(Pace::Hold(225_000)));
        assert_eq!(news(None, BT), Some(Pace::Hold(225_000)));
        // Leaving a held link for one of unknown rate frees the connections.
        assert_eq!(news(Some(BT), unknown), Some(Pace::Free));
        // Slower, unknown or first: nothing to do.
        let slow = LinkPace {
            rate: Some(1_000_000),
            hold: None,
        };
        assert_eq!(news(Some(WIFI), slow), None);
        assert_eq!(news(Some(WIFI), unknown), None);
        assert_eq!(news(None, WIFI), None);
    }

    #[test]
    fn a_pacer_settles_then_frees_and_holds_after_the_settling_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut p = Pacer::default();
        assert_eq!(p.next_at(), None);
        // To Wi-Fi: capped now, free after SETTLE.
        assert_eq!(p.news(Pace::Settle(6_250_000), t0), Some(6_250_000));
        assert_eq!(p.due(ms(299)), None);
        assert_eq!(p.next_at(), Some(ms(300)));
        assert_eq!(p.due(ms(300)), Some(u64::MAX));
        assert_eq!(p.next_at(), None);
        // To Bluetooth: nothing now, the hold after SETTLE.
        assert_eq!(p.news(Pace::Hold(225_000), ms(1000)), None);
        assert_eq!(p.due(ms(1299)), None);
        assert_eq!(p.due(ms(1300)), Some(225_000));
        assert_eq!(p.next_at(), None);
        // Back to Wi-Fi, then to Bluetooth within the settling time: the settle cap goes at
        // once, the hold comes later.
        assert_eq!(p.news(Pace::Settle(6_250_000), ms(2000)), Some(6_250_000));
        assert_eq!(p.news(Pace::Hold(225_000), ms(2100)), Some(u64::MAX));
        assert_eq!(p.due(ms(2399)), None);
        assert_eq!(p.due(ms(2400)), Some(225_000));
        assert_eq!(p.news(Pace::Free, ms(3000)), Some(u64::MAX));
        assert_eq!(p.next_at(), None);
    }

    #[tokio::test]
    async fn a_move_reaches_that_clients_connections_only() {
        let moves = Moves::default();
        let a = Ipv4Addr::new(10, 200, 0, 2);
        let (m1, m2) = (moves.register(a), moves.register(a));
        let other = moves.register(Ipv4Addr::new(10, 200, 0, 3));
        assert_eq!(m1.start(), None);
        // Two moves before the connections look: they see the last (nothing is lost when a
        // connection was busy elsewhere).
        moves.moved(a, WIFI);
        moves.moved(a, BT);
        let (n1, n2) = (m1.since(0), m2.since(0));
        assert_eq!(n1.map(|n| n.1), Some(Pace::Hold(225_000)));
        assert_eq!(n2.map(|n| n.1), Some(Pace::Hold(225_000)));
        let seen = n2.map(|n| n.0).unwrap_or(0);
        // The other client's connection hears nothing.
        assert_eq!(other.since(0), None);
        // A connection opened on the held link is capped from its start.
        assert_eq!(moves.register(a).start(), Some(225_000));
        moves.moved(a, WIFI);
        let n = m2.since(seen).expect("news");
        assert_eq!(n.1, Pace::Settle(6_250_000));
        assert_eq!(m2.since(n.0), None, "read once");
        // A move to a slower link, or to one of unknown rate, keeps the pacing (the connection
        // still hears of it: see `crate::revert`).
        moves.moved(a, LinkPace::default());
        assert_eq!(m2.since(n.0).map(|n| n.1), Some(Pace::Keep));
        // A closed connection is forgotten at the next registration.
        drop(m1);
        let _m3 = moves.register(a);
        let tracked = moves.by_client.lock().map(|m| m[&a].len()).unwrap_or(0);
        assert_eq!(tracked, 2);
        // A client that is gone leaves nothing behind.
        moves.forget(a);
        assert!(moves.on.lock().map(|m| m.is_empty()).unwrap_or(false));
        drop(m2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_sets_the_caps_on_its_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let s = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        let moves = Moves::default();
        let a = Ipv4Addr::new(10, 200, 0, 2);
        moves.moved(a, BT);
        let mut f = Follower::new(moves.register(a), fd);
        assert_eq!(get_cap(fd), 225_000, "opened on the held link");
        moves.moved(a, WIFI);
        let _ = tokio::time::timeout(Duration::from_millis(10), f.run()).await;
        assert_eq!(get_cap(fd), 6_250_000, "settling on Wi-Fi");
        let _ = tokio::time::timeout(Duration::from_millis(400), f.run()).await;
        assert_eq!(get_cap(fd), u64::MAX, "free after the settling time");
        moves.moved(a, BT);
        let _ = tokio::time::timeout(Duration::from_millis(10), f.run()).await;
        assert_eq!(get_cap(fd), u64::MAX, "not capped at the move to Bluetooth");
        let _ = tokio::time::timeout(Duration::from_millis(400), f.run()).await;
        assert_eq!(get_cap(fd), 225_000, "held from the settling time on");
    }

    fn get_cap(fd: RawFd) -> u64 {
        let mut v = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: reading a u64 option into a u64 of the size given.
        unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_MAX_PACING_RATE,
                (&mut v as *mut u64).cast(),
                &mut len,
            )
        };
        v
    }

    #[test]
    fn a_cap_is_set_and_lifted_on_a_real_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let s = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        cap_pacing(fd, 6_250_000);
        assert_eq!(get_cap(fd), 6_250_000);
        cap_pacing(fd, u64::MAX);
        assert_eq!(get_cap(fd), u64::MAX);
    }
}
