//! A failure of the torrent itself rather than of one peer: the disk refused a block (full,
//! read-only, gone, no permission). Blaming the peer that sent the block would be wrong (it
//! did nothing amiss) and useless (the next peer's block fails the same way), and leaving the
//! block's piece half written would stall the download forever. So the torrent stops: it
//! records the fault, tells every peer to leave, takes no new ones, and reports it once.

use std::io;

use super::{PeerCmd, State, Torrent, TorrentEvent};
use crate::storage::StorageError;

/// What went wrong on disk, as the user should read it: "writing PATH: No space left on device".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct DiskFault {
    /// The operation and the file, e.g. "writing /data/x.bin".
    pub what: String,
    /// The kind of I/O error, when there was one, for callers that act on it.
    pub kind: Option<io::ErrorKind>,
    /// The system's description, without the "(os error N)" suffix std adds.
    pub reason: String,
}

impl DiskFault {
    pub fn from_storage(error: &StorageError) -> DiskFault {
        match error {
            StorageError::Io { op, path, source } => {
                let verb = match *op {
                    "write" => "writing",
                    other => other,
                };
                let mut reason = source.to_string();
                if let Some(code) = source.raw_os_error() {
                    let suffix = format!(" (os error {code})");
                    if let Some(bare) = reason.strip_suffix(&suffix) {
                        reason = bare.to_owned();
                    }
                }
                DiskFault { what: format!("{verb} {}", path.display()), kind: Some(source.kind()), reason }
            }
            // Not an I/O error (a block outside its piece): still the storage's, not a peer's.
            other => DiskFault { what: "storage".to_owned(), kind: None, reason: other.to_string() },
        }
    }
}

impl Torrent {
    /// The disk failed `error`: the torrent stops with it. Only the first fault is reported;
    /// blocks that other peers deliver after it are dropped unwritten.
    pub(crate) fn disk_failed(&self, st: &mut State, error: &StorageError) {
        if st.fault.is_some() {
            return;
        }
        let fault = DiskFault::from_storage(error);
        tracing::debug!(%fault, "disk fault: stopping the torrent");
        st.fault = Some(fault.clone());
        Self::broadcast(st, PeerCmd::Close);
        self.emit(TorrentEvent::Failed(fault));
    }

    /// The disk fault that stopped the torrent, if one did.
    pub fn fault(&self) -> Option<DiskFault> {
        self.lock().fault.clone()
    }
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod tests;
