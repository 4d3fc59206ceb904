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
