//! BEP 3 torrents (v1): reading and writing metainfo, checking the file names it declares,
//! and creating torrents from files on disk.
//!
//! Metainfo is hostile input; everything here parses at the edge into typed values
//! ([`Metainfo`], [`Info`], [`FileEntry`]) whose sizes and paths have been checked, so the
//! storage and swarm code never sees raw bencode or an unchecked path.

pub mod create;
pub mod metainfo;
pub mod path;

#[cfg(test)]
mod metainfo_tests;

pub use create::{auto_piece_length, create, CreateError, PieceHasher};
pub use metainfo::{
    is_valid_piece_length, FileEntry, Info, Metainfo, MetainfoError, MAX_FILES, MAX_METAINFO_LEN, MAX_PIECE_LENGTH,
    MAX_TOTAL_LENGTH, MIN_PIECE_LENGTH,
};
pub use path::{sanitize_component, sanitize_path, PathError};
