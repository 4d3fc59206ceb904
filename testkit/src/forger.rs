//! A device that answers every P-Handoff Query on its link with the same advert (a rogue or a
//! forger in the attack tests): what it sends is up to the test; it answers nothing else.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use phandoff::wire::Message;

/// Binds the P-Handoff port in the calling thread's network namespace and answers every Query
/// with `advert` (an emitted message), `delay` after it came, from a thread of its own,
/// counting answers in `answered`, until `stop`.
pub fn answer_queries(
    advert: Vec<u8>,
    delay: Duration,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> Result<()> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, phandoff::driver::PORT))?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, SocketAddr::V4(from))) = s.recv_from(&mut buf) {
                if matches!(Message::parse(&buf[..n]), Ok(Message::Query(_))) {
                    std::thread::sleep(delay);
                    let _ = s.send_to(&advert, from);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    Ok(())
}
