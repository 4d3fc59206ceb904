//! The congestion control of the proxy's client connections.
//!
//! The proxy is the sender of every download a client makes through the HomeSpot, so its
//! congestion control decides how a connection behaves when P-Handoff moves it between radios:
//! the pacing of [`crate::moves`] and every figure in BENCHMARKS.md were measured with BBR.
//! Linux's default is CUBIC unless the system says otherwise, so the listeners ask for the
//! configured one (`proxy.congestion_control`, `bbr` by default); accepted connections inherit
//! it. Where the kernel lacks it (no `tcp_bbr` module), the proxy runs with the kernel's default
//! and says so once.

use socket2::Socket;
use tracing::{info, warn};

/// Asks for `name` on each of `listeners`; `None` leaves the kernel's default.
pub fn apply<'a>(listeners: impl IntoIterator<Item = &'a Socket>, name: Option<&str>) {
    let Some(name) = name else {
        return;
    };
    let mut warned = false;
    let mut set = 0;
    for s in listeners {
        let default = s
            .tcp_congestion()
            .map(|v| {
                String::from_utf8_lossy(&v)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_else(|_| "?".into());
        match s.set_tcp_congestion(name.as_bytes()) {
            Ok(()) => set += 1,
            Err(e) if !warned => {
                warned = true;
                warn!(
                    congestion_control = name,
                    error = %e,
                    default = %default,
                    "proxy: the kernel refused this congestion control (on OpenWrt: install \
                     kmod-tcp-bbr); client connections use the kernel's default, and a move \
                     between radios may pause downloads longer"
                );
            }
            Err(_) => {}
        }
    }
    if set > 0 {
        info!(
            congestion_control = name,
            "proxy: client connections use {name}"
        );
    }
}
