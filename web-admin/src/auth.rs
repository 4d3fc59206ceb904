//! The session API: whether a password is set, the first password with the one-time setup
//! code, login (rate-limited per source, one password hash at a time), logout, and a change of
//! password.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand_core::{OsRng, TryRngCore};
use serde::Deserialize;
use serde_json::json;

use crate::router::{
    admit, authorised, busy, json_body, lock, refuse, retry_after, session, session_cookie,
    Backend, Panel,
};
use crate::{password, secret_file};

/// A new session: the cookie and the CSRF token the page keeps.
pub(crate) fn logged_in<B>(panel: &Panel<B>) -> Response {
    let (id, csrf) = lock(&panel.sessions).create(Instant::now(), &mut OsRng.unwrap_err());
    let mut r = Json(json!({"ok": true, "csrf": csrf})).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id));
    r
}

/// Whether a password is set (the page shows login, else setup).
pub(crate) async fn state<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    h: HeaderMap,
) -> Response {
    let set = matches!(secret_file::read(&panel.files.password), Ok(Some(_)));
    // A reloaded page gets its session's CSRF token back; other origins cannot read this
    // answer (no CORS headers).
    let csrf = session(&panel, &h).and_then(|id| {
        lock(&panel.sessions)
            .get(&id, Instant::now())
            .map(|s| s.csrf.clone())
    });
    Json(json!({"ok": true, "password_set": set, "logged_in": csrf.is_some(), "csrf": csrf}))
        .into_response()
}

#[derive(Deserialize)]
struct SetupForm {
    code: String,
    password: String,
}

/// The first password, with the setup code; only while none is set.
pub(crate) async fn setup<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = admit(&panel, &h, from.ip()) {
        return refused;
    }
    let form: SetupForm = match json_body(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
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

pub(crate) fn too_many(wait: std::time::Duration) -> Response {
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

pub(crate) async fn login<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let ip: IpAddr = from.ip();
    if let Some(refused) = admit(&panel, &h, ip) {
        return refused;
    }
    let form: LoginForm = match json_body(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
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

pub(crate) async fn logout<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    h: HeaderMap,
) -> Response {
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

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
}

/// A new password, with the current one (rate-limited as a login); every other session ends.
pub(crate) async fn password<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let id = match authorised(&panel, &h) {
        Ok(id) => id,
        Err((status, reason)) => return refuse(status, reason),
    };
    if let Some(refused) = admit(&panel, &h, from.ip()) {
        return refused;
    }
    let form: PasswordForm = match json_body(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(e) = password::acceptable(&form.new) {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string());
    }
    let stored = match secret_file::read(&panel.files.password) {
        Ok(Some(s)) => s,
        Ok(None) => return refuse(StatusCode::CONFLICT, "no password is set"),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let Ok(_permit) = panel.hashing.try_acquire() else {
        return busy();
    };
    let (current, new) = (form.current, form.new);
    let hashed = tokio::task::spawn_blocking(move || {
        if !password::verify(&stored, &current)? {
            return Ok(None);
        }
        password::hash(&new, &mut OsRng.unwrap_err()).map(Some)
    })
    .await;
    let hashed = match hashed {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => {
            lock(&panel.limit).failed(from.ip(), Instant::now());
            return refuse(StatusCode::UNAUTHORIZED, "the current password is wrong");
        }
        Ok(Err(e)) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Err(_) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "hashing failed"),
    };
    if let Err(e) = secret_file::write_private(&panel.files.password, &hashed) {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    // Sessions opened with the old password end; this one stays.
    let mut sessions = lock(&panel.sessions);
    let keep = sessions.get(&id, Instant::now()).cloned();
    sessions.clear();
    if let Some(s) = keep {
        sessions.restore(id, s);
    }
    Json(json!({"ok": true})).into_response()
}
