//! `homespot-agent`: run the agent, or talk to a running one through its Mobility API.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use homespot_agent::config::Config;
use homespot_agent::events::Events;
use homespot_agent::manager::Manager;
use homespot_agent::path::{Meter, Path};
use homespot_agent::proxy::{self, Shared};
use homespot_agent::{api, links};

/// HomeSpot's laptop agent: prefers a HomeSpot and moves between its radios without breaking
/// connections (P-Handoff); elsewhere finds the network's proxy by WPAD and restarts
/// in-flight HTTP requests after a network change (L7 restart). Point applications at its
/// proxy (default 127.0.0.1:3129, or the PAC file http://127.0.0.1:3129/proxy.pac).
///
/// Environment: HOMESPOT_LOG sets what `run` logs (default "info"; e.g. "debug", or
/// "homespot_agent=debug"). Logs go to standard output, coloured only on a terminal.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (TOML; every key optional). Default: built-in defaults.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The Mobility API socket (overrides the config's agent.api_socket).
    #[arg(long, global = true)]
    api: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (as root: it sets routes, rules and the global address).
    Run,
    /// Show the running agent's state: the link in use, each link and what it is, the HomeSpot
    /// and our global address, trusted HomeSpots, warnings.
    Status {
        /// The Mobility API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Follow events as they happen (links, discovery, route changes, handoffs with their
    /// interruption), one line each, until interrupted.
    Events {
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move traffic to this link now: an interface name, or a kind (wifi, bluetooth,
    /// ethernet). `switch bluetooth` at a HomeSpot whose Bluetooth link is not up brings it
    /// up first (pairing the first time: open the HomeSpot's window with
    /// `homespotd bluetooth pair`).
    Switch {
        /// Interface name (wlan0) or kind (bluetooth).
        link: String,
    },
    /// Is this address a local peer (on one of our links or the HomeSpot's global subnet)?
    Lookup {
        /// IPv4 address.
        addr: String,
    },
    /// How would a request for this URL go now?
    Connect {
        /// URL.
        url: String,
    },
    /// Use this HomeSpot identity on the networks where it was refused (its fingerprint, or
    /// its first 12+ hex digits, as `status` shows under "warnings").
    Trust {
        /// The fingerprint.
        fingerprint: String,
    },
    /// Stop trusting this HomeSpot identity anywhere (its fingerprint, as `status` shows
    /// under "pinned").
    Forget {
        /// The fingerprint.
        fingerprint: String,
    },
    /// Evaluate a PAC file for a URL in the agent's sandbox, as pactester does (for checking
    /// a PAC file; no agent needed).
    Pac {
        /// The PAC file.
        file: PathBuf,
        /// The URL.
        url: String,
        /// What myIpAddress() returns (the link's address).
        #[arg(long, default_value = "127.0.0.1")]
        my_ip: std::net::Ipv4Addr,
    },
}

fn main() {
    let cli = Cli::parse();
    let cfg = match &cli.config {
        Some(p) => Config::load(p),
        None => Ok(Config::defaults()),
    };
    let mut cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("homespot-agent: {e}");
            std::process::exit(2);
        }
    };
    if let Some(a) = cli.api {
        cfg.api_socket = a;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("homespot-agent: {e}");
            std::process::exit(1);
        }
    };
    let r = match cli.cmd {
        Cmd::Run => rt.block_on(run(cfg)),
        Cmd::Status { json: false } => rt.block_on(status_text(cfg)),
        Cmd::Status { json: true } => rt.block_on(once(cfg, json!({"cmd": "status"}))),
        Cmd::Events { json } => rt.block_on(events(cfg, json)),
        Cmd::Switch { link } => rt.block_on(once(cfg, json!({"cmd": "switch", "link": link}))),
        Cmd::Lookup { addr } => rt.block_on(once(cfg, json!({"cmd": "lookup", "addr": addr}))),
        Cmd::Connect { url } => rt.block_on(once(cfg, json!({"cmd": "connect", "url": url}))),
        Cmd::Trust { fingerprint } => rt.block_on(once(
            cfg,
            json!({"cmd": "trust", "fingerprint": fingerprint}),
        )),
        Cmd::Forget { fingerprint } => rt.block_on(once(
            cfg,
            json!({"cmd": "forget", "fingerprint": fingerprint}),
        )),
        Cmd::Pac { file, url, my_ip } => pac(&cfg, &file, &url, my_ip),
    };
    if let Err(e) = r {
        eprintln!("homespot-agent: {e}");
        std::process::exit(1);
    }
}

fn pac(
    cfg: &Config,
    file: &std::path::Path,
    url: &str,
    my_ip: std::net::Ipv4Addr,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("{url}: no host"))?;
    let p = homespot_agent::pac::PacHandle::load(&text, my_ip, cfg.discovery.pac)?;
    println!("{}", p.find_raw_blocking(url, &host)?);
    Ok(())
}

async fn once(cfg: Config, req: serde_json::Value) -> anyhow::Result<()> {
    let (mut lines, _w) = api::request(&cfg.api_socket, &req).await?;
    let line = lines.next_line().await?.unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or(json!({"raw": line}));
    println!("{}", serde_json::to_string_pretty(&v)?);
    if v.get("ok") == Some(&json!(false)) {
        std::process::exit(1);
    }
    Ok(())
}

async fn status_text(cfg: Config) -> anyhow::Result<()> {
    let (mut lines, _w) = api::request(&cfg.api_socket, &json!({"cmd": "status"})).await?;
    let line = lines.next_line().await?.unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&line)?;
    print!("{}", homespot_agent::show::status_text(&v));
    Ok(())
}

async fn events(cfg: Config, json: bool) -> anyhow::Result<()> {
    let (mut lines, _w) = api::request(&cfg.api_socket, &json!({"cmd": "events"})).await?;
    while let Some(l) = lines.next_line().await? {
        if json {
            println!("{l}");
        } else {
            match serde_json::from_str::<serde_json::Value>(&l) {
                // The subscription's acknowledgement is for programs.
                Ok(v) if v.get("event").is_none() => {}
                Ok(v) => println!("{}", homespot_agent::show::event_line(&v)),
                Err(_) => println!("{l}"),
            }
        }
    }
    Ok(())
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOMESPOT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let listener = tokio::net::TcpListener::bind(cfg.proxy.listen)
        .await
        .map_err(|e| anyhow::anyhow!("proxy.listen {}: {e}", cfg.proxy.listen))?;
    let api_listener = api::bind(&cfg.api_socket)
        .map_err(|e| anyhow::anyhow!("agent.api_socket {}: {e}", cfg.api_socket.display()))?;
    let (path_tx, path_rx) = tokio::sync::watch::channel(Path::none());
    let (gap_tx, gap_rx) = tokio::sync::mpsc::unbounded_channel();
    let meter = Arc::new(Meter::new(gap_tx));
    let events = Events::new();
    let pool = proxy::upstream::Pool::default();
    let clamp = pool.clamp.clone();
    let shared = Arc::new(Shared {
        path: path_rx,
        meter: meter.clone(),
        pool,
        cfg: cfg.proxy.clone(),
    });
    let snapshots = links::watch()?;
    let (api_tx, api_rx) = tokio::sync::mpsc::channel(16);
    let manager = Manager::new(clamp, cfg.clone(), path_tx, meter, events.clone())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    tracing::info!(
        "homespot-agent: proxy on {}, API on {}",
        cfg.proxy.listen,
        cfg.api_socket.display()
    );
    tokio::spawn(proxy::serve(listener, shared));
    tokio::spawn(api::serve(api_listener, api_tx, events));
    let m = tokio::spawn(manager.run(snapshots, gap_rx, api_rx, stop_rx));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: removing routes, rules and the global address");
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), m).await;
    let _ = std::fs::remove_file(&cfg.api_socket);
    tracing::info!("stopped");
    Ok(())
}
