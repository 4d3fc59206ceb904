//! P-Handoff and Co-Link signalling between a HomeSpot and its clients, protocol version 2.
//!
//! # Threat model
//!
//! Every other device on every link is hostile: it sees every frame, and may replay, forge,
//! flood, and claim to be a HomeSpot. Without protection any of them could move another
//! client's traffic (its host route) to itself, take or exhaust the global addresses, or pose
//! as the HomeSpot and receive the laptop's proxied requests.
//!
//! # What each message proves
//!
//! | message | proves | may change on the receiver |
//! |---|---|---|
//! | `Advert` (signed, Ed25519) | the HomeSpot's identity vouches for its links and its Noise static key | the client's view of the links, if it trusts the identity on this network (the agent decides, per network) |
//! | `Query` | nothing | nothing (an advert in reply, rate-limited per source) |
//! | `Initiation` (Noise IK `e, es, s, ss`, timestamp, mac1, mac2) | the sender read the advert (mac1), receives at its address (mac2, under load), holds its static key (`ss`), and the message is newer than the last from that key (timestamp) | a pending handshake: bounded ([`responder::MAX_PENDING`]), expiring ([`responder::PENDING_TTL`]); the key's latest timestamp |
//! | `Response` (`e, ee, se`) | the HomeSpot holds the static key of the advert; forward secrecy | the client's pending handshake |
//! | `CookieReply` | the HomeSpot is under load; the cookie for the client's address | the client's cookie |
//! | `Confirm` (first transport message) | the client derived the session keys: the handshake is complete | only now: the key's address is assigned and persisted, the key's older session is replaced |
//! | `Switch`, `Probe`, `Bye` and answers (ChaCha20-Poly1305, counter) | the session's holder sent it, once | the host route, liveness, the session's end |
//! | `UnknownSession` (signed) | the HomeSpot no longer knows the session named | the client re-handshakes (its old session kept until the new one completes) |
//!
//! The handshake is `Noise_IK_25519_ChaChaPoly_BLAKE2s` from the `snow` crate, with
//! WireGuard's timestamp against replay and its mac1/mac2/cookie answer to floods ([`noise`]).
//!
//! # What is here
//!
//! The wire format ([`wire`]: every length bounded, parsing that never panics, `emit(parse(x))
//! == x`), keys and signatures ([`crypto`]), the handshake ([`noise`]), the global address
//! pool with expiry and eviction ([`pool`]), token buckets ([`limiter`]), and the two endpoints
//! as state machines with explicit time: [`responder::Responder`] (the HomeSpot) and
//! [`client::Client`]. The core is sans-IO: no sockets, no clock, no randomness of its own
//! (callers pass [`endpoint::Instant`]s and a `rand_core::CryptoRng`); it builds with
//! `--no-default-features` as `no_std` + `alloc`. Features: `tokio` (a driver with a UDP socket
//! per link, OS randomness checked at start) and `netlink` (the rtnetlink route programmer).
//!
//! # What it does not do
//!
//! Decide which identity to trust on which network (the agent's `trust` module does), rekey
//! long sessions (a session lives until Bye, idleness or a restart), defend a never-seen
//! network against a device that spoofs the router, or implement any cryptographic primitive
//! itself (snow, dalek, RustCrypto).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod client;
pub mod crypto;
#[cfg(feature = "tokio")]
pub mod driver;
pub mod endpoint;
pub mod limiter;
pub mod noise;
pub mod pool;
pub mod responder;
#[cfg(feature = "std")]
pub mod routes;
pub mod wire;
