//! Upstream connections for a path: to the HomeSpot proxy from the global address, or on a
//! plain link through the PAC's choices in order (`PROXY a; PROXY b; DIRECT` failover), bound
//! to the link's address. Kept-alive connections are pooled per path epoch.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::pac::Choice;
use crate::path::Upstream;

/// Where one attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The address connected to.
    pub to: SocketAddr,
    /// The source address bound.
    pub from: Ipv4Addr,
    /// Through a proxy (absolute-form requests) or to the origin.
    pub via_proxy: bool,
    /// Receive buffer (bytes; 0: the kernel's default).
    pub rcvbuf: u32,
    /// To a HomeSpot proxy (over the global addresses).
    pub homespot: bool,
}

/// Why no connection could be made.
#[derive(Debug)]
pub struct ConnectError(pub String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ConnectError> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(a) = h.parse::<Ipv4Addr>() {
        return Ok(SocketAddr::from((a, port)));
    }
    tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host((h, port)))
        .await
        .map_err(|_| ConnectError(format!("DNS lookup of {h} timed out")))?
        .map_err(|e| ConnectError(format!("DNS lookup of {h} failed: {e}")))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| ConnectError(format!("{h} has no IPv4 address")))
}

/// A TCP connection from `from` to `to` within `timeout`.
pub async fn connect(hop: Hop, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let s = tokio::net::TcpSocket::new_v4().map_err(|e| ConnectError(e.to_string()))?;
    if hop.rcvbuf > 0 {
        s.set_recv_buffer_size(hop.rcvbuf)
            .map_err(|e| ConnectError(format!("SO_RCVBUF: {e}")))?;
    }
    s.bind(SocketAddr::from((hop.from, 0)))
        .map_err(|e| ConnectError(format!("bind {}: {e}", hop.from)))?;
    let stream = tokio::time::timeout(timeout, s.connect(hop.to))
        .await
        .map_err(|_| ConnectError(format!("connect to {} timed out", hop.to)))?
        .map_err(|e| ConnectError(format!("connect to {}: {e}", hop.to)))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The hops to try for `url` (host `host`, port `port`) on `up`, best first. The URL is only
/// written out for a PAC file.
pub async fn hops(
    up: &Upstream,
    url: impl std::fmt::Display,
    host: &str,
    port: u16,
) -> Result<Vec<Hop>, ConnectError> {
    match up {
        Upstream::HomeSpot {
            global,
            proxy,
            rcvbuf,
        } => Ok(vec![Hop {
            to: SocketAddr::V4(*proxy),
            from: *global,
            via_proxy: true,
            rcvbuf: *rcvbuf,
            homespot: true,
        }]),
        Upstream::Link { addr, pac } => {
            let choices = match pac {
                Some(p) => p.find(&url.to_string(), host).await.unwrap_or_else(|e| {
                    tracing::warn!("{e}; going DIRECT");
                    vec![Choice::Direct]
                }),
                None => vec![Choice::Direct],
            };
            let mut out = Vec::new();
            let mut last = None;
            for c in choices {
                let r = match &c {
                    Choice::Direct => resolve(host, port).await.map(|to| (to, false)),
                    Choice::Proxy(h, p) => resolve(h, *p).await.map(|to| (to, true)),
                };
                match r {
                    Ok((to, via_proxy)) => out.push(Hop {
                        to,
                        from: *addr,
                        via_proxy,
                        rcvbuf: 0,
                        homespot: false,
                    }),
                    Err(e) => last = Some(e),
                }
            }
            match (out.is_empty(), last) {
                (true, Some(e)) => Err(e),
                _ => Ok(out),
            }
        }
    }
}

/// A kept-alive upstream connection. Dropping it closes the connection at once: a response
/// abandoned in the middle of its body (the path changed and the request restarts elsewhere)
/// must not go on filling a socket buffer over the old radio, taking half of it from the
/// restarted request.
pub struct Sender {
    send: SendRequest<Full<Bytes>>,
    conn: tokio::task::AbortHandle,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl std::ops::Deref for Sender {
    type Target = SendRequest<Full<Bytes>>;
    fn deref(&self) -> &Self::Target {
        &self.send
    }
}

impl std::ops::DerefMut for Sender {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.send
    }
}

/// Idle upstream connections, by hop and path epoch; connections to a HomeSpot proxy are
/// tracked for window clamping.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<(Hop, u64), Vec<Sender>>>,
    /// The HomeSpot connections' window clamp.
    pub clamp: std::sync::Arc<super::clamp::Clamp>,
}

impl Pool {
    fn take(&self, hop: Hop, epoch: u64) -> Option<Sender> {
        let mut m = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.get_mut(&(hop, epoch))?;
        while let Some(s) = v.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Returns a connection after its response ended.
    pub fn put(&self, hop: Hop, epoch: u64, s: Sender) {
        if s.is_closed() {
            return;
        }
        let mut m = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(&(hop, epoch)) {
            // A new hop or path: connections of older paths are not used again.
            m.retain(|(_, e), _| *e >= epoch);
        }
        let v = m.entry((hop, epoch)).or_default();
        if v.len() < 1024 {
            v.push(s);
        }
    }

    /// A ready connection for `hop`: pooled, else new.
    pub async fn get(
        &self,
        hop: Hop,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Sender, ConnectError> {
        while let Some(mut s) = self.take(hop, epoch) {
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        let stream = connect(hop, timeout).await?;
        let token = hop.homespot.then(|| {
            use std::os::fd::AsRawFd;
            self.clamp.register(stream.as_raw_fd())
        });
        let (s, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError(format!("handshake with {}: {e}", hop.to)))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
            drop(token);
        });
        Ok(Sender {
            send: s,
            conn: task.abort_handle(),
        })
    }
}
