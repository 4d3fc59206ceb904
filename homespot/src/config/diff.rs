//! What a reload changes: the keys applied at once, the keys that wait for a restart, and the
//! changes that cannot be applied to a running homespotd at all (a link's interface or
//! subnet: its sockets, pools and clients belong to the old one).

use super::Config;

/// The difference between the running config and a newly read one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Applied at once (DHCP pools and options, WPAD URLs, relays, rate limits, proxy
    /// limits, timeouts and destinations), in words.
    pub applied: Vec<String>,
    /// Changed, but taking effect only after a restart (keys).
    pub restart: Vec<String>,
    /// Why the new config cannot be applied while running, if it cannot.
    pub refused: Option<String>,
}

fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// Compares `old` (running) with `new`.
pub fn diff(old: &Config, new: &Config) -> Diff {
    let mut d = Diff::default();
    if old.links.len() != new.links.len() {
        d.refused = Some(format!(
            "the number of links changed ({} to {}); restart homespotd to apply it",
            old.links.len(),
            new.links.len()
        ));
        return d;
    }
    for (i, (a, b)) in old.links.iter().zip(&new.links).enumerate() {
        let fixed = [
            ("interface", a.interface != b.interface),
            ("address", a.address != b.address || a.subnet != b.subnet),
            ("kind", a.kind != b.kind),
        ];
        if let Some((key, _)) = fixed.iter().find(|(_, changed)| *changed) {
            d.refused = Some(format!(
                "link[{i}].{key} changed; restart homespotd to apply it"
            ));
            return d;
        }
        let fields: [(&str, bool); 10] = [
            ("name", a.name != b.name),
            ("pools", a.pools != b.pools),
            ("lease_time", a.lease_time != b.lease_time),
            ("router", a.router != b.router),
            ("dns", a.dns != b.dns),
            ("domain", a.domain != b.domain),
            ("wpad_url", a.wpad_url != b.wpad_url),
            ("wpad_always", a.wpad_always != b.wpad_always),
            ("reservations", differs(&a.reservations, &b.reservations)),
            ("rate_mbps", a.rate != b.rate),
        ];
        for (key, changed) in fields {
            if changed {
                d.applied.push(format!("link[{i}].{key}"));
            }
        }
        if a.l2_id != b.l2_id {
            d.restart.push(format!("link[{i}].ssid/bt_address"));
        }
        if a.bluez != b.bluez {
            d.restart.push(format!("link[{i}].bluez_adapter/pairing"));
        }
    }
    let server: [(&str, bool, bool); 8] = [
        ("server.lease_db", old.lease_db != new.lease_db, true),
        (
            "server.worker_threads",
            old.worker_threads != new.worker_threads,
            true,
        ),
        (
            "server.status_socket",
            old.status_socket != new.status_socket,
            true,
        ),
        (
            "server.decline_quarantine",
            old.decline_quarantine != new.decline_quarantine,
            false,
        ),
        ("server.offer_hold", old.offer_hold != new.offer_hold, false),
        ("server.relays", old.relays != new.relays, false),
        (
            "server.rate_per_client",
            old.rate_per_client != new.rate_per_client,
            false,
        ),
        (
            "server.rate_per_link",
            old.rate_per_link != new.rate_per_link,
            false,
        ),
    ];
    for (key, changed, restart) in server {
        if changed {
            if restart {
                d.restart.push(key.into());
            } else {
                d.applied.push(key.into());
            }
        }
    }
    let (p, q) = (&old.proxy, &new.proxy);
    for (key, changed) in [
        ("proxy.enabled", p.enabled != q.enabled),
        ("proxy.port", p.port != q.port),
        ("proxy.pac_port", p.pac_port != q.pac_port),
        (
            "proxy.congestion_control",
            p.congestion_control != q.congestion_control,
        ),
    ] {
        if changed {
            d.restart.push(key.into());
        }
    }
    let mut p2 = p.clone();
    p2.enabled = q.enabled;
    p2.port = q.port;
    p2.pac_port = q.pac_port;
    p2.congestion_control = q.congestion_control.clone();
    if differs(&p2, q) {
        d.applied
            .push("proxy (limits, timeouts, destinations, parent, DNS)".into());
    }
    if differs(&old.handoff, &new.handoff) {
        d.restart.push("handoff".into());
    }
    if old.admin != new.admin {
        d.restart.push("admin".into());
    }
    d
}
