//! The string `FindProxyForURL` returns: `PROXY a:p; PROXY b:p; DIRECT`, tried in order.

/// One way to reach a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Connect to the origin.
    Direct,
    /// Through an HTTP proxy at `host:port` (`PROXY` or `HTTP`).
    Proxy(String, u16),
}

/// Parses the PAC answer; entries we cannot use (SOCKS, HTTPS, garbage) are skipped. An
/// answer with nothing usable means DIRECT, as browsers do.
pub fn parse_choices(s: &str) -> Vec<Choice> {
    let mut out = Vec::new();
    for part in s.split(';') {
        let mut w = part.split_whitespace();
        match (w.next().map(|k| k.to_ascii_uppercase()), w.next()) {
            (Some(k), None) if k == "DIRECT" => out.push(Choice::Direct),
            (Some(k), Some(addr)) if k == "PROXY" || k == "HTTP" => {
                if let Some((h, p)) = addr.rsplit_once(':') {
                    if let Ok(p) = p.parse::<u16>() {
                        if !h.is_empty() && p != 0 {
                            out.push(Choice::Proxy(h.to_string(), p));
                        }
                    }
                } else if !addr.is_empty() {
                    out.push(Choice::Proxy(addr.to_string(), 80));
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(Choice::Direct);
    }
    out
}
