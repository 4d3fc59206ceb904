//! Issue 15: the router package on emulated boards. Each board (Debian's kernel under QEMU
//! TCG) boots with the `.ipk` that `image/build` made installed as opkg would, and homespotd
//! started by the package's init script from a UCI `/etc/config/homespot`. From a client
//! namespace on the board's LAN taps: a lease with option 252, the PAC file on its own port,
//! a byte-exact proxied download from an origin behind the board's WAN, a `reload` that
//! applies a changed pool without dropping the lease; on x86_64 also an agent's P-Handoff
//! switch between two of the board's links with its download intact. Prints the boot-to-
//! serving time and homespotd's RSS on the board (after start, under the download).
//! mipsel: `image/test-mipsel` (slower; not in scripts/test).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::board::{self, Board};
use testkit::clients::Dhclient;
use testkit::journey::curl_in;
use testkit::origin::Origin;
use testkit::Scratch;

const UCI: &str = "
config server
\toption lease_db '/etc/homespot/leases.redb'
\toption status_socket '/var/run/homespot/status.sock'

config proxy
\toption port '3128'
\toption pac_port '8081'
\tlist allow_destinations '10.91.0.2'

config link 'wifi'
\toption interface 'eth1'
\toption kind 'wifi'
\toption address '10.91.1.1/24'
\tlist pools '10.91.1.100-10.91.1.199'
\toption lease_time '1h'

config link 'bt'
\toption interface 'eth2'
\toption kind 'bluetooth'
\toption address '10.91.2.1/24'
\tlist pools '10.91.2.100-10.91.2.199'
\toption lease_time '1h'
";

const HANDOFF: &str = "
config handoff
\toption global_subnet '10.92.0.0/24'
\toption identity '/etc/homespot/identity.key'
";

/// dhclient on `ifname` in the board's client namespace (it stays, renewing, as a laptop's
/// does): the address and option 252. A client of the same `name` running before is stopped
/// first without releasing (`-x`), so the new one asks for its old address again.
fn lease(board: &Board, dir: &Scratch, ifname: &str, name: &str) -> (String, String) {
    let c = Dhclient::new(dir, name).expect("dhclient files");
    if c.pidfile.exists() {
        let _ = board
            .client
            .output(&["dhclient", "-x", "-pf", &c.pidfile.display().to_string()]);
    }
    let before = c.calls().len();
    let args = c.args(&["-1", ifname]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = board.client.output(&refs).expect("dhclient");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = c.calls();
        let bound = calls.iter().skip(before).rev().find(|c| {
            matches!(
                c.get("reason").map(String::as_str),
                Some("BOUND" | "REBOOT" | "RENEW")
            ) && c.contains_key("new_ip_address")
        });
        if let Some(b) = bound {
            return (
                b.get("new_ip_address").cloned().unwrap_or_default(),
                b.get("new_wpad").cloned().unwrap_or_default(),
            );
        }
        assert!(
            Instant::now() < deadline,
            "no lease on {ifname}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            board.console()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_board(arch: &str, handoff: bool) {
    if !testkit::can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let spec = board::spec(arch).expect("board");
    let ipk = board::ipk(&spec).expect("package");
    let dir = Scratch::new(&format!("board-{arch}")).expect("scratch");
    let uci = if handoff {
        format!("{UCI}{HANDOFF}")
    } else {
        UCI.to_string()
    };
    let mut b = Board::boot(&spec, &ipk, &uci, &dir).expect("the board boots and serves DHCP");
    assert!(
        b.console().contains("board: postinst ok"),
        "{}",
        b.console()
    );
    let start = Instant::now();
    while b.rss_kb().is_none() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_start = b.rss_kb().unwrap_or(0);
    println!(
        "{arch}: boot to serving DHCP {:.1} s; homespotd RSS after start {rss_start} KiB",
        b.boot_to_serving.as_secs_f64()
    );

    // A lease with option 252 pointing at the PAC file's own port, and the PAC file.
    let (addr, wpad) = lease(&b, &dir, "eth0", "dhclient-wifi");
    assert!(addr.starts_with("10.91.1."), "{addr}");
    assert_eq!(wpad, "http://10.91.1.1:8081/wpad.dat");
    let pac = b
        .client
        .output(&["curl", "-sS", "--max-time", "20", &wpad])
        .expect("curl");
    let pac = String::from_utf8_lossy(&pac.stdout).to_string();
    assert!(pac.contains("PROXY 10.91.1.1:3128"), "{pac}");

    // A proxied download from the origin behind the WAN, byte-exact.
    let _origin = Origin::start(&b.wan, "10.91.0.2:8080".parse().expect("addr")).expect("origin");
    let size: u64 = 8_000_000;
    let seen_before = b.rss_reports().len();
    let t0 = Instant::now();
    let curl = curl_in(
        &b.client,
        "http://10.91.1.1:3128",
        &["--fail", &format!("http://10.91.0.2:8080/bytes/{size}")],
    )
    .expect("curl");
    let (st, err, d) = curl.finish(Duration::from_secs(150)).expect("download");
    let took = t0.elapsed();
    assert!(st.success(), "curl: {err}");
    assert_eq!((d.bytes, d.mismatch), (size, None), "byte-exact");
    std::thread::sleep(Duration::from_secs(3));
    let under_load = b.rss_reports()[seen_before..]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    println!(
        "{arch}: {} MB through the board's proxy in {:.1} s; homespotd RSS under the download at most {under_load} KiB",
        size / 1_000_000,
        took.as_secs_f64()
    );

    // `reload` (SIGHUP) applies a smaller pool; the lease stays its client's.
    b.run("sed -i 's/10.91.1.199/10.91.1.150/' /etc/config/homespot && reload_service")
        .expect("reload");
    b.wait_console("configuration reloaded", Duration::from_secs(30))
        .expect("reloaded");
    let (again, _) = lease(&b, &dir, "eth0", "dhclient-wifi");
    assert_eq!(again, addr, "the lease survives the reload");
    println!("{arch}: reload applied the new pool; {addr} kept");

    if handoff {
        handoff_with_agent(&mut b, &dir);
    }
    let rss = b.rss_reports();
    println!(
        "{arch}: homespotd RSS on the board: after start {rss_start} KiB, largest seen {} KiB",
        rss.iter().max().copied().unwrap_or(0)
    );
    assert!(rss_start <= 8 * 1024, "RSS after start above 8 MB");
    assert!(
        under_load <= 12 * 1024,
        "RSS under the download above 12 MB"
    );
}

fn request(api: &std::path::Path, req: &str) -> Value {
    let mut s = UnixStream::connect(api).expect("agent API");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    writeln!(s, "{req}").expect("write");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("read");
    serde_json::from_str(&line).unwrap_or(Value::Null)
}

/// The agent in the client namespace associates with the board, and a download through it
/// survives a P-Handoff switch from the board's Wi-Fi link to its Bluetooth link.
fn handoff_with_agent(b: &mut Board, dir: &Scratch) {
    let (bt_addr, _) = lease(b, dir, "eth1", "dhclient-bt");
    assert!(bt_addr.starts_with("10.91.2."), "{bt_addr}");
    let api = dir.join("agent.sock");
    let conf = dir.join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\napi_socket = \"{}\"\nstate_dir = \"{}\"\ninterfaces = [\"eth0\", \"eth1\"]\n",
            api.display(),
            dir.join("agent-state").display()
        ),
    )
    .expect("agent config");
    let mut agent = b
        .client
        .spawn(
            &[
                "env",
                "HOMESPOT_LOG=info",
                env!("CARGO_BIN_EXE_homespot-agent"),
                "--config",
                &conf.display().to_string(),
                "run",
            ],
            &dir.join("agent.log"),
        )
        .expect("agent");
    agent
        .wait_for_log("homespot-agent: proxy on", Duration::from_secs(10))
        .expect("agent proxy");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = request(&api, r#"{"cmd":"status"}"#);
        if s["current"] == "eth0" && s["homespot"].is_object() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not associate with the board: {s}\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let size: u64 = 16_000_000;
    let curl = curl_in(
        &b.client,
        "http://127.0.0.1:3129",
        &["--fail", &format!("http://10.91.0.2:8080/bytes/{size}")],
    )
    .expect("curl");
    curl.wait_bytes(2_000_000, Duration::from_secs(60))
        .expect("the download started");
    let r = request(&api, r#"{"cmd":"switch","link":"eth1"}"#);
    assert_eq!(r["ok"], true, "{r}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = request(&api, r#"{"cmd":"status"}"#);
        if s["current"] == "eth1" {
            break;
        }
        assert!(Instant::now() < deadline, "no switch: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, err, d) = curl.finish(Duration::from_secs(150)).expect("download");
    assert!(st.success(), "curl: {err}\n{}", agent.log());
    assert_eq!(
        (d.bytes, d.mismatch),
        (size, None),
        "byte-exact across the switch"
    );
    assert!(
        b.console().contains("switch") || b.console().contains("route"),
        "{}",
        b.console()
    );
    println!(
        "x86_64: P-Handoff switch of the agent from the board's wifi to its bt link during a {} MB download: byte-exact",
        size / 1_000_000
    );
    let _ = agent.stop(Duration::from_secs(5));
}

#[test]
fn x86_64_board_serves_a_laptop_from_the_package() {
    run_board("x86_64", true);
}

#[test]
fn aarch64_board_serves_a_laptop_from_the_package() {
    run_board("aarch64", false);
}

#[test]
#[ignore = "slow: image/test-mipsel"]
fn mipsel_board_serves_a_laptop_from_the_package() {
    run_board("mipsel", false);
}
