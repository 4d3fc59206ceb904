//! The association handshake: Noise `IK` (`Noise_IK_25519_ChaChaPoly_BLAKE2s`, by the `snow`
//! crate) as WireGuard uses it, with WireGuard's answers to replay and flooding.
//!
//! ```text
//! IK:  <- s                       (the client read the HomeSpot's static key in the signed advert)
//!      -> e, es, s, ss  [timestamp]     Initiation: proves the client holds its static key,
//!                                       hides that key from eavesdroppers (encrypted under es)
//!      <- e, ee, se                     Response: proves the HomeSpot holds its static key;
//!                                       ee and se give forward secrecy
//!      -> Confirm (first transport message): the client derived the session keys
//! ```
//!
//! The prologue binds the handshake to the HomeSpot's Ed25519 identity. The Initiation's
//! payload is the client's timestamp: the HomeSpot keeps the greatest one per client key and
//! refuses anything not greater, so a captured Initiation cannot be replayed. Every handshake
//! message ends with two MACs (keyed BLAKE2s-128): `mac1`, keyed by the receiver's static key,
//! lets the HomeSpot drop junk before any Diffie-Hellman; `mac2`, keyed by a cookie the
//! HomeSpot handed to the sender's address, is required when the HomeSpot is under load, so a
//! flood of Initiations from addresses that cannot receive costs it no Diffie-Hellman.
//!
//! Randomness: the caller hands each handshake the 32 bytes of its ephemeral key; this module
//! draws nothing itself (an exhausted source is an error, never a fallback).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use blake2::digest::{FixedOutput, KeyInit, Mac, Update};
use blake2::{Blake2s256, Blake2sMac};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{HandshakeState, StatelessTransportState};

use crate::wire::{Body, INIT_NOISE_LEN, RESP_NOISE_LEN, TAG_LEN};

/// The Noise protocol name.
pub const PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"phandoff v2";

/// Why a handshake or transport message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoiseError {
    /// The Noise layer refused it (wrong keys, tampered, or wrong state).
    Refused,
    /// The decrypted payload is not what the message must carry.
    BadPayload,
}

impl From<snow::Error> for NoiseError {
    fn from(_: snow::Error) -> NoiseError {
        NoiseError::Refused
    }
}

/// Hands snow the 32 bytes of one ephemeral key, and nothing more.
struct OneKey(Option<[u8; 32]>);

impl Random for OneKey {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match self.0.take() {
            Some(k) if dest.len() <= k.len() => {
                dest.copy_from_slice(&k[..dest.len()]);
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

/// BLAKE2s from the `blake2` crate, as snow's own wrapper does it.
#[derive(Default)]
struct Blake2sHash(Blake2s256);

impl Hash for Blake2sHash {
    fn name(&self) -> &'static str {
        "BLAKE2s"
    }
    fn block_len(&self) -> usize {
        64
    }
    fn hash_len(&self) -> usize {
        32
    }
    fn reset(&mut self) {
        self.0 = Blake2s256::default();
    }
    fn input(&mut self, data: &[u8]) {
        blake2::Digest::update(&mut self.0, data);
    }
    fn result(&mut self, out: &mut [u8]) {
        let h = blake2::Digest::finalize_reset(&mut self.0);
        out[..32].copy_from_slice(&h);
    }
}

struct Resolver([u8; 32]);

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(OneKey(Some(self.0))))
    }
    fn resolve_dh(&self, c: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(c)
    }
    fn resolve_hash(&self, c: &HashChoice) -> Option<Box<dyn Hash>> {
        // Only the suite's own hash: resolving through snow's table would link BLAKE2b,
        // SHA-256 and SHA-512 too (24 KB of a small device's flash).
        match c {
            HashChoice::Blake2s => Some(Box::new(Blake2sHash::default())),
            _ => None,
        }
    }
    fn resolve_cipher(&self, c: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(c)
    }
}

fn builder<'a>(ephemeral: [u8; 32]) -> Result<snow::Builder<'a>, NoiseError> {
    let params = PATTERN.parse()?;
    Ok(snow::Builder::with_resolver(
        params,
        Box::new(Resolver(ephemeral)),
    ))
}

fn prologue(identity: &[u8; 32]) -> [u8; 43] {
    let mut p = [0u8; 43];
    p[..11].copy_from_slice(PROLOGUE);
    p[11..].copy_from_slice(identity);
    p
}

/// The client's side of a handshake in flight.
pub struct Initiator {
    hs: HandshakeState,
}

impl Initiator {
    /// Writes the Noise part of an Initiation to the HomeSpot with static key `remote` and
    /// identity `identity`, carrying `timestamp`.
    pub fn start(
        client_secret: &[u8; 32],
        remote: &[u8; 32],
        identity: &[u8; 32],
        ephemeral: [u8; 32],
        timestamp: u64,
    ) -> Result<(Initiator, [u8; INIT_NOISE_LEN]), NoiseError> {
        let p = prologue(identity);
        let mut hs = builder(ephemeral)?
            .local_private_key(client_secret)?
            .remote_public_key(remote)?
            .prologue(&p)?
            .build_initiator()?;
        let mut out = [0u8; INIT_NOISE_LEN];
        let n = hs.write_message(&timestamp.to_be_bytes(), &mut out)?;
        if n != INIT_NOISE_LEN {
            return Err(NoiseError::Refused);
        }
        Ok((Initiator { hs }, out))
    }

    /// Reads the Response's Noise part: the session keys.
    pub fn finish(mut self, noise: &[u8; RESP_NOISE_LEN]) -> Result<Session, NoiseError> {
        let mut payload = [0u8; RESP_NOISE_LEN];
        let n = self.hs.read_message(noise, &mut payload)?;
        if n != 0 {
            return Err(NoiseError::BadPayload);
        }
        Ok(Session {
            t: self.hs.into_stateless_transport_mode()?,
        })
    }
}

/// What the HomeSpot learned from a valid Initiation.
pub struct Accepted {
    /// The handshake, ready for [`Accepted::respond`].
    hs: HandshakeState,
    /// The client's static key (its identity).
    pub client_key: [u8; 32],
    /// The client's timestamp.
    pub timestamp: u64,
}

impl Accepted {
    /// Reads an Initiation's Noise part (two Diffie-Hellman operations).
    pub fn read(
        secret: &[u8; 32],
        identity: &[u8; 32],
        ephemeral: [u8; 32],
        noise: &[u8; INIT_NOISE_LEN],
    ) -> Result<Accepted, NoiseError> {
        let p = prologue(identity);
        let mut hs = builder(ephemeral)?
            .local_private_key(secret)?
            .prologue(&p)?
            .build_responder()?;
        let mut payload = [0u8; INIT_NOISE_LEN];
        let n = hs.read_message(noise, &mut payload)?;
        if n != 8 {
            return Err(NoiseError::BadPayload);
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&payload[..8]);
        let client_key: [u8; 32] = hs
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or(NoiseError::Refused)?;
        Ok(Accepted {
            hs,
            client_key,
            timestamp: u64::from_be_bytes(ts),
        })
    }

    /// Writes the Response's Noise part: the session keys (two more Diffie-Hellman).
    pub fn respond(mut self) -> Result<(Session, [u8; RESP_NOISE_LEN]), NoiseError> {
        let mut out = [0u8; RESP_NOISE_LEN];
        let n = self.hs.write_message(&[], &mut out)?;
        if n != RESP_NOISE_LEN {
            return Err(NoiseError::Refused);
        }
        Ok((
            Session {
                t: self.hs.into_stateless_transport_mode()?,
            },
            out,
        ))
    }
}

/// The keys of an established session (one per direction, so a message can never be
/// reflected back to its sender). Counters are the caller's: every message carries its own.
pub struct Session {
    t: StatelessTransportState,
}

impl Session {
    /// Encrypts `body` as message number `counter`.
    pub fn seal(&self, counter: u64, body: &Body) -> Result<Vec<u8>, NoiseError> {
        let plain = body.emit();
        let mut out = vec![0u8; plain.len() + TAG_LEN];
        let n = self.t.write_message(counter, &plain, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Decrypts message number `counter`.
    pub fn open(&self, counter: u64, sealed: &[u8]) -> Result<Body, NoiseError> {
        let mut plain = [0u8; crate::wire::MAX_SEALED];
        let n = self.t.read_message(counter, sealed, &mut plain)?;
        Body::parse(&plain[..n]).map_err(|_| NoiseError::BadPayload)
    }
}

fn hash(label: &[u8; 8], key: &[u8; 32]) -> [u8; 32] {
    let mut h = Blake2s256::default();
    Update::update(&mut h, label);
    Update::update(&mut h, key);
    h.finalize_fixed().into()
}

/// The key of `mac1` for messages to the holder of static key `public`.
pub fn mac1_key(public: &[u8; 32]) -> [u8; 32] {
    hash(b"mac1----", public)
}

/// The key that encrypts cookies from the holder of static key `public`.
pub fn cookie_key(public: &[u8; 32]) -> [u8; 32] {
    hash(b"cookie--", public)
}

/// Keyed BLAKE2s-128 of `data` (`key` of 16 or 32 bytes).
pub fn mac(key: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
    match <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            Mac::update(&mut m, data);
            m.finalize().into_bytes().into()
        }
        // Keys are 16 or 32 bytes here; a longer key cannot be a valid MAC key, so nothing
        // verifies against this.
        Err(_) => [0xff; TAG_LEN],
    }
}

/// Whether `tag` is `mac(key, data)`, in constant time.
pub fn mac_ok(key: &[u8], data: &[u8], tag: &[u8; TAG_LEN]) -> bool {
    match <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            Mac::update(&mut m, data);
            m.verify_slice(tag).is_ok()
        }
        Err(_) => false,
    }
}

/// Encrypts `cookie` for a CookieReply (associated data: the Initiation's `mac1`).
pub fn seal_cookie(
    key: &[u8; 32],
    nonce: &[u8; 24],
    cookie: &[u8; TAG_LEN],
    mac1: &[u8; TAG_LEN],
) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..TAG_LEN].copy_from_slice(cookie);
    let c = XChaCha20Poly1305::new(key.into());
    if let Ok(tag) = c.encrypt_in_place_detached(XNonce::from_slice(nonce), mac1, &mut out[..16]) {
        out[16..].copy_from_slice(&tag);
    }
    out
}

/// Decrypts a CookieReply's cookie.
pub fn open_cookie(
    key: &[u8; 32],
    nonce: &[u8; 24],
    sealed: &[u8; 32],
    mac1: &[u8; TAG_LEN],
) -> Option<[u8; TAG_LEN]> {
    let mut buf = [0u8; TAG_LEN];
    buf.copy_from_slice(&sealed[..16]);
    let c = XChaCha20Poly1305::new(key.into());
    c.decrypt_in_place_detached(
        XNonce::from_slice(nonce),
        mac1,
        &mut buf,
        sealed[16..].into(),
    )
    .ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{x25519_public, Identity};
    use core::net::Ipv4Addr;

    #[test]
    fn a_handshake_gives_both_sides_one_session() {
        let id = Identity::from_seed([1; 32]);
        let client = [2u8; 32];
        let (init, noise) =
            Initiator::start(&client, &id.noise_public(), &id.public(), [3; 32], 77)
                .expect("start");
        let acc = Accepted::read(id.noise_secret(), &id.public(), [4; 32], &noise).expect("read");
        assert_eq!(acc.client_key, x25519_public(&client));
        assert_eq!(acc.timestamp, 77);
        let (hs_session, resp) = acc.respond().expect("respond");
        let cl_session = init.finish(&resp).expect("finish");
        let b = Body::Confirmed {
            global: Ipv4Addr::new(10, 200, 0, 5),
        };
        let sealed = hs_session.seal(0, &b).expect("seal");
        assert_eq!(cl_session.open(0, &sealed), Ok(b));
        assert!(
            cl_session.open(1, &sealed).is_err(),
            "the counter is the nonce"
        );
        assert!(
            hs_session.open(0, &sealed).is_err(),
            "one key per direction: no reflection"
        );
        let c = cl_session.seal(0, &Body::Confirm).expect("seal");
        assert_eq!(hs_session.open(0, &c), Ok(Body::Confirm));
    }

    #[test]
    fn the_wrong_homespot_or_identity_cannot_read_it() {
        let id = Identity::from_seed([1; 32]);
        let other = Identity::from_seed([9; 32]);
        let (_, noise) = Initiator::start(&[2; 32], &id.noise_public(), &id.public(), [3; 32], 1)
            .expect("start");
        assert!(Accepted::read(other.noise_secret(), &id.public(), [4; 32], &noise).is_err());
        assert!(
            Accepted::read(id.noise_secret(), &other.public(), [4; 32], &noise).is_err(),
            "the prologue binds the signing identity"
        );
        let mut bad = noise;
        bad[40] ^= 1;
        assert!(Accepted::read(id.noise_secret(), &id.public(), [4; 32], &bad).is_err());
    }

    #[test]
    fn a_response_from_someone_without_the_static_key_fails() {
        let id = Identity::from_seed([1; 32]);
        let (init, _) = Initiator::start(&[2; 32], &id.noise_public(), &id.public(), [3; 32], 1)
            .expect("start");
        // An impostor answers with an Initiation of its own making.
        let imp = Identity::from_seed([5; 32]);
        let (i2, noise2) =
            Initiator::start(&[6; 32], &imp.noise_public(), &imp.public(), [7; 32], 1)
                .expect("start");
        let acc =
            Accepted::read(imp.noise_secret(), &imp.public(), [8; 32], &noise2).expect("read");
        let (_, resp) = acc.respond().expect("respond");
        assert!(init.finish(&resp).is_err());
        drop(i2);
    }

    #[test]
    fn macs_and_cookies() {
        let k = mac1_key(&[1; 32]);
        let t = mac(&k, b"hello");
        assert!(mac_ok(&k, b"hello", &t));
        assert!(!mac_ok(&k, b"hellO", &t));
        assert!(!mac_ok(&mac1_key(&[2; 32]), b"hello", &t));
        let ck = cookie_key(&[1; 32]);
        let sealed = seal_cookie(&ck, &[3; 24], &[4; 16], &t);
        assert_eq!(open_cookie(&ck, &[3; 24], &sealed, &t), Some([4; 16]));
        assert_eq!(open_cookie(&ck, &[3; 24], &sealed, &[0; 16]), None);
        assert_eq!(
            open_cookie(&cookie_key(&[2; 32]), &[3; 24], &sealed, &t),
            None
        );
    }
}
