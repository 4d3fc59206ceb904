//! Building DHCP replies: header fields copied from the request, options chosen by the link's
//! configuration and the client's parameter request list (option 55).

use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode, UnknownOption};

use crate::config::LinkConfig;

/// Option 252, Web Proxy Auto-Discovery. dhcproto has no named variant for it.
pub const WPAD: u8 = 252;

/// A reply header for `req`: op, htype, xid, flags, giaddr and chaddr copied, as RFC 2131
/// table 3 asks. `req.hlen()` must be at most 16 (the engine checks before calling).
pub fn header(req: &Message, typ: MessageType, server_id: Ipv4Addr) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_htype(req.htype())
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_giaddr(req.giaddr())
        .set_chaddr(req.chaddr());
    m.opts_mut().insert(DhcpOption::MessageType(typ));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server_id));
    m
}

/// Adds the lease times: 51, and T1/T2 at 1/2 and 7/8 of it.
pub fn add_lease_times(m: &mut Message, lease: Duration) {
    let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX - 1);
    m.opts_mut().insert(DhcpOption::AddressLeaseTime(secs));
    m.opts_mut().insert(DhcpOption::Renewal(secs / 2));
    m.opts_mut()
        .insert(DhcpOption::Rebinding((u64::from(secs) * 7 / 8) as u32));
}

/// Adds the link's configuration options. Subnet mask, router, DNS and domain go to every
/// client; the broadcast address when asked; option 252 when asked or when `wpad_always`.
pub fn add_link_options(m: &mut Message, req: &Message, link: &LinkConfig) {
    let asked = |code: OptionCode| match req.opts().get(OptionCode::ParameterRequestList) {
        Some(DhcpOption::ParameterRequestList(list)) => list.contains(&code),
        _ => false,
    };
    let opts = m.opts_mut();
    opts.insert(DhcpOption::SubnetMask(link.subnet.netmask()));
    opts.insert(DhcpOption::Router(vec![link.router]));
    if !link.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(link.dns.clone()));
    }
    if let Some(d) = &link.domain {
        opts.insert(DhcpOption::DomainName(d.clone()));
    }
    if asked(OptionCode::BroadcastAddr) {
        opts.insert(DhcpOption::BroadcastAddr(link.subnet.broadcast()));
    }
    if let Some(url) = &link.wpad_url {
        if link.wpad_always || asked(OptionCode::Unknown(WPAD)) {
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::Unknown(WPAD),
                url.as_bytes().to_vec(),
            )));
        }
    }
}

/// Echoes what a reply must carry back from its request: the relay agent information
/// (option 82, RFC 3046 section 2.2) and the client identifier (option 61, RFC 6842).
pub fn echo(m: &mut Message, req: &Message) {
    for code in [
        OptionCode::ClientIdentifier,
        OptionCode::RelayAgentInformation,
    ] {
        if let Some(o) = req.opts().get(code) {
            m.opts_mut().insert(o.clone());
        }
    }
}
