//! What becomes of an info dictionary fetched from peers once its hash checks out.

use std::sync::Arc;

use crate::session::torrent::{Torrent, TorrentError, TorrentEvent};
use crate::torrent::Metainfo;

/// Parses and installs metadata that hashed to the info-hash. If it does not describe a
/// usable torrent, no peer can ever send better (the hash pins these exact bytes), so the
/// torrent reports it as [`TorrentEvent::MetadataUnusable`] instead of waiting forever.
pub(crate) fn install_fetched_metadata(torrent: &Arc<Torrent>, info_bytes: Vec<u8>) {
    let meta = match Metainfo::from_info_bytes(info_bytes) {
        Ok(meta) => meta,
        Err(e) => {
            tracing::error!(error = %e, "the metadata hashes right but does not parse");
            torrent.emit(TorrentEvent::MetadataUnusable(e.to_string()));
            return;
        }
    };
    let torrent = Arc::clone(torrent);
    // Opening the storage and checking what is on disk blocks.
    tokio::task::spawn_blocking(move || match torrent.install_metadata(meta) {
        Ok(()) => {}
        Err(TorrentError::BadMetadata(reason)) => {
            tracing::error!(%reason, "the metadata hashes right but is not a usable torrent");
            torrent.emit(TorrentEvent::MetadataUnusable(reason));
        }
        Err(e) => tracing::error!(error = %e, "cannot use the metadata"),
    });
}
