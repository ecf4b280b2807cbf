//! BEP 3 metainfo for v1 torrents: the `.torrent` file and its info dictionary.
//!
//! Parsing checks every declared size against limits and against the other fields before
//! anything is allocated from it, and computes the info-hash over the info dictionary's bytes
//! exactly as they appear in the input (never a re-encoding). Also read: BEP 5's `nodes` (DHT
//! contacts for a trackerless torrent) and BEP 27's `private` flag. Not read: BEP 12
//! `announce-list`, BEP 47 file attributes, BEP 52 v2 trees (a hybrid torrent parses as v1).

use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::path::{sanitize_component, sanitize_path, PathError};
use crate::bencode::{self, BencodeError, Value};
use crate::bencode_writer::Writer;
use crate::id::{Id, InfoHash, ID_LEN};
use crate::magnet::Magnet;

/// Smallest piece accepted: one 16 KiB request block, so every piece but the last is a whole
/// number of blocks.
pub const MIN_PIECE_LENGTH: u64 = 16 * 1024;
/// Largest piece accepted: a piece is verified in memory, so this bounds that buffer.
pub const MAX_PIECE_LENGTH: u64 = 64 * 1024 * 1024;
/// Largest total payload, a pebibyte: far beyond any real torrent, and small enough that
/// offsets and piece arithmetic never come near overflowing a u64.
pub const MAX_TOTAL_LENGTH: u64 = 1 << 50;
/// Most files in one torrent.
pub const MAX_FILES: usize = 100_000;
/// Longest `.torrent` file or info dictionary read. Decoding costs several times the input in
/// memory, so hostile input is cut off here; libtorrent's default limit is 10 MB.
pub const MAX_METAINFO_LEN: usize = 32 * 1024 * 1024;
/// BEP 5 `nodes` entries kept: a few are enough to join the DHT.
const MAX_NODES: usize = 100;

/// Whether `len` can be a piece length: a power of two from [`MIN_PIECE_LENGTH`] to
/// [`MAX_PIECE_LENGTH`]. BEP 3 only says "almost always a power of two"; requiring it lets
/// storage and the picker split pieces into blocks and files without remainders, and the
/// rare torrent with another length is refused with [`MetainfoError::PieceLength`].
pub fn is_valid_piece_length(len: u64) -> bool {
    len.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&len)
}

/// One file of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative and sanitised; `name` for a single-file torrent, `name/a/b` for multi-file.
    pub path: PathBuf,
    pub length: u64,
    /// Where the file starts in the concatenation of all files, which pieces are cut from.
    pub offset: u64,
    /// A BEP 47 padding file (`attr` contains `p`): zeros that align the next file to a piece
    /// boundary. Never written to disk; libtorrent puts them in every torrent it creates.
    pub pad: bool,
}

/// The info dictionary: everything the info-hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub piece_length: u64,
    pub pieces: Vec<[u8; 20]>,
    pub files: Vec<FileEntry>,
    pub total_length: u64,
    pub private: bool,
}

/// A whole `.torrent` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    pub info: Info,
    /// The info dictionary exactly as received, to hash and to serve over BEP 9.
    pub info_bytes: Vec<u8>,
    pub announce: Option<String>,
    /// BEP 5 `nodes`: host names or addresses with ports, not yet resolved.
    pub nodes: Vec<(String, u16)>,
}

/// Why bytes are not a usable v1 torrent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    #[error("metainfo of {0} bytes is over the {MAX_METAINFO_LEN}-byte limit")]
    TooLarge(usize),
    #[error("bad bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("{0} bytes follow the info dictionary")]
    TrailingBytes(usize),
    #[error("`{0}` is not a dictionary")]
    NotDict(&'static str),
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("`{key}` is not {expected}")]
    WrongType { key: &'static str, expected: &'static str },
    #[error("the info dictionary has both `length` and `files`")]
    LengthAndFiles,
    #[error("the info dictionary has neither `length` nor `files`")]
    NoLayout,
    #[error("piece length {0} is not a power of two from 16 KiB to 64 MiB")]
    PieceLength(i64),
    #[error("`pieces` is {0} bytes, not a multiple of 20")]
    PiecesNotWhole(usize),
    #[error("`pieces` holds {declared} hashes but {total} bytes in pieces of {piece_length} need {expected}")]
    PieceCount { declared: u64, expected: u64, total: u64, piece_length: u64 },
    #[error("file {index}: `{key}` is missing or of the wrong type")]
    BadFile { index: usize, key: &'static str },
    #[error("file {index} has negative length {length}")]
    NegativeLength { index: usize, length: i64 },
    #[error("total length passes 2^50 bytes at file {0}")]
    TotalTooLarge(usize),
    #[error("{0} files, more than the {MAX_FILES} accepted")]
    TooManyFiles(usize),
    #[error("the torrent holds no data")]
    Empty,
    #[error("bad name: {0}")]
    Name(PathError),
    #[error("bad path of file {index}: {source}")]
    Path { index: usize, source: PathError },
    #[error("two files have the path {0:?}")]
    DuplicatePath(PathBuf),
    #[error("{file:?} is a file but also the directory of {inner:?}")]
    FileIsDirectory { file: PathBuf, inner: PathBuf },
    #[error("{first:?} and {second:?} differ only in case: one file system path on case-insensitive disks")]
    CaseClash { first: PathBuf, second: PathBuf },
}

impl Info {
    /// Parses an info dictionary on its own, as BEP 9 metadata exchange delivers it. Nothing
    /// may follow the dictionary: these bytes are what the info-hash covers.
    pub fn from_bytes(info_bytes: &[u8]) -> Result<Info, MetainfoError> {
        check_input_len(info_bytes)?;
        let (value, used) = bencode::decode_prefix(info_bytes)?;
        if used != info_bytes.len() {
            return Err(MetainfoError::TrailingBytes(info_bytes.len() - used));
        }
        Info::from_value(&value)
    }

    fn from_value(info: &Value<'_>) -> Result<Info, MetainfoError> {
        if !info.is_dict() {
            return Err(MetainfoError::NotDict("info"));
        }
        let name = sanitize_component(bytes_field(info, "name")?).map_err(MetainfoError::Name)?;
        let raw_piece_length = int_field(info, "piece length")?;
        let piece_length = u64::try_from(raw_piece_length)
            .ok()
            .filter(|&len| is_valid_piece_length(len))
            .ok_or(MetainfoError::PieceLength(raw_piece_length))?;
        let pieces = bytes_field(info, "pieces")?;
        let (hashes, rest) = pieces.as_chunks::<20>();
        if !rest.is_empty() {
            return Err(MetainfoError::PiecesNotWhole(pieces.len()));
        }
        let layout = match (info.get(b"length"), info.get(b"files")) {
            (Some(_), Some(_)) => return Err(MetainfoError::LengthAndFiles),
            (None, None) => return Err(MetainfoError::NoLayout),
            (Some(length), None) => Layout::Single(length),
            (None, Some(files)) => {
                Layout::Multi(files.as_list().ok_or(MetainfoError::WrongType { key: "files", expected: "a list" })?)
            }
        };

        // Sizes first, so that no declared number sizes an allocation before it is checked
        // against the limits and against the hashes actually present.
        let total_length = layout.total_length()?;
        if total_length == 0 {
            return Err(MetainfoError::Empty);
        }
        let expected = total_length.div_ceil(piece_length);
        let declared = hashes.len() as u64;
        if declared != expected {
            return Err(MetainfoError::PieceCount { declared, expected, total: total_length, piece_length });
        }

        let files = layout.files(&name)?;
        reject_clashing_paths(&files)?;
        Ok(Info {
            name,
            piece_length,
            pieces: hashes.to_vec(),
            files,
            total_length,
            private: is_private(info.get(b"private")),
        })
    }

    pub fn piece_count(&self) -> usize {
        self.pieces.len()
    }

    /// Length of piece `index`: `piece_length`, except that the last piece holds what is left.
    /// Zero for an index past the end.
    pub fn piece_len(&self, index: usize) -> u64 {
        let start = (index as u64).saturating_mul(self.piece_length);
        self.total_length.saturating_sub(start).min(self.piece_length)
    }

    /// Canonical bencode (sorted keys) of this info dictionary, for torrents we create. A parsed
    /// torrent's own bytes are in [`Metainfo::info_bytes`]: they may hold keys this drops.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.begin_dict();
        if let Some(file) = self.single_file() {
            w.key(b"length").int(clamp_int(file.length));
        } else {
            w.key(b"files").begin_list();
            for file in &self.files {
                w.begin_dict();
                if file.pad {
                    w.key(b"attr").bytes(b"p");
                }
                w.key(b"length").int(clamp_int(file.length)).key(b"path").begin_list();
                // Paths are stored with the torrent's name in front; the file lists them without.
                let relative = file.path.strip_prefix(&self.name).unwrap_or(&file.path);
                for part in relative.iter() {
                    w.bytes(part.to_string_lossy().as_bytes());
                }
                w.end().end();
            }
            w.end();
        }
        w.key(b"name").bytes(self.name.as_bytes());
        w.key(b"piece length").int(clamp_int(self.piece_length));
        w.key(b"pieces").bytes(self.pieces.as_flattened());
        if self.private {
            w.key(b"private").int(1);
        }
        w.end();
        out
    }

    /// The one file of a single-file torrent: a multi-file torrent's paths always have the
    /// name as a directory in front, so a lone file called exactly `name` can only be this.
    fn single_file(&self) -> Option<&FileEntry> {
        match self.files.as_slice() {
            [file] if file.path == Path::new(&self.name) => Some(file),
            _ => None,
        }
    }
}

impl Metainfo {
    /// Parses a `.torrent` file. Bytes after its top-level dictionary are ignored (some sites
    /// append a newline); keys may come in any order.
    pub fn from_bytes(file: &[u8]) -> Result<Metainfo, MetainfoError> {
        check_input_len(file)?;
        let root = bencode::decode(file)?;
        if !root.is_dict() {
            return Err(MetainfoError::NotDict("metainfo"));
        }
        let info = Info::from_value(root.get(b"info").ok_or(MetainfoError::Missing("info"))?)?;
        let span = bencode::dict_value_span(file, b"info")?.ok_or(MetainfoError::Missing("info"))?;
        let info_bytes = file.get(span).ok_or(MetainfoError::Missing("info"))?.to_vec();
        // A tracker URL that is not UTF-8 cannot be a URL; the torrent still works over the DHT.
        let announce = root.get(b"announce").and_then(Value::as_bytes).and_then(|b| std::str::from_utf8(b).ok());
        Ok(Metainfo {
            info_hash: hash(&info_bytes),
            info,
            info_bytes,
            announce: announce.map(str::to_owned),
            nodes: parse_nodes(root.get(b"nodes")),
        })
    }

    /// A torrent known only by its info dictionary, as after a BEP 9 metadata download.
    pub fn from_info_bytes(info_bytes: Vec<u8>) -> Result<Metainfo, MetainfoError> {
        let info = Info::from_bytes(&info_bytes)?;
        Ok(Metainfo { info_hash: hash(&info_bytes), info, info_bytes, announce: None, nodes: Vec::new() })
    }

    /// A `.torrent` file. The info dictionary is copied verbatim, so the info-hash survives
    /// even when the original was not canonical.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.info_bytes.len() + 256);
        let mut w = Writer::new(&mut out);
        w.begin_dict();
        if let Some(announce) = &self.announce {
            w.key(b"announce").bytes(announce.as_bytes());
        }
        w.key(b"info");
        // The writer has no way to splice raw bytes, so it is set down for the info value and
        // a fresh one continues the same dictionary afterwards.
        out.extend_from_slice(&self.info_bytes);
        let mut w = Writer::new(&mut out);
        if !self.nodes.is_empty() {
            w.key(b"nodes").begin_list();
            for (host, port) in &self.nodes {
                w.begin_list().bytes(host.as_bytes()).int(i64::from(*port)).end();
            }
            w.end();
        }
        w.end();
        out
    }

    pub fn magnet(&self) -> String {
        Magnet::uri(&self.info_hash, Some(&self.info.name))
    }
}

/// How the payload is described: BEP 3's single-file `length` or multi-file `files`.
enum Layout<'v, 'a> {
    Single(&'v Value<'a>),
    Multi(&'v [Value<'a>]),
}

impl Layout<'_, '_> {
    /// Sum of the file lengths, checked for sign, overflow and [`MAX_TOTAL_LENGTH`].
    fn total_length(&self) -> Result<u64, MetainfoError> {
        match self {
            Layout::Single(length) => {
                let length =
                    length.as_int().ok_or(MetainfoError::WrongType { key: "length", expected: "an integer" })?;
                file_length(0, length, 0)
            }
            Layout::Multi(files) => {
                if files.len() > MAX_FILES {
                    return Err(MetainfoError::TooManyFiles(files.len()));
                }
                let mut total = 0;
                for (index, file) in files.iter().enumerate() {
                    let length = file.get(b"length").and_then(Value::as_int);
                    let length = length.ok_or(MetainfoError::BadFile { index, key: "length" })?;
                    total = file_length(index, length, total)?;
                }
                Ok(total)
            }
        }
    }

    /// The files with sanitised paths and their offsets; lengths were checked by `total_length`.
    fn files(&self, name: &str) -> Result<Vec<FileEntry>, MetainfoError> {
        match self {
            Layout::Single(length) => {
                let length = length.as_int().and_then(|l| u64::try_from(l).ok()).unwrap_or(0);
                Ok(vec![FileEntry { path: PathBuf::from(name), length, offset: 0, pad: false }])
            }
            Layout::Multi(files) => {
                let mut out = Vec::with_capacity(files.len());
                let mut offset = 0u64;
                for (index, file) in files.iter().enumerate() {
                    let bad_path = || MetainfoError::BadFile { index, key: "path" };
                    let parts = file.get(b"path").and_then(Value::as_list).ok_or_else(bad_path)?;
                    let parts: Option<Vec<&[u8]>> = parts.iter().map(Value::as_bytes).collect();
                    let relative = sanitize_path(parts.ok_or_else(bad_path)?)
                        .map_err(|source| MetainfoError::Path { index, source })?;
                    let length = file.get(b"length").and_then(Value::as_int).and_then(|l| u64::try_from(l).ok());
                    let length = length.unwrap_or(0);
                    let pad = file.get(b"attr").and_then(Value::as_bytes).is_some_and(|a| a.contains(&b'p'));
                    out.push(FileEntry { path: Path::new(name).join(relative), length, offset, pad });
                    offset = offset.saturating_add(length);
                }
                Ok(out)
            }
        }
    }
}

/// Adds one declared file length to the running total.
fn file_length(index: usize, length: i64, total: u64) -> Result<u64, MetainfoError> {
    let length = u64::try_from(length).map_err(|_| MetainfoError::NegativeLength { index, length })?;
    total.checked_add(length).filter(|&t| t <= MAX_TOTAL_LENGTH).ok_or(MetainfoError::TotalTooLarge(index))
}

/// Two files on one path would overwrite each other, and a file that is also another file's
/// directory cannot be created; either way the torrent cannot be stored faithfully.
///
/// The same holds for paths that differ only in case (`Readme` and `README`, or the file
/// `a/B` and the file `a/b/c`): on the case-insensitive file systems of Windows and macOS
/// (and ext4 directories with casefold) they name one file, so one file's pieces would
/// overwrite the other's and neither would ever verify. Such a torrent is refused everywhere,
/// so that a download behaves the same on every disk. Case is compared by Unicode lower case
/// of every component; Unicode normalisation (APFS also folds NFC and NFD) is not compared.
fn reject_clashing_paths(files: &[FileEntry]) -> Result<(), MetainfoError> {
    // Padding files are never created, and clients name them by size, so they may repeat.
    let mut paths: Vec<(PathBuf, &Path)> =
        files.iter().filter(|f| !f.pad).map(|f| (fold_case(&f.path), f.path.as_path())).collect();
    // `Path` orders component by component, so a path that is a prefix of others sorts right
    // before them: comparing neighbours finds every clash. Sorting by the folded path puts
    // case variants next to each other, and exact duplicates too (their folds are equal).
    paths.sort_unstable();
    for pair in paths.windows(2) {
        if let [(folded_a, a), (folded_b, b)] = pair {
            if a == b {
                return Err(MetainfoError::DuplicatePath(a.to_path_buf()));
            }
            if b.starts_with(a) {
                return Err(MetainfoError::FileIsDirectory { file: a.to_path_buf(), inner: b.to_path_buf() });
            }
            if folded_b.starts_with(folded_a) {
                return Err(MetainfoError::CaseClash { first: a.to_path_buf(), second: b.to_path_buf() });
            }
        }
    }
    Ok(())
}

/// `path` with every component in lower case. Components are UTF-8 (sanitised on parse).
fn fold_case(path: &Path) -> PathBuf {
    path.components().map(|c| c.as_os_str().to_string_lossy().to_lowercase()).collect()
}

/// BEP 27 says `private` is 1. Anything present but not 0 counts as private: announcing a
/// private torrent to the DHT leaks it for good, while the opposite mistake only costs peers.
fn is_private(flag: Option<&Value<'_>>) -> bool {
    flag.is_some_and(|v| v.as_int() != Some(0))
}

/// BEP 5 `nodes`: a list of `[host, port]` pairs. They are only hints, so malformed entries are
/// skipped rather than failing the torrent.
fn parse_nodes(nodes: Option<&Value<'_>>) -> Vec<(String, u16)> {
    let Some(list) = nodes.and_then(Value::as_list) else { return Vec::new() };
    list.iter()
        .filter_map(|entry| match entry.as_list()? {
            [host, port] => {
                let host = std::str::from_utf8(host.as_bytes()?).ok().filter(|h| !h.is_empty())?;
                let port = u16::try_from(port.as_int()?).ok().filter(|&p| p != 0)?;
                Some((host.to_owned(), port))
            }
            _ => None,
        })
        .take(MAX_NODES)
        .collect()
}

fn check_input_len(buf: &[u8]) -> Result<(), MetainfoError> {
    if buf.len() > MAX_METAINFO_LEN {
        return Err(MetainfoError::TooLarge(buf.len()));
    }
    Ok(())
}

fn bytes_field<'a>(dict: &Value<'a>, key: &'static str) -> Result<&'a [u8], MetainfoError> {
    let value = dict.get(key.as_bytes()).ok_or(MetainfoError::Missing(key))?;
    value.as_bytes().ok_or(MetainfoError::WrongType { key, expected: "a byte string" })
}

fn int_field(dict: &Value<'_>, key: &'static str) -> Result<i64, MetainfoError> {
    let value = dict.get(key.as_bytes()).ok_or(MetainfoError::Missing(key))?;
    value.as_int().ok_or(MetainfoError::WrongType { key, expected: "an integer" })
}

/// Bencode integers are signed; values past i64 only arise from a hand-built `Info`.
fn clamp_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn hash(bytes: &[u8]) -> InfoHash {
    let digest: [u8; ID_LEN] = Sha1::digest(bytes).into();
    Id(digest)
}
