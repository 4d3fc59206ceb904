//! Issue 5, acceptance 6: our PAC evaluator agrees with pactester (libpacparser1) on PAC/URL
//! pairs covering the helpers, `dnsResolve` through the namespace's own hosts file, and
//! `myIpAddress` on a multi-homed client (each link's address gives its own answer), character
//! classes in shell expressions, the inclusive end of `timeRange`, and a PAC file of more than
//! 3 MB; a PAC file that loops forever is cut by the time budget.
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
        "classes",
        r#"function FindProxyForURL(url, host) {
        if (shExpMatch(host, "*.[ab]x.example")) return "PROXY ab.test:1";
        if (shExpMatch(host, "node[0-9].test")) return "PROXY digit.test:2";
        return "DIRECT";
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
    ("classes", "http://q.ax.example/", "10.77.1.100"),
    ("classes", "http://q.bx.example/", "10.77.1.100"),
    ("classes", "http://q.cx.example/", "10.77.1.100"),
    ("classes", "http://node7.test/", "10.77.1.100"),
    ("classes", "http://nodex.test/", "10.77.1.100"),
    ("hours", "http://x.test/", "10.77.1.100"),
    (
        "big",
        "http://a.domain-0059999.a-long-site-name-for-size.example/",
        "10.77.1.100",
    ),
    (
        "big",
        "http://www.domain-0000042.a-long-site-name-for-size.example/x",
        "10.77.1.100",
    ),
    ("big", "http://elsewhere.test/", "10.77.1.100"),
];

/// Files made when the test runs: `timeRange` around the current hour (its end is inclusive:
/// `timeRange(H, H)` holds all through hour H), and a PAC of more than 3 MB.
fn made_files(ns: &Netns) -> Vec<(String, String)> {
    let hour: u32 = ns
        .run(&["date", "+%H"])
        .expect("date")
        .trim()
        .parse()
        .expect("hour");
    let before = (hour + 23) % 24;
    let hours = format!(
        "function FindProxyForURL(url, host) {{\n\
         var r = [timeRange({hour}, {hour}) ? 1 : 0, timeRange({before}, {before}) ? 1 : 0, timeRange(0, {hour}) ? 1 : 0];\n\
         return \"PROXY h\" + r.join(\"\") + \".test:1\";\n}}"
    );
    // 60,000 entries: pacparser's JavaScript engine (SpiderMonkey 1.7) loses the entries of
    // an object literal past the 65,536th, which browsers' engines do not.
    let mut big = String::from("var table = {\n");
    for i in 0..60_000 {
        big += &format!(
            "  \"domain-{i:07}.a-long-site-name-for-size.example\": \"PROXY p{}.test:3128\",\n",
            i % 7
        );
    }
    big += "};\nfunction FindProxyForURL(url, host) {\n  var parts = host.split(\".\");\n  \
            for (var i = 0; i < parts.length - 1; i++) {\n    var d = parts.slice(i).join(\".\");\n    \
            if (table.hasOwnProperty(d)) return table[d];\n  }\n  return \"DIRECT\";\n}\n";
    assert!(big.len() > 3_000_000, "{} bytes", big.len());
    vec![("hours".into(), hours), ("big".into(), big)]
}

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
    let made = made_files(&ns);
    let mut agree = 0;
    for (file, url, ip) in PAIRS {
        let text = FILES
            .iter()
            .find(|f| f.0 == *file)
            .map(|f| f.1.to_string())
            .or_else(|| made.iter().find(|f| f.0 == *file).map(|f| f.1.clone()))
            .expect("file");
        let path = dir.join(&format!("{file}.pac"));
        if !path.exists() {
            std::fs::write(&path, &text).expect("write");
        }
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

/// `dnsResolve` in a loop against a DNS server that never answers: the lookups are charged to
/// the evaluation's 200 ms budget (the OS resolver alone would wait 5 s for each).
#[test]
fn lookups_against_a_silent_dns_server_are_cut_by_the_budget() {
    assert!(testkit::can_run());
    let ns = Netns::new("pacdns").expect("ns");
    let etc = std::path::PathBuf::from("/etc/netns").join(ns.name());
    std::fs::create_dir_all(&etc).expect("etc");
    let _cleanup = Cleanup(etc.clone());
    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").expect("hosts");
    std::fs::write(
        etc.join("resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:5 attempts:2\n",
    )
    .expect("resolv");
    // The silent server: takes every query, answers none (for 20 s at most).
    let silent = ns
        .spawn_thread(|| {
            let s = std::net::UdpSocket::bind("127.0.0.1:53").expect("bind 53");
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let end = Instant::now() + Duration::from_secs(20);
            let mut queries = 0;
            let mut buf = [0u8; 512];
            while Instant::now() < end {
                if s.recv_from(&mut buf).is_ok() {
                    queries += 1;
                }
            }
            queries
        })
        .expect("thread");
    std::thread::sleep(Duration::from_millis(200));
    let dir = Scratch::new("pacdns").expect("scratch");
    let p = dir.join("dns.pac");
    std::fs::write(
        &p,
        "function FindProxyForURL(u, h) { for (var i = 0; i < 100; i++) { dnsResolve(\"n\" + i + \".test\"); } return \"DIRECT\"; }",
    )
    .expect("write");
    let t = Instant::now();
    let out = ns
        .output(&[
            env!("CARGO_BIN_EXE_homespot-agent"),
            "pac",
            &p.display().to_string(),
            "http://x.test/",
        ])
        .expect("run");
    let took = t.elapsed();
    println!(
        "100 lookups against a silent DNS server: {} after {took:?}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(silent);
}
