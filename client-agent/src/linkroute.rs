//! Per-link routing for links that are not a HomeSpot's (DESIGN.md section 2): a table per
//! link holding its subnet and a default route through its router, and `from <addr> lookup
//! <table>`, so a socket bound to the link's address leaves by that link whichever link holds
//! the main table's default route.

use crate::error::AgentError;
use std::net::Ipv4Addr;

use rtnetlink::packet_route::rule::RuleAction;
use rtnetlink::RouteMessageBuilder;

/// The table and rule priority used for the interface with `ifindex`.
pub fn table_of(ifindex: u32) -> u32 {
    1000 + ifindex
}

/// Installs (or refreshes) the link's table and source rule.
pub async fn install(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    addr: Ipv4Addr,
    prefix: u8,
    router: Option<Ipv4Addr>,
) -> Result<(), AgentError> {
    let table = table_of(ifindex);
    let net = crate::links::network(addr, prefix);
    let on_link = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(net, prefix)
        .output_interface(ifindex)
        .pref_source(addr)
        .scope(rtnetlink::packet_route::route::RouteScope::Link)
        .table_id(table)
        .build();
    handle.route().add(on_link).replace().execute().await?;
    if let Some(gw) = router {
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(gw)
            .output_interface(ifindex)
            .pref_source(addr)
            .table_id(table)
            .build();
        handle.route().add(default).replace().execute().await?;
    }
    // The action must be explicit (DESIGN.md section 2).
    let r = handle
        .rule()
        .add()
        .v4()
        .source_prefix(addr, 32)
        .table_id(table)
        .priority(table)
        .action(RuleAction::ToTable)
        .execute()
        .await;
    match r {
        Ok(()) => Ok(()),
        // EEXIST: the rule is there already.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => Ok(()),
        Err(e) => Err(AgentError::Netlink(format!(
            "rule from {addr} lookup {table}: {e}"
        ))),
    }
}

/// Removes `addr` from the interface `ifindex` (the global address from `lo` at shutdown).
pub async fn remove_address(handle: &rtnetlink::Handle, ifindex: u32, addr: Ipv4Addr) {
    use futures_util::TryStreamExt;
    let mut found = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .set_address_filter(addr.into())
        .execute();
    while let Ok(Some(msg)) = found.try_next().await {
        if let Err(e) = handle.address().del(msg).execute().await {
            tracing::warn!("removing {addr}: {e}");
        }
    }
}

/// Removes the link's source rule (its table's routes go with the address).
pub async fn remove(handle: &rtnetlink::Handle, ifindex: u32, addr: Ipv4Addr) {
    let table = table_of(ifindex);
    let mut rules = handle.rule().get(rtnetlink::IpVersion::V4).execute();
    use futures_util::TryStreamExt;
    while let Ok(Some(r)) = rules.try_next().await {
        use rtnetlink::packet_route::rule::RuleAttribute;
        let in_table = r
            .attributes
            .iter()
            .any(|a| matches!(a, RuleAttribute::Table(t) if *t == table))
            || u32::from(r.header.table) == table;
        let from_us = r
            .attributes
            .iter()
            .any(|a| matches!(a, RuleAttribute::Source(std::net::IpAddr::V4(s)) if *s == addr));
        let ours = in_table && from_us;
        if ours {
            let _ = handle.rule().del(r).execute().await;
        }
    }
}
