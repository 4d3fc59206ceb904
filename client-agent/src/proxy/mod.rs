//! The local proxy on 127.0.0.1: applications (or a browser, through `/proxy.pac`) send it
//! their HTTP requests; it sends them on the current path and restarts them after a handoff
//! ([`restart`]). CONNECT tunnels go the same way; at a HomeSpot they survive P-Handoff, on a
//! plain link they are closed when the path changes (TLS state cannot be restarted).

pub mod clamp;
mod relay;
mod restart;
mod tunnel;
pub mod upstream;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use hop_by_hop::strip as strip_hop_by_hop;
pub use restart::Shared;

/// The proxy's response body: frames from the request's task, or a fixed text.
pub enum ProxyBody {
    /// Streamed.
    Stream(mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>),
    /// Fixed.
    Full(Option<Bytes>),
    /// Straight from the upstream connection ([`relay`]).
    Relay(Box<relay::Relay>),
}

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ProxyBody::Stream(rx) => rx.poll_recv(cx),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Relay(r) => r.poll(cx),
        }
    }
    fn is_end_stream(&self) -> bool {
        // A relayed body is polled to its end, which returns its connection to the pool.
        matches!(self, ProxyBody::Full(None))
    }
}

/// A response with a one-line reason.
pub fn text(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Full(Some(Bytes::from(format!("{reason}\n")))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The PAC file the agent serves for browsers: everything but plain host names and loopback
/// through the agent.
pub fn own_pac(listen: std::net::SocketAddr) -> String {
    format!(
        "function FindProxyForURL(url, host) {{\n  if (isPlainHostName(host) || host == \"127.0.0.1\" || host == \"localhost\") return \"DIRECT\";\n  return \"PROXY {listen}; DIRECT\";\n}}\n"
    )
}

fn restartable(req: &Request<Incoming>) -> bool {
    match *req.method() {
        Method::GET
        | Method::HEAD
        | Method::PUT
        | Method::DELETE
        | Method::OPTIONS
        | Method::TRACE => true,
        _ => req.headers().contains_key("idempotency-key"),
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.method() == Method::CONNECT {
        return Ok(tunnel::connect(req, shared).await);
    }
    if req.uri().scheme().is_none() {
        let path = req.uri().path();
        if req.method() == Method::GET && (path == "/proxy.pac" || path == "/wpad.dat") {
            let mut r = text(StatusCode::OK, &own_pac(shared.cfg.listen));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
            );
            return Ok(r);
        }
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "this is a proxy: send absolute-form requests (http://host/path), or GET /proxy.pac",
        ));
    }
    if req.uri().scheme_str() != Some("http") || req.uri().host().is_none() {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "only http:// URLs are proxied; use CONNECT for https",
        ));
    }
    let can_restart = restartable(&req);
    let (parts, body) = req.into_parts();
    let limit = shared.cfg.resend_body_limit;
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Ok(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body above the agent's resend bound ({limit} bytes; proxy.resend_body_limit)"),
            ))
        }
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &format!("request body: {e}"))),
    };
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    if !body.is_empty() || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        headers.insert(
            header::CONTENT_LENGTH,
            header::HeaderValue::from(body.len()),
        );
    }
    let job = restart::Job {
        method: parts.method,
        uri: parts.uri,
        headers,
        body,
        restartable: can_restart,
    };
    Ok(relay::answer(job, shared).await)
}

/// Serves the proxy on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        if !peer.ip().is_loopback() {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .preserve_header_case(false)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// Builds a fixed-body request for callers (tests, CLI).
pub fn full(b: impl Into<Bytes>) -> Full<Bytes> {
    Full::new(b.into())
}
