//! HomeSpots that never answer (DESIGN.md section 3): a forged advert from the router's
//! address, or a pinned HomeSpot's advert replayed on another network with the same router
//! address, names a HomeSpot that answers no handshake and no probe there. Such a network is
//! used as the plain network it is while the identity rests (`trust::rest`), and tried again
//! as a HomeSpot network when the rest ends.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::core::Disc;
use super::Manager;

/// An identity is given up after this many handshakes given up (each is
/// `ClientConfig::tries` attempts; a second apart) without one completing.
pub(super) const HANDSHAKE_TRIES: u32 = 3;

impl Manager {
    /// No handshake with the HomeSpot has ever completed in this run, and
    /// [`HANDSHAKE_TRIES`] were given up. A first-use identity is not used for
    /// `trust::UNANSWERED_FOR`; a pinned one rests on the networks we met it on (the real
    /// HomeSpot restarting, or a replay). Its links are discovered again: plain networks now,
    /// with their own DHCP and WPAD.
    pub(super) async fn give_up_handshakes(&mut self) {
        self.handshake_failures = 0;
        let Some(mut hs) = self.hs.take() else {
            return;
        };
        let id = hs.identity();
        let fp = crate::trust::fingerprint(&id);
        let now = Instant::now();
        {
            let trust = self.trust.clone();
            let mut tr = trust.lock().unwrap_or_else(|p| p.into_inner());
            if tr.is_pinned(&id) {
                for router in hs.attached_routers() {
                    let rest = tr.unanswered_on(id, router, now);
                    tracing::warn!(
                        "HomeSpot {} (pinned) never completed a handshake on the network of {router}: used as a plain network for {rest:?}",
                        &fp[..12]
                    );
                    self.retry_at(now + rest);
                }
            } else {
                tracing::warn!(
                    "HomeSpot {} (first met on this network) never completed a handshake: not used for {} minutes; its links are used as plain networks",
                    &fp[..12],
                    crate::trust::UNANSWERED_FOR.as_secs() / 60
                );
                tr.unanswered(id, now);
            }
            tr.set_in_use(None);
        }
        self.pin_on_handshake = None;
        hs.cleanup().await;
        for name in self.core.names(|d| matches!(d, Disc::HomeSpot { .. })) {
            self.discover_again(&name, None);
        }
    }

    /// The HomeSpot we are associated with never answered on `link` (our interface `name`,
    /// its router `router`) since it was attached, and the link was declared dead or a switch
    /// to it failed: the advert met there was not the HomeSpot's own answer. The identity
    /// rests on that network; the link is detached and discovered again (a plain network
    /// now), and an interface of ours that was on that link before is put back on it.
    pub(super) async fn not_answered_on(&mut self, link: u8, name: &str, router: Ipv4Addr) {
        let Some(hs) = self.hs.as_mut() else {
            return;
        };
        let id = hs.identity();
        let now = Instant::now();
        let rest = self
            .trust
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unanswered_on(id, router, now);
        tracing::warn!(
            "{name}: HomeSpot {} never answered on this network (router {router}): used as a plain network for {rest:?}",
            &crate::trust::fingerprint(&id)[..12]
        );
        hs.link_gone(link, name);
        hs.restore_displaced(link).await;
        self.retry_at(now + rest);
        self.discover_again(name, None);
    }

    /// The HomeSpot answered on `link`: a rest of its identity on that network is over.
    pub(super) fn answered_on(&mut self, link: u8) {
        let Some(hs) = self.hs.as_mut() else {
            return;
        };
        let id = hs.identity();
        if let Some(router) = hs.confirmed(link) {
            self.trust
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .answered_on(id, router);
        }
    }

    fn retry_at(&mut self, at: Instant) {
        self.rested_until = Some(self.rested_until.map_or(at, |t| t.min(at)));
    }

    /// On every tick: when a rest is over, the plain links are discovered again (each keeps
    /// its result until the new one arrives), so a HomeSpot that answers again is used again.
    pub(super) fn retry_rested(&mut self, now: Instant) {
        if self.rested_until.is_none_or(|t| now < t) {
            return;
        }
        self.rested_until = self
            .trust
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_rest_end(now);
        for name in self.core.names(|d| matches!(d, Disc::Plain { .. })) {
            tracing::info!("{name}: a HomeSpot's rest is over; discovering again");
            self.discover_again(&name, Some(now));
        }
    }
}
