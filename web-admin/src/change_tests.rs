//! `router(fake).oneshot(..)` for the pages, the live stream and the changes: without a
//! session, with one, cross-origin or without the CSRF token, bad settings (422 with the key
//! and the reason), good settings (applied), reservations, forgotten leases, a new password.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::router::{Change, Edit, COOKIE, CSRF_HEADER};
use crate::router_tests::{json_body, post, Bed, HOST, ORIGIN};

/// A bed with a password set and a session: (bed, cookie, csrf).
async fn logged_in() -> (Bed, String, String) {
    let bed = Bed::new("10.77.1.80:40000");
    let hashed = crate::password::hash("the right one", &mut rand::rng()).expect("hash");
    crate::secret_file::write_private(&bed.files.password, &hashed).expect("write");
    let (st, cookie, v, _) = bed
        .call(
            post("/api/login")
                .header(header::ORIGIN, ORIGIN)
                .body(json_body(json!({"password": "the right one"})))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    (bed, cookie.expect("cookie"), csrf)
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path).header(header::HOST, HOST);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, format!("{COOKIE}={c}"));
    }
    r.body(Body::empty()).expect("req")
}

/// A state-changing request: with the session, `origin` and `csrf` when given.
fn change(
    path: &str,
    cookie: &str,
    origin: &str,
    csrf: Option<&str>,
    body: Value,
) -> Request<Body> {
    let mut r = post(path)
        .header(header::COOKIE, format!("{COOKIE}={cookie}"))
        .header(header::ORIGIN, origin);
    if let Some(t) = csrf {
        r = r.header(CSRF_HEADER, t);
    }
    r.body(json_body(body)).expect("req")
}

#[tokio::test]
async fn the_page_and_its_assets_are_public_and_carry_the_headers() {
    let bed = Bed::new("10.77.1.81:40000");
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let r = tower::ServiceExt::oneshot(bed.app.clone(), get(path, None))
            .await
            .expect("response");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let ct = r.headers()[header::CONTENT_TYPE].to_str().unwrap_or("");
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let body = r.into_body().collect().await.expect("body").to_bytes();
        assert!(!body.is_empty(), "{path}");
    }
    // No inline script in the page: everything it runs comes from /app.js.
    assert!(!crate::assets::INDEX.contains("<script>"));
    assert!(crate::assets::INDEX.contains("<script src=\"/app.js\""));
}

#[tokio::test]
async fn without_a_session_nothing_is_shown_or_changed() {
    let bed = Bed::new("10.77.1.82:40000");
    for path in ["/api/status", "/api/live", "/api/settings"] {
        let (st, _, _, _) = bed.call(get(path, None)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
    }
    for (path, body) in [
        ("/api/settings", json!({"edits": []})),
        (
            "/api/reserve",
            json!({"mac": "02:00:00:00:00:01", "address": "10.77.1.9"}),
        ),
        ("/api/forget", json!({"address": "10.77.1.9"})),
        (
            "/api/password",
            json!({"current": "x", "new": "a new password"}),
        ),
    ] {
        let (st, _, _, _) = bed
            .call(change(path, "forged", ORIGIN, Some("00"), body))
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert!(bed.panel.backend.changes.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn changes_need_the_same_origin_and_the_csrf_token() {
    let (bed, cookie, csrf) = logged_in().await;
    let edit = json!({"edits": [{"key": "link[0].lease_time", "value": "2h"}]});
    for (path, body) in [
        ("/api/settings", edit.clone()),
        (
            "/api/reserve",
            json!({"mac": "02:00:00:00:00:01", "address": "10.77.1.9"}),
        ),
        ("/api/forget", json!({"address": "10.77.1.9"})),
        (
            "/api/password",
            json!({"current": "the right one", "new": "a new password"}),
        ),
    ] {
        let (st, _, _, _) = bed
            .call(change(path, &cookie, ORIGIN, None, body.clone()))
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path} without the token");
        let (st, _, _, _) = bed
            .call(change(
                path,
                &cookie,
                "http://evil.example",
                Some(&csrf),
                body,
            ))
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path} cross-origin");
    }
    // A classic cross-site form post: no JSON, another origin: refused before the body.
    let r = post("/api/reserve")
        .header(header::COOKIE, format!("{COOKIE}={cookie}"))
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("mac=02:00:00:00:00:01&address=10.77.1.9"))
        .expect("req");
    let (st, _, _, _) = bed.call(r).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(bed.panel.backend.changes.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn bad_settings_are_refused_with_key_and_reason_and_good_ones_applied() {
    let (bed, cookie, csrf) = logged_in().await;
    let (st, _, v, _) = bed.call(get("/api/settings", Some(&cookie))).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["settings"]["link"][0]["name"], "wifi");
    let bad = json!({"edits": [{"key": "link[0].pools", "value": ["bad"]}]});
    let (st, _, v, _) = bed
        .call(change("/api/settings", &cookie, ORIGIN, Some(&csrf), bad))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["key"], "link[0].pools[0]");
    assert!(
        v["error"].as_str().unwrap_or("").contains("is not a range"),
        "{v}"
    );
    assert!(bed.panel.backend.changes.lock().expect("lock").is_empty());

    let good = json!({"edits": [{"key": "link[0].pools", "value": ["10.77.1.100-10.77.1.150"]}]});
    let (st, _, v, _) = bed
        .call(change("/api/settings", &cookie, ORIGIN, Some(&csrf), good))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["applied"], json!(["link[0].pools"]));
    let (st, _, _, _) = bed
        .call(change(
            "/api/reserve",
            &cookie,
            ORIGIN,
            Some(&csrf),
            json!({"mac": "02:00:00:00:00:01", "address": "10.77.1.9"}),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _, _) = bed
        .call(change(
            "/api/forget",
            &cookie,
            ORIGIN,
            Some(&csrf),
            json!({"address": "10.77.1.9"}),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let changes = bed.panel.backend.changes.lock().expect("lock").clone();
    assert_eq!(
        changes,
        vec![
            Change::Settings {
                edits: vec![Edit {
                    key: "link[0].pools".into(),
                    value: json!(["10.77.1.100-10.77.1.150"]),
                }],
            },
            Change::Reserve {
                mac: "02:00:00:00:00:01".into(),
                address: "10.77.1.9".parse().expect("ip"),
            },
            Change::Forget {
                address: "10.77.1.9".parse().expect("ip"),
            },
        ]
    );
    // Too many edits at once, and a body that is not JSON: refused, nothing changed.
    let many: Vec<Value> = (0..65)
        .map(|i| json!({"key": format!("link[0].k{i}"), "value": 1}))
        .collect();
    let (st, _, _, _) = bed
        .call(change(
            "/api/settings",
            &cookie,
            ORIGIN,
            Some(&csrf),
            json!({"edits": many}),
        ))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _, _, _) = bed
        .call(change(
            "/api/settings",
            &cookie,
            ORIGIN,
            Some(&csrf),
            json!("x"),
        ))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(bed.panel.backend.changes.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn a_reloaded_page_gets_its_token_back_and_a_new_password_ends_other_sessions() {
    let (bed, cookie, csrf) = logged_in().await;
    let (_, _, v, _) = bed.call(get("/api/state", Some(&cookie))).await;
    assert_eq!(
        (v["logged_in"].clone(), v["csrf"].clone()),
        (json!(true), json!(csrf))
    );
    let (_, _, v, _) = bed.call(get("/api/state", None)).await;
    assert_eq!(
        (v["logged_in"].clone(), v["csrf"].clone()),
        (json!(false), Value::Null)
    );
    // A second session (another browser).
    let (_, other, _, _) = bed
        .call(
            post("/api/login")
                .header(header::ORIGIN, ORIGIN)
                .body(json_body(json!({"password": "the right one"})))
                .expect("req"),
        )
        .await;
    let other = other.expect("cookie");
    let body = json!({"current": "wrong", "new": "a new password"});
    let (st, _, _, _) = bed
        .call(change("/api/password", &cookie, ORIGIN, Some(&csrf), body))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let body = json!({"current": "the right one", "new": "short"});
    let (st, _, _, _) = bed
        .call(change("/api/password", &cookie, ORIGIN, Some(&csrf), body))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let body = json!({"current": "the right one", "new": "a new password"});
    let (st, _, v, _) = bed
        .call(change("/api/password", &cookie, ORIGIN, Some(&csrf), body))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _, _, _) = bed.call(get("/api/status", Some(&cookie))).await;
    assert_eq!(st, StatusCode::OK, "this session stays");
    let (st, _, _, _) = bed.call(get("/api/status", Some(&other))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the other one ends");
    let (st, _, _, _) = bed
        .call(
            post("/api/login")
                .header(header::ORIGIN, ORIGIN)
                .body(json_body(json!({"password": "a new password"})))
                .expect("req"),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn the_live_stream_sends_the_state_and_the_events_and_ends_with_the_session() {
    let (bed, cookie, csrf) = logged_in().await;
    let r = tower::ServiceExt::oneshot(bed.app.clone(), get("/api/live", Some(&cookie)))
        .await
        .expect("response");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let mut body = r.into_body();
    let mut text = String::new();
    text += &next_frame(&mut body).await.expect("first frame");
    assert!(
        text.contains("event: status") && text.contains("\"wifi\""),
        "{text}"
    );
    let _ = bed
        .panel
        .backend
        .events
        .send(json!({"event": "lease", "link": "wifi"}));
    let frame = next_frame(&mut body).await.expect("event frame");
    assert!(
        frame.contains("event: event") && frame.contains("\"lease\""),
        "{frame}"
    );
    // Log out: the stream ends at its next tick.
    let (st, _, _, _) = bed
        .call(change(
            "/api/logout",
            &cookie,
            ORIGIN,
            Some(&csrf),
            json!({}),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut ended = false;
    for _ in 0..3 {
        if next_frame(&mut body).await.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream outlived its session");
}

/// The next data frame of an SSE body as text, or None when it ended (3 s at most).
async fn next_frame(body: &mut Body) -> Option<String> {
    tokio::time::timeout(std::time::Duration::from_secs(3), body.frame())
        .await
        .ok()
        .flatten()
        .and_then(|f| f.ok())
        .and_then(|f| f.into_data().ok())
        .map(|d| String::from_utf8_lossy(&d).to_string())
}
