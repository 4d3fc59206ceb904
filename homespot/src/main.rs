//! `homespotd`: binds the sockets, opens the lease database and runs until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use homespot::config::system::Severity;
use homespot::config::Config;
use homespot::dhcp::server::{self, Sockets};
use homespot::proxy;
use homespot::store::LeaseStore;
use tokio_util::sync::CancellationToken;
use tracing::info;

mod args;
use args::{Args, Command};

fn main() -> std::process::ExitCode {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(reason) => {
            eprintln!("homespotd: {reason}; try homespotd --help");
            return std::process::ExitCode::from(2);
        }
    };
    if let Command::Print(text) = &args.command {
        print!("{text}");
        return std::process::ExitCode::SUCCESS;
    }
    if let Command::Status {
        json,
        events,
        socket,
    } = &args.command
    {
        // The config may be unreadable or broken: the default path then.
        let path = socket.clone().unwrap_or_else(|| {
            Config::load(&args.config)
                .map(|c| c.status_socket)
                .unwrap_or_else(|_| PathBuf::from(homespot::config::DEFAULT_STATUS_SOCKET))
        });
        let mut out = std::io::stdout().lock();
        let r = if *events {
            homespot::status::show::events(&path, *json, &mut out)
        } else {
            homespot::status::show::status(&path, *json, &mut out)
        };
        return match r {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("homespotd status: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if args.command == Command::BluetoothPair {
        let path = Config::load(&args.config)
            .map(|c| c.status_socket)
            .unwrap_or_else(|_| PathBuf::from(homespot::config::DEFAULT_STATUS_SOCKET));
        return match homespot::status::show::request(&path, "pair") {
            Ok(v) if v["ok"] == true => {
                println!("Bluetooth pairing is open: pair the laptop now");
                std::process::ExitCode::SUCCESS
            }
            Ok(v) => {
                eprintln!(
                    "homespotd bluetooth pair: {}",
                    v["error"].as_str().unwrap_or("refused")
                );
                std::process::ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("homespotd bluetooth pair: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if args.command == Command::Passwd {
        let cfg = match Config::load(&args.config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("homespotd passwd: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        return match homespot::passwd::run(&cfg.admin) {
            Ok(()) => {
                println!(
                    "admin password set in {}",
                    cfg.admin.password_file.display()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("homespotd passwd: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match real_main(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("homespotd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> anyhow::Result<()> {
    // `level` or `target=level,...` (tracing-subscriber's `Targets`: no regex engine in the
    // router's binary, which keeps its resident code smaller).
    let spec = match &args.log {
        Some(s) => s.clone(),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
    };
    let filter: tracing_subscriber::filter::Targets = spec
        .parse()
        .with_context(|| format!("bad log filter {spec:?} (--log or RUST_LOG)"))?;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();

    let cfg = Config::load(&args.config)?;
    let check_config = matches!(args.command, Command::Run { check_config: true });
    let findings = homespot::config::system::check(&cfg, check_config);
    if check_config {
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        for f in &findings {
            let what = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            println!(
                "{}: {what}: {}: {}",
                args.config.display(),
                f.key,
                f.message
            );
        }
        if errors > 0 {
            anyhow::bail!("{}: {errors} error(s), see above", args.config.display());
        }
        println!("{}: ok", args.config.display());
        for l in &cfg.links {
            let size: u64 = l
                .pools
                .iter()
                .map(|p| u64::from(u32::from(p.last) - u32::from(p.first)) + 1)
                .sum();
            println!(
                "  link {} on {}: {} / {}, {} pool addresses, lease {}, wpad {}",
                l.name,
                l.interface,
                l.address,
                l.subnet,
                size,
                humantime::format_duration(l.lease_time),
                l.wpad_url.as_deref().unwrap_or("(none)")
            );
        }
        return Ok(());
    }

    for f in &findings {
        tracing::warn!(config = %args.config.display(), key = %f.key, "{}", f.message);
    }
    homespot::memory::limit_arenas();
    let rt = if cfg.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.worker_threads)
            .enable_all()
            .build()
    }
    .context("starting the runtime")?;
    rt.block_on(async move {
        if let Some(dir) = cfg.lease_db.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let store = Arc::new(
            LeaseStore::open(&cfg.lease_db)
                .with_context(|| format!("lease database {}", cfg.lease_db.display()))?,
        );
        // Before the proxy binds: P-Handoff puts the global address on lo.
        let handoff = homespot::handoff::prepare(&cfg)
            .await
            .context("P-Handoff")?;
        let bound = (|| {
            let sockets = Sockets::bind(&cfg).context("binding DHCP sockets")?;
            let listeners = proxy::Listeners::bind(&cfg).context("binding the proxy")?;
            let status_socket = homespot::status::socket::StatusSocket::bind(&cfg.status_socket)
                .with_context(|| format!("status socket {}", cfg.status_socket.display()))?;
            let admin = homespot::admin::bind(&cfg).context("binding the admin panel")?;
            anyhow::Ok((sockets, listeners, status_socket, admin))
        })();
        let (sockets, listeners, status_socket, admin_listeners) = match bound {
            Ok(b) => b,
            Err(e) => {
                // Put back the link settings P-Handoff changed before failing.
                if let Some(p) = handoff {
                    p.undo().await;
                }
                return Err(e);
            }
        };
        let live = homespot::status::Live::new(&cfg, &args.config.display().to_string());
        if let Some(p) = &handoff {
            live.set_identity(p.fingerprint());
        }
        if let Some(c) = listeners.congestion() {
            live.set_proxy_congestion(c.to_string());
        }
        let watched = homespot::linkwatch::watched(&cfg);
        let present = homespot::linkwatch::present_now(&watched);
        for (i, l) in cfg.links.iter().enumerate() {
            if present[i].is_some() {
                live.set_present(i, true);
                info!(link = %l.name, interface = %l.interface, address = %l.address, "serving DHCP");
            } else {
                tracing::warn!(link = %l.name, interface = %l.interface, "interface missing (or down, or without the link's address); the link waits for it");
            }
        }
        let (present_tx, present_rx) = tokio::sync::watch::channel(present);
        let shutdown = CancellationToken::new();
        tokio::spawn(homespot::linkwatch::run(
            watched,
            present_tx,
            shutdown.clone(),
        ));
        tokio::spawn(status_socket.serve(live.clone(), shutdown.clone()));
        let (hup_tx, hup_rx) = tokio::sync::mpsc::channel(1);
        let (reload_tx, reload_rx) = tokio::sync::watch::channel(Arc::new(cfg.clone()));
        tokio::spawn(stop_on_signal(shutdown.clone(), hup_tx.clone()));
        tokio::spawn(homespot::reload::run(
            args.config.clone(),
            cfg.clone(),
            hup_rx,
            reload_tx,
            live.clone(),
        ));
        let (forget_tx, forget_rx) = tokio::sync::mpsc::channel(8);
        if !admin_listeners.is_empty() {
            homespot::admin::offer_setup(&cfg);
            let backend = homespot::admin::Backend::new(
                live.clone(),
                args.config.clone(),
                hup_tx,
                reload_rx.clone(),
                forget_tx,
                shutdown.clone(),
            );
            let (c, stop) = (cfg.clone(), shutdown.clone());
            info!(port = cfg.admin.port, "admin panel on every link address");
            tokio::spawn(async move { homespot::admin::serve(admin_listeners, backend, &c, stop).await });
        } else {
            drop(forget_tx);
            drop(hup_tx);
        }
        #[cfg(feature = "bluetooth")]
        tokio::spawn(homespot::bluetooth::run(cfg.clone(), live.clone(), shutdown.clone()));
        #[cfg(not(feature = "bluetooth"))]
        if cfg.links.iter().any(|l| l.bluez.is_some()) {
            tracing::warn!("this homespotd is built without Bluetooth (feature `bluetooth`): bluez_adapter is ignored");
        }
        let proxy_cfg = cfg.clone();
        let proxy_stop = shutdown.clone();
        let moves = Arc::new(homespot::moves::Moves::default());
        let proxy_moves = moves.clone();
        // The global addresses the proxy serves: those routed into a link now.
        let globals = Arc::new(homespot::globals::RoutedGlobals::new(
            cfg.handoff.as_ref().map(|h| h.global_subnet),
        ));
        let proxy_globals = globals.clone();
        let proxy_shared = proxy::Shared {
            moves: proxy_moves,
            globals: proxy_globals,
            live: live.clone(),
            reload: reload_rx.clone(),
        };
        let proxy = tokio::spawn(async move {
            let r = proxy::run(&proxy_cfg, listeners, proxy_shared, proxy_stop.clone()).await;
            if let Err(e) = &r {
                if !proxy_stop.is_cancelled() {
                    tracing::error!(error = %e, "the proxy cannot run (its ports are closed); DHCP and P-Handoff keep serving");
                }
            }
            r
        });
        let handoff = handoff.map(|p| {
            let (c, s, stop, l) = (cfg.clone(), store.clone(), shutdown.clone(), live.clone());
            let pr = present_rx.clone();
            tokio::spawn(
                async move {
                    let shared = homespot::handoff::Shared {
                        store: s,
                        moves,
                        globals,
                        live: l,
                        present: pr,
                    };
                    homespot::handoff::run(&c, p, shared, stop).await
                },
            )
        });
        let inputs = server::Inputs {
            present: present_rx,
            reload: reload_rx,
            forget: forget_rx,
        };
        let counters = server::run(cfg, sockets, store, live, inputs, shutdown.clone()).await;
        shutdown.cancel();
        if let Some(h) = handoff {
            if let Ok(c) = h.await {
                info!(counters = ?c, "P-Handoff stopped");
            }
        }
        match proxy.await.context("proxy task")? {
            Ok(proxy) => info!(counters = %proxy.counters(), "proxy stopped"),
            Err(e) => tracing::error!(error = %e, "the proxy did not run"),
        }
        let counters = counters?;
        info!(%counters, "stopped");
        Ok(())
    })
}

async fn stop_on_signal(
    shutdown: CancellationToken,
    reload: tokio::sync::mpsc::Sender<homespot::reload::Request>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            // Reload; a second SIGHUP while one is in progress is folded into it.
            _ = hup.recv() => {
                let _ = reload.try_send(None);
            }
        }
    }
    info!("shutting down");
    shutdown.cancel();
}
