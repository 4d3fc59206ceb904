//! Frames between the radios and the three stacks: each radio's own stack (DHCP, the protocol's
//! UDP socket) and the global stack, which holds the device's global address and sends through
//! whichever radio is active.
//!
//! In: a radio's frame addressed to the global address goes, without its Ethernet header, to the
//! global stack (`Medium::Ip`); every other frame for this radio's MAC (or broadcast) goes to the
//! radio's stack. Out: the radio's stack's frames go out as they are; the global stack's packets
//! go out of the active radio, framed to the HomeSpot's MAC on that link.
//!
//! The HomeSpot's MAC on a link is learned only from frames that carried a protocol message the
//! client authenticated ([`Shared::vouch`]): a device that claims the router's address on the
//! air cannot draw the global traffic to itself.

use core::cell::Cell;
use core::net::Ipv4Addr;
use core::task::{Context, Poll};

use embassy_net_driver::{Driver, RxToken, TxToken};
use embassy_net_driver_channel as ch;

/// Radios a device has.
pub const RADIOS: usize = 2;
/// An Ethernet frame without its FCS.
pub const LINK_MTU: usize = 1514;
/// An IP packet on the global stack.
pub const IP_MTU: usize = 1500;
/// Frames each channel holds each way.
pub const QUEUE: usize = 2;
/// The channel between a radio and its stack.
pub type LinkChannel = ch::State<LINK_MTU, QUEUE, QUEUE>;
/// The channel between the switchboard and the global stack.
pub type GlobalChannel = ch::State<IP_MTU, QUEUE, QUEUE>;

const ETH: usize = 14;
/// How many protocol frames from the router each radio remembers until one is vouched for.
const CANDIDATES: usize = 4;
/// The prefix of a protocol message that names it (type, receiver index, counter).
pub const TAG: usize = 16;

/// What the switchboard counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Frames too short to carry an Ethernet header.
    pub runts: u32,
    /// Frames dropped because a stack's queue was full.
    pub full: u32,
    /// Global packets dropped: no active radio, or its HomeSpot MAC not known yet.
    pub no_path: u32,
}

struct Router {
    ip: Cell<Option<Ipv4Addr>>,
    mac: Cell<Option<[u8; 6]>>,
    seen: Cell<[([u8; 6], [u8; TAG]); CANDIDATES]>,
    next: Cell<usize>,
}

impl Router {
    const fn new() -> Router {
        Router {
            ip: Cell::new(None),
            mac: Cell::new(None),
            seen: Cell::new([([0; 6], [0; TAG]); CANDIDATES]),
            next: Cell::new(0),
        }
    }
}

/// What the switchboard and the device's control loop share (one executor, no locks).
pub struct Shared {
    macs: [[u8; 6]; RADIOS],
    routers: [Router; RADIOS],
    global: Cell<Option<Ipv4Addr>>,
    active: Cell<Option<usize>>,
    counts: Cell<Counts>,
}

impl Shared {
    /// The radios' MAC addresses (each its own: the HomeSpot leases by MAC).
    pub const fn new(macs: [[u8; 6]; RADIOS]) -> Shared {
        Shared {
            macs,
            routers: [Router::new(), Router::new()],
            global: Cell::new(None),
            active: Cell::new(None),
            counts: Cell::new(Counts {
                runts: 0,
                full: 0,
                no_path: 0,
            }),
        }
    }

    /// Radio `i`'s MAC.
    pub fn mac(&self, i: usize) -> [u8; 6] {
        self.macs[i]
    }

    /// The global address, once the HomeSpot assigned it.
    pub fn global(&self) -> Option<Ipv4Addr> {
        self.global.get()
    }

    /// Sets the global address frames are steered by.
    pub fn set_global(&self, g: Option<Ipv4Addr>) {
        self.global.set(g);
    }

    /// The radio the global stack sends through.
    pub fn active(&self) -> Option<usize> {
        self.active.get()
    }

    /// Sends the global stack's packets through radio `i` from now on.
    pub fn set_active(&self, i: Option<usize>) {
        self.active.set(i);
    }

    /// The HomeSpot's address on radio `i`'s link (from its lease and the advert).
    pub fn set_router(&self, i: usize, ip: Option<Ipv4Addr>) {
        let r = &self.routers[i];
        if r.ip.get() != ip {
            r.ip.set(ip);
            r.mac.set(None);
        }
    }

    /// The HomeSpot's MAC on radio `i`'s link, once vouched for.
    pub fn router_mac(&self, i: usize) -> Option<[u8; 6]> {
        self.routers[i].mac.get()
    }

    /// The client authenticated a message from the HomeSpot on radio `i` that began with
    /// `tag`: the frame that carried it gives the HomeSpot's MAC there.
    pub fn vouch(&self, i: usize, tag: &[u8]) {
        let r = &self.routers[i];
        if tag.len() < TAG {
            return;
        }
        // A replay of the same frame from another MAC makes the tag ambiguous: learn nothing.
        let seen = r.seen.get();
        let mut macs = seen
            .iter()
            .filter(|(_, t)| t[..] == tag[..TAG])
            .map(|(m, _)| *m);
        if let Some(mac) = macs.next() {
            if macs.all(|m| m == mac) {
                r.mac.set(Some(mac));
            }
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts.get()
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        let mut c = self.counts.get();
        f(&mut c);
        self.counts.set(c);
    }

    /// Where a frame that radio `i` received goes.
    pub fn classify(&self, i: usize, frame: &[u8]) -> Steer {
        if frame.len() < ETH {
            self.count(|c| c.runts += 1);
            return Steer::Drop;
        }
        let dst = &frame[..6];
        if dst != self.macs[i] && dst[0] & 1 == 0 {
            // Unicast for someone else: a bridge floods these.
            return Steer::Drop;
        }
        let ip = &frame[ETH..];
        if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 {
            return Steer::Link;
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let to = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        if Some(to) == self.global.get() {
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            return Steer::Global(total.clamp(20, ip.len()));
        }
        let hl = usize::from(ip[0] & 0x0f) * 4;
        let r = &self.routers[i];
        if ip[9] == 17 && Some(src) == r.ip.get() && ip.len() >= hl + 8 + TAG {
            let udp = &ip[hl..];
            if u16::from_be_bytes([udp[0], udp[1]]) == crate::device::PORT {
                let mut mac = [0; 6];
                mac.copy_from_slice(&frame[6..12]);
                let mut tag = [0; TAG];
                tag.copy_from_slice(&udp[8..8 + TAG]);
                let mut seen = r.seen.get();
                let n = r.next.get();
                seen[n % CANDIDATES] = (mac, tag);
                r.seen.set(seen);
                r.next.set(n.wrapping_add(1));
            }
        }
        Steer::Link
    }
}

/// Where a received frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// Nowhere.
    Drop,
    /// The radio's own stack, whole.
    Link,
    /// The global stack: the IP packet of this many bytes after the Ethernet header.
    Global(usize),
}

/// The channels' far ends: one per radio's stack, one for the global stack.
pub struct Ends<'d> {
    /// Radio `i`'s stack.
    pub links: [ch::Runner<'d, LINK_MTU>; RADIOS],
    /// The global stack.
    pub global: ch::Runner<'d, IP_MTU>,
}

/// At most this many frames each way per radio per turn, so one busy radio cannot starve the
/// other.
const BURST: usize = 8;

fn pump<D: Driver>(
    sh: &Shared,
    i: usize,
    radio: &mut D,
    link: &mut ch::Runner<'_, LINK_MTU>,
    global: &mut ch::Runner<'_, IP_MTU>,
    cx: &mut Context<'_>,
) -> bool {
    let mut moved = false;
    for _ in 0..BURST {
        let Some((rx, _)) = radio.receive(cx) else {
            break;
        };
        moved = true;
        rx.consume(|frame| match sh.classify(i, frame) {
            Steer::Drop => {}
            Steer::Link => match link.try_rx_buf() {
                Some(buf) if buf.len() >= frame.len() => {
                    buf[..frame.len()].copy_from_slice(frame);
                    link.rx_done(frame.len());
                }
                _ => sh.count(|c| c.full += 1),
            },
            Steer::Global(n) => match global.try_rx_buf() {
                Some(buf) if buf.len() >= n => {
                    buf[..n].copy_from_slice(&frame[ETH..ETH + n]);
                    global.rx_done(n);
                }
                _ => sh.count(|c| c.full += 1),
            },
        });
    }
    for _ in 0..BURST {
        let Poll::Ready(buf) = link.poll_tx_buf(cx) else {
            break;
        };
        let Some(tx) = radio.transmit(cx) else {
            break;
        };
        tx.consume(buf.len(), |out| out.copy_from_slice(buf));
        link.tx_done();
        moved = true;
    }
    if sh.active() == Some(i) {
        for _ in 0..BURST {
            let Poll::Ready(pkt) = global.poll_tx_buf(cx) else {
                break;
            };
            let Some(router) = sh.router_mac(i) else {
                sh.count(|c| c.no_path += 1);
                global.tx_done();
                moved = true;
                continue;
            };
            let Some(tx) = radio.transmit(cx) else {
                break;
            };
            let mac = sh.macs[i];
            tx.consume(ETH + pkt.len(), |out| {
                out[..6].copy_from_slice(&router);
                out[6..12].copy_from_slice(&mac);
                out[12..14].copy_from_slice(&[0x08, 0x00]);
                out[ETH..].copy_from_slice(pkt);
            });
            global.tx_done();
            moved = true;
        }
    }
    moved
}

/// Moves frames between the radios and the stacks, forever.
pub async fn run<A: Driver, B: Driver>(sh: &Shared, mut a: A, mut b: B, ends: Ends<'_>) -> ! {
    let Ends {
        links: [mut la, mut lb],
        mut global,
    } = ends;
    use embassy_net_driver::LinkState;
    la.set_link_state(LinkState::Up);
    lb.set_link_state(LinkState::Up);
    global.set_link_state(LinkState::Up);
    core::future::poll_fn(|cx| {
        loop {
            let mut moved = pump(sh, 0, &mut a, &mut la, &mut global, cx);
            moved |= pump(sh, 1, &mut b, &mut lb, &mut global, cx);
            if sh.active().is_none() {
                // Nowhere to send the global stack's packets: drop them rather than let its
                // queue stall.
                while global.poll_tx_buf(cx).is_ready() {
                    sh.count(|c| c.no_path += 1);
                    global.tx_done();
                }
            }
            if !moved {
                return Poll::<()>::Pending;
            }
        }
    })
    .await;
    unreachable!("the switchboard's poll never completes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC0: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const HS: [u8; 6] = [2, 0, 0, 0, 0, 0x55];
    const EVIL: [u8; 6] = [2, 0, 0, 0, 0, 0x66];

    fn udp_frame(
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
        src: [u8; 4],
        dst: [u8; 4],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + payload.len()) as u16;
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
        ]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let port = crate::device::PORT.to_be_bytes();
        let ulen = (8 + payload.len()) as u16;
        f.extend_from_slice(&[
            port[0],
            port[1],
            port[0],
            port[1],
            (ulen >> 8) as u8,
            ulen as u8,
            0,
            0,
        ]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_to_the_global_address_go_to_the_global_stack_without_their_header() {
        let sh = Shared::new([MAC0, [2, 0, 0, 0, 0, 2]]);
        let f = udp_frame(MAC0, HS, [10, 200, 0, 1], [10, 200, 0, 9], &[7; 20]);
        assert_eq!(sh.classify(0, &f), Steer::Link, "no global address yet");
        sh.set_global(Some(Ipv4Addr::new(10, 200, 0, 9)));
        assert_eq!(sh.classify(0, &f), Steer::Global(48));
        // Ethernet padding after the packet is not handed on.
        let mut padded = f.clone();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(sh.classify(0, &padded), Steer::Global(48));
        let other = udp_frame(
            [2, 9, 9, 9, 9, 9],
            HS,
            [10, 200, 0, 1],
            [10, 200, 0, 9],
            &[7; 20],
        );
        assert_eq!(
            sh.classify(0, &other),
            Steer::Drop,
            "unicast to another MAC"
        );
        assert_eq!(sh.classify(0, &[1, 2, 3]), Steer::Drop);
        assert_eq!(sh.counts().runts, 1);
    }

    #[test]
    fn the_homespots_mac_is_learned_only_from_a_vouched_message() {
        let sh = Shared::new([MAC0, [2, 0, 0, 0, 0, 2]]);
        sh.set_router(0, Some(Ipv4Addr::new(10, 77, 1, 1)));
        let genuine = [6u8; TAG];
        let mut forged = [6u8; TAG];
        forged[4] = 9;
        // The HomeSpot's frame, then a device claiming the router's address.
        let f = udp_frame(MAC0, HS, [10, 77, 1, 1], [10, 77, 1, 100], &genuine);
        let e = udp_frame(MAC0, EVIL, [10, 77, 1, 1], [10, 77, 1, 100], &forged);
        assert_eq!(sh.classify(0, &f), Steer::Link);
        assert_eq!(sh.classify(0, &e), Steer::Link);
        assert_eq!(sh.router_mac(0), None, "nothing before a vouch");
        sh.vouch(0, &genuine);
        assert_eq!(sh.router_mac(0), Some(HS));
        // The forger's message never verifies, so it is never vouched for; a vouch for a tag
        // nobody sent changes nothing.
        sh.vouch(0, &[1u8; TAG]);
        assert_eq!(sh.router_mac(0), Some(HS));
        // A new router address forgets the MAC.
        sh.set_router(0, Some(Ipv4Addr::new(10, 77, 1, 2)));
        assert_eq!(sh.router_mac(0), None);
    }
}
