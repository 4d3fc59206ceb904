//! DHCP for every LAN link: the sans-IO engine, the lease table, replies, and the socket driver.

pub mod engine;
pub mod lease;
pub mod limits;
mod overload;
pub mod reply;
pub mod server;
