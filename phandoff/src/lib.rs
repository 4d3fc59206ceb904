//! P-Handoff and Co-Link signalling between a HomeSpot and its clients.
//!
//! What it does today: the version-1 wire format ([`wire`]: Advert, Query, Associate,
//! AssociateAck and the sealed Switch/SwitchAck/Probe/ProbeAck/Bye, every length bounded,
//! parsing that never panics) and the cryptography around it ([`crypto`]: the HomeSpot's
//! Ed25519 identity and signed adverts, X25519 at association, session keys, HMAC-SHA256 tags
//! and a replay window). It is sans-IO: no sockets, no clock, no randomness of its own; it
//! builds with `--no-default-features` as `no_std` + `alloc`.
//!
//! What it does not do yet (issue 4, open): the endpoint state machines with timers for
//! adverts, probes and Switch retransmission; the tokio driver; the rtnetlink route
//! programmer; the HomeSpot responder in homespotd and the client.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod crypto;
pub mod wire;
