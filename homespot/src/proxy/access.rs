//! Who may use the proxy, and how many connections each may hold.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;

/// The LAN subnets the proxy serves, the global addresses routed into them, and the
/// connection limits.
pub struct Access {
    subnets: Vec<Ipv4Net>,
    globals: Arc<crate::globals::RoutedGlobals>,
    max_total: usize,
    max_per_client: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source is not on a served subnet.
    NotLan,
    /// The proxy holds `max_connections` already.
    TooManyTotal,
    /// This client holds `max_connections_per_client` already.
    TooManyFromClient,
}

/// One admitted connection; dropping it frees its place.
pub struct Ticket {
    access: Arc<Access>,
    client: IpAddr,
}

impl Access {
    /// Access for clients on the link `subnets` and for the global addresses `globals` says
    /// are routed into a link.
    pub fn new(
        subnets: Vec<Ipv4Net>,
        globals: Arc<crate::globals::RoutedGlobals>,
        max_total: usize,
        max_per_client: usize,
    ) -> Access {
        Access {
            subnets,
            globals,
            max_total,
            max_per_client,
            open: Mutex::new(Open::default()),
        }
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
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_total {
            return Err(Refusal::TooManyTotal);
        }
        let n = open.per_client.entry(client).or_insert(0);
        if *n >= self.max_per_client {
            return Err(Refusal::TooManyFromClient);
        }
        *n += 1;
        open.total += 1;
        Ok(Ticket {
            access: self.clone(),
            client,
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
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
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
        let a = Arc::new(Access::new(
            vec!["10.0.1.0/24".parse().expect("net")],
            globals.clone(),
            3,
            2,
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
}
