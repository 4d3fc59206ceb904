//! Changes: the settings as the config file has them, and settings edits, reservations and
//! forgotten leases, each behind a session, the same-origin check and the CSRF token, and
//! each made by the backend through the config file and the reload path. A refused change
//! answers 422 with the key and the reason, as the config file's validation says them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::router::{authorised, json_body, refuse, session, Backend, Change, Edit, Panel};

pub(crate) async fn settings<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    h: HeaderMap,
) -> Response {
    if session(&panel, &h).is_none() {
        return refuse(StatusCode::UNAUTHORIZED, "log in first");
    }
    Json(json!({"ok": true, "settings": panel.backend.settings()})).into_response()
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    edits: Vec<Edit>,
}

/// At most this many edits in one change (the settings page has a few dozen fields).
const MAX_EDITS: usize = 64;

pub(crate) async fn apply<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let form: SettingsForm = match checked(&panel, &h, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if form.edits.len() > MAX_EDITS {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "too many edits at once");
    }
    make(&panel, &h, Change::Settings { edits: form.edits }).await
}

pub(crate) async fn reserve<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let change: ReserveForm = match checked(&panel, &h, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    make(
        &panel,
        &h,
        Change::Reserve {
            mac: change.mac,
            address: change.address,
        },
    )
    .await
}

#[derive(Deserialize)]
pub(crate) struct ReserveForm {
    mac: String,
    address: std::net::Ipv4Addr,
}

#[derive(Deserialize)]
pub(crate) struct ForgetForm {
    address: std::net::Ipv4Addr,
}

pub(crate) async fn forget<B: Backend>(
    State(panel): State<Arc<Panel<B>>>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let f: ForgetForm = match checked(&panel, &h, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    make(&panel, &h, Change::Forget { address: f.address }).await
}

/// The session, origin and CSRF checks first (a cross-origin form post is refused whatever
/// its body), then the body as JSON.
// The refusal is the answer itself, made once per bad request.
#[allow(clippy::result_large_err)]
fn checked<B, T: serde::de::DeserializeOwned>(
    panel: &Panel<B>,
    h: &HeaderMap,
    body: &[u8],
) -> Result<T, Response> {
    authorised(panel, h).map_err(|(status, reason)| refuse(status, reason))?;
    json_body(body)
}

async fn make<B: Backend>(panel: &Panel<B>, h: &HeaderMap, change: Change) -> Response {
    if let Err((status, reason)) = authorised(panel, h) {
        return refuse(status, reason);
    }
    match panel.backend.change(change).await {
        Ok(a) => {
            Json(json!({"ok": true, "applied": a.applied, "restart": a.restart})).into_response()
        }
        Err(r) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"ok": false, "key": r.key, "error": r.reason})),
        )
            .into_response(),
    }
}
