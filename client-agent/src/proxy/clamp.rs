//! Bounding what a HomeSpot has in flight to us around a P-Handoff.
//!
//! TCP delivers in order, so moving a busy download between radios costs either the old
//! radio's queue (data queued there arrives after newer data on the new radio) or the new
//! radio's queue (a window sized for a fast radio overflows a slow one). Before a planned
//! move the agent lowers `TCP_WINDOW_CLAMP` on its connections to the HomeSpot proxy and lets
//! the old radio's queue drain while data keeps flowing; it switches with little in flight,
//! then lifts the clamp so the new radio fills. A loss cannot be planned: no clamp then.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The connections to a HomeSpot proxy and the clamp in force.
#[derive(Default)]
pub struct Clamp {
    socks: Mutex<Vec<(RawFd, Weak<()>)>>,
    current: AtomicU32,
}

/// No clamp: the kernel's own window (a clamp this large never binds).
const NONE: u32 = 1 << 30;

fn set(fd: RawFd, bytes: u32) {
    let v = bytes as libc::c_int;
    // SAFETY: `fd` is an open TCP socket (its connection's token is alive, see `register`),
    // and the option value is a c_int of the size given.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_WINDOW_CLAMP,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

impl Clamp {
    /// Tracks a new connection's socket while `token` lives (the connection task holds it and
    /// drops it when the connection ends, on this single-threaded runtime with no await in
    /// between); applies the clamp in force.
    pub fn register(&self, fd: RawFd) -> Arc<()> {
        let token = Arc::new(());
        let c = self.current.load(Ordering::Relaxed);
        if c != 0 {
            set(fd, c);
        }
        if let Ok(mut v) = self.socks.lock() {
            v.retain(|(_, t)| t.strong_count() > 0);
            v.push((fd, Arc::downgrade(&token)));
        }
        token
    }

    /// Clamps every tracked connection's receive window to `bytes` (`None`: lifts it).
    pub fn apply(&self, bytes: Option<u32>) {
        let b = bytes.unwrap_or(NONE);
        self.current
            .store(if bytes.is_some() { b } else { 0 }, Ordering::Relaxed);
        if let Ok(mut v) = self.socks.lock() {
            v.retain(|(_, t)| t.strong_count() > 0);
            for (fd, t) in v.iter() {
                if let Some(_alive) = t.upgrade() {
                    set(*fd, b);
                }
            }
        }
    }

    /// How many connections are tracked.
    pub fn tracked(&self) -> usize {
        self.socks
            .lock()
            .map(|v| v.iter().filter(|(_, t)| t.strong_count() > 0).count())
            .unwrap_or(0)
    }
}
