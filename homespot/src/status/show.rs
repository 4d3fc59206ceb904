//! `homespotd status`: asks the running homespotd over its status socket and prints the answer
//! for people (plain text) or machines (`--json`, the socket's own JSON).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::{Event, Snapshot, Stamped};

/// Why the status could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    /// The socket could not be reached.
    #[error("cannot reach homespotd at {path}: {source}{hint}")]
    Connect {
        /// The socket's path.
        path: String,
        /// What the OS said.
        source: io::Error,
        /// A hint for the usual causes.
        hint: &'static str,
    },
    /// Reading or writing failed.
    #[error("status socket: {0}")]
    Io(#[from] io::Error),
    /// The answer did not parse.
    #[error("unexpected answer from homespotd: {0}")]
    Parse(#[from] serde_json::Error),
}

fn connect(path: &Path) -> Result<UnixStream, ShowError> {
    UnixStream::connect(path).map_err(|source| {
        let hint = match source.kind() {
            io::ErrorKind::PermissionDenied => " (the status socket is root's only: run as root)",
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                " (is homespotd running with this config? its log says where the socket is)"
            }
            _ => "",
        };
        ShowError::Connect {
            path: path.display().to_string(),
            source,
            hint,
        }
    })
}

/// Sends one request line (`pair`) and returns the JSON answer.
pub fn request(path: &Path, what: &str) -> Result<serde_json::Value, ShowError> {
    let mut s = connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{what}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(serde_json::from_str(&line)?)
}

/// Prints the status once.
pub fn status(path: &Path, json: bool, out: &mut impl Write) -> Result<(), ShowError> {
    let mut s = connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"status\n")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    if json {
        out.write_all(line.as_bytes())?;
        return Ok(());
    }
    let snap: Snapshot = serde_json::from_str(&line)?;
    out.write_all(render(&snap).as_bytes())?;
    Ok(())
}

/// Prints events as they happen, until homespotd stops or the output is closed.
pub fn events(path: &Path, json: bool, out: &mut impl Write) -> Result<(), ShowError> {
    let mut s = connect(path)?;
    s.write_all(b"events\n")?;
    for line in BufReader::new(s).lines() {
        let line = line?;
        if json {
            writeln!(out, "{line}")?;
        } else {
            match serde_json::from_str::<Stamped>(&line) {
                Ok(e) => writeln!(out, "{}  {}", clock(e.at_ms), describe(&e.event))?,
                Err(_) => writeln!(out, "{line}")?,
            }
        }
        out.flush()?;
    }
    Ok(())
}

/// One event in words.
pub fn describe(e: &Event) -> String {
    match e {
        Event::Lease {
            link,
            address,
            mac,
            hostname,
        } => format!(
            "lease      {address} on {link} to {}{}",
            hostname.as_deref().unwrap_or("(no name)"),
            mac.as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
        Event::Released { link, address } => format!("released   {address} on {link}"),
        Event::Associated { global } => format!("associated {global} (P-Handoff handshake done)"),
        Event::Switch {
            global,
            from,
            to,
            via,
            why,
        } => match from {
            Some(f) => format!(
                "switch     {global} from {f} to {to} (via {via}; {})",
                why.as_deref().unwrap_or("the laptop moved")
            ),
            None => format!("switch     {global} onto {to} (via {via})"),
        },
        Event::Left { global } => format!("left       {global}"),
        Event::PoolExhausted { link } => {
            format!("exhausted  the pool of {link} has no free address")
        }
        Event::LinkDown { link } => {
            format!("link down  {link}: its interface is gone; waiting for it")
        }
        Event::LinkUp { link } => format!("link up    {link}: serving"),
        Event::Reloaded { changes } => format!("reloaded   {}", changes.join("; ")),
        Event::ReloadRefused { reason } => format!("reload refused, old config kept: {reason}"),
    }
}

/// The status for people.
pub fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    let up = Duration::from_secs(s.now_ms.saturating_sub(s.started_ms) / 1000);
    o += &format!(
        "homespotd {} up {}, config {}\n",
        s.version,
        humantime::format_duration(up),
        s.config
    );
    if let Some(c) = &s.proxy_congestion {
        o += &format!("proxy: client connections use TCP congestion control {c}\n");
    }
    o += "\nLinks\n";
    for l in &s.links {
        o += &format!(
            "  {:<10} {:<9} {:<10} {:<16} {:<8} pool {}/{} used{}\n",
            l.name,
            l.kind,
            l.interface,
            l.address,
            if l.present { "up" } else { "MISSING" },
            l.pool_used,
            l.pool_size,
            if l.exhausted > 0 {
                format!(", ran out {} times", l.exhausted)
            } else {
                String::new()
            }
        );
    }
    o += &format!("\nDevices ({})\n", s.devices.len());
    if s.devices.is_empty() {
        o += "  (none yet)\n";
    }
    for d in &s.devices {
        o += &format!(
            "  {:<20} {:<17} radio {}\n",
            d.hostname.as_deref().unwrap_or("(no name)"),
            d.mac.as_deref().unwrap_or("-"),
            d.radio.as_deref().unwrap_or("-")
        );
        for l in &d.leases {
            let left = l.expires.saturating_sub(s.now_ms / 1000);
            o += &format!(
                "      {:<10} {:<15} {}{}\n",
                l.link,
                l.address,
                if l.state == "bound" {
                    format!(
                        "lease {} left",
                        humantime::format_duration(Duration::from_secs(left))
                    )
                } else {
                    "released".into()
                },
                if l.reserved { ", reserved" } else { "" }
            );
        }
        if let Some(g) = d.global {
            let last = d
                .last_switch_ms
                .map(|t| format!(", last switch {} ago", ago(s.now_ms, t)))
                .unwrap_or_default();
            o += &format!("      P-Handoff  {g}, {} switches{last}\n", d.switches);
        }
        if let Some(t) = d.last_seen_ms {
            o += &format!("      last seen  {} ago\n", ago(s.now_ms, t));
        }
    }
    o += "\nCounters\n";
    for (group, c) in &s.counters {
        let pairs: Vec<String> = c
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        o += &format!(
            "  {group:<8} {}\n",
            if pairs.is_empty() {
                "(all zero)".into()
            } else {
                pairs.join(" ")
            }
        );
    }
    o
}

fn ago(now_ms: u64, t_ms: u64) -> String {
    let secs = now_ms.saturating_sub(t_ms) / 1000;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn clock(at_ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(at_ms);
    humantime::format_rfc3339_millis(t).to_string()
}
