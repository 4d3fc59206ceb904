//! `homespot-agent`: the laptop side of HomeSpot (DESIGN.md section 6).
//!
//! What it does: watches the laptop's links over rtnetlink ([`links`]); discovers on each link
//! a HomeSpot (P-Handoff Query, signed advert, identity trusted per network: [`trust`]) or the network's
//! proxy (WPAD by DHCPINFORM, [`inform`]; the PAC file evaluated in a sandboxed QuickJS,
//! [`pac`]); chooses a link by policy ([`policy`]); at a HomeSpot associates, takes the global
//! address and moves between radios by P-Handoff (re-handshaking at once, with the same
//! address, when the HomeSpot restarted); and runs a local proxy on 127.0.0.1
//! ([`proxy`]) that restarts in-flight HTTP requests on the new path after a handoff (Range
//! resume, read-and-discard fallback, hibernation while no link is up). A Mobility API on a
//! Unix socket ([`api`]) reports every handoff with its measured interruption ([`path::Meter`]);
//! [`show`] renders its status and events for people. At a HomeSpot with a Bluetooth link
//! it brings that link up itself when the policy wants it and takes it down when idle
//! ([`bluetooth`]: pairing and the PAN through BlueZ over D-Bus). The Connection Manager ([`manager`]) is a
//! sans-IO core (link table, handoff ledger, decisions, explicit time) under an async shell that
//! runs discovery and the P-Handoff client. A restarted response is continued only
//! when it is provably the same entity (strong ETag, or Last-Modified with a length); else the
//! client connection is closed, never a spliced body. Library errors are typed ([`error`]).
//!
//! What it does not do: run DHCP for the link addresses (the OS's DHCP client does), DNS-based
//! WPAD (off: a known attack vector), IPv6, more than one HomeSpot association at a time
//! (another HomeSpot's network is used as a plain one, as is, for a while, one where the
//! HomeSpot never answers: a first-met one whose handshakes fail, or a replay of the pinned
//! one's advert on another network),
//! HTTPS interception (CONNECT tunnels are relayed, and closed when the network changes
//! outside a HomeSpot), or resend request bodies above `proxy.resend_body_limit` (refused with 413).

pub mod api;
pub mod bluetooth;
pub mod config;
pub mod discovery;
pub mod error;
pub mod events;
pub mod fetch;
pub mod inform;
pub mod linkroute;
pub mod links;
pub mod manager;
pub mod pac;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod show;
pub mod state;
pub mod trust;
