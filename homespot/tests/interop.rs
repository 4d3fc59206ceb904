//! Acceptance 1: real DHCP clients get leases with the configured router and WPAD URL on each
//! of two links, and a DHCPINFORM gets option 252 and no lease time.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn dhclient_on_two_links() {
    need_root!();
    let bed = Bed::start(2, "").expect("test bed");
    for (i, link) in bed.topo.links.iter().enumerate() {
        let c = Dhclient::new(&bed.dir, &format!("dhclient{i}")).expect("dhclient files");
        client_run(&bed, &c.args(&["-1", &link.client_if])).expect("dhclient gets a lease");
        let calls = c.calls();
        let bound = calls
            .iter()
            .find(|e| e.get("reason").map(String::as_str) == Some("BOUND"))
            .unwrap_or_else(|| panic!("no BOUND in {calls:?}"));
        let ip: std::net::Ipv4Addr = bound["new_ip_address"].parse().expect("an address");
        assert!(
            ip >= link.host(100) && ip <= link.host(199),
            "{ip} in the pool of link {i}"
        );
        assert_eq!(bound["new_routers"], link.hs_addr.to_string());
        assert_eq!(
            bound["new_wpad"],
            format!("http://{}/wpad.dat", link.hs_addr)
        );
        assert_eq!(
            bound["new_dhcp_server_identifier"],
            link.hs_addr.to_string()
        );
        let _ = client_run(&bed, &c.args(&["-x", &link.client_if]));
    }
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn udhcpc_on_two_links() {
    need_root!();
    let bed = Bed::start(2, "").expect("test bed");
    for (i, link) in bed.topo.links.iter().enumerate() {
        let (script, out) = hook_script(&bed.dir, &format!("udhcpc{i}")).expect("hook");
        let args: Vec<String> = [
            "timeout",
            "-s",
            "KILL",
            "20",
            "busybox",
            "udhcpc",
            "-i",
            &link.client_if,
            "-f",
            "-n",
            "-q",
            "-t",
            "5",
            "-T",
            "1",
            "-O",
            "wpad",
            "-s",
            &script.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        client_run(&bed, &args).expect("udhcpc gets a lease");
        let calls = hook_calls(&out);
        let bound = calls
            .iter()
            .find(|e| e.contains_key("ip") && e.contains_key("router"))
            .unwrap_or_else(|| panic!("no bound call in {calls:?}"));
        let ip: std::net::Ipv4Addr = bound["ip"].parse().expect("an address");
        assert!(
            ip >= link.host(100) && ip <= link.host(199),
            "{ip} in the pool of link {i}"
        );
        assert_eq!(bound["router"], link.hs_addr.to_string());
        assert_eq!(bound["wpad"], format!("http://{}/wpad.dat", link.hs_addr));
    }
}

/// dhcpcd keeps state under /run/dhcpcd and /var/lib/dhcpcd; `ip netns exec` gives each run its
/// own mount namespace, so private tmpfs mounts there keep parallel tests apart.
fn dhcpcd(bed: &Bed, name: &str, dhcpcd_args: &str) -> anyhow::Result<HookCalls> {
    let (script, out) = hook_script(&bed.dir, name)?;
    let conf = bed.dir.join(&format!("{name}.conf"));
    std::fs::write(
        &conf,
        "option wpad_url\noption routers, domain_name_servers\nnoipv6rs\n",
    )?;
    let cmd = format!(
        "mkdir -p /run/dhcpcd /var/lib/dhcpcd && mount -t tmpfs none /run/dhcpcd && \
         mount -t tmpfs none /var/lib/dhcpcd && \
         exec timeout -s KILL 20 dhcpcd -f {} -c {} {dhcpcd_args}",
        conf.display(),
        script.display()
    );
    client_run(bed, &["sh".into(), "-c".into(), cmd])?;
    Ok(hook_calls(&out))
}

#[test]
fn dhcpcd_on_two_links() {
    need_root!();
    let bed = Bed::start(2, "").expect("test bed");
    for (i, link) in bed.topo.links.iter().enumerate() {
        let calls = dhcpcd(
            &bed,
            &format!("dhcpcd{i}"),
            &format!("-4 -1 -B --noarp -t 10 {}", link.client_if),
        )
        .expect("dhcpcd gets a lease");
        let bound = calls
            .iter()
            .find(|e| e.get("reason").map(String::as_str) == Some("BOUND"))
            .unwrap_or_else(|| panic!("no BOUND in {calls:?}"));
        let ip: std::net::Ipv4Addr = bound["new_ip_address"].parse().expect("an address");
        assert!(
            ip >= link.host(100) && ip <= link.host(199),
            "{ip} in the pool of link {i}"
        );
        assert_eq!(bound["new_routers"], link.hs_addr.to_string());
        assert_eq!(
            bound["new_wpad_url"],
            format!("http://{}/wpad.dat", link.hs_addr)
        );
    }
}

#[test]
fn dhcpcd_inform_gets_wpad_and_no_lease_time() {
    need_root!();
    let bed = Bed::start(2, "").expect("test bed");
    let link = &bed.topo.links[1];
    let me = format!("{}/24", link.host(50));
    bed.topo
        .client
        .run(&["ip", "addr", "add", &me, "dev", &link.client_if])
        .expect("static address");
    let calls = dhcpcd(
        &bed,
        "inform",
        &format!("-4 -1 -B --noarp -t 10 -s {me} {}", link.client_if),
    )
    .expect("dhcpcd INFORM");
    let informed = calls
        .iter()
        .find(|e| e.get("reason").map(String::as_str) == Some("INFORM"))
        .unwrap_or_else(|| panic!("no INFORM in {calls:?}"));
    assert_eq!(
        informed["new_wpad_url"],
        format!("http://{}/wpad.dat", link.hs_addr)
    );
    assert!(
        !informed.contains_key("new_dhcp_lease_time"),
        "{informed:?}"
    );
    let log = bed.log();
    assert!(
        !log.contains("lease acknowledged"),
        "an INFORM must not make a lease:\n{log}"
    );
}
