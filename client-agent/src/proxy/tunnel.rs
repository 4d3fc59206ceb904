//! CONNECT: at a HomeSpot through its proxy over the global addresses (the tunnel survives
//! P-Handoff); on a plain link through the PAC's proxy, or directly, bound to the link's
//! address, and closed when the path changes. Bytes are metered as they flow, so the
//! throughput rule sees an HTTPS download as it sees an HTTP one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::upstream::{connect as tcp, hops};
use super::{text, ProxyBody, Shared};

/// Opens a CONNECT through a proxy on `s`; Ok when it answers 2xx.
async fn through_proxy(s: &mut TcpStream, authority: &str) -> Result<(), String> {
    let req = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nVia: 1.1 homespot-agent\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || s.read(&mut b).await.map_err(|e| e.to_string())? == 0 {
            return Err("the proxy closed the CONNECT".into());
        }
        head.push(b[0]);
    }
    let line = String::from_utf8_lossy(&head);
    let code = line.split_whitespace().nth(1).unwrap_or("");
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(format!(
            "the proxy refused the CONNECT: {}",
            line.lines().next().unwrap_or("")
        ))
    }
}

/// Handles a CONNECT request.
pub async fn connect(req: Request<Incoming>, shared: Arc<Shared>) -> Response<ProxyBody> {
    let Some(auth) = req.uri().authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let port = auth.port_u16().unwrap_or(443);
    let mut rx = shared.path.clone();
    let up = {
        let p = rx.borrow_and_update();
        p.upstream.clone().map(|u| (p.epoch, u))
    };
    let Some((epoch, up)) = up else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no network link now");
    };
    let url = format!("https://{}/", auth.as_str());
    let hs = match hops(&up, &url, auth.host(), port).await {
        Ok(h) => h,
        Err(e) => return text(StatusCode::BAD_GATEWAY, &e.0),
    };
    let mut last = String::from("no upstream");
    let mut stream = None;
    for hop in hs {
        match tcp(hop, shared.cfg.connect_timeout).await {
            Ok(mut s) => {
                if hop.via_proxy {
                    if let Err(e) = through_proxy(&mut s, auth.as_str()).await {
                        last = e;
                        continue;
                    }
                }
                let token = hop.homespot.then(|| {
                    use std::os::fd::AsRawFd;
                    shared.pool.clamp.register(s.as_raw_fd())
                });
                stream = Some((s, token));
                break;
            }
            Err(e) => last = e.0,
        }
    }
    let Some((upstream, token)) = stream else {
        return text(StatusCode::BAD_GATEWAY, &last);
    };
    let meter = shared.meter.clone();
    let mut upstream = Metered {
        io: upstream,
        meter: meter.clone(),
    };
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let mut client = TokioIo::new(upgraded);
        // A P-Handoff keeps the epoch, so at a HomeSpot the tunnel lives on; a new path
        // (another network) ends it.
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Ok((up, down)) = r {
                    tracing::debug!(up, down, "CONNECT {auth}: tunnel closed");
                }
            }
            _ = async {
                loop {
                    if rx.changed().await.is_err() { return; }
                    let p = rx.borrow_and_update();
                    if p.epoch != epoch && p.upstream.is_some() { return; }
                }
            } => {
                tracing::info!("CONNECT {auth}: the path changed; closing the tunnel so the client reconnects");
                let _ = client.shutdown().await;
            }
        }
        drop(token);
    });
    Response::new(ProxyBody::Full(None))
}

/// The tunnel's upstream socket, counting what it carries into the meter as it goes.
struct Metered {
    io: TcpStream,
    meter: Arc<crate::path::Meter>,
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.meter.bytes(n);
        }
        r
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.meter.sent(*n);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
