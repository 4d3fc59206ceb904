//! The HomeSpot web admin panel.
//!
//! Not built yet (a later issue). It will expose `router(state) -> axum::Router`, mounted by
//! homespotd behind a password. Today it contains no code and claims no capability.
