//! The same-origin check every state-changing request passes before its CSRF token is even
//! looked at: a browser says where a request comes from (`Sec-Fetch-Site`, `Origin`), and
//! only the panel's own pages may change anything.

/// Whether a state-changing request with these headers comes from the panel's own origin
/// (`host`: the request's Host header, e.g. "10.77.1.1:8088").
///
/// `Sec-Fetch-Site`, when present, must be `same-origin`. `Origin`, when present, must be
/// `http://<host>` or `https://<host>`. A request with neither (not a browser, or a very old
/// one) is refused: the panel is used from browsers, and they send at least one.
pub fn same_origin(host: Option<&str>, origin: Option<&str>, sec_fetch_site: Option<&str>) -> bool {
    if let Some(site) = sec_fetch_site {
        if !site.eq_ignore_ascii_case("same-origin") {
            return false;
        }
    }
    match (origin, host) {
        (Some(o), Some(h)) => {
            let o = o.trim();
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(h.trim()))
        }
        (Some(_), None) => false,
        (None, _) => sec_fetch_site.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_panels_own_pages_may_change_things() {
        let h = Some("10.77.1.1:8088");
        assert!(same_origin(
            h,
            Some("http://10.77.1.1:8088"),
            Some("same-origin")
        ));
        assert!(same_origin(h, Some("http://10.77.1.1:8088"), None));
        assert!(same_origin(h, None, Some("same-origin")));
        assert!(!same_origin(h, Some("http://evil.example"), None));
        assert!(!same_origin(
            h,
            Some("http://10.77.1.1:8088"),
            Some("cross-site")
        ));
        assert!(!same_origin(
            h,
            Some("http://10.77.1.1:8088"),
            Some("same-site")
        ));
        assert!(!same_origin(h, Some("null"), None));
        assert!(!same_origin(
            h,
            Some("http://10.77.1.1:8088.evil.example"),
            None
        ));
        assert!(!same_origin(h, None, None), "no browser headers at all");
        assert!(!same_origin(None, Some("http://10.77.1.1:8088"), None));
    }
}
