//! The rtnetlink route programmer against a real kernel, inside a namespace of the test's own.

use std::net::Ipv4Addr;

use phandoff::routes::{self, HostRoute, Netlink, RouteProgrammer};
use testkit::{veth, Netns};

#[test]
fn host_routes_rules_and_rp_filter_for_real() {
    if !testkit::can_run() {
        eprintln!("SKIPPED: needs root and iproute2 for network namespaces");
        return;
    }
    let hs = Netns::new("rt").expect("netns");
    let peer = Netns::new("rtp").expect("netns");
    for (i, net) in [(0, 1), (1, 2)] {
        let ifname = format!("lan{i}");
        veth(&hs, &ifname, &peer, &format!("eth{i}")).expect("veth");
        hs.run(&[
            "ip",
            "addr",
            "add",
            &format!("10.77.{net}.1/24"),
            "dev",
            &ifname,
        ])
        .expect("addr");
        hs.run(&["ip", "link", "set", &ifname, "up"]).expect("up");
    }
    hs.run(&["ip", "addr", "add", "10.200.0.1/32", "dev", "lo"])
        .expect("global");
    let ifindex = |name: &str| -> u32 {
        hs.run(&["cat", &format!("/sys/class/net/{name}/ifindex")])
            .expect("ifindex")
            .trim()
            .parse()
            .expect("number")
    };
    let (i0, i1) = (ifindex("lan0"), ifindex("lan1"));
    let client = Ipv4Addr::new(10, 200, 0, 9);
    let result = hs
        .in_thread(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                let mut nl = Netlink::new().expect("netlink");
                let mut r = HostRoute {
                    dest: client,
                    via: Ipv4Addr::new(10, 77, 1, 100),
                    ifindex: i0,
                    src: Some(Ipv4Addr::new(10, 200, 0, 1)),
                    table: None,
                    rto_min_ms: Some(20),
                    quickack: true,
                };
                nl.replace(&r).await.expect("add");
                let first = std::process::Command::new("ip")
                    .args(["route", "show", "10.200.0.9"])
                    .output()
                    .expect("ip");
                r.via = Ipv4Addr::new(10, 77, 2, 100);
                r.ifindex = i1;
                nl.replace(&r).await.expect("replace");
                let second = std::process::Command::new("ip")
                    .args(["route", "show", "10.200.0.9"])
                    .output()
                    .expect("ip");
                // A per-link table and a source rule, as the client uses for link-bound sockets.
                nl.replace(&HostRoute {
                    table: Some(100),
                    src: None,
                    rto_min_ms: None,
                    quickack: false,
                    ..r.clone()
                })
                .await
                .expect("table route");
                nl.source_rule(Ipv4Addr::new(10, 77, 2, 1), 100, 1000)
                    .await
                    .expect("rule");
                let rules = std::process::Command::new("ip")
                    .args(["rule", "show"])
                    .output()
                    .expect("ip");
                let table = std::process::Command::new("ip")
                    .args(["route", "show", "table", "100"])
                    .output()
                    .expect("ip");
                nl.remove(client, None).await.expect("remove");
                nl.remove(client, None)
                    .await
                    .expect("removing twice is fine");
                let third = std::process::Command::new("ip")
                    .args(["route", "show", "10.200.0.9"])
                    .output()
                    .expect("ip");
                let old = routes::rp_filter_loose("lan1").expect("rp_filter");
                let loose = std::fs::read_to_string("/proc/sys/net/ipv4/conf/lan1/rp_filter")
                    .expect("read");
                routes::restore_rp_filter("lan1", &old).expect("restore");
                let back = std::fs::read_to_string("/proc/sys/net/ipv4/conf/lan1/rp_filter")
                    .expect("read");
                let s = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
                (
                    s(first),
                    s(second),
                    s(rules),
                    s(table),
                    s(third),
                    loose,
                    old,
                    back,
                )
            })
        })
        .expect("thread");
    let (first, second, rules, table, third, loose, old, back) = result;
    assert!(first.contains("via 10.77.1.100 dev lan0"), "{first}");
    assert!(first.contains("src 10.200.0.1"), "{first}");
    assert!(
        first.contains("rto_min lock 20ms") && first.contains("quickack 1"),
        "{first}"
    );
    assert!(
        second.contains("via 10.77.2.100 dev lan1") && !second.contains("lan0"),
        "{second}"
    );
    assert!(rules.contains("from 10.77.2.1 lookup 100"), "{rules}");
    assert!(
        table.contains("10.200.0.9 via 10.77.2.100 dev lan1"),
        "{table}"
    );
    assert!(third.trim().is_empty(), "{third}");
    assert_eq!(loose.trim(), "2");
    assert_eq!(back.trim(), old.trim());
}
