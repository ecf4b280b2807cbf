//! kadswarm: a BitTorrent Mainline DHT node (BEP 5) and trackerless swarm finder.
//!
//! The protocol logic lives in sans-IO cores that take `now` and packets as inputs and return
//! packets, deadlines and events ([`dht::node::Node`]); thin tokio drivers feed them and read
//! the clock ([`dht::driver`], [`clock`]). Each UDP socket has one owner task
//! ([`net::udp_endpoint`]). The data path reads in one direction: socket → demultiplexer
//! ([`net::socket`]) → DHT core or uTP table → events for the command line ([`cli`]). Peer connections
//! speak the message layer in [`wire`] (BEP 3 framing, BEP 10 extensions, BEP 9 metadata).

// Outside tests nothing may `unwrap` or `expect`: an error from a packet, a file or the
// command line is a value, never a panic. The few panics kept on our own invariants carry an
// `#[allow]` that says why no input can reach them.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bencode;
pub mod bencode_writer;
pub mod cli;
pub mod clock;
pub mod crawl;
pub mod dht;
pub mod id;
pub mod lsd;
pub mod magnet;
pub mod metrics;
pub mod net;
pub mod session;
pub mod sim;
pub mod storage;
pub mod swarm;
pub mod torrent;
pub mod utp;
pub mod wire;
