//! The live state: a snapshot on request, and a Server-Sent Events stream that sends the
//! snapshot once a second (the counters and graphs) and each event as it happens (the
//! timeline). The stream ends when its session does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast;

use crate::router::{lock, refuse, session, Backend, Panel};

/// How often the stream sends the snapshot.
pub const TICK: Duration = Duration::from_secs(1);

pub(crate) async fn status<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    h: HeaderMap,
) -> Response {
    if session(&panel, &h).is_none() {
        return refuse(StatusCode::UNAUTHORIZED, "log in first");
    }
    Json(panel.backend.status()).into_response()
}

pub(crate) async fn events<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    h: HeaderMap,
) -> Response {
    let Some(id) = session(&panel, &h) else {
        return refuse(StatusCode::UNAUTHORIZED, "log in first");
    };
    let rx = panel.backend.events();
    Sse::new(stream_of(panel, id, rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

struct Stream_<B> {
    panel: Arc<Panel<B>>,
    id: String,
    rx: broadcast::Receiver<serde_json::Value>,
    tick: tokio::time::Interval,
}

fn stream_of<B: Backend>(
    panel: Arc<Panel<B>>,
    id: String,
    rx: broadcast::Receiver<serde_json::Value>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let s = Stream_ {
        panel,
        id,
        rx,
        tick,
    };
    stream::unfold(s, |mut s| async move {
        loop {
            tokio::select! {
                _ = s.tick.tick() => {
                    // An open page keeps its session; a logged-out one ends the stream.
                    lock(&s.panel.sessions).get(&s.id, Instant::now())?;
                    let e = Event::default().event("status").json_data(s.panel.backend.status());
                    if let Ok(e) = e {
                        return Some((Ok(e), s));
                    }
                }
                ev = s.rx.recv() => match ev {
                    Ok(v) => {
                        if let Ok(e) = Event::default().event("event").json_data(v) {
                            return Some((Ok(e), s));
                        }
                    }
                    // A slow reader skips ahead; the snapshot has the state anyway.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    })
}
