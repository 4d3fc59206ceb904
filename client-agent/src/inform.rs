//! WPAD by DHCPINFORM (RFC 2131 section 3.4, option 252 from RFC draft-ietf-wrec-wpad).
//!
//! The OS's DHCP client holds the lease; we only ask for configuration. The socket binds the
//! link's own address on port 68 with `SO_REUSEADDR` and `SO_BINDTODEVICE`, so it coexists with
//! dhclient or udhcpc, and the server's unicast answer to `ciaddr` reaches us. The request is
//! built with dhcproto; the answer is read by a bounded option walker of our own, because
//! dhcproto's decoder asserts on some malformed option lengths and this input comes from the
//! network.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::Encodable;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// What a DHCPINFORM answer told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InformReply {
    /// The server that answered (option 54, else the source address).
    pub server: Option<Ipv4Addr>,
    /// The WPAD URL (option 252), if any.
    pub wpad: Option<String>,
    /// The first router (option 3).
    pub router: Option<Ipv4Addr>,
    /// The subnet mask (option 1), as a prefix length.
    pub prefix: Option<u8>,
}

/// Asks the DHCP server on `ifname` (our address `addr`) for its configuration: unicast to
/// `server` when known, else broadcast; `tries` attempts of `timeout` each.
pub async fn inform(
    ifname: &str,
    addr: Ipv4Addr,
    mac: [u8; 6],
    server: Option<Ipv4Addr>,
    timeout: Duration,
    tries: u32,
) -> std::io::Result<InformReply> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from((addr, 68)).into())?;
    let sock = UdpSocket::from_std(s.into())?;
    let xid: u32 = rand_xid(addr);
    let mut m = Message::new(
        addr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.set_xid(xid);
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Inform));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::ServerIdentifier,
        OptionCode::Unknown(252),
    ]));
    let packet = m.to_vec().map_err(std::io::Error::other)?;
    let to = SocketAddrV4::new(server.unwrap_or(Ipv4Addr::BROADCAST), 67);
    let mut buf = vec![0u8; 1500];
    for _ in 0..tries.max(1) {
        sock.send_to(&packet, to).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
            let Ok(r) = r else { break };
            let (n, from) = r?;
            if let Some(mut reply) = parse_ack(&buf[..n], xid) {
                if reply.server.is_none() {
                    if let SocketAddr::V4(f) = from {
                        reply.server = Some(*f.ip());
                    }
                }
                return Ok(reply);
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no DHCPINFORM answer on {ifname} after {tries} tries"),
    ))
}

fn rand_xid(addr: Ipv4Addr) -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ u32::from(addr).rotate_left(7) ^ std::process::id()
}

/// A DHCPACK for transaction `xid`, read without trusting any length.
pub fn parse_ack(p: &[u8], xid: u32) -> Option<InformReply> {
    if p.len() < 240
        || p[0] != 2
        || p.get(4..8)? != xid.to_be_bytes()
        || p[236..240] != [99, 130, 83, 99]
    {
        return None;
    }
    let mut r = InformReply::default();
    let mut ack = false;
    let mut o = &p[240..];
    while let Some((&code, rest)) = o.split_first() {
        match code {
            0 => {
                o = rest;
                continue;
            }
            255 => break,
            _ => {}
        }
        let (&len, rest) = rest.split_first()?;
        let v = rest.get(..usize::from(len))?;
        let ip = || <[u8; 4]>::try_from(v.get(..4)?).ok().map(Ipv4Addr::from);
        match code {
            53 => ack = v == [5],
            54 => r.server = ip(),
            3 => r.router = ip(),
            1 => r.prefix = ip().map(|m| u32::from(m).leading_ones() as u8),
            252 => {
                // Some servers send the URL NUL-terminated or quoted.
                let url = String::from_utf8_lossy(v)
                    .trim_end_matches('\0')
                    .trim()
                    .trim_matches('"')
                    .to_string();
                if !url.is_empty() {
                    r.wpad = Some(url);
                }
            }
            _ => {}
        }
        o = &rest[usize::from(len)..];
    }
    ack.then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(opts: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 240];
        p[0] = 2;
        p[4..8].copy_from_slice(&7u32.to_be_bytes());
        p[236..240].copy_from_slice(&[99, 130, 83, 99]);
        p.extend_from_slice(opts);
        p
    }

    #[test]
    fn reads_the_wpad_url_and_refuses_garbage() {
        let mut o = vec![
            53, 1, 5, 54, 4, 10, 0, 0, 1, 3, 4, 10, 0, 0, 254, 1, 4, 255, 255, 255, 0, 252,
        ];
        let url = b"http://10.0.0.1/wpad.dat\0";
        o.push(url.len() as u8);
        o.extend_from_slice(url);
        o.push(255);
        let r = parse_ack(&ack(&o), 7).expect("an ack");
        assert_eq!(r.wpad.as_deref(), Some("http://10.0.0.1/wpad.dat"));
        assert_eq!(r.server, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(r.router, Some(Ipv4Addr::new(10, 0, 0, 254)));
        assert_eq!(r.prefix, Some(24));
        assert_eq!(parse_ack(&ack(&o), 8), None, "other transaction");
        assert_eq!(parse_ack(&ack(&[53, 1, 2, 255]), 7), None, "an offer");
        assert_eq!(
            parse_ack(&ack(&[53, 1, 5, 252, 200, 1]), 7),
            None,
            "option past the end"
        );
        assert_eq!(
            parse_ack(&ack(&[53, 1, 5, 3, 2, 1, 1]), 7).and_then(|r| r.router),
            None
        );
        for n in 0..300 {
            let mut p = ack(&o);
            p.truncate(n);
            let _ = parse_ack(&p, 7);
        }
    }
}
