//! The lease database's disk fills up (a router's flash full of logs or packages) while
//! clients ask for leases: homespotd acknowledges no lease it could not write, says so in its
//! log (once, and a few lines of unanswered batches) and in `homespotd status` (the ACKs
//! `unwritten`, no device shown with a lease it was not given), keeps running, and
//! acknowledges again once there is room, without a restart (redb fails every write after one
//! failed write until its file is opened again). Every lease acknowledged on the wire is in
//! the database afterwards.
//!
//! The database's directory is a 2 MiB tmpfs in a mount namespace of the test's own (a
//! `sleep` holds it), so nothing is mounted where the rest of the machine sees it.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use dhcproto::v4::MessageType;
use testkit::{Proc, Scratch};

/// Runs `sh -c script` in the mount namespace of `holder`.
fn in_mounts(holder: &Proc, script: &str) -> std::process::Output {
    Command::new("nsenter")
        .args(["-t", &holder.pid().to_string(), "-m", "sh", "-c", script])
        .output()
        .expect("nsenter (util-linux)")
}

#[test]
fn a_full_disk_acknowledges_nothing_it_cannot_keep_and_service_returns_with_room() {
    need_root!();
    let dir = Scratch::new("diskfull").expect("scratch");
    let db_dir = dir.join("db");
    std::fs::create_dir_all(&db_dir).expect("db dir");
    let db = db_dir.join("leases.redb");
    let (topo, text) = perfdhcp_bed(&db, &dir.join("status.sock")).expect("topology");
    let link = topo.links[0].clone();
    let cfg = dir.join("homespotd.toml");
    std::fs::write(&cfg, text).expect("config");
    let holder = topo
        .homespot
        .spawn(
            &[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &format!(
                    "mount -t tmpfs -o size=2m homespot-test-db {} && exec sleep 600",
                    db_dir.display()
                ),
            ],
            &dir.join("holder.log"),
        )
        .expect("mount namespace");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !in_mounts(&holder, &format!("mountpoint -q {}", db_dir.display()))
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "no tmpfs: {}", holder.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut hs = topo
        .homespot
        .spawn(
            &[
                "nsenter",
                "-t",
                &holder.pid().to_string(),
                "-m",
                "--",
                env!("CARGO_BIN_EXE_homespotd"),
                "--config",
                &cfg.display().to_string(),
                "--log",
                "debug",
            ],
            &dir.join("homespotd.log"),
        )
        .expect("homespotd");
    hs.wait_for_log("lease database loaded", Duration::from_secs(10))
        .expect("homespotd starts");
    let pcap = dir.join("dhcp.pcap");
    let mut dump = topo
        .client
        .capture(
            &link.client_if,
            &["-B", "65536"],
            "udp port 67 or udp port 68",
            &pcap,
            &dir.join("tcpdump.log"),
        )
        .expect("tcpdump");

    // The disk fills up (cat stops at "No space left on device").
    let fill = in_mounts(
        &holder,
        &format!(
            "cat /dev/zero > {}/filler; df -k {}",
            db_dir.display(),
            db_dir.display()
        ),
    );
    eprintln!("filled:\n{}", String::from_utf8_lossy(&fill.stdout));
    // 2,000 new clients at 500 DORA/s: the database must grow.
    let mut load = topo
        .client
        .spawn(
            &[
                "perfdhcp",
                "-4",
                "-r",
                "500",
                "-R",
                "2000",
                "-p",
                "4",
                "-l",
                &link.client_if,
            ],
            &dir.join("perfdhcp-full.log"),
        )
        .expect("perfdhcp");
    load.wait(Duration::from_secs(30)).expect("perfdhcp ends");
    let full_log = hs.log();
    assert!(
        full_log.contains("write failed; it is opened again"),
        "no write failed with the disk full:\n{full_log}"
    );
    // Said once, not once a request: the first failed write, and a few lines of unanswered
    // batches per 10 s with a count of the rest.
    let lines = |needle: &str| full_log.lines().filter(|l| l.contains(needle)).count();
    eprintln!(
        "with the disk full: {} line(s) 'write failed', {} 'no ACK sent'",
        lines("write failed; it is opened again"),
        lines("no ACK sent")
    );
    assert_eq!(lines("write failed; it is opened again"), 1, "{full_log}");
    assert!(lines("no ACK sent") <= 10, "{full_log}");

    // What the operator sees meanwhile: the ACKs not sent, and no device holding a lease.
    let status = Command::new(env!("CARGO_BIN_EXE_homespotd"))
        .args([
            "status",
            "--socket",
            &dir.join("status.sock").display().to_string(),
        ])
        .output()
        .expect("homespotd status");
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    eprintln!("{status}");
    let dhcp = status
        .lines()
        .find(|l| l.trim_start().starts_with("dhcp "))
        .unwrap_or_default();
    assert!(
        dhcp.contains("unwritten=") && !dhcp.contains(" acks="),
        "{status}"
    );
    assert!(status.contains("Devices (0)"), "{status}");

    // Room again: a real client gets a lease from the same homespotd within dhclient's 20 s.
    let freed = in_mounts(&holder, &format!("rm {}/filler", db_dir.display()));
    assert!(freed.status.success(), "{freed:?}");
    let freed_at = Instant::now();
    let c = Dhclient::new(&dir, "after").expect("dhclient files");
    let args = c.args(&["-1", &link.client_if]);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    topo.client
        .run(&refs)
        .unwrap_or_else(|e| panic!("no lease once the disk had room: {e}\n{}", hs.log()));
    eprintln!(
        "a lease {:.1} s after the disk had room",
        freed_at.elapsed().as_secs_f64()
    );
    assert!(
        hs.log().contains("lease database writes work again"),
        "{}",
        hs.log()
    );

    let st = hs.stop(Duration::from_secs(5)).expect("homespotd stops");
    assert!(st.success(), "homespotd exited with {st}:\n{}", hs.log());
    std::thread::sleep(Duration::from_millis(300));
    dump.stop(Duration::from_secs(5)).expect("tcpdump stops");
    let copy = dir.join("copy.redb");
    let cp = in_mounts(&holder, &format!("cp {} {}", db.display(), copy.display()));
    assert!(cp.status.success(), "{cp:?}");

    // Every lease acknowledged on the wire is that client's in the database.
    let data = std::fs::read(&pcap).expect("capture");
    let acks: Vec<(Vec<u8>, Ipv4Addr)> = pcap::dhcp_messages(&data)
        .into_iter()
        .filter(|c| {
            c.msg.opts().msg_type() == Some(MessageType::Ack) && !c.msg.yiaddr().is_unspecified()
        })
        .map(|c| (c.msg.chaddr().to_vec(), c.msg.yiaddr()))
        .collect();
    let leases = leases_in(&copy).expect("the database");
    let requests = pcap::dhcp_messages(&data)
        .iter()
        .filter(|c| c.msg.opts().msg_type() == Some(MessageType::Request))
        .count();
    eprintln!(
        "{requests} REQUESTs and {} ACKs on the wire, {} leases in the database",
        acks.len(),
        leases.len()
    );
    assert!(
        acks.len() < requests,
        "every REQUEST was acknowledged: the disk never filled"
    );
    for (mac, addr) in &acks {
        let l = leases
            .get(addr)
            .unwrap_or_else(|| panic!("{addr} was acknowledged but is not in the database"));
        assert!(l.client.ends_with(mac), "{addr} held by another client");
    }
}
