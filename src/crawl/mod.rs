//! The DHT crawler (`kadswarm crawl`): what it records and where it stores it.

pub mod record;
pub mod store;
