//! Where a key is in the file: the line of `key = ...` inside the right table, so an error
//! about `link[1].pools[0]` points at the second `[[link]]`'s `pools` line.

/// The 1-based line of `key` (a path like `link[1].pools[0]`, `server.relays` or
/// `proxy.parent`) in `text`; the table's header line when the key itself is not written.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let mut parts = key.split('.');
    let table = parts.next()?;
    let field = parts.next();
    let (name, index) = match table.split_once('[') {
        Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()?),
        None => (table, 0),
    };
    let field = field.map(|f| f.split('[').next().unwrap_or(f));
    let mut seen = 0usize;
    let mut header: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if header.is_some() {
                // Past the table: a sub-table ([[link.reservations]]) still belongs to it.
                if !t.trim_start_matches('[').starts_with(&format!("{name}.")) {
                    return header;
                }
                continue;
            }
            let h = t.trim_matches(|c| c == '[' || c == ']').trim();
            if h == name {
                if seen == index {
                    header = Some(i + 1);
                    if field.is_none() {
                        return header;
                    }
                }
                seen += 1;
            }
            continue;
        }
        if header.is_some() {
            let k = t.split('=').next().unwrap_or("").trim();
            if Some(k) == field {
                return Some(i + 1);
            }
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const TEXT: &str = "[server]\nlease_db = \"x\"\nrelays = [\"1.2.3.4\"]\n\n[[link]]\nname = \"a\"\npools = [\"1\"]\n\n[[link]]\nname = \"b\"\n[[link.reservations]]\naddress = \"q\"\npools = [\"2\"]\n[proxy]\nparent = \"p\"\n";

    #[test]
    fn keys_are_found_in_their_table() {
        assert_eq!(line_of(TEXT, "server.relays"), Some(3));
        assert_eq!(line_of(TEXT, "link[0].pools[0]"), Some(7));
        assert_eq!(line_of(TEXT, "link[1].name"), Some(10));
        assert_eq!(line_of(TEXT, "link[1].pools"), Some(13));
        assert_eq!(line_of(TEXT, "proxy.parent"), Some(15));
        assert_eq!(
            line_of(TEXT, "link[1].lease_time"),
            Some(9),
            "the table's header"
        );
        assert_eq!(line_of(TEXT, "handoff.port"), None);
    }
}
