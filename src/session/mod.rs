//! The download and seeding session (BEP 3, BEP 9, BEP 10): the tokio driver around the
//! sans-IO cores. It owns the connections (TCP or uTP) and the clock; the piece picker, the choker,
//! each peer's protocol state and the metadata assembler decide, and this code carries their
//! decisions out. Data flows one way: socket -> peer wire -> picker -> storage.

mod fetched_metadata;
pub mod peer;
pub mod peer_list;
pub mod peer_state;
pub mod runner;
pub mod seed_policy;
pub mod smart_ban;
pub mod throttle;
pub mod torrent;
pub mod transport;

pub use torrent::{Torrent, TorrentConfig, TorrentEvent};

/// Our peer id: the client prefix (Azureus style) and random bytes.
pub fn new_peer_id() -> [u8; 20] {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-KS0001-");
    for b in &mut id[8..] {
        // Printable, as many clients show peer ids in their UIs.
        *b = b'0' + rand::random_range(0..10u8);
    }
    id
}
