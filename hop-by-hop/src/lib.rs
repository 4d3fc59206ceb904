//! The hop-by-hop headers of HTTP/1.1 (RFC 9110 section 7.6.1), which a proxy takes out of
//! every request and response it relays: the fixed list and the names `Connection` carries.
//! Shared by homespotd's proxy and homespot-agent's local proxy, where it runs twice for each
//! request relayed.
//!
//! What it does not do: add `Via`, check `Host`, or decide anything about the connection
//! itself (keep-alive, upgrades); the proxies do that.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// The headers that are always hop-by-hop, `Proxy-Connection` (sent by old clients) included.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes from `h` the hop-by-hop headers and those its `Connection` names (in any case).
/// The fixed list in one pass over the names present (a few), compared in place; each name
/// `Connection` lists by a lookup without allocating, so a request whose 16 KiB head is one
/// long `Connection` costs one lookup per name, not one per name and header.
pub fn strip(h: &mut HeaderMap) {
    // What Connection carries, read before it goes (a reference count each, not a copy).
    let listed: SmallVec<[HeaderValue; 2]> =
        h.get_all(header::CONNECTION).iter().cloned().collect();
    let fixed: SmallVec<[HeaderName; 4]> = h
        .keys()
        .filter(|k| HOP_BY_HOP.contains(k))
        .cloned()
        .collect();
    for n in fixed {
        h.remove(n);
    }
    for v in &listed {
        let Ok(v) = v.to_str() else { continue };
        for name in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            // Not a header name: nothing by that name is here.
            h.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(h: &HeaderMap) -> Vec<&str> {
        let mut v: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn the_fixed_list_goes() {
        let mut h = HeaderMap::new();
        for n in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
        ] {
            h.insert(n, HeaderValue::from_static("x"));
        }
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic"),
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip(&mut h);
        assert_eq!(left(&h), ["content-type"]);
    }

    #[test]
    fn what_connection_names_goes_in_any_case_and_number() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive, X-A,x-b , x-c,,x-d"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("x-e, X-F"));
        for n in [
            "keep-alive",
            "x-a",
            "x-b",
            "x-c",
            "x-d",
            "x-e",
            "x-f",
            "x-kept",
        ] {
            h.insert(n, HeaderValue::from_static("1"));
        }
        strip(&mut h);
        assert_eq!(left(&h), ["x-kept"]);
    }

    #[test]
    fn nothing_to_take_leaves_the_map_as_it_was() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        let before = h.clone();
        strip(&mut h);
        assert_eq!(h, before);
    }
}
