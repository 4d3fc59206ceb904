//! Settings edits written into the config file's TOML, keeping its comments and layout
//! (`toml_edit`): each key is a path as config errors name it (`link[0].pools`,
//! `proxy.parent`), and only the keys the panel offers can be changed: never a file path,
//! an interface or an address of the HomeSpot itself.

use serde_json::Value;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table};
use web_admin::{Edit, Refused};

/// What the panel may change, per table.
const LINK_KEYS: &[&str] = &[
    "pools",
    "lease_time",
    "wpad_url",
    "wpad_always",
    "reservations",
    "dns",
    "domain",
    "router",
    "rate_mbps",
];
const PROXY_KEYS: &[&str] = &[
    "parent",
    "dns",
    "header_timeout",
    "idle_timeout",
    "connect_timeout",
    "response_timeout",
    "body_idle_timeout",
    "max_connections",
    "max_link_share",
    "max_connections_per_client",
    "max_request_line",
    "max_header_bytes",
    "allow_destinations",
    "block_wan_subnet",
    "connect_ports",
];
const HANDOFF_KEYS: &[&str] = &[
    "advert_interval",
    "rto_min_ms",
    "quickack",
    "expire_after",
    "session_idle",
    "handshake_rate",
];
const SERVER_KEYS: &[&str] = &[
    "decline_quarantine",
    "offer_hold",
    "rate_per_client",
    "rate_per_link",
];

fn refused(key: &str, reason: impl Into<String>) -> Refused {
    Refused {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// `text` with `edits` applied, or why an edit cannot be made. The result is not validated
/// here: the caller runs the config file's own validation on it.
pub fn apply(text: &str, edits: &[Edit]) -> Result<String, Refused> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| refused("(file)", format!("the config file does not parse: {e}")))?;
    for e in edits {
        let (table, field) = target(&mut doc, &e.key)?;
        if e.value.is_null() {
            table.remove(field);
        } else {
            table.insert(field, to_item(&e.key, &e.value)?);
        }
    }
    Ok(doc.to_string())
}

/// The table holding `key`'s field, and the field's name.
fn target<'d, 'k>(
    doc: &'d mut DocumentMut,
    key: &'k str,
) -> Result<(&'d mut Table, &'k str), Refused> {
    let not_here = || refused(key, "cannot be changed from the panel");
    let (table, field) = key.split_once('.').ok_or_else(not_here)?;
    if field.contains(['.', '[']) {
        return Err(not_here());
    }
    let root = doc.as_table_mut();
    if let Some(rest) = table.strip_prefix("link[") {
        let i: usize = rest
            .strip_suffix(']')
            .and_then(|n| n.parse().ok())
            .ok_or_else(not_here)?;
        if !LINK_KEYS.contains(&field) {
            return Err(not_here());
        }
        let links = root
            .get_mut("link")
            .and_then(Item::as_array_of_tables_mut)
            .ok_or_else(|| refused(key, "the file has no [[link]] tables"))?;
        let t = links
            .get_mut(i)
            .ok_or_else(|| refused(key, format!("there is no link[{i}]")))?;
        return Ok((t, field));
    }
    let allowed = match table {
        "proxy" => PROXY_KEYS,
        "handoff" => HANDOFF_KEYS,
        "server" => SERVER_KEYS,
        _ => return Err(not_here()),
    };
    if !allowed.contains(&field) {
        return Err(not_here());
    }
    let item = root
        .entry(table)
        .or_insert_with(|| Item::Table(Table::new()));
    let t = item
        .as_table_mut()
        .ok_or_else(|| refused(key, format!("[{table}] is not a table in the file")))?;
    Ok((t, field))
}

/// A JSON value as TOML: a list of objects becomes an array of tables (`[[link.reservations]]`).
fn to_item(key: &str, v: &Value) -> Result<Item, Refused> {
    if let Value::Array(list) = v {
        if !list.is_empty() && list.iter().all(Value::is_object) {
            let mut tables = ArrayOfTables::new();
            for o in list {
                let mut t = Table::new();
                if let Value::Object(m) = o {
                    for (k, x) in m {
                        if !x.is_null() {
                            t.insert(k, Item::Value(to_value(key, x)?));
                        }
                    }
                }
                tables.push(t);
            }
            return Ok(Item::ArrayOfTables(tables));
        }
    }
    Ok(Item::Value(to_value(key, v)?))
}

fn to_value(key: &str, v: &Value) -> Result<toml_edit::Value, Refused> {
    Ok(match v {
        Value::String(s) => s.as_str().into(),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            _ => return Err(refused(key, format!("{n} is not a number TOML can hold"))),
        },
        Value::Array(list) => {
            let mut a = Array::new();
            for x in list {
                a.push(to_value(key, x)?);
            }
            toml_edit::Value::Array(a)
        }
        Value::Object(m) => {
            let mut t = InlineTable::new();
            for (k, x) in m {
                t.insert(k, to_value(key, x)?);
            }
            toml_edit::Value::InlineTable(t)
        }
        Value::Null => return Err(refused(key, "an empty value inside a list")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "# HomeSpot\n[server]\nlease_db = \"/tmp/x\"\n\n[[link]]\n# the radio\nname = \"wifi\"\ninterface = \"wlan0\"\naddress = \"10.0.1.1/24\"\npools = [\"10.0.1.100-10.0.1.199\"] # the pool\n\n[[link]]\nname = \"bt\"\ninterface = \"bt0\"\naddress = \"10.0.2.1/24\"\npools = [\"10.0.2.100-10.0.2.199\"]\n";

    fn edit(key: &str, value: Value) -> Edit {
        Edit {
            key: key.into(),
            value,
        }
    }

    #[test]
    fn edits_keep_comments_and_land_in_the_right_table() {
        let out = apply(
            FILE,
            &[
                edit("link[1].lease_time", json!("2h")),
                edit("link[0].pools", json!(["10.0.1.100-10.0.1.150"])),
                edit("proxy.parent", json!("up.example:3128")),
                edit(
                    "link[0].reservations",
                    json!([{"mac": "02:00:00:00:00:01", "address": "10.0.1.9"}]),
                ),
            ],
        )
        .expect("applied");
        assert!(
            out.contains("# HomeSpot") && out.contains("# the radio"),
            "{out}"
        );
        let v: toml::Value = toml::from_str(&out).expect("toml");
        assert_eq!(v["link"][1]["lease_time"].as_str(), Some("2h"));
        assert_eq!(
            v["link"][0]["pools"][0].as_str(),
            Some("10.0.1.100-10.0.1.150")
        );
        assert_eq!(
            v["link"][0]["reservations"][0]["address"].as_str(),
            Some("10.0.1.9")
        );
        assert_eq!(v["proxy"]["parent"].as_str(), Some("up.example:3128"));
        let out = apply(&out, &[edit("link[1].lease_time", Value::Null)]).expect("removed");
        assert!(!out.contains("lease_time"), "{out}");
    }

    #[test]
    fn paths_interfaces_and_unknown_keys_cannot_be_edited() {
        for key in [
            "server.lease_db",
            "link[0].interface",
            "link[0].address",
            "handoff.identity",
            "admin.password_file",
            "link[0].pools[0]",
            "nothing",
            "link[x].pools",
        ] {
            let e = apply(FILE, &[edit(key, json!("x"))]).expect_err(key);
            assert_eq!(e.key, key);
        }
        let e = apply(FILE, &[edit("link[5].pools", json!(["x"]))]).expect_err("no such link");
        assert!(e.reason.contains("no link[5]"), "{}", e.reason);
    }
}
