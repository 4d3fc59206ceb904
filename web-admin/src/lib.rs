//! The HomeSpot web admin panel (DESIGN.md section 9), being built (issue 14).
//!
//! What exists: the panel's security core, sans-IO and unit-tested: the admin password as
//! argon2id sized for a 128 MB router ([`password`]); sessions with random 128-bit ids and CSRF
//! tokens, an idle timeout and a bounded table ([`session`]); login rate limiting per source
//! with backoff ([`limit`]); the same-origin check for state-changing requests ([`origin`]);
//! the password hash and the one-time setup code as root-only files written atomically
//! ([`secret_file`]).
//!
//! What does not exist yet: the `router(state) -> axum::Router` with its pages, assets and
//! live updates, its mounting in homespotd, and `homespotd passwd`. Nothing here listens on
//! a socket.

pub mod limit;
pub mod origin;
pub mod password;
pub mod secret_file;
pub mod session;
