//! The panel's HTTP server: bounded, because every device on the LAN may be hostile. At most
//! [`MAX_CONNECTIONS`] connections at once and [`MAX_PER_SOURCE`] from one address (a device
//! holding idle connections cannot lock others out), and a request head must arrive within
//! [`HEAD_TIMEOUT`]. Each request carries its connection's source (`ConnectInfo`) for the
//! login limits.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Connections at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Connections at once from one source address.
pub const MAX_PER_SOURCE: usize = 32;
/// How long a request head may take to arrive (also how long an idle keep-alive connection
/// is kept).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open now, per source.
#[derive(Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

struct Slot {
    open: Arc<Mutex<Open>>,
    source: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|p| p.into_inner());
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                o.by_source.remove(&self.source);
            }
        }
    }
}

fn admit(open: &Arc<Mutex<Open>>, source: IpAddr) -> Option<Slot> {
    let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
    let mine = o.by_source.get(&source).copied().unwrap_or(0);
    if o.total >= MAX_CONNECTIONS || mine >= MAX_PER_SOURCE {
        return None;
    }
    o.total += 1;
    *o.by_source.entry(source).or_default() += 1;
    Some(Slot {
        open: open.clone(),
        source,
    })
}

/// Serves `app` on `listener` until the task is dropped. Connections over the limits are
/// closed at once.
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(c) => c,
            // Out of file descriptors and the like: wait a moment rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = admit(&open, from.ip()) else {
            drop(stream);
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(from));
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|e| match e {})) }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new()).header_read_timeout(HEAD_TIMEOUT);
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    /// A connection from `source` (a loopback address) to `to`.
    fn connect(source: [u8; 4], to: SocketAddr) -> std::net::TcpStream {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.bind(&SocketAddr::from((source, 0)).into()).expect("bind");
        s.connect(&to.into()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.into()
    }

    fn get(s: &mut std::net::TcpStream) -> String {
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_of_one_device_do_not_lock_out_another() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let at = l.local_addr().expect("addr");
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(from): ConnectInfo<SocketAddr>| async move {
                from.ip().to_string()
            }),
        );
        tokio::spawn(serve(l, app));
        tokio::task::spawn_blocking(move || {
            // One device holds its share of idle connections, and more.
            let idle: Vec<_> = (0..MAX_PER_SOURCE + 4)
                .map(|_| connect([127, 0, 0, 1], at))
                .collect();
            std::thread::sleep(Duration::from_millis(200));
            let mut extra = connect([127, 0, 0, 1], at);
            assert_eq!(get(&mut extra), "", "over its share: closed at once");
            // Another device is served, and the handler sees its address.
            let mut other = connect([127, 0, 0, 2], at);
            let answer = get(&mut other);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("127.0.0.2"), "{answer}");
            drop(idle);
        })
        .await
        .expect("client");
    }
}
