//! Resume records: which pieces were complete (a BEP 3 bitfield) plus each payload file's
//! length and mtime when that was written down, so a restart re-hashes only what may have
//! changed instead of the whole payload.
//!
//! A record is only a hint. A missing, corrupt, oversized or foreign one is ignored (with a
//! warning) and the payload is hashed; a file whose length or mtime differs from the record
//! has every piece touching it hashed again. Records are written through
//! [`write_atomic`] (own temporary file, fsync, rename, fsync of the directory), so a crash leaves the old record or the new one.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::durable::write_atomic;
use super::{io_err, Storage, StorageError};

/// Directory below the download root that holds the records; [`Storage::open`] refuses
/// torrents whose files would land in it.
pub const RESUME_DIR: &str = ".kadswarm";

/// Records larger than this are not read at all. A bitfield of a million pieces is 250 KB
/// of hex, so only a damaged or hostile file comes near it.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

/// What was verified, and the state of the files when it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// Lower-case hex info hash of the torrent.
    pub info_hash_hex: String,
    /// The BEP 3 bitfield of complete pieces (piece 0 is the high bit of the first byte),
    /// in lower-case hex.
    pub pieces: String,
    /// Per file, in layout order: length, and mtime as seconds and nanoseconds since the Unix
    /// epoch.
    pub files: Vec<(u64, i64, u32)>,
}

/// Where the record of torrent `info_hash_hex` lives below `root`. The hash is used as a
/// file name, so anything but 40 or 64 hex digits is refused.
pub fn resume_path(root: &Path, info_hash_hex: &str) -> Result<PathBuf, StorageError> {
    let valid = matches!(info_hash_hex.len(), 40 | 64) && info_hash_hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(StorageError::InvalidInfoHash { value: info_hash_hex.to_owned() });
    }
    Ok(root.join(RESUME_DIR).join(format!("{}.resume", info_hash_hex.to_ascii_lowercase())))
}

impl ResumeRecord {
    /// Records `have` (one flag per piece) and the files' current lengths and mtimes.
    ///
    /// Flushes the storage first: a record vouches for the data, so the data must be on disk
    /// before the record is, or a crash could leave a record trusting pieces that were lost.
    pub fn capture(storage: &Storage, info_hash_hex: &str, have: &[bool]) -> Result<ResumeRecord, StorageError> {
        let pieces = storage.layout().piece_count();
        if have.len() != pieces {
            return Err(StorageError::BitfieldLength { got: have.len(), pieces });
        }
        storage.flush()?;
        let files = storage
            .paths()
            .iter()
            .enumerate()
            .map(|(i, path)| file_stamp(storage, i, path).map_err(io_err("stat", path)))
            .collect::<Result<_, _>>()?;
        Ok(ResumeRecord { info_hash_hex: info_hash_hex.to_ascii_lowercase(), pieces: encode_bitfield(have), files })
    }

    /// The recorded flags, if the bitfield is well formed for `piece_count` pieces.
    pub fn have(&self, piece_count: usize) -> Option<Vec<bool>> {
        decode_bitfield(&self.pieces, piece_count)
    }

    /// Writes the record to `path` atomically, creating its directory.
    pub fn save(&self, path: &Path) -> Result<(), StorageError> {
        let json = serde_json::to_vec(self)
            .map_err(|source| StorageError::ResumeEncode { path: path.to_path_buf(), source })?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        write_atomic(path, &json).map_err(|e| StorageError::Io { op: e.op, path: e.path, source: e.source })
    }

    /// Reads the record at `path`: `None` if there is none, or if it is oversized, truncated
    /// or corrupt (then with a warning, since a bad record only costs a full check). An error
    /// only when the file exists but cannot be read.
    pub fn load(path: &Path) -> Result<Option<ResumeRecord>, StorageError> {
        load_capped(path, MAX_RECORD_BYTES)
    }
}

/// Which pieces are complete, trusting `record` where it still holds: pieces touching only
/// files whose length and mtime are as recorded take the recorded flag; every other piece is
/// checked as [`Storage::check_all`] does. A record for another torrent, for another number
/// of files, or with a malformed bitfield is ignored and everything is checked.
///
/// `progress(done, total)` is called after each piece, trusted or hashed.
pub fn verified_pieces(
    storage: &Storage,
    info_hash_hex: &str,
    record: Option<&ResumeRecord>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<bool>, StorageError> {
    let Some(record) = record else {
        return storage.check_all(progress);
    };
    let count = storage.layout().piece_count();
    if !record.info_hash_hex.eq_ignore_ascii_case(info_hash_hex) {
        tracing::warn!(
            record = %record.info_hash_hex,
            torrent = %info_hash_hex,
            "resume record is for another torrent; checking every piece"
        );
        return storage.check_all(progress);
    }
    if record.files.len() != storage.paths().len() {
        tracing::warn!(
            info_hash = %info_hash_hex,
            recorded = record.files.len(),
            files = storage.paths().len(),
            "resume record lists another number of files; checking every piece"
        );
        return storage.check_all(progress);
    }
    let Some(have) = record.have(count) else {
        tracing::warn!(
            info_hash = %info_hash_hex,
            pieces = count,
            "resume record has a malformed bitfield; checking every piece"
        );
        return storage.check_all(progress);
    };
    // A file we cannot even stat is as good as changed.
    let changed: Vec<bool> = storage
        .paths()
        .iter()
        .zip(&record.files)
        .enumerate()
        .map(|(i, (path, recorded))| file_stamp(storage, i, path).ok() != Some(*recorded))
        .collect();
    let lens = storage.current_lens()?;
    let mut out = Vec::with_capacity(count);
    for (piece, recorded) in have.into_iter().enumerate() {
        let touches_changed =
            storage.segments(piece, 0, storage.layout().piece_len(piece)).any(|s| changed.get(s.file) != Some(&false));
        out.push(if touches_changed { storage.check_piece(piece, &lens)? } else { recorded });
        progress(piece + 1, count);
    }
    Ok(out)
}

fn load_capped(path: &Path, cap: u64) -> Result<Option<ResumeRecord>, StorageError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", path)(e)),
    };
    // Read at most one byte past the cap, whatever the file claims its size is: enough to
    // know it is too big without ever holding more than the cap.
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(io_err("read", path))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > cap {
        tracing::warn!(path = %path.display(), cap, "resume record is too large; ignoring it");
        return Ok(None);
    }
    match serde_json::from_slice(&bytes) {
        Ok(record) => Ok(Some(record)),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "resume record is corrupt or truncated; ignoring it");
            Ok(None)
        }
    }
}

/// A file's (length, mtime seconds, mtime nanoseconds) as recorded in [`ResumeRecord::files`].
/// A padding file is never on disk and never changes.
fn file_stamp(storage: &Storage, index: usize, path: &Path) -> io::Result<(u64, i64, u32)> {
    if storage.is_pad(index) {
        return Ok((storage.layout().files[index].1, 0, 0));
    }
    stamp(path)
}

fn stamp(path: &Path) -> io::Result<(u64, i64, u32)> {
    let meta = fs::metadata(path)?;
    let (secs, nanos) = unix_time(meta.modified()?);
    Ok((meta.len(), secs, nanos))
}

/// Seconds and nanoseconds since the epoch, the nanoseconds always counting forward, so a time
/// before 1970 (a restored archive, a bad clock) still compares exactly.
fn unix_time(time: SystemTime) -> (i64, u32) {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => (i64::try_from(after.as_secs()).unwrap_or(i64::MAX), after.subsec_nanos()),
        Err(before) => {
            let before = before.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-secs, 0),
                nanos => (-secs - 1, 1_000_000_000 - nanos),
            }
        }
    }
}

fn encode_bitfield(have: &[bool]) -> String {
    have.chunks(8)
        .map(|bits| bits.iter().enumerate().fold(0u8, |byte, (i, &bit)| byte | (u8::from(bit) << (7 - i))))
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Strict: exactly the right number of hex digits, and the spare bits of the last byte clear
/// (BEP 3 requires that of a bitfield, and a set one means the record is not ours).
fn decode_bitfield(hex: &str, piece_count: usize) -> Option<Vec<bool>> {
    // from_str_radix alone would also take a '+' sign.
    if hex.len() != piece_count.div_ceil(8).checked_mul(2)? || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let mut have = Vec::with_capacity(piece_count);
    for (i, byte) in bytes.iter().enumerate() {
        for bit in 0..8 {
            let set = byte & (0x80 >> bit) != 0;
            if i * 8 + bit < piece_count {
                have.push(set);
            } else if set {
                return None;
            }
        }
    }
    Some(have)
}

#[cfg(test)]
mod tests;
