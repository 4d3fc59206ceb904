//! Idle limits: a body that is cut when no byte has come for a while, and a tunnel that ends
//! when neither side has sent anything for a while.

use portable_atomic::AtomicU64;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::reply::{Body, BoxError};

/// A body whose next frame must come within `limit` of the previous one. The timer is made
/// only when the body first has to wait (a small response that is ready at once costs none)
/// and is not moved on every frame: when it fires, it is set again from the last frame.
pub struct IdleBody {
    inner: Body,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    last: Instant,
    what: &'static str,
}

/// `inner`, cut with an error after `limit` without a frame. `what` names it in the error.
pub fn idle_body(inner: Body, limit: Duration, what: &'static str) -> Body {
    http_body_util::BodyExt::boxed(IdleBody {
        inner,
        limit,
        timer: None,
        last: Instant::now(),
        what,
    })
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                this.last = Instant::now();
                Poll::Ready(f)
            }
            Poll::Pending => loop {
                let (limit, last) = (this.limit, this.last);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(last + limit)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if last.elapsed() >= limit {
                    return Poll::Ready(Some(Err(format!(
                        "{} sent nothing for {}",
                        this.what,
                        humantime::format_duration(limit)
                    )
                    .into())));
                }
                // Frames came since the timer was set: wait from the last one.
                timer.as_mut().reset(last + limit);
            },
        }
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// When either side of a tunnel last sent a byte, in milliseconds since `start`.
pub struct Activity {
    start: Instant,
    last: AtomicU64,
}

impl Activity {
    /// Activity counted from now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long since the last byte.
    pub fn quiet_for(&self) -> Duration {
        let ms = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(ms.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// A stream whose reads count as activity.
pub struct Watched<S> {
    /// The stream.
    pub io: S,
    /// Where its reads are recorded.
    pub activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
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
}

/// Copies both ways until either side closes or nothing moves for `limit`.
/// Returns `Err(())` when it ended for idleness.
pub async fn copy_until_idle<A, B>(a: A, b: B, limit: Duration) -> Result<(), ()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut a = Watched {
        io: a,
        activity: activity.clone(),
    };
    let mut b = Watched {
        io: b,
        activity: activity.clone(),
    };
    let check = (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => return Ok(()),
            _ = tokio::time::sleep(check) => {
                if activity.quiet_for() >= limit {
                    return Err(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_quiet_tunnel_ends_and_a_busy_one_does_not() {
        let (a, mut a_peer) = tokio::io::duplex(64);
        let (b, _b_peer) = tokio::io::duplex(64);
        let t = tokio::spawn(copy_until_idle(a, b, Duration::from_secs(10)));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            a_peer.write_all(b"x").await.expect("write");
        }
        assert!(!t.is_finished(), "kept while bytes flow");
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(t.await.expect("join"), Err(()));
        let mut rest = Vec::new();
        let _ = a_peer.read_to_end(&mut rest).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut() {
        use http_body_util::BodyExt as _;
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
        let body = idle_body(body.boxed(), Duration::from_secs(5), "the origin");
        tokio::spawn(async move {
            let _ = tx.send_data(Bytes::from_static(b"a")).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        let err = body.collect().await.map(|_| ()).expect_err("cut");
        assert!(
            err.to_string().contains("the origin sent nothing for 5s"),
            "{err}"
        );
    }
}
