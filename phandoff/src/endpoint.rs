//! What both endpoints share: time, transmits, a deterministic random source.

use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::ops::Add;
use core::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A point in time, in microseconds from any origin the caller chooses. The core never reads
/// a clock: every call that needs the time takes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Instant(pub u64);

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.as_micros() as u64))
    }
}

impl Instant {
    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// The link's broadcast address, on the protocol port.
    Broadcast,
    /// One peer.
    Unicast(SocketAddrV4),
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The link (the HomeSpot's link index) to send it on.
    pub link: u8,
    /// Where to.
    pub to: Dest,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// Random bytes from a seed the caller supplies (HMAC-SHA256 in counter mode). Keeps the core
/// free of an OS random source and deterministic under test; callers seed it from the OS.
pub struct Drbg {
    key: [u8; 32],
    counter: u64,
}

impl Drbg {
    /// A generator seeded with 32 random bytes.
    pub fn new(seed: [u8; 32]) -> Drbg {
        Drbg {
            key: seed,
            counter: 0,
        }
    }

    /// The next 32 bytes.
    pub fn next32(&mut self) -> [u8; 32] {
        self.counter += 1;
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        m.update(&self.counter.to_be_bytes());
        m.finalize().into_bytes().into()
    }

    /// The next 16 bytes.
    pub fn next16(&mut self) -> [u8; 16] {
        let mut o = [0u8; 16];
        o.copy_from_slice(&self.next32()[..16]);
        o
    }

    /// The next u64.
    pub fn next_u64(&mut self) -> u64 {
        let mut o = [0u8; 8];
        o.copy_from_slice(&self.next32()[..8]);
        u64::from_be_bytes(o)
    }
}
