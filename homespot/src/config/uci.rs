//! OpenWrt's UCI format (`/etc/config/homespot`) as a second spelling of the config file:
//! the same keys in `config <type> ['<name>']` sections with `option` and `list` lines.
//!
//! ```text
//! config link 'wifi'
//!     option interface 'br-lan'
//!     option address '192.168.1.1/24'
//!     list pools '192.168.1.100-192.168.1.199'
//!
//! config reservation
//!     option link 'wifi'
//!     option mac '02:00:00:00:00:10'
//!     option address '192.168.1.10'
//! ```
//!
//! A UCI file is translated into the equivalent TOML, line by line, and validated by the
//! very same code ([`super::Config::parse`]): a UCI file gets the same errors as its TOML
//! equivalent, at its own line and with its UCI position (`homespot.wifi.pools`). The writer
//! ([`from_toml`]) turns a TOML document back into UCI, as `uci commit` writes it (comments
//! are not kept).

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;

/// The section types, in the order their TOML tables are written.
const TYPES: &[&str] = &["server", "proxy", "handoff", "admin", "link", "reservation"];

/// Options whose TOML value is a number, a boolean or a list.
fn kind_of(section: &str, option: &str) -> Kind {
    match (section, option) {
        (_, "worker_threads" | "rate_per_client" | "rate_per_link" | "port" | "pac_port")
        | (_, "max_connections" | "max_link_share" | "max_connections_per_client")
        | (_, "max_request_line" | "max_header_bytes" | "rto_min_ms" | "handshake_rate") => {
            Kind::Int
        }
        (_, "rate_mbps") => Kind::Float,
        (_, "wpad_always" | "enabled" | "quickack" | "block_wan_subnet") => Kind::Bool,
        (_, "pools" | "dns" | "relays" | "allow_destinations") => Kind::List(false),
        (_, "connect_ports") => Kind::List(true),
        _ => Kind::Str,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// A list; `true`: of integers.
    List(bool),
}

/// One `config` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Its type (`link`, `proxy`, ...).
    pub ty: String,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The line of its `config` keyword (1-based).
    pub line: usize,
    /// Its options and lists in file order: (name, values, line, is a list).
    pub options: Vec<UciOption>,
}

/// One `option` or the values of one `list` name.
#[derive(Debug, Clone, PartialEq)]
pub struct UciOption {
    /// The option's name.
    pub name: String,
    /// Its value(s).
    pub values: Vec<String>,
    /// The line of its (first) value.
    pub line: usize,
    /// Written with `list`.
    pub list: bool,
}

/// Whether `text` is UCI rather than TOML: its first statement is a `config` line.
pub fn looks_like_uci(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l == "config" || l.starts_with("config ") || l.starts_with("config\t"))
}

/// The words of a UCI line: bare, 'single' or "double" quoted (with `\` escapes in double
/// quotes and outside quotes); a `#` outside quotes starts a comment.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => break,
            ' ' | '\t' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            x => {
                in_word = true;
                cur.push(x);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Parses UCI `text` into sections (syntax only).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Section>, ConfigError> {
    let err = |line: usize, key: &str, reason: String| ConfigError {
        file: path.to_path_buf(),
        line: Some(line),
        key: key.to_string(),
        reason,
    };
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let w = words(raw).map_err(|r| err(n, "(syntax)", r))?;
        let Some(first) = w.first() else { continue };
        match (first.as_str(), w.len()) {
            ("package", _) => {}
            ("config", 2 | 3) => sections.push(Section {
                ty: w[1].clone(),
                name: w.get(2).cloned(),
                line: n,
                options: Vec::new(),
            }),
            ("option" | "list", 3) => {
                let Some(s) = sections.last_mut() else {
                    return Err(err(
                        n,
                        "(syntax)",
                        format!("`{first}` before any `config` section"),
                    ));
                };
                let (name, value, list) = (w[1].clone(), w[2].clone(), first == "list");
                match s.options.iter_mut().find(|o| o.name == name) {
                    Some(o) if list && o.list => o.values.push(value),
                    Some(o) => {
                        return Err(err(
                            n,
                            &name,
                            format!("set twice (also at line {})", o.line),
                        ))
                    }
                    None => s.options.push(UciOption {
                        name,
                        values: vec![value],
                        line: n,
                        list,
                    }),
                }
            }
            _ => {
                return Err(err(
                    n,
                    "(syntax)",
                    format!(
                        "expected `config TYPE ['NAME']`, `option NAME 'VALUE'` or `list NAME 'VALUE'`, found {:?}",
                        raw.trim()
                    ),
                ))
            }
        }
    }
    Ok(sections)
}

/// The TOML equivalent of UCI `sections`, with the UCI line of each TOML line, and the UCI
/// name of each TOML table (`link[1]` -> `wifi` or `@link[1]`).
pub struct Translated {
    /// The TOML text.
    pub toml: String,
    /// For TOML line i (0-based), the UCI line.
    pub lines: Vec<usize>,
    /// TOML table path (`link[0]`, `proxy`) -> UCI section (`wifi`, `@proxy[0]`).
    pub names: BTreeMap<String, String>,
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One value as TOML: typed when it reads as its key's type, else a string (validation then
/// refuses it with the same words as for TOML).
fn scalar(kind: Kind, v: &str) -> String {
    let t = v.trim();
    match kind {
        Kind::Int | Kind::List(true) if !t.is_empty() && t.parse::<i64>().is_ok() => t.into(),
        Kind::Float if t.parse::<f64>().is_ok_and(f64::is_finite) => {
            let f: f64 = t.parse().unwrap_or(0.0);
            format!("{f:?}")
        }
        Kind::Bool => match t {
            "1" | "true" | "yes" | "on" | "enabled" => "true".into(),
            "0" | "false" | "no" | "off" | "disabled" => "false".into(),
            _ => quote(v),
        },
        _ => quote(v),
    }
}

/// Translates `sections` into TOML.
pub fn to_toml(path: &Path, sections: &[Section]) -> Result<Translated, ConfigError> {
    let mut out = Translated {
        toml: String::new(),
        lines: Vec::new(),
        names: BTreeMap::new(),
    };
    let mut push = |out: &mut Translated, text: String, line: usize| {
        out.toml.push_str(&text);
        out.toml.push('\n');
        out.lines.push(line);
    };
    let uci_name =
        |s: &Section, i: usize| s.name.clone().unwrap_or_else(|| format!("@{}[{i}]", s.ty));
    let body = |out: &mut Translated,
                s: &Section,
                skip: &[&str],
                push: &mut dyn FnMut(&mut Translated, String, usize)| {
        for o in &s.options {
            if skip.contains(&o.name.as_str()) {
                continue;
            }
            let kind = kind_of(&s.ty, &o.name);
            let text = match kind {
                Kind::List(_) => format!(
                    "{} = [{}]",
                    o.name,
                    o.values
                        .iter()
                        .map(|v| scalar(kind, v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ if o.list => format!(
                    "{} = [{}]",
                    o.name,
                    o.values
                        .iter()
                        .map(|v| quote(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => format!("{} = {}", o.name, scalar(kind, &o.values[0])),
            };
            push(out, text, o.line);
        }
    };
    // Single sections first (each type at most once), in a fixed order; unknown types are
    // written as tables of their own so that validation names them.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in sections {
        let i = *counts.get(s.ty.as_str()).unwrap_or(&0);
        counts.insert(s.ty.as_str(), i + 1);
        if s.ty == "link" || s.ty == "reservation" {
            continue;
        }
        if i > 0 {
            return Err(ConfigError {
                file: path.to_path_buf(),
                line: Some(s.line),
                key: s.ty.clone(),
                reason: format!("a second `config {}` section; there is one", s.ty),
            });
        }
        out.names.insert(s.ty.clone(), uci_name(s, 0));
        push(&mut out, format!("[{}]", bare_or_quoted(&s.ty)), s.line);
        body(&mut out, s, &[], &mut push);
    }
    let links: Vec<&Section> = sections.iter().filter(|s| s.ty == "link").collect();
    for (i, s) in links.iter().enumerate() {
        out.names.insert(format!("link[{i}]"), uci_name(s, i));
        push(&mut out, "[[link]]".into(), s.line);
        if !s.options.iter().any(|o| o.name == "name") {
            if let Some(n) = &s.name {
                push(&mut out, format!("name = {}", quote(n)), s.line);
            }
        }
        body(&mut out, s, &[], &mut push);
        let mut r = 0;
        for (j, res) in sections
            .iter()
            .filter(|x| x.ty == "reservation")
            .enumerate()
        {
            let link = res.options.iter().find(|o| o.name == "link");
            let mine = link.is_some_and(|l| {
                Some(&l.values[0]) == s.name.as_ref()
                    || s.options
                        .iter()
                        .any(|o| o.name == "name" && o.values[0] == l.values[0])
            });
            if mine {
                out.names
                    .insert(format!("link[{i}].reservations[{r}]"), uci_name(res, j));
                push(&mut out, "[[link.reservations]]".into(), res.line);
                body(&mut out, res, &["link"], &mut push);
                r += 1;
            }
        }
    }
    // A reservation for no link is an error of its own.
    for (j, res) in sections
        .iter()
        .filter(|x| x.ty == "reservation")
        .enumerate()
    {
        let link = res.options.iter().find(|o| o.name == "link");
        let known = link.is_some_and(|l| {
            links.iter().any(|s| {
                Some(&l.values[0]) == s.name.as_ref()
                    || s.options
                        .iter()
                        .any(|o| o.name == "name" && o.values[0] == l.values[0])
            })
        });
        if !known {
            return Err(ConfigError {
                file: path.to_path_buf(),
                line: Some(link.map_or(res.line, |l| l.line)),
                key: format!("homespot.{}.link", uci_name(res, j)),
                reason: match link {
                    Some(l) => format!(
                        "{:?} is not the name of a `config link` section",
                        l.values[0]
                    ),
                    None => "a reservation needs `option link` naming its link".into(),
                },
            });
        }
    }
    Ok(out)
}

fn bare_or_quoted(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        quote(s)
    }
}

/// A TOML error key (`link[0].pools[0]`) as a UCI position (`homespot.wifi.pools`).
pub fn uci_key(t: &Translated, key: &str) -> String {
    // The longest table path the key starts with.
    let best = t
        .names
        .iter()
        .filter(|(table, _)| key == table.as_str() || key.starts_with(&format!("{table}.")))
        .max_by_key(|(table, _)| table.len());
    match best {
        Some((table, name)) => {
            let rest = key[table.len()..].trim_start_matches('.');
            let option = rest.split(['.', '[']).next().unwrap_or("");
            if option.is_empty() {
                format!("homespot.{name}")
            } else {
                format!("homespot.{name}.{option}")
            }
        }
        None => format!("homespot.{key}"),
    }
}

/// Validates a UCI file by its TOML equivalent; errors carry the UCI line and position.
pub fn parse_config(path: &Path, text: &str) -> Result<super::Config, ConfigError> {
    let sections = parse(path, text)?;
    let t = to_toml(path, &sections)?;
    super::Config::parse(path, &t.toml).map_err(|mut e| {
        e.line = e
            .line
            .and_then(|l| t.lines.get(l.saturating_sub(1)).copied());
        let known = t
            .names
            .keys()
            .any(|table| e.key == *table || e.key.starts_with(&format!("{table}.")));
        e.key = match (known, e.line) {
            (true, _) | (false, None) => uci_key(&t, &e.key),
            // A key the schema does not know, or a value of the wrong type: the section and
            // option on that line.
            (false, Some(line)) => at_line(&sections, line).unwrap_or_else(|| uci_key(&t, &e.key)),
        };
        e
    })
}

/// The UCI position of what is on `line`: `homespot.SECTION.OPTION`, or the section itself.
fn at_line(sections: &[Section], line: usize) -> Option<String> {
    let (i, s) = sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.line <= line)
        .max_by_key(|(_, s)| s.line)?;
    let index = sections[..i].iter().filter(|x| x.ty == s.ty).count();
    let name = s
        .name
        .clone()
        .unwrap_or_else(|| format!("@{}[{index}]", s.ty));
    Some(match s.options.iter().find(|o| o.line == line) {
        Some(o) => format!("homespot.{name}.{}", o.name),
        None => format!("homespot.{name}"),
    })
}

/// The TOML equivalent of a UCI file (for the admin panel's settings view and edits).
pub fn toml_of(path: &Path, text: &str) -> Result<String, ConfigError> {
    Ok(to_toml(path, &parse(path, text)?)?.toml)
}

/// Writes a TOML config document as UCI, as `uci commit` would (one section per table,
/// reservations as `config reservation` sections naming their link).
pub fn from_toml(doc: &toml::Table) -> String {
    let mut out = String::new();
    let value = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => if *b { "1" } else { "0" }.into(),
        other => other.to_string(),
    };
    let uci_quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let section =
        |out: &mut String, ty: &str, name: Option<&str>, t: &toml::Table, skip: &[&str]| {
            out.push_str(&format!("\nconfig {ty}"));
            if let Some(n) = name {
                out.push_str(&format!(" {}", uci_quote(n)));
            }
            out.push('\n');
            for (k, v) in t {
                if skip.contains(&k.as_str()) {
                    continue;
                }
                match v {
                    toml::Value::Array(a) => {
                        for x in a {
                            out.push_str(&format!("\tlist {k} {}\n", uci_quote(&value(x))));
                        }
                    }
                    toml::Value::Table(_) => {}
                    _ => out.push_str(&format!("\toption {k} {}\n", uci_quote(&value(v)))),
                }
            }
        };
    for ty in TYPES
        .iter()
        .filter(|t| !matches!(**t, "link" | "reservation"))
    {
        if let Some(toml::Value::Table(t)) = doc.get(*ty) {
            section(&mut out, ty, None, t, &[]);
        }
    }
    if let Some(toml::Value::Array(links)) = doc.get("link") {
        for l in links {
            let toml::Value::Table(t) = l else { continue };
            let name = t.get("name").and_then(|v| v.as_str());
            section(&mut out, "link", name, t, &["name", "reservations"]);
            if let Some(toml::Value::Array(rs)) = t.get("reservations") {
                for r in rs {
                    let toml::Value::Table(rt) = r else { continue };
                    let mut with_link = toml::Table::new();
                    if let Some(n) = name {
                        with_link.insert("link".into(), toml::Value::String(n.into()));
                    }
                    with_link.extend(rt.clone());
                    section(&mut out, "reservation", None, &with_link, &[]);
                }
            }
        }
    }
    out.trim_start().to_string()
}

#[cfg(test)]
#[path = "uci_tests.rs"]
mod tests;
