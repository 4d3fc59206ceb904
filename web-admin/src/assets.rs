//! The page and its assets, embedded in the binary: one HTML page, one script, one style
//! sheet; no inline script (the CSP forbids it) and nothing fetched from elsewhere.

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub const INDEX: &str = include_str!("../assets/index.html");
/// Its script.
pub const SCRIPT: &str = include_str!("../assets/app.js");
/// Its style.
pub const STYLE: &str = include_str!("../assets/app.css");

pub(crate) async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub(crate) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}
