//! hyper answers a request it cannot parse (a request line or head too long, bad syntax)
//! itself, with an empty body, and closes. [`Guarded`] sits between hyper and the client's
//! socket: it notes how long the current head's first line is, and when hyper writes such a
//! response of its own it sends the proxy's instead: the status (414 for an over-long request
//! line at any length, whatever hyper chose) with a one-line reason, as every other error the
//! proxy makes. hyper's own response is told apart by when and what it is: every response the
//! proxy made has had its head written already, and the bytes are a whole bodyless 4xx head.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::Signal;
use super::reply::raw_error;

/// An I/O object for hyper that replaces hyper's own error responses.
pub struct Guarded<T> {
    inner: T,
    sig: Arc<Signal>,
    max_line: usize,
    max_head: usize,
    /// Bytes of the current head's first line so far, and whether it ended.
    line: usize,
    line_done: bool,
    /// Responses finished when the line was last reset.
    seen_finished: u64,
    /// Response heads of the proxy's own responses written so far.
    heads: u64,
    /// The proxy's error response, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> Guarded<T> {
    /// `inner`, for a hyper connection whose requests report to `sig`.
    pub fn new(inner: T, sig: Arc<Signal>, max_line: usize, max_head: usize) -> Guarded<T> {
        let seen_finished = sig.activity().1;
        let heads = sig.responses();
        Guarded {
            inner,
            sig,
            max_line,
            max_head,
            line: 0,
            line_done: false,
            seen_finished,
            heads,
            pending: None,
        }
    }

    /// The wrapped I/O object.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// No request is with the proxy: what is read now is a request head.
    fn idle(&mut self) -> bool {
        let (begun, finished) = self.sig.activity();
        if finished != self.seen_finished {
            self.seen_finished = finished;
            self.line = 0;
            self.line_done = false;
        }
        begun == finished
    }

    /// Whether `buf` is hyper's own error response: every response of the proxy's has had
    /// its head written, and `buf` is a whole bodyless 4xx head.
    fn is_hypers_own(&mut self, buf: &[u8]) -> bool {
        if !buf.starts_with(b"HTTP/1.") {
            return false;
        }
        if self.sig.responses() > self.heads {
            // The head of a response the proxy made.
            self.heads += 1;
            return false;
        }
        let lower = String::from_utf8_lossy(buf).to_ascii_lowercase();
        buf.len() < 512
            && buf.get(9) == Some(&b'4')
            && buf.ends_with(b"\r\n\r\n")
            && lower.contains("\r\ncontent-length: 0\r\n")
    }

    fn replacement(&self, hyper_status: u16) -> Vec<u8> {
        if self.line > self.max_line {
            return raw_error(
                StatusCode::URI_TOO_LONG,
                &format!("request line longer than {} bytes", self.max_line),
            );
        }
        match hyper_status {
            431 => raw_error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &format!("request head larger than {} bytes", self.max_head),
            ),
            414 => raw_error(
                StatusCode::URI_TOO_LONG,
                &format!("request line longer than {} bytes", self.max_line),
            ),
            400 => raw_error(
                StatusCode::BAD_REQUEST,
                "the request could not be parsed as HTTP/1.1",
            ),
            code => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
                raw_error(status, "the request could not be read")
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> Guarded<T> {
    /// Writes what is left of the replacement; Ready(Ok) once it is all out.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, at)) = self.pending.as_mut() {
            if *at >= bytes.len() {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => *at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.idle() && !self.line_done {
            let new = &buf.filled()[before..];
            match new.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.line += i;
                    self.line_done = true;
                }
                None => self.line += new.len(),
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.idle();
        if self.pending.is_none() && self.is_hypers_own(buf) {
            // hyper's own answer: no request of ours is in flight.
            let code = std::str::from_utf8(buf.get(9..12).unwrap_or_default())
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(400);
            let bytes = self.replacement(code);
            self.pending = Some((bytes, 0));
        }
        if self.pending.is_some() {
            // hyper's bytes are dropped; ours go out instead.
            return match self.drain(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(buf.len())),
            };
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        if self.pending.is_none() {
            self.idle();
        }
        if self.pending.is_some() || self.is_hypers_own(first) {
            if self.pending.is_none() {
                let code = std::str::from_utf8(first.get(9..12).unwrap_or_default())
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(400);
                let bytes = self.replacement(code);
                self.pending = Some((bytes, 0));
            }
            let all: usize = bufs.iter().map(|b| b.len()).sum();
            return match self.drain(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(all)),
            };
        }
        // The proxy's own responses: head and body in one write, as hyper means them.
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
