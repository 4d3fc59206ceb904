//! The common case without a task of its own: a request's first attempt runs in the client
//! connection's task and its response body is streamed straight from the upstream connection.
//! Only when something goes wrong (no usable path now, the upstream fails, the path changes
//! before or during the response) is the request handed to [`super::restart::run`], in a task,
//! from where it stands. A small response thus costs no extra task, channel or wake-up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use super::restart::{self, changed, single_range, Change, Entity, Job, Planned, Resumed, Shared};
use super::upstream::{hops, Hop, Sender};
use super::{text, ProxyBody};

type Watch = Pin<Box<dyn Future<Output = Change> + Send>>;

/// A response body relayed from the upstream connection.
pub struct Relay {
    body: Incoming,
    /// Kept to restart the request.
    job: Option<Job>,
    entity: Option<Entity>,
    delivered: u64,
    hop: Hop,
    epoch: u64,
    sender: Option<Sender>,
    shared: Arc<Shared>,
    /// Watches the path, made the first time the upstream has nothing ready.
    watch: Option<Watch>,
    /// After a hand-over: the frames from [`restart::run`].
    rest: Option<mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>>,
}

/// Answers `job`: the first attempt here, anything harder in a task of its own.
pub async fn answer(job: Job, shared: Arc<Shared>) -> Response<ProxyBody> {
    let (job, planned) = match first(job, &shared).await {
        Ok(r) => return r,
        Err(x) => x,
    };
    let (head_tx, head_rx) = oneshot::channel();
    let (frames_tx, frames_rx) = mpsc::channel(16);
    tokio::spawn(restart::run(
        job,
        shared,
        Some(head_tx),
        frames_tx,
        None,
        planned,
    ));
    match head_rx.await {
        Ok(Ok((status, headers))) => {
            let mut r = Response::new(ProxyBody::Stream(frames_rx));
            *r.status_mut() = status;
            *r.headers_mut() = headers;
            r
        }
        Ok(Err((status, why))) => text(status, &why),
        Err(_) => text(
            StatusCode::BAD_GATEWAY,
            "the request ended without a response",
        ),
    }
}

/// One attempt on the path as it is now; the job back if it should go the long way, with
/// the places to go when the PAC gave several.
async fn first(
    job: Job,
    shared: &Arc<Shared>,
) -> Result<Response<ProxyBody>, (Job, Option<Planned>)> {
    let Some(client_range) = single_range(&job.headers) else {
        return Err((job, None));
    };
    let mut rx = shared.path.clone();
    let (epoch, up) = {
        let p = rx.borrow_and_update();
        match &p.upstream {
            Some(u) => (p.epoch, u.clone()),
            None => return Err((job, None)),
        }
    };
    let host = job.uri.host().unwrap_or("");
    let port = job.uri.port_u16().unwrap_or(80);
    // One place to go (a HomeSpot, DIRECT, one proxy); a PAC's failover list goes the long
    // way, which tries each in turn once.
    let hop = match hops(&up, &job.uri, host, port).await {
        Ok(h) if h.len() == 1 => h[0],
        Ok(hops) => return Err((job, Some(Planned { epoch, hops }))),
        Err(_) => return Err((job, None)),
    };
    let attempt = restart::send(
        shared,
        hop,
        epoch,
        restart::build(&job, hop.via_proxy, None),
    );
    let got = tokio::select! {
        r = attempt => r,
        _ = changed(&mut rx, epoch, shared.cfg.hibernate) => {
            if job.restartable {
                tracing::info!(
                    "{} {}: the path changed before the response; resending",
                    job.method,
                    super::restart::without_query(&job.uri)
                );
                return Err((job, None));
            }
            Err(format!(
                "the network changed during a {} without Idempotency-Key; not resent (add an Idempotency-Key header to allow it)",
                job.method
            ))
        }
    };
    let (resp, sender) = match got {
        Ok(x) => x,
        // It may have reached the origin: a request that may not be sent twice is not.
        Err(why) if !job.restartable => {
            tracing::info!(
                "{} {}: 502: {why}",
                job.method,
                super::restart::without_query(&job.uri)
            );
            return Ok(text(StatusCode::BAD_GATEWAY, &why));
        }
        Err(_) => return Err((job, None)),
    };
    let (parts, body) = resp.into_parts();
    let mut headers = parts.headers;
    let out = if job.method == http::Method::HEAD {
        // No body: the connection is free at once.
        shared.pool.put(hop, epoch, sender);
        ProxyBody::Full(None)
    } else {
        let entity = Entity::from_head(parts.status, &headers, client_range);
        ProxyBody::Relay(Box::new(Relay {
            body,
            job: Some(job),
            entity: Some(entity),
            delivered: 0,
            hop,
            epoch,
            sender: Some(sender),
            shared: shared.clone(),
            watch: None,
            rest: None,
        }))
    };
    hop_by_hop::strip(&mut headers);
    let mut r = Response::new(out);
    *r.status_mut() = parts.status;
    *r.headers_mut() = headers;
    Ok(r)
}

impl Relay {
    /// Hands the request to [`restart::run`] from where it stands; one that may not be sent
    /// again ends the response with an error (the client connection is closed).
    fn hand_over(&mut self) {
        self.sender = None;
        self.watch = None;
        let (Some(job), Some(entity)) = (self.job.take(), self.entity.take()) else {
            // Already handed over: nothing more comes.
            self.rest = Some(mpsc::channel(1).1);
            return;
        };
        let (tx, rx) = mpsc::channel(16);
        if !job.restartable {
            let why = "the network changed during the response; not resent";
            tracing::info!(
                "{} {}: 502: {why}",
                job.method,
                super::restart::without_query(&job.uri)
            );
            let _ = tx.try_send(Err(std::io::Error::other(why)));
            self.rest = Some(rx);
            return;
        }
        let resumed = Resumed {
            entity,
            delivered: self.delivered,
            epoch: self.epoch,
        };
        tokio::spawn(restart::run(
            job,
            self.shared.clone(),
            None,
            tx,
            Some(resumed),
            None,
        ));
        self.rest = Some(rx);
    }

    /// The response ended: the connection goes back to the pool.
    fn done(&mut self) {
        if let Some(s) = self.sender.take() {
            self.shared.pool.put(self.hop, self.epoch, s);
        }
        self.watch = None;
    }

    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(rx) = &mut self.rest {
            return rx.poll_recv(cx);
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.shared.meter.bytes(d.len());
                    self.delivered += d.len() as u64;
                }
                if self.body.is_end_stream() {
                    self.done();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.done();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(j) = &self.job {
                    tracing::info!(
                        "{}: upstream failed at byte {}: {e}",
                        super::restart::without_query(&j.uri),
                        self.delivered
                    );
                }
                self.hand_over();
                self.poll(cx)
            }
            Poll::Pending => {
                let watch = self.watch.get_or_insert_with(|| {
                    let mut rx = self.shared.path.clone();
                    let (epoch, bound) = (self.epoch, self.shared.cfg.hibernate);
                    Box::pin(async move { changed(&mut rx, epoch, bound).await })
                });
                match watch.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Change::Gone) => {
                        let why = format!(
                            "no network link for {}s",
                            self.shared.cfg.hibernate.as_secs()
                        );
                        self.watch = None;
                        self.rest = Some(mpsc::channel(1).1);
                        Poll::Ready(Some(Err(std::io::Error::other(why))))
                    }
                    Poll::Ready(Change::NewPath) => {
                        if let Some(j) = &self.job {
                            tracing::info!(
                                "{}: path changed at byte {}; restarting",
                                super::restart::without_query(&j.uri),
                                self.delivered
                            );
                        }
                        self.hand_over();
                        self.poll(cx)
                    }
                }
            }
        }
    }
}
