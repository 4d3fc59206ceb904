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
        assert!(ip >= link.host(100) && ip <= link.host(199), "{ip} in the pool of link {i}");
        assert_eq!(bound["new_routers"], link.hs_addr.to_string());
        assert_eq!(bound["new_wpad"], format!("http://{}/wpad.dat", link.hs_addr));
        assert_eq!(bound["new_dhcp_server_identifier"], link.hs_addr.to_string());
        let _ = client_run(&bed, &c.args(&["-x", &link.client_if]));
    }
    std::thread::sleep(Duration::from_millis(50));
}
