//! The tiny client on a Cortex-M4F (thumbv7em-none-eabihf; an STM32F407's memory map, RNG and
//! 16 MHz reset clock): the same device loop as `tiny-device` on Linux, built to measure flash
//! and RAM. What a real board replaces is marked: the radios ([`mailbox`]: frames handed over
//! in shared memory, as a Wi-Fi or Bluetooth co-processor's driver does), and the provisioning
//! block ([`PROVISION`]: the HomeSpot identity, the device key and a boot counter, written to
//! flash when the device is set up).
#![no_std]
#![no_main]

mod mailbox;
mod systick;
mod trng;

use core::mem::MaybeUninit;

use embassy_executor::Spawner;
use embassy_time::Duration;
use embedded_alloc::LlffHeap as Heap;
use panic_halt as _;
use phandoff::client::ClientConfig;
use phandoff_embassy::{AppConfig, DeviceConfig, Resources, Shared, Telemetry};
use rand_core::SeedableRng;
use static_cell::StaticCell;

/// The `alloc` heap of the protocol core (adverts, handshake state, datagrams in flight).
const HEAP_SIZE: usize = 12 * 1024;

#[global_allocator]
static HEAP: Heap = Heap::empty();

/// Written to flash when the device is provisioned.
#[repr(C)]
pub struct Provision {
    /// The HomeSpot identity the device trusts.
    pub identity: [u8; 32],
    /// The device's secret key.
    pub secret: [u8; 32],
    /// Incremented by the bootloader on every boot: handshake timestamps grow across restarts.
    pub boots: u32,
    /// The radios' MAC addresses.
    pub macs: [[u8; 6]; 2],
}

#[link_section = ".rodata.provision"]
#[no_mangle]
static PROVISION: Provision = Provision {
    identity: [0; 32],
    secret: [0; 32],
    boots: 0,
    macs: [[0x02, 0, 0, 0, 0, 0], [0x02, 0, 0, 0, 0, 1]],
};

fn provision() -> Provision {
    // Read as the flash holds it, not as the compiler saw it at build time.
    // SAFETY: PROVISION is a valid, aligned static.
    unsafe { core::ptr::read_volatile(&PROVISION) }
}

static RESOURCES: StaticCell<Resources> = StaticCell::new();
static SHARED: StaticCell<Shared> = StaticCell::new();
static TELEMETRY: StaticCell<Telemetry> = StaticCell::new();

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    {
        static mut ARENA: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: called once, before any allocation; the arena is used by nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(ARENA) as usize, HEAP_SIZE) }
    }
    let Some(mut p) = cortex_m::Peripherals::take() else {
        return;
    };
    systick::start(&mut p.SYST);
    // Without true randomness there is no safe handshake: stop rather than guess.
    let Some(seed) = trng::seed() else {
        return;
    };
    let rng = rand_chacha::ChaCha20Rng::from_seed(seed);
    let prov = provision();
    let sh = SHARED.init(Shared::new(prov.macs));
    let res = RESOURCES.init(Resources::new());
    let tel = TELEMETRY.init(Telemetry::new());
    let cfg = DeviceConfig {
        identity: prov.identity,
        secret: prov.secret,
        preferred: 0,
        client: ClientConfig {
            probe_interval: core::time::Duration::from_millis(20),
            probe_misses: 4,
            ..ClientConfig::default()
        },
        epoch_us: u64::from(prov.boots) << 40,
    };
    let app = AppConfig {
        port: 5555,
        period: Duration::from_millis(20),
    };
    let mut report = |_n: phandoff_embassy::Note| {};
    phandoff_embassy::run(
        res,
        sh,
        tel,
        mailbox::Radio::new(0),
        mailbox::Radio::new(1),
        cfg,
        app,
        rng,
        &mut report,
    )
    .await;
}
