//! The CLI for people: the agent's status and events as readable text (link names and kinds,
//! the HomeSpot by fingerprint, local times), from the same JSON the Mobility API gives
//! programs (`--json`).

use serde_json::Value;

/// `time_ms` (Unix milliseconds) as local `HH:MM:SS.mmm`.
pub fn local_time(ms: u64) -> String {
    let secs = (ms / 1000) as libc::time_t;
    // SAFETY: localtime_r fills `tm` from `secs`; both are valid for the call.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    };
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        ms % 1000
    )
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn ms(v: &Value, k: &str) -> String {
    match v.get(k).and_then(Value::as_f64) {
        Some(x) => format!("{x:.0} ms"),
        None => "not measured".into(),
    }
}

/// One event as a line of text.
pub fn event_line(e: &Value) -> String {
    let t = e
        .get("time_ms")
        .and_then(Value::as_u64)
        .map(local_time)
        .unwrap_or_default();
    let what = match s(e, "event") {
        "link_up" => match e.get("reason").and_then(Value::as_str) {
            Some(r) => format!("{} is usable again: {r}", s(e, "link")),
            None => format!(
                "{} is up with {}/{}",
                s(e, "link"),
                s(e, "address"),
                e["prefix"]
            ),
        },
        "link_down" => format!("{} is down: {}", s(e, "link"), s(e, "reason")),
        "discovered" => match e.get("homespot").and_then(Value::as_str) {
            Some(hs) => format!(
                "{} belongs to HomeSpot {hs} ({}, {}found in {})",
                s(e, "link"),
                e.get("kind").and_then(Value::as_str).unwrap_or("link"),
                if e["cached"] == true { "cached, " } else { "" },
                ms(e, "took_ms")
            ),
            None => format!(
                "{} is a plain network{} ({})",
                s(e, "link"),
                match e.get("wpad").and_then(Value::as_str) {
                    Some(w) => format!(", proxy configuration at {w}"),
                    None => ", no proxy configuration".into(),
                },
                ms(e, "took_ms")
            ),
        },
        "route_changed" => format!(
            "traffic moves {} -> {} ({}, {})",
            empty_as(s(e, "from"), "nothing"),
            s(e, "to"),
            s(e, "kind"),
            s(e, "reason")
        ),
        "handoff" => format!(
            "handoff {} -> {} done ({}, {}): interruption {}",
            empty_as(s(e, "from"), "nothing"),
            s(e, "to"),
            s(e, "kind"),
            s(e, "reason"),
            ms(e, "interruption_ms")
        ),
        "associated" => format!(
            "associated with the HomeSpot: global address {} (HomeSpot {})",
            s(e, "global"),
            s(e, "homespot_global")
        ),
        "session_lost" => "the HomeSpot lost our session (it restarted?); associating again".into(),
        "homespot_refused" => format!(
            "a device claiming to be a HomeSpot was refused on {}: {}",
            s(e, "link"),
            s(e, "reason")
        ),
        "switch_failed" => match e.get("reason").and_then(Value::as_str) {
            Some(r) => format!("a switch to {} failed: {r}", s(e, "link")),
            None => format!("a switch to HomeSpot link {} failed", e["homespot_link"]),
        },
        "bluetooth_connecting" => format!(
            "bringing the HomeSpot's Bluetooth link up ({} wants it): {}",
            s(e, "why"),
            s(e, "address")
        ),
        "bluetooth_connected" => format!(
            "Bluetooth PAN up on {}: found {}, paired {}, PAN connect {}",
            s(e, "iface"),
            ms(e, "find_ms"),
            ms(e, "pair_ms"),
            ms(e, "connect_ms")
        ),
        "bluetooth_lease" => format!(
            "{} has its lease {} ({} after the PAN came up)",
            s(e, "iface"),
            s(e, "address"),
            ms(e, "took_ms")
        ),
        "bluetooth_failed" => format!("bringing Bluetooth up failed: {}", s(e, "error")),
        "bluetooth_disconnected" => format!(
            "Bluetooth PAN on {} disconnected: {}",
            s(e, "iface"),
            s(e, "reason")
        ),
        "trusted" => format!("now trusting HomeSpot {}", s(e, "identity")),
        "forgotten" => format!("no longer trusting HomeSpot {}", s(e, "identity")),
        other => format!("{other} {e}"),
    };
    format!("{t}  {what}")
}

fn empty_as<'a>(v: &'a str, instead: &'a str) -> &'a str {
    if v.is_empty() {
        instead
    } else {
        v
    }
}

/// The status as text.
pub fn status_text(v: &Value) -> String {
    let mut o = String::new();
    let current = v.get("current").and_then(Value::as_str);
    let hibernating = v["hibernating"] == true;
    o += &match (current, hibernating) {
        (Some(c), false) => format!("Traffic goes over {c}.\n"),
        _ => "No usable network now: requests wait (hibernation).\n".into(),
    };
    o += &format!(
        "Proxy for applications: {} (PAC: http://{}/proxy.pac); {} bytes carried.\n",
        s(v, "proxy"),
        s(v, "proxy"),
        v["bytes"]
    );
    if let Some(hs) = v.get("homespot").filter(|h| !h.is_null()) {
        o += &format!(
            "\nHomeSpot {} (pinned), our global address {}, the HomeSpot's {}\n",
            s(hs, "identity"),
            hs.get("global")
                .and_then(Value::as_str)
                .unwrap_or("(not yet)"),
            s(hs, "homespot_global")
        );
    }
    o += "\nLinks\n";
    for l in v["links"].as_array().into_iter().flatten() {
        let info = &l["info"];
        let what = match s(l, "state") {
            "homespot" => format!("HomeSpot {} link", s(info, "kind")),
            "homespot-dead" => format!("HomeSpot {} link, not answering", s(info, "kind")),
            "plain" => match info.get("wpad").and_then(Value::as_str) {
                Some(w) => format!("plain network, proxy configuration {w}"),
                None => "plain network, direct".into(),
            },
            "discovering" => "finding out what this network is".into(),
            other => other.to_string(),
        };
        let mark = if Some(s(l, "name")) == current {
            "*"
        } else {
            " "
        };
        o += &format!(
            " {mark} {:<10} {:<18} {what}\n",
            s(l, "name"),
            l.get("address")
                .and_then(Value::as_str)
                .unwrap_or("no address")
        );
    }
    let pins = v["pinned"].as_array().cloned().unwrap_or_default();
    if !pins.is_empty() {
        o += "\nTrusted HomeSpots\n";
        for p in pins {
            let l2 = s(&p, "l2_id");
            o += &format!(
                "   {}  {} link{}, router {}\n",
                s(&p, "identity"),
                s(&p, "kind"),
                if l2.is_empty() {
                    String::new()
                } else {
                    format!(" {l2:?}")
                },
                s(&p, "router")
            );
        }
    }
    let resting = v["resting"].as_array().cloned().unwrap_or_default();
    if !resting.is_empty() {
        o += "\nHomeSpots not used for now (they never answered)\n";
        for r in resting {
            let id = s(&r, "identity");
            let id = id.get(..12).unwrap_or(id);
            let left = r["left_s"].as_u64().unwrap_or(0);
            o += &match r["router"].as_str() {
                Some(router) => {
                    format!("   {id}  on the network of router {router}: tried again in {left} s\n")
                }
                None => format!("   {id}  met first here, anywhere: for another {left} s\n"),
            };
        }
    }
    let warnings = v["warnings"].as_array().cloned().unwrap_or_default();
    if !warnings.is_empty() {
        o += "\nWarnings\n";
        for w in warnings {
            o += &match (w.as_str(), w["reason"].as_str()) {
                (Some(t), _) => format!("   {t}\n"),
                (None, Some(reason)) => {
                    let id = s(&w, "identity");
                    format!(
                        "   {}: HomeSpot {}: {reason}\n",
                        s(&w, "link"),
                        id.get(..12).unwrap_or(id)
                    )
                }
                _ => format!("   {w}\n"),
            };
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_and_events_read_as_text() {
        let v = json!({"ok": true, "current": "wlan0", "hibernating": false, "proxy": "127.0.0.1:3129",
            "bytes": 1234, "pinned": [{"identity": "a66c1be41213", "kind": "wifi", "l2_id": "home", "router": "10.77.1.1"}],
            "warnings": [{"link": "wlan0", "identity": "b77d2cf5232400ff", "from": "10.88.1.1", "reason": "never answered a handshake or probe on this network"}],
            "resting": [{"identity": "b77d2cf5232400ff", "router": "10.88.1.1", "left_s": 14}],
            "homespot": {"identity": "a66c1be41213", "global": "10.200.0.2", "homespot_global": "10.200.0.1"},
            "links": [{"name": "wlan0", "address": "10.77.1.100/24", "state": "homespot", "info": {"homespot_link": 0, "kind": "wifi"}},
                      {"name": "eth9", "address": null, "state": "plain", "info": {"wpad": null}}]});
        let t = status_text(&v);
        assert!(t.contains("Traffic goes over wlan0."), "{t}");
        assert!(
            t.contains("* wlan0") && t.contains("HomeSpot wifi link"),
            "{t}"
        );
        assert!(
            t.contains("HomeSpot a66c1be41213 (pinned), our global address 10.200.0.2"),
            "{t}"
        );
        assert!(!t.contains("homespot_link"), "no raw fields: {t}");
        assert!(
            t.contains("wlan0: HomeSpot b77d2cf52324: never answered a handshake"),
            "{t}"
        );
        assert!(
            t.contains("b77d2cf52324  on the network of router 10.88.1.1: tried again in 14 s"),
            "{t}"
        );
        assert!(!t.contains("\"reason\""), "no raw JSON: {t}");
        let e = json!({"event": "handoff", "from": "wlan0", "to": "bnep0", "kind": "p-handoff",
            "reason": "user", "interruption_ms": 7.4, "time_ms": 1_796_474_000_000u64});
        let line = event_line(&e);
        assert!(
            line.contains("handoff wlan0 -> bnep0 done (p-handoff, user): interruption 7 ms"),
            "{line}"
        );
        assert_eq!(
            line.split("  ").next().map(str::len),
            Some(12),
            "HH:MM:SS.mmm: {line}"
        );
    }
}
