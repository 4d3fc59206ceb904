//! Pacing a client's proxy connections for a moment after P-Handoff moves it to another link.
//!
//! A connection that moves keeps the congestion state it learned on the old radio. Moving from
//! Bluetooth to Wi-Fi, BBR's estimate is soon inflated by the burst of acknowledgements that
//! arrives once the new path is in use, and the sender overfills the Wi-Fi queue: hundreds of
//! drops within 100 ms, each costing the download a 25-30 ms pause to repair (packet traces in
//! BENCHMARKS.md). When a client moves to a link with a higher configured rate (`rate_mbps`)
//! than the one it left, each of its connections is paced at no more than the new link's rate
//! for [`SETTLE`] after the move, which is what the link can carry anyway, and then let go. A
//! move to a slower link is left alone (the old radio's short queue drains by itself; capping
//! there measured worse). The handoff task calls [`Moves::moved`]; each
//! connection's own task sets the socket option, so a socket is never touched after it closed.

use portable_atomic::AtomicU64;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a moved connection is held to the new link's rate.
pub const SETTLE: Duration = Duration::from_millis(300);

/// One connection's news: the rate to hold to (bytes per second), and a wake-up.
#[derive(Default)]
pub struct Mover {
    rate: AtomicU64,
    notify: Notify,
}

impl Mover {
    /// Waits for the client's next move; returns the rate to hold to.
    pub async fn next(&self) -> u64 {
        self.notify.notified().await;
        self.rate.load(Ordering::Relaxed)
    }
}

/// The proxy connections of each client address, and the rate of the link each client is on.
#[derive(Default)]
pub struct Moves {
    by_client: Mutex<HashMap<Ipv4Addr, Vec<Weak<Mover>>>>,
    rate: Mutex<HashMap<Ipv4Addr, u64>>,
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

    /// `client`'s traffic now takes a link that carries `rate` bytes per second (`None`: not
    /// configured). Its connections hear of it if the link is faster than the one it left.
    pub fn moved(&self, client: Ipv4Addr, rate: Option<u64>) {
        let before = match self.rate.lock() {
            Ok(mut r) => match rate {
                Some(v) => r.insert(client, v),
                None => r.remove(&client).and(None),
            },
            Err(_) => None,
        };
        let Some(rate) = rate.filter(|r| before.is_some_and(|b| r > &b)) else {
            return;
        };
        if let Ok(map) = self.by_client.lock() {
            for m in map
                .get(&client)
                .into_iter()
                .flatten()
                .filter_map(Weak::upgrade)
            {
                m.rate.store(rate, Ordering::Relaxed);
                m.notify.notify_waiters();
            }
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

    #[tokio::test]
    async fn a_move_reaches_that_clients_connections_only() {
        let moves = Moves::default();
        let a = Ipv4Addr::new(10, 200, 0, 2);
        let (m1, m2) = (moves.register(a), moves.register(a));
        let other = moves.register(Ipv4Addr::new(10, 200, 0, 3));
        {
            let (w1, w2, wo) = (m1.next(), m2.next(), other.next());
            tokio::pin!(w1, w2, wo);
            // Waiting already (polled once), as a connection task would be.
            let _ = futures_poll(&mut w1);
            let _ = futures_poll(&mut w2);
            let _ = futures_poll(&mut wo);
            moves.moved(a, Some(250_000));
            moves.moved(a, Some(6_250_000));
            assert_eq!(w1.await, 6_250_000);
            assert_eq!(w2.await, 6_250_000);
            // The other client's connection hears nothing.
            assert!(tokio::time::timeout(Duration::from_millis(20), wo)
                .await
                .is_err());
        }
        // A move to a slower link, or to one of unknown rate, is not news.
        {
            let w = m2.next();
            tokio::pin!(w);
            let _ = futures_poll(&mut w);
            moves.moved(a, Some(250_000));
            moves.moved(a, None);
            moves.moved(a, Some(6_250_000));
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
