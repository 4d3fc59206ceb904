//! The P-Handoff client on `embassy-net`, for small devices with two radios (DESIGN.md section
//! 12): the device keeps one global address while its traffic moves between a HomeSpot's radios.
//!
//! # How it fits together
//!
//! Each radio (any `embassy-net-driver` [`Driver`]: a TAP device on Linux, a Wi-Fi or Bluetooth
//! driver on a microcontroller) gets a stack of its own, which takes a DHCP lease and carries the
//! protocol's UDP socket. A third stack holds the global address (`Medium::Ip`); the
//! [`switchboard`] hands it the frames addressed to that address from either radio and sends its
//! packets out of the active radio. The [`device`] loop runs the `phandoff` client core (no_std +
//! alloc): discovery, the v2 handshake against the pinned identity, probes, switches. The
//! [`telemetry`] application sends sequence-numbered datagrams from the global address.
//!
//! # What it does not do
//!
//! Choose the HomeSpot to trust (the device is provisioned with its identity), rekey, speak
//! IPv6, or carry TCP (the global stack could; the example application is UDP). It has no radio
//! drivers, no entropy source and no clock of its own: the board supplies them
//! ([`run`]'s arguments, `embassy-time`'s driver). `std` is needed only by the `linux` feature
//! (the `tiny-device` program).
#![cfg_attr(not(feature = "linux"), no_std)]

extern crate alloc;

pub mod device;
pub mod switchboard;
pub mod telemetry;

use embassy_futures::join::{join, join3, join4};
use embassy_net::{Config, DhcpConfig, StackResources};
use embassy_net_driver::{Driver, HardwareAddress};
use embassy_net_driver_channel as ch;
use embassy_time::Duration;
use rand_core::CryptoRng;

pub use device::{DeviceConfig, Note};
pub use switchboard::Shared;
pub use telemetry::Telemetry;

/// Every buffer the device needs, in one place (a `static` on a microcontroller).
pub struct Resources {
    links: [switchboard::LinkChannel; switchboard::RADIOS],
    global: switchboard::GlobalChannel,
    link_stacks: [StackResources<3>; switchboard::RADIOS],
    global_stack: StackResources<2>,
}

impl Resources {
    /// Empty buffers.
    pub const fn new() -> Resources {
        Resources {
            links: [ch::State::new(), ch::State::new()],
            global: ch::State::new(),
            link_stacks: [StackResources::new(), StackResources::new()],
            global_stack: StackResources::new(),
        }
    }
}

impl Default for Resources {
    fn default() -> Resources {
        Resources::new()
    }
}

/// The example application's settings.
#[derive(Debug, Clone, Copy)]
pub struct AppConfig {
    /// The UDP port of the service on the HomeSpot's global address (and the device's own).
    pub port: u16,
    /// One datagram this often.
    pub period: Duration,
}

/// Runs the device forever on radios `a` and `b` (radio 0 and 1; their MACs are `sh`'s).
/// `rng` must be a cryptographic generator seeded from a true random source.
#[allow(clippy::too_many_arguments)]
pub async fn run<A: Driver, B: Driver, R: CryptoRng + Send + 'static>(
    res: &mut Resources,
    sh: &Shared,
    tel: &Telemetry,
    a: A,
    b: B,
    cfg: DeviceConfig,
    app: AppConfig,
    mut rng: R,
    report: &mut dyn FnMut(Note),
) -> ! {
    let [l0, l1] = &mut res.links;
    let (r0, d0) = ch::new(l0, HardwareAddress::Ethernet(sh.mac(0)));
    let (r1, d1) = ch::new(l1, HardwareAddress::Ethernet(sh.mac(1)));
    let (rg, dg) = ch::new(&mut res.global, HardwareAddress::Ip);
    let [s0, s1] = &mut res.link_stacks;
    let dhcp = || Config::dhcpv4(DhcpConfig::default());
    let (stack0, mut net0) = embassy_net::new(d0, dhcp(), s0, rng.next_u64());
    let (stack1, mut net1) = embassy_net::new(d1, dhcp(), s1, rng.next_u64());
    let (global, mut netg) =
        embassy_net::new(dg, Config::default(), &mut res.global_stack, rng.next_u64());
    let ends = switchboard::Ends {
        links: [r0, r1],
        global: rg,
    };
    join4(
        switchboard::run(sh, a, b, ends),
        join3(net0.run(), net1.run(), netg.run()),
        device::run(sh, [stack0, stack1], global, cfg, rng, report),
        join(
            telemetry::run(tel, global, app.port, app.period),
            core::future::pending::<()>(),
        ),
    )
    .await;
    unreachable!("the device's loops never end")
}
