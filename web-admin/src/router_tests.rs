//! `router(fake).oneshot(..)` for every route: without a session, with one, cross-origin, CSRF
//! missing or wrong, rate-limited login, setup with the one-time code.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tower::ServiceExt;

use crate::router::{router, Applied, Backend, Change, Files, Panel, Refused, COOKIE, CSRF_HEADER};

/// A backend that keeps the changes it is asked for; a pool edit `"bad"` is refused as the
/// config file's validation would refuse it.
pub(crate) struct Fake {
    pub(crate) changes: Mutex<Vec<Change>>,
    pub(crate) events: broadcast::Sender<Value>,
}

impl Backend for Fake {
    fn status(&self) -> Value {
        json!({"links": [{"name": "wifi"}]})
    }

    fn events(&self) -> broadcast::Receiver<Value> {
        self.events.subscribe()
    }

    fn settings(&self) -> Value {
        json!({"link": [{"name": "wifi", "pools": ["10.77.1.100-10.77.1.199"]}]})
    }

    fn change(&self, change: Change) -> impl Future<Output = Result<Applied, Refused>> + Send {
        let r = match &change {
            Change::Settings { edits } => match edits.iter().find(|e| e.value == json!(["bad"])) {
                Some(e) => Err(Refused {
                    key: format!("{}[0]", e.key),
                    reason: "/etc/homespot.toml:7: link[0].pools[0]: \"bad\" is not a range".into(),
                }),
                None => Ok(Applied {
                    applied: edits.iter().map(|e| e.key.clone()).collect(),
                    restart: vec![],
                }),
            },
            _ => Ok(Applied::default()),
        };
        if r.is_ok() {
            self.changes.lock().expect("lock").push(change);
        }
        std::future::ready(r)
    }
}

pub(crate) const HOST: &str = "10.77.1.1:8088";
pub(crate) const ORIGIN: &str = "http://10.77.1.1:8088";

pub(crate) struct Bed {
    pub(crate) app: axum::Router,
    pub(crate) panel: Arc<Panel<Fake>>,
    pub(crate) files: Files,
    _dir: tempfile::TempDir,
}

impl Bed {
    pub(crate) fn new(from: &str) -> Bed {
        let dir = tempfile::tempdir().expect("dir");
        let files = Files {
            password: dir.path().join("admin.password"),
            setup_code: dir.path().join("admin.setup"),
        };
        let fake = Fake {
            changes: Mutex::new(Vec::new()),
            events: broadcast::channel(16).0,
        };
        let panel = Arc::new(Panel::new(fake, files.clone()));
        let from: SocketAddr = from.parse().expect("addr");
        Bed {
            app: router(panel.clone()).layer(MockConnectInfo(from)),
            panel,
            files,
            _dir: dir,
        }
    }

    pub(crate) async fn call(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, Option<String>, Value, header::HeaderMap) {
        let r = self.app.clone().oneshot(req).await.expect("response");
        let (status, headers) = (r.status(), r.headers().clone());
        let cookie = headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .and_then(|kv| kv.strip_prefix(&format!("{COOKIE}=")))
            .map(str::to_string);
        let body = r.into_body().collect().await.expect("body").to_bytes();
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, cookie, v, headers)
    }
}

pub(crate) fn post(path: &str) -> axum::http::request::Builder {
    Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
}

pub(crate) fn json_body(v: Value) -> Body {
    Body::from(v.to_string())
}

#[tokio::test]
async fn setup_login_status_logout_and_refusals() {
    let bed = Bed::new("10.77.1.50:40000");
    // No session: the status is refused; the security headers are on every answer.
    let (st, _, _, h) = bed
        .call(
            Request::get("/api/status")
                .header(header::HOST, HOST)
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let csp = h
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(
        h.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );

    // No password yet: login says so; setup needs the code.
    let (_, _, v, _) = bed
        .call(
            Request::get("/api/state")
                .header(header::HOST, HOST)
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(v["password_set"], false);
    let (st, _, _, _) = bed
        .call(
            post("/api/login")
                .header(header::ORIGIN, ORIGIN)
                .body(json_body(json!({"password": "whatever-123"})))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let code =
        crate::secret_file::new_setup_code(&bed.files.setup_code, &mut rand::rng()).expect("code");
    let (st, _, v, _) = bed
        .call(
            post("/api/setup")
                .header(header::ORIGIN, ORIGIN)
                .body(json_body(
                    json!({"code": "WRONGWRONG22", "password": "a good password"}),
                ))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, _, v, _) = bed
        .call(
            post("/api/setup")
                .header(header::ORIGIN, ORIGIN)
                .body(json_body(json!({"code": code, "password": "short"})))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Cross-origin setup: refused before anything is looked at.
    let (st, _, _, _) = bed
        .call(
            post("/api/setup")
                .header(header::ORIGIN, "http://evil.example")
                .body(json_body(
                    json!({"code": code, "password": "a good password"}),
                ))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, cookie, v, h) = bed
        .call(
            post("/api/setup")
                .header(header::ORIGIN, ORIGIN)
                .body(json_body(
                    json!({"code": code, "password": "a good password"}),
                ))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let set_cookie = h
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(cookie.as_ref().is_some_and(|c| c.len() == 32));
    assert!(!bed.files.setup_code.exists(), "the code is used up");
    // Set once only.
    let (st, _, _, _) = bed
        .call(
            post("/api/setup")
                .header(header::ORIGIN, ORIGIN)
                .body(json_body(
                    json!({"code": code, "password": "another password"}),
                ))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // Log in: a cookie and a CSRF token.
    let (st, cookie, v, _) = bed
        .call(
            post("/api/login")
                .header("sec-fetch-site", "same-origin")
                .body(json_body(json!({"password": "a good password"})))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let cookie = cookie.expect("cookie");
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    let with =
        |r: axum::http::request::Builder| r.header(header::COOKIE, format!("{COOKIE}={cookie}"));
    let (st, _, v, _) = bed
        .call(
            with(Request::get("/api/status").header(header::HOST, HOST))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(
        (st, &v["links"][0]["name"]),
        (StatusCode::OK, &json!("wifi"))
    );

    // Logout: without the token, with a wrong one, cross-origin: refused; then done.
    for (origin, token) in [
        (ORIGIN, None),
        (ORIGIN, Some("00")),
        ("http://evil.example", Some(csrf.as_str())),
    ] {
        let mut r = with(post("/api/logout")).header(header::ORIGIN, origin);
        if let Some(t) = token {
            r = r.header(CSRF_HEADER, t);
        }
        let (st, _, _, _) = bed.call(r.body(Body::empty()).expect("req")).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{origin} {token:?}");
    }
    let (st, _, _, _) = bed
        .call(
            with(post("/api/logout"))
                .header(header::ORIGIN, ORIGIN)
                .header(CSRF_HEADER, &csrf)
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _, _) = bed
        .call(
            with(Request::get("/api/status").header(header::HOST, HOST))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the session is over");
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited() {
    let bed = Bed::new("10.77.1.66:40000");
    let hashed = crate::password::hash("the right one", &mut rand::rng()).expect("hash");
    crate::secret_file::write_private(&bed.files.password, &hashed).expect("write");
    let login = |pw: &str| {
        post("/api/login")
            .header(header::ORIGIN, ORIGIN)
            .body(json_body(json!({"password": pw})))
            .expect("req")
    };
    for i in 0..crate::limit::FREE_FAILURES {
        let (st, _, _, _) = bed.call(login("guess")).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let (st, _, v, h) = bed.call(login("the right one")).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(
        h.get(header::RETRY_AFTER).map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("try again in 1 s"),
        "{v}"
    );
    // A form posted from another site never reaches the password check.
    let (st, _, _, _) = bed
        .call(
            post("/api/login")
                .header(header::ORIGIN, "http://evil.example")
                .body(json_body(json!({"password": "the right one"})))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn one_hash_at_a_time_and_bodies_are_small() {
    let bed = Bed::new("10.77.1.70:40000");
    let hashed = crate::password::hash("the right one", &mut rand::rng()).expect("hash");
    crate::secret_file::write_private(&bed.files.password, &hashed).expect("write");
    let login = |pw: String| {
        post("/api/login")
            .header(header::ORIGIN, ORIGIN)
            .body(json_body(json!({ "password": pw })))
            .expect("req")
    };
    // While another login's hash runs, a second one is told to come back (no second 19 MiB).
    let permit = bed.panel.hashing.try_acquire().expect("permit");
    let (st, _, v, h) = bed.call(login("the right one".into())).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(
        h.get(header::RETRY_AFTER).map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    drop(permit);
    let (st, _, _, _) = bed.call(login("the right one".into())).await;
    assert_eq!(st, StatusCode::OK);
    // A body beyond the limit is refused before it is parsed.
    let (st, _, _, _) = bed.call(login("x".repeat(crate::router::MAX_BODY))).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
}
