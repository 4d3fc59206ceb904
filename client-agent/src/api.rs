//! The Mobility API: a Unix socket speaking JSON lines. Requests:
//! `{"cmd":"status"}`, `{"cmd":"switch","link":"eth1"}`, `{"cmd":"lookup","addr":"10.0.0.5"}`
//! (is it a local peer?), `{"cmd":"connect","url":"http://host/"}` (how would a request go
//! now?), `{"cmd":"trust","fingerprint":"…"}` and `{"cmd":"forget","fingerprint":"…"}`
//! (which HomeSpot identity to use per network), `{"cmd":"events"}` (from then on, one
//! event per line). Each answer is one line.
//! The socket is made mode 0600: only its owner (root) may steer the links.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::events::Events;
use crate::manager::ApiRequest;

/// Requests to the manager.
pub type ToManager = mpsc::Sender<(ApiRequest, oneshot::Sender<Value>)>;

/// Binds the socket (replacing a stale one).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(l)
}

/// Serves the API.
pub async fn serve(listener: UnixListener, to: ToManager, events: Events) {
    while let Ok((s, _)) = listener.accept().await {
        let (to, events) = (to.clone(), events.clone());
        tokio::spawn(async move {
            let _ = session(s, to, events).await;
        });
    }
}

fn parse(line: &str) -> Result<Option<ApiRequest>, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match s("cmd").as_deref() {
        Some("status") => Ok(Some(ApiRequest::Status)),
        Some("events") => Ok(None),
        Some("switch") => s("link")
            .map(|l| Some(ApiRequest::Switch(l)))
            .ok_or_else(|| "switch needs \"link\"".into()),
        Some("lookup") => s("addr")
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .map(|a| Some(ApiRequest::Lookup(a)))
            .ok_or_else(|| "lookup needs \"addr\" (an IPv4 address)".into()),
        Some("connect") => s("url")
            .map(|u| Some(ApiRequest::Connect(u)))
            .ok_or_else(|| "connect needs \"url\"".into()),
        Some("trust") => s("fingerprint")
            .map(|f| Some(ApiRequest::Trust(f)))
            .ok_or_else(|| "trust needs \"fingerprint\"".into()),
        Some("forget") => s("fingerprint")
            .map(|f| Some(ApiRequest::Forget(f)))
            .ok_or_else(|| "forget needs \"fingerprint\"".into()),
        Some(other) => Err(format!(
            "unknown cmd {other:?} (status, events, switch, lookup, connect, trust, forget)"
        )),
        None => Err("no \"cmd\"".into()),
    }
}

async fn session(s: UnixStream, to: ToManager, events: Events) -> std::io::Result<()> {
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        if line.len() > 4096 {
            w.write_all(b"{\"ok\":false,\"error\":\"line too long\"}\n")
                .await?;
            continue;
        }
        let answer = match parse(&line) {
            Err(e) => json!({"ok": false, "error": e}),
            Ok(None) => {
                let mut rx = events.subscribe();
                w.write_all(b"{\"ok\":true,\"subscribed\":true}\n").await?;
                loop {
                    match rx.recv().await {
                        Ok(e) => {
                            w.write_all(e.as_bytes()).await?;
                            w.write_all(b"\n").await?;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            w.write_all(
                                format!("{{\"event\":\"lagged\",\"missed\":{n}}}\n").as_bytes(),
                            )
                            .await?;
                        }
                        Err(_) => return Ok(()),
                    }
                }
            }
            Ok(Some(req)) => {
                let (tx, rx) = oneshot::channel();
                if to.send((req, tx)).await.is_err() {
                    return Ok(());
                }
                rx.await
                    .unwrap_or_else(|_| json!({"ok": false, "error": "agent stopping"}))
            }
        };
        w.write_all(answer.to_string().as_bytes()).await?;
        w.write_all(b"\n").await?;
    }
    Ok(())
}

/// The answer lines of a request, and the write half that keeps the session open.
pub type Session = (
    tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    tokio::net::unix::OwnedWriteHalf,
);

/// Client side, for the CLI: sends one request line and returns the session.
pub async fn request(path: &PathBuf, req: &Value) -> std::io::Result<Session> {
    let s = UnixStream::connect(path).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "the agent's API socket is root's only: run this as root"
            }
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                "is the agent running? (`homespot-agent run` as root)"
            }
            _ => "",
        };
        std::io::Error::new(e.kind(), format!("{}: {e}; {hint}", path.display()))
    })?;
    let (r, mut w) = s.into_split();
    w.write_all(format!("{req}\n").as_bytes()).await?;
    Ok((BufReader::new(r).lines(), w))
}
