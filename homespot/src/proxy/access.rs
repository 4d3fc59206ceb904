//! Who may use the proxy, and how many connections each may hold.
//!
//! Fairness: a device (its hardware address, whatever addresses it uses) holds at most
//! `max_per_device` connections, and the devices of one link at most `max_per_link`, so one
//! device, or one flooded radio, cannot take the proxy from the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;

use super::devices::{DeviceKey, Devices};

/// The connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections at once, in all.
    pub total: usize,
    /// Connections at once from one device.
    pub per_device: usize,
    /// Connections at once from the devices of one link (global addresses count as a link
    /// of their own).
    pub per_link: usize,
}

/// The LAN subnets the proxy serves, the global addresses routed into them, and the
/// connection limits.
pub struct Access {
    subnets: Vec<Ipv4Net>,
    globals: Arc<crate::globals::RoutedGlobals>,
    devices: Devices,
    open: Mutex<Open>,
}

struct Open {
    limits: Limits,
    total: usize,
    per_device: HashMap<DeviceKey, usize>,
    per_link: HashMap<Option<usize>, usize>,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source is not on a served subnet.
    NotLan,
    /// The proxy holds `max_connections` already.
    TooManyTotal,
    /// This device holds `max_connections_per_client` already.
    TooManyFromClient,
    /// The devices on this link hold its share already.
    TooManyOnLink,
}

/// One admitted connection; dropping it frees its place.
pub struct Ticket {
    access: Arc<Access>,
    device: DeviceKey,
    link: Option<usize>,
}

impl Access {
    /// Access for clients on the link `subnets` and for the global addresses `globals` says
    /// are routed into a link.
    pub fn new(
        subnets: Vec<Ipv4Net>,
        globals: Arc<crate::globals::RoutedGlobals>,
        devices: Devices,
        limits: Limits,
    ) -> Access {
        Access {
            subnets,
            globals,
            devices,
            open: Mutex::new(Open {
                limits,
                total: 0,
                per_device: HashMap::new(),
                per_link: HashMap::new(),
            }),
        }
    }

    /// New limits (a reload). Connections already admitted stay.
    pub fn set_limits(&self, limits: Limits) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).limits = limits;
    }

    /// Whether `ip` is on a served subnet, or a global address routed into one.
    pub fn is_lan(&self, ip: IpAddr) -> bool {
        let v4 = match ip {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => a,
                None => return false,
            },
        };
        if self.globals.in_subnet(v4) {
            return self.globals.is_routed(v4);
        }
        self.subnets.iter().any(|s| s.contains(&v4))
    }

    /// Admits a connection from `client`, or says why not.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Ticket, Refusal> {
        if !self.is_lan(client) {
            return Err(Refusal::NotLan);
        }
        let device = self.devices.key(client);
        let link = self.devices.link_of(client);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= open.limits.total {
            return Err(Refusal::TooManyTotal);
        }
        if open.per_device.get(&device).copied().unwrap_or(0) >= open.limits.per_device {
            return Err(Refusal::TooManyFromClient);
        }
        if open.per_link.get(&link).copied().unwrap_or(0) >= open.limits.per_link {
            return Err(Refusal::TooManyOnLink);
        }
        *open.per_device.entry(device).or_insert(0) += 1;
        *open.per_link.entry(link).or_insert(0) += 1;
        open.total += 1;
        Ok(Ticket {
            access: self.clone(),
            device,
            link,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().map(|o| o.total).unwrap_or(0)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.access.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_device.get_mut(&self.device) {
            *n -= 1;
            if *n == 0 {
                open.per_device.remove(&self.device);
            }
        }
        if let Some(n) = open.per_link.get_mut(&self.link) {
            *n -= 1;
            if *n == 0 {
                open.per_link.remove(&self.link);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_only_and_limits() {
        let globals = Arc::new(crate::globals::RoutedGlobals::new(Some(
            "10.200.0.0/24".parse().expect("net"),
        )));
        let net: Ipv4Net = "10.0.1.0/24".parse().expect("net");
        let a = Arc::new(Access::new(
            vec![net],
            globals.clone(),
            Devices::new(vec![(net, "nosuchif0".into())]),
            Limits {
                total: 3,
                per_device: 2,
                per_link: 3,
            },
        ));
        // A global address: served only while its host route points into a link.
        let g: IpAddr = "10.200.0.7".parse().expect("ip");
        assert_eq!(a.admit(g).err(), Some(Refusal::NotLan));
        globals.insert("10.200.0.7".parse().expect("ip"));
        drop(a.admit(g).expect("routed"));
        globals.remove("10.200.0.7".parse().expect("ip"));
        assert_eq!(a.admit(g).err(), Some(Refusal::NotLan));
        let c1: IpAddr = "10.0.1.5".parse().expect("ip");
        let c2: IpAddr = "10.0.1.6".parse().expect("ip");
        assert_eq!(
            a.admit("192.0.2.1".parse().expect("ip")).err(),
            Some(Refusal::NotLan)
        );
        assert_eq!(
            a.admit("::ffff:10.0.1.9".parse().expect("ip"))
                .map(|_| ())
                .err(),
            None
        );
        let t1 = a.admit(c1).expect("first");
        let _t2 = a.admit(c1).expect("second");
        assert_eq!(a.admit(c1).err(), Some(Refusal::TooManyFromClient));
        let _t3 = a.admit(c2).expect("other client");
        assert_eq!(a.admit(c2).err(), Some(Refusal::TooManyTotal));
        drop(t1);
        let _t4 = a.admit(c1).expect("a freed place is taken again");
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn one_link_holds_its_share_only() {
        let nets: Vec<Ipv4Net> = vec![
            "10.0.1.0/24".parse().expect("net"),
            "10.0.2.0/24".parse().expect("net"),
        ];
        let a = Arc::new(Access::new(
            nets.clone(),
            Arc::new(crate::globals::RoutedGlobals::new(None)),
            Devices::new(nets.iter().map(|n| (*n, "nosuchif0".into())).collect()),
            Limits {
                total: 10,
                per_device: 2,
                per_link: 4,
            },
        ));
        let mut held = Vec::new();
        for host in 10..12u8 {
            for _ in 0..2 {
                held.push(
                    a.admit(IpAddr::from([10, 0, 1, host]))
                        .expect("within share"),
                );
            }
        }
        assert_eq!(
            a.admit("10.0.1.20".parse().expect("ip")).err(),
            Some(Refusal::TooManyOnLink)
        );
        let _other = a
            .admit("10.0.2.20".parse().expect("ip"))
            .expect("other link");
    }
}
