//! Devices that connect to the adapter, or bond with it, outside the pairing window.
//!
//! Outside the window the adapter is not pairable, so the kernel refuses a stranger's pairing
//! ("Pairing Not Allowed") before any agent is asked. (Keeping it pairable and refusing in the
//! agent would not do: the kernel accepts "just works" pairing from a NoInputNoOutput device
//! on its own.) What homespotd sees is BlueZ's `Device1`: `Connected` turning true for a
//! device that is not paired, or `Paired` turning true while the window is closed (a
//! controller that pairs without asking the host, as the test bed's emulated one does). Each
//! is counted (`bluetooth.refused_unpaired`), logged (at most one line per [`LOG_EVERY`]) and
//! removed from BlueZ at once (`Adapter1.RemoveDevice`: disconnected, and any key made for it
//! dropped).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tracing::warn;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, MatchRule, MessageStream};

use super::agent::Pairing;
use crate::status::Live;

/// At most one log line per this long (the counter counts every one).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[zbus::proxy(interface = "org.bluez.Adapter1", default_service = "org.bluez")]
trait Adapter1 {
    fn remove_device(&self, device: &zbus::zvariant::ObjectPath<'_>) -> zbus::Result<()>;
}

#[zbus::proxy(interface = "org.bluez.Device1", default_service = "org.bluez")]
trait Device1 {
    #[zbus(property)]
    fn paired(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn address(&self) -> zbus::Result<String>;
}

/// Watches `adapter`'s devices until the bus connection ends.
pub async fn watch(
    conn: &Connection,
    adapter: &str,
    pairing: &Arc<Pairing>,
    live: &Arc<Live>,
) -> zbus::Result<()> {
    let changed = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.DBus.Properties")?
        .member("PropertiesChanged")?
        .path_namespace(format!("/org/bluez/{adapter}"))?
        .build();
    // A device that connects for the first time appears already connected.
    let added = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.DBus.ObjectManager")?
        .member("InterfacesAdded")?
        .build();
    let mut stream = futures_util::stream::select(
        MessageStream::for_match_rule(changed, conn, Some(64)).await?,
        MessageStream::for_match_rule(added, conn, Some(64)).await?,
    );
    let prefix = format!("/org/bluez/{adapter}/");
    let adapter_proxy = Adapter1Proxy::builder(conn)
        .path(format!("/org/bluez/{adapter}"))?
        .build()
        .await?;
    let mut logged: Option<Instant> = None;
    let mut unlogged = 0u64;
    while let Some(msg) = stream.next().await {
        let Ok(msg) = msg else { continue };
        if pairing.is_open() {
            continue;
        }
        let body = msg.body();
        let (path, props) = if msg
            .header()
            .member()
            .is_some_and(|m| m == "InterfacesAdded")
        {
            let Ok((path, mut ifaces)) = body.deserialize::<(
                zbus::zvariant::OwnedObjectPath,
                HashMap<String, HashMap<String, OwnedValue>>,
            )>() else {
                continue;
            };
            let Some(props) = ifaces.remove("org.bluez.Device1") else {
                continue;
            };
            (path, props)
        } else {
            let Ok((iface, props, _)) =
                body.deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
            else {
                continue;
            };
            let Some(path) = msg.header().path().map(|p| p.to_owned().into()) else {
                continue;
            };
            if iface != "org.bluez.Device1" {
                continue;
            }
            (path, props)
        };
        let flag = |k: &str| props.get(k).and_then(|v| bool::try_from(v).ok());
        if !path.as_str().starts_with(&prefix) {
            continue;
        }
        // Bonded just now, with the window closed: refused after the fact.
        let bonded_now = flag("Paired") == Some(true);
        if !bonded_now && flag("Connected") != Some(true) {
            continue;
        }
        let dev = Device1Proxy::builder(conn)
            .path(path.clone())?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        if !bonded_now && dev.paired().await.unwrap_or(false) {
            continue;
        }
        // Gone already (removed on an earlier signal of the same attempt): nothing to do.
        let Ok(address) = dev.address().await else {
            continue;
        };
        live.count("bluetooth", "refused_unpaired");
        // Dropped at once, with any key the radio may have made for it (a controller that
        // pairs without asking the host would otherwise leave a bond behind).
        if let Err(e) = adapter_proxy.remove_device(&path).await {
            warn!(%adapter, device = %address, error = %e, "could not remove an unpaired device");
        }
        unlogged += 1;
        if logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            warn!(%adapter, device = %address, refused = unlogged, "an unpaired device connected while pairing is closed; its pairing is refused (open the window with `homespotd bluetooth pair`)");
            logged = Some(Instant::now());
            unlogged = 0;
        }
    }
    Ok(())
}
