//! On-disk storage of a torrent's payload (BEP 3: the files of the info dictionary,
//! concatenated and cut into SHA-1-hashed pieces).
//!
//! - [`layout`]: the pure piece ↔ file arithmetic.
//! - [`files`]: [`Storage`], the open payload files, with positioned block reads and writes and
//!   piece hashing.
//! - [`in_order_hash`]: piece hashes fed with blocks as they are written, in order, so that a
//!   finished piece is rarely read back.
//! - [`durable`]: [`write_atomic`](durable::write_atomic), the one way state files are replaced.
//! - [`resume`]: a small record of which pieces were complete, so a restart need not re-hash
//!   everything.
//!
//! The code is synchronous on purpose: the async session calls it through
//! `tokio::task::spawn_blocking`, and plain positioned I/O (`pread`/`pwrite`) lets several
//! threads share one [`Storage`] without locks. Nothing here reads a whole file into memory:
//! memory is bounded by the blocks in flight plus one small hashing buffer per hashing thread.

pub mod durable;
pub mod files;
pub mod in_order_hash;
pub mod layout;
pub mod resume;

use std::io;
use std::path::{Path, PathBuf};

pub use files::Storage;
pub use layout::{Layout, Segment, Segments};
pub use resume::{resume_path, verified_pieces, ResumeRecord};

/// Everything that can go wrong in this module, with the offending path or value.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the piece length is zero")]
    PieceLengthZero,
    #[error(
        "the file lengths add up to {} but the total length is {total_length}",
        .files_total.map_or_else(|| "more than u64::MAX".to_owned(), |t| t.to_string())
    )]
    LengthMismatch { files_total: Option<u64>, total_length: u64 },
    #[error("the layout has {hashes} piece hashes but the payload has {expected} pieces")]
    PieceCountMismatch { hashes: usize, expected: u64 },
    #[error("refusing file path {path:?}: {reason}")]
    UnsafePath { path: PathBuf, reason: &'static str },
    #[error("file path {path:?} appears twice in the layout")]
    DuplicatePath { path: PathBuf },
    #[error("{path:?} resolves to {resolved:?}, outside the download directory {root:?}")]
    OutsideRoot { path: PathBuf, resolved: PathBuf, root: PathBuf },
    #[error("piece {piece} does not exist (the torrent has {count} pieces)")]
    PieceOutOfRange { piece: usize, count: usize },
    #[error("block at {begin} of length {len} does not fit in piece {piece} of length {piece_len}")]
    BlockOutOfRange { piece: usize, begin: u64, len: u64, piece_len: u64 },
    #[error("refusing to read a block of {len} bytes (at most {max})")]
    BlockTooLarge { len: u64, max: u64 },
    #[error("{path:?} is too short to read {len} bytes at offset {offset}")]
    ShortFile { path: PathBuf, offset: u64, len: u64 },
    #[error("a bitfield of {got} pieces for a torrent of {pieces} pieces")]
    BitfieldLength { got: usize, pieces: usize },
    #[error("{value:?} is not a hex info hash of 40 or 64 digits")]
    InvalidInfoHash { value: String },
    #[error("cannot encode the resume record for {path:?}: {source}")]
    ResumeEncode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot {op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Builds the mapper for `map_err` on an I/O call, naming the operation and the path.
pub(crate) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { op, path: path.to_path_buf(), source }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Temporary directories and payloads shared by the storage tests.

    use std::fs;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    use sha1::{Digest, Sha1};

    use super::Layout;

    /// A fresh directory under the system temp dir, removed when dropped (even when the test
    /// fails), unique per process and per call so parallel tests never share one.
    pub(crate) struct TempDir {
        pub(crate) path: PathBuf,
    }

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("kadswarm-storage-{tag}-{}-{n}", std::process::id()));
            // A crashed earlier run with the same pid may have left it behind.
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir { path }
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.path);
        }
    }

    /// Deterministic bytes without a short period, so a misplaced block changes the hash.
    pub(crate) fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
    }

    /// A layout for `payload` split into `files`, with the real piece hashes.
    pub(crate) fn layout_of(payload: &[u8], piece_length: u64, files: &[(&str, u64)]) -> Layout {
        let total_length = files.iter().map(|f| f.1).sum();
        assert_eq!(total_length, payload.len() as u64);
        Layout {
            piece_length,
            total_length,
            files: files.iter().map(|&(p, len)| (PathBuf::from(p), len)).collect(),
            piece_hashes: payload.chunks(piece_length as usize).map(|c| Sha1::digest(c).into()).collect(),
            pad: Vec::new(),
        }
    }
}
