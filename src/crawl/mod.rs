//! `kadswarm crawl`: swarm membership from the DHT.

pub mod metadata;
