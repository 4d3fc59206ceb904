//! The PAN to a HomeSpot through BlueZ over D-Bus (`zbus`: pure Rust, the same client as
//! homespotd's NAP side): power the adapter, find the HomeSpot's adapter (a scan, only the
//! first time: BlueZ remembers devices it has paired), pair and trust it, and
//! `org.bluez.Network1.Connect("nap")`, which returns the bnep interface. The OS's DHCP
//! client gives that interface its address; the manager sees it as any other link.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use zbus::proxy::CacheProperties;
use zbus::{proxy, Connection};

#[proxy(interface = "org.bluez.Adapter1", default_service = "org.bluez")]
trait Adapter1 {
    fn start_discovery(&self) -> zbus::Result<()>;
    fn stop_discovery(&self) -> zbus::Result<()>;
    fn set_discovery_filter(
        &self,
        filter: HashMap<&str, zbus::zvariant::Value<'_>>,
    ) -> zbus::Result<()>;
    #[zbus(property)]
    fn powered(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn set_powered(&self, value: bool) -> zbus::Result<()>;
}

#[proxy(interface = "org.bluez.Device1", default_service = "org.bluez")]
trait Device1 {
    fn pair(&self) -> zbus::Result<()>;
    #[zbus(property)]
    fn paired(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn set_trusted(&self, value: bool) -> zbus::Result<()>;
}

#[proxy(interface = "org.bluez.Network1", default_service = "org.bluez")]
trait Network1 {
    fn connect(&self, uuid: &str) -> zbus::Result<String>;
    fn disconnect(&self) -> zbus::Result<()>;
    #[zbus(property)]
    fn connected(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn interface(&self) -> zbus::Result<String>;
}

/// Why bringing the PAN up failed, and at which step.
#[derive(Debug, thiserror::Error)]
pub enum PanError {
    /// No system bus or no bluetoothd on it.
    #[error("BlueZ: {0}")]
    Bus(String),
    /// The HomeSpot's adapter was not found by a scan (not in range, or its pairing window
    /// is closed and we never paired).
    #[error("{addr} not found in {waited:?} (is the HomeSpot's pairing window open? `homespotd bluetooth pair`)")]
    NotFound {
        /// The address looked for.
        addr: String,
        /// How long we scanned.
        waited: Duration,
    },
    /// Pairing was refused or failed.
    #[error("pairing with {0}")]
    Pair(String),
    /// The PAN connection was refused or failed.
    #[error("PAN connect: {0}")]
    Connect(String),
    /// The whole attempt took longer than `bluetooth.connect_timeout`.
    #[error("no PAN within {0:?}")]
    Timeout(Duration),
}

fn bus(e: zbus::Error) -> PanError {
    PanError::Bus(e.to_string())
}

/// How long each step took.
#[derive(Debug, Clone, Default)]
pub struct Steps {
    /// The scan that found the HomeSpot (none: BlueZ knew it).
    pub find: Option<Duration>,
    /// Pairing (none: paired before).
    pub pair: Option<Duration>,
    /// `Network1.Connect` until the interface existed.
    pub connect: Duration,
}

fn device_path(adapter: &str, addr: &str) -> String {
    format!("/org/bluez/{adapter}/dev_{}", addr.replace(':', "_"))
}

/// Brings the PAN to `addr` up through `adapter`; returns the interface and the steps' times.
pub async fn connect(
    adapter: &str,
    addr: &str,
    timeout: Duration,
) -> Result<(String, Steps), PanError> {
    match tokio::time::timeout(timeout, connect_inner(adapter, addr, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(PanError::Timeout(timeout)),
    }
}

async fn connect_inner(
    adapter: &str,
    addr: &str,
    timeout: Duration,
) -> Result<(String, Steps), PanError> {
    let conn = Connection::system().await.map_err(bus)?;
    let ad = Adapter1Proxy::builder(&conn)
        .path(format!("/org/bluez/{adapter}"))
        .map_err(bus)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(bus)?;
    if !ad.powered().await.map_err(bus)? {
        ad.set_powered(true).await.map_err(bus)?;
    }
    let path = device_path(adapter, addr);
    let dev = Device1Proxy::builder(&conn)
        .path(path.clone())
        .map_err(bus)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(bus)?;
    let mut steps = Steps::default();
    // Does BlueZ know the device? (The object exists once a scan saw it, and stays if paired.)
    let mut paired = dev.paired().await.ok();
    if paired.is_none() {
        let t = Instant::now();
        let mut filter = HashMap::new();
        filter.insert("Transport", zbus::zvariant::Value::from("bredr"));
        let _ = ad.set_discovery_filter(filter).await;
        ad.start_discovery().await.map_err(bus)?;
        while paired.is_none() && t.elapsed() < timeout {
            tokio::time::sleep(Duration::from_millis(200)).await;
            paired = dev.paired().await.ok();
        }
        let _ = ad.stop_discovery().await;
        if paired.is_none() {
            return Err(PanError::NotFound {
                addr: addr.to_string(),
                waited: t.elapsed(),
            });
        }
        steps.find = Some(t.elapsed());
    }
    if paired != Some(true) {
        let t = Instant::now();
        dev.pair()
            .await
            .map_err(|e| PanError::Pair(format!("{addr}: {e}")))?;
        steps.pair = Some(t.elapsed());
    }
    let _ = dev.set_trusted(true).await;
    let net = Network1Proxy::builder(&conn)
        .path(path)
        .map_err(bus)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(bus)?;
    let t = Instant::now();
    let iface = if net.connected().await.unwrap_or(false) {
        net.interface().await.map_err(bus)?
    } else {
        net.connect("nap")
            .await
            .map_err(|e| PanError::Connect(e.to_string()))?
    };
    steps.connect = t.elapsed();
    Ok((iface, steps))
}

/// Ends the PAN to `addr` (the device stays paired).
pub async fn disconnect(adapter: &str, addr: &str) -> Result<(), PanError> {
    let conn = Connection::system().await.map_err(bus)?;
    let net = Network1Proxy::builder(&conn)
        .path(device_path(adapter, addr))
        .map_err(bus)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(bus)?;
    net.disconnect()
        .await
        .map_err(|e| PanError::Connect(e.to_string()))
}
