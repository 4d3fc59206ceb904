//! The HomeSpot web admin panel (DESIGN.md section 9): `router(panel) -> axum::Router`,
//! mounted by homespotd on its LAN link addresses and served by [`serve`] (bounded: 128
//! connections, 32 per source, 10 s for a request head).
//!
//! What it does: the page, its script and style, embedded (no build step, nothing fetched
//! from elsewhere); first-password setup with a one-time code, login (rate-limited per source
//! with backoff, one argon2id hash at a time), logout and password change; the live state as a
//! snapshot and as Server-Sent Events (the state each second, each event as it happens);
//! settings edits, reservations and forgotten leases, each handed to the [`Backend`], which
//! validates and applies them (homespotd: through its config file and reload path). Every
//! answer carries the security headers (CSP without inline script, no framing); everything
//! but the page and login needs a session; every change passes the same-origin check and the
//! session's CSRF token.
//!
//! The security core is sans-IO and unit-tested: the password as argon2id sized for a 128 MB
//! router ([`password`]); sessions with random 128-bit ids and CSRF tokens, an idle timeout and
//! a bounded table ([`session`]); login limits ([`limit`]); the same-origin check
//! ([`origin`]); root-only secret files written atomically ([`secret_file`]).
//!
//! What it does not do: TLS (the panel is for the LAN; put it behind a TLS proxy to reach it
//! from elsewhere), users other than the one admin, or validation of settings itself (the
//! backend's config validation is the one authority).

mod assets;
mod auth;
mod change;
#[cfg(test)]
mod change_tests;
pub mod limit;
mod live;
pub mod origin;
pub mod password;
pub mod router;
#[cfg(test)]
mod router_tests;
pub mod secret_file;
pub mod serve;
pub use serve::serve;
pub mod session;

pub use router::{router, Applied, Backend, Change, Edit, Files, Panel, Refused};
