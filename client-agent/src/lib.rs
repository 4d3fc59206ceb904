//! `homespot-agent`: the laptop side of HomeSpot.
//!
//! Not built yet (issue 5). When it is, it will watch links, discover a HomeSpot (P-Handoff) or a
//! network's proxy (WPAD/PAC), and run a local proxy that restarts in-flight HTTP requests after a
//! handoff. Today this crate contains no code and claims no capability.
