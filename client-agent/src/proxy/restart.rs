//! One proxied request with L7 restart (DESIGN.md section 6), in a task of its own: it takes
//! over from [`super::relay`] (which makes the first attempt without a task) when there is no
//! usable path yet, more than one place to try, or when the path changes under a request or
//! the upstream fails; it sends the request again on the new path and continues where the
//! client is:
//! - response not started: the request is resent (idempotent methods, and POST/PATCH only
//!   with an `Idempotency-Key`; request bodies are kept up to a bound for that);
//! - response partly delivered: `Range: bytes=N-` with `If-Range` (strong ETag, else
//!   Last-Modified); a 206 from byte N continues the body; a 200 for the same entity is read
//!   and N bytes discarded; a different entity closes the client connection, never a spliced
//!   body, and so does a response that cannot be proven the same (no strong ETag, nor a
//!   Last-Modified with a known length); the abort always reaches the client;
//! - no usable link: the request waits (hibernation) up to a bound, then 504 with a reason.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tokio::sync::{mpsc, oneshot, watch};

use super::upstream::{hops, Hop, Pool, Sender};
use crate::config::ProxySettings;
use crate::path::{Meter, Path, Upstream};
use hop_by_hop::strip as strip_hop_by_hop;

/// A request, ready to be sent as often as needed.
pub struct Job {
    /// Method.
    pub method: Method,
    /// Absolute URI (`http://host[:port]/path`).
    pub uri: Uri,
    /// End-to-end headers.
    pub headers: HeaderMap,
    /// The whole request body (kept for resending).
    pub body: Bytes,
    /// Whether it may be sent again.
    pub restartable: bool,
}

/// What the proxy shares with every request.
pub struct Shared {
    /// The current path.
    pub path: watch::Receiver<Path>,
    /// Bytes and handoff interruptions.
    pub meter: Arc<Meter>,
    /// Upstream connections.
    pub pool: Pool,
    /// Settings.
    pub cfg: ProxySettings,
}

/// The response head, or an error response (status, one-line reason).
pub type Head = Result<(StatusCode, HeaderMap), (StatusCode, String)>;

/// Body frames to the client; an `Err` aborts the client connection.
pub type FrameTx = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

pub(super) enum Change {
    /// A new path: restart on it.
    NewPath,
    /// No link for longer than the hibernation bound.
    Gone,
}

/// Waits until the path's epoch moves past `epoch` onto a usable upstream, or no link has been
/// usable for `bound`.
pub(super) async fn changed(rx: &mut watch::Receiver<Path>, epoch: u64, bound: Duration) -> Change {
    let mut since_none: Option<tokio::time::Instant> = None;
    loop {
        {
            let p = rx.borrow_and_update();
            if p.epoch != epoch && p.upstream.is_some() {
                return Change::NewPath;
            }
            if p.upstream.is_none() {
                since_none.get_or_insert_with(tokio::time::Instant::now);
            } else {
                since_none = None;
            }
        }
        match since_none {
            Some(t) => {
                if tokio::time::timeout_at(t + bound, rx.changed())
                    .await
                    .is_err()
                {
                    return Change::Gone;
                }
            }
            None => {
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// A usable path now, or after waiting up to `bound` (hibernation).
async fn usable(rx: &mut watch::Receiver<Path>, bound: Duration) -> Option<(u64, Upstream)> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        {
            let p = rx.borrow_and_update();
            if let Some(u) = &p.upstream {
                return Some((p.epoch, u.clone()));
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
}

/// The entity we started delivering, to recognise it on resume.
pub(super) struct Entity {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    /// Full length of the entity, when known.
    total: Option<u64>,
    /// The client's own single range start, if it asked for one.
    range_start: u64,
    range_end: Option<u64>,
}

impl Entity {
    /// The entity a response head (`status`, headers `h`) starts to deliver, for a request with
    /// the client's own single range `client_range`.
    pub(super) fn from_head(
        status: StatusCode,
        h: &HeaderMap,
        client_range: Option<(u64, Option<u64>)>,
    ) -> Entity {
        let partial = status == StatusCode::PARTIAL_CONTENT;
        let (range_start, range_end) = client_range.unwrap_or((0, None));
        Entity {
            etag: h.get(header::ETAG).cloned(),
            last_modified: h.get(header::LAST_MODIFIED).cloned(),
            total: if partial {
                content_range(h).and_then(|(_, t)| t)
            } else {
                content_length(h)
            },
            range_start: if partial { range_start } else { 0 },
            range_end: if partial { range_end } else { None },
        }
    }
}

/// Where a request may go, as the relay found it on the path of `epoch`: a PAC's failover
/// list is evaluated once, not again here.
pub(super) struct Planned {
    pub epoch: u64,
    pub hops: Vec<Hop>,
}

/// Where a restartable request stands when its first attempt, streamed without a task of its
/// own ([`super::relay`]), is handed over to [`run`] after a path change or an upstream failure.
pub(super) struct Resumed {
    pub entity: Entity,
    pub delivered: u64,
    /// The epoch of the path that failed.
    pub epoch: u64,
}

pub(super) fn single_range(h: &HeaderMap) -> Option<Option<(u64, Option<u64>)>> {
    let Some(v) = h.get(header::RANGE) else {
        return Some(None);
    };
    let s = v.to_str().ok()?.strip_prefix("bytes=")?;
    if s.contains(',') {
        return None;
    }
    let (a, b) = s.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b = match b.trim() {
        "" => None,
        x => Some(x.parse().ok()?),
    };
    Some(Some((a, b)))
}

/// `uri` without its query string, for logs (queries carry tokens).
pub(crate) fn without_query(uri: &Uri) -> String {
    let mut s = String::new();
    if let Some(sc) = uri.scheme_str() {
        s += sc;
        s += "://";
    }
    if let Some(a) = uri.authority() {
        s += a.as_str();
    }
    s += uri.path();
    if uri.query().is_some() {
        s += "?…";
    }
    s
}

/// `bytes a-b/total` of a 206.
fn content_range(h: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let s = h
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes ")?;
    let (r, t) = s.split_once('/')?;
    let (a, _) = r.split_once('-')?;
    Some((a.trim().parse().ok()?, t.trim().parse().ok()))
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

enum Resume {
    /// The body continues at the right byte.
    Continue,
    /// The entity from the start: discard this many bytes first.
    Discard(u64),
    /// Another entity, or nothing usable.
    Changed(String),
}

fn resume_check(status: StatusCode, h: &HeaderMap, e: &Entity, delivered: u64) -> Resume {
    // What the client has must be provably the start of what comes now: a strong ETag, or a
    // Last-Modified date with a known length. Without that, the connection is closed (the
    // application sees an error it can retry) rather than two versions spliced.
    let strong = e
        .etag
        .as_ref()
        .is_some_and(|t| !t.as_bytes().starts_with(b"W/"));
    if !strong && (e.last_modified.is_none() || e.total.is_none()) {
        return Resume::Changed(
            "the response has no validator that proves a restart is the same entity (no strong ETag, nor Last-Modified with a length)".into(),
        );
    }
    let etag_differs = matches!((&e.etag, h.get(header::ETAG)), (Some(a), Some(b)) if a != b);
    if etag_differs {
        return Resume::Changed("the entity changed between attempts (ETag differs)".into());
    }
    match status {
        StatusCode::PARTIAL_CONTENT => match content_range(h) {
            Some((start, total)) if start == e.range_start + delivered => {
                if matches!((e.total, total), (Some(a), Some(b)) if a != b) {
                    Resume::Changed("the entity changed between attempts (length differs)".into())
                } else {
                    Resume::Continue
                }
            }
            _ => Resume::Changed("the resumed response starts at the wrong byte".into()),
        },
        StatusCode::OK if e.range_start == 0 && e.range_end.is_none() => {
            if e.etag.is_none()
                && e.last_modified.is_some()
                && h.get(header::LAST_MODIFIED) != e.last_modified.as_ref()
            {
                return Resume::Changed(
                    "the entity changed between attempts (Last-Modified differs)".into(),
                );
            }
            match (e.total, content_length(h)) {
                (Some(a), Some(b)) if a != b => {
                    Resume::Changed("the entity changed between attempts (length differs)".into())
                }
                _ => Resume::Discard(delivered),
            }
        }
        s => Resume::Changed(format!("the resumed request got {s}")),
    }
}

pub(super) fn build(
    job: &Job,
    via_proxy: bool,
    resume: Option<(&Entity, u64)>,
) -> Request<Full<Bytes>> {
    let target = if via_proxy {
        job.uri.clone()
    } else {
        job.uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"))
    };
    let mut headers = job.headers.clone();
    if let Some(a) = job.uri.authority() {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            headers.insert(header::HOST, v);
        }
    }
    headers.append(header::VIA, HeaderValue::from_static("1.1 homespot-agent"));
    if let Some((e, delivered)) = resume {
        let start = e.range_start + delivered;
        let r = match e.range_end {
            Some(end) => format!("bytes={start}-{end}"),
            None => format!("bytes={start}-"),
        };
        if let Ok(v) = HeaderValue::from_str(&r) {
            headers.insert(header::RANGE, v);
        }
        match (&e.etag, &e.last_modified) {
            (Some(t), _) if !t.as_bytes().starts_with(b"W/") => {
                headers.insert(header::IF_RANGE, t.clone());
            }
            (_, Some(lm)) => {
                headers.insert(header::IF_RANGE, lm.clone());
            }
            _ => {}
        }
    }
    let mut req = Request::new(Full::new(job.body.clone()));
    *req.method_mut() = job.method.clone();
    *req.uri_mut() = target;
    *req.headers_mut() = headers;
    req
}

/// Sends `req` on `hop` over a pooled (or new) connection of path `epoch`: the response head and
/// the connection, or why not.
pub(super) async fn send(
    shared: &Shared,
    hop: Hop,
    epoch: u64,
    req: Request<Full<Bytes>>,
) -> Result<(http::Response<hyper::body::Incoming>, Sender), String> {
    let mut s = shared
        .pool
        .get(hop, epoch, shared.cfg.connect_timeout)
        .await
        .map_err(|e| e.0)?;
    let r = s
        .send_request(req)
        .await
        .map_err(|e| format!("upstream {}: {e}", hop.to))?;
    Ok((r, s))
}

/// Runs `job` to the end: the head goes to `head` (unless it was sent already: `resumed`),
/// the body to `frames`.
pub(super) async fn run(
    job: Job,
    shared: Arc<Shared>,
    mut head: Option<oneshot::Sender<Head>>,
    frames: FrameTx,
    resumed: Option<Resumed>,
    mut planned: Option<Planned>,
) {
    let (method, uri) = (job.method.clone(), job.uri.clone());
    let fail = |head: &mut Option<oneshot::Sender<Head>>,
                frames: &FrameTx,
                status: StatusCode,
                why: String| {
        tracing::info!("{method} {}: {status}: {why}", without_query(&uri));
        let abort = match head.take() {
            Some(h) => {
                let _ = h.send(Err((status, why)));
                None
            }
            None => Some((frames.clone(), why)),
        };
        // The abort must reach the client (a clean end would look like a whole body): it
        // waits for room in the channel rather than being dropped when it is full.
        async move {
            if let Some((frames, why)) = abort {
                let _ = frames.send(Err(std::io::Error::other(why))).await;
            }
        }
    };
    let Some(client_range) = single_range(&job.headers) else {
        // Several ranges: sent once, never resumed.
        return run_once(job, shared, head, frames).await;
    };
    let host = job.uri.host().unwrap_or("").to_string();
    let port = job.uri.port_u16().unwrap_or(80);
    let bound = shared.cfg.hibernate;
    let mut rx = shared.path.clone();
    let mut entity: Option<Entity> = None;
    let mut delivered = 0u64;
    let mut failures = 0u32;
    if let Some(r) = resumed {
        entity = Some(r.entity);
        delivered = r.delivered;
        // As after a failure below: wait briefly for a path that differs from the one that failed.
        let _ = tokio::time::timeout(Duration::from_millis(200), changed(&mut rx, r.epoch, bound))
            .await;
    }
    loop {
        let Some((epoch, up)) = usable(&mut rx, bound).await else {
            return fail(
                &mut head,
                &frames,
                StatusCode::GATEWAY_TIMEOUT,
                format!("no network link for {}s", bound.as_secs()),
            )
            .await;
        };
        let hops = match planned.take().filter(|p| p.epoch == epoch) {
            Some(p) => p.hops,
            None => match hops(&up, &job.uri, &host, port).await {
                Ok(h) => h,
                Err(e) => return fail(&mut head, &frames, StatusCode::BAD_GATEWAY, e.0).await,
            },
        };
        let mut got = None;
        let mut last_err = String::from("no upstream");
        let mut moved = false;
        for hop in hops {
            let req = build(
                &job,
                hop.via_proxy,
                entity
                    .as_ref()
                    .filter(|_| delivered > 0)
                    .map(|e| (e, delivered)),
            );
            let attempt = send(&shared, hop, epoch, req);
            tokio::select! {
                r = attempt => match r {
                    Ok((r, s)) => { got = Some((hop, r, s)); break; }
                    Err(e) => {
                        tracing::info!("{} {} via {}: {e}", job.method, without_query(&job.uri), hop.to);
                        last_err = e;
                    }
                },
                c = changed(&mut rx, epoch, bound) => {
                    if let Change::Gone = c {
                        return fail(&mut head, &frames, StatusCode::GATEWAY_TIMEOUT, format!("no network link for {}s", bound.as_secs())).await;
                    }
                    moved = true;
                    break;
                }
            }
        }
        let Some((hop, resp, sender)) = got else {
            if !job.restartable {
                let why = if moved {
                    format!("the network changed during a {} without Idempotency-Key; not resent (add an Idempotency-Key header to allow it)", job.method)
                } else {
                    last_err
                };
                return fail(&mut head, &frames, StatusCode::BAD_GATEWAY, why).await;
            }
            if moved {
                tracing::info!(
                    "{} {}: the path changed before the response; resending",
                    job.method,
                    without_query(&job.uri)
                );
            } else {
                failures += 1;
                if failures > 3 {
                    return fail(&mut head, &frames, StatusCode::BAD_GATEWAY, last_err).await;
                }
                // Wait for a new path or a short while, then try again.
                let _ = tokio::time::timeout(
                    Duration::from_millis(250),
                    changed(&mut rx, epoch, bound),
                )
                .await;
            }
            continue;
        };
        let (parts, mut body) = resp.into_parts();
        let mut skip = 0u64;
        match &entity {
            None => {
                let mut h = parts.headers.clone();
                strip_hop_by_hop(&mut h);
                entity = Some(Entity::from_head(
                    parts.status,
                    &parts.headers,
                    client_range,
                ));
                if let Some(hd) = head.take() {
                    if hd.send(Ok((parts.status, h))).is_err() {
                        return;
                    }
                }
                if job.method == Method::HEAD {
                    shared.pool.put(hop, epoch, sender);
                    return;
                }
            }
            Some(e) => match resume_check(parts.status, &parts.headers, e, delivered) {
                Resume::Continue => {
                    tracing::info!(
                        "{}: resumed at byte {delivered} (206)",
                        without_query(&job.uri)
                    )
                }
                Resume::Discard(n) => {
                    tracing::info!(
                        "{}: no range support; reading and discarding {n} bytes",
                        without_query(&job.uri)
                    );
                    skip = n;
                }
                Resume::Changed(why) => {
                    return fail(&mut head, &frames, StatusCode::BAD_GATEWAY, why).await
                }
            },
        }
        // Stream the body until it ends, fails, or the path changes.
        loop {
            tokio::select! {
                f = body.frame() => match f {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(mut d) => {
                            shared.meter.bytes(d.len());
                            if skip > 0 {
                                let n = skip.min(d.len() as u64) as usize;
                                skip -= n as u64;
                                d = d.slice(n..);
                                if d.is_empty() { continue; }
                            }
                            delivered += d.len() as u64;
                            if frames.send(Ok(Frame::data(d))).await.is_err() {
                                return;
                            }
                        }
                        Err(frame) => {
                            if let Ok(t) = frame.into_trailers() {
                                let _ = frames.send(Ok(Frame::trailers(t))).await;
                            }
                        }
                    },
                    Some(Err(e)) => {
                        tracing::info!("{}: upstream failed at byte {delivered}: {e}", without_query(&job.uri));
                        break;
                    }
                    None => {
                        if skip == 0 {
                            shared.pool.put(hop, epoch, sender);
                        }
                        return;
                    }
                },
                c = changed(&mut rx, epoch, bound) => {
                    if let Change::Gone = c {
                        return fail(&mut head, &frames, StatusCode::GATEWAY_TIMEOUT, format!("no network link for {}s", bound.as_secs())).await;
                    }
                    tracing::info!("{}: path changed at byte {delivered}; restarting", without_query(&job.uri));
                    // The old connection is closed now, not after the wait below.
                    drop(body);
                    drop(sender);
                    break;
                }
            }
        }
        if !job.restartable {
            return fail(
                &mut head,
                &frames,
                StatusCode::BAD_GATEWAY,
                "the network changed during the response; not resent".into(),
            )
            .await;
        }
        // Restart: wait for a path that differs from the one that failed, briefly.
        let _ =
            tokio::time::timeout(Duration::from_millis(200), changed(&mut rx, epoch, bound)).await;
    }
}

/// A request with several ranges: sent once on the current path, no restart.
async fn run_once(
    mut job: Job,
    shared: Arc<Shared>,
    head: Option<oneshot::Sender<Head>>,
    frames: FrameTx,
) {
    job.restartable = false;
    let mut h = job.headers.clone();
    h.remove(header::RANGE);
    // Sent as is: the job keeps its Range header; only resuming is off.
    let _ = h;
    let Some(head) = head else { return };
    let mut rx = shared.path.clone();
    let Some((epoch, up)) = usable(&mut rx, shared.cfg.hibernate).await else {
        let _ = head.send(Err((StatusCode::GATEWAY_TIMEOUT, "no network link".into())));
        return;
    };
    let host = job.uri.host().unwrap_or("").to_string();
    let Ok(hs) = hops(&up, &job.uri, &host, job.uri.port_u16().unwrap_or(80)).await else {
        let _ = head.send(Err((StatusCode::BAD_GATEWAY, "no upstream".into())));
        return;
    };
    for hop in hs {
        let Ok(mut s) = shared
            .pool
            .get(hop, epoch, shared.cfg.connect_timeout)
            .await
        else {
            continue;
        };
        let Ok(resp) = s.send_request(build(&job, hop.via_proxy, None)).await else {
            continue;
        };
        let (parts, mut body) = resp.into_parts();
        let mut hd = parts.headers;
        strip_hop_by_hop(&mut hd);
        if head.send(Ok((parts.status, hd))).is_err() {
            return;
        }
        while let Some(Ok(f)) = body.frame().await {
            if let Ok(d) = f.into_data() {
                shared.meter.bytes(d.len());
                if frames.send(Ok(Frame::data(d))).await.is_err() {
                    return;
                }
            }
        }
        return;
    }
    let _ = head.send(Err((
        StatusCode::BAD_GATEWAY,
        "no upstream answered".into(),
    )));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        m
    }

    fn entity(etag: Option<&str>, total: Option<u64>) -> Entity {
        Entity {
            etag: etag.map(|e| HeaderValue::from_str(e).expect("etag")),
            last_modified: None,
            total,
            range_start: 0,
            range_end: None,
        }
    }

    #[test]
    fn resume_continues_discards_or_refuses() {
        let e = entity(Some("\"v1\""), Some(1000));
        let ok = h(&[("content-range", "bytes 400-999/1000"), ("etag", "\"v1\"")]);
        assert!(matches!(
            resume_check(StatusCode::PARTIAL_CONTENT, &ok, &e, 400),
            Resume::Continue
        ));
        let wrong_start = h(&[("content-range", "bytes 0-999/1000")]);
        assert!(matches!(
            resume_check(StatusCode::PARTIAL_CONTENT, &wrong_start, &e, 400),
            Resume::Changed(_)
        ));
        let other_len = h(&[("content-range", "bytes 400-1999/2000")]);
        assert!(matches!(
            resume_check(StatusCode::PARTIAL_CONTENT, &other_len, &e, 400),
            Resume::Changed(_)
        ));
        let same = h(&[("content-length", "1000"), ("etag", "\"v1\"")]);
        assert!(matches!(
            resume_check(StatusCode::OK, &same, &e, 400),
            Resume::Discard(400)
        ));
        let changed = h(&[("content-length", "1000"), ("etag", "\"v2\"")]);
        assert!(matches!(
            resume_check(StatusCode::OK, &changed, &e, 400),
            Resume::Changed(_)
        ));
        assert!(matches!(
            resume_check(StatusCode::NOT_FOUND, &same, &e, 400),
            Resume::Changed(_)
        ));
    }

    #[test]
    fn resend_carries_range_and_if_range() {
        let job = Job {
            method: Method::GET,
            uri: "http://o.test:8080/f?x=1".parse().expect("uri"),
            headers: h(&[("accept", "*/*")]),
            body: Bytes::new(),
            restartable: true,
        };
        let e = entity(Some("\"v1\""), Some(1000));
        let r = build(&job, false, Some((&e, 400)));
        assert_eq!(r.uri(), "/f?x=1");
        assert_eq!(r.headers()["host"], "o.test:8080");
        assert_eq!(r.headers()["range"], "bytes=400-");
        assert_eq!(r.headers()["if-range"], "\"v1\"");
        let weak = entity(Some("W/\"v1\""), None);
        let r = build(&job, true, Some((&weak, 5)));
        assert_eq!(r.uri(), "http://o.test:8080/f?x=1");
        assert!(
            r.headers().get("if-range").is_none(),
            "a weak ETag cannot validate a range"
        );
    }

    #[test]
    fn ranges_and_hop_by_hop() {
        assert_eq!(single_range(&h(&[])), Some(None));
        assert_eq!(
            single_range(&h(&[("range", "bytes=10-19")])),
            Some(Some((10, Some(19))))
        );
        assert_eq!(
            single_range(&h(&[("range", "bytes=10-")])),
            Some(Some((10, None)))
        );
        assert_eq!(single_range(&h(&[("range", "bytes=0-1,5-6")])), None);
        let mut m = h(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("accept", "a"),
        ]);
        strip_hop_by_hop(&mut m);
        assert_eq!(m.len(), 1);
        assert!(m.contains_key("accept"));
    }
}
