//! Bluetooth links as BlueZ's PAN NAP (DESIGN.md section 11), over D-Bus with `zbus` (pure
//! Rust: no libdbus to cross-build; `bluer` has no PAN API).
//!
//! For each link with `bluez_adapter` set, a task: waits for `bluetoothd` on the system bus,
//! powers the adapter, reads its address (shown in the status, and put in the Co-Link adverts
//! in place of `l2_id`), registers the NAP on the
//! link's bridge (`org.bluez.NetworkServer1.Register("nap", bridge)`) and holds the D-Bus
//! connection for as long as the NAP should exist (BlueZ drops the registration with the
//! connection); when `bluetoothd` leaves the bus and comes back, it registers again.
//! A pairing agent ([`agent`]) answers BlueZ's pairing and authorization requests by the
//! link's policy: open for a window after `homespotd bluetooth pair` (the adapter is
//! discoverable and pairable only then), or trusted devices only; every refusal is counted
//! and logged, and so is every unpaired device that connects while pairing is closed
//! ([`strangers`]).

pub mod agent;
mod mgmt;
mod strangers;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zbus::{proxy, Connection};

use crate::config::{BluezConfig, Config};
use crate::status::Live;

#[proxy(interface = "org.bluez.Adapter1", default_service = "org.bluez")]
trait Adapter1 {
    #[zbus(property)]
    fn address(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn set_powered(&self, value: bool) -> zbus::Result<()>;
    #[zbus(property)]
    fn set_pairable(&self, value: bool) -> zbus::Result<()>;
    #[zbus(property)]
    fn set_discoverable(&self, value: bool) -> zbus::Result<()>;
    #[zbus(property)]
    fn set_discoverable_timeout(&self, value: u32) -> zbus::Result<()>;
}

#[proxy(interface = "org.bluez.NetworkServer1", default_service = "org.bluez")]
trait NetworkServer1 {
    fn register(&self, uuid: &str, bridge: &str) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.bluez.AgentManager1",
    default_service = "org.bluez",
    default_path = "/org/bluez"
)]
trait AgentManager1 {
    fn register_agent(
        &self,
        agent: &zbus::zvariant::ObjectPath<'_>,
        capability: &str,
    ) -> zbus::Result<()>;
    fn request_default_agent(&self, agent: &zbus::zvariant::ObjectPath<'_>) -> zbus::Result<()>;
}

/// The BlueZ links of `cfg`: (link index, bridge interface, its BlueZ settings).
pub fn links(cfg: &Config) -> Vec<(usize, String, BluezConfig)> {
    cfg.links
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.bluez.clone().map(|b| (i, l.interface.clone(), b)))
        .collect()
}

/// Runs the NAP of every BlueZ link until `stop`.
pub async fn run(cfg: Config, live: Arc<Live>, stop: CancellationToken) {
    let links = links(&cfg);
    if links.is_empty() {
        return;
    }
    let pairing = Arc::new(agent::Pairing::default());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, bridge, b) in links {
        let (live, stop, pairing) = (live.clone(), stop.clone(), pairing.clone());
        tasks.spawn(async move { nap(i, bridge, b, live, pairing, stop).await });
    }
    stop.cancelled().await;
    tasks.abort_all();
}

/// Keeps the adapter connectable outside the pairing window, so that strangers' attempts
/// reach the agent and are counted (see [`mgmt`]); a failure is logged, not fatal.
async fn connectable(adapter: &str) {
    let Some(index) = mgmt::index(adapter) else {
        return;
    };
    let r = tokio::task::spawn_blocking(move || mgmt::set_connectable(index, true)).await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(%adapter, error = %e, "adapter not made connectable: pairing attempts outside the window fail in the radio, uncounted")
        }
        Err(e) => warn!(%adapter, error = %e, "adapter not made connectable"),
    }
}

/// One link's NAP, registered again whenever bluetoothd comes back.
async fn nap(
    link: usize,
    bridge: String,
    b: BluezConfig,
    live: Arc<Live>,
    pairing: Arc<agent::Pairing>,
    stop: CancellationToken,
) {
    let name = live.link_name(link);
    let mut requests = live.pair_requests();
    let mut warned = false;
    // Subscribed before the first attempt, so a bluetoothd that comes back while an attempt
    // runs still wakes the next one.
    let mut wake = wakeups().await.ok();
    loop {
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = serve(link, &bridge, &b, &live, &pairing, &mut requests, &stop) => r,
        };
        match r {
            Ok(()) => {
                warned = false;
                info!(link = %name, "bluetoothd left the bus; the NAP is registered again when it is back");
            }
            Err(e) if !warned => {
                warned = true;
                warn!(link = %name, adapter = %b.adapter, error = %e, "Bluetooth NAP not registered yet; retrying every second");
            }
            Err(_) => {}
        }
        // Try again as soon as bluetoothd takes its name or adds the adapter (at the latest
        // in a second).
        if wake.is_none() {
            wake = wakeups().await.ok();
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = async {
                match wake.as_mut() {
                    Some(w) => { let _ = w.next().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Signals that mean bluetoothd (re)appeared: its name taken, an adapter added.
async fn wakeups() -> zbus::Result<impl futures_util::Stream<Item = zbus::Result<zbus::Message>>> {
    let conn = Connection::system().await?;
    let owner = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")?
        .interface("org.freedesktop.DBus")?
        .member("NameOwnerChanged")?
        .arg(0, "org.bluez")?
        .build();
    let added = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.DBus.ObjectManager")?
        .member("InterfacesAdded")?
        .build();
    Ok(futures_util::stream::select(
        zbus::MessageStream::for_match_rule(owner, &conn, Some(16)).await?,
        zbus::MessageStream::for_match_rule(added, &conn, Some(16)).await?,
    ))
}

/// Registers the NAP and serves pairing until bluetoothd leaves the bus (Ok) or a call
/// fails (Err).
async fn serve(
    link: usize,
    bridge: &str,
    b: &BluezConfig,
    live: &Arc<Live>,
    pairing: &Arc<agent::Pairing>,
    requests: &mut tokio::sync::watch::Receiver<u64>,
    stop: &CancellationToken,
) -> zbus::Result<()> {
    let conn = Connection::system().await?;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
    let bluez = zbus::names::BusName::try_from("org.bluez")?;
    if !dbus.name_has_owner(bluez.clone()).await? {
        return Err(zbus::Error::Failure(
            "bluetoothd is not on the system bus".into(),
        ));
    }
    let mut owner_changes = dbus.receive_name_owner_changed().await?;
    let path = format!("/org/bluez/{}", b.adapter);
    let adapter = Adapter1Proxy::builder(&conn)
        .path(path.clone())?
        .build()
        .await?;
    adapter.set_powered(true).await?;
    let address = adapter.address().await?;
    live.set_bluetooth_address(link, &address);
    // The pairing agent, as the default agent, on this connection.
    let agent_path = zbus::zvariant::ObjectPath::try_from("/org/homespot/agent")?;
    let _ = conn
        .object_server()
        .at(
            &agent_path,
            agent::Agent::new(pairing.clone(), conn.clone(), live.clone()),
        )
        .await?;
    let manager = AgentManager1Proxy::new(&conn).await?;
    manager
        .register_agent(&agent_path, "NoInputNoOutput")
        .await?;
    manager.request_default_agent(&agent_path).await?;
    NetworkServer1Proxy::builder(&conn)
        .path(path)?
        .build()
        .await?
        .register("nap", bridge)
        .await?;
    // Pairable and discoverable only in the window (outside it the kernel refuses pairing:
    // see `strangers`), connectable always (paired devices come back, strangers are seen and
    // counted).
    adapter.set_discoverable(false).await?;
    adapter.set_pairable(false).await?;
    connectable(&b.adapter).await;
    let strangers = strangers::watch(&conn, &b.adapter, pairing, live);
    tokio::pin!(strangers);
    info!(link = %live.link_name(link), adapter = %b.adapter, %address, bridge = %bridge, "Bluetooth NAP registered");
    live.count("bluetooth", "nap_registrations");
    use futures_util::StreamExt as _;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            changed = requests.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let window = match b.pairing {
                    crate::config::Pairing::Button { window } => window,
                    crate::config::Pairing::TrustedOnly => {
                        warn!(link = %live.link_name(link), "pairing asked for, but this link pairs trusted devices only (pairing = \"trusted\")");
                        continue;
                    }
                };
                pairing.open_for(window);
                adapter.set_discoverable_timeout(window.as_secs().min(u64::from(u32::MAX)) as u32).await?;
                adapter.set_pairable(true).await?;
                adapter.set_discoverable(true).await?;
                info!(link = %live.link_name(link), seconds = window.as_secs(), "Bluetooth pairing open");
                let (p, a, adapter_name) = (pairing.clone(), adapter.clone(), b.adapter.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(window).await;
                    if !p.is_open() {
                        let _ = a.set_discoverable(false).await;
                        let _ = a.set_pairable(false).await;
                        connectable(&adapter_name).await;
                        info!("Bluetooth pairing closed");
                    }
                });
            }
            r = &mut strangers => {
                r?;
                return Ok(());
            }
            change = owner_changes.next() => {
                let Some(change) = change else { return Ok(()) };
                let Ok(args) = change.args() else { continue };
                if args.name() == &bluez && args.new_owner().is_none() {
                    return Ok(());
                }
            }
        }
    }
}
