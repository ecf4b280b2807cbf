//! Local service discovery (BEP 14): finding peers of our torrents on the local network by
//! multicasting BT-SEARCH announces to 239.192.152.143:6771 (or [ff15::efc0:988f]:6771) and
//! listening for those of others.
//!
//! [`message`] is the datagram, [`announcer`] the sans-IO core (what to send when, what to
//! accept), [`driver`] the multicast socket and its tokio task: `lsd::start` hands back a
//! channel of `(info-hash, peer address)` for the torrent runner to dial. [`subnets`] reads
//! the local subnets that announces must come from.

pub mod announcer;
pub mod driver;
pub mod message;
pub mod subnets;

pub use driver::{start, LsdConfig, LsdError};
