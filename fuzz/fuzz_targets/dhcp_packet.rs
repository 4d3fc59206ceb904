//! The whole packet path: bytes -> engine (parse, checks, handle) -> reply -> emit -> parse.
//! Nothing may panic, and every reply the engine emits must parse back to the same message.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use dhcproto::v4::Message;
use dhcproto::{Decodable, Encodable};
use homespot::config::Config;
use homespot::dhcp::engine::Engine;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[[link]]
name = "wifi"
interface = "lan0"
address = "10.0.1.1/24"
pools = ["10.0.1.100-10.0.1.110"]
lease_time = "1h"
dns = ["10.0.1.1"]
[[link.reservations]]
mac = "02:00:00:00:00:01"
address = "10.0.1.5"
[[link]]
name = "bt"
interface = "lan1"
address = "10.0.2.1/24"
pools = ["10.0.2.100-10.0.2.110"]
"#;

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| Config::parse(Path::new("fuzz.toml"), CONFIG).expect("fuzz config"))
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the arrival link and a time step; the rest is a sequence of packets,
    // each after a 2-byte length, so the engine sees exchanges (DISCOVER then REQUEST, ...).
    let Some((&sel, mut rest)) = data.split_first() else { return };
    let mut engine = Engine::new(config());
    let mut now = 1_800_000_000 + u64::from(sel >> 1) * 97;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let packet = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let out = engine.handle_packet(now, usize::from(sel & 1), std::net::Ipv4Addr::new(10, 0, 1, 9), packet);
        if let Some(reply) = out.reply {
            let bytes = reply.message.to_vec().expect("our replies encode");
            let back = Message::from_bytes(&bytes).expect("our replies parse");
            assert_eq!(back, reply.message, "emit -> parse changed the reply");
        }
        now += 30;
    }
});
