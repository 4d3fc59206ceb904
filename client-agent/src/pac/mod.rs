//! PAC files evaluated by QuickJS (`rquickjs`), sandboxed: a memory bound (a file that needs
//! more is refused with an error naming the limit), a stack bound, a time budget for loading
//! the file and for every call (an endless loop is cut), and a `dnsResolve` whose lookups are
//! charged to that budget and run on a small fixed pool of threads ([`dns`]). `myIpAddress()`
//! is the address of the link the file came from, not whatever the host's default route says.
//! The helpers follow the browsers' semantics (Mozilla's and Chromium's PAC utilities).
//!
//! Each evaluator lives on a thread of its own (a QuickJS runtime is not `Send`); a
//! [`PacHandle`] sends it requests. The thread ends when the last handle is dropped.

mod choice;
pub mod dns;

use std::cell::Cell;
use std::net::Ipv4Addr;
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
    /// How long one `dnsResolve` waits (and never past the budget).
    pub dns_timeout: Duration,
    /// How names are looked up (the OS resolver).
    pub lookup: dns::Lookup,
}

/// The default memory bound: the largest PAC files in use (several MB of rules) fit.
pub const DEFAULT_MEMORY: usize = 128 << 20;

impl Default for Limits {
    /// 200 ms per call, 128 MiB, DNS 1 s.
    fn default() -> Limits {
        Limits {
            budget: Duration::from_millis(200),
            memory: DEFAULT_MEMORY,
            dns_timeout: Duration::from_secs(1),
            lookup: dns::os_lookup,
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
    /// The file needs more memory than the limit (bytes).
    Memory(usize),
    /// The evaluator thread is gone.
    Gone,
}

impl std::fmt::Display for PacError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacError::Script(s) => write!(f, "PAC script error: {s}"),
            PacError::Budget => write!(f, "PAC script exceeded its time budget"),
            PacError::Memory(limit) => write!(
                f,
                "PAC file needs more than {} MiB of memory (discovery.pac_memory)",
                limit >> 20
            ),
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
    let resolver = Rc::new(std::cell::RefCell::new(dns::Resolver::new(
        limits.lookup,
        limits.dns_timeout,
    )));
    let run = |f: &mut dyn FnMut() -> Result<String, PacError>| {
        deadline.set(Some(Instant::now() + limits.budget));
        let r = f();
        let late = deadline.get().is_some_and(|t| Instant::now() > t);
        deadline.set(None);
        match r {
            Err(e @ PacError::Memory(_)) => Err(e),
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
            let (res, dl) = (resolver.clone(), deadline.clone());
            g.set(
                "__homespot_dns",
                Function::new(ctx.clone(), move |h: String| {
                    // Charged to the evaluation's budget: never waits past its deadline.
                    res.borrow_mut()
                        .resolve(&h, dl.get())
                        .map(|a| a.to_string())
                })
                .map_err(err)?,
            )
            .map_err(err)?;
            ctx.eval::<(), _>(HELPERS).map_err(err)?;
            ctx.eval::<(), _>(script.as_str()).map_err(|e| {
                // QuickJS out of memory surfaces as a bare error (or a null exception).
                let text = exception(&ctx, e);
                if text.contains("out of memory") || text.contains("Null") || text == "null" {
                    PacError::Memory(limits.memory)
                } else {
                    PacError::Script(text)
                }
            })?;
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
