//! The status socket: a Unix stream socket readable by root only. A client writes one line,
//! `status` (answered with one JSON object, then the socket closes), `events` (answered
//! with one JSON object per line, as they happen, until the client leaves) or `pair` (opens
//! the Bluetooth pairing window; answered with `{"ok":true}`).

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Live;

/// Status clients connected at once; more are closed at once.
const MAX_CLIENTS: usize = 16;

/// The bound socket; its file is removed when this is dropped.
pub struct StatusSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl StatusSocket {
    /// Binds `path` with mode 0600 (its folder is made 0700 if missing). A socket file left
    /// by a run that ended without cleaning up is replaced; any other file there is an error.
    pub fn bind(path: &Path) -> io::Result<StatusSocket> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "{} answers: another homespotd is running (stop it, or give this one its own server.status_socket)",
                            path.display()
                        ),
                    ));
                }
                std::fs::remove_file(path)?
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(_) => {}
        }
        // Made with no permissions for others from the start, then 0600.
        // SAFETY: umask only swaps the process's file mode mask (set back just after).
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(StatusSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves status clients until `stop`.
    pub async fn serve(self, live: Arc<Live>, stop: CancellationToken) {
        info!(path = %self.path.display(), "status socket ready (homespotd status)");
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        warn!(error = %e, "status socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!("too many status clients");
                continue;
            };
            let (live, stop) = (live.clone(), stop.clone());
            tokio::spawn(async move {
                if let Err(e) = client(stream, &live, stop).await {
                    debug!(error = %e, "status client ended");
                }
                drop(permit);
            });
        }
    }
}

impl Drop for StatusSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn client(stream: UnixStream, live: &Live, stop: CancellationToken) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut r = BufReader::new(r.take(64));
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request"))??;
    match line.trim() {
        "status" => {
            let mut text = serde_json::to_vec(&live.snapshot()).map_err(io::Error::other)?;
            text.push(b'\n');
            w.write_all(&text).await?;
        }
        "events" => {
            let mut rx = live.subscribe();
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(e) => {
                        let mut text = serde_json::to_vec(&e).map_err(io::Error::other)?;
                        text.push(b'\n');
                        w.write_all(&text).await?;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        w.write_all(
                            format!("{{\"event\":\"skipped\",\"count\":{n}}}\n").as_bytes(),
                        )
                        .await?;
                    }
                    Err(_) => return Ok(()),
                }
            }
        }
        "pair" => {
            let answer = if live.request_pairing() {
                "{\"ok\":true}\n"
            } else {
                "{\"ok\":false,\"error\":\"no Bluetooth link with bluez_adapter is configured\"}\n"
            };
            w.write_all(answer.as_bytes()).await?;
        }
        other => {
            w.write_all(format!("{{\"error\":\"unknown request {other:?}\"}}\n").as_bytes())
                .await?;
        }
    }
    Ok(())
}
