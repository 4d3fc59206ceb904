//! Issue 5, acceptance 6: our PAC evaluator agrees with pactester (libpacparser1) on PAC/URL
//! pairs covering the helpers, `dnsResolve` through the namespace's own hosts file, and
//! `myIpAddress` on a multi-homed client (each link's address gives its own answer); a PAC
//! file that loops forever is cut by the time budget.
//!
//! Both evaluators run inside a test namespace with `/etc/netns/<ns>/hosts` and a resolver
//! that answers nothing, so no lookup leaves the machine and the host's resolver is untouched.

use std::time::{Duration, Instant};

use testkit::{Netns, Scratch};

const FILES: &[(&str, &str)] = &[
    (
        "net",
        r#"function FindProxyForURL(url, host) {
        if (isPlainHostName(host)) return "DIRECT";
        if (isInNet(host, "10.77.0.0", "255.255.0.0")) return "PROXY 10.77.1.1:3128";
        if (isInNet(host, "192.168.0.0", "255.255.0.0")) return "DIRECT";
        return "PROXY fallback.test:8080; DIRECT";
    }"#,
    ),
    (
        "domains",
        r#"function FindProxyForURL(url, host) {
        if (dnsDomainIs(host, ".example.com")) return "PROXY p1.test:3128";
        if (localHostOrDomainIs(host, "www.corp.test")) return "DIRECT";
        if (dnsDomainLevels(host) > 2) return "PROXY deep.test:3128";
        return "PROXY p2.test:8080; PROXY p3.test:8080; DIRECT";
    }"#,
    ),
    (
        "shexp",
        r#"function FindProxyForURL(url, host) {
        if (shExpMatch(url, "http://*.cdn.test/*")) return "DIRECT";
        if (shExpMatch(host, "*.internal")) return "PROXY in.test:1";
        if (shExpMatch(url, "*/download/?.iso")) return "PROXY iso.test:2";
        if (shExpMatch(host, "a?c.test")) return "PROXY q.test:3";
        return "PROXY other.test:4";
    }"#,
    ),
    (
        "myip",
        r#"function FindProxyForURL(url, host) {
        var me = myIpAddress();
        if (isInNet(me, "10.77.1.0", "255.255.255.0")) return "PROXY 10.77.1.1:3128; DIRECT";
        if (isInNet(me, "10.88.1.0", "255.255.255.0")) return "PROXY 10.88.1.1:8888; DIRECT";
        return "DIRECT";
    }"#,
    ),
    (
        "dns",
        r#"function FindProxyForURL(url, host) {
        if (!isResolvable(host)) return "PROXY unresolvable.test:1";
        var a = dnsResolve(host);
        if (isInNet(a, "10.77.0.0", "255.255.255.0")) return "PROXY origin-side.test:2";
        return "PROXY resolved.test:3; DIRECT";
    }"#,
    ),
    (
        "mixed",
        r#"function FindProxyForURL(url, host) {
        host = host.toLowerCase();
        if (url.substring(0, 6) == "https:") return "PROXY tls.test:443";
        if (weekdayRange("SUN", "SAT") && isInNet(host, "10.0.0.0", "255.0.0.0")) return "DIRECT";
        if (dnsDomainIs(host, "test") && !isPlainHostName(host)) return "PROXY t.test:80";
        return "DIRECT";
    }"#,
    ),
];

const PAIRS: &[(&str, &str, &str)] = &[
    ("net", "http://intranet/", "10.77.1.100"),
    ("net", "http://10.77.0.2/x", "10.77.1.100"),
    ("net", "http://192.168.4.4/", "10.77.1.100"),
    ("net", "http://origin.test/", "10.77.1.100"),
    ("net", "http://www.example.com/", "10.77.1.100"),
    ("net", "http://nowhere.invalid/", "10.77.1.100"),
    ("domains", "http://a.example.com/", "10.77.1.100"),
    ("domains", "http://example.com/", "10.77.1.100"),
    ("domains", "http://www.corp.test/", "10.77.1.100"),
    ("domains", "http://www/", "10.77.1.100"),
    ("domains", "http://a.b.c.d/", "10.77.1.100"),
    ("domains", "http://short.test/", "10.77.1.100"),
    ("shexp", "http://img.cdn.test/a.png", "10.77.1.100"),
    ("shexp", "http://db.internal/", "10.77.1.100"),
    ("shexp", "http://mirror.test/download/x.iso", "10.77.1.100"),
    ("shexp", "http://mirror.test/download/xy.iso", "10.77.1.100"),
    ("shexp", "http://abc.test/", "10.77.1.100"),
    ("shexp", "http://abbc.test/", "10.77.1.100"),
    ("myip", "http://x.test/", "10.77.1.100"),
    ("myip", "http://x.test/", "10.88.1.110"),
    ("myip", "http://x.test/", "10.200.0.2"),
    ("myip", "http://10.77.0.2/", "10.88.1.110"),
    ("dns", "http://origin.test/", "10.77.1.100"),
    ("dns", "http://ap.test/", "10.77.1.100"),
    ("dns", "http://missing.test/", "10.77.1.100"),
    ("dns", "http://10.77.0.9/", "10.77.1.100"),
    ("mixed", "https://bank.test/", "10.77.1.100"),
    ("mixed", "http://10.1.2.3/", "10.77.1.100"),
    ("mixed", "http://WWW.Shop.Test/", "10.77.1.100"),
    ("mixed", "http://localhost/", "10.77.1.100"),
    ("mixed", "http://a.example.org/", "10.88.1.110"),
    ("net", "http://10.77.200.1:8080/path?q=1", "10.88.1.110"),
];

#[test]
fn our_evaluator_agrees_with_pactester() {
    if !testkit::can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Netns::new("pac").expect("ns");
    let etc = std::path::PathBuf::from("/etc/netns").join(ns.name());
    std::fs::create_dir_all(&etc).expect("etc");
    let _cleanup = Cleanup(etc.clone());
    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n10.77.0.2 origin.test\n10.88.1.1 ap.test\n192.168.7.7 www.example.com\n")
        .expect("hosts");
    std::fs::write(
        etc.join("resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .expect("resolv");
    let dir = Scratch::new("pac").expect("scratch");
    let agent = env!("CARGO_BIN_EXE_homespot-agent");
    let mut agree = 0;
    for (file, url, ip) in PAIRS {
        let text = FILES.iter().find(|f| f.0 == *file).expect("file").1;
        let path = dir.join(&format!("{file}.pac"));
        std::fs::write(&path, text).expect("write");
        let p = path.display().to_string();
        let theirs = ns
            .output(&["pactester", "-p", &p, "-u", url, "-c", ip])
            .expect("pactester");
        let ours = ns
            .output(&[agent, "pac", &p, url, "--my-ip", ip])
            .expect("agent pac");
        let t = String::from_utf8_lossy(&theirs.stdout).trim().to_string();
        let o = String::from_utf8_lossy(&ours.stdout).trim().to_string();
        println!("{file:8} {url:40} myIp {ip:12} pactester {t:40} ours {o}");
        assert!(
            theirs.status.success(),
            "pactester: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert!(
            ours.status.success(),
            "ours: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        assert_eq!(o, t, "{file} {url} {ip}");
        agree += 1;
    }
    println!("{agree} PAC/URL pairs agree");
    assert!(agree >= 30);
}

#[test]
fn an_endless_pac_is_cut_by_the_budget() {
    let dir = Scratch::new("pacloop").expect("scratch");
    let p = dir.join("loop.pac");
    std::fs::write(&p, "function FindProxyForURL(u, h) { while (true) {} }").expect("write");
    let t = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_homespot-agent"))
        .args(["pac", &p.display().to_string(), "http://x.test/"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("time budget"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
