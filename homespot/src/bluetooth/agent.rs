//! The pairing agent homespotd registers with BlueZ (`org.bluez.Agent1`, NoInputNoOutput:
//! "just works" pairing, the way a router without a screen pairs). Pairing and service
//! authorization are accepted only while the pairing window is open; outside it every
//! request is refused with `org.bluez.Error.Rejected`, counted (`bluetooth.pairing_refused`)
//! and logged. A device paired in the window is marked trusted, so its PAN connections are
//! accepted afterwards without asking.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use zbus::zvariant::OwnedObjectPath;
use zbus::{interface, Connection};

use crate::status::Live;

/// The pairing window (shared by the links' agents).
#[derive(Default)]
pub struct Pairing {
    until: Mutex<Option<Instant>>,
}

impl Pairing {
    /// Opens the window for `d` from now.
    pub fn open_for(&self, d: Duration) {
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + d);
    }

    /// Whether the window is open now.
    pub fn is_open(&self) -> bool {
        self.until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|u| Instant::now() < u)
    }
}

/// BlueZ's refusal.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.bluez.Error")]
pub enum AgentError {
    /// A D-Bus failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// Refused by the policy.
    Rejected(String),
}

/// The agent object.
pub struct Agent {
    pairing: Arc<Pairing>,
    conn: Connection,
    live: Arc<Live>,
}

impl Agent {
    /// An agent deciding by `pairing`, counting into `live`.
    pub fn new(pairing: Arc<Pairing>, conn: Connection, live: Arc<Live>) -> Agent {
        Agent {
            pairing,
            conn,
            live,
        }
    }

    fn decide(&self, device: &OwnedObjectPath, what: &str) -> Result<(), AgentError> {
        if self.pairing.is_open() {
            self.live.count("bluetooth", "pairing_accepted");
            info!(device = %device.as_str(), what, "Bluetooth pairing accepted (window open)");
            // Trusted once paired: its PAN connections need no further question.
            let (conn, path) = (self.conn.clone(), device.clone());
            tokio::spawn(async move { trust_when_paired(conn, path).await });
            Ok(())
        } else {
            self.live.count("bluetooth", "pairing_refused");
            warn!(device = %device.as_str(), what, "Bluetooth pairing refused: the window is closed (open it with `homespotd bluetooth pair`)");
            Err(AgentError::Rejected(
                "pairing is closed: run `homespotd bluetooth pair` on the router".into(),
            ))
        }
    }
}

#[zbus::proxy(interface = "org.bluez.Device1", default_service = "org.bluez")]
trait Device1 {
    #[zbus(property)]
    fn paired(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn set_trusted(&self, value: bool) -> zbus::Result<()>;
}

/// Marks `device` trusted once it is paired (within 60 s).
async fn trust_when_paired(conn: Connection, device: OwnedObjectPath) {
    let Ok(b) = Device1Proxy::builder(&conn).path(device.clone()) else {
        return;
    };
    let Ok(d) = b.build().await else { return };
    for _ in 0..600 {
        if d.paired().await.unwrap_or(false) {
            if d.set_trusted(true).await.is_ok() {
                info!(device = %device.as_str(), "Bluetooth device paired and trusted");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[interface(name = "org.bluez.Agent1")]
impl Agent {
    fn release(&self) {}

    fn request_pin_code(&self, device: OwnedObjectPath) -> Result<String, AgentError> {
        self.decide(&device, "PIN code")
            .map(|()| "0000".to_string())
    }

    fn display_pin_code(&self, _device: OwnedObjectPath, _pincode: String) {}

    fn request_passkey(&self, device: OwnedObjectPath) -> Result<u32, AgentError> {
        self.decide(&device, "passkey").map(|()| 0)
    }

    fn display_passkey(&self, _device: OwnedObjectPath, _passkey: u32, _entered: u16) {}

    fn request_confirmation(
        &self,
        device: OwnedObjectPath,
        _passkey: u32,
    ) -> Result<(), AgentError> {
        self.decide(&device, "confirmation")
    }

    fn request_authorization(&self, device: OwnedObjectPath) -> Result<(), AgentError> {
        self.decide(&device, "authorization")
    }

    fn authorize_service(&self, device: OwnedObjectPath, _uuid: String) -> Result<(), AgentError> {
        self.decide(&device, "service")
    }

    fn cancel(&self) {}
}
