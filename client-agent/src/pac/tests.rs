use super::*;

fn load(s: &str) -> PacHandle {
    PacHandle::load(s, Ipv4Addr::new(10, 9, 8, 7), Limits::default()).expect("loads")
}

#[test]
fn choices_in_order_with_failover() {
    assert_eq!(
        parse_choices("PROXY a:3128; PROXY b:8080;DIRECT"),
        vec![
            Choice::Proxy("a".into(), 3128),
            Choice::Proxy("b".into(), 8080),
            Choice::Direct
        ]
    );
    assert_eq!(parse_choices("SOCKS x:1080"), vec![Choice::Direct]);
    assert_eq!(
        parse_choices("PROXY :0; proxy p"),
        vec![Choice::Proxy("p".into(), 80)]
    );
}

#[test]
fn helpers_and_my_ip_of_the_link() {
    let p = load(
        r#"function FindProxyForURL(url, host) {
            if (isPlainHostName(host)) return "DIRECT";
            if (isInNet(myIpAddress(), "10.9.0.0", "255.255.0.0") && shExpMatch(url, "http://*.example.com/*"))
                return "PROXY p1:3128; DIRECT";
            if (dnsDomainIs(host, ".org")) return "PROXY p2:8080";
            return "DIRECT";
        }"#,
    );
    assert_eq!(
        p.find_raw_blocking("http://intranet/", "intranet")
            .expect("answer"),
        "DIRECT"
    );
    assert_eq!(
        p.find_raw_blocking("http://www.example.com/x", "www.example.com")
            .expect("answer"),
        "PROXY p1:3128; DIRECT"
    );
    assert_eq!(
        p.find_raw_blocking("http://a.b.org/", "a.b.org")
            .expect("answer"),
        "PROXY p2:8080"
    );
}

#[test]
fn an_endless_loop_is_cut_by_the_budget() {
    let limits = Limits {
        budget: Duration::from_millis(50),
        ..Limits::default()
    };
    let p = PacHandle::load(
        "function FindProxyForURL(u, h) { while (true) {} }",
        Ipv4Addr::LOCALHOST,
        limits,
    )
    .expect("loads");
    let t = Instant::now();
    assert_eq!(p.find_raw_blocking("http://x/", "x"), Err(PacError::Budget));
    assert!(t.elapsed() < Duration::from_secs(2));
    // Still usable afterwards? The runtime survives an interrupt; a second call is cut too.
    assert_eq!(p.find_raw_blocking("http://x/", "x"), Err(PacError::Budget));
    let top = PacHandle::load("for(;;){}", Ipv4Addr::LOCALHOST, limits);
    assert!(matches!(top, Err(PacError::Budget)));
}

#[test]
fn memory_is_bounded_and_errors_are_reported() {
    let p = load("function FindProxyForURL(u, h) { var a = []; for (;;) a.push(new Array(100000).fill(1)); }");
    assert!(p.find_raw_blocking("http://x/", "x").is_err());
    assert!(matches!(
        PacHandle::load("function (", Ipv4Addr::LOCALHOST, Limits::default()),
        Err(PacError::Script(_))
    ));
    assert!(matches!(
        PacHandle::load("var x = 1;", Ipv4Addr::LOCALHOST, Limits::default()),
        Err(PacError::Script(_))
    ));
    let t = load("function FindProxyForURL(u, h) { throw new Error('nope'); }");
    assert_eq!(
        t.find_raw_blocking("http://x/", "x"),
        Err(PacError::Script("nope".into()))
    );
}

/// A PAC whose clock reads `y-m-d h:mi:s` local time (the helpers call `new Date()`).
fn at(time: &str, body: &str) -> PacHandle {
    load(&format!(
        "var __RealDate = Date; Date = function () {{ return new __RealDate({time}); }};\n\
         function FindProxyForURL(url, host) {{ {body} }}"
    ))
}

fn ask(p: &PacHandle) -> String {
    p.find_raw_blocking("http://x.test/", "x.test")
        .expect("answer")
}

#[test]
fn shell_expressions_have_character_classes() {
    let p = load(
        r#"function FindProxyForURL(url, host) {
            return [shExpMatch("q.ax.example", "*.[ab]x.example"),
                    shExpMatch("q.cx.example", "*.[ab]x.example"),
                    shExpMatch("a9", "a[0-9]"),
                    shExpMatch("www.example.com", "*.example.com"),
                    shExpMatch("wwwXexample.com", "www.example.com"),
                    shExpMatch("abc", "a?c"),
                    shExpMatch("abbc", "a?c")].join(",");
        }"#,
    );
    assert_eq!(ask(&p), "true,false,true,true,false,true,false");
}

#[test]
fn time_ranges_include_their_end_as_browsers_do() {
    // 2026-12-05 12:30:15 local time, a Saturday.
    let p = at(
        "2026, 11, 5, 12, 30, 15",
        r#"return [timeRange(0, 12), timeRange(12), timeRange(13, 14), timeRange(0, 11),
                   timeRange(12, 0, 12, 30), timeRange(12, 31, 13, 0),
                   timeRange(12, 30, 0, 12, 30, 15), timeRange(12, 30, 16, 12, 31, 0),
                   weekdayRange("SAT"), weekdayRange("FRI", "MON"), weekdayRange("MON", "FRI"),
                   weekdayRange("SAT", "SUN"),
                   dateRange("DEC"), dateRange("NOV", "JAN"), dateRange(1, 5), dateRange(6, 31),
                   dateRange(2026), dateRange(5, "DEC", 2026, 10, "DEC", 2026)].join(",");"#,
    );
    assert_eq!(
        ask(&p),
        "true,true,false,false,true,false,true,false,true,true,false,true,true,true,true,false,true,true"
    );
}

/// A PAC with a table of `n` domains and the proxy for each, as the large real-world files
/// (blocklists, per-site routing) are.
pub(crate) fn big_pac(n: usize) -> String {
    let mut s = String::from("var table = {\n");
    for i in 0..n {
        s += &format!(
            "  \"domain-{i:07}.example\": \"PROXY p{}.test:3128\",\n",
            i % 7
        );
    }
    s += "};\nfunction FindProxyForURL(url, host) {\n  var parts = host.split(\".\");\n  \
          for (var i = 0; i < parts.length - 1; i++) {\n    var d = parts.slice(i).join(\".\");\n    \
          if (table.hasOwnProperty(d)) return table[d];\n  }\n  return \"DIRECT\";\n}\n";
    s
}

#[test]
fn a_large_pac_loads_and_one_over_the_memory_limit_says_so() {
    let text = big_pac(75_000);
    assert!(text.len() >= 3_000_000, "{} bytes", text.len());
    let p =
        PacHandle::load(&text, Ipv4Addr::LOCALHOST, Limits::default()).expect("a 3 MB PAC loads");
    assert_eq!(
        p.find_raw_blocking(
            "http://a.domain-0074999.example/",
            "a.domain-0074999.example"
        )
        .expect("answer"),
        "PROXY p1.test:3128"
    );
    let small = Limits {
        memory: 4 << 20,
        ..Limits::default()
    };
    let e = PacHandle::load(&text, Ipv4Addr::LOCALHOST, small)
        .err()
        .expect("refused");
    assert_eq!(e, PacError::Memory(4 << 20));
    assert!(
        e.to_string().contains("more than 4 MiB") && e.to_string().contains("pac_memory"),
        "{e}"
    );
}

fn silent_dns(_: &str) -> Option<Ipv4Addr> {
    // A DNS server that never answers: the OS resolver waits out its own timeouts.
    std::thread::sleep(Duration::from_secs(5));
    None
}

/// Lookup threads of this process (other tests run threads of their own at the same time).
fn threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("pac-dns-"))
        })
        .count()
}

#[test]
fn dns_lookups_are_charged_to_the_budget_on_a_few_threads() {
    let limits = Limits {
        lookup: silent_dns,
        ..Limits::default()
    };
    let p = PacHandle::load(
        r#"function FindProxyForURL(url, host) {
            for (var i = 0; i < 1000; i++) { dnsResolve("host" + i + ".test"); }
            return "DIRECT";
        }"#,
        Ipv4Addr::LOCALHOST,
        limits,
    )
    .expect("loads");
    let before = threads();
    let t = Instant::now();
    let r = p.find_raw_blocking("http://x.test/", "x.test");
    let took = t.elapsed();
    eprintln!("1,000 lookups against a silent DNS server: {r:?} after {took:?}");
    // The lookups wait no longer than the 200 ms budget in all; past it each fails at once
    // (or the script is cut).
    assert!(
        r == Ok("DIRECT".into()) || r == Err(PacError::Budget),
        "{r:?}"
    );
    assert!(took < Duration::from_millis(400), "{took:?}");
    // A second evaluation is as short: the pool is busy, lookups fail at once.
    let t = Instant::now();
    let _ = p.find_raw_blocking("http://y.test/", "y.test");
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert!(
        threads() <= dns::THREADS,
        "lookup threads: {before} before, {} after",
        threads()
    );
}
