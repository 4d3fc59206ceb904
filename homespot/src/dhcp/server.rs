//! The DHCP server's I/O: one UDP socket per link, the engine, and group commit.
//!
//! Durability without losing throughput: the engine task hands leases to a writer thread one
//! batch at a time. While a batch is being committed, new requests are handled and their leases
//! and replies queue up for the next batch. A reply whose lease is in a batch is sent only after
//! that batch's commit returned, so every ACK a client sees is on disk.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dhcproto::v4::MessageType;
use dhcproto::Encodable;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::engine::{Counters, Destination, Engine, Notice, Reply, MAX_PACKET};
use super::lease::{Lease, Secs};
use crate::config::Config;
use crate::status::Live;
use crate::store::{LeaseStore, StoreError};

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;

/// The bound sockets, one per configured link, in config order; `None` for a link whose
/// interface is missing.
pub struct Sockets {
    links: Vec<Option<Arc<UdpSocket>>>,
    names: Vec<String>,
}

impl Sockets {
    /// Binds 0.0.0.0:67 on each link's interface (SO_BINDTODEVICE), with broadcast allowed;
    /// a missing interface is left for later ([`run`] binds it when it appears). Must be
    /// called inside a tokio runtime.
    pub fn bind(cfg: &Config) -> io::Result<Sockets> {
        let mut links = Vec::new();
        let mut names = Vec::new();
        for link in &cfg.links {
            let w = crate::linkwatch::Watched {
                name: link.name.clone(),
                interface: link.interface.clone(),
                address: link.address,
            };
            let s = if crate::linkwatch::present_now(&[w])[0].is_some() {
                Some(Arc::new(bind_one(&link.interface)?))
            } else {
                None
            };
            links.push(s);
            names.push(link.interface.clone());
        }
        Ok(Sockets { links, names })
    }
}

/// The DHCP socket of one interface.
fn bind_one(ifname: &str) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(ifname.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("{ifname}: {e}")))?;
    s.set_recv_buffer_size(1 << 21)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)).into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind port 67 on {ifname}: {e}")))?;
    UdpSocket::from_std(s.into())
}

/// A packet from one link.
struct Datagram {
    link: usize,
    src: Ipv4Addr,
    data: Vec<u8>,
}

/// A request to forget the lease on an address (the admin panel); `done` says whether one
/// was bound there.
#[derive(Debug)]
pub struct Forget {
    /// The leased address.
    pub address: Ipv4Addr,
    /// The answer.
    pub done: tokio::sync::oneshot::Sender<bool>,
}

/// What the DHCP server is told while it runs.
pub struct Inputs {
    /// Which links' interfaces are there (ifindex).
    pub present: watch::Receiver<crate::linkwatch::Present>,
    /// Each config the reload path applies.
    pub reload: watch::Receiver<Arc<Config>>,
    /// Leases to forget (the admin panel).
    pub forget: mpsc::Receiver<Forget>,
}

/// Runs the DHCP server until `shutdown` is cancelled; returns the final counters.
/// Leases in `store` are loaded first. On shutdown the batch in flight is finished.
pub async fn run(
    cfg: Config,
    mut sockets: Sockets,
    store: Arc<LeaseStore>,
    live: Arc<Live>,
    inputs: Inputs,
    shutdown: CancellationToken,
) -> Result<Counters, StoreError> {
    let Inputs {
        mut present,
        mut reload,
        mut forget,
    } = inputs;
    let mut engine = Engine::new(&cfg);
    let loaded = store.load()?;
    live.restore(loaded.leases.iter().cloned());
    let restored = engine.restore(loaded.leases);
    info!(
        leases = restored,
        undecodable = loaded.undecodable,
        active = engine.table().active(unix_now()),
        "lease database loaded"
    );

    let (pkt_tx, mut pkt_rx) = mpsc::channel::<Datagram>(4096);
    let recv_stop = CancellationToken::new();
    // One receiver per link, replaced when its interface is re-created.
    let mut receivers: Vec<CancellationToken> = Vec::new();
    let mut bound_to: Vec<Option<u32>> = present.borrow_and_update().clone();
    for (i, sock) in sockets.links.iter().enumerate() {
        let stop = recv_stop.child_token();
        if let Some(sock) = sock {
            tokio::spawn(receive(i, sock.clone(), pkt_tx.clone(), stop.clone()));
        }
        receivers.push(stop);
    }

    let (writer, mut done_rx) = Writer::start(store);
    let mut batch = Batch::default();
    let mut in_flight: Option<Batch> = None;
    let mut warned = Warned::default();

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Ok(()) = reload.changed() => {
                let cfg = reload.borrow_and_update().clone();
                engine.reconfigure(&cfg);
                info!("DHCP: new configuration applied");
            }
            Some(f) = forget.recv() => {
                let forgotten = engine.forget(unix_now(), f.address);
                let done = forgotten.is_some();
                if let Some(l) = forgotten {
                    info!(address = %l.addr, "lease forgotten (admin panel)");
                    batch.granted.push(l.clone());
                    batch.leases.push(l);
                    if in_flight.is_none() {
                        in_flight = Some(writer.submit(std::mem::take(&mut batch)));
                    }
                }
                let _ = f.done.send(done);
            }
            Ok(()) = present.changed() => {
                let now = present.borrow_and_update().clone();
                rebind(&mut sockets, &mut receivers, &mut bound_to, &now, &pkt_tx, &recv_stop, &live);
            }
            done = done_rx.recv(), if in_flight.is_some() => {
                let finished = in_flight.take().unwrap_or_default();
                let lost = finish_batch(&sockets, finished, done, &mut warned, &live).await;
                if lost > 0 {
                    engine.not_written(lost);
                    live.dhcp_counters(engine.counters(), engine.table().offers_outstanding());
                }
                if !batch.leases.is_empty() {
                    in_flight = Some(writer.submit(std::mem::take(&mut batch)));
                }
            }
            pkt = pkt_rx.recv() => {
                let Some(first) = pkt else { break };
                let mut next = Some(first);
                // Drain what is already queued so one wake-up serves many packets.
                while let Some(d) = next {
                    handle(&mut engine, &sockets, &mut batch, &mut warned, &live, d).await;
                    next = pkt_rx.try_recv().ok();
                }
                live.dhcp_counters(engine.counters(), engine.table().offers_outstanding());
                if in_flight.is_none() && !batch.leases.is_empty() {
                    in_flight = Some(writer.submit(std::mem::take(&mut batch)));
                }
            }
        }
    }
    recv_stop.cancel();
    // Finish what was acknowledged in memory: commit and answer, so clients are not left waiting.
    if in_flight.is_some() {
        let done = done_rx.recv().await;
        let finished = in_flight.take().unwrap_or_default();
        engine.not_written(finish_batch(&sockets, finished, done, &mut warned, &live).await);
    }
    if !batch.leases.is_empty() {
        let last = writer.submit(std::mem::take(&mut batch));
        let done = done_rx.recv().await;
        engine.not_written(finish_batch(&sockets, last, done, &mut warned, &live).await);
    }
    Ok(engine.counters().clone())
}

/// Binds a new socket for each link whose interface is new (or drops the socket of one that
/// is gone), and marks the links present or not in `live`.
fn rebind(
    sockets: &mut Sockets,
    receivers: &mut [CancellationToken],
    bound_to: &mut [Option<u32>],
    now: &[Option<u32>],
    pkt_tx: &mpsc::Sender<Datagram>,
    recv_stop: &CancellationToken,
    live: &Live,
) {
    for (i, is) in now.iter().enumerate() {
        let Some(was) = bound_to.get_mut(i) else {
            continue;
        };
        if *was == *is && (is.is_none() || sockets.links[i].is_some()) {
            continue;
        }
        receivers[i].cancel();
        sockets.links[i] = None;
        *was = *is;
        if is.is_none() {
            live.set_present(i, false);
            continue;
        }
        match bind_one(&sockets.names[i]) {
            Ok(s) => {
                let s = Arc::new(s);
                let stop = recv_stop.child_token();
                tokio::spawn(receive(i, s.clone(), pkt_tx.clone(), stop.clone()));
                receivers[i] = stop;
                sockets.links[i] = Some(s);
                live.set_present(i, true);
                info!(interface = %sockets.names[i], "serving DHCP");
            }
            Err(e) => {
                // Tried again at the next change, or the next second's check.
                *was = None;
                warn!(interface = %sockets.names[i], error = %e, "cannot bind the DHCP socket");
            }
        }
    }
}

async fn handle(
    engine: &mut Engine,
    sockets: &Sockets,
    batch: &mut Batch,
    warned: &mut Warned,
    live: &Live,
    d: Datagram,
) {
    let out = engine.handle_packet(unix_now(), d.link, d.src, &d.data);
    debug!(
        interface = sockets.names.get(d.link).map(String::as_str).unwrap_or("?"),
        src = %d.src,
        bytes = d.data.len(),
        reply = ?out.reply.as_ref().and_then(|r| r.message.opts().msg_type()),
        yiaddr = ?out.reply.as_ref().map(|r| r.message.yiaddr()),
        "DHCP packet"
    );
    if let Some(n) = &out.notice {
        warned.notice(n, sockets);
        if let Notice::PoolExhausted { link } = n {
            live.exhausted(*link);
        }
    }
    match (out.persist, out.reply) {
        (Some(lease), reply) => {
            batch.granted.push(lease.clone());
            batch.leases.push(lease);
            batch.replies.extend(reply);
        }
        (None, Some(reply)) => send(sockets, &reply).await,
        (None, None) => {}
    }
}

/// Answers a committed batch, or drops its replies if the commit failed; returns how many
/// ACKs were dropped.
async fn finish_batch(
    sockets: &Sockets,
    batch: Batch,
    done: Option<Result<(), StoreError>>,
    warned: &mut Warned,
    live: &Live,
) -> u64 {
    let acks = || {
        let ack = |r: &&Reply| r.message.opts().msg_type() == Some(MessageType::Ack);
        batch.replies.iter().filter(ack).count() as u64
    };
    match done {
        Some(Ok(())) => {
            for l in &batch.granted {
                live.lease(l);
            }
            for r in &batch.replies {
                if r.message.yiaddr() != Ipv4Addr::UNSPECIFIED {
                    info!(
                        interface = %sockets.names[r.link],
                        addr = %r.message.yiaddr(),
                        chaddr = %Mac(r.message.chaddr()),
                        "lease acknowledged"
                    );
                }
                send(sockets, r).await;
            }
            0
        }
        Some(Err(e)) => {
            if let Some(earlier_suppressed) = warned.unacked.allow() {
                error!(
                    error = %e,
                    dropped_replies = batch.replies.len(),
                    earlier_suppressed,
                    "lease commit failed; no ACK sent for this batch"
                );
            }
            acks()
        }
        None => {
            error!("lease writer stopped; no ACK sent for this batch");
            acks()
        }
    }
}

async fn receive(
    link: usize,
    sock: Arc<UdpSocket>,
    tx: mpsc::Sender<Datagram>,
    stop: CancellationToken,
) {
    // One byte more than accepted, so an oversized datagram is seen as such, not truncated.
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        let got = tokio::select! {
            _ = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => r,
        };
        match got {
            Ok((n, src)) => {
                let src = match src {
                    SocketAddr::V4(a) => *a.ip(),
                    SocketAddr::V6(a) => a.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                };
                let d = Datagram {
                    link,
                    src,
                    data: buf[..n].to_vec(),
                };
                if tx.send(d).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn send(sockets: &Sockets, reply: &Reply) {
    let Some(Some(sock)) = sockets.links.get(reply.link) else {
        return;
    };
    let bytes = match reply.message.to_vec() {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "could not encode reply");
            return;
        }
    };
    let to = match reply.dest {
        Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
        Destination::Unicast(a) => SocketAddrV4::new(a, CLIENT_PORT),
        Destination::Relay(a) => SocketAddrV4::new(a, SERVER_PORT),
        Destination::Hardware { addr, chaddr } => {
            match set_arp(sock, &sockets.names[reply.link], addr, chaddr) {
                Ok(()) => SocketAddrV4::new(addr, CLIENT_PORT),
                Err(e) => {
                    debug!(error = %e, "no ARP entry; broadcasting");
                    SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
                }
            }
        }
    };
    if let Err(e) = sock.send_to(&bytes, to).await {
        debug!(error = %e, %to, "send failed");
    }
}

/// Tells the kernel that `addr` is at `mac` on `ifname`, so a unicast reply can reach a client
/// that cannot answer ARP yet (what dnsmasq and ISC dhcpd do too).
fn set_arp(sock: &UdpSocket, ifname: &str, addr: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
    // SAFETY: arpreq is plain old data; all-zero is a valid value.
    let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
    let pa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in fits in sockaddr (both 16 bytes); we copy its bytes.
    req.arp_pa = unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(pa) };
    req.arp_ha.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in req.arp_ha.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    req.arp_flags = libc::ATF_COM;
    for (d, s) in req.arp_dev.iter_mut().zip(ifname.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    // SAFETY: valid fd, and `req` is a properly initialised arpreq for SIOCSARP.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSARP as _, &req) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Warnings for the operator: of each kind that can repeat with every packet (refused relays,
/// batches not acknowledged), at most [`WARN_BURST`] lines per [`WARN_WINDOW`] (a flood of
/// them must not flood the log; the rest are counted in the next line).
#[derive(Default)]
struct Warned {
    relays: Burst,
    unacked: Burst,
}

const WARN_BURST: u32 = 10;
const WARN_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// One kind of line, at most [`WARN_BURST`] per [`WARN_WINDOW`].
#[derive(Default)]
struct Burst {
    window: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl Burst {
    /// `Some(lines suppressed since the last one)` if this line may be logged.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= WARN_WINDOW)
        {
            self.window = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= WARN_BURST {
            self.suppressed += 1;
            return None;
        }
        self.in_window += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Warned {
    fn notice(&mut self, n: &Notice, sockets: &Sockets) {
        let name = |l: usize| sockets.names.get(l).map(String::as_str).unwrap_or("?");
        match n {
            Notice::RefusedRelay { src, giaddr } => {
                let Some(earlier_suppressed) = self.relays.allow() else {
                    return;
                };
                warn!(
                    %src,
                    %giaddr,
                    earlier_suppressed,
                    "refused a relayed DHCP packet: its sender is not in server.relays"
                );
            }
            Notice::PoolExhausted { link } => warn!(
                interface = name(*link),
                "address pool exhausted: new clients get no address (make the pool larger or the lease shorter)"
            ),
            Notice::PoolAvailable { link } => {
                info!(interface = name(*link), "address pool has free addresses again")
            }
        }
    }
}

/// Leases to commit together and the replies that wait for them.
#[derive(Default)]
struct Batch {
    leases: Vec<Lease>,
    replies: Vec<Reply>,
    /// The same leases, for the live view once they are written.
    granted: Vec<Lease>,
}

/// The thread that commits batches. One batch at a time, in order.
struct Writer {
    tx: std::sync::mpsc::Sender<Vec<Lease>>,
}

type CommitResults = mpsc::UnboundedReceiver<Result<(), StoreError>>;

impl Writer {
    /// Starts the thread; the receiver yields one result per submitted batch, in order.
    fn start(store: Arc<LeaseStore>) -> (Writer, CommitResults) {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Lease>>();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("lease-writer".into())
            .spawn(move || {
                while let Ok(leases) = rx.recv() {
                    let t = Instant::now();
                    let r = store.commit(&leases);
                    debug!(
                        leases = leases.len(),
                        micros = t.elapsed().as_micros() as u64,
                        "batch committed"
                    );
                    if done_tx.send(r).is_err() {
                        return;
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| error!(error = %e, "cannot start the lease writer"));
        (Writer { tx }, done_rx)
    }

    /// Sends the leases of `batch` to be committed; returns the batch to keep its replies.
    fn submit(&self, mut batch: Batch) -> Batch {
        let leases = std::mem::take(&mut batch.leases);
        if self.tx.send(leases).is_err() {
            error!("lease writer is gone");
        }
        batch
    }
}

/// Formats a hardware address as aa:bb:cc:...
struct Mac<'a>(&'a [u8]);

impl std::fmt::Display for Mac<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn unix_now() -> Secs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
