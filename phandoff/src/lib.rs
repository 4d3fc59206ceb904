//! P-Handoff and Co-Link signalling between a HomeSpot and its clients.
//!
//! What it does today: the version-1 wire format ([`wire`]: Advert, Query, Associate,
//! AssociateAck and the sealed Switch/SwitchAck/Probe/ProbeAck/Bye, every length bounded,
//! parsing that never panics), the cryptography around it ([`crypto`]: the HomeSpot's Ed25519
//! identity and signed adverts, X25519 at association, session keys, HMAC-SHA256 tags and a
//! replay window), and the two endpoints as state machines with explicit time:
//! [`responder::Responder`] (the HomeSpot: adverts, associations with stable global addresses,
//! authenticated switches and probes) and [`client::Client`] (discovery with trust on first
//! use, association, make-before-break switches with retransmission, dead-link detection by
//! probes). It is sans-IO: no sockets, no clock, no randomness of its own (callers pass
//! [`endpoint::Instant`]s and seeds); it builds with `--no-default-features` as
//! `no_std` + `alloc`.
//!
//! What it does not do yet (issue 4, open): the tokio driver (a UDP socket per link), the
//! rtnetlink route programmer, the responder inside homespotd and a client binary, and the
//! end-to-end tests on the namespace test bed.
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
