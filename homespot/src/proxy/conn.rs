//! One client connection: hyper serves it one request at a time, and between requests the
//! connection is parked as a bare socket.
//!
//! hyper keeps about 16 KiB of buffers per connection for as long as it serves it, idle or
//! not. A home router may hold thousands of idle browser connections, so once a keep-alive
//! connection has been quiet for a second we end the hyper connection gracefully without
//! closing the socket (`poll_without_shutdown` and `into_parts`), keep any bytes it had read
//! ahead, and wait for the socket to become readable before making a new hyper connection. A
//! new connection likewise gets hyper state only when its first bytes arrive. CONNECT is handled the same way: once the
//! 200 is sent, the socket and the read-ahead bytes become one end of the tunnel.

use portable_atomic::AtomicU64;
use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use super::reply::{Body, BoxError};
use super::State;

/// How often an open connection is checked for idleness. A keep-alive connection with no
/// request begun or finished for a whole period is parked: busy connections keep their hyper
/// state (no cost per request), idle ones give their buffers back within one to two periods.
const PARK_CHECK: Duration = Duration::from_secs(1);

/// What a request's handling tells the connection loop.
#[derive(Default)]
pub struct Signal {
    /// The client wants the connection kept after the last response.
    park: AtomicBool,
    /// Requests begun and finished on the current hyper connection.
    begun: AtomicU64,
    /// Responses the proxy handed to hyper.
    responded: AtomicU64,
    finished: AtomicU64,
    /// A CONNECT was answered 200: the upstream end of the tunnel.
    tunnel: Mutex<Option<TcpStream>>,
}

impl Signal {
    /// Counts a request as begun (call before handling it).
    pub fn begin(&self) {
        self.begun.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response as handed to hyper (call when returning it).
    pub fn responded(&self) {
        self.responded.fetch_add(1, Ordering::Relaxed);
    }

    /// Responses handed to hyper on this connection.
    pub(super) fn responses(&self) -> u64 {
        self.responded.load(Ordering::Relaxed)
    }

    /// (requests begun, finished): equal when idle; unchanged between two checks when quiet.
    pub(super) fn activity(&self) -> (u64, u64) {
        (
            self.begun.load(Ordering::Relaxed),
            self.finished.load(Ordering::Relaxed),
        )
    }

    /// Marks the connection for parking once the response body has been sent.
    pub fn park_after(self: &Arc<Self>, resp: Response<Body>) -> Response<Body> {
        self.park.store(true, Ordering::Relaxed);
        let sig = self.clone();
        resp.map(|b| {
            http_body_util::BodyExt::boxed(OnDrop {
                inner: b,
                sig: Some(sig),
            })
        })
    }

    /// Hands the upstream end of a tunnel to the connection loop.
    pub fn tunnel(&self, upstream: TcpStream) {
        if let Ok(mut t) = self.tunnel.lock() {
            *t = Some(upstream);
        }
    }
}

/// Serves `stream` until the client leaves, an error, or a tunnel ends. `hold` is kept for
/// the whole life of the connection (its slot in the connection limits).
pub async fn serve<H: Send + Sync + 'static>(
    stream: TcpStream,
    pages_only: bool,
    state: Arc<State>,
    hold: Arc<H>,
) {
    let local = match stream.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => *a.ip(),
        _ => std::net::Ipv4Addr::UNSPECIFIED,
    };
    // The connection's pacing after its client's moves (see `crate::moves`); the socket lives
    // as long as this task, tunnel included.
    // Boxed once: its timer and receiver are not carried in every connection's future.
    let mut follow = crate::moves::Follower::new(
        match stream.peer_addr() {
            Ok(std::net::SocketAddr::V4(a)) => state.moves.register(*a.ip()),
            _ => Arc::default(),
        },
        std::os::fd::AsRawFd::as_raw_fd(&stream),
    );
    let mut follow = Box::pin(async move { follow.run().await });
    let mut stream = stream;
    let mut pre = Bytes::new();
    loop {
        if pre.is_empty() {
            // Parked: no HTTP state, just the socket. Idle for longer than the header timeout
            // ends the connection, as hyper's own timer would have.
            match tokio::time::timeout(state.cfg.header_timeout, stream.readable()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
        let sig = Arc::new(Signal::default());
        let (st, s2) = (state.clone(), sig.clone());
        let svc = service_fn(move |req: Request<Incoming>| {
            let (st, sig) = (st.clone(), s2.clone());
            let req = super::detach::request(req);
            Box::pin(async move {
                Ok::<_, std::convert::Infallible>(
                    super::handle(&st, req, local, pages_only, &sig).await,
                )
            })
        });
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(state.cfg.header_timeout)
            .max_header_size(state.cfg.max_header_bytes * 2)
            .max_buf_size((state.cfg.max_header_bytes * 4).max(64 * 1024))
            .keep_alive(true);
        let io = super::own_errors::Guarded::new(
            Prefixed { pre, io: stream },
            sig.clone(),
            state.cfg.max_request_line,
            state.cfg.max_header_bytes,
        );
        let mut conn = b.serve_connection(TokioIo::new(io), svc);
        let mut ending = false;
        let mut check = tokio::time::interval_at(Instant::now() + PARK_CHECK, PARK_CHECK);
        let mut last = sig.activity();
        let res = loop {
            tokio::select! {
                r = poll_fn(|cx| conn.poll_without_shutdown(cx)) => break r,
                // The socket lives inside `conn`, which is alive here.
                _ = &mut follow => {}
                _ = check.tick(), if !ending => {
                    let now = sig.activity();
                    if now == last && now.0 == now.1 && now.0 > 0 && sig.park.load(Ordering::Relaxed) {
                        // Quiet for a whole period with nothing in flight: end hyper's
                        // connection, keep the socket.
                        state.counters.parked.fetch_add(1, Ordering::Relaxed);
                        Pin::new(&mut conn).graceful_shutdown();
                        ending = true;
                    }
                    last = now;
                }
            }
        };
        if let Err(e) = res {
            debug!(error = %e, "client connection ended");
            return;
        }
        let parts = conn.into_parts();
        let rest = parts.io.into_inner().into_inner();
        pre = join(parts.read_buf, rest.pre);
        stream = rest.io;
        let tunnel = sig.tunnel.lock().ok().and_then(|mut t| t.take());
        if let Some(mut upstream) = tunnel {
            let client = Prefixed { pre, io: stream };
            let _ = upstream.set_nodelay(true);
            // Boxed: the tunnel's state is not carried by every parked connection's future.
            let mut copy = Box::pin(super::idle::copy_until_idle(
                client,
                &mut upstream,
                state.cfg.idle_timeout,
            ));
            let copied = loop {
                tokio::select! {
                    r = &mut copy => break r,
                    _ = &mut follow => {}
                }
            };
            if copied.is_err() {
                state.counters.idle_tunnels.fetch_add(1, Ordering::Relaxed);
                debug!("tunnel closed: idle");
            }
            drop(hold);
            return;
        }
        if !sig.park.load(Ordering::Relaxed) {
            return;
        }
    }
}

fn join(a: Bytes, b: Bytes) -> Bytes {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b,
        (_, true) => a,
        _ => {
            let mut m = BytesMut::with_capacity(a.len() + b.len());
            m.extend_from_slice(&a);
            m.extend_from_slice(&b);
            m.freeze()
        }
    }
}

/// A socket with bytes already read from it in front.
struct Prefixed {
    pre: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A response body that counts as finished when hyper is done with it.
struct OnDrop {
    inner: Body,
    sig: Option<Arc<Signal>>,
}

impl HttpBody for OnDrop {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(s) = self.sig.take() {
            s.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    fn size_of_ret<A, F>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every open connection, parked or not, holds one `serve` future: keep it small (1,720
    /// bytes before issue 12; the tunnel is boxed so its state is not in every connection's).
    #[test]
    fn a_connections_future_stays_small() {
        let n = size_of_ret(
            |(s, st): (tokio::net::TcpStream, std::sync::Arc<super::State>)| {
                super::serve::<()>(s, false, st, std::sync::Arc::new(()))
            },
        );
        eprintln!("serve future: {n} bytes");
        assert!(n <= 1800, "{n} bytes");
    }
}
