//! After P-Handoff moves a client, its proxy connections retransmit at once (RFC 6069).
//!
//! When a radio dies silently, the HomeSpot's TCP senders to that client keep retransmitting
//! into it until the client's move arrives; each unanswered retransmission doubles the timer,
//! so the first retransmission over the new radio can come a whole backed-off period after
//! the move (a 40-50 ms timer becomes 90-150 ms). RFC 6069 lets an ICMP "host unreachable"
//! for the oldest unacknowledged segment take one doubling back, and Linux then retransmits
//! at once if the reverted timer has already run out (`tcp_ld_RTO_revert`). The move is
//! exactly that news, so [`kick`] tells the kernel so for one socket: it reads the socket's
//! oldest unacknowledged sequence number (`TCP_REPAIR` on and off without a window probe,
//! `TCP_QUEUE_SEQ` and `SIOCOUTQ`) and sends the ICMP message to the socket's own address
//! over loopback. A socket that has not backed off, or whose number moved meanwhile, ignores
//! it. Nothing leaves the HomeSpot.

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// The raw ICMP socket the messages go out of (none if it cannot be opened).
fn icmp() -> Option<RawFd> {
    static SOCK: OnceLock<Option<OwnedFd>> = OnceLock::new();
    SOCK.get_or_init(|| {
        socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::ICMPV4),
        )
        .ok()
        .map(|s| {
            // It only sends: every incoming ICMP type filtered out, so no copy of the
            // namespace's ICMP traffic queues up on it.
            const SOL_RAW: libc::c_int = 255;
            const ICMP_FILTER: libc::c_int = 1;
            let all: u32 = u32::MAX;
            // SAFETY: `s` is an open raw ICMP socket; the value is a u32 of the size given.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    SOL_RAW,
                    ICMP_FILTER,
                    (&all as *const u32).cast(),
                    std::mem::size_of::<u32>() as libc::socklen_t,
                );
            }
            OwnedFd::from(s)
        })
    })
    .as_ref()
    .map(|s| s.as_raw_fd())
}

fn setopt(fd: RawFd, name: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: `fd` is an open socket; the value is a c_int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Bytes in TCP socket `fd`'s send queue, sent or not (`SIOCOUTQ`).
fn outq(fd: RawFd) -> Option<libc::c_int> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one c_int.
    (unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) } == 0).then_some(n)
}

/// The oldest unacknowledged sequence number of TCP socket `fd`. A socket with an empty send
/// queue (most of a client's connections at any moment) is not put in repair mode at all.
fn snd_una(fd: RawFd) -> Option<u32> {
    const TCP_REPAIR_OFF_NO_WP: libc::c_int = -1;
    const TCP_SEND_QUEUE: libc::c_int = 2;
    if outq(fd)? <= 0 || !setopt(fd, libc::TCP_REPAIR, 1) {
        return None;
    }
    let mut write_seq: u32 = 0;
    let ok = setopt(fd, libc::TCP_REPAIR_QUEUE, TCP_SEND_QUEUE) && {
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: reading a u32 option into a u32 of the size given.
        unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUEUE_SEQ,
                (&mut write_seq as *mut u32).cast(),
                &mut len,
            ) == 0
        }
    };
    let queued = if ok { outq(fd) } else { None };
    setopt(fd, libc::TCP_REPAIR, TCP_REPAIR_OFF_NO_WP);
    queued
        .filter(|n| *n > 0)
        .map(|n| write_seq.wrapping_sub(n as u32))
}

/// The ICMP "host unreachable" message about a segment from `local` to `peer` with `seq`.
pub fn unreachable(local: SocketAddrV4, peer: SocketAddrV4, seq: u32) -> [u8; 36] {
    let mut m = [0u8; 36];
    m[0] = 3; // destination unreachable
    m[1] = 1; // host unreachable
              // The quoted IPv4 header of the segment (no options) and the first 8 bytes of its TCP header.
    let ip = &mut m[8..28];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&local.ip().octets());
    ip[16..20].copy_from_slice(&peer.ip().octets());
    let sum = checksum(&m[8..28]);
    m[18..20].copy_from_slice(&sum.to_be_bytes());
    m[28..30].copy_from_slice(&local.port().to_be_bytes());
    m[30..32].copy_from_slice(&peer.port().to_be_bytes());
    m[32..36].copy_from_slice(&seq.to_be_bytes());
    let sum = checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn v4(a: std::io::Result<socket2::SockAddr>) -> Option<SocketAddrV4> {
    a.ok()?.as_socket_ipv4()
}

/// Tells the kernel that TCP socket `fd`'s oldest unacknowledged segment was lost to a broken
/// path (its client moved): a backed-off retransmission timer is taken back and, if it has
/// run out, the segment is sent again now. Does nothing for a socket with nothing unacknowledged.
/// `fd` must be open for the call.
pub fn kick(fd: RawFd) {
    // SAFETY: `fd` is open for this call; the borrowed socket is not closed (ManuallyDrop).
    let s = std::mem::ManuallyDrop::new(unsafe {
        <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    let (Some(local), Some(peer)) = (v4(s.local_addr()), v4(s.peer_addr())) else {
        return;
    };
    let (Some(seq), Some(icmp)) = (snd_una(fd), icmp()) else {
        return;
    };
    let m = unreachable(local, peer, seq);
    let to = socket2::SockAddr::from(SocketAddrV4::new(*local.ip(), 0));
    // SAFETY: `icmp` is the open raw socket; the message and address outlive the call.
    unsafe {
        libc::sendto(
            icmp,
            m.as_ptr().cast(),
            m.len(),
            libc::MSG_DONTWAIT,
            to.as_ptr().cast(),
            to.len(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_quotes_the_segment_with_valid_checksums() {
        let m = unreachable(
            "10.200.0.1:3128".parse().expect("addr"),
            "10.200.0.2:40000".parse().expect("addr"),
            0x0102_0304,
        );
        assert_eq!((m[0], m[1]), (3, 1));
        assert_eq!(checksum(&m), 0, "ICMP checksum");
        assert_eq!(checksum(&m[8..28]), 0, "quoted IP header checksum");
        assert_eq!(&m[20..24], &[10, 200, 0, 1]);
        assert_eq!(&m[24..28], &[10, 200, 0, 2]);
        assert_eq!(&m[28..32], &[0x0c, 0x38, 0x9c, 0x40]);
        assert_eq!(&m[32..36], &[1, 2, 3, 4]);
    }

    #[test]
    fn a_kick_leaves_a_live_socket_working() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let mut s = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (mut peer, _) = l.accept().expect("accept");
        // Nothing unacknowledged: nothing to say.
        assert_eq!(snd_una(s.as_raw_fd()), None);
        kick(s.as_raw_fd());
        s.write_all(b"after").expect("write");
        let mut b = [0u8; 5];
        peer.read_exact(&mut b).expect("read");
        assert_eq!(&b, b"after");
    }
}
