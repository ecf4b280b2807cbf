//! The Mainline DHT (BEP 5 and extensions): wire format, routing table, lookups, peer store,
//! the sans-IO node core and its tokio driver.

pub mod compact;
pub mod krpc;
