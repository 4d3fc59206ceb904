//! Topologies of DESIGN.md section 7, built from namespaces and veth pairs.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};

use crate::Netns;

/// One LAN link between the HomeSpot and the client.
#[derive(Debug, Clone)]
pub struct Link {
    /// Interface name in the HomeSpot namespace (`lan0`, `lan1`, ...).
    pub hs_if: String,
    /// Interface name in the client namespace (`eth0`, `eth1`, ...).
    pub client_if: String,
    /// The HomeSpot's address on the link (10.77.N.1).
    pub hs_addr: Ipv4Addr,
    /// The link's prefix length (24).
    pub prefix: u8,
}

impl Link {
    /// The n-th address of the link's /24 (10.77.N.host).
    pub fn host(&self, host: u8) -> Ipv4Addr {
        let o = self.hs_addr.octets();
        Ipv4Addr::new(o[0], o[1], o[2], host)
    }
}

/// A HomeSpot with LAN links to one client, and a WAN link to a `net` namespace. With
/// [`Topology::with_air`], every LAN link runs through a bridge in an `air` namespace, so a
/// radio can be lost silently ([`Topology::lose`]: the client's port leaves the bridge, both
/// interfaces stay up) and more hosts can join a link ([`Topology::attach`]).
///
/// Addresses: link i is 10.77.(i+1).0/24 with the HomeSpot at .1; the client's interfaces have
/// no address (a DHCP client gives them one). WAN: HomeSpot 10.77.0.1/24, net 10.77.0.2/24.
pub struct Topology {
    /// The HomeSpot.
    pub homespot: Netns,
    /// The laptop.
    pub client: Netns,
    /// The Internet side.
    pub net: Netns,
    /// The LAN links, in order.
    pub links: Vec<Link>,
    /// The namespace of the air bridges, if the links run through them.
    pub air: Option<Netns>,
}

impl Topology {
    /// Builds the topology with `lan_links` LAN links (at least 1), each a direct veth pair.
    pub fn new(lan_links: usize) -> Result<Topology> {
        Topology::build(lan_links, false)
    }

    /// Like [`Topology::new`], with every LAN link through a bridge `br<i>` in an `air`
    /// namespace (ports `h<i>` to the HomeSpot, `c<i>` to the client).
    pub fn with_air(lan_links: usize) -> Result<Topology> {
        Topology::build(lan_links, true)
    }

    fn build(lan_links: usize, with_air: bool) -> Result<Topology> {
        let homespot = Netns::new("hs")?;
        let client = Netns::new("cl")?;
        let net = Netns::new("net")?;
        let air = if with_air {
            Some(Netns::new("air")?)
        } else {
            None
        };
        let mut links = Vec::new();
        for i in 0..lan_links.max(1) {
            let link = Link {
                hs_if: format!("lan{i}"),
                client_if: format!("eth{i}"),
                hs_addr: Ipv4Addr::new(10, 77, (i + 1) as u8, 1),
                prefix: 24,
            };
            match &air {
                None => veth(&homespot, &link.hs_if, &client, &link.client_if)?,
                Some(a) => {
                    let (br, h, c) = (format!("br{i}"), format!("h{i}"), format!("c{i}"));
                    a.run(&[
                        "ip",
                        "link",
                        "add",
                        &br,
                        "type",
                        "bridge",
                        "stp_state",
                        "0",
                        "forward_delay",
                        "0",
                    ])?;
                    a.run(&["ip", "link", "set", &br, "up"])?;
                    veth(a, &h, &homespot, &link.hs_if)?;
                    veth(a, &c, &client, &link.client_if)?;
                    for port in [&h, &c] {
                        a.run(&["ip", "link", "set", port, "master", &br])?;
                        a.run(&["ip", "link", "set", port, "up"])?;
                    }
                }
            }
            homespot.run(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", link.hs_addr),
                "dev",
                &link.hs_if,
            ])?;
            homespot.run(&["ip", "link", "set", &link.hs_if, "up"])?;
            client.run(&["ip", "link", "set", &link.client_if, "up"])?;
            links.push(link);
        }
        veth(&homespot, "wan", &net, "wan")?;
        homespot.run(&["ip", "addr", "add", "10.77.0.1/24", "dev", "wan"])?;
        homespot.run(&["ip", "link", "set", "wan", "up"])?;
        net.run(&["ip", "addr", "add", "10.77.0.2/24", "dev", "wan"])?;
        net.run(&["ip", "link", "set", "wan", "up"])?;
        Ok(Topology {
            homespot,
            client,
            net,
            links,
            air,
        })
    }

    /// Silently loses link `i` for the client: its port leaves the air bridge, so packets
    /// vanish while both interfaces stay up (carrier stays). Needs [`Topology::with_air`].
    pub fn lose(&self, i: usize) -> Result<()> {
        let a = self.air.as_ref().context("no air namespace")?;
        a.run(&["ip", "link", "set", &format!("c{i}"), "nomaster"])?;
        Ok(())
    }

    /// Brings link `i` back for the client.
    pub fn restore(&self, i: usize) -> Result<()> {
        let a = self.air.as_ref().context("no air namespace")?;
        a.run(&[
            "ip",
            "link",
            "set",
            &format!("c{i}"),
            "master",
            &format!("br{i}"),
        ])?;
        Ok(())
    }

    /// Drops (`up` false) or restores the client's carrier on link `i`: its port on the air
    /// bridge goes down, so the client's interface shows NO-CARRIER at once, as a radio that
    /// lost its association does. Needs [`Topology::with_air`].
    pub fn carrier(&self, i: usize, up: bool) -> Result<()> {
        let a = self.air.as_ref().context("no air namespace")?;
        let state = if up { "up" } else { "down" };
        a.run(&["ip", "link", "set", &format!("c{i}"), state])?;
        Ok(())
    }

    /// Attaches `ns` to link `i` as another host, its interface named `ifname`.
    pub fn attach(&self, i: usize, ns: &Netns, ifname: &str) -> Result<()> {
        let a = self.air.as_ref().context("no air namespace")?;
        static PORTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = PORTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = format!("x{i}p{n}");
        veth(a, &port, ns, ifname)?;
        a.run(&["ip", "link", "set", &port, "master", &format!("br{i}")])?;
        a.run(&["ip", "link", "set", &port, "up"])?;
        ns.run(&["ip", "link", "set", ifname, "up"])?;
        Ok(())
    }
}

/// A veth pair: `a_if` in `a`, `b_if` in `b`. Created inside `a`, so names need only be unique
/// within the two namespaces.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.run(&[
        "ip",
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    Ok(())
}
