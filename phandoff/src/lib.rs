//! P-Handoff and Co-Link signalling between a HomeSpot and its clients.
//!
//! Not built yet (issue 4). It will be a sans-IO, `no_std` + `alloc` core: wire format, endpoint
//! state machines with explicit `now`, and optional tokio/rtnetlink drivers. Today it contains no
//! code and claims no capability.
#![cfg_attr(not(feature = "std"), no_std)]
