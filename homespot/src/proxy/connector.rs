//! The upstream connector: straight to the origin, or to the parent proxy when one is set
//! (then hyper-util sends absolute-form requests, because the connection says `proxy`).

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::dns::Dns;
use super::reply::BoxError;

/// Connects upstream; cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    http: HttpConnector<Dns>,
    parent: Option<Uri>,
}

impl Upstream {
    /// A connector using `http` for TCP, through `parent` (`http://host:port`) if given.
    pub fn new(http: HttpConnector<Dns>, parent: Option<Uri>) -> Upstream {
        Upstream { http, parent }
    }
}

/// An upstream TCP connection.
pub struct UpstreamConn {
    io: TokioIo<TcpStream>,
    proxy: bool,
}

impl tower_service::Service<Uri> for Upstream {
    type Response = UpstreamConn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamConn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let proxy = self.parent.is_some();
        let fut = self.http.call(self.parent.clone().unwrap_or(dst));
        Box::pin(async move {
            let io = fut.await?;
            Ok(UpstreamConn { io, proxy })
        })
    }
}

impl Connection for UpstreamConn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxy)
    }
}

impl hyper::rt::Read for UpstreamConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamConn {
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
