//! Fetching a PAC file over one link: the socket binds the link's address (its source rule
//! sends it out of that link), the body is bounded, the whole fetch is time-bounded.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use crate::error::AgentError;

/// The largest PAC file we accept.
pub const MAX_PAC: usize = 16 << 20;

/// GETs `url` (http only) from `src`; returns the body as text.
pub async fn get_text(url: &str, src: Ipv4Addr, timeout: Duration) -> Result<String, AgentError> {
    tokio::time::timeout(timeout, get(url, src))
        .await
        .map_err(|_| AgentError::fetch(url, format!("no answer within {timeout:?}")))?
}

async fn get(url: &str, src: Ipv4Addr) -> Result<String, AgentError> {
    let e = |r: &dyn std::fmt::Display| AgentError::fetch(url, r);
    let uri: http::Uri = url.parse().map_err(|x| e(&x))?;
    if uri.scheme_str() != Some("http") {
        return Err(e(&"only http:// PAC URLs are fetched"));
    }
    let host = uri.host().ok_or_else(|| e(&"no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let ip = match host.parse::<Ipv4Addr>() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|x| e(&x))?
            .find_map(|a| match a {
                SocketAddr::V4(v) => Some(*v.ip()),
                SocketAddr::V6(_) => None,
            })
            .ok_or_else(|| e(&format!("{host}: no IPv4 address")))?,
    };
    let sock = tokio::net::TcpSocket::new_v4().map_err(|x| e(&x))?;
    sock.bind(SocketAddr::from((src, 0))).map_err(|x| e(&x))?;
    let stream = sock
        .connect(SocketAddr::from((ip, port)))
        .await
        .map_err(|x| e(&x))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|x| e(&x))?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = http::Request::get(path)
        .header(
            http::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(host),
        )
        .header(http::header::USER_AGENT, "homespot-agent")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|x| e(&x))?;
    let resp = send.send_request(req).await.map_err(|x| e(&x))?;
    if !resp.status().is_success() {
        return Err(e(&resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_PAC)
        .collect()
        .await
        .map_err(|x| e(&x))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| e(&"not UTF-8 text"))
}
