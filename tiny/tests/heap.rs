//! Issue 17: the heap the protocol core needs on a small device. The embedded build reserves
//! `HEAP_SIZE` (12 KiB, tiny/embedded/src/main.rs); this counts what the client core holds at
//! its peak through a whole life: discovery, the handshake, a switch, probes on two links, a
//! dead link and a move, the HomeSpot's restart and the re-handshake, and an eavesdropper's
//! replays and forgeries. Only allocations made inside the client's calls are counted (what
//! the harness allocates is not); memory the client hands out and the harness frees is still
//! counted as held, so the figure errs high. Pointers here are 64-bit, twice a Cortex-M's.

#[path = "../../phandoff/tests/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use phandoff::client::{Client, ClientEvent};
use phandoff::endpoint::Instant;
use phandoff::responder::{Event, Responder};

struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}

// SAFETY: every call goes to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counting() {
            let now = HELD.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if counting() {
            let _ = HELD.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(l.size()))
            });
        }
        // SAFETY: as allocated above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if counting() {
            let now = HELD.fetch_add(new, Ordering::Relaxed) + new;
            PEAK.fetch_max(now, Ordering::Relaxed);
            let _ = HELD.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(l.size()))
            });
        }
        // SAFETY: as allocated above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Runs `f` on the client with its allocations counted.
fn on<T>(c: &mut Client, f: impl FnOnce(&mut Client) -> T) -> T {
    COUNTING.with(|x| x.set(true));
    let r = f(c);
    COUNTING.with(|x| x.set(false));
    r
}

struct World {
    now: Instant,
    hs: Responder,
    cl: Client,
    up: [bool; 3],
    sniffed: Vec<(u8, Vec<u8>)>,
    events: Vec<ClientEvent>,
}

impl World {
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.hs.poll_transmit() {
                moved = true;
                self.sniffed.push((t.link, t.payload.clone()));
                if self.up[usize::from(t.link)] {
                    let now = self.now;
                    on(&mut self.cl, |c| c.handle_datagram(now, t.link, &t.payload));
                }
            }
            while let Some(t) = on(&mut self.cl, |c| c.poll_transmit()) {
                moved = true;
                if self.up[usize::from(t.link)] {
                    let from = SocketAddrV4::new(client_addr(t.link), PORT);
                    self.hs.handle_datagram(self.now, t.link, from, &t.payload);
                }
                on(&mut self.cl, |_| drop(t));
            }
            while let Some(e) = self.hs.poll_event() {
                moved = true;
                if let Event::Route { global, .. } = e {
                    self.hs.route_installed(global);
                }
            }
            while let Some(e) = on(&mut self.cl, |c| c.poll_event()) {
                moved = true;
                let now = self.now;
                match &e {
                    ClientEvent::LinkDead { link } => {
                        on(&mut self.cl, |c| c.switch(now, 1 - *link));
                    }
                    ClientEvent::Associated { .. } => {
                        on(&mut self.cl, |c| c.switch(now, 0));
                    }
                    _ => {}
                }
                self.events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let to = self.now + d;
        loop {
            let next = [self.hs.poll_timeout(), self.cl.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= to => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.hs.handle_timeout(now);
                    on(&mut self.cl, |c| c.handle_timeout(now));
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = to;
    }
}

#[test]
fn the_client_core_fits_the_embedded_heap() {
    const HEAP_SIZE: usize = 12 * 1024;
    let cl = client(3);
    let mut w = World {
        now: Instant(1_000_000),
        hs: responder(vec![]),
        cl,
        up: [true, true, false],
        sniffed: vec![],
        events: vec![],
    };
    let now = w.now;
    on(&mut w.cl, |c| c.query(0));
    w.pump();
    for l in 0..2 {
        on(&mut w.cl, |c| c.link_up(now, l, client_addr(l)));
    }
    on(&mut w.cl, |c| c.associate(now, 0));
    w.pump();
    w.run_for(Duration::from_secs(2));
    // Link 0 dies silently; the client moves to link 1.
    w.up[0] = false;
    w.run_for(Duration::from_secs(1));
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, ClientEvent::SwitchDone { link: 1, .. })),
        "{:?}",
        w.events
    );
    w.up[0] = true;
    w.run_for(Duration::from_secs(1));
    // The HomeSpot restarts and forgets the session: the client re-handshakes.
    w.hs = responder(vec![]);
    w.run_for(Duration::from_secs(2));
    // An eavesdropper replays all it saw to the client, and garbage.
    let now = w.now;
    for (link, p) in w.sniffed.clone() {
        on(&mut w.cl, |c| c.handle_datagram(now, link, &p));
    }
    for n in [0usize, 7, 300, 1400] {
        on(&mut w.cl, |c| c.handle_datagram(now, 0, &vec![0xa5; n]));
    }
    w.run_for(Duration::from_secs(1));
    let assoc = w
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Associated { .. }))
        .count();
    assert!(
        assoc >= 2,
        "the re-handshake after the restart: {:?}",
        w.events
    );
    let peak = PEAK.load(Ordering::Relaxed);
    println!(
        "client core heap: peak {peak} bytes held (64-bit pointers; the embedded build reserves {HEAP_SIZE})"
    );
    assert!(
        peak <= HEAP_SIZE,
        "peak {peak} bytes must fit the embedded heap of {HEAP_SIZE}"
    );
}
