use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text)
}

const GOOD: &str = r#"
[[link]]
name = "wifi"
interface = "wlan0"
address = "10.42.1.1/24"
pools = ["10.42.1.100-10.42.1.199"]
"#;

#[test]
fn example_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/homespotd.toml");
    let cfg = Config::load(&path).expect("example config is valid");
    assert_eq!(cfg.links.len(), 2);
    assert_eq!(cfg.links[0].reservations.len(), 1);
}

#[test]
fn defaults_fill_in() {
    let cfg = parse(GOOD).expect("valid");
    let l = &cfg.links[0];
    assert_eq!(l.router, Ipv4Addr::new(10, 42, 1, 1));
    assert_eq!(l.wpad_url.as_deref(), Some("http://10.42.1.1/wpad.dat"));
    assert_eq!(l.lease_time, Duration::from_secs(43200));
    assert_eq!(l.subnet.to_string(), "10.42.1.0/24");
}

fn refused(text: &str, key: &str, reason_part: &str) {
    let e = parse(text).expect_err("must be refused");
    assert_eq!(e.key, key, "{e}");
    assert!(e.reason.contains(reason_part), "{e}");
    assert!(e.to_string().starts_with("test.toml:"), "{e}");
}

#[test]
fn pool_outside_subnet() {
    refused(
        &GOOD.replace("10.42.1.199", "10.42.2.5"),
        "link[0].pools[0]",
        "outside",
    );
}

#[test]
fn overlapping_pools() {
    refused(
        &GOOD.replace(
            r#"["10.42.1.100-10.42.1.199"]"#,
            r#"["10.42.1.100-10.42.1.150", "10.42.1.150-10.42.1.160"]"#,
        ),
        "link[0].pools[1]",
        "overlaps",
    );
}

#[test]
fn overlapping_subnets_between_links() {
    let two = format!(
        "{GOOD}{}",
        GOOD.replace("wifi", "bt").replace("wlan0", "pan0")
    );
    refused(&two, "link[1].address", "overlaps");
}

#[test]
fn bad_url() {
    refused(
        &GOOD.replace("pools", "wpad_url = \"ftp://x/wpad.dat\"\npools"),
        "link[0].wpad_url",
        "http",
    );
}

#[test]
fn unknown_key_and_syntax() {
    let e = parse(&GOOD.replace("pools", "colour = 1\npools")).expect_err("unknown key");
    assert!(e.reason.contains("colour"), "{e}");
    assert_eq!(
        (e.key.as_str(), e.line),
        ("colour", Some(6)),
        "the key's own line: {e}"
    );
    assert!(e.to_string().starts_with("test.toml:6: colour: "), "{e}");
    let e = parse("[[link]\n").expect_err("syntax");
    assert_eq!((e.key.as_str(), e.line), ("(syntax)", Some(1)), "{e}");
}

#[test]
fn a_bad_value_points_at_its_line() {
    let two = format!(
        "{GOOD}{}",
        GOOD.replace("wifi", "bt")
            .replace("wlan0", "bt0")
            .replace("10.42.1.", "10.42.2.")
    );
    let e =
        parse(&two.replacen("10.42.2.100-10.42.2.199", "10.42.2.100-x", 1)).expect_err("bad pool");
    assert_eq!(e.key, "link[1].pools[0]");
    assert_eq!(e.line, Some(12), "{e}");
}

#[test]
fn unknown_interface() {
    let cfg = parse(&GOOD.replace("wlan0", "nosuchif0")).expect("valid file");
    let found = system::check(&cfg, false);
    let e = found
        .iter()
        .find(|f| f.key == "link[0].interface")
        .expect("no such interface");
    assert_eq!(
        e.severity,
        system::Severity::Warning,
        "a missing interface is waited for"
    );
}

#[test]
fn reservation_needs_one_client_kind() {
    refused(
        &format!("{GOOD}[[link.reservations]]\naddress = \"10.42.1.5\"\n"),
        "link[0].reservations[0]",
        "exactly one",
    );
    let cfg = parse(&format!(
        "{GOOD}[[link.reservations]]\nclient_id = \"01:02:03\"\naddress = \"10.42.1.5\"\n"
    ))
    .expect("valid");
    assert_eq!(
        cfg.links[0].reservations[0].client,
        ReservedFor::ClientId(vec![1, 2, 3])
    );
}

#[test]
fn handoff_section() {
    let cfg = parse(&format!(
        "[handoff]\nglobal_subnet = \"10.200.0.0/24\"\n{GOOD}"
    ))
    .expect("valid");
    let h = cfg.handoff.expect("handoff on");
    assert_eq!(h.global_address, Ipv4Addr::new(10, 200, 0, 1));
    assert_eq!(
        h.pool(),
        (Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 254))
    );
    assert!(
        parse(GOOD).expect("valid").handoff.is_none(),
        "off without a global subnet"
    );
    refused(
        &format!("[handoff]\nglobal_subnet = \"10.42.0.0/16\"\n{GOOD}"),
        "handoff.global_subnet",
        "overlaps",
    );
    refused(
        &format!(
            "[handoff]\nglobal_subnet = \"10.200.0.0/24\"\nglobal_address = \"10.9.9.9\"\n{GOOD}"
        ),
        "handoff.global_address",
        "not a host",
    );
    refused(
        &GOOD.replace("pools", "kind = \"zigbee\"\npools"),
        "link[0].kind",
        "zigbee",
    );
}

#[test]
fn the_admin_panel_defaults_beside_the_lease_database_and_off_the_proxy_ports() {
    let cfg = parse(GOOD).expect("valid");
    assert_eq!(cfg.admin.port, 8088);
    assert!(cfg.admin.enabled);
    assert_eq!(
        cfg.admin.password_file,
        Path::new("/var/lib/homespot/admin.password")
    );
    let cfg = parse(&format!(
        "[server]\nlease_db = \"/tmp/hs/leases.redb\"\n{GOOD}"
    ))
    .expect("valid");
    assert_eq!(
        cfg.admin.setup_code_file,
        Path::new("/tmp/hs/admin.setup-code")
    );
    refused(
        &format!("{GOOD}[admin]\nport = 3128\n"),
        "admin.port",
        "proxy",
    );
    refused(
        &format!("{GOOD}[admin]\nport = 80\n"),
        "admin.port",
        "proxy",
    );
    refused(
        &format!("{GOOD}[admin]\nport = 0\n"),
        "admin.port",
        "not be 0",
    );
    refused(
        &format!("{GOOD}[admin]\npassword_file = \"/a\"\nsetup_code_file = \"/a\"\n"),
        "admin.setup_code_file",
        "differ",
    );
}

#[test]
fn congestion_control_defaults_to_bbr_and_changes_at_restart() {
    let cfg = parse(GOOD).expect("valid");
    assert_eq!(cfg.proxy.congestion_control.as_deref(), Some("bbr"));
    let system =
        parse(&format!("[proxy]\ncongestion_control = \"system\"\n{GOOD}")).expect("valid");
    assert_eq!(system.proxy.congestion_control, None);
    let cubic = parse(&format!("[proxy]\ncongestion_control = \"cubic\"\n{GOOD}")).expect("valid");
    assert_eq!(cubic.proxy.congestion_control.as_deref(), Some("cubic"));
    refused(
        &format!("[proxy]\ncongestion_control = \"../bbr\"\n{GOOD}"),
        "proxy.congestion_control",
        "not a congestion control name",
    );
    let d = diff::diff(&cfg, &cubic);
    assert_eq!(d.restart, ["proxy.congestion_control"], "{d:?}");
    assert!(d.applied.is_empty(), "{d:?}");
}
