//! Long-lived keys and signatures: the HomeSpot's Ed25519 identity (adverts and
//! UnknownSession notices are signed with it) and the static X25519 key it derives for the
//! Noise handshake; the client's static X25519 key; and the replay window of transport
//! messages. The handshake itself is in [`crate::noise`].

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::wire::{self, Advert, UnknownSession};

/// The HomeSpot's long-lived identity: an Ed25519 signing key, and the X25519 static key of
/// the Noise handshake derived from the same seed (SHA-512 with a label of its own, so the
/// two keys are independent). The advert carries both, signed.
pub struct Identity {
    key: SigningKey,
    noise: [u8; 32],
}

impl Identity {
    /// The identity for a 32-byte secret seed (persisted by the HomeSpot).
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        let mut h = Sha512::new();
        h.update(b"phandoff v2 noise static key");
        h.update(seed);
        let d = h.finalize();
        let mut noise = [0u8; 32];
        noise.copy_from_slice(&d[..32]);
        Identity {
            key: SigningKey::from_bytes(&seed),
            noise,
        }
    }

    /// The public key clients pin.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The Noise static secret (X25519).
    pub fn noise_secret(&self) -> &[u8; 32] {
        &self.noise
    }

    /// The Noise static public key (in the advert).
    pub fn noise_public(&self) -> [u8; 32] {
        x25519_public(&self.noise)
    }

    /// Signs `advert` in place (its `identity` and `noise_key` are set to ours first).
    pub fn sign_advert(&self, advert: &mut Advert) {
        advert.identity = self.public();
        advert.noise_key = self.noise_public();
        advert.signature = self.key.sign(&wire::advert_signed_bytes(advert)).to_bytes();
    }

    /// Signs an UnknownSession notice in place.
    pub fn sign_unknown(&self, m: &mut UnknownSession) {
        m.signature = self.key.sign(&wire::unknown_signed_bytes(m)).to_bytes();
    }
}

/// The X25519 public key of `secret`.
pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// Whether `advert` is signed by the identity it names.
pub fn advert_is_genuine(advert: &Advert) -> bool {
    verify(
        &advert.identity,
        &wire::advert_signed_bytes(advert),
        &advert.signature,
    )
}

/// Whether an UnknownSession notice is signed by `identity`.
pub fn unknown_is_genuine(m: &UnknownSession, identity: &[u8; 32]) -> bool {
    verify(identity, &wire::unknown_signed_bytes(m), &m.signature)
}

fn verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    match VerifyingKey::from_bytes(public) {
        Ok(k) => k.verify_strict(msg, &Signature::from_bytes(sig)).is_ok(),
        Err(_) => false,
    }
}

/// A client's long-lived X25519 key pair: its identity towards HomeSpots (the same key gets
/// the same global address).
#[derive(Clone)]
pub struct ClientKeys {
    secret: [u8; 32],
}

impl ClientKeys {
    /// The key pair for a 32-byte secret (persisted by the client).
    pub fn from_secret(secret: [u8; 32]) -> ClientKeys {
        ClientKeys { secret }
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        x25519_public(&self.secret)
    }

    /// The secret, for the Noise handshake.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

/// Refuses counters seen before or too old, accepting reordering within 64 (messages of one
/// session travel over several links).
#[derive(Debug, Default, Clone)]
pub struct ReplayWindow {
    top: u64,
    seen: u64,
    any: bool,
}

impl ReplayWindow {
    /// Records `seq` if it is new and not older than the window; says whether it was.
    /// Call only after the message was authenticated.
    pub fn accept(&mut self, seq: u64) -> bool {
        if !self.any || seq > self.top {
            let shift = if self.any { seq - self.top } else { 64 };
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = seq;
            self.any = true;
            return true;
        }
        let back = self.top - seq;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{LinkInfo, LinkKind, Message};
    use alloc::vec;
    use core::net::Ipv4Addr;

    fn advert() -> Advert {
        Advert {
            identity: [0; 32],
            noise_key: [0; 32],
            epoch: 1,
            global_subnet: Ipv4Addr::new(10, 200, 0, 0),
            global_prefix: 24,
            global_addr: Ipv4Addr::new(10, 200, 0, 1),
            caps: 0,
            links: vec![LinkInfo {
                index: 0,
                kind: LinkKind::Bluetooth,
                l2_id: vec![0, 1, 2, 3, 4, 5],
                subnet: Ipv4Addr::new(10, 77, 2, 0),
                prefix: 24,
                router: Ipv4Addr::new(10, 77, 2, 1),
                proxy: Ipv4Addr::new(10, 77, 2, 1),
                proxy_port: 3128,
                pac_url: vec![],
            }],
            signature: [0; 64],
        }
    }

    #[test]
    fn adverts_are_signed_and_tampering_shows() {
        let id = Identity::from_seed([3; 32]);
        let mut a = advert();
        id.sign_advert(&mut a);
        assert!(advert_is_genuine(&a));
        assert_eq!(a.noise_key, id.noise_public());
        assert_ne!(a.noise_key, a.identity);
        let Ok(Message::Advert(b)) = Message::parse(&Message::Advert(a.clone()).emit()) else {
            panic!("parse")
        };
        assert!(advert_is_genuine(&b));
        let mut c = a.clone();
        c.links[0].router = Ipv4Addr::new(10, 77, 2, 66);
        assert!(!advert_is_genuine(&c), "a changed link");
        let mut n = a.clone();
        n.noise_key = [5; 32];
        assert!(!advert_is_genuine(&n), "a swapped handshake key");
        let mut d = a;
        d.identity = Identity::from_seed([4; 32]).public();
        assert!(!advert_is_genuine(&d), "someone else's identity");
    }

    #[test]
    fn unknown_session_notices_are_signed() {
        let id = Identity::from_seed([3; 32]);
        let mut m = UnknownSession {
            receiver: 7,
            counter: 9,
            signature: [0; 64],
        };
        id.sign_unknown(&mut m);
        assert!(unknown_is_genuine(&m, &id.public()));
        assert!(!unknown_is_genuine(
            &m,
            &Identity::from_seed([4; 32]).public()
        ));
        let mut f = m;
        f.receiver = 8;
        assert!(!unknown_is_genuine(&f, &id.public()));
    }

    #[test]
    fn replays() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(0), "counters start at 0");
        assert!(!w.accept(0), "replay");
        assert!(w.accept(5));
        assert!(w.accept(3), "reordered within the window");
        assert!(!w.accept(3));
        assert!(w.accept(100));
        assert!(!w.accept(30), "older than the window");
    }
}
