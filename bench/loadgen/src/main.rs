//! A small HTTP/1.1 load generator for the HomeSpot benchmarks (bench/proxy.sh).
//!
//! Modes: `proxy` (absolute-form GETs through an HTTP proxy), `direct` (origin-form GETs),
//! `connect-tls` (one CONNECT per connection through the proxy, TLS inside, then GETs over the
//! tunnel), and `idle` (open N keep-alive connections, make one request on each, hold them).
//! Every run is bounded by `--duration` (and `--hold` for idle) and stops by itself. Targets
//! are the test bed's own addresses; the TLS check is off because the origin's certificate is
//! self-signed for the bench.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Proxy,
    Direct,
    ConnectTls,
    /// TLS straight to the origin (the direct baseline for connect-tls).
    Tls,
    Idle,
}

/// HTTP load generator (bounded in time; for test-bed addresses only).
#[derive(Parser)]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// Where to connect: the proxy (proxy, connect-tls, idle) or the origin (direct), host:port.
    #[arg(long)]
    connect: String,
    /// The origin, host:port.
    #[arg(long)]
    origin: String,
    /// The path to GET.
    #[arg(long, default_value = "/1k")]
    path: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to send load, seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// New connection for every request (`Connection: close`).
    #[arg(long)]
    no_keepalive: bool,
    /// Idle mode: how long to hold the connections, seconds.
    #[arg(long, default_value_t = 10)]
    hold: u64,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let args = Arc::new(args);
    let tls = Arc::new(tls_config()?);
    if args.mode == Mode::Idle {
        return idle(&args, tls).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (a, s, e, t) = (args.clone(), stop.clone(), errors.clone(), tls.clone());
        tasks.push(tokio::spawn(async move { worker(a, s, e, t).await }));
    }
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        if let Ok(mut l) = t.await {
            lat.append(&mut l);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "requests={} errors={} rps={:.0} p50_ms={:.2} p99_ms={:.2}",
        lat.len(),
        errors.load(Ordering::Relaxed),
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

/// One connection's loop; returns request latencies in microseconds.
async fn worker(
    args: Arc<Args>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    tls: Arc<rustls::ClientConfig>,
) -> Vec<u32> {
    let mut lat = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let request = request(&args);
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match open(&args, &tls).await {
            Ok(c) => c,
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            match exchange(&mut conn, request.as_bytes(), &mut buf).await {
                Ok(keep) => {
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    if !keep || args.no_keepalive {
                        break;
                    }
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    lat
}

fn request(args: &Args) -> String {
    let conn = if args.no_keepalive {
        "close"
    } else {
        "keep-alive"
    };
    match args.mode {
        Mode::Proxy | Mode::Idle => format!(
            "GET http://{}{} HTTP/1.1\r\nHost: {}\r\nConnection: {conn}\r\n\r\n",
            args.origin, args.path, args.origin
        ),
        Mode::Direct | Mode::ConnectTls | Mode::Tls => {
            format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: {conn}\r\n\r\n",
                args.path, args.origin
            )
        }
    }
}

async fn open(args: &Args, tls: &Arc<rustls::ClientConfig>) -> Result<Box<dyn Io>> {
    let mut s = TcpStream::connect(&args.connect).await?;
    s.set_nodelay(true)?;
    if args.mode != Mode::ConnectTls && args.mode != Mode::Tls {
        return Ok(Box::new(s));
    }
    if args.mode == Mode::ConnectTls {
        connect_through(&mut s, &args.origin).await?;
    }
    let host = args
        .origin
        .split(':')
        .next()
        .unwrap_or("origin")
        .to_string();
    let name = rustls::pki_types::ServerName::try_from(host).context("server name")?;
    let c = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, s)
        .await?;
    Ok(Box::new(c))
}

async fn connect_through(s: &mut TcpStream, origin: &str) -> Result<()> {
    let req = format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 || head.len() > 4096 {
            bail!("proxy closed during CONNECT");
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        bail!("CONNECT refused");
    }
    Ok(())
}

/// Sends one request and reads one response with a Content-Length; returns keep-alive.
async fn exchange(conn: &mut Box<dyn Io>, req: &[u8], buf: &mut [u8]) -> Result<bool> {
    conn.write_all(req).await?;
    let mut have = 0;
    let head_end = loop {
        let n = conn.read(&mut buf[have..]).await?;
        if n == 0 {
            bail!("closed");
        }
        have += n;
        if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if have == buf.len() {
            bail!("head too large");
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") && !head.starts_with("http/1.0 200") {
        bail!("status: {}", head.lines().next().unwrap_or(""));
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no content-length")?;
    let mut body = have - head_end;
    while body < len {
        let n = conn.read(&mut buf[..]).await?;
        if n == 0 {
            bail!("closed in body");
        }
        body += n;
    }
    Ok(!head.contains("connection: close"))
}

async fn idle(args: &Args, tls: Arc<rustls::ClientConfig>) -> Result<()> {
    let req = request(args);
    let mut buf = vec![0u8; 16 * 1024];
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    for _ in 0..args.connections {
        if Instant::now() > deadline {
            break;
        }
        let mut c = open(args, &tls).await?;
        exchange(&mut c, req.as_bytes(), &mut buf).await?;
        held.push(c);
    }
    println!("held={}", held.len());
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    Ok(())
}

fn tls_config() -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Ok(cfg)
}

/// The bench origin's certificate is self-signed: accept any, verify the handshake signatures.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
