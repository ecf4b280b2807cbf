//! The open payload files of one torrent (BEP 3 multi-file mode: the `path` lists of the info
//! dictionary below one download directory), with positioned block I/O and piece hashing.
//!
//! Security: file paths come from a stranger's metainfo. The parser sanitises them, and
//! [`Storage::open`] checks again, because a single miss writes anywhere the process can:
//! only plain relative components, nothing under our own `.kadswarm` directory, and no
//! symlink (of the user's) that leads out of the download directory. Directories are created
//! one component at a time so that a symlinked component is seen before anything is created
//! through it.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha1::{Digest, Sha1};

use super::layout::{Layout, Segments};
use super::resume::RESUME_DIR;
use super::{io_err, StorageError};

/// Bytes read at a time while hashing: bounds memory whatever the piece length.
const HASH_CHUNK: u64 = 64 * 1024;

/// The largest block [`Storage::read_block`] allocates. Peers ask for 16 KiB; this only keeps
/// a bogus length from allocating gigabytes.
pub const MAX_READ_LEN: u64 = 16 * 1024 * 1024;

/// The payload files of one torrent, open for positioned reads and writes.
///
/// `Storage` is `Sync`: several threads may write and read blocks at once, since every
/// operation is a positioned `pread`/`pwrite` on a shared file handle.
#[derive(Debug)]
pub struct Storage {
    /// Canonical download directory.
    root: PathBuf,
    layout: Layout,
    file_ends: Vec<u64>,
    /// Where each file of the layout is on disk.
    paths: Vec<PathBuf>,
    /// One handle per file, kept open for the life of the storage; `None` for empty files,
    /// which hold no block and would only use up descriptors.
    handles: Vec<Option<File>>,
    /// Each file's length before `open` extended it: bytes beyond it are the zeros that
    /// pre-allocation put there, unless a block was written since.
    len_at_open: Vec<u64>,
    /// Per piece: whether any block of it was written through this storage.
    written: Vec<AtomicBool>,
    /// Tests only: the OS error number every later write fails with (0: none), so that a
    /// full or broken disk can be played without one.
    #[cfg(test)]
    pub(crate) fail_writes: std::sync::atomic::AtomicI32,
}

impl Storage {
    /// Opens (creating as needed) every file of `layout` below `root`, pre-allocated sparse to
    /// its length. Existing data is kept: files are never truncated, only extended.
    pub fn open(root: &Path, layout: Layout) -> Result<Storage, StorageError> {
        layout.validate()?;
        check_paths(&layout)?;
        fs::create_dir_all(root).map_err(io_err("create directory", root))?;
        let root = root.canonicalize().map_err(io_err("resolve", root))?;
        let mut paths = Vec::with_capacity(layout.files.len());
        let mut handles = Vec::with_capacity(layout.files.len());
        let mut len_at_open = Vec::with_capacity(layout.files.len());
        for (i, (relative, len)) in layout.files.iter().enumerate() {
            if layout.is_pad(i) {
                // Padding is zeros by definition: nothing on disk, reads yield zeros.
                paths.push(root.join(relative));
                handles.push(None);
                len_at_open.push(*len);
                continue;
            }
            let path = make_parent_dirs(&root, relative)?;
            let (handle, before) = open_file(&root, &path, *len)?;
            paths.push(path);
            handles.push(handle);
            len_at_open.push(before);
        }
        let written = (0..layout.piece_count()).map(|_| AtomicBool::new(false)).collect();
        let file_ends = layout.file_ends();
        Ok(Storage {
            root,
            layout,
            file_ends,
            paths,
            handles,
            len_at_open,
            written,
            #[cfg(test)]
            fail_writes: std::sync::atomic::AtomicI32::new(0),
        })
    }

    /// The layout this storage was opened with.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The canonical download directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `data` at `begin` inside `piece`, across as many files as it spans.
    pub fn write_block(&self, piece: usize, begin: u64, data: &[u8]) -> Result<(), StorageError> {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.check_block(piece, begin, len)?;
        // Marked before writing: even a half-done write means the bytes may no longer be the
        // pre-allocated zeros, so check_all must hash this piece.
        if let Some(flag) = self.written.get(piece) {
            flag.store(true, Ordering::Relaxed);
        }
        let mut rest = data;
        for segment in self.segments(piece, begin, len) {
            let (chunk, tail) = split(rest, segment.len).ok_or(StorageError::BlockOutOfRange {
                piece,
                begin,
                len,
                piece_len: self.layout.piece_len(piece),
            })?;
            if !self.layout.is_pad(segment.file) {
                let (file, path) = self.handle(segment.file)?;
                #[cfg(test)]
                match self.fail_writes.load(Ordering::Relaxed) {
                    0 => {}
                    errno => return Err(io_err("write", path)(io::Error::from_raw_os_error(errno))),
                }
                file.write_all_at(chunk, segment.offset).map_err(io_err("write", path))?;
            }
            rest = tail;
        }
        Ok(())
    }

    /// Reads `len` bytes at `begin` inside `piece` (to serve a peer's request).
    pub fn read_block(&self, piece: usize, begin: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        self.check_block(piece, begin, len)?;
        if len > MAX_READ_LEN {
            return Err(StorageError::BlockTooLarge { len, max: MAX_READ_LEN });
        }
        let size = usize::try_from(len).map_err(|_| StorageError::BlockTooLarge { len, max: MAX_READ_LEN })?;
        let mut block = vec![0u8; size];
        let mut rest = block.as_mut_slice();
        for segment in self.segments(piece, begin, len) {
            let (chunk, tail) = split_mut(rest, segment.len).ok_or(StorageError::BlockOutOfRange {
                piece,
                begin,
                len,
                piece_len: self.layout.piece_len(piece),
            })?;
            self.read_at(segment.file, chunk, segment.offset)?;
            rest = tail;
        }
        Ok(block)
    }

    /// SHA-1 of the piece as it is on disk, read through a small buffer.
    pub fn hash_piece(&self, piece: usize) -> Result<[u8; 20], StorageError> {
        self.hash_piece_from(piece, Sha1::new(), 0)
    }

    /// Finishes `hasher`, which has taken the piece's first `from` bytes already, with the rest
    /// of the piece as it is on disk: a piece hashed while its blocks arrived in order is read
    /// back only from where they stopped arriving in order.
    pub fn hash_piece_from(&self, piece: usize, mut hasher: Sha1, from: u64) -> Result<[u8; 20], StorageError> {
        self.check_piece_index(piece)?;
        let piece_len = self.layout.piece_len(piece);
        if from > piece_len {
            return Err(StorageError::BlockOutOfRange { piece, begin: from, len: 0, piece_len });
        }
        let rest = piece_len - from;
        let mut buf = vec![0u8; usize::try_from(rest.min(HASH_CHUNK)).unwrap_or(0)];
        for segment in self.segments(piece, from, rest) {
            let mut offset = segment.offset;
            let end = segment.offset.saturating_add(segment.len);
            while offset < end {
                let want = (end - offset).min(HASH_CHUNK);
                // Cannot fail: the buffer is as long as the rest of the piece or HASH_CHUNK,
                // whichever is less.
                let (chunk, _) = split_mut(&mut buf, want).ok_or(StorageError::BlockOutOfRange {
                    piece,
                    begin: offset,
                    len: want,
                    piece_len,
                })?;
                self.read_at(segment.file, chunk, offset)?;
                hasher.update(&*chunk);
                offset += want;
            }
        }
        Ok(hasher.finalize().into())
    }

    /// Whether the piece on disk matches its hash. A file too short to hold it is a `false`,
    /// not an error: the piece is simply not there.
    pub fn verify_piece(&self, piece: usize) -> Result<bool, StorageError> {
        self.verify_piece_from(piece, Sha1::new(), 0)
    }

    /// [`Storage::verify_piece`] for a piece whose first `from` bytes `hasher` has taken.
    pub fn verify_piece_from(&self, piece: usize, hasher: Sha1, from: u64) -> Result<bool, StorageError> {
        let expected = *self
            .layout
            .piece_hashes
            .get(piece)
            .ok_or(StorageError::PieceOutOfRange { piece, count: self.layout.piece_count() })?;
        match self.hash_piece_from(piece, hasher, from) {
            Ok(hash) => Ok(hash == expected),
            Err(StorageError::ShortFile { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Which pieces are complete on disk, calling `progress(checked, total)` after each.
    ///
    /// A piece is `false` without being read when a file it touches is now too short, or when
    /// it lies (partly) in bytes that only pre-allocation filled and that no write touched
    /// since: a fresh payload is checked in no time.
    pub fn check_all(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<bool>, StorageError> {
        let lens = self.current_lens()?;
        let count = self.layout.piece_count();
        let mut have = Vec::with_capacity(count);
        for piece in 0..count {
            have.push(self.check_piece(piece, &lens)?);
            progress(piece + 1, count);
        }
        Ok(have)
    }

    /// Forces the written data to disk (`fdatasync` on every file).
    pub fn flush(&self) -> Result<(), StorageError> {
        for (handle, path) in self.handles.iter().zip(&self.paths) {
            if let Some(file) = handle {
                file.sync_data().map_err(io_err("sync", path))?;
            }
        }
        Ok(())
    }

    /// Where each file of the layout is on disk, in layout order.
    pub(crate) fn is_pad(&self, file: usize) -> bool {
        self.layout.is_pad(file)
    }

    pub(crate) fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    pub(crate) fn segments(&self, piece: usize, begin: u64, len: u64) -> Segments<'_> {
        self.layout.segments_indexed(&self.file_ends, piece, begin, len)
    }

    /// Each file's length on disk now (0 for empty files, which no piece reads).
    pub(crate) fn current_lens(&self) -> Result<Vec<u64>, StorageError> {
        self.handles
            .iter()
            .zip(&self.paths)
            .enumerate()
            .map(|(i, (handle, path))| match handle {
                Some(file) => file.metadata().map(|m| m.len()).map_err(io_err("stat", path)),
                None if self.layout.is_pad(i) => Ok(self.layout.files[i].1),
                None => Ok(0),
            })
            .collect()
    }

    /// One piece of [`Storage::check_all`]; `lens` comes from [`Storage::current_lens`].
    pub(crate) fn check_piece(&self, piece: usize, lens: &[u64]) -> Result<bool, StorageError> {
        let written = self.written.get(piece).is_some_and(|flag| flag.load(Ordering::Relaxed));
        for segment in self.segments(piece, 0, self.layout.piece_len(piece)) {
            let end = segment.offset.saturating_add(segment.len);
            let on_disk = lens.get(segment.file).copied().unwrap_or(0);
            let before_open = self.len_at_open.get(segment.file).copied().unwrap_or(0);
            if end > on_disk || (!written && end > before_open) {
                return Ok(false);
            }
        }
        self.verify_piece(piece)
    }

    fn check_piece_index(&self, piece: usize) -> Result<(), StorageError> {
        let count = self.layout.piece_count();
        if piece < count {
            Ok(())
        } else {
            Err(StorageError::PieceOutOfRange { piece, count })
        }
    }

    fn check_block(&self, piece: usize, begin: u64, len: u64) -> Result<(), StorageError> {
        self.check_piece_index(piece)?;
        let piece_len = self.layout.piece_len(piece);
        match begin.checked_add(len) {
            Some(end) if end <= piece_len => Ok(()),
            _ => Err(StorageError::BlockOutOfRange { piece, begin, len, piece_len }),
        }
    }

    fn handle(&self, file: usize) -> Result<(&File, &Path), StorageError> {
        let path = self.paths.get(file).map_or(Path::new(""), PathBuf::as_path);
        match self.handles.get(file) {
            Some(Some(handle)) => Ok((handle, path)),
            // Segments never name an empty file, the only kind without a handle.
            _ => Err(StorageError::Io {
                op: "use",
                path: path.to_path_buf(),
                source: io::Error::other(format!("file {file} has no open handle")),
            }),
        }
    }

    fn read_at(&self, file: usize, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
        if self.layout.is_pad(file) {
            buf.fill(0);
            return Ok(());
        }
        let (handle, path) = self.handle(file)?;
        handle.read_exact_at(buf, offset).map_err(|source| match source.kind() {
            io::ErrorKind::UnexpectedEof => StorageError::ShortFile {
                path: path.to_path_buf(),
                offset,
                len: u64::try_from(buf.len()).unwrap_or(u64::MAX),
            },
            _ => StorageError::Io { op: "read", path: path.to_path_buf(), source },
        })
    }
}

fn split(data: &[u8], len: u64) -> Option<(&[u8], &[u8])> {
    data.split_at_checked(usize::try_from(len).ok()?)
}

fn split_mut(data: &mut [u8], len: u64) -> Option<(&mut [u8], &mut [u8])> {
    data.split_at_mut_checked(usize::try_from(len).ok()?)
}

/// Refuses, before anything touches the disk, any path that could leave the download
/// directory, clobber our resume records, or make two files share one inode.
fn check_paths(layout: &Layout) -> Result<(), StorageError> {
    let mut seen = HashSet::new();
    for (i, (path, _)) in layout.files.iter().enumerate() {
        if layout.is_pad(i) {
            continue; // never opened, and clients name padding by size, so names repeat
        }
        let refuse = |reason| Err(StorageError::UnsafePath { path: path.clone(), reason });
        let mut components = path.components().peekable();
        if components.peek().is_none() {
            return refuse("it is empty");
        }
        for (i, component) in components.enumerate() {
            match component {
                Component::Normal(name) if i == 0 && name == RESUME_DIR => {
                    return refuse("that directory holds kadswarm's resume records");
                }
                Component::Normal(_) => {}
                Component::RootDir | Component::Prefix(_) => return refuse("it is absolute"),
                Component::ParentDir => return refuse("it contains '..'"),
                Component::CurDir => return refuse("it contains '.'"),
            }
        }
        // `Path` equality compares components, so "a//b" and "a/b" collide here as on disk.
        if !seen.insert(path.as_path()) {
            return Err(StorageError::DuplicatePath { path: path.clone() });
        }
    }
    Ok(())
}

/// Creates the directories of `relative` below `root` one component at a time and returns the
/// file's full path. A symlinked component is followed only if it resolves inside `root`, and
/// is checked before anything is created through it.
fn make_parent_dirs(root: &Path, relative: &Path) -> Result<PathBuf, StorageError> {
    let mut dir = root.to_path_buf();
    for component in relative.parent().into_iter().flat_map(Path::components) {
        let next = dir.join(component);
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => dir = resolve_inside(root, &next)?,
            Ok(_) => dir = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::create_dir(&next) {
                    Ok(()) => {}
                    // Another storage of the same directory may have raced us to it.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("create directory", &next)(e)),
                }
                dir = next;
            }
            Err(e) => return Err(io_err("inspect", &next)(e)),
        }
    }
    // Belt and braces: whatever happened above, the parent must still resolve inside root.
    let dir = resolve_inside(root, &dir)?;
    match relative.file_name() {
        Some(name) => Ok(dir.join(name)),
        None => Err(StorageError::UnsafePath { path: relative.to_path_buf(), reason: "it names no file" }),
    }
}

/// `path` canonicalised, if that stays inside `root` (itself canonical).
fn resolve_inside(root: &Path, path: &Path) -> Result<PathBuf, StorageError> {
    let resolved = path.canonicalize().map_err(io_err("resolve", path))?;
    if resolved.starts_with(root) {
        Ok(resolved)
    } else {
        Err(StorageError::OutsideRoot { path: path.to_path_buf(), resolved, root: root.to_path_buf() })
    }
}

/// Opens (creating) one payload file and extends it sparse to `len`; returns the handle
/// (none for an empty file) and the length the file had before.
fn open_file(root: &Path, path: &Path, len: u64) -> Result<(Option<File>, u64), StorageError> {
    // A symlink as the file itself: opening would follow it and create or extend its target,
    // so it must resolve, and inside root (a dangling link fails to resolve and is refused).
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        resolve_inside(root, path)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        // Never truncate: on a restart the data already downloaded is what we want to keep.
        .truncate(false)
        .open(path)
        .map_err(io_err("open", path))?;
    // The link checks above ran before the open; a symlink swapped in between is caught here,
    // before we extend anything.
    resolve_inside(root, path)?;
    let before = file.metadata().map_err(io_err("stat", path))?.len();
    if len == 0 {
        return Ok((None, before));
    }
    // set_len only moves the end of file: a sparse hole, no zeros written. A longer file is
    // left alone; its extra bytes may be the user's and no block reaches them.
    if before < len {
        file.set_len(len).map_err(io_err("pre-allocate", path))?;
    }
    Ok((Some(file), before))
}

#[cfg(test)]
mod tests;
