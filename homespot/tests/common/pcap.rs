//! DHCP messages out of a tcpdump capture (the UDP part is `testkit::pcap`).

use std::net::Ipv4Addr;

use dhcproto::v4::Message;
use dhcproto::Decodable;

/// One captured DHCP message.
pub struct Captured {
    /// Capture time, microseconds since the epoch.
    pub micros: u64,
    /// IPv4 source address.
    pub src: Ipv4Addr,
    /// The decoded message.
    pub msg: Message,
}

pub use testkit::pcap::udp;

/// Every decodable DHCP message in the capture, in capture order.
pub fn dhcp_messages(data: &[u8]) -> Vec<Captured> {
    udp(data)
        .into_iter()
        .filter_map(|d| {
            Message::from_bytes(&d.payload).ok().map(|msg| Captured {
                micros: d.micros,
                src: d.src,
                msg,
            })
        })
        .collect()
}
