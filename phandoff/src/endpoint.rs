//! What both endpoints share: time and transmits. Randomness comes from the caller as a
//! `rand_core::CryptoRng` (the OS's in the drivers; a seeded generator in tests).

use alloc::vec::Vec;
use core::net::SocketAddrV4;
use core::ops::Add;
use core::time::Duration;

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
