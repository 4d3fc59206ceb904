//! Plain-HTTP forwarding (absolute-form requests): hop-by-hop headers out (RFC 9110 section
//! 7.6.1), `Via` in, bodies streamed both ways through a pooled upstream client.

use std::error::Error as _;
use std::io;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;

use super::connector::Upstream;
use super::dns::DnsError;
use super::idle::idle_body;
use super::reply::{error, Body};

/// The pooled upstream client.
pub type UpstreamClient = Client<Upstream, Body>;

const VIA_10: &str = "1.0 homespot";
const VIA_11: &str = "1.1 homespot";
const VIA_2: &str = "2 homespot";

/// Forwards `req` (absolute-form, `http://`) and returns the upstream response, or an error
/// response saying why not.
pub async fn forward(
    client: &UpstreamClient,
    req: Request<Incoming>,
    cfg: &crate::config::ProxyConfig,
) -> Response<Body> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        return error(
            StatusCode::BAD_REQUEST,
            "only http:// URLs are proxied this way; use CONNECT for https",
        );
    }
    if uri.host().is_none() {
        return error(StatusCode::BAD_REQUEST, "the request URL has no host");
    }
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        return error(StatusCode::BAD_REQUEST, "more than one Host header");
    }
    let (mut parts, body) = req.into_parts();
    let client_version = parts.version;
    hop_by_hop::strip(&mut parts.headers);
    // hyper answers `Expect: 100-continue` to the client as soon as the body is read.
    parts.headers.remove(header::EXPECT);
    add_via(&mut parts.headers, client_version);
    // The URL names the origin; a different Host would reach another site behind it
    // (RFC 9112 section 3.2.2: a proxy replaces Host with the URL's authority).
    if let Some(a) = uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, a);
    }
    parts.version = Version::HTTP_11;
    let body = idle_body(
        body.map_err(Into::into).boxed(),
        cfg.body_idle_timeout,
        "the client",
    );
    // The body's first bytes are read before the origin is contacted: a malformed body (a
    // bad chunk size) is the client's error, answered 400 without an empty connection to
    // the origin.
    let body = match first_frame(body).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the request body is malformed: {e}"),
            )
        }
    };
    let upstream = Request::from_parts(parts, body);
    let host = uri.host().unwrap_or("");
    // The response head must come within response_timeout (connecting included, which has
    // its own shorter limit).
    let limit = cfg.response_timeout + cfg.connect_timeout;
    match tokio::time::timeout(limit, client.request(upstream)).await {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            let upstream_version = parts.version;
            hop_by_hop::strip(&mut parts.headers);
            add_via(&mut parts.headers, upstream_version);
            let body = idle_body(
                body.map_err(Into::into).boxed(),
                cfg.body_idle_timeout,
                "the origin",
            );
            Response::from_parts(parts, body)
        }
        Ok(Err(e)) => upstream_error(&e, host),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "{host} sent no response within {}",
                humantime::format_duration(cfg.response_timeout)
            ),
        ),
    }
}

/// Reads `body`'s first frame (if it has any) and returns the body whole again, or the
/// error that frame was.
async fn first_frame(mut body: Body) -> Result<Body, String> {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Ok(body);
    }
    let first = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
    match first {
        None => Ok(super::reply::empty()),
        Some(Err(e)) => Err(root_cause(e.as_ref())),
        Some(Ok(frame)) => {
            let head = futures_util::stream::once(async move { Ok(frame) });
            let rest = http_body_util::BodyStream::new(body);
            Ok(http_body_util::StreamBody::new(futures_util::StreamExt::chain(head, rest)).boxed())
        }
    }
}

/// The innermost error's text.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(s) = e.source() {
        e = s;
    }
    e.to_string()
}

/// Maps a failed upstream exchange to 502 or 504 with a reason.
fn upstream_error(e: &hyper_util::client::legacy::Error, host: &str) -> Response<Body> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(d) = s.downcast_ref::<DnsError>() {
            let status = if d.forbidden {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_GATEWAY
            };
            return error(status, &d.to_string());
        }
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::TimedOut => error(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("connecting to {host} timed out"),
                ),
                io::ErrorKind::ConnectionRefused => error(
                    StatusCode::BAD_GATEWAY,
                    &format!("{host} refused the connection"),
                ),
                _ => error(StatusCode::BAD_GATEWAY, &format!("{host}: {io}")),
            };
        }
        if s.to_string().contains("timeout") {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("connecting to {host} timed out"),
            );
        }
        source = s.source();
    }
    if e.is_connect() {
        return error(
            StatusCode::BAD_GATEWAY,
            &format!("cannot connect to {host}"),
        );
    }
    error(
        StatusCode::BAD_GATEWAY,
        &format!("{host} closed the connection or sent a bad response"),
    )
}

fn add_via(h: &mut HeaderMap, version: Version) {
    let v = match version {
        Version::HTTP_10 => VIA_10,
        Version::HTTP_2 => VIA_2,
        _ => VIA_11,
    };
    h.append(header::VIA, HeaderValue::from_static(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_names_the_clients_version() {
        let mut h = HeaderMap::new();
        add_via(&mut h, Version::HTTP_10);
        assert_eq!(
            h.get(header::VIA).map(|v| v.as_bytes()),
            Some(&b"1.0 homespot"[..])
        );
    }
}
