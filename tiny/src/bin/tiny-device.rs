//! `tiny-device`: the tiny client's example program on Linux. Each radio is a TAP device (made
//! by the program; attach it to a bridge or give it to a namespace). It takes a lease on each,
//! finds the HomeSpot whose identity it was given, completes the handshake, and sends telemetry
//! from its global address, moving between the radios when one dies. One line per event on
//! stdout, and a status line every second.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::Parser;
use embassy_net_tuntap::TunTapDevice;
use embassy_time::{Duration, Instant, Timer};
use phandoff::client::ClientConfig;
use phandoff_embassy::{AppConfig, DeviceConfig, Note, Resources, Shared, Telemetry};
use rand_chacha::rand_core::SeedableRng;

/// The tiny P-Handoff client over two TAP devices.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// The TAP devices to make, radio 0 (preferred) then radio 1.
    #[arg(long, num_args = 2, value_names = ["TAP0", "TAP1"], default_values = ["tap0", "tap1"])]
    tap: Vec<String>,
    /// The HomeSpot's identity (64 hex digits: `homespotd status` shows it as "identity").
    #[arg(long)]
    identity: String,
    /// The device's secret key (32 bytes), made on first use.
    #[arg(long, default_value = "tiny-device.key")]
    key: PathBuf,
    /// UDP port of the telemetry service on the HomeSpot's global address.
    #[arg(long, default_value_t = 5555)]
    port: u16,
    /// Telemetry datagrams per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Probe period per link, in milliseconds.
    #[arg(long, default_value_t = 20)]
    probe_ms: u64,
    /// Unanswered probes in a row that make a link dead.
    #[arg(long, default_value_t = 4)]
    probe_misses: u32,
}

fn hex32(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return Err(format!(
            "--identity: want 64 hex digits, got {} characters",
            s.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("--identity: not hex at digit {}", 2 * i + 1))?;
    }
    Ok(out)
}

fn key(path: &PathBuf) -> Result<[u8; 32], String> {
    match std::fs::read(path) {
        Ok(b) => b
            .try_into()
            .map_err(|_| format!("{}: a key is 32 bytes", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| format!("OS randomness: {e}"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            f.write_all(&k)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(k)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn fail(msg: String) -> ! {
    eprintln!("tiny-device: {msg}");
    std::process::exit(2)
}

fn line(start: Instant, s: String) {
    println!("{:>8} {s}", start.elapsed().as_millis());
}

fn note(start: Instant, n: Note) {
    let s = match n {
        Note::Lease {
            radio,
            address,
            router,
        } => format!(
            "lease radio={radio} address={address} router={}",
            router.map_or("none".into(), |r| r.to_string())
        ),
        Note::Discovered { radio, link } => format!("discovered radio={radio} link={link}"),
        Note::IdentityMismatch => "identity_mismatch (an advert from another identity, ignored)".into(),
        Note::Associated {
            global,
            homespot,
            radio,
            renewed,
            took_us,
        } => format!(
            "associated global={global} homespot={homespot} radio={radio} renewed={renewed} took_ms={:.1}",
            took_us as f64 / 1000.0
        ),
        Note::AssociateFailed => "associate_failed (trying again in 1 s)".into(),
        Note::SessionLost => "session_lost (re-handshaking)".into(),
        Note::Switched { radio, took_us } => format!(
            "switched radio={radio} took_ms={:.1}",
            took_us as f64 / 1000.0
        ),
        Note::SwitchFailed { radio } => format!("switch_failed radio={radio}"),
        Note::LinkDead { radio } => format!("link_dead radio={radio}"),
        Note::LinkAlive { radio } => format!("link_alive radio={radio}"),
        Note::Refused(c) => format!(
            "refused malformed={} forged={} replayed={} wrong_identity={}",
            c.malformed, c.forged, c.replayed, c.wrong_identity
        ),
    };
    line(start, s);
}

async fn status(start: Instant, sh: &Shared, tel: &Telemetry) -> ! {
    loop {
        Timer::after(Duration::from_secs(1)).await;
        let c = sh.counts();
        line(
            start,
            format!(
                "status global={} active={} sent={} echoes={} runts={} full={} no_path={}",
                sh.global().map_or("none".into(), |g| g.to_string()),
                sh.active().map_or("none".into(), |a| a.to_string()),
                tel.sent(),
                tel.echoes(),
                c.runts,
                c.full,
                c.no_path
            ),
        );
    }
}

#[embassy_executor::main]
async fn main(_spawner: embassy_executor::Spawner) {
    let args = Args::parse();
    let identity = hex32(&args.identity).unwrap_or_else(|e| fail(e));
    let secret = key(&args.key).unwrap_or_else(|e| fail(e));
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap_or_else(|e| fail(format!("OS randomness: {e}")));
    let rng = rand_chacha::ChaCha20Rng::from_seed(seed);
    // Each radio its own MAC, stable for this key (the HomeSpot leases by MAC).
    let public = phandoff::crypto::ClientKeys::from_secret(secret).public();
    let mac = |i: u8| [0x02, public[0], public[1], public[2], public[3], i];
    let sh = Shared::new([mac(0), mac(1)]);
    let tel = Telemetry::new();
    let open = |name: &str| {
        TunTapDevice::new(name).unwrap_or_else(|e| fail(format!("TAP device {name}: {e}")))
    };
    let (a, b) = (open(&args.tap[0]), open(&args.tap[1]));
    let epoch_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
        .saturating_sub(Instant::now().as_micros());
    let cfg = DeviceConfig {
        identity,
        secret,
        preferred: 0,
        client: ClientConfig {
            probe_interval: core::time::Duration::from_millis(args.probe_ms.max(5)),
            probe_misses: args.probe_misses.max(1),
            ..ClientConfig::default()
        },
        epoch_us,
    };
    let app = AppConfig {
        port: args.port,
        period: Duration::from_micros(1_000_000 / u64::from(args.rate.max(1))),
    };
    let start = Instant::now();
    line(
        start,
        format!(
            "started taps={},{} macs={:02x?},{:02x?}",
            args.tap[0],
            args.tap[1],
            sh.mac(0),
            sh.mac(1)
        ),
    );
    let mut res = Box::new(Resources::new());
    let mut report = |n: Note| note(start, n);
    embassy_futures::join::join(
        phandoff_embassy::run(&mut res, &sh, &tel, a, b, cfg, app, rng, &mut report),
        status(start, &sh, &tel),
    )
    .await;
}
