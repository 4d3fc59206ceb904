//! The web admin panel in homespotd: [`web_admin::router`] over the live state, mounted on
//! every LAN link address (never the WAN) at `[admin] port`. Changes go through the config
//! file of record: edited keeping its comments ([`edit`]), validated by the config file's own
//! validation, written atomically (temporary file, fsync, rename), then applied by the same
//! reload path as SIGHUP; a reload that refuses puts the previous file back.

pub mod edit;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use web_admin::{Applied, Change, Edit, Refused};

use crate::config::diff::diff;
use crate::config::{uci, Config};
use crate::dhcp::server::Forget;
use crate::reload::{Outcome, Request};
use crate::status::Live;

/// What the panel reads and changes in homespotd.
pub struct Backend {
    /// The live state.
    pub live: Arc<Live>,
    /// The config file of record.
    pub path: PathBuf,
    /// The reload path (the same as SIGHUP's).
    pub reload: mpsc::Sender<Request>,
    /// The running config.
    pub running: watch::Receiver<Arc<Config>>,
    /// The DHCP server's "forget this lease".
    pub forget: mpsc::Sender<Forget>,
    /// The live events as JSON.
    events: broadcast::Sender<Value>,
    /// One change at a time.
    writing: tokio::sync::Mutex<()>,
}

impl Backend {
    /// The backend; forwards the live events as JSON until `stop`.
    pub fn new(
        live: Arc<Live>,
        path: PathBuf,
        reload: mpsc::Sender<Request>,
        running: watch::Receiver<Arc<Config>>,
        forget: mpsc::Sender<Forget>,
        stop: CancellationToken,
    ) -> Backend {
        let (events, _) = broadcast::channel(256);
        let tx = events.clone();
        let mut rx = live.subscribe();
        tokio::spawn(async move {
            loop {
                let e = tokio::select! {
                    _ = stop.cancelled() => break,
                    e = rx.recv() => e,
                };
                match e {
                    Ok(e) => {
                        if let Ok(v) = serde_json::to_value(&e) {
                            let _ = tx.send(v);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Backend {
            live,
            path,
            reload,
            running,
            forget,
            events,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes `edits` into the file, validates, writes atomically and reloads.
    async fn settings_change(&self, edits: &[Edit]) -> Result<Applied, Refused> {
        let _one = self.writing.lock().await;
        let old = std::fs::read_to_string(&self.path).map_err(|e| Refused {
            key: "(file)".into(),
            reason: format!("{}: cannot read: {e}", self.path.display()),
        })?;
        let (new, cfg) = edited(&self.path, &old, edits)?;
        let running = self.running.borrow().clone();
        if let Some(why) = diff(&running, &cfg).refused {
            return Err(Refused {
                key: String::new(),
                reason: format!("{}: {why}", self.path.display()),
            });
        }
        write_atomic(&self.path, &new).map_err(|e| Refused {
            key: "(file)".into(),
            reason: format!("{}: cannot write: {e}", self.path.display()),
        })?;
        let (tx, rx) = oneshot::channel();
        let outcome = match self.reload.send(Some(tx)).await {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        match outcome {
            Some(Outcome::Applied { applied, restart }) => {
                info!(changes = %applied.join(", "), restart = %restart.join(", "), "settings changed from the admin panel");
                Ok(Applied { applied, restart })
            }
            other => {
                // Put back the file the running config came from.
                if let Err(e) = write_atomic(&self.path, &old) {
                    warn!(error = %e, "cannot put back the previous config file");
                }
                Err(Refused {
                    key: String::new(),
                    reason: match other {
                        Some(Outcome::Refused(r)) => r,
                        _ => "homespotd is shutting down".into(),
                    },
                })
            }
        }
    }

    /// A reservation of `address` for `mac`, replacing any other of that MAC or address.
    async fn reserve(&self, mac: &str, address: Ipv4Addr) -> Result<Applied, Refused> {
        let running = self.running.borrow().clone();
        let Some(i) = running
            .links
            .iter()
            .position(|l| l.subnet.contains(&address))
        else {
            return Err(Refused {
                key: "address".into(),
                reason: format!("{address} is on none of the links"),
            });
        };
        let file = web_admin::Backend::settings(self);
        let mut list: Vec<Value> = file["link"][i]["reservations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mac_l = mac.to_ascii_lowercase();
        list.retain(|r| {
            r["mac"].as_str().map(str::to_ascii_lowercase).as_deref() != Some(mac_l.as_str())
                && r["address"].as_str() != Some(address.to_string().as_str())
        });
        list.push(serde_json::json!({"mac": mac_l, "address": address.to_string()}));
        self.settings_change(&[Edit {
            key: format!("link[{i}].reservations"),
            value: Value::Array(list),
        }])
        .await
    }
}

impl web_admin::Backend for Backend {
    fn status(&self) -> Value {
        serde_json::to_value(self.live.snapshot()).unwrap_or(Value::Null)
    }

    fn events(&self) -> broadcast::Receiver<Value> {
        self.events.subscribe()
    }

    fn settings(&self) -> Value {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Value::Null;
        };
        let toml = if uci::looks_like_uci(&text) {
            uci::toml_of(&self.path, &text).unwrap_or_default()
        } else {
            text
        };
        toml::from_str::<Value>(&toml).unwrap_or(Value::Null)
    }

    async fn change(&self, change: Change) -> Result<Applied, Refused> {
        match change {
            Change::Settings { edits } => self.settings_change(&edits).await,
            Change::Reserve { mac, address } => self.reserve(&mac, address).await,
            Change::Forget { address } => {
                let (tx, rx) = oneshot::channel();
                let sent = self.forget.send(Forget { address, done: tx }).await;
                match (sent, rx.await) {
                    (Ok(()), Ok(true)) => Ok(Applied {
                        applied: vec![format!("lease on {address} forgotten")],
                        restart: vec![],
                    }),
                    _ => Err(Refused {
                        key: "address".into(),
                        reason: format!("no lease is bound on {address}"),
                    }),
                }
            }
        }
    }
}

/// The config file `old` with `edits` made, and the config it means, in the file's own
/// format (TOML with its comments kept, or UCI as `uci commit` writes it). A refusal names the
/// key as the settings page does (`link[0].pools[0]`) and says why as the file's own errors do.
fn edited(path: &Path, old: &str, edits: &[Edit]) -> Result<(String, Config), Refused> {
    if !uci::looks_like_uci(old) {
        let new = edit::apply(old, edits)?;
        let cfg = Config::parse(path, &new).map_err(|e| Refused {
            key: e.key.clone(),
            reason: e.to_string(),
        })?;
        return Ok((new, cfg));
    }
    let as_toml = uci::toml_of(path, old).map_err(|e| Refused {
        key: "(file)".into(),
        reason: e.to_string(),
    })?;
    let new_toml = edit::apply(&as_toml, edits)?;
    let doc: toml::Table = toml::from_str(&new_toml).map_err(|e| Refused {
        key: "(file)".into(),
        reason: e.to_string(),
    })?;
    let new = uci::from_toml(&doc);
    match (
        Config::parse(path, &new_toml),
        uci::parse_config(path, &new),
    ) {
        (Ok(_), Ok(cfg)) => Ok((new, cfg)),
        (Err(t), Err(u)) => Err(Refused {
            key: t.key,
            reason: u.to_string(),
        }),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(Refused {
            key: e.key.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Writes `text` to `path` atomically: a temporary file beside it, fsync, rename, fsync of
/// the directory. The file keeps the old one's permissions.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.homespot-tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    if let Ok(m) = std::fs::metadata(path) {
        let _ = f.set_permissions(m.permissions());
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The panel's listeners: one per LAN link address at `cfg.admin.port` (freebind: a link's
/// address may come later), never the WAN.
pub fn bind(cfg: &Config) -> std::io::Result<Vec<TcpListener>> {
    let mut list = Vec::new();
    if !cfg.admin.enabled {
        return Ok(list);
    }
    for l in &cfg.links {
        let addr = SocketAddr::from((l.address, cfg.admin.port));
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.set_freebind_v4(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())
            .map_err(|e| std::io::Error::new(e.kind(), format!("admin panel: bind {addr}: {e}")))?;
        s.listen(64)?;
        list.push(TcpListener::from_std(s.into())?);
    }
    Ok(list)
}

/// While no password is set: a new one-time setup code in its root-only file, and where to
/// use it in the log.
pub fn offer_setup(cfg: &Config) {
    let a = &cfg.admin;
    if !a.enabled {
        return;
    }
    match web_admin::secret_file::read(&a.password_file) {
        Ok(Some(_)) => return,
        Ok(None) => {}
        Err(e) => {
            warn!(error = %e, "admin panel: cannot read the password file");
            return;
        }
    }
    let url = cfg
        .links
        .first()
        .map(|l| format!("http://{}:{}/", l.address, a.port))
        .unwrap_or_default();
    let mut rng = rand_core::TryRngCore::unwrap_err(rand_core::OsRng);
    match web_admin::secret_file::new_setup_code(&a.setup_code_file, &mut rng) {
        Ok(_) => warn!(
            panel = %url,
            setup_code_file = %a.setup_code_file.display(),
            "no admin password is set: open the panel and enter the one-time setup code from the file (root only), or run `homespotd passwd`"
        ),
        Err(e) => {
            warn!(error = %e, "admin panel: cannot write the setup code; set a password with `homespotd passwd`")
        }
    }
}

/// Serves the panel on `listeners` until `stop`.
pub async fn serve(
    listeners: Vec<TcpListener>,
    backend: Backend,
    cfg: &Config,
    stop: CancellationToken,
) {
    let files = web_admin::Files {
        password: cfg.admin.password_file.clone(),
        setup_code: cfg.admin.setup_code_file.clone(),
    };
    let panel = Arc::new(web_admin::Panel::new(backend, files));
    let app = web_admin::router(panel);
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        tasks.spawn(web_admin::serve(l, app.clone()));
    }
    stop.cancelled().await;
    tasks.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UCI: &str = "config server\n\toption lease_db '/tmp/x/leases.redb'\n\nconfig link 'lan'\n\toption interface 'br-lan'\n\toption address '192.168.1.1/24'\n\tlist pools '192.168.1.100-192.168.1.249'\n";

    #[test]
    fn settings_edits_on_a_uci_file_stay_uci_and_are_refused_as_uci_says() {
        let p = Path::new("/etc/config/homespot");
        let edit = |v: Value| Edit {
            key: "link[0].pools".into(),
            value: v,
        };
        let (new, cfg) =
            edited(p, UCI, &[edit(json!(["192.168.1.100-192.168.1.150"]))]).expect("applied");
        assert!(uci::looks_like_uci(&new), "{new}");
        assert!(
            new.contains("list pools '192.168.1.100-192.168.1.150'"),
            "{new}"
        );
        assert_eq!(cfg.links[0].name, "lan");
        let e = edited(p, UCI, &[edit(json!(["192.168.1.100-192.168.2.5"]))]).expect_err("refused");
        assert_eq!(e.key, "link[0].pools[0]");
        assert!(
            e.reason.starts_with("/etc/config/homespot:")
                && e.reason.contains("homespot.lan.pools"),
            "{}",
            e.reason
        );
    }
}
