//! Acceptance 2: renew, rebind, release, decline and reboot, each with a real client.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn reasons(calls: &HookCalls) -> Vec<String> {
    calls
        .iter()
        .filter_map(|e| e.get("reason").cloned())
        .collect()
}

fn wait_for_reason(c: &Dhclient, reason: &str, timeout: Duration) -> HookCalls {
    let deadline = Instant::now() + timeout;
    loop {
        let calls = c.calls();
        if reasons(&calls).iter().any(|r| r == reason) {
            return calls;
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} within {timeout:?}: {:?}",
            reasons(&calls)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// dhclient on a 12 s lease renews by unicast at T1; with unicast to the server blocked it
/// rebinds by broadcast at T2. Both are answered with the same address.
#[test]
fn dhclient_renews_and_rebinds() {
    need_root!();
    let bed = Bed::start(1, "").expect("test bed");
    let cfg = std::fs::read_to_string(&bed.config).expect("config");
    std::fs::write(
        &bed.config,
        cfg.replace("lease_time = \"1h\"", "lease_time = \"12s\""),
    )
    .expect("config");
    let mut bed = bed;
    bed.stop_daemon().expect("stop");
    bed.start_daemon().expect("restart with a 12 s lease");
    let link = bed.topo.links[0].clone();
    let c = Dhclient::new(&bed.dir, "dhclient").expect("files");
    let args = c.args(&["-d", &link.client_if]);
    let refs: Vec<&str> = args.iter().skip(4).map(String::as_str).collect(); // no `timeout`
    let client = bed
        .topo
        .client
        .spawn(&refs, &bed.dir.join("dhclient.log"))
        .expect("dhclient");

    let calls = wait_for_reason(&c, "BOUND", Duration::from_secs(10));
    let addr = calls
        .iter()
        .find(|e| e["reason"] == "BOUND")
        .expect("bound")["new_ip_address"]
        .clone();
    let calls = wait_for_reason(&c, "RENEW", Duration::from_secs(15));
    let renew = calls
        .iter()
        .find(|e| e["reason"] == "RENEW")
        .expect("renew");
    assert_eq!(renew["new_ip_address"], addr);

    // Unicast to the server is lost from now on: the next renewal fails, rebinding broadcasts.
    // (Dropped on the HomeSpot's input: dhclient's packet socket would bypass the client's.)
    let rule = format!(
        "add table ip t; add chain ip t in {{ type filter hook input priority 0; }}; \
         add rule ip t in ip daddr {} udp dport 67 drop",
        link.hs_addr
    );
    bed.topo.homespot.run(&["nft", &rule]).expect("nft");
    // dhclient logs each REQUEST with its destination. After the blocked unicast one, a
    // broadcast one (REBINDING) must be answered. Debian's dhclient calls its hook RENEW for it.
    let unicast = format!(
        "DHCPREQUEST for {addr} on {} to {} port 67",
        link.client_if, link.hs_addr
    );
    let broadcast = format!(
        "DHCPREQUEST for {addr} on {} to 255.255.255.255 port 67",
        link.client_if
    );
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let log = client.log();
        let after_block = log.rfind(&unicast).map(|i| &log[i..]).unwrap_or("");
        if let Some(j) = after_block.find(&broadcast) {
            if after_block[j..].contains(&format!("DHCPACK of {addr}")) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no answered rebind:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = c
        .calls()
        .into_iter()
        .rev()
        .find(|e| e.contains_key("new_ip_address"))
        .expect("a call");
    assert_eq!(last["new_ip_address"], addr);
    let log = bed.stop_daemon().expect("stop");
    assert_eq!(Bed::counter(&log, "naks"), Some(0), "{log}");
}

/// udhcpc renews on SIGUSR1 and releases on SIGUSR2; the server records the release, and the
/// client gets the same address back afterwards.
#[test]
fn udhcpc_renew_and_release() {
    need_root!();
    let mut bed = Bed::start(1, "").expect("test bed");
    let link = bed.topo.links[0].clone();
    let (script, out) = hook_script(&bed.dir, "udhcpc").expect("hook");
    let script = script.display().to_string();
    let args = [
        "busybox",
        "udhcpc",
        "-i",
        &link.client_if,
        "-f",
        "-t",
        "5",
        "-T",
        "1",
        "-O",
        "wpad",
        "-s",
        &script,
    ];
    let client = bed
        .topo
        .client
        .spawn(&args, &bed.dir.join("udhcpc.log"))
        .expect("udhcpc");
    let wait = |what: &str, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = hook_calls(&out);
            let k = c
                .iter()
                .filter(|e| e.get("0").is_none() && e.contains_key("ip"))
                .count();
            if k >= n {
                return c;
            }
            assert!(Instant::now() < deadline, "no {what}: {c:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let calls = wait("bound", 1);
    let addr = calls.iter().find(|e| e.contains_key("ip")).expect("bound")["ip"].clone();
    client
        .signal(nix::sys::signal::Signal::SIGUSR1)
        .expect("renew");
    let calls = wait("renew", 2);
    assert_eq!(
        calls
            .iter()
            .filter(|e| e.contains_key("ip"))
            .nth(1)
            .expect("renew")["ip"],
        addr
    );
    client
        .signal(nix::sys::signal::Signal::SIGUSR2)
        .expect("release");
    // The RELEASE needs no answer; give it a moment to arrive before udhcpc is stopped.
    std::thread::sleep(Duration::from_millis(300));
    drop(client);
    let log = bed.stop_daemon().expect("stop");
    assert_eq!(Bed::counter(&log, "releases"), Some(1), "{log}");
    assert!(Bed::counter(&log, "acks").unwrap_or(0) >= 2, "{log}");

    // The released address is remembered for the same client (udhcpc sends option 61).
    bed.start_daemon().expect("restart");
    let (script2, out2) = hook_script(&bed.dir, "udhcpc2").expect("hook");
    let script2 = script2.display().to_string();
    let once: Vec<String> = [
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
        "-s",
        &script2,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    client_run(&bed, &once).expect("lease again");
    let again = hook_calls(&out2)
        .into_iter()
        .find(|e| e.contains_key("ip"))
        .expect("bound");
    assert_eq!(again["ip"], addr, "same client, same address after release");
}

/// dhclient restarted with its lease file asks for its old address (INIT-REBOOT) and gets it,
/// also across a restart of homespotd.
#[test]
fn dhclient_reboot_keeps_address() {
    need_root!();
    let mut bed = Bed::start(1, "").expect("test bed");
    let link = bed.topo.links[0].clone();
    let c = Dhclient::new(&bed.dir, "dhclient").expect("files");
    client_run(&bed, &c.args(&["-1", &link.client_if])).expect("first lease");
    let first = c
        .calls()
        .into_iter()
        .find(|e| e["reason"] == "BOUND")
        .expect("bound");
    client_run(&bed, &c.args(&["-x", &link.client_if])).expect("stop without release");
    bed.topo
        .client
        .run(&["ip", "-4", "addr", "flush", "dev", &link.client_if])
        .expect("flush");
    bed.stop_daemon().expect("stop");
    bed.start_daemon().expect("restart");
    client_run(&bed, &c.args(&["-1", &link.client_if])).expect("lease after reboot");
    let calls = c.calls();
    let reboot = calls
        .iter()
        .find(|e| e["reason"] == "REBOOT")
        .unwrap_or_else(|| panic!("{:?}", reasons(&calls)));
    assert_eq!(reboot["new_ip_address"], first["new_ip_address"]);
}

/// busybox udhcpc -a checks its new address by ARP after the ACK, finds it in use, DECLINEs it,
/// and gets another. The declined address stays quarantined across a restart.
#[test]
fn udhcpc_declines_an_address_in_use() {
    need_root!();
    let mut bed = Bed::start(1, "").expect("test bed");
    let link = bed.topo.links[0].clone();
    // Another host on the link already uses the first pool address: a macvlan on the
    // HomeSpot's side of the link, in a namespace of its own.
    let squat = testkit::Netns::new("sq").expect("netns");
    let h = &bed.topo.homespot;
    h.run(&[
        "ip",
        "link",
        "add",
        "sq",
        "link",
        &link.hs_if,
        "type",
        "macvlan",
        "mode",
        "bridge",
    ])
    .expect("macvlan");
    h.run(&["ip", "link", "set", "sq", "netns", squat.name()])
        .expect("move");
    squat
        .run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", link.host(100)),
            "dev",
            "sq",
        ])
        .expect("addr");
    squat.run(&["ip", "link", "set", "sq", "up"]).expect("up");
    let (script, out) = hook_script(&bed.dir, "udhcpc").expect("hook");
    let script = script.display().to_string();
    let args: Vec<String> = [
        "timeout",
        "-s",
        "KILL",
        "40",
        "busybox",
        "udhcpc",
        "-i",
        &link.client_if,
        "-f",
        "-n",
        "-q",
        "-a",
        "-t",
        "10",
        "-T",
        "1",
        "-A",
        "1",
        "-s",
        &script,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    client_run(&bed, &args).expect("udhcpc gets a lease");
    let bound = hook_calls(&out)
        .into_iter()
        .find(|e| e.contains_key("ip"))
        .expect("bound");
    assert_ne!(bound["ip"], link.host(100).to_string());
    let log = bed.stop_daemon().expect("stop");
    assert_eq!(Bed::counter(&log, "declines"), Some(1), "{log}");

    bed.start_daemon().expect("restart");
    let c = Dhclient::new(&bed.dir, "other").expect("files");
    bed.topo
        .client
        .run(&["ip", "-4", "addr", "flush", "dev", &link.client_if])
        .expect("flush");
    bed.topo
        .client
        .run(&[
            "ip",
            "link",
            "set",
            &link.client_if,
            "address",
            "02:00:00:00:77:01",
        ])
        .expect("new mac");
    client_run(&bed, &c.args(&["-1", &link.client_if])).expect("lease");
    let got = c
        .calls()
        .into_iter()
        .find(|e| e["reason"] == "BOUND")
        .expect("bound");
    assert_ne!(
        got["new_ip_address"],
        link.host(100).to_string(),
        "quarantined"
    );
}
