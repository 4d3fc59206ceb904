//! homespotd, the service of a HomeSpot access point.
//!
//! What it does today: DHCP on every LAN link (RFC 2131/2132, with the WPAD option 252 and
//! correct DHCPINFORM answers), leases kept durably in redb and acknowledged only once on disk.
//!
//! DHCP is bounded against floods: one outstanding offer per address, per-client and per-link
//! rate limits, relayed packets only from configured relays.
//!
//! Also: an HTTP proxy on every link address with the PAC file (`proxy`; destination policy,
//! timeouts, fair limits per device and per link), and, with a
//! `[handoff]` section, the P-Handoff/Co-Link responder (`handoff`, protocol version 2):
//! signed adverts, Noise IK association with cookies under load, stable global addresses per
//! client key assigned only after a completed handshake (expiring when unused, evicted oldest
//! first when the pool is full), an unreachable route over the global subnet, host routes
//! switched through rtnetlink, refusals counted and logged; a client moved
//! onto a faster link has its proxy connections paced at that link's configured rate for a
//! moment, and while on a Bluetooth link at 90 % of its rate ([`moves`]), and after any move
//! its connections' backed-off retransmission timers are taken back (RFC 6069, [`revert`]);
//! Bluetooth links carry one TCP segment per packet.
//!
//! Operations: links whose interface is missing or re-created are waited for and served again
//! ([`linkwatch`]); SIGHUP re-reads the config and applies what can change while running
//! ([`reload`]); the live state (links, devices, counters, events) is kept in [`status`] and
//! read by `homespotd status` over a root-only Unix socket; `--check-config` checks a file
//! against the system ([`config::system`]).
//!
//! Bluetooth ([`bluetooth`]): a `kind = "bluetooth"` link with `bluez_adapter` is BlueZ's PAN
//! NAP (registered over D-Bus and held, registered again when bluetoothd restarts), with a
//! pairing agent that accepts only within the window `homespotd bluetooth pair` opens (or
//! trusted devices only); outside it the adapter is hidden and not pairable, and a device
//! that connects unpaired or bonds anyway is counted and removed.
//!
//! The web admin panel ([`admin`]): [`web_admin::router`] on every LAN link address at
//! `[admin] port`, reading the live state and changing settings through the config file and
//! the reload path; `homespotd passwd` sets its password.
//!
//! It does not configure interface addresses: the OS (netifd on
//! OpenWrt, the test bed in tests) puts each link's address on its interface. It does not
//! run DNS or NAT: the router keeps its own.
//!
//! Layout: [`config`] reads and validates the TOML file; [`dhcp::engine`] is the sans-IO DHCP
//! logic (`handle_packet(now, link, src, bytes)`); [`dhcp::server`] drives it over UDP sockets with
//! group commit into [`store`].

pub mod admin;
#[cfg(feature = "bluetooth")]
pub mod bluetooth;
pub mod config;
pub mod dhcp;
pub mod globals;
pub mod handoff;
pub mod linkwatch;
pub mod memory;
pub mod moves;
pub mod passwd;
pub mod proxy;
pub mod reload;
pub mod revert;
pub mod status;
pub mod store;
