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

/// Asks for `name` on each of `listeners`; `None` leaves the kernel's default. Returns what
/// the client connections use, for the status ("bbr", or "cubic (the kernel's default)"); `None`
/// when there are no listeners.
pub fn apply<'a>(
    listeners: impl IntoIterator<Item = &'a Socket>,
    name: Option<&str>,
) -> Option<String> {
    let mut what = None;
    for s in listeners {
        let default = s
            .tcp_congestion()
            .map(|v| {
                String::from_utf8_lossy(&v)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_else(|_| "?".into());
        let Some(name) = name else {
            what.get_or_insert_with(|| format!("{default} (the kernel's default)"));
            continue;
        };
        match s.set_tcp_congestion(name.as_bytes()) {
            Ok(()) => {
                what.get_or_insert_with(|| name.to_string());
            }
            Err(e) => {
                if what.is_none() {
                    warn!(
                        congestion_control = name,
                        error = %e,
                        default = %default,
                        "proxy: the kernel refused this congestion control (on OpenWrt: install \
                         kmod-tcp-bbr); client connections use the kernel's default, and a move \
                         between radios may pause downloads longer"
                    );
                }
                what = Some(format!(
                    "{default} (the kernel's default; {name} refused: {e})"
                ));
            }
        }
    }
    if let Some(w) = &what {
        info!("proxy: client connections use TCP congestion control {w}");
    }
    what
}
