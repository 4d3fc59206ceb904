//! The manager's side of the Bluetooth PAN: asks [`crate::bluetooth::plan`] every tick,
//! runs its actions ([`crate::bluetooth::pan`]) in tasks whose results come back through a
//! channel, and reports each step as an event with its duration: `bluetooth_connecting`,
//! `bluetooth_connected` (scan, pairing, PAN connect), `bluetooth_lease` (the OS's DHCP
//! client on the bnep interface), then the usual `route_changed` and `handoff`, and
//! `bluetooth_disconnected`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Manager, View};
use crate::bluetooth::pan::{self, PanError, Steps};
use crate::bluetooth::plan::{Action, Inputs, Why};
use crate::events::ms;
use crate::policy::Kind;

/// What a PAN task reports.
pub enum PanResult {
    /// Up on this interface.
    Connected(String, Steps),
    /// Failed.
    Failed(PanError),
}

/// After the PAN is up, how long the user's switch waits for the link to become usable
/// (the OS's DHCP client, discovery, the first probes).
const USABLE_WAIT: Duration = Duration::from_secs(20);

impl Manager {
    /// A usable Bluetooth link of the HomeSpot, if any.
    pub(super) fn bluetooth_link(&self) -> Option<String> {
        self.core
            .candidates(&View(self.hs.as_ref()))
            .into_iter()
            .find(|c| c.homespot && c.kind == Kind::Bluetooth)
            .map(|c| c.name)
    }

    /// The user asked for "bluetooth" and none is usable: bring it up if we can.
    pub(super) async fn user_wants_bluetooth(&mut self) -> Result<(), String> {
        if !self.cfg.bluetooth.enabled {
            return Err("no Bluetooth link is up, and bluetooth.enabled is false".into());
        }
        if self
            .hs
            .as_ref()
            .and_then(|h| h.bluetooth_address())
            .is_none()
        {
            return Err("no Bluetooth link is up, and no HomeSpot here has one".into());
        }
        self.pending_bt = Some(Instant::now());
        self.bluetooth_tick().await;
        Ok(())
    }

    /// One tick: a pending user switch, then the plan.
    pub(super) async fn bluetooth_tick(&mut self) {
        let now = Instant::now();
        let usable = self.bluetooth_link();
        if let Some(since) = self.pending_bt {
            if let Some(name) = &usable {
                self.pending_bt = None;
                tracing::info!(
                    "Bluetooth link {name} usable {} ms after the user asked; switching",
                    now.duration_since(since).as_millis()
                );
                let name = name.clone();
                self.evaluate(Some(&name)).await;
            } else if !self.bt.connecting()
                && now.duration_since(since) > self.cfg.bluetooth.connect_timeout + USABLE_WAIT
            {
                self.pending_bt = None;
                self.events.emit(
                    "switch_failed",
                    json!({"link": "bluetooth", "reason": "no Bluetooth link became usable"}),
                );
            }
        }
        if !self.cfg.bluetooth.enabled {
            return;
        }
        let addr = self.hs.as_ref().and_then(|h| h.bluetooth_address());
        let want = if self.pending_bt.is_some() {
            Some(Why::User)
        } else if self.core.wants_low_power(now, &View(self.hs.as_ref())) {
            Some(Why::Idle)
        } else {
            None
        };
        let on_bt = self.bt.iface().is_some() && self.core.current.as_deref() == self.bt.iface();
        let action = self.bt.tick(Inputs {
            now,
            addr: addr.as_deref(),
            bt_usable: usable.is_some(),
            on_bt,
            want,
        });
        let adapter = self.cfg.bluetooth.adapter.clone();
        match action {
            None => {}
            Some(Action::Connect { addr, why }) => {
                tracing::info!(
                    "bringing the HomeSpot's Bluetooth link up ({addr}, {} wants it)",
                    why.name()
                );
                self.events.emit(
                    "bluetooth_connecting",
                    json!({"address": addr, "why": why.name(), "adapter": adapter}),
                );
                let (tx, timeout) = (self.pan_tx.clone(), self.cfg.bluetooth.connect_timeout);
                tokio::spawn(async move {
                    let r = match pan::connect(&adapter, &addr, timeout).await {
                        Ok((iface, steps)) => PanResult::Connected(iface, steps),
                        Err(e) => PanResult::Failed(e),
                    };
                    let _ = tx.send(r).await;
                });
            }
            Some(Action::Disconnect { addr, iface, idle }) => {
                let reason = format!(
                    "carried nothing for {} ms while another link did",
                    idle.as_millis()
                );
                tracing::info!("Bluetooth PAN on {iface}: {reason}; disconnecting");
                self.events.emit(
                    "bluetooth_disconnected",
                    json!({"iface": iface, "address": addr, "reason": reason, "idle_ms": ms(idle)}),
                );
                tokio::spawn(async move {
                    if let Err(e) = pan::disconnect(&adapter, &addr).await {
                        tracing::warn!("Bluetooth PAN disconnect: {e}");
                    }
                });
            }
        }
    }

    /// A PAN task finished.
    pub(super) fn on_pan(&mut self, r: PanResult) {
        match r {
            PanResult::Connected(iface, steps) => {
                tracing::info!("Bluetooth PAN up on {iface} ({steps:?}); waiting for its lease");
                self.bt.connected(&iface);
                self.events.emit(
                    "bluetooth_connected",
                    json!({"iface": iface, "find_ms": steps.find.map(ms), "pair_ms": steps.pair.map(ms),
                           "connect_ms": ms(steps.connect)}),
                );
                self.pan_up_at = Some((iface, Instant::now()));
            }
            PanResult::Failed(e) => {
                tracing::warn!("bringing Bluetooth up failed: {e}");
                self.bt.failed(Instant::now());
                self.events
                    .emit("bluetooth_failed", json!({"error": e.to_string()}));
                if self.pending_bt.take().is_some() {
                    self.events.emit(
                        "switch_failed",
                        json!({"link": "bluetooth", "reason": e.to_string()}),
                    );
                }
            }
        }
    }

    /// A link came up with its address: the PAN's lease, if it is the PAN's interface.
    pub(super) fn bluetooth_lease(&mut self, name: &str, addr: std::net::Ipv4Addr) {
        if let Some((iface, at)) = &self.pan_up_at {
            if iface == name {
                self.events.emit(
                    "bluetooth_lease",
                    json!({"iface": name, "address": addr.to_string(), "took_ms": ms(at.elapsed())}),
                );
                self.pan_up_at = None;
            }
        }
    }
}
