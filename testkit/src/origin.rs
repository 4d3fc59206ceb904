//! An origin HTTP server for the test bed (the "Internet" in the `net` namespace).
//!
//! Routes:
//! - `GET|HEAD /bytes/N`: N bytes of [`pattern`], with Content-Length, an ETag, and single
//!   `Range` requests answered with 206 (`bytes=a-b`, `a-`, `-n`).
//! - `GET /chunked/N`: the same bytes with no length (chunked transfer coding).
//! - `POST|PUT /echo`: the request body streamed back.
//! - `POST|PUT /echo-whole`: the request body sent back once all of it has arrived. tinyproxy
//!   pulls a request body to its end before it relays any of the response, so a streamed echo
//!   of a body larger than the buffers between them stalls in it for good (as it would for any
//!   client): tests that PUT through the foreign AP's tinyproxy use this one.
//! - `GET /conns`: how many TCP connections the origin has accepted.
//! - `GET|HEAD /norange/N`: N pattern bytes, always 200 (no Range support).
//! - `GET /changing/N`: N pattern bytes with an ETag that changes on every request.
//! - `ANY /delay/MS`: waits MS milliseconds (at most 60 s), then answers 200 `ok`.
//!
//! Bodies are generated as they are sent, so a 100 MB response costs no memory.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::Netns;

/// Byte `i` of every generated body: not periodic at any small offset, so a body resumed or
/// sliced at the wrong place does not compare equal by accident.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 20) as u8
}

/// Bytes `from..to` of the pattern.
pub fn pattern(from: u64, to: u64) -> Vec<u8> {
    (from..to).map(pattern_byte).collect()
}

/// A running origin server; stops on drop.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    conns: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<Result<()>>>>,
}

impl Origin {
    /// Starts the server in `ns` on `addr`.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<Origin> {
        let conns = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let c = conns.clone();
        let thread = ns.spawn_thread(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(serve(addr, c, stop_rx, ready_tx))
        })?;
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .context("origin did not start")??;
        Ok(Origin {
            addr,
            conns,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.conns.load(Ordering::Relaxed)
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    addr: SocketAddr,
    conns: Arc<AtomicU64>,
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            let _ = ready.send(Ok(()));
            l
        }
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("origin bind {addr}: {e}")));
            return Ok(());
        }
    };
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return Ok(()),
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
        };
        conns.fetch_add(1, Ordering::Relaxed);
        let c = conns.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let c = c.clone();
                async move {
                    if let Some(ms) = req.uri().path().strip_prefix("/delay/") {
                        let ms = ms.parse::<u64>().unwrap_or(0).min(60_000);
                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                        let _ = req.into_body().collect().await;
                        return Ok::<_, std::convert::Infallible>(text(
                            StatusCode::OK,
                            "ok\n".into(),
                        ));
                    }
                    if req.uri().path() == "/echo-whole"
                        && matches!(*req.method(), Method::POST | Method::PUT)
                    {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        return Ok(Response::new(PatternBody::from_bytes(body).boxed()));
                    }
                    Ok::<_, std::convert::Infallible>(route(req, &c))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

type OriginBody = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, s: String) -> Response<OriginBody> {
    let mut r = Response::new(PatternBody::from_bytes(Bytes::from(s)).boxed());
    *r.status_mut() = status;
    r
}

fn route(req: Request<Incoming>, conns: &AtomicU64) -> Response<OriginBody> {
    let path = req.uri().path().to_string();
    let (kind, n) = match path.trim_start_matches('/').split_once('/') {
        Some((k, n)) => (k.to_string(), n.parse::<u64>().ok()),
        None => (path.trim_start_matches('/').to_string(), None),
    };
    match (req.method().clone(), kind.as_str(), n) {
        (Method::GET | Method::HEAD, "bytes", Some(n)) => {
            bytes(&req, n, format!("\"bytes-{n}\""), true)
        }
        (Method::GET | Method::HEAD, "norange", Some(n)) => {
            bytes(&req, n, format!("\"norange-{n}\""), false)
        }
        (Method::GET, "changing", Some(n)) => {
            static CHANGES: AtomicU64 = AtomicU64::new(0);
            let v = CHANGES.fetch_add(1, Ordering::Relaxed);
            bytes(&req, n, format!("\"changing-{n}-{v}\""), true)
        }
        (Method::GET, "chunked", Some(n)) => Response::new(PatternBody::new(0, n, false).boxed()),
        (Method::POST | Method::PUT, "echo", _) => {
            let len = req.headers().get(header::CONTENT_LENGTH).cloned();
            let mut r = Response::new(req.into_body().boxed());
            if let Some(l) = len {
                r.headers_mut().insert(header::CONTENT_LENGTH, l);
            }
            r
        }
        // The names of the headers that reached the origin, sorted, one a line.
        (Method::GET, "headers", _) => {
            let mut names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
            names.sort_unstable();
            text(StatusCode::OK, names.join("\n"))
        }
        (Method::GET, "conns", _) => {
            text(StatusCode::OK, conns.load(Ordering::Relaxed).to_string())
        }
        _ => text(StatusCode::NOT_FOUND, format!("no route for {path}\n")),
    }
}

fn bytes(req: &Request<Incoming>, n: u64, etag: String, ranges: bool) -> Response<OriginBody> {
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, n))
        .filter(|_| ranges);
    let if_range_ok = req
        .headers()
        .get(header::IF_RANGE)
        .map(|v| v.as_bytes() == etag.as_bytes())
        .unwrap_or(true);
    let (status, from, to) = match range {
        Some((a, b)) if if_range_ok => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        _ => (StatusCode::OK, 0, n),
    };
    let mut r = Response::new(PatternBody::new(from, to, true).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, (to - from).into());
    if ranges {
        h.insert(
            header::ACCEPT_RANGES,
            header::HeaderValue::from_static("bytes"),
        );
    }
    if let Ok(v) = header::HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = header::HeaderValue::from_str(&format!("bytes {from}-{}/{n}", to - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

/// One range of `bytes=a-b`, `a-` or `-n` within `len`, as inclusive (first, last).
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len - 1)),
    };
    (first <= last && first < len).then_some((first, last))
}

/// A body of pattern bytes `pos..end`, generated 64 KiB at a time.
struct PatternBody {
    pos: u64,
    end: u64,
    sized: bool,
    fixed: Option<Bytes>,
}

impl PatternBody {
    fn new(pos: u64, end: u64, sized: bool) -> PatternBody {
        PatternBody {
            pos,
            end,
            sized,
            fixed: None,
        }
    }

    fn from_bytes(b: Bytes) -> PatternBody {
        PatternBody {
            pos: 0,
            end: b.len() as u64,
            sized: true,
            fixed: Some(b),
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(b) = self.fixed.take() {
            self.pos = self.end;
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        let to = (self.pos + 65_536).min(self.end);
        let chunk = Bytes::from(pattern(self.pos, to));
        self.pos = to;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end && self.fixed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.sized {
            SizeHint::with_exact(self.end - self.pos)
        } else {
            SizeHint::default()
        }
    }
}

/// A TLS origin: `openssl s_server -WWW` in `ns` at `addr`, serving each `(name, len)` of
/// `files` as `len` bytes of [`pattern`] from `dir/www`, with a fresh self-signed certificate.
/// Stopped when the returned process is dropped.
pub fn tls_origin(
    ns: &Netns,
    dir: &crate::Scratch,
    addr: SocketAddr,
    files: &[(&str, u64)],
) -> Result<crate::Proc> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    for (name, len) in files {
        std::fs::write(www.join(name), pattern(0, *len))?;
    }
    let key = dir.join("key.pem").display().to_string();
    let cert = dir.join("cert.pem").display().to_string();
    let o = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=origin",
            "-days",
            "1",
            "-keyout",
            &key,
            "-out",
            &cert,
        ])
        .output()
        .context("openssl req")?;
    anyhow::ensure!(
        o.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let script = format!(
        "cd {} && exec openssl s_server -quiet -accept {addr} -key {key} -cert {cert} -WWW",
        www.display()
    );
    let p = ns.spawn(&["sh", "-c", &script], &dir.join("s_server.log"))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
    }

    #[test]
    fn pattern_is_not_short_periodic() {
        let p = pattern(0, 4096);
        for shift in [1usize, 2, 4, 8, 251, 256, 1024] {
            assert_ne!(&p[..1024], &p[shift..shift + 1024], "period {shift}");
        }
    }
}
