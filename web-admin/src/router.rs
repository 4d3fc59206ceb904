//! The panel's HTTP API so far: first-password setup with the one-time code, login, logout,
//! and the live status, behind a session. Every response carries the security headers; every
//! state-changing request passes the same-origin check, and, with a session, its CSRF token.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand_core::{OsRng, TryRngCore};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::limit::LoginLimit;
use crate::session::Sessions;
use crate::{origin, password, secret_file};

/// The session cookie's name.
pub const COOKIE: &str = "hs_session";
/// The header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the panel reads from homespotd.
pub trait Backend: Send + Sync + 'static {
    /// The live state (homespotd's status snapshot, as `homespotd status --json` prints it).
    fn status(&self) -> Value;
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
    backend: B,
    files: Files,
    sessions: Mutex<Sessions>,
    limit: Mutex<LoginLimit>,
    /// One password hash at a time: each takes [`password::MEMORY_KIB`] KiB, and logins from
    /// many addresses at once must not add up to a router's memory.
    hashing: tokio::sync::Semaphore,
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

    /// Holds the hashing permit (tests: a login while another hash runs).
    #[cfg(test)]
    pub(crate) fn hashing(&self) -> &tokio::sync::Semaphore {
        &self.hashing
    }
}

/// Another password hash is running: come back in a second.
fn busy() -> Response {
    retry_after(
        StatusCode::SERVICE_UNAVAILABLE,
        "another login is being checked: try again in 1 s",
        1,
    )
}

/// A refusal that says when to come back.
fn retry_after(status: StatusCode, reason: &str, secs: u64) -> Response {
    let mut r = refuse(status, reason);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// What every unauthenticated form passes first: the panel's own origin, and a source that
/// is not being held back for failed logins. `Some`: the refusal.
fn admit<B>(panel: &Panel<B>, h: &HeaderMap, ip: IpAddr) -> Option<Response> {
    if !same_origin(h) {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
        ));
    }
    lock(&panel.limit)
        .check(ip, Instant::now())
        .err()
        .map(too_many)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error answer: status and a one-line reason, as JSON.
fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({"ok": false, "error": reason}))).into_response()
}

/// The panel's router. Mount it on the LAN side only.
pub fn router<B: Backend>(panel: Arc<Panel<B>>) -> Router {
    Router::new()
        .route("/api/state", get(state::<B>))
        .route("/api/setup", post(setup::<B>))
        .route("/api/login", post(login::<B>))
        .route("/api/logout", post(logout::<B>))
        .route("/api/status", get(status::<B>))
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

fn cookie_of(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn same_origin(h: &HeaderMap) -> bool {
    let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    origin::same_origin(
        get(header::HOST),
        get(header::ORIGIN),
        h.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
    )
}

fn session_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session id of a request with a live session.
fn session<B>(panel: &Panel<B>, h: &HeaderMap) -> Option<String> {
    let id = cookie_of(h)?;
    lock(&panel.sessions).get(&id, Instant::now())?;
    Some(id)
}

/// A new session: the cookie and the CSRF token the page keeps.
fn logged_in<B>(panel: &Panel<B>) -> Response {
    let (id, csrf) = lock(&panel.sessions).create(Instant::now(), &mut OsRng.unwrap_err());
    let mut r = Json(json!({"ok": true, "csrf": csrf})).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id));
    r
}

/// Whether a password is set (the page shows login, else setup).
async fn state<B: Backend>(State(panel): State<Arc<Panel<B>>>, h: HeaderMap) -> Response {
    let set = matches!(secret_file::read(&panel.files.password), Ok(Some(_)));
    let logged_in = session(&panel, &h).is_some();
    Json(json!({"ok": true, "password_set": set, "logged_in": logged_in})).into_response()
}

#[derive(Deserialize)]
struct SetupForm {
    code: String,
    password: String,
}

/// The first password, with the setup code; only while none is set.
async fn setup<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    Json(form): Json<SetupForm>,
) -> Response {
    if let Some(refused) = admit(&panel, &h, from.ip()) {
        return refused;
    }
    match secret_file::read(&panel.files.password) {
        Ok(None) => {}
        Ok(Some(_)) => return refuse(StatusCode::CONFLICT, "a password is already set"),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    match secret_file::setup_code_ok(&panel.files.setup_code, &form.code) {
        Ok(true) => {}
        Ok(false) => {
            lock(&panel.limit).failed(from.ip(), Instant::now());
            return refuse(StatusCode::UNAUTHORIZED, "wrong setup code");
        }
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    let Ok(_permit) = panel.hashing.try_acquire() else {
        return busy();
    };
    let pw = form.password;
    let hashed =
        tokio::task::spawn_blocking(move || password::hash(&pw, &mut OsRng.unwrap_err())).await;
    let hashed = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Err(_) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "hashing failed"),
    };
    if let Err(e) = secret_file::write_private(&panel.files.password, &hashed) {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    let _ = std::fs::remove_file(&panel.files.setup_code);
    lock(&panel.limit).succeeded(from.ip());
    logged_in(&panel)
}

fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    retry_after(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("too many failed logins from this address: try again in {secs} s"),
        secs,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    password: String,
}

async fn login<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    Json(form): Json<LoginForm>,
) -> Response {
    let ip: IpAddr = from.ip();
    if let Some(refused) = admit(&panel, &h, ip) {
        return refused;
    }
    let stored = match secret_file::read(&panel.files.password) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return refuse(
                StatusCode::CONFLICT,
                "no password is set yet: set one with the setup code",
            )
        }
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    // The hash takes tens of milliseconds and 19 MiB: off the runtime's threads, one at a time.
    let Ok(_permit) = panel.hashing.try_acquire() else {
        return busy();
    };
    let ok = tokio::task::spawn_blocking(move || password::verify(&stored, &form.password)).await;
    match ok {
        Ok(Ok(true)) => {
            lock(&panel.limit).succeeded(ip);
            logged_in(&panel)
        }
        Ok(Ok(false)) => {
            lock(&panel.limit).failed(ip, Instant::now());
            refuse(StatusCode::UNAUTHORIZED, "wrong password")
        }
        Ok(Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "password check failed"),
    }
}

/// A state-changing request with a session: same origin and the session's CSRF token. The
/// session id, or the refusal's status and reason.
fn authorised<B>(panel: &Panel<B>, h: &HeaderMap) -> Result<String, (StatusCode, &'static str)> {
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

async fn logout<B: Backend>(State(panel): State<Arc<Panel<B>>>, h: HeaderMap) -> Response {
    let id = match authorised(&panel, &h) {
        Ok(id) => id,
        Err((status, reason)) => return refuse(status, reason),
    };
    lock(&panel.sessions).remove(&id);
    let mut r = Json(json!({"ok": true})).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("hs_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

async fn status<B: Backend>(State(panel): State<Arc<Panel<B>>>, h: HeaderMap) -> Response {
    if session(&panel, &h).is_none() {
        return refuse(StatusCode::UNAUTHORIZED, "log in first");
    }
    Json(panel.backend.status()).into_response()
}
