//! CONNECT tunnels: allowed ports only, upstream connected (directly or through the parent
//! proxy) before the client is told 200, then bytes copied both ways until either side closes.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conn::Signal;
use super::reply::{empty, error, Body};
use super::State;

/// Handles a CONNECT request: on success the upstream socket goes to the connection loop
/// (`sig`), which joins it to the client's socket once the 200 has been sent.
pub async fn connect(
    state: &Arc<State>,
    req: Request<Incoming>,
    sig: &Arc<Signal>,
) -> Response<Body> {
    let Some(auth) = req.uri().authority().cloned() else {
        return error(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let Some(port) = auth.port_u16() else {
        return error(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    if !state.cfg.connect_ports.contains(&port) {
        return error(
            StatusCode::FORBIDDEN,
            &format!("CONNECT to port {port} is not allowed"),
        );
    }
    let host = auth.host().to_string();
    if let Some(r) = super::refused_destination(state, &host) {
        return r;
    }
    let (to_host, to_port) = match &state.cfg.parent {
        Some((ph, pp)) => (ph.as_str(), *pp),
        None => (host.as_str(), port),
    };
    let mut upstream = match open(state, to_host, to_port).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if state.cfg.parent.is_some() {
        if let Err(reason) = parent_connect(&mut upstream, auth.as_str()).await {
            return error(StatusCode::BAD_GATEWAY, &reason);
        }
    }
    sig.tunnel(upstream);
    Response::new(empty())
}

/// Resolves and connects with the configured timeout, or says why not as a response.
async fn open(state: &State, host: &str, port: u16) -> Result<TcpStream, Response<Body>> {
    let addrs = state.dns.lookup(host, port).await.map_err(|e| {
        let status = if e.forbidden {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_GATEWAY
        };
        error(status, &e.to_string())
    })?;
    let attempt = async {
        let mut last = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    };
    match tokio::time::timeout(state.cfg.connect_timeout, attempt).await {
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("connecting to {host}:{port} timed out"),
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(error(
            StatusCode::BAD_GATEWAY,
            &format!("{host}:{port} refused the connection"),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_GATEWAY,
            &format!("{host}:{port}: {e}"),
        )),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Asks the parent proxy for a tunnel to `target`; reads its answer head (bounded).
async fn parent_connect(s: &mut TcpStream, target: &str) -> Result<(), String> {
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("parent proxy: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 || s.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
                return Err("parent proxy closed the connection".to_string());
            }
            head.push(byte[0]);
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| "parent proxy did not answer".to_string())??;
    let status = String::from_utf8_lossy(&head);
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!(
            "parent proxy refused: {}",
            status.lines().next().unwrap_or("")
        ))
    }
}
