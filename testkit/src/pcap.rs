//! Just enough pcap reading to pull UDP payloads out of a tcpdump capture (Ethernet, IPv4,
//! UDP): what an attacker on the air saw, for tests that replay it.

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

/// Every UDP datagram in the capture file bytes `data`, in capture order.
pub fn udp(data: &[u8]) -> Vec<Datagram> {
    let mut out = Vec::new();
    if data.len() < 24 {
        return out;
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        _ => return out,
    };
    let u32_at = |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut at = 24;
    while at + 16 <= data.len() {
        let secs = u64::from(u32_at(data, at));
        let frac = u64::from(u32_at(data, at + 4));
        let len = u32_at(data, at + 8) as usize;
        at += 16;
        if at + len > data.len() {
            break;
        }
        let frame = &data[at..at + len];
        at += len;
        let micros = secs * 1_000_000 + if nanos { frac / 1000 } else { frac };
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        out.push(Datagram {
            micros,
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst_port: u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]),
            payload: ip[ihl + 8..].to_vec(),
        });
    }
    out
}
