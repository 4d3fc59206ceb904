//! Just enough pcap reading to pull UDP payloads out of a tcpdump capture (Ethernet, IPv4,
//! UDP): what an attacker on the air saw, for tests that replay it; and TCP segments' times
//! and lengths: when bytes reached a socket, whatever its reader was doing.

use std::net::Ipv4Addr;

/// One captured UDP datagram.
pub struct Datagram {
    /// Capture time, microseconds since the epoch.
    pub micros: u64,
    /// IPv4 source address.
    pub src: Ipv4Addr,
    /// UDP destination port.
    pub dst_port: u16,
    /// The payload.
    pub payload: Vec<u8>,
}

/// One captured TCP segment (its header; the capture may hold only the start of the data).
pub struct Segment {
    /// Capture time, microseconds since the epoch.
    pub micros: u64,
    /// TCP source port.
    pub src_port: u16,
    /// TCP destination port.
    pub dst_port: u16,
    /// Payload length, from the IP header (whatever the capture's snap length kept).
    pub len: usize,
}

/// Every UDP datagram in the capture file bytes `data`, in capture order.
pub fn udp(data: &[u8]) -> Vec<Datagram> {
    ipv4(data)
        .filter_map(|(micros, ip)| {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[9] != 17 || ip.len() < ihl + 8 {
                return None;
            }
            Some(Datagram {
                micros,
                src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
                dst_port: u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]),
                payload: ip[ihl + 8..].to_vec(),
            })
        })
        .collect()
}

/// Every TCP segment in the capture file bytes `data`, in capture order (a capture of
/// headers only, `tcpdump -s 128`, is enough).
pub fn tcp(data: &[u8]) -> Vec<Segment> {
    ipv4(data)
        .filter_map(|(micros, ip)| {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[9] != 6 || ip.len() < ihl + 20 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let tcp = &ip[ihl..];
            let doff = usize::from(tcp[12] >> 4) * 4;
            Some(Segment {
                micros,
                src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
                dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
                len: total.saturating_sub(ihl + doff),
            })
        })
        .collect()
}

/// The IPv4 packets (from at least 20 bytes on) of the Ethernet frames in a capture, with
/// their capture times in microseconds since the epoch.
fn ipv4(data: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let magic = data
        .get(..4)
        .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    let (le, nanos) = match magic {
        Some(0xa1b2c3d4) => (true, false),
        Some(0xa1b23c4d) => (true, true),
        Some(0xd4c3b2a1) => (false, false),
        Some(0x4d3cb2a1) => (false, true),
        _ => (true, false),
    };
    let known = magic
        .is_some_and(|m| [0xa1b2c3d4, 0xa1b23c4d, 0xd4c3b2a1, 0x4d3cb2a1].contains(&m))
        && data.len() >= 24;
    let u32_at = move |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut at = if known { 24 } else { data.len() };
    std::iter::from_fn(move || {
        while at + 16 <= data.len() {
            let secs = u64::from(u32_at(data, at));
            let frac = u64::from(u32_at(data, at + 4));
            let len = u32_at(data, at + 8) as usize;
            at += 16;
            if at + len > data.len() {
                at = data.len();
                return None;
            }
            let frame = &data[at..at + len];
            at += len;
            let micros = secs * 1_000_000 + if nanos { frac / 1000 } else { frac };
            if frame.len() >= 14 + 20 && frame[12..14] == [0x08, 0x00] {
                return Some((micros, &frame[14..]));
            }
        }
        None
    })
}
