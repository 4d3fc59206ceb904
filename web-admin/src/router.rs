//! The panel's router: the page and its assets, the session API ([`crate::auth`]), the live
//! state and its Server-Sent Events ([`crate::live`]), and the changes ([`crate::change`]).
//! Every response carries the security headers; every state-changing request passes the
//! same-origin check, and, with a session, its CSRF token.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::limit::LoginLimit;
use crate::session::Sessions;
use crate::{assets, auth, change, live, origin};

/// The session cookie's name.
pub const COOKIE: &str = "hs_session";
/// The header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the panel reads from homespotd, and the changes it asks of it.
pub trait Backend: Send + Sync + 'static {
    /// The live state (homespotd's status snapshot, as `homespotd status --json` prints it).
    fn status(&self) -> Value;
    /// The events from now on, each a JSON object (as `homespotd status --events --json`).
    fn events(&self) -> broadcast::Receiver<Value>;
    /// The settings as the config file of record has them (its TOML as JSON).
    fn settings(&self) -> Value;
    /// Makes `change` through the config file and the reload path: the keys applied, or why
    /// not (nothing changed then).
    fn change(&self, change: Change) -> impl Future<Output = Result<Applied, Refused>> + Send;
}

/// A change the panel asks for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Change {
    /// Settings: each key (a path like `link[0].pools`, as config errors name them) gets its
    /// value; `null` removes the key (its default then).
    Settings {
        /// The edits, applied together or not at all.
        edits: Vec<Edit>,
    },
    /// A reservation of `address` for `mac` on the address's link.
    Reserve {
        /// The device's MAC.
        mac: String,
        /// The address it keeps.
        address: Ipv4Addr,
    },
    /// The lease on `address` is forgotten (the address goes back to the pool).
    Forget {
        /// The leased address.
        address: Ipv4Addr,
    },
}

/// One settings edit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Edit {
    /// The key, as a path (`link[0].lease_time`, `proxy.parent`).
    pub key: String,
    /// Its new value (string, number, boolean, list), or `null` to remove it.
    pub value: Value,
}

/// What a change did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Applied at once.
    pub applied: Vec<String>,
    /// Written, but taking effect when homespotd restarts.
    pub restart: Vec<String>,
}

/// Why a change was refused, as the config file's validation says it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The key at fault (empty: the change as a whole).
    pub key: String,
    /// Why, with file and line where there is one.
    pub reason: String,
}

/// Where the panel keeps its secrets.
#[derive(Debug, Clone)]
pub struct Files {
    /// The admin password's argon2id PHC string (root-only).
    pub password: PathBuf,
    /// The one-time setup code, present while no password is set (root-only).
    pub setup_code: PathBuf,
}

/// Request bodies the panel reads at most (its forms are a few hundred bytes).
pub const MAX_BODY: usize = 16 * 1024;

/// The panel's state: the backend, its files, sessions and the login limiter.
pub struct Panel<B> {
    pub(crate) backend: B,
    pub(crate) files: Files,
    pub(crate) sessions: Mutex<Sessions>,
    pub(crate) limit: Mutex<LoginLimit>,
    /// One password hash at a time: each takes [`password::MEMORY_KIB`] KiB, and logins from
    /// many addresses at once must not add up to a router's memory.
    pub(crate) hashing: tokio::sync::Semaphore,
}

impl<B: Backend> Panel<B> {
    /// A panel over `backend` keeping its secrets in `files`.
    pub fn new(backend: B, files: Files) -> Panel<B> {
        Panel {
            backend,
            files,
            sessions: Mutex::new(Sessions::default()),
            limit: Mutex::new(LoginLimit::default()),
            hashing: tokio::sync::Semaphore::new(1),
        }
    }
}

/// Another password hash is running: come back in a second.
pub(crate) fn busy() -> Response {
    retry_after(
        StatusCode::SERVICE_UNAVAILABLE,
        "another login is being checked: try again in 1 s",
        1,
    )
}

/// A refusal that says when to come back.
pub(crate) fn retry_after(status: StatusCode, reason: &str, secs: u64) -> Response {
    let mut r = refuse(status, reason);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// What every unauthenticated form passes first: the panel's own origin, and a source that
/// is not being held back for failed logins. `Some`: the refusal.
pub(crate) fn admit<B>(panel: &Panel<B>, h: &HeaderMap, ip: IpAddr) -> Option<Response> {
    if !same_origin(h) {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
        ));
    }
    lock(&panel.limit)
        .check(ip, Instant::now())
        .err()
        .map(crate::auth::too_many)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error answer: status and a one-line reason, as JSON.
pub(crate) fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({"ok": false, "error": reason}))).into_response()
}

/// The panel's router. Mount it on the LAN side only, with
/// `into_make_service_with_connect_info::<SocketAddr>()` (login limits are per source).
pub fn router<B: Backend>(panel: Arc<Panel<B>>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/api/state", get(auth::state::<B>))
        .route("/api/setup", post(auth::setup::<B>))
        .route("/api/login", post(auth::login::<B>))
        .route("/api/logout", post(auth::logout::<B>))
        .route("/api/password", post(auth::password::<B>))
        .route("/api/status", get(live::status::<B>))
        .route("/api/live", get(live::events::<B>))
        .route(
            "/api/settings",
            get(change::settings::<B>).post(change::apply::<B>),
        )
        .route("/api/reserve", post(change::reserve::<B>))
        .route("/api/forget", post(change::forget::<B>))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(headers))
        .with_state(panel)
}

/// Security headers on every response: no script but the panel's own files, no framing, no
/// sniffing, no referrer, no caching.
async fn headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn cookie_of(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

pub(crate) fn same_origin(h: &HeaderMap) -> bool {
    let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    origin::same_origin(
        get(header::HOST),
        get(header::ORIGIN),
        h.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
    )
}

pub(crate) fn session_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session id of a request with a live session.
pub(crate) fn session<B>(panel: &Panel<B>, h: &HeaderMap) -> Option<String> {
    let id = cookie_of(h)?;
    lock(&panel.sessions).get(&id, Instant::now())?;
    Some(id)
}

/// A state-changing request with a session: same origin and the session's CSRF token. The
/// session id, or the refusal's status and reason.
pub(crate) fn authorised<B>(
    panel: &Panel<B>,
    h: &HeaderMap,
) -> Result<String, (StatusCode, &'static str)> {
    let Some(id) = session(panel, h) else {
        return Err((StatusCode::UNAUTHORIZED, "log in first"));
    };
    if !same_origin(h) {
        return Err((StatusCode::FORBIDDEN, "cross-origin request refused"));
    }
    let token = h
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !lock(&panel.sessions).csrf_ok(&id, token, Instant::now()) {
        return Err((StatusCode::FORBIDDEN, "missing or wrong CSRF token"));
    }
    Ok(id)
}

/// A request body as JSON, or 400 with serde's reason.
// The refusal is the answer itself, made once per bad request.
#[allow(clippy::result_large_err)]
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, &format!("bad request body: {e}")))
}
