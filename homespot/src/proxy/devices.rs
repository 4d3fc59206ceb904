//! Which device a connection comes from: its hardware address in the kernel's neighbour table
//! (so a device's many addresses count as one), or its IP address where none is known.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use ipnet::Ipv4Net;

/// What a device is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKey {
    /// Its Ethernet address, from the neighbour table of its link.
    Mac([u8; 6]),
    /// Its IP address (no neighbour entry: a global address, or a device not resolved yet).
    Ip(IpAddr),
}

/// Looks up a client's link and hardware address.
pub struct Devices {
    /// (subnet, interface) of every link, in config order.
    links: Vec<(Ipv4Net, String)>,
    /// A socket for the SIOCGARP ioctl.
    sock: Option<OwnedFd>,
}

impl Devices {
    /// Lookups for the links `(subnet, interface)`.
    pub fn new(links: Vec<(Ipv4Net, String)>) -> Devices {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .ok()
            .map(OwnedFd::from);
        Devices { links, sock }
    }

    /// The link (index) whose subnet holds `ip`; `None` for addresses on no link (a global
    /// address, which may be routed into any of them).
    pub fn link_of(&self, ip: IpAddr) -> Option<usize> {
        let v4 = v4(ip)?;
        self.links.iter().position(|(net, _)| net.contains(&v4))
    }

    /// The device `ip` belongs to.
    pub fn key(&self, ip: IpAddr) -> DeviceKey {
        let mac = v4(ip).and_then(|a| {
            let (_, ifname) = self.links.iter().find(|(net, _)| net.contains(&a))?;
            self.neighbour(a, ifname)
        });
        match mac {
            Some(m) => DeviceKey::Mac(m),
            None => DeviceKey::Ip(ip),
        }
    }

    /// The complete neighbour entry for `addr` on `ifname` (SIOCGARP: one system call, no
    /// table read).
    fn neighbour(&self, addr: Ipv4Addr, ifname: &str) -> Option<[u8; 6]> {
        let fd = self.sock.as_ref()?.as_raw_fd();
        // SAFETY: arpreq is plain old data; all-zero is a valid value.
        let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
        let pa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(addr).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_in and sockaddr are both 16 bytes; this copies the bytes.
        req.arp_pa = unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(pa) };
        for (d, s) in req.arp_dev.iter_mut().zip(ifname.bytes().take(15)) {
            *d = s as libc::c_char;
        }
        // SAFETY: a valid socket and a properly initialised arpreq for SIOCGARP.
        let rc = unsafe { libc::ioctl(fd, libc::SIOCGARP as _, &mut req) };
        if rc != 0 || req.arp_flags & libc::ATF_COM == 0 {
            return None;
        }
        let mut mac = [0u8; 6];
        for (d, s) in mac.iter_mut().zip(req.arp_ha.sa_data.iter()) {
            *d = *s as u8;
        }
        (mac != [0; 6]).then_some(mac)
    }
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}
