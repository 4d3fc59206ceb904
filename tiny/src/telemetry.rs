//! The example application: sequence-numbered UDP datagrams from the global address to a
//! service on the HomeSpot's global address, at a fixed rate, across every move between radios.
//! The service may echo them; echoes are counted (they prove the HomeSpot's route follows).
//!
//! Datagram: `HSTL`, the sequence number (u32, big-endian), the device's uptime in microseconds
//! (u64, big-endian).

use core::cell::Cell;

use embassy_futures::select::{select, Either};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpAddress, Stack};
use embassy_time::{Duration, Instant, Timer};

/// The datagram's first bytes.
pub const MAGIC: &[u8; 4] = b"HSTL";
/// The datagram's length.
pub const LEN: usize = 16;

/// What the application counted.
#[derive(Debug, Default)]
pub struct Telemetry {
    sent: Cell<u32>,
    echoes: Cell<u32>,
}

impl Telemetry {
    /// Nothing counted yet.
    pub const fn new() -> Telemetry {
        Telemetry {
            sent: Cell::new(0),
            echoes: Cell::new(0),
        }
    }

    /// Datagrams handed to the stack.
    pub fn sent(&self) -> u32 {
        self.sent.get()
    }

    /// Echoes received.
    pub fn echoes(&self) -> u32 {
        self.echoes.get()
    }
}

/// Sends one datagram every `period` to `port` on the HomeSpot's global address (the global
/// stack's gateway) once the global stack has its address; counts what comes back.
pub async fn run(t: &Telemetry, global: Stack<'_>, port: u16, period: Duration) -> ! {
    let mut rx_meta = [PacketMetadata::EMPTY; 4];
    let mut tx_meta = [PacketMetadata::EMPTY; 4];
    let mut rx_buf = [0u8; 4 * LEN];
    let mut tx_buf = [0u8; 4 * LEN];
    let mut sock = UdpSocket::new(global, &mut rx_meta, &mut rx_buf, &mut tx_meta, &mut tx_buf);
    // Cannot fail: the port is free on a stack of our own.
    let _ = sock.bind(port);
    let mut next = Instant::now();
    let mut seq: u32 = 0;
    let mut echo = [0u8; LEN];
    loop {
        match select(Timer::at(next), sock.recv_from(&mut echo)).await {
            Either::First(()) => {
                next += period;
                let Some(hs) = global.config_v4().and_then(|c| c.gateway) else {
                    continue;
                };
                let mut d = [0u8; LEN];
                d[..4].copy_from_slice(MAGIC);
                d[4..8].copy_from_slice(&seq.to_be_bytes());
                d[8..].copy_from_slice(&Instant::now().as_micros().to_be_bytes());
                if sock.send_to(&d, (IpAddress::from(hs), port)).await.is_ok() {
                    seq = seq.wrapping_add(1);
                    t.sent.set(seq);
                }
            }
            Either::Second(Ok((n, _))) => {
                if n == LEN && echo[..4] == MAGIC[..] {
                    t.echoes.set(t.echoes.get().wrapping_add(1));
                }
            }
            Either::Second(Err(_)) => {}
        }
    }
}
