//! Copying a message head out of hyper's read buffer.
//!
//! hyper parses a request head in place: the URI and every header value are
//! slices of the connection's 8 KiB read buffer. While the head lives (for a proxy: the whole
//! upstream round trip) that buffer cannot be reused, so hyper's next read on the connection
//! (it reads ahead to notice a client that hangs up) allocates a second one. Copying the few
//! hundred bytes of a head into one small buffer of its own lets hyper reuse the first: about
//! 8 KiB less per busy connection, measured in BENCHMARKS.md.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Uri};

/// Moves the header values of `h` into one compact buffer of their own.
fn headers(h: &mut HeaderMap) {
    let total: usize = h.values().map(|v| v.len()).sum();
    if total == 0 {
        return;
    }
    let mut buf = BytesMut::with_capacity(total);
    for v in h.values() {
        buf.extend_from_slice(v.as_bytes());
    }
    let all: Bytes = buf.freeze();
    let mut at = 0;
    for v in h.values_mut() {
        let n = v.len();
        let sensitive = v.is_sensitive();
        // The bytes were a valid header value a moment ago; the copy is too.
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(all.slice(at..at + n)) {
            copy.set_sensitive(sensitive);
            *v = copy;
        }
        at += n;
    }
}

/// `req` with its URI and header values copied out of the read buffer.
pub fn request<B>(req: Request<B>) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    parts.uri = uri(&parts.uri);
    headers(&mut parts.headers);
    Request::from_parts(parts, body)
}

/// A copy of `u` that shares nothing with the buffer it was parsed from.
fn uri(u: &Uri) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = u.scheme().cloned();
    parts.authority = u.authority().and_then(|a| a.as_str().parse().ok());
    parts.path_and_query = u.path_and_query().and_then(|p| p.as_str().parse().ok());
    Uri::from_parts(parts).unwrap_or_else(|_| u.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(b: &[u8], buf: &Bytes) -> bool {
        let (lo, hi) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
        (lo..hi).contains(&(b.as_ptr() as usize))
    }

    #[test]
    fn copies_keep_every_value_and_share_nothing() {
        // One "read buffer" holding the URI and the values, as hyper would have it.
        let wire = Bytes::from_static(b"http://example.test:8080/a/b?c=d example.test:8080 x y s");
        let part = |s: &str| {
            let at = wire
                .windows(s.len())
                .position(|w| w == s.as_bytes())
                .expect("in wire");
            wire.slice(at..at + s.len())
        };
        let value = |s: &str| HeaderValue::from_maybe_shared(part(s)).expect("value");
        let mut req = Request::builder()
            .uri(Uri::from_maybe_shared(part("http://example.test:8080/a/b?c=d")).expect("uri"))
            .body(())
            .expect("request");
        let h = req.headers_mut();
        h.insert("host", value(" example.test:8080"));
        h.append("x-two", value("x"));
        h.append("x-two", value("y"));
        let mut secret = value("s");
        secret.set_sensitive(true);
        h.insert("authorization", secret);
        let before = req.clone();

        let after = request(req);
        assert_eq!(after.uri(), before.uri());
        assert_eq!(after.headers(), before.headers());
        assert!(after.headers()["authorization"].is_sensitive());
        let two: Vec<_> = after.headers().get_all("x-two").iter().collect();
        assert_eq!(two, ["x", "y"]);
        for v in after.headers().values() {
            assert!(!inside(v.as_bytes(), &wire));
        }
        let pq = after.uri().path_and_query().expect("path");
        assert!(!inside(pq.as_str().as_bytes(), &wire));
        let auth = after.uri().authority().expect("authority");
        assert!(!inside(auth.as_str().as_bytes(), &wire));
    }

    #[test]
    fn origin_and_authority_forms_survive() {
        for u in ["/wpad.dat", "example.test:443", "*", "/"] {
            let req = Request::builder().uri(u).body(()).expect("request");
            assert_eq!(request(req).uri(), u, "{u}");
        }
    }
}
