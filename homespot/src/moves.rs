//! Pacing a client's proxy connections to the link P-Handoff has it on.
//!
//! A connection that moves keeps the congestion state it learned on the old radio, and the
//! HomeSpot's own sender is what fills a radio's queue. Two rules, both applied by each
//! connection's own task (so a socket is never touched after it closed):
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

/// One connection's news, and a wake-up.
pub struct Mover {
    news: Mutex<Pace>,
    notify: Notify,
    /// The cap to set when the connection starts (bytes per second; 0: none).
    start: AtomicU64,
}

impl Default for Mover {
    fn default() -> Mover {
        Mover {
            news: Mutex::new(Pace::Free),
            notify: Notify::new(),
            start: AtomicU64::new(0),
        }
    }
}

impl Mover {
    /// Waits for the client's next move; returns what it means.
    pub async fn next(&self) -> Pace {
        self.notify.notified().await;
        self.news.lock().map(|n| *n).unwrap_or(Pace::Free)
    }

    /// The cap for a connection opened now (held link), if any.
    pub fn start(&self) -> Option<u64> {
        Some(self.start.load(Ordering::Relaxed)).filter(|r| *r > 0)
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
        let Some(p) = news(before, link) else {
            return;
        };
        if let Ok(map) = self.by_client.lock() {
            for m in map
                .get(&client)
                .into_iter()
                .flatten()
                .filter_map(Weak::upgrade)
            {
                if let Ok(mut n) = m.news.lock() {
                    *n = p;
                }
                m.notify.notify_waiters();
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
        {
            let (w1, w2, wo) = (m1.next(), m2.next(), other.next());
            tokio::pin!(w1, w2, wo);
            // Waiting already (polled once), as a connection task would be.
            let _ = futures_poll(&mut w1);
            let _ = futures_poll(&mut w2);
            let _ = futures_poll(&mut wo);
            moves.moved(a, WIFI);
            moves.moved(a, BT);
            assert_eq!(w1.await, Pace::Hold(225_000));
            assert_eq!(w2.await, Pace::Hold(225_000));
            // The other client's connection hears nothing.
            assert!(tokio::time::timeout(Duration::from_millis(20), wo)
                .await
                .is_err());
        }
        // A connection opened on the held link is capped from its start.
        assert_eq!(moves.register(a).start(), Some(225_000));
        {
            let w = m2.next();
            tokio::pin!(w);
            let _ = futures_poll(&mut w);
            moves.moved(a, WIFI);
            assert_eq!(w.await, Pace::Settle(6_250_000));
        }
        // A move to a slower link, or to one of unknown rate, is not news.
        {
            let w = m2.next();
            tokio::pin!(w);
            let _ = futures_poll(&mut w);
            moves.moved(a, LinkPace::default());
            moves.moved(a, WIFI);
            assert!(tokio::time::timeout(Duration::from_millis(20), w)
                .await
                .is_err());
        }
        // A closed connection is forgotten at the next registration.
        drop(m1);
        let _m3 = moves.register(a);
        let tracked = moves.by_client.lock().map(|m| m[&a].len()).unwrap_or(0);
        assert_eq!(tracked, 2);
        drop(m2);
        // A client that is gone leaves nothing behind.
        moves.forget(a);
        assert!(moves.on.lock().map(|m| m.is_empty()).unwrap_or(false));
    }

    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        std::pin::Pin::new(f).poll(&mut cx)
    }

    #[test]
    fn a_cap_is_set_and_lifted_on_a_real_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let s = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        let get = || {
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
        };
        cap_pacing(fd, 6_250_000);
        assert_eq!(get(), 6_250_000);
        cap_pacing(fd, u64::MAX);
        assert_eq!(get(), u64::MAX);
    }
}
