//! The Mainline DHT (BEP 5 and extensions): wire format, routing table, lookups, peer store,
//! the sans-IO node core and its tokio driver.

pub mod bep42;
pub mod bloom;
pub mod compact;
pub mod cookie;
pub mod driver;
pub mod external_ip;
pub mod krpc;
pub mod lookup;
pub mod node;
pub mod persist;
pub mod pool;
pub mod pool_file;
pub mod routing;
pub mod stats;
pub mod store;
pub mod transactions;
