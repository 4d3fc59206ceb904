//! The path the local proxy sends traffic on, published by the manager, and the meter that
//! counts bytes and measures each handoff's interruption as the application sees it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::pac::PacHandle;

/// Where requests go now.
#[derive(Clone)]
pub enum Upstream {
    /// At a HomeSpot: its proxy, from our global address to its global address. P-Handoff
    /// moves the host routes under this path; the path itself does not change.
    HomeSpot {
        /// Our global address (on `lo`).
        global: Ipv4Addr,
        /// The HomeSpot proxy on its global address.
        proxy: SocketAddrV4,
        /// Receive buffer for connections to it (bytes; 0: the kernel's default).
        rcvbuf: u32,
    },
    /// A plain link: sockets bound to its address, the PAC result of that link (none: DIRECT).
    Link {
        /// The link's address.
        addr: Ipv4Addr,
        /// Its PAC evaluator.
        pac: Option<PacHandle>,
    },
}

/// The current path. `epoch` changes only when in-flight requests must restart (a new
/// upstream path); a P-Handoff between a HomeSpot's radios keeps it.
#[derive(Clone)]
pub struct Path {
    /// Restart generation.
    pub epoch: u64,
    /// The interface in use (for status).
    pub link: String,
    /// `None` while no link is usable (requests hibernate).
    pub upstream: Option<Upstream>,
}

impl Path {
    /// No link yet.
    pub fn none() -> Path {
        Path {
            epoch: 0,
            link: String::new(),
            upstream: None,
        }
    }
}

/// One handoff's interruption, as seen in the bytes the proxy receives.
#[derive(Debug, Clone, Copy)]
pub struct Gap {
    /// The handoff it belongs to.
    pub handoff: u64,
    /// The largest pause between received chunks from the handoff's start until shortly
    /// after it completed.
    pub gap: Duration,
    /// From the new link's address to the first bytes after the handoff (L7 restarts).
    pub from_address: Option<Duration>,
    /// The largest pause after the handoff completed (a planned move first drains the old
    /// radio; pauses during the drain count in `gap` only).
    pub after_done: Duration,
}

struct Window {
    handoff: u64,
    start: Instant,
    /// Silence before this counts for an earlier handoff (this one overtook it).
    from: Option<Instant>,
    done: Option<Instant>,
    address_at: Option<Instant>,
    first_after_done: Option<Instant>,
    max_gap: Duration,
    max_gap_after: Duration,
}

struct MeterState {
    last: Option<Instant>,
    window: Option<Window>,
}

/// Bytes carried (for the throughput rule) and handoff interruptions.
pub struct Meter {
    bytes: std::sync::atomic::AtomicU64,
    state: Mutex<MeterState>,
    gaps: mpsc::UnboundedSender<Gap>,
}

/// How long after a handoff completes its window stays open (TCP recovery on the new link
/// belongs to the handoff).
const SETTLE: Duration = Duration::from_secs(1);

impl Meter {
    /// A meter reporting to `gaps`.
    pub fn new(gaps: mpsc::UnboundedSender<Gap>) -> Meter {
        Meter {
            bytes: 0.into(),
            state: Mutex::new(MeterState {
                last: None,
                window: None,
            }),
            gaps,
        }
    }

    /// Bytes so far.
    pub fn total(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `n` bytes went up (a tunnel's upload): they count as traffic for the throughput rule,
    /// not as arrivals for the handoff figures.
    pub fn sent(&self, n: usize) {
        self.bytes
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// `n` bytes arrived now.
    pub fn bytes(&self, n: usize) {
        self.bytes_at(n, Instant::now());
    }

    /// `n` bytes arrived at `now` (the clock passed in, for tests).
    pub fn bytes_at(&self, n: usize, now: Instant) {
        self.bytes
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let mut s = self.lock();
        let last = s.last.replace(now);
        let mut report = None;
        if let Some(w) = s.window.as_mut() {
            if let Some(l) = last {
                if now >= w.start {
                    let since = w.from.map_or(l, |f| f.max(l));
                    w.max_gap = w.max_gap.max(now.saturating_duration_since(since));
                }
                if w.done.is_some() {
                    w.max_gap_after = w.max_gap_after.max(now - l);
                }
            }
            if let Some(d) = w.done {
                w.first_after_done.get_or_insert(now);
                if now > d + SETTLE {
                    report = Some(Gap {
                        handoff: w.handoff,
                        gap: w.max_gap,
                        after_done: w.max_gap_after,
                        from_address: w.address_at.and_then(|a| {
                            w.first_after_done.map(|f| f.saturating_duration_since(a))
                        }),
                    });
                }
            }
        }
        if report.is_some() {
            s.window = None;
        }
        drop(s);
        if let Some(g) = report {
            let _ = self.gaps.send(g);
        }
    }

    /// A handoff starts now (decided or detected). A window still open (a handoff overtaken
    /// by this one) is reported with what it measured until now, not dropped: every handoff
    /// gets its figures.
    pub fn handoff_started(&self, handoff: u64, at: Instant) {
        self.start(handoff, at, false);
    }

    /// A handoff starts at `at` because the link in use was found dead. The silence running
    /// now is the loss's own (the link died before the probes noticed): it is this handoff's
    /// interruption, whole, and not charged to an earlier handoff still open.
    pub fn loss_detected(&self, handoff: u64, at: Instant) {
        self.start(handoff, at, true);
    }

    fn start(&self, handoff: u64, at: Instant, loss: bool) {
        let mut s = self.lock();
        let overtook = s.window.is_some() && !loss;
        if let Some(w) = s.window.take() {
            // A decision: the silence running now belongs to the earlier handoff up to this
            // moment. A loss: the silence is the loss's.
            let open = s
                .last
                .filter(|_| !loss)
                .map_or(Duration::ZERO, |l| at.saturating_duration_since(l));
            let since_start = if at >= w.start { open } else { Duration::ZERO };
            let _ = self.gaps.send(Gap {
                handoff: w.handoff,
                gap: w.max_gap.max(since_start),
                after_done: if w.done.is_some() {
                    w.max_gap_after.max(open)
                } else {
                    w.max_gap_after
                },
                from_address: w
                    .address_at
                    .and_then(|a| w.first_after_done.map(|f| f.saturating_duration_since(a))),
            });
        }
        s.window = Some(Window {
            handoff,
            start: at,
            from: overtook.then_some(at),
            done: None,
            address_at: None,
            first_after_done: None,
            max_gap: Duration::ZERO,
            max_gap_after: Duration::ZERO,
        });
    }

    /// The handoff completed now; `address_at`: when the new link got its address.
    pub fn handoff_done(&self, handoff: u64, address_at: Option<Instant>) {
        self.handoff_done_at(handoff, address_at, Instant::now());
    }

    /// The handoff completed at `now`.
    pub fn handoff_done_at(&self, handoff: u64, address_at: Option<Instant>, now: Instant) {
        let mut s = self.lock();
        if let Some(w) = s.window.as_mut().filter(|w| w.handoff == handoff) {
            w.done = Some(now);
            w.address_at = address_at;
        }
    }

    /// Closes a window with no traffic after it (idle: nothing to report).
    pub fn expire(&self, now: Instant) {
        let mut s = self.lock();
        if s.window
            .as_ref()
            .is_some_and(|w| w.done.is_some_and(|d| now > d + Duration::from_secs(5)))
        {
            s.window = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// With a virtual clock: bytes every 10 ms, a handoff at 100 ms with a 120 ms silence,
    /// done at 180 ms; the report comes with the first bytes a second after it is done.
    #[test]
    fn the_meter_measures_the_gap_around_a_handoff() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let m = Meter::new(tx);
        let t0 = Instant::now();
        for i in 0..=10 {
            m.bytes_at(1000, ms(t0, i * 10));
        }
        m.handoff_started(1, ms(t0, 100));
        m.handoff_done_at(1, Some(ms(t0, 150)), ms(t0, 180));
        // Silence from 100 to 220 ms, then traffic again for more than a second.
        for i in 22..=130 {
            m.bytes_at(1000, ms(t0, i * 10));
        }
        let g = rx.try_recv().expect("a report");
        assert_eq!(g.handoff, 1);
        assert_eq!(g.gap, Duration::from_millis(120), "{g:?}");
        assert_eq!(g.after_done, Duration::from_millis(120));
        assert_eq!(
            g.from_address,
            Some(Duration::from_millis(70)),
            "address at 150, bytes at 220"
        );
        assert_eq!(m.total(), (11 + 109) * 1000);
        assert!(rx.try_recv().is_err(), "one report per handoff");
    }

    /// A handoff overtaken by another (a user switch during a drain) is reported when the next
    /// one starts, with the silence measured until then.
    #[test]
    fn an_overtaken_handoff_is_reported_with_its_figures() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let m = Meter::new(tx);
        let t0 = Instant::now();
        m.bytes_at(100, t0);
        m.handoff_started(1, ms(t0, 10));
        m.bytes_at(100, ms(t0, 50));
        m.handoff_started(2, ms(t0, 130));
        let g = rx.try_recv().expect("the first handoff is reported");
        assert_eq!((g.handoff, g.gap), (1, Duration::from_millis(80)), "{g:?}");
        m.handoff_done_at(2, None, ms(t0, 140));
        for i in 15..=130 {
            m.bytes_at(100, ms(t0, i * 10));
        }
        let g = rx.try_recv().expect("the second");
        // The silence before 130 ms was the first one's: the second counts from its start.
        assert_eq!((g.handoff, g.gap), (2, Duration::from_millis(20)), "{g:?}");
    }

    /// A move at 10 ms, done at 12 ms; the new link dies silently at 300 ms and the probes
    /// notice at 410 ms. The move keeps its own figure; the loss gets the whole silence.
    #[test]
    fn a_loss_overtaking_a_handoff_takes_its_own_silence() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let m = Meter::new(tx);
        let t0 = Instant::now();
        m.bytes_at(100, t0);
        m.handoff_started(1, ms(t0, 10));
        m.handoff_done_at(1, None, ms(t0, 12));
        for i in 3..=30 {
            m.bytes_at(100, ms(t0, i * 10));
        }
        m.loss_detected(2, ms(t0, 410));
        let g = rx.try_recv().expect("the move is reported");
        assert_eq!((g.handoff, g.gap), (1, Duration::from_millis(30)), "{g:?}");
        m.handoff_done_at(2, None, ms(t0, 415));
        for i in 42..=160 {
            m.bytes_at(100, ms(t0, i * 10));
        }
        let g = rx.try_recv().expect("the loss is reported");
        assert_eq!((g.handoff, g.gap), (2, Duration::from_millis(120)), "{g:?}");
    }

    #[test]
    fn uploads_count_as_traffic_not_arrivals_and_idle_windows_expire() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let m = Meter::new(tx);
        let t0 = Instant::now();
        m.sent(5000);
        assert_eq!(m.total(), 5000);
        m.handoff_started(2, t0);
        m.handoff_done_at(2, None, ms(t0, 10));
        m.expire(ms(t0, 6000));
        m.bytes_at(10, ms(t0, 7000));
        m.bytes_at(10, ms(t0, 8500));
        assert!(rx.try_recv().is_err(), "an expired window reports nothing");
    }
}
