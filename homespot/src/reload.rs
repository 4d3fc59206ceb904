//! Reloading the configuration (SIGHUP; the admin panel will use the same path): the file is
//! read and validated again; a valid one is handed to the DHCP server and the proxy, which
//! apply it without dropping leases, associations or connections; an invalid one is refused
//! with file, key and reason, and the running config stays. Keys that only a restart can
//! change (ports, the lease database, the P-Handoff section) are logged and keep their old
//! values until then.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::diff::diff;
use crate::config::Config;
use crate::status::{Event, Live};

/// Reloads `path` on every message from `requests` (one per SIGHUP) until it closes; `running`
/// is the config in use, and every applied config goes to `apply`.
pub async fn run(
    path: PathBuf,
    mut running: Config,
    mut requests: mpsc::Receiver<()>,
    apply: watch::Sender<Arc<Config>>,
    live: Arc<Live>,
) {
    while requests.recv().await.is_some() {
        info!(config = %path.display(), "reloading the configuration");
        if let Some(next) = reload(&path, &running, &live) {
            running = next.clone();
            apply.send_replace(Arc::new(next));
        }
    }
}

/// Reads `path` and returns the config to apply, or None (refused, or nothing to apply).
fn reload(path: &std::path::Path, running: &Config, live: &Live) -> Option<Config> {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!("reload refused, still running with the previous configuration: {e}");
            live.emit(Event::ReloadRefused {
                reason: e.to_string(),
            });
            return None;
        }
    };
    let d = diff(running, &new);
    if let Some(why) = d.refused {
        let reason = format!("{}: {why}", path.display());
        error!("reload refused, still running with the previous configuration: {reason}");
        live.emit(Event::ReloadRefused { reason });
        return None;
    }
    for key in &d.restart {
        warn!(key = %key, "changed in the file; takes effect when homespotd restarts");
    }
    if d.applied.is_empty() {
        info!("reload: nothing that can change while running has changed");
        return None;
    }
    // What only a restart changes keeps its running value.
    let mut next = new;
    next.lease_db = running.lease_db.clone();
    next.worker_threads = running.worker_threads;
    next.status_socket = running.status_socket.clone();
    next.proxy.enabled = running.proxy.enabled;
    next.proxy.port = running.proxy.port;
    next.proxy.pac_port = running.proxy.pac_port;
    next.handoff = running.handoff.clone();
    for (n, r) in next.links.iter_mut().zip(&running.links) {
        n.l2_id = r.l2_id.clone();
    }
    live.configure(&next, &path.display().to_string());
    info!(changed = %d.applied.join(", "), "configuration reloaded");
    live.emit(Event::Reloaded { changes: d.applied });
    Some(next)
}
