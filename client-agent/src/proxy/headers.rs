//! Hop-by-hop headers (RFC 9110 section 7.6.1): what the agent's proxy takes out of every
//! request and response it relays.

use http::header::{self, HeaderMap, HeaderName};
use smallvec::SmallVec;

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers, including those `Connection` names (in any case). It runs for
/// every request and response: one pass over the names present, compared in place, and no
/// allocation unless more than four go.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let doomed: SmallVec<[HeaderName; 4]> = {
        let listed: SmallVec<[&str; 4]> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        h.keys()
            .filter(|k| {
                HOP_BY_HOP.contains(k) || listed.iter().any(|t| t.eq_ignore_ascii_case(k.as_str()))
            })
            .cloned()
            .collect()
    };
    for n in doomed {
        h.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_fixed_list_and_what_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive, X-A,x-b , x-c,,x-d, x-e"),
        );
        for n in [
            "keep-alive",
            "x-a",
            "x-b",
            "x-c",
            "x-d",
            "x-e",
            "te",
            "x-kept",
        ] {
            h.insert(n, HeaderValue::from_static("1"));
        }
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-type", "x-kept"]);
    }
}
