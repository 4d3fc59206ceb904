//! The HomeSpot web admin panel (DESIGN.md section 9), being built (issue 14).
//!
//! What exists: the panel's security core, sans-IO and unit-tested: the admin password as
//! argon2id sized for a 128 MB router ([`password`]); sessions with random 128-bit ids and CSRF
//! tokens, an idle timeout and a bounded table ([`session`]); login rate limiting per source
//! with backoff ([`limit`]); the same-origin check for state-changing requests ([`origin`]);
//! the password hash and the one-time setup code as root-only files written atomically
//! ([`secret_file`]).
//!
//! [`router`] is the panel's HTTP API so far: first-password setup with the one-time code,
//! login (rate-limited), logout, and the live status behind a session, with security headers
//! on every answer (CSP without inline script, no framing) and the same-origin and CSRF checks
//! on every state change; tested with `router(fake).oneshot(..)`.
//!
//! What does not exist yet: the pages, assets and live updates (Server-Sent Events), the
//! settings, its mounting in homespotd, and `homespotd passwd`. Nothing here listens on a
//! socket by itself.

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
pub mod session;

pub use router::{router, serve, Applied, Backend, Change, Edit, Files, Panel, Refused};
