//! Reloading the configuration (SIGHUP, and the admin panel by the same path): the file is
//! read and validated again; a valid one is handed to the DHCP server and the proxy, which
//! apply it without dropping leases, associations or connections; an invalid one is refused
//! with file, key and reason, and the running config stays. Keys that only a restart can
//! change (ports, the lease database, the P-Handoff section) are logged and keep their old
//! values until then.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::config::diff::diff;
use crate::config::Config;
use crate::status::{Event, Live};

/// A request to reload: from SIGHUP (no answer wanted) or the admin panel (which waits for
/// the outcome).
pub type Request = Option<oneshot::Sender<Outcome>>;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Read and applied (possibly nothing: `applied` empty).
    Applied {
        /// The keys applied at once.
        applied: Vec<String>,
        /// The keys that take effect when homespotd restarts.
        restart: Vec<String>,
    },
    /// Refused with file, key and reason; the running config stays.
    Refused(String),
}

/// Reloads `path` on every request (one per SIGHUP, or from the panel) until the channel
/// closes; `running` is the config in use, and every applied config goes to `apply`.
pub async fn run(
    path: PathBuf,
    mut running: Config,
    mut requests: mpsc::Receiver<Request>,
    apply: watch::Sender<Arc<Config>>,
    live: Arc<Live>,
) {
    while let Some(reply) = requests.recv().await {
        info!(config = %path.display(), "reloading the configuration");
        let (next, outcome) = reload(&path, &running, &live);
        if let Some(next) = next {
            running = next.clone();
            apply.send_replace(Arc::new(next));
        }
        if let Some(r) = reply {
            let _ = r.send(outcome);
        }
    }
}

/// Reads `path`: the config to apply (None: refused, or nothing to apply) and the outcome.
fn reload(path: &std::path::Path, running: &Config, live: &Live) -> (Option<Config>, Outcome) {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!("reload refused, still running with the previous configuration: {e}");
            live.emit(Event::ReloadRefused {
                reason: e.to_string(),
            });
            return (None, Outcome::Refused(e.to_string()));
        }
    };
    let d = diff(running, &new);
    if let Some(why) = d.refused {
        let reason = format!("{}: {why}", path.display());
        error!("reload refused, still running with the previous configuration: {reason}");
        live.emit(Event::ReloadRefused {
            reason: reason.clone(),
        });
        return (None, Outcome::Refused(reason));
    }
    for key in &d.restart {
        warn!(key = %key, "changed in the file; takes effect when homespotd restarts");
    }
    let outcome = Outcome::Applied {
        applied: d.applied.clone(),
        restart: d.restart.clone(),
    };
    if d.applied.is_empty() {
        info!("reload: nothing that can change while running has changed");
        return (None, outcome);
    }
    // What only a restart changes keeps its running value.
    let mut next = new;
    next.lease_db = running.lease_db.clone();
    next.worker_threads = running.worker_threads;
    next.status_socket = running.status_socket.clone();
    next.proxy.enabled = running.proxy.enabled;
    next.proxy.port = running.proxy.port;
    next.proxy.pac_port = running.proxy.pac_port;
    next.proxy.congestion_control = running.proxy.congestion_control.clone();
    next.handoff = running.handoff.clone();
    next.admin = running.admin.clone();
    for (n, r) in next.links.iter_mut().zip(&running.links) {
        n.l2_id = r.l2_id.clone();
        n.bluez = r.bluez.clone();
    }
    live.configure(&next, &path.display().to_string());
    info!(changed = %d.applied.join(", "), "configuration reloaded");
    live.emit(Event::Reloaded { changes: d.applied });
    (Some(next), outcome)
}
