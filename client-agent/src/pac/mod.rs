//! PAC files evaluated by QuickJS (`rquickjs`), sandboxed: a memory bound, a stack bound, a
//! time budget for loading the file and for every call (an endless loop is cut), and a
//! `dnsResolve` that gives up after a timeout. `myIpAddress()` is the address of the link the
//! file came from, not whatever the host's default route says.
//!
//! Each evaluator lives on a thread of its own (a QuickJS runtime is not `Send`); a
//! [`PacHandle`] sends it requests. The thread ends when the last handle is dropped.

mod choice;

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use choice::{parse_choices, Choice};

const HELPERS: &str = include_str!("helpers.js");

/// The sandbox's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for loading the file, and for each `FindProxyForURL` call.
    pub budget: Duration,
    /// Heap of the JavaScript runtime.
    pub memory: usize,
    /// How long `dnsResolve` waits.
    pub dns_timeout: Duration,
}

impl Default for Limits {
    /// 200 ms per call, 8 MiB, DNS 1 s.
    fn default() -> Limits {
        Limits {
            budget: Duration::from_millis(200),
            memory: 8 << 20,
            dns_timeout: Duration::from_secs(1),
        }
    }
}

/// Why a PAC evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacError {
    /// The file or the call threw, did not parse, or returned no string.
    Script(String),
    /// Cut by the time budget.
    Budget,
    /// The evaluator thread is gone.
    Gone,
}

impl std::fmt::Display for PacError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacError::Script(s) => write!(f, "PAC script error: {s}"),
            PacError::Budget => write!(f, "PAC script exceeded its time budget"),
            PacError::Gone => write!(f, "PAC evaluator stopped"),
        }
    }
}

impl std::error::Error for PacError {}

struct Request {
    url: String,
    host: String,
    reply: tokio::sync::oneshot::Sender<Result<String, PacError>>,
}

/// A loaded PAC file on its evaluator thread.
#[derive(Clone)]
pub struct PacHandle {
    tx: mpsc::Sender<Request>,
}

impl PacHandle {
    /// Loads `script` with `my_ip` as `myIpAddress()`. Fails if the file does not load within
    /// the budget or has no `FindProxyForURL`.
    pub fn load(script: &str, my_ip: Ipv4Addr, limits: Limits) -> Result<PacHandle, PacError> {
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let script = script.to_string();
        std::thread::Builder::new()
            .name("pac".into())
            .spawn(move || evaluator(script, my_ip, limits, rx, ready_tx))
            .map_err(|e| PacError::Script(format!("no thread: {e}")))?;
        ready_rx.recv().map_err(|_| PacError::Gone)??;
        Ok(PacHandle { tx })
    }

    fn ask(
        &self,
        url: &str,
        host: &str,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<String, PacError>>, PacError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Request {
                url: url.to_string(),
                host: host.to_string(),
                reply,
            })
            .map_err(|_| PacError::Gone)?;
        Ok(rx)
    }

    /// `FindProxyForURL(url, host)`, as the raw string.
    pub async fn find_raw(&self, url: &str, host: &str) -> Result<String, PacError> {
        self.ask(url, host)?.await.map_err(|_| PacError::Gone)?
    }

    /// `FindProxyForURL(url, host)`, parsed into the choices to try in order.
    pub async fn find(&self, url: &str, host: &str) -> Result<Vec<Choice>, PacError> {
        Ok(parse_choices(&self.find_raw(url, host).await?))
    }

    /// Blocking form of [`PacHandle::find_raw`], for callers outside a runtime.
    pub fn find_raw_blocking(&self, url: &str, host: &str) -> Result<String, PacError> {
        self.ask(url, host)?
            .blocking_recv()
            .map_err(|_| PacError::Gone)?
    }
}

/// `host` resolved to an IPv4 address within `timeout`, on a helper thread (getaddrinfo has no
/// timeout of its own).
fn resolve(host: &str, timeout: Duration) -> Option<Ipv4Addr> {
    if let Ok(a) = host.parse::<Ipv4Addr>() {
        return Some(a);
    }
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    let (tx, rx) = mpsc::channel();
    let h = host.to_string();
    std::thread::spawn(move || {
        let a = (h.as_str(), 0).to_socket_addrs().ok().and_then(|mut it| {
            it.find_map(|s| match s.ip() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
        });
        let _ = tx.send(a);
    });
    rx.recv_timeout(timeout).ok().flatten()
}

/// When the running script must stop (checked by QuickJS's interrupt handler).
type Deadline = Rc<Cell<Option<Instant>>>;

fn evaluator(
    script: String,
    my_ip: Ipv4Addr,
    limits: Limits,
    rx: mpsc::Receiver<Request>,
    ready: mpsc::Sender<Result<(), PacError>>,
) {
    use rquickjs::{Context, Function, Runtime};
    let setup = || -> Result<(Runtime, Context, Deadline), PacError> {
        let js = |e: rquickjs::Error| PacError::Script(e.to_string());
        let rt = Runtime::new().map_err(js)?;
        rt.set_memory_limit(limits.memory);
        rt.set_max_stack_size(256 << 10);
        let deadline: Deadline = Rc::new(Cell::new(None));
        let d = deadline.clone();
        rt.set_interrupt_handler(Some(Box::new(move || {
            d.get().is_some_and(|t| Instant::now() > t)
        })));
        let ctx = Context::full(&rt).map_err(js)?;
        Ok((rt, ctx, deadline))
    };
    let (_rt, ctx, deadline) = match setup() {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let dns_timeout = limits.dns_timeout;
    let run = |f: &mut dyn FnMut() -> Result<String, PacError>| {
        deadline.set(Some(Instant::now() + limits.budget));
        let r = f();
        let late = deadline.get().is_some_and(|t| Instant::now() > t);
        deadline.set(None);
        match r {
            Err(_) if late => Err(PacError::Budget),
            r => r,
        }
    };
    let loaded = run(&mut || {
        ctx.with(|ctx| {
            let g = ctx.globals();
            let err = |e: rquickjs::Error| PacError::Script(e.to_string());
            let my = my_ip.to_string();
            g.set(
                "myIpAddress",
                Function::new(ctx.clone(), move || my.clone()).map_err(err)?,
            )
            .map_err(err)?;
            g.set(
                "__homespot_dns",
                Function::new(ctx.clone(), move |h: String| {
                    resolve(&h, dns_timeout).map(|a| a.to_string())
                })
                .map_err(err)?,
            )
            .map_err(err)?;
            ctx.eval::<(), _>(HELPERS).map_err(err)?;
            ctx.eval::<(), _>(script.as_str())
                .map_err(|e| PacError::Script(exception(&ctx, e)))?;
            let f: rquickjs::Value = g.get("FindProxyForURL").map_err(err)?;
            if !f.is_function() {
                return Err(PacError::Script("no function FindProxyForURL".into()));
            }
            Ok(String::new())
        })
    });
    if let Err(e) = loaded {
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(()));
    while let Ok(req) = rx.recv() {
        let r = run(&mut || {
            ctx.with(|ctx| {
                let f: Function = ctx
                    .globals()
                    .get("FindProxyForURL")
                    .map_err(|e| PacError::Script(e.to_string()))?;
                let v: rquickjs::Value = f
                    .call((req.url.as_str(), req.host.as_str()))
                    .map_err(|e| PacError::Script(exception(&ctx, e)))?;
                v.as_string()
                    .and_then(|s| s.to_string().ok())
                    .ok_or_else(|| PacError::Script("FindProxyForURL returned no string".into()))
            })
        });
        let _ = req.reply.send(r);
    }
}

/// The message of a thrown exception, or the error itself.
fn exception(ctx: &rquickjs::Ctx<'_>, e: rquickjs::Error) -> String {
    if let rquickjs::Error::Exception = e {
        let v = ctx.catch();
        if let Some(x) = v.as_exception() {
            return x.message().unwrap_or_else(|| "exception".into());
        }
        return format!("{v:?}");
    }
    e.to_string()
}

#[cfg(test)]
mod tests;
