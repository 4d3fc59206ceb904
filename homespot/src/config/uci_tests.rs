use std::path::Path;

use super::*;
use crate::config::{Config, ConfigError};

const UCI: &str = "
# a comment
config server
\toption lease_db '/tmp/hs/leases.redb'

config proxy
\toption pac_port '8081'
\tlist connect_ports '443'
\tlist connect_ports '8443'

config link 'wifi'
\toption interface 'wlan0'
\toption kind wifi
\toption address '10.42.1.1/24'
\tlist pools '10.42.1.100-10.42.1.150'
\tlist pools \"10.42.1.160-10.42.1.199\"
\toption wpad_always '1'
\toption rate_mbps '50'

config link 'bt'
\toption interface 'pan0'
\toption address '10.42.2.1/24'
\tlist pools '10.42.2.100-10.42.2.199'

config reservation
\toption link 'wifi'
\toption mac '02:00:00:00:00:10'
\toption address '10.42.1.10'
";

const TOML: &str = r#"
[server]
lease_db = "/tmp/hs/leases.redb"

[proxy]
pac_port = 8081
connect_ports = [443, 8443]

[[link]]
name = "wifi"
interface = "wlan0"
kind = "wifi"
address = "10.42.1.1/24"
pools = ["10.42.1.100-10.42.1.150", "10.42.1.160-10.42.1.199"]
wpad_always = true
rate_mbps = 50.0

  [[link.reservations]]
  mac = "02:00:00:00:00:10"
  address = "10.42.1.10"

[[link]]
name = "bt"
interface = "pan0"
address = "10.42.2.1/24"
pools = ["10.42.2.100-10.42.2.199"]
"#;

fn uci(text: &str) -> Result<Config, ConfigError> {
    parse_config(Path::new("/etc/config/homespot"), text)
}

fn toml_cfg(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("homespotd.toml"), text)
}

#[test]
fn a_uci_file_means_what_its_toml_equivalent_means() {
    let a = uci(UCI).expect("uci");
    let b = toml_cfg(TOML).expect("toml");
    assert_eq!(format!("{:?}", a), format!("{:?}", b));
    assert!(looks_like_uci(UCI) && !looks_like_uci(TOML));
    assert_eq!(a.links[0].reservations.len(), 1);
    assert_eq!(a.proxy.connect_ports, vec![443, 8443]);
}

#[test]
fn the_packaged_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/files/etc/config/homespot");
    let cfg = Config::load(&path).expect("the packaged /etc/config/homespot is valid");
    assert_eq!(cfg.links[0].interface, "br-lan");
    // Neither port 80 (LuCI) nor anything of dnsmasq's: the PAC file has its own port, and
    // the WPAD URL points at it.
    assert_eq!(cfg.proxy.pac_port, Some(8081));
    assert_eq!(
        cfg.links[0].wpad_url.as_deref(),
        Some("http://192.168.1.1:8081/wpad.dat")
    );
    assert_eq!(cfg.admin.port, 8088);
}

/// The same mistake in UCI and in TOML: the same reason, each at its own line, the UCI one
/// with its UCI position.
fn same_error(uci_text: &str, toml_text: &str, uci_line: usize, uci_key: &str) {
    let u = uci(uci_text).expect_err("uci refused");
    let t = toml_cfg(toml_text).expect_err("toml refused");
    assert_eq!(u.reason, t.reason, "\nuci:  {u}\ntoml: {t}");
    assert_eq!(u.line, Some(uci_line), "{u}");
    assert_eq!(u.key, uci_key, "{u}");
    assert!(
        u.to_string()
            .starts_with(&format!("/etc/config/homespot:{uci_line}: {uci_key}: ")),
        "{u}"
    );
}

#[test]
fn malformed_files_get_the_toml_errors_at_their_uci_position() {
    // A bad option.
    same_error(
        &UCI.replace("\toption wpad_always '1'", "\toption colour 'blue'"),
        &TOML.replace("wpad_always = true", "colour = \"blue\""),
        17,
        "homespot.wifi.colour",
    );
    // An unknown section type.
    same_error(
        &format!("{UCI}\nconfig frobnicate\n\toption x '1'\n"),
        &format!("[frobnicate]\nx = 1\n{TOML}"),
        30,
        "homespot.@frobnicate[0]",
    );
    // Overlapping pools.
    same_error(
        &UCI.replace("10.42.1.160-10.42.1.199", "10.42.1.150-10.42.1.199"),
        &TOML.replace("10.42.1.160-10.42.1.199", "10.42.1.150-10.42.1.199"),
        15,
        "homespot.wifi.pools",
    );
    // A link without its interface.
    same_error(
        &UCI.replace("\toption interface 'pan0'\n", ""),
        &TOML.replace("interface = \"pan0\"\n", ""),
        20,
        "homespot.bt",
    );
    // A bad URL.
    same_error(
        &UCI.replace(
            "\toption rate_mbps '50'",
            "\toption wpad_url 'ftp://x/wpad.dat'",
        ),
        &TOML.replace("rate_mbps = 50.0", "wpad_url = \"ftp://x/wpad.dat\""),
        18,
        "homespot.wifi.wpad_url",
    );
    // A value of the wrong type.
    same_error(
        &UCI.replace("option pac_port '8081'", "option pac_port 'eighty'"),
        &TOML.replace("pac_port = 8081", "pac_port = \"eighty\""),
        7,
        "homespot.@proxy[0].pac_port",
    );
}

#[test]
fn uci_syntax_errors_and_dangling_reservations_are_named() {
    let e = uci("config link 'a\n").expect_err("quote");
    assert_eq!((e.line, e.key.as_str()), (Some(1), "(syntax)"));
    let e = uci("\toption x 'y'\n").expect_err("no section");
    assert!(e.reason.contains("before any `config`"), "{e}");
    let e = uci(&format!("{UCI}\nconfig reservation\n\toption link 'nope'\n\toption mac '02:00:00:00:00:11'\n\toption address '10.42.1.11'\n"))
        .expect_err("dangling");
    assert_eq!(e.line, Some(31), "{e}");
    assert!(e.reason.contains("\"nope\""), "{e}");
    let e = uci(&UCI.replace(
        "\toption kind wifi\n",
        "\toption kind wifi\n\toption kind wifi\n",
    ))
    .expect_err("twice");
    assert!(e.reason.contains("set twice"), "{e}");
}

#[test]
fn the_writer_round_trips() {
    for text in [
        UCI.to_string(),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/files/etc/config/homespot"),
        )
        .expect("example"),
    ] {
        let p = Path::new("/etc/config/homespot");
        let toml1: toml::Table =
            toml::from_str(&toml_of(p, &text).expect("to toml")).expect("toml");
        let written = from_toml(&toml1);
        assert!(looks_like_uci(&written), "{written}");
        let toml2: toml::Table =
            toml::from_str(&toml_of(p, &written).expect("again")).expect("toml");
        assert_eq!(toml1, toml2, "\n{written}");
        // And it still means the same configuration.
        let a = uci(&text).expect("original");
        let b = uci(&written).expect("written");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
    // Quotes inside values survive.
    let mut t = toml::Table::new();
    let mut proxy = toml::Table::new();
    proxy.insert("parent".into(), toml::Value::String("it's:3128".into()));
    t.insert("proxy".into(), toml::Value::Table(proxy));
    let w = from_toml(&t);
    let back: toml::Table =
        toml::from_str(&toml_of(Path::new("x"), &w).expect("parse")).expect("toml");
    assert_eq!(back, t, "{w}");
}
