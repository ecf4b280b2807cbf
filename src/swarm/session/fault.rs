//! A failure of the torrent itself rather than of one peer: the disk refused a block (full,
//! read-only, gone, no permission). Blaming the peer that sent the block would be wrong (it
//! did nothing amiss) and useless (the next peer's block fails the same way), and leaving the
//! block's piece half written would stall the download forever. So the torrent stops: the
//! core records the fault, tells every peer to leave, takes no new ones, and reports it once
//! (`TorrentCore::handle`, `Input::WriteFailed`). Verified pieces stay verified.

use std::io;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// ENOSPC on Linux, the errno a full disk gives.
    const ENOSPC: i32 = 28;

    #[test]
    fn a_storage_error_reads_as_one_line_naming_the_file() {
        let error =
            StorageError::Io { op: "write", path: "/data/x.bin".into(), source: io::Error::from_raw_os_error(ENOSPC) };
        let fault = DiskFault::from_storage(&error);
        assert_eq!(fault.to_string(), "writing /data/x.bin: No space left on device");
        assert_eq!(fault.kind, Some(io::ErrorKind::StorageFull));
    }
}
