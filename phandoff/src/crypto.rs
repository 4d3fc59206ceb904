//! The security of the protocol: who signs what, how session keys are made, how sealed
//! messages are tagged and replays refused.
//!
//! - The HomeSpot has a long-lived Ed25519 [`Identity`]; it signs adverts and AssociateAcks.
//!   Clients pin the identity on first use (the pinning lives with the client).
//! - A client's identity is a long-lived X25519 key ([`ClientKeys`]). At association the
//!   HomeSpot answers with an ephemeral X25519 key; both sides derive [`SessionKeys`] from the
//!   shared secret and both nonces. Only the holder of the client's secret key can produce
//!   valid tags, so nobody else can move its routes.
//! - Every sealed message carries a sequence number and a truncated HMAC-SHA256 tag; a
//!   [`ReplayWindow`] refuses repeats and old messages while tolerating reordering across links.
//!
//! Randomness comes from the caller (seeds and nonces are arguments), so the core stays
//! sans-IO and deterministic under test.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::wire::{self, Advert, AssociateAck, Sealed, TAG_LEN};

type HmacSha256 = Hmac<Sha256>;

/// The HomeSpot's long-lived signing identity.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// The identity for a 32-byte secret seed (persisted by the HomeSpot).
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key clients pin.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs `advert` in place (its `identity` is set to ours first).
    pub fn sign_advert(&self, advert: &mut Advert) {
        advert.identity = self.public();
        advert.signature = self.key.sign(&wire::advert_signed_bytes(advert)).to_bytes();
    }

    /// Signs `ack` in place, bound to the client's nonce.
    pub fn sign_ack(&self, ack: &mut AssociateAck, client_nonce: &[u8; 16]) {
        ack.signature = self
            .key
            .sign(&wire::ack_signed_bytes(ack, client_nonce))
            .to_bytes();
    }
}

/// Whether `advert` is signed by the identity it names.
pub fn advert_is_genuine(advert: &Advert) -> bool {
    verify(
        &advert.identity,
        &wire::advert_signed_bytes(advert),
        &advert.signature,
    )
}

/// Whether `ack` is signed by `identity` and answers the Associate that carried `client_nonce`.
pub fn ack_is_genuine(ack: &AssociateAck, identity: &[u8; 32], client_nonce: &[u8; 16]) -> bool {
    verify(
        identity,
        &wire::ack_signed_bytes(ack, client_nonce),
        &ack.signature,
    )
}

fn verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    match VerifyingKey::from_bytes(public) {
        Ok(k) => k.verify_strict(msg, &Signature::from_bytes(sig)).is_ok(),
        Err(_) => false,
    }
}

/// A client's long-lived X25519 key pair.
pub struct ClientKeys {
    secret: StaticSecret,
}

impl ClientKeys {
    /// The key pair for a 32-byte secret (persisted by the client).
    pub fn from_secret(secret: [u8; 32]) -> ClientKeys {
        ClientKeys {
            secret: StaticSecret::from(secret),
        }
    }

    /// The public key: the client's identity towards HomeSpots.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.secret).to_bytes()
    }

    /// The session keys for `ack` (answering an Associate with `client_nonce`).
    pub fn session(&self, ack: &AssociateAck, client_nonce: &[u8; 16]) -> SessionKeys {
        let shared = self.secret.diffie_hellman(&PublicKey::from(ack.ephemeral));
        SessionKeys::derive(
            shared.as_bytes(),
            &ack.client_key,
            &ack.ephemeral,
            client_nonce,
            &ack.nonce,
        )
    }
}

/// The HomeSpot's side of one association: an ephemeral X25519 key.
pub struct Ephemeral {
    secret: StaticSecret,
}

impl Ephemeral {
    /// An ephemeral key from 32 random bytes.
    pub fn from_random(bytes: [u8; 32]) -> Ephemeral {
        Ephemeral {
            secret: StaticSecret::from(bytes),
        }
    }

    /// Its public key (sent in AssociateAck).
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.secret).to_bytes()
    }

    /// The session keys with the client `client_key`.
    pub fn session(
        &self,
        client_key: &[u8; 32],
        client_nonce: &[u8; 16],
        hs_nonce: &[u8; 16],
    ) -> SessionKeys {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*client_key));
        SessionKeys::derive(
            shared.as_bytes(),
            client_key,
            &self.public(),
            client_nonce,
            hs_nonce,
        )
    }
}

/// One key per direction, so a message can never be reflected back to its sender.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Tags messages from the client to the HomeSpot.
    pub to_homespot: [u8; 32],
    /// Tags messages from the HomeSpot to the client.
    pub to_client: [u8; 32],
}

impl core::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

impl SessionKeys {
    fn derive(
        shared: &[u8; 32],
        client_key: &[u8; 32],
        ephemeral: &[u8; 32],
        cn: &[u8; 16],
        sn: &[u8; 16],
    ) -> SessionKeys {
        // HKDF-SHA256 (RFC 5869): extract with the nonces as salt, expand per direction.
        let mut salt = [0u8; 32];
        salt[..16].copy_from_slice(cn);
        salt[16..].copy_from_slice(sn);
        let prk = hmac(&salt, &[shared, client_key, ephemeral]);
        SessionKeys {
            to_homespot: hmac(&prk, &[b"phandoff v1 client->homespot", &[1]]),
            to_client: hmac(&prk, &[b"phandoff v1 homespot->client", &[1]]),
        }
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

// HMAC accepts keys of any length; new_from_slice cannot fail for it.
fn unreachable_hmac() -> HmacSha256 {
    HmacSha256::new(&Default::default())
}

/// Sets `msg.tag` for `key`.
pub fn seal(msg: &mut Sealed, key: &[u8; 32]) {
    let full = hmac(key, &[&wire::sealed_tagged_bytes(msg)]);
    msg.tag.copy_from_slice(&full[..TAG_LEN]);
}

/// The bytes of a sealed message: `body` with `session` and `seq`, tagged with `key`.
pub fn sealed_message(
    session: u64,
    seq: u64,
    body: crate::wire::SealedBody,
    key: &[u8; 32],
) -> alloc::vec::Vec<u8> {
    let mut m = Sealed {
        session,
        seq,
        body,
        tag: [0; TAG_LEN],
    };
    seal(&mut m, key);
    crate::wire::Message::Sealed(m).emit()
}

/// Whether `msg.tag` is right for `key` (in constant time).
pub fn tag_is_valid(msg: &Sealed, key: &[u8; 32]) -> bool {
    let mut m = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    m.update(&wire::sealed_tagged_bytes(msg));
    m.verify_truncated_left(&msg.tag).is_ok()
}

/// Refuses sequence numbers seen before or too old, accepting reordering within 64.
#[derive(Debug, Default, Clone)]
pub struct ReplayWindow {
    top: u64,
    seen: u64,
}

impl ReplayWindow {
    /// Records `seq` if it is new and not older than the window; says whether it was.
    /// Call only after the message's tag was checked.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = seq;
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
    use crate::wire::{LinkInfo, LinkKind, Message, SealedBody};
    use alloc::vec;
    use core::net::Ipv4Addr;

    fn advert() -> Advert {
        Advert {
            identity: [0; 32],
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
        // Through the wire and back.
        let Ok(Message::Advert(b)) = Message::parse(&Message::Advert(a.clone()).emit()) else {
            panic!("parse")
        };
        assert!(advert_is_genuine(&b));
        let mut c = a.clone();
        c.links[0].router = Ipv4Addr::new(10, 77, 2, 66);
        assert!(!advert_is_genuine(&c), "a changed link");
        let mut d = a;
        d.identity = Identity::from_seed([4; 32]).public();
        assert!(!advert_is_genuine(&d), "someone else's identity");
    }

    #[test]
    fn both_sides_derive_the_same_session_keys() {
        let id = Identity::from_seed([1; 32]);
        let client = ClientKeys::from_secret([2; 32]);
        let eph = Ephemeral::from_random([3; 32]);
        let cn = [4; 16];
        let mut ack = AssociateAck {
            session: 9,
            client_key: client.public(),
            global_addr: Ipv4Addr::new(10, 200, 0, 5),
            ephemeral: eph.public(),
            nonce: [5; 16],
            signature: [0; 64],
        };
        id.sign_ack(&mut ack, &cn);
        assert!(ack_is_genuine(&ack, &id.public(), &cn));
        assert!(
            !ack_is_genuine(&ack, &id.public(), &[6; 16]),
            "bound to the client's nonce"
        );
        let hs = eph.session(&ack.client_key, &cn, &ack.nonce);
        let cl = client.session(&ack, &cn);
        assert_eq!(hs, cl);
        assert_ne!(hs.to_client, hs.to_homespot);
        // An impostor client with another secret gets other keys.
        let other = ClientKeys::from_secret([8; 32]).session(&ack, &cn);
        assert_ne!(other, hs);
    }

    #[test]
    fn tags_and_replays() {
        let key = [7; 32];
        let mut m = Sealed {
            session: 1,
            seq: 1,
            body: SealedBody::Switch {
                link: 1,
                global: Ipv4Addr::new(10, 200, 0, 5),
                client_addr: Ipv4Addr::new(10, 77, 2, 100),
            },
            tag: [0; TAG_LEN],
        };
        seal(&mut m, &key);
        assert!(tag_is_valid(&m, &key));
        assert!(!tag_is_valid(&m, &[8; 32]));
        let mut forged = m;
        forged.body = SealedBody::Switch {
            link: 1,
            global: Ipv4Addr::new(10, 200, 0, 6),
            client_addr: Ipv4Addr::new(10, 77, 2, 66),
        };
        assert!(!tag_is_valid(&forged, &key));

        let mut w = ReplayWindow::default();
        assert!(w.accept(1));
        assert!(!w.accept(1), "replay");
        assert!(w.accept(5));
        assert!(w.accept(3), "reordered within the window");
        assert!(!w.accept(3));
        assert!(w.accept(100));
        assert!(!w.accept(30), "older than the window");
        assert!(!w.accept(0));
    }
}
