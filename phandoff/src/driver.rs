//! The tokio driver (feature `tokio`): one UDP socket per link, bound to its interface, with
//! broadcast allowed; a short loop that feeds datagrams and timeouts to an endpoint, sends its
//! transmits and forwards its events (quinn's `ConnectionDriver` shape).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::client::{Client, ClientEvent};
use crate::endpoint::{Dest, Instant, Transmit};
use crate::responder::{Event, Responder};

/// The UDP port of the protocol.
pub const PORT: u16 = 4747;

/// A socket on one link.
#[derive(Clone, Debug)]
pub struct LinkSocket {
    /// The link index it serves.
    pub link: u8,
    sock: Arc<UdpSocket>,
    /// The responder's second socket on the link, which the kernel hands the transport
    /// messages (sessions' probes and switches), so they never queue behind a flood of
    /// handshakes in the first one's buffer.
    sessions: Option<Arc<UdpSocket>>,
    port: u16,
}

/// Classic BPF for the link's SO_REUSEPORT group: the UDP payload's fourth byte is the message
/// type; transport messages (6) go to the group's second socket, everything else to the first.
fn steer_transport(s: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let code = [
        // ldb [3]
        libc::sock_filter {
            code: 0x30,
            jt: 0,
            jf: 0,
            k: 3,
        },
        // jeq #6, next, skip one
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: 6,
        },
        // ret #1
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 1,
        },
        // ret #0
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `code`, both alive for the call; the kernel copies the program.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn link_socket(ifname: &str, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_broadcast(true)?;
    // Room for bursts (4 MiB: tens of ms of a flood), past the sysctl's limit when
    // privileged (homespotd is), else as much as it allows.
    if nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &(4 << 20)).is_err()
    {
        let _ = s.set_recv_buffer_size(4 << 20);
    }
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl LinkSocket {
    /// The responder's sockets on `ifname`: two in one SO_REUSEPORT group, the kernel steering
    /// transport messages to the second (see [`LinkSocket`]). Where the kernel refuses the
    /// steering program, one socket serves all, as [`LinkSocket::bind`]. Needs a tokio runtime.
    pub fn bind_responder(link: u8, ifname: &str, port: u16) -> io::Result<LinkSocket> {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let main = link_socket(ifname, true)?;
        main.bind(&addr.into())?;
        let sessions = link_socket(ifname, true)
            .and_then(|s| s.bind(&addr.into()).map(|()| s))
            .and_then(|s| steer_transport(&main).map(|()| s))
            .ok()
            .and_then(|s| UdpSocket::from_std(s.into()).ok())
            .map(Arc::new);
        Ok(LinkSocket {
            link,
            sock: Arc::new(UdpSocket::from_std(main.into())?),
            sessions,
            port,
        })
    }

    /// Binds `0.0.0.0:port` on `ifname` (SO_BINDTODEVICE) with broadcast allowed. Needs a
    /// tokio runtime.
    pub fn bind(link: u8, ifname: &str, port: u16) -> io::Result<LinkSocket> {
        let s = link_socket(ifname, false)?;
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
        Ok(LinkSocket {
            link,
            sock: Arc::new(UdpSocket::from_std(s.into())?),
            sessions: None,
            port,
        })
    }

    async fn send(&self, t: &Transmit) {
        let to = match t.to {
            Dest::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, self.port),
            Dest::Unicast(a) => a,
        };
        let _ = self.sock.send_to(&t.payload, to).await;
    }
}

struct Datagram {
    link: u8,
    from: SocketAddrV4,
    data: Vec<u8>,
}

fn receive_all(socks: &[LinkSocket]) -> (mpsc::Sender<Datagram>, mpsc::Receiver<Datagram>) {
    let (tx, rx) = mpsc::channel(256);
    for s in socks {
        drop(receive(s.clone(), tx.clone()));
    }
    (tx, rx)
}

fn receive(s: LinkSocket, tx: mpsc::Sender<Datagram>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; crate::wire::MAX_MESSAGE + 1];
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                r = s.sock.recv_from(&mut buf) => match r {
                    Ok((n, SocketAddr::V4(from))) => {
                        let d = Datagram {
                            link: s.link,
                            from,
                            data: buf[..n].to_vec(),
                        };
                        if tx.send(d).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                },
            }
        }
    })
}

/// The responder's receiver: transport messages (sessions that exist) go to `fast`, which
/// the responder serves first; everything unauthenticated (Query, Initiation, junk) goes to
/// `slow`, a short queue that drops when full. A flood of handshakes then costs the
/// established clients' probes nothing but CPU: they never wait behind it.
fn receive_split(
    s: LinkSocket,
    fast: mpsc::Sender<Datagram>,
    slow: mpsc::Sender<Datagram>,
    dropped: Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut readers = vec![s.sock.clone()];
    readers.extend(s.sessions.clone());
    let mut tasks = Vec::new();
    for sock in readers {
        let (fast, slow, dropped, link) = (fast.clone(), slow.clone(), dropped.clone(), s.link);
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; crate::wire::MAX_MESSAGE + 1];
            loop {
                tokio::select! {
                    _ = fast.closed() => return,
                    r = sock.recv_from(&mut buf) => match r {
                        Ok((n, SocketAddr::V4(from))) => {
                            if crate::wire::is_transport(&buf[..n]) {
                                let d = Datagram { link, from, data: buf[..n].to_vec() };
                                if fast.send(d).await.is_err() {
                                    return;
                                }
                            } else if let Ok(permit) = slow.try_reserve() {
                                permit.send(Datagram { link, from, data: buf[..n].to_vec() });
                            } else {
                                // Full: dropped before it costs even a copy.
                                dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                    },
                }
            }
        }));
    }
    tasks
}

/// Maps tokio's clock onto the core's [`Instant`]: microseconds since the Unix epoch, read
/// once from the system clock at start and advanced by the monotonic clock after that (so a
/// client's handshake timestamps grow across its restarts, and the HomeSpot's record of when
/// an address was last used means the same after its restart).
#[derive(Clone, Copy)]
pub struct Clock {
    start: tokio::time::Instant,
    origin: u64,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        let origin = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Clock {
            start: tokio::time::Instant::now(),
            origin,
        }
    }
    /// Now, for the core.
    pub fn now(&self) -> Instant {
        Instant(self.origin + self.start.elapsed().as_micros() as u64)
    }
    fn deadline(&self, t: Instant) -> tokio::time::Instant {
        self.start + std::time::Duration::from_micros(t.0.saturating_sub(self.origin))
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// The OS's randomness for an endpoint, checked once: a source that cannot be read is an
/// error here, never a silent fallback. (Later reads cannot fail on Linux once the first
/// succeeded; if one ever did, the generator panics rather than hand out weak keys.)
pub fn os_rng() -> io::Result<rand_core::UnwrapErr<rand_core::OsRng>> {
    use rand_core::TryRngCore;
    let mut probe = [0u8; 32];
    rand_core::OsRng
        .try_fill_bytes(&mut probe)
        .map_err(|e| io::Error::other(format!("no randomness from the OS: {e}")))?;
    Ok(rand_core::UnwrapErr(rand_core::OsRng))
}

async fn flush<T: FnMut() -> Option<Transmit>>(socks: &[LinkSocket], mut next: T) {
    while let Some(t) = next() {
        if let Some(s) = socks.iter().find(|s| s.link == t.link) {
            s.send(&t).await;
        }
    }
}

/// What a running responder reports, at most twice a second.
#[derive(Debug, Clone, Default)]
pub struct ResponderStatus {
    /// Its counters.
    pub counters: crate::responder::Counters,
    /// Addresses assigned, and the pool's size.
    pub pool: (usize, usize),
    /// Live sessions, and handshakes waiting for their Confirm.
    pub sessions: (usize, usize),
    /// Unauthenticated datagrams dropped because their queue was full (a flood).
    pub dropped: u64,
}

/// A change of the responder's links while it runs.
#[derive(Debug)]
pub enum LinkChange {
    /// Serve this socket's link with it (replacing the link's socket, if any: its interface
    /// was re-created).
    Attach(LinkSocket),
    /// This link's interface is gone: close its socket.
    Detach(u8),
    /// This link's L2 identity, as the OS reports it (a Bluetooth adapter's address).
    L2Id(u8, Vec<u8>),
}

/// Runs `r` on `socks` until `stop` fires (or `events` closes); events go to `events`, the
/// status to `status`. The caller sends the global address of each `Route` event to
/// `installed` once the route is in place (that releases the SwitchAck). Returns the
/// responder, for its counters.
pub async fn run_responder(
    r: Responder,
    socks: Vec<LinkSocket>,
    events: mpsc::Sender<Event>,
    installed: mpsc::Receiver<Ipv4Addr>,
    status: tokio::sync::watch::Sender<ResponderStatus>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Responder {
    let (_keep, links) = mpsc::channel(1);
    run_responder_with_links(r, socks, links, events, installed, status, stop).await
}

/// [`run_responder`], with links attached and detached through `links` as their interfaces
/// come and go.
pub async fn run_responder_with_links(
    mut r: Responder,
    mut socks: Vec<LinkSocket>,
    mut links: mpsc::Receiver<LinkChange>,
    events: mpsc::Sender<Event>,
    mut installed: mpsc::Receiver<Ipv4Addr>,
    status: tokio::sync::watch::Sender<ResponderStatus>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Responder {
    let clock = Clock::new();
    let (fast_tx, mut fast) = mpsc::channel(1024);
    let (slow_tx, mut slow) = mpsc::channel(128);
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut readers: Vec<(u8, Vec<tokio::task::JoinHandle<()>>)> = Vec::new();
    for s in &socks {
        let tasks = receive_split(s.clone(), fast_tx.clone(), slow_tx.clone(), dropped.clone());
        readers.push((s.link, tasks));
    }
    let mut reported = tokio::time::Instant::now();
    loop {
        let wake = r.poll_timeout().map(|t| clock.deadline(t));
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(change) = links.recv() => {
                let link = match &change {
                    LinkChange::Attach(s) => s.link,
                    LinkChange::Detach(l) => *l,
                    LinkChange::L2Id(l, id) => {
                        r.set_l2_id(*l, id.clone());
                        continue;
                    }
                };
                for (_, tasks) in readers.iter().filter(|(l, _)| *l == link) {
                    tasks.iter().for_each(|t| t.abort());
                }
                readers.retain(|(l, _)| *l != link);
                socks.retain(|s| s.link != link);
                if let LinkChange::Attach(s) = change {
                    let tasks =
                        receive_split(s.clone(), fast_tx.clone(), slow_tx.clone(), dropped.clone());
                    readers.push((s.link, tasks));
                    socks.push(s);
                }
            }
            Some(d) = fast.recv() => r.handle_datagram(clock.now(), d.link, d.from, &d.data),
            Some(g) = installed.recv() => r.route_installed(g),
            _ = sleep_until(wake) => r.handle_timeout(clock.now()),
            d = slow.recv() => match d {
                Some(d) => r.handle_datagram(clock.now(), d.link, d.from, &d.data),
                None => break,
            },
        }
        flush(&socks, || r.poll_transmit()).await;
        let mut closed = false;
        while let Some(e) = r.poll_event() {
            if events.send(e).await.is_err() {
                closed = true;
                break;
            }
        }
        if closed {
            break;
        }
        if reported.elapsed() >= std::time::Duration::from_millis(500) {
            reported = tokio::time::Instant::now();
            status.send_replace(ResponderStatus {
                counters: r.counters().clone(),
                pool: r.pool_usage(),
                sessions: r.sessions(),
                dropped: dropped.load(std::sync::atomic::Ordering::Relaxed) as u64,
            });
        }
    }
    for (_, tasks) in readers {
        tasks.iter().for_each(|t| t.abort());
    }
    r
}

/// A command to a running client.
#[derive(Debug, Clone)]
pub enum Command {
    /// Broadcast a Query on this socket's link.
    Query(u8),
    /// Our interface with this address is on the HomeSpot's link.
    LinkUp(u8, Ipv4Addr),
    /// Associate over this link.
    Associate(u8),
    /// Switch to this link.
    Switch(u8),
    /// Serve one more link (a socket bound to its interface).
    Attach(LinkSocket),
    /// Our interface on this link is gone: stop probing it and close its socket.
    LinkDown(u8),
    /// Traffic from the HomeSpot arrived on this link (see [`Client::heard`]).
    Heard(u8),
    /// End the association over this link (see [`Client::bye`]).
    Bye(u8),
    /// Probe this link this often (see [`Client::set_probe_interval`]).
    ProbeInterval(u8, std::time::Duration),
}

/// Runs `c` on `socks`, taking commands and forwarding events, until either channel closes.
pub async fn run_client(
    mut c: Client,
    mut socks: Vec<LinkSocket>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<ClientEvent>,
) {
    let clock = Clock::new();
    let (tx, mut rx) = receive_all(&socks);
    let mut readers: Vec<(u8, tokio::task::JoinHandle<()>)> = Vec::new();
    loop {
        let wake = c.poll_timeout().map(|t| clock.deadline(t));
        // Datagrams first: on a busy machine a probe's answer and the next probe's timer are
        // often ready together, and the answer must count before the timer counts a miss.
        tokio::select! {
            biased;
            d = rx.recv() => match d {
                Some(d) => c.handle_datagram(clock.now(), d.link, &d.data),
                None => return,
            },
            cmd = commands.recv() => match cmd {
                Some(Command::Query(l)) => c.query(l),
                Some(Command::LinkUp(l, a)) => c.link_up(clock.now(), l, a),
                Some(Command::Associate(l)) => c.associate(clock.now(), l),
                Some(Command::Switch(l)) => c.switch(clock.now(), l),
                Some(Command::Attach(s)) => {
                    // Each attached socket gets a reader of its own, ended by LinkDown.
                    for (l, r) in &readers {
                        if *l == s.link {
                            r.abort();
                        }
                    }
                    readers.retain(|(l, _)| *l != s.link);
                    readers.push((s.link, receive(s.clone(), tx.clone())));
                    socks.retain(|x| x.link != s.link);
                    socks.push(s);
                }
                Some(Command::Heard(l)) => c.heard(clock.now(), l),
                Some(Command::Bye(l)) => c.bye(l),
                Some(Command::ProbeInterval(l, d)) => c.set_probe_interval(clock.now(), l, d),
                Some(Command::LinkDown(l)) => {
                    c.link_down(l);
                    socks.retain(|x| x.link != l);
                    for (x, r) in &readers {
                        if *x == l {
                            r.abort();
                        }
                    }
                    readers.retain(|(x, _)| *x != l);
                }
                None => return,
            },
            _ = sleep_until(wake) => c.handle_timeout(clock.now()),
        }
        flush(&socks, || c.poll_transmit()).await;
        while let Some(e) = c.poll_event() {
            if events.send(e).await.is_err() {
                return;
            }
        }
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
