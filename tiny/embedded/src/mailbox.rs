//! Stands for the radio drivers (not part of what is measured): each radio hands frames over in
//! shared memory, one each way, as a co-processor's driver does over SPI or SDIO with DMA.
//! A real board puts its Wi-Fi and Bluetooth drivers here.

use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::Context;

use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState};

const MTU: usize = 1514;

struct Slot {
    len: AtomicUsize,
    buf: core::cell::UnsafeCell<[u8; MTU]>,
}

// SAFETY: `len` hands the buffer over: the driver touches it only while `len` says it owns it.
unsafe impl Sync for Slot {}

impl Slot {
    const fn new() -> Slot {
        Slot {
            len: AtomicUsize::new(0),
            buf: core::cell::UnsafeCell::new([0; MTU]),
        }
    }
}

/// Frames from each radio (filled by its co-processor), and to it.
static RX: [Slot; 2] = [Slot::new(), Slot::new()];
static TX: [Slot; 2] = [Slot::new(), Slot::new()];

/// One radio.
pub struct Radio(usize);

impl Radio {
    pub fn new(i: usize) -> Radio {
        Radio(i)
    }
}

pub struct Rx(usize);
pub struct Tx(usize);

impl embassy_net_driver::RxToken for Rx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        let s = &RX[self.0];
        let n = s.len.load(Ordering::Acquire).min(MTU);
        // SAFETY: a non-zero `len` gives the buffer to us until we zero it.
        let r = f(unsafe { &mut (&mut *s.buf.get())[..n] });
        s.len.store(0, Ordering::Release);
        r
    }
}

impl embassy_net_driver::TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let s = &TX[self.0];
        let n = len.min(MTU);
        // SAFETY: a zero `len` means the co-processor took the last frame: the buffer is ours.
        let r = f(unsafe { &mut (&mut *s.buf.get())[..n] });
        s.len.store(n, Ordering::Release);
        r
    }
}

impl Driver for Radio {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(Rx, Tx)> {
        if RX[self.0].len.load(Ordering::Acquire) > 0 && TX[self.0].len.load(Ordering::Acquire) == 0
        {
            return Some((Rx(self.0), Tx(self.0)));
        }
        // The co-processor's interrupt would wake the task; without one, look again soon.
        cx.waker().wake_by_ref();
        None
    }

    fn transmit(&mut self, cx: &mut Context<'_>) -> Option<Tx> {
        if TX[self.0].len.load(Ordering::Acquire) == 0 {
            return Some(Tx(self.0));
        }
        cx.waker().wake_by_ref();
        None
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.max_transmission_unit = MTU;
        c
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet([0x02, 0, 0, 0, 0, self.0 as u8])
    }
}
