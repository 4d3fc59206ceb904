//! Host routes for P-Handoff: the route programmer trait, its rtnetlink implementation
//! (feature `netlink`) and a recording fake for unit tests.
//!
//! On the HomeSpot: `G_c/32 via <client's link address> dev <link>`, replaced on every switch.
//! On the client: `G_h/32 via <HomeSpot's link address> dev <link> src G_c`. Both with the
//! optional `rto_min` and `quickack` attributes, which bound how long TCP waits after a lost
//! segment (DESIGN.md section 8). Reverse-path filtering must be loose on the links involved,
//! because packets of the old link still arrive after a switch: [`rp_filter`] sets and
//! restores it.

use std::net::Ipv4Addr;

/// One host route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    /// The /32 destination.
    pub dest: Ipv4Addr,
    /// The next hop on the link.
    pub via: Ipv4Addr,
    /// The link's interface index.
    pub ifindex: u32,
    /// Source address for locally generated packets (the client's global address).
    pub src: Option<Ipv4Addr>,
    /// Routing table (main when `None`).
    pub table: Option<u32>,
    /// TCP's minimum retransmission timeout on this route, in milliseconds.
    pub rto_min_ms: Option<u32>,
    /// TCP quick acknowledgements on this route.
    pub quickack: bool,
}

/// Why a route operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RouteError {
    /// The kernel refused it.
    Netlink(String),
    /// /proc/sys could not be read or written.
    Sysctl(String),
}

impl core::fmt::Display for RouteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RouteError::Netlink(e) => write!(f, "netlink: {e}"),
            RouteError::Sysctl(e) => write!(f, "sysctl: {e}"),
        }
    }
}

impl std::error::Error for RouteError {}

/// What the endpoints' drivers need from the kernel.
#[allow(async_fn_in_trait)]
pub trait RouteProgrammer {
    /// Adds or replaces the route to `r.dest` (in `r.table`).
    async fn replace(&mut self, r: &HostRoute) -> Result<(), RouteError>;
    /// Removes the route to `dest` (in `table`); absent is not an error.
    async fn remove(&mut self, dest: Ipv4Addr, table: Option<u32>) -> Result<(), RouteError>;
}

/// What the fake recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// `replace`.
    Replace(HostRoute),
    /// `remove`.
    Remove(Ipv4Addr, Option<u32>),
}

/// Records operations instead of doing them (for unit tests of drivers and policies).
#[derive(Debug, Default)]
pub struct Recorder {
    /// Every operation, in order.
    pub ops: Vec<RouteOp>,
}

impl RouteProgrammer for Recorder {
    async fn replace(&mut self, r: &HostRoute) -> Result<(), RouteError> {
        self.ops.push(RouteOp::Replace(r.clone()));
        Ok(())
    }
    async fn remove(&mut self, dest: Ipv4Addr, table: Option<u32>) -> Result<(), RouteError> {
        self.ops.push(RouteOp::Remove(dest, table));
        Ok(())
    }
}

/// The index of interface `name` in the calling thread's network namespace (0 if none). Unlike
/// /sys/class/net, which shows the namespace /sys was mounted in, this asks the kernel.
pub fn ifindex(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Sets `rp_filter` of `ifname` (in the caller's network namespace) to loose (2) and returns
/// the old value, to give back to [`restore_rp_filter`] on exit.
pub fn rp_filter_loose(ifname: &str) -> Result<String, RouteError> {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/rp_filter");
    let old =
        std::fs::read_to_string(&path).map_err(|e| RouteError::Sysctl(format!("{path}: {e}")))?;
    std::fs::write(&path, "2").map_err(|e| RouteError::Sysctl(format!("{path}: {e}")))?;
    Ok(old.trim().to_string())
}

/// Puts back a value [`rp_filter_loose`] returned.
pub fn restore_rp_filter(ifname: &str, old: &str) -> Result<(), RouteError> {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/rp_filter");
    std::fs::write(&path, old).map_err(|e| RouteError::Sysctl(format!("{path}: {e}")))
}

#[cfg(feature = "netlink")]
pub use self::netlink::Netlink;

#[cfg(feature = "netlink")]
mod netlink {
    use std::net::Ipv4Addr;

    use rtnetlink::packet_route::link::LinkAttribute;
    use rtnetlink::packet_route::route::{
        RouteAttribute, RouteMetric, RouteProtocol, RouteScope, RouteType,
    };
    use rtnetlink::packet_route::rule::RuleAction;
    use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

    use super::{HostRoute, RouteError, RouteProgrammer};

    /// Routes through rtnetlink, in the network namespace of the thread that made it.
    pub struct Netlink {
        handle: Handle,
    }

    fn nl(e: rtnetlink::Error) -> RouteError {
        RouteError::Netlink(describe(&e))
    }

    /// What went wrong, without `rtnetlink::Error`'s own Display: for an unexpected message
    /// it prints the message with Debug, and calling it links the Debug code of every
    /// route-netlink message type into the binary (~150 KiB, resident in a static build).
    pub(crate) fn describe(e: &rtnetlink::Error) -> String {
        use rtnetlink::Error as E;
        match e {
            E::NetlinkError(m) => format!("netlink error: {m}"),
            E::UnexpectedMessage(_) => "unexpected netlink message".to_string(),
            E::RequestFailed => "netlink request failed".to_string(),
            E::NamespaceError(s) => format!("namespace error: {s}"),
            E::InvalidHardwareAddress(a) => format!("invalid hardware address {a:02x?}"),
            E::InvalidIp(a) => format!("invalid IP address {a:?}"),
            E::InvalidAddress(ip, mask) => format!("invalid address {ip:?}/{mask:?}"),
            E::InvalidNla(s) => format!("invalid attribute: {s}"),
        }
    }

    impl Netlink {
        /// Opens a netlink socket; its connection task is spawned on the current tokio runtime.
        pub fn new() -> Result<Netlink, RouteError> {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| RouteError::Netlink(e.to_string()))?;
            tokio::spawn(conn);
            Ok(Netlink { handle })
        }

        /// `ip route replace unreachable <net>/<prefix>`: addresses of the subnet without a
        /// more specific route (a client's /32) are refused here instead of following the
        /// default route out of the WAN.
        pub async fn unreachable(&self, net: Ipv4Addr, prefix: u8) -> Result<(), RouteError> {
            let msg = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(net, prefix)
                .kind(RouteType::Unreachable)
                .protocol(RouteProtocol::Static)
                .scope(RouteScope::Universe)
                .build();
            self.handle
                .route()
                .add(msg)
                .replace()
                .execute()
                .await
                .map_err(nl)
        }

        /// The /32 routes of the main table: destination and output interface (routes left by
        /// an earlier run, after a `kill -9`).
        pub async fn host_routes(&self) -> Result<Vec<(Ipv4Addr, u32)>, RouteError> {
            use futures_util::TryStreamExt;
            use rtnetlink::packet_route::route::RouteAddress;
            let mut out = Vec::new();
            let mut s = self
                .handle
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute();
            while let Some(m) = s.try_next().await.map_err(nl)? {
                if m.header.destination_prefix_length != 32 {
                    continue;
                }
                let mut dest = None;
                let mut oif = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => dest = Some(*d),
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                if let (Some(d), Some(i)) = (dest, oif) {
                    out.push((d, i));
                }
            }
            Ok(out)
        }

        /// Removes the route [`Netlink::unreachable`] put in place; absent is not an error.
        pub async fn remove_unreachable(
            &self,
            net: Ipv4Addr,
            prefix: u8,
        ) -> Result<(), RouteError> {
            let msg = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(net, prefix)
                .kind(RouteType::Unreachable)
                .build();
            match self.handle.route().del(msg).execute().await {
                Ok(()) => Ok(()),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -3 => Ok(()),
                Err(e) => Err(nl(e)),
            }
        }

        /// `ip rule add from <src>/32 lookup <table>`: packets from `src` use `table`. The
        /// action must be explicit: without `ToTable` the kernel takes the rule and then fails
        /// every lookup that hits it (DESIGN.md section 2).
        pub async fn source_rule(
            &self,
            src: Ipv4Addr,
            table: u32,
            priority: u32,
        ) -> Result<(), RouteError> {
            self.handle
                .rule()
                .add()
                .v4()
                .source_prefix(src, 32)
                .table_id(table)
                .priority(priority)
                .action(RuleAction::ToTable)
                .execute()
                .await
                .map_err(nl)
        }
    }

    impl Netlink {
        /// The interface's `gso_max_segs` (`None`: the kernel did not say).
        pub async fn gso_max_segs(&self, ifindex: u32) -> Result<Option<u32>, RouteError> {
            use futures_util::TryStreamExt;
            let mut links = self.handle.link().get().match_index(ifindex).execute();
            while let Some(m) = links.try_next().await.map_err(nl)? {
                for a in m.attributes {
                    if let LinkAttribute::GsoMaxSegs(n) = a {
                        return Ok(Some(n));
                    }
                }
            }
            Ok(None)
        }

        /// `ip link set <ifindex> gso_max_segs <segs>`: the most segments TCP puts in one
        /// packet it hands to the interface.
        pub async fn set_gso_max_segs(&self, ifindex: u32, segs: u32) -> Result<(), RouteError> {
            let mut msg = LinkUnspec::new_with_index(ifindex).build();
            msg.attributes.push(LinkAttribute::GsoMaxSegs(segs));
            self.handle.link().set(msg).execute().await.map_err(nl)
        }

        /// Puts `addr`/32 on the interface `ifindex` unless it is there already.
        pub async fn ensure_address(&self, ifindex: u32, addr: Ipv4Addr) -> Result<(), RouteError> {
            match self
                .handle
                .address()
                .add(ifindex, addr.into(), 32)
                .execute()
                .await
            {
                Ok(()) => Ok(()),
                // EEXIST: already there.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => Ok(()),
                Err(e) => Err(nl(e)),
            }
        }
    }

    impl RouteProgrammer for Netlink {
        async fn replace(&mut self, r: &HostRoute) -> Result<(), RouteError> {
            let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(r.dest, 32)
                .gateway(r.via)
                .output_interface(r.ifindex)
                .protocol(RouteProtocol::Static)
                .scope(RouteScope::Universe);
            if let Some(src) = r.src {
                b = b.pref_source(src);
            }
            if let Some(t) = r.table {
                b = b.table_id(t);
            }
            let mut msg = b.build();
            let mut metrics = Vec::new();
            if let Some(ms) = r.rto_min_ms {
                // TCP takes a route's rto_min only when the metric is locked
                // (tcp_rto_min() checks dst_metric_locked); iproute2 locks it too.
                const RTAX_RTO_MIN: u32 = 13;
                metrics.push(RouteMetric::Lock(1 << RTAX_RTO_MIN));
                metrics.push(RouteMetric::RtoMin(ms));
            }
            if r.quickack {
                metrics.push(RouteMetric::QuickAck(1));
            }
            if !metrics.is_empty() {
                msg.attributes.push(RouteAttribute::Metrics(metrics));
            }
            self.handle
                .route()
                .add(msg)
                .replace()
                .execute()
                .await
                .map_err(nl)
        }

        async fn remove(&mut self, dest: Ipv4Addr, table: Option<u32>) -> Result<(), RouteError> {
            let mut b = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dest, 32);
            if let Some(t) = table {
                b = b.table_id(t);
            }
            match self.handle.route().del(b.build()).execute().await {
                Ok(()) => Ok(()),
                // ESRCH: no such route.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -3 => Ok(()),
                Err(e) => Err(nl(e)),
            }
        }
    }
}
