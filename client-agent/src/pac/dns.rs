//! `dnsResolve` for PAC files: a fixed pool of lookup threads shared by every evaluator (the
//! OS resolver has no timeout of its own, so a lookup may block for seconds; the pool bounds
//! how many threads that can ever take), a bounded queue (a lookup that finds it full fails at
//! once), a per-evaluator cache, and a wait bounded by the time left in the evaluation's
//! budget.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lookup threads, in all, for the whole process.
pub const THREADS: usize = 4;
/// Lookups waiting for a thread; more fail at once.
const QUEUE: usize = 16;
/// Answers kept per evaluator, and for how long (failures for less).
const CACHE: usize = 256;
const KEEP: Duration = Duration::from_secs(60);
const KEEP_FAILED: Duration = Duration::from_secs(10);

/// How a name is looked up (the OS resolver; tests put a slow one in).
pub type Lookup = fn(&str) -> Option<Ipv4Addr>;

struct Job {
    host: String,
    lookup: Lookup,
    reply: mpsc::Sender<Option<Ipv4Addr>>,
}

struct Pool {
    tx: mpsc::SyncSender<Job>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..THREADS {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("pac-dns-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let _ = job.reply.send((job.lookup)(&job.host));
                });
        }
        Pool { tx }
    })
}

/// The OS resolver's first IPv4 address for `host`.
pub fn os_lookup(host: &str) -> Option<Ipv4Addr> {
    (host, 0)
        .to_socket_addrs()
        .ok()?
        .find_map(|s| match s.ip() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
}

/// One evaluator's resolver: its cache and its limits.
pub struct Resolver {
    lookup: Lookup,
    timeout: Duration,
    cache: HashMap<String, (Option<Ipv4Addr>, Instant)>,
}

impl Resolver {
    /// Lookups through `lookup`, each waiting at most `timeout`.
    pub fn new(lookup: Lookup, timeout: Duration) -> Resolver {
        Resolver {
            lookup,
            timeout,
            cache: HashMap::new(),
        }
    }

    /// `host`'s address, waiting no longer than `timeout` nor past `deadline`.
    pub fn resolve(&mut self, host: &str, deadline: Option<Instant>) -> Option<Ipv4Addr> {
        if let Ok(a) = host.parse::<Ipv4Addr>() {
            return Some(a);
        }
        if host.is_empty() || host.len() > 253 {
            return None;
        }
        let now = Instant::now();
        if let Some((a, at)) = self.cache.get(host) {
            let keep = if a.is_some() { KEEP } else { KEEP_FAILED };
            if now.duration_since(*at) < keep {
                return *a;
            }
        }
        let left = deadline.map_or(self.timeout, |d| d.saturating_duration_since(now));
        let wait = self.timeout.min(left);
        if wait.is_zero() {
            return None;
        }
        let (reply, rx) = mpsc::channel();
        let job = Job {
            host: host.to_string(),
            lookup: self.lookup,
            reply,
        };
        // A full queue: the pool is busy with lookups that hang; fail now.
        let a = match pool().tx.try_send(job) {
            Ok(()) => rx.recv_timeout(wait).ok().flatten(),
            Err(_) => None,
        };
        if self.cache.len() >= CACHE {
            self.cache.clear();
        }
        self.cache.insert(host.to_string(), (a, Instant::now()));
        a
    }
}
