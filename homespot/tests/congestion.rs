//! The congestion control of the proxy's client connections (`proxy.congestion_control`):
//! BBR by default whatever the kernel's default is (the HomeSpot's namespace here defaults to
//! Reno), the kernel's default with "system", and a name the kernel lacks is a warning, not a
//! proxy that stops. Checked on the accepted connection itself with `ss -ti`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use testkit::origin::Origin;
use testkit::Topology;

/// A bed whose HomeSpot namespace defaults to Reno, homespotd with `proxy` in its `[proxy]`.
fn bed(proxy: &str) -> (Bed, Origin) {
    let topo = Topology::new(1).expect("topology");
    // Per namespace; Reno is one a namespace may choose (net.ipv4.tcp_allowed_congestion_control).
    topo.homespot
        .run(&["sysctl", "-qw", "net.ipv4.tcp_congestion_control=reno"])
        .expect("reno as the namespace's default");
    proxy_bed(topo, &format!("[proxy]\n{proxy}"))
}

/// The congestion control of the proxy's connection from the client, read while the origin
/// holds the answer back for four seconds (a rate-limited download was not enough: on a busy
/// CI machine the whole body could pass before `ss` looked); and whether it then ended with 200.
fn proxy_side_congestion(bed: &Bed, origin: &Origin) -> String {
    let out = bed.dir.join("slow");
    let url = origin.url("/delay/4000");
    let mut curl = bed
        .topo
        .client
        .spawn(
            &[
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-o",
                &out.display().to_string(),
                "-w",
                "%{http_code}",
                "-x",
                "http://10.77.1.1:3128",
                &url,
            ],
            &bed.dir.join("curl.log"),
        )
        .expect("curl");
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let ss = bed
            .topo
            .homespot
            .run(&["ss", "-tinH", "state", "established", "( sport = :3128 )"])
            .expect("ss");
        if let Some(cc) = ["bbr", "reno", "cubic"]
            .into_iter()
            .find(|cc| ss.split_whitespace().any(|w| w == *cc))
        {
            break cc.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no proxy connection seen: {ss}\n{}",
            bed.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    curl.wait(Duration::from_secs(30)).expect("curl ends");
    assert!(
        curl.log().contains("200"),
        "download: {}\n{}",
        curl.log(),
        bed.log()
    );
    seen
}

/// The status for people, as `homespotd status` prints it.
fn status(bed: &Bed) -> String {
    let o = std::process::Command::new(HOMESPOTD)
        .args(["status", "--socket"])
        .arg(bed.dir.join("status.sock"))
        .output()
        .expect("status");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bbr_by_default_whatever_the_kernels_default() {
    need_root!();
    let (bed, origin) = bed("");
    assert_eq!(proxy_side_congestion(&bed, &origin), "bbr", "{}", bed.log());
    let s = status(&bed);
    assert!(
        s.contains("proxy: client connections use TCP congestion control bbr\n"),
        "{s}"
    );
}

#[test]
fn system_leaves_the_kernels_default() {
    need_root!();
    let (bed, origin) = bed("congestion_control = \"system\"\n");
    assert_eq!(
        proxy_side_congestion(&bed, &origin),
        "reno",
        "{}",
        bed.log()
    );
    let s = status(&bed);
    assert!(
        s.contains("congestion control reno (the kernel's default)"),
        "{s}"
    );
}

#[test]
fn one_the_kernel_lacks_is_a_warning_and_the_proxy_serves() {
    need_root!();
    let (bed, origin) = bed("congestion_control = \"nosuchcc\"\n");
    assert_eq!(
        proxy_side_congestion(&bed, &origin),
        "reno",
        "{}",
        bed.log()
    );
    let log = bed.log();
    assert!(
        log.contains("the kernel refused this congestion control"),
        "{log}"
    );
    assert!(log.contains("default=reno"), "{log}");
    let s = status(&bed);
    assert!(
        s.contains("congestion control reno (the kernel's default; nosuchcc refused:"),
        "{s}"
    );
}
