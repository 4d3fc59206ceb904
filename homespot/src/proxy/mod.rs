//! The HomeSpot HTTP proxy, on every LAN link address.
//!
//! Absolute-form HTTP/1.x requests are forwarded with keep-alive on both sides and a pool of
//! upstream connections; CONNECT opens tunnels to allowed ports; requests for the HomeSpot
//! itself (`/wpad.dat`, `/proxy.pac`) are answered locally. Only clients on the LAN subnets are
//! served. Limits (request line, head size, header timeout, connections per client and in all)
//! answer with a proper status and a one-line reason.

mod access;
mod congestion;
mod conn;
mod connector;
pub mod dest;
mod detach;
mod devices;
pub mod dns;
mod forward;
mod idle;
mod own_errors;
pub mod pac;
mod reply;
mod tunnel;

use portable_atomic::AtomicU64;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Config, ProxyConfig};
use access::{Access, Refusal};
use dns::{Dns, DnsError};
use forward::UpstreamClient;
use reply::{error, full, Body};

/// The bound listening sockets.
pub struct Listeners {
    /// (listener, serves only the HomeSpot's own pages)
    list: Vec<(TcpListener, bool)>,
    /// What the client connections use as TCP congestion control (for the status).
    congestion: Option<String>,
}

impl Listeners {
    /// Binds the proxy port and the page port on every link address. Needs a tokio runtime.
    pub fn bind(cfg: &Config) -> io::Result<Listeners> {
        let mut list = Vec::new();
        let mut sockets = Vec::new();
        if !cfg.proxy.enabled {
            return Ok(Listeners {
                list,
                congestion: None,
            });
        }
        let mut addrs: Vec<Ipv4Addr> = cfg.links.iter().map(|l| l.address).collect();
        // Associated clients reach the proxy at the HomeSpot's global address.
        addrs.extend(cfg.handoff.as_ref().map(|h| h.global_address));
        for ip in addrs {
            let mut ports = vec![(cfg.proxy.port, false)];
            ports.extend(cfg.proxy.pac_port.map(|p| (p, true)));
            for (port, pages_only) in ports {
                let addr = SocketAddr::from((ip, port));
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                s.set_reuse_address(true)?;
                // A link's address may be missing now (its interface is re-created, or comes
                // later): the listener takes connections once the address is back.
                s.set_freebind_v4(true)?;
                s.set_nonblocking(true)?;
                s.bind(&addr.into())
                    .map_err(|e| io::Error::new(e.kind(), format!("proxy: bind {addr}: {e}")))?;
                s.listen(1024)?;
                sockets.push((s, pages_only));
            }
        }
        let congestion = congestion::apply(
            sockets.iter().map(|(s, _)| s),
            cfg.proxy.congestion_control.as_deref(),
        );
        for (s, pages_only) in sockets {
            list.push((TcpListener::from_std(s.into())?, pages_only));
        }
        Ok(Listeners { list, congestion })
    }

    /// What the client connections use as TCP congestion control, as the status says it.
    pub fn congestion(&self) -> Option<&str> {
        self.congestion.as_deref()
    }
}

/// What the proxy has done, for logs.
#[derive(Default, Debug)]
pub struct Counters {
    /// Client connections admitted.
    pub connections: AtomicU64,
    /// Connections refused: source not on the LAN.
    pub refused_not_lan: AtomicU64,
    /// Connections refused: too many.
    pub refused_busy: AtomicU64,
    /// Requests forwarded.
    pub forwarded: AtomicU64,
    /// CONNECT tunnels opened.
    pub tunnels: AtomicU64,
    /// Local pages served (PAC).
    pub local: AtomicU64,
    /// Error responses made by the proxy itself.
    pub errors: AtomicU64,
    /// Idle keep-alive connections parked (their HTTP buffers freed).
    pub parked: AtomicU64,
    /// Requests refused: a destination the proxy may not reach (403).
    pub refused_destination: AtomicU64,
    /// CONNECT tunnels closed after idle_timeout without a byte.
    pub idle_tunnels: AtomicU64,
}

impl Counters {
    /// `(name, value)` in a fixed order.
    pub fn pairs(&self) -> [(&'static str, u64); 10] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("connections", g(&self.connections)),
            ("refused_not_lan", g(&self.refused_not_lan)),
            ("refused_busy", g(&self.refused_busy)),
            ("refused_destination", g(&self.refused_destination)),
            ("forwarded", g(&self.forwarded)),
            ("tunnels", g(&self.tunnels)),
            ("idle_tunnels", g(&self.idle_tunnels)),
            ("local", g(&self.local)),
            ("errors", g(&self.errors)),
            ("parked", g(&self.parked)),
        ]
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.pairs().into_iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl crate::status::CounterSource for State {
    fn counters(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m: std::collections::BTreeMap<String, u64> = self
            .counters
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        m.insert("open_connections".into(), self.access.open() as u64);
        m
    }
}

/// Shared by every connection. A reload makes a new one; connections keep the one they
/// started with.
pub struct State {
    cfg: ProxyConfig,
    access: Arc<Access>,
    dns: Dns,
    client: UpstreamClient,
    direct: Vec<Ipv4Net>,
    own: Vec<Ipv4Addr>,
    counters: Arc<Counters>,
    moves: Arc<crate::moves::Moves>,
    dest: Arc<dest::DestPolicy>,
}

/// What outlives a reload: the connection limits' counts, the counters, the moves.
struct Lasting {
    access: Arc<Access>,
    counters: Arc<Counters>,
    moves: Arc<crate::moves::Moves>,
}

fn limits(pc: &ProxyConfig) -> access::Limits {
    access::Limits {
        total: pc.max_connections,
        per_device: pc.max_connections_per_client,
        per_link: (pc.max_connections * pc.max_link_share / 100).max(1),
    }
}

/// The state for `cfg`.
fn build(cfg: &Config, lasting: &Lasting) -> Result<Arc<State>, DnsError> {
    let pc = cfg.proxy.clone();
    let lan: Vec<Ipv4Net> = cfg.links.iter().map(|l| l.subnet).collect();
    let mut subnets = lan.clone();
    subnets.extend(cfg.handoff.as_ref().map(|h| h.global_subnet));
    // Where the proxy may connect (DESIGN.md section 5). With a parent proxy, names are the
    // parent's to resolve: only addresses in the URL itself are checked here.
    let dest = Arc::new(dest::DestPolicy::new(
        subnets.clone(),
        pc.allow_destinations.clone(),
        pc.block_wan_subnet,
    ));
    let dns = if pc.parent.is_some() {
        Dns::new(&pc.dns)?
    } else {
        Dns::new(&pc.dns)?.with_policy(dest.clone())
    };
    let mut http = HttpConnector::new_with_resolver(dns.clone());
    http.set_connect_timeout(Some(pc.connect_timeout));
    http.set_nodelay(true);
    let parent = pc
        .parent
        .as_ref()
        .and_then(|(h, p)| format!("http://{h}:{p}").parse().ok());
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pc.idle_timeout)
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector::Upstream::new(http, parent));
    Ok(Arc::new(State {
        dest,
        access: lasting.access.clone(),
        cfg: pc,
        dns,
        client,
        direct: subnets,
        own: cfg
            .links
            .iter()
            .map(|l| l.address)
            .chain(cfg.handoff.as_ref().map(|h| h.global_address))
            .collect(),
        counters: lasting.counters.clone(),
        moves: lasting.moves.clone(),
    }))
}

/// The proxy's shared handles.
pub struct Shared {
    /// Clients moved by P-Handoff (their connections are paced for a moment).
    pub moves: Arc<crate::moves::Moves>,
    /// Global addresses routed now.
    pub globals: Arc<crate::globals::RoutedGlobals>,
    /// The live state for `homespotd status`.
    pub live: Arc<crate::status::Live>,
    /// Reloaded configs.
    pub reload: tokio::sync::watch::Receiver<Arc<Config>>,
}

/// Runs the proxy until `shutdown`, taking reloaded configs as they come; returns its state.
pub async fn run(
    cfg: &Config,
    listeners: Listeners,
    shared: Shared,
    shutdown: CancellationToken,
) -> Result<Arc<State>, DnsError> {
    let Shared {
        moves,
        globals,
        live,
        mut reload,
    } = shared;
    let lan: Vec<Ipv4Net> = cfg.links.iter().map(|l| l.subnet).collect();
    let devices = devices::Devices::new(
        cfg.links
            .iter()
            .map(|l| (l.subnet, l.interface.clone()))
            .collect(),
    );
    let lasting = Lasting {
        access: Arc::new(Access::new(lan, globals, devices, limits(&cfg.proxy))),
        counters: Arc::default(),
        moves,
    };
    let state = build(cfg, &lasting)?;
    live.set_proxy(state.clone());
    let (current, states) = tokio::sync::watch::channel(state.clone());
    let mut tasks = Vec::new();
    tokio::spawn(crate::memory::give_back_after_parking(
        state.clone(),
        shutdown.clone(),
    ));
    for (listener, pages_only) in listeners.list {
        if let Ok(a) = listener.local_addr() {
            info!(listen = %a, pages_only, "proxy listening");
        }
        tasks.push(tokio::spawn(accept(
            listener,
            pages_only,
            states.clone(),
            shutdown.clone(),
        )));
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Ok(()) = reload.changed() => {
                let cfg = reload.borrow_and_update().clone();
                match build(&cfg, &lasting) {
                    Ok(s) => {
                        lasting.access.set_limits(limits(&cfg.proxy));
                        current.send_replace(s);
                        info!("proxy: new configuration applied to new connections");
                    }
                    Err(e) => warn!(error = %e, "proxy: new configuration not applied"),
                }
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let last = current.borrow().clone();
    Ok(last)
}

impl State {
    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// How many idle connections have been parked so far.
    pub fn parked(&self) -> u64 {
        self.counters.parked.load(Ordering::Relaxed)
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> usize {
        self.access.open()
    }
}

async fn accept(
    listener: TcpListener,
    pages_only: bool,
    states: tokio::sync::watch::Receiver<Arc<State>>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = states.borrow().clone();
        let ticket = match state.access.admit(peer.ip()) {
            Ok(t) => t,
            Err(why) => {
                let (status, reason, counter) = match why {
                    Refusal::NotLan => (
                        StatusCode::FORBIDDEN,
                        "this proxy serves only the HomeSpot's own networks",
                        &state.counters.refused_not_lan,
                    ),
                    Refusal::TooManyTotal => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the proxy has too many connections; try again",
                        &state.counters.refused_busy,
                    ),
                    Refusal::TooManyFromClient => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many connections from your device",
                        &state.counters.refused_busy,
                    ),
                    Refusal::TooManyOnLink => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many connections from your network link; try again",
                        &state.counters.refused_busy,
                    ),
                };
                counter.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, ?why, "connection refused");
                tokio::spawn(refuse(stream, status, reason));
                continue;
            }
        };
        state.counters.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        tokio::spawn(conn::serve(
            stream,
            pages_only,
            state.clone(),
            Arc::new(ticket),
        ));
    }
}

async fn refuse(mut stream: TcpStream, status: StatusCode, reason: &'static str) {
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        stream.write_all(&reply::raw_error(status, reason)),
    )
    .await;
}

async fn handle(
    state: &Arc<State>,
    req: Request<Incoming>,
    local: Ipv4Addr,
    pages_only: bool,
    sig: &Arc<conn::Signal>,
) -> Response<Body> {
    let keep_alive = wants_keep_alive(&req);
    sig.begin();
    let resp = route(state, req, local, pages_only, sig).await;
    sig.responded();
    if resp.status().is_client_error() || resp.status().is_server_error() {
        state.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    let closing = resp
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    if keep_alive && !closing && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        sig.park_after(resp)
    } else {
        resp
    }
}

/// The length of the request target as sent, without building the string.
fn target_len(uri: &http::Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    let auth = uri.authority().map_or(0, |a| a.as_str().len());
    let pq = uri.path_and_query().map_or(0, |p| p.as_str().len());
    scheme + auth + pq
}

/// Whether the client asked to keep the connection after this request (RFC 9112 section 9.3).
fn wants_keep_alive(req: &Request<Incoming>) -> bool {
    if req.method() == Method::CONNECT {
        return false;
    }
    let has = |token: &str| {
        req.headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match req.version() {
        http::Version::HTTP_11 => !has("close"),
        http::Version::HTTP_10 => has("keep-alive"),
        _ => false,
    }
}

async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    local: Ipv4Addr,
    pages_only: bool,
    sig: &Arc<conn::Signal>,
) -> Response<Body> {
    let cfg = &state.cfg;
    let target_len = target_len(req.uri());
    if target_len > cfg.max_request_line {
        return error(
            StatusCode::URI_TOO_LONG,
            &format!("request target longer than {} bytes", cfg.max_request_line),
        );
    }
    let head = target_len
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head > cfg.max_header_bytes {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("request head larger than {} bytes", cfg.max_header_bytes),
        );
    }
    let proxied =
        req.method() == Method::CONNECT || (req.uri().scheme().is_some() && !is_self(state, &req));
    if proxied && pages_only {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "this port serves only the HomeSpot's pages; the proxy is on port {}",
                cfg.port
            ),
        );
    }
    if req.method() == Method::CONNECT {
        let r = tunnel::connect(state, req, sig).await;
        if r.status().is_success() {
            state.counters.tunnels.fetch_add(1, Ordering::Relaxed);
        }
        r
    } else if proxied {
        if let Some(r) = refused_destination(state, req.uri().host().unwrap_or("")) {
            return r;
        }
        state.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        forward::forward(&state.client, req, &state.cfg).await
    } else {
        local_page(state, &req, local)
    }
}

/// 403 with the reason when the URL's host is, by itself, a destination the proxy refuses (an
/// address in any spelling, or `localhost`); names are checked on what they resolve to.
fn refused_destination(state: &State, host: &str) -> Option<Response<Body>> {
    let why = if dest::is_localhost_name(host) {
        Some(format!("{host} is the router itself"))
    } else {
        dest::numeric_host(host).and_then(|ip| state.dest.refusal(ip))
    };
    why.map(|w| {
        state
            .counters
            .refused_destination
            .fetch_add(1, Ordering::Relaxed);
        error(
            StatusCode::FORBIDDEN,
            &format!("{w}: not allowed through this proxy"),
        )
    })
}

/// An absolute-form request for the HomeSpot itself: one of its link addresses, on one of the
/// proxy's ports. Served locally rather than looped through the proxy.
fn is_self(state: &State, req: &Request<Incoming>) -> bool {
    let Some(IpAddr::V4(host)) = req.uri().host().and_then(|h| h.parse::<IpAddr>().ok()) else {
        return false;
    };
    let port = req.uri().port_u16().unwrap_or(80);
    (port == state.cfg.port || Some(port) == state.cfg.pac_port) && state.own.contains(&host)
}

fn local_page(state: &State, req: &Request<Incoming>, local: Ipv4Addr) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD here");
    }
    match req.uri().path() {
        "/wpad.dat" | "/proxy.pac" => {
            state.counters.local.fetch_add(1, Ordering::Relaxed);
            let text = pac::pac(local, state.cfg.port, &state.direct);
            let mut r = Response::new(full(text));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(pac::CONTENT_TYPE),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            );
            r
        }
        "/" => Response::new(full(format!(
            "HomeSpot at {local}. Proxy: {local}:{}. Configuration: http://{local}/wpad.dat\n",
            state.cfg.port
        ))),
        _ => error(StatusCode::NOT_FOUND, "no such page on the HomeSpot"),
    }
}
