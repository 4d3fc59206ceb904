//! The client global addresses whose host route points into a LAN link now. The proxy serves
//! a source in the global subnet only when it is one of these: a device that picks an
//! unassigned global address, or one reaching the proxy from elsewhere, is refused (the
//! HomeSpot's unreachable route over the subnet already keeps such replies from leaving).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::RwLock;

use ipnet::Ipv4Net;

/// The routed global addresses, shared by the P-Handoff task (which changes them) and the
/// proxy (which reads them).
#[derive(Debug, Default)]
pub struct RoutedGlobals {
    subnet: Option<Ipv4Net>,
    routed: RwLock<HashSet<Ipv4Addr>>,
}

impl RoutedGlobals {
    /// None routed yet, in `subnet` (none: P-Handoff is off).
    pub fn new(subnet: Option<Ipv4Net>) -> RoutedGlobals {
        RoutedGlobals {
            subnet,
            routed: RwLock::default(),
        }
    }

    /// Whether `a` is in the global subnet.
    pub fn in_subnet(&self, a: Ipv4Addr) -> bool {
        self.subnet.is_some_and(|n| n.contains(&a))
    }

    /// Whether `a` has a host route into a LAN link now.
    pub fn is_routed(&self, a: Ipv4Addr) -> bool {
        self.routed
            .read()
            .map(|s| s.contains(&a))
            .unwrap_or_else(|p| p.into_inner().contains(&a))
    }

    /// `a`'s host route is in place.
    pub fn insert(&self, a: Ipv4Addr) {
        let mut s = self.routed.write().unwrap_or_else(|p| p.into_inner());
        s.insert(a);
    }

    /// `a`'s host route is gone.
    pub fn remove(&self, a: Ipv4Addr) {
        let mut s = self.routed.write().unwrap_or_else(|p| p.into_inner());
        s.remove(&a);
    }
}
