//! The download and seeding session (BEP 3, BEP 9, BEP 10): the tokio drivers around the
//! sans-IO torrent core (`swarm::session`). Each torrent has one task that owns its core
//! (`driver`), a disk thread that owns its files (`disk`), and one task per peer connection
//! that only frames bytes (`peer`), over TCP or uTP (`transport`); the runner dials and
//! accepts. Data flows one way: socket -> peer task -> torrent core -> disk.

mod disk;
mod disk_queue;
mod driver;
pub mod peer;
pub mod peer_list;
pub mod runner;
pub mod seed_policy;
pub mod throttle;
pub mod torrent;
pub mod transport;

pub use torrent::{Torrent, TorrentConfig, TorrentEvent};
