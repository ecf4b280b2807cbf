//! Making a BEP 3 v1 torrent from a file or a directory.
//!
//! The walk and the reading are the only I/O; the piece hashing is a sans-IO [`PieceHasher`]
//! fed in whatever chunks the reads return, with one bounded read buffer however large the
//! pieces or files are.
//!
//! Decisions a caller should know:
//! - Directories are walked depth-first in byte order of the names, so the same tree always
//!   gives the same torrent, and the order matches how `Path` sorts.
//! - The path given is followed if it is a symbolic link (the user named it), but a link
//!   *inside* a directory is an error naming it: following could loop or pull in files from
//!   outside the tree, and skipping would publish a torrent silently missing files.
//! - Anything else that is not a regular file (socket, FIFO, device) is an error too. Empty
//!   directories hold no bytes and BEP 3 has no way to list them, so they leave no trace.
//! - Every name must pass the same checks as a downloaded torrent's ([`sanitize_component`]),
//!   and the result is parsed back through [`Metainfo::from_info_bytes`]: whatever we create,
//!   we and others can read.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::metainfo::{
    is_valid_piece_length, FileEntry, Info, Metainfo, MetainfoError, MAX_FILES, MAX_TOTAL_LENGTH, MIN_PIECE_LENGTH,
};
use super::path::{sanitize_component, PathError};

/// Largest piece length [`auto_piece_length`] picks; bigger pieces only make each lost or bad
/// piece costlier, and torrents with more pieces than this allows are merely larger files.
const AUTO_MAX_PIECE_LENGTH: u64 = 16 * 1024 * 1024;
/// [`auto_piece_length`] picks the smallest piece length giving at most this many pieces, so
/// the count lands between half of it and it: enough pieces to spread across peers, few enough
/// that the `pieces` string and the have-bitfield stay small.
const AUTO_TARGET_PIECES: u64 = 2000;
/// Bytes read from disk at a time.
const READ_BUF_LEN: usize = 256 * 1024;

/// Why a torrent could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0:?} is a symbolic link; links inside the torrent's directory are not followed")]
    Symlink(PathBuf),
    #[error("{0:?} is neither a regular file nor a directory")]
    NotRegular(PathBuf),
    #[error("{0:?} has no file name to name the torrent after")]
    NoName(PathBuf),
    #[error("{path:?} cannot be named in a torrent: {source}")]
    Name { path: PathBuf, source: PathError },
    #[error("piece length {0} is not a power of two from 16 KiB to 64 MiB")]
    PieceLength(u64),
    #[error("more than {MAX_FILES} files under {0:?}")]
    TooManyFiles(PathBuf),
    #[error("more than 2^50 bytes under {0:?}")]
    TooLarge(PathBuf),
    #[error("{0:?} holds no data; a torrent needs at least one byte")]
    Empty(PathBuf),
    #[error("{path:?} changed while it was read (expected {expected} bytes)")]
    Changed { path: PathBuf, expected: u64 },
    #[error("the created info dictionary does not parse: {0}")]
    Invalid(#[from] MetainfoError),
}

/// A piece length for `total_length` bytes: a power of two from 16 KiB to 16 MiB, the smallest
/// that keeps the torrent to about 1000-2000 pieces.
pub fn auto_piece_length(total_length: u64) -> u64 {
    let mut len = MIN_PIECE_LENGTH;
    while len < AUTO_MAX_PIECE_LENGTH && total_length.div_ceil(len) > AUTO_TARGET_PIECES {
        len *= 2;
    }
    len
}

/// SHA-1 of each piece of a byte stream fed in arbitrary chunks, pieces running across file
/// boundaries as BEP 3 requires.
#[derive(Debug, Clone)]
pub struct PieceHasher {
    piece_length: u64,
    /// Bytes of the current piece hashed so far.
    filled: u64,
    hasher: Sha1,
    pieces: Vec<[u8; 20]>,
}

impl PieceHasher {
    /// `piece_length` must be above zero; zero is treated as one byte rather than looping.
    pub fn new(piece_length: u64) -> PieceHasher {
        PieceHasher { piece_length: piece_length.max(1), filled: 0, hasher: Sha1::new(), pieces: Vec::new() }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.piece_length - self.filled;
            let take = usize::try_from(room).map_or(data.len(), |room| room.min(data.len()));
            let (head, rest) = data.split_at(take);
            self.hasher.update(head);
            self.filled += take as u64;
            if self.filled == self.piece_length {
                self.pieces.push(self.hasher.finalize_reset().into());
                self.filled = 0;
            }
            data = rest;
        }
    }

    /// Pieces completed so far.
    pub fn pieces_done(&self) -> usize {
        self.pieces.len()
    }

    /// All piece hashes, the last one over a short piece if the stream ended mid-piece.
    pub fn finish(mut self) -> Vec<[u8; 20]> {
        if self.filled > 0 {
            self.pieces.push(self.hasher.finalize().into());
        }
        self.pieces
    }
}

/// A file to hash: where it is on disk and what the torrent calls it.
struct Source {
    disk: PathBuf,
    path: PathBuf,
    length: u64,
}

/// Makes a torrent of the file or directory at `path` (see the module comment for how links,
/// special files and names are treated). `piece_length` defaults to [`auto_piece_length`].
/// `progress(hashed, total)` is called with byte counts after every read (at most
/// 256 KiB apart), the last call with `hashed == total`.
pub fn create(
    path: &Path,
    piece_length: Option<u64>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Metainfo, CreateError> {
    if let Some(len) = piece_length.filter(|&len| !is_valid_piece_length(len)) {
        return Err(CreateError::PieceLength(len));
    }
    let name = torrent_name(path)?;
    let meta = fs::metadata(path).map_err(io_error(path))?;
    let sources = if meta.is_file() {
        vec![Source { disk: path.to_path_buf(), path: PathBuf::from(&name), length: meta.len() }]
    } else if meta.is_dir() {
        walk(path, &name)?
    } else {
        return Err(CreateError::NotRegular(path.to_path_buf()));
    };

    let mut total_length = 0u64;
    let mut files = Vec::with_capacity(sources.len());
    for source in &sources {
        files.push(FileEntry { path: source.path.clone(), length: source.length, offset: total_length, pad: false });
        total_length = total_length
            .checked_add(source.length)
            .filter(|&t| t <= MAX_TOTAL_LENGTH)
            .ok_or_else(|| CreateError::TooLarge(path.to_path_buf()))?;
    }
    if total_length == 0 {
        return Err(CreateError::Empty(path.to_path_buf()));
    }
    let piece_length = piece_length.unwrap_or_else(|| auto_piece_length(total_length));

    let pieces = hash_sources(&sources, piece_length, total_length, progress)?;
    let info = Info { name, piece_length, pieces, files, total_length, private: false };
    Ok(Metainfo::from_info_bytes(info.to_bytes())?)
}

/// The torrent's `name`: the last component of `path`, resolved first for `.` and the like.
fn torrent_name(path: &Path) -> Result<String, CreateError> {
    let resolved;
    let file_name = match path.file_name() {
        Some(name) => name,
        None => {
            resolved = fs::canonicalize(path).map_err(io_error(path))?;
            resolved.file_name().ok_or_else(|| CreateError::NoName(path.to_path_buf()))?
        }
    };
    component(path, file_name)
}

/// A name from disk as a torrent path component, with the same checks a downloader applies.
fn component(disk: &Path, name: &std::ffi::OsStr) -> Result<String, CreateError> {
    let bad = |source| CreateError::Name { path: disk.to_path_buf(), source };
    let text = name.to_str().ok_or_else(|| bad(PathError::NotUtf8(name.to_string_lossy().into_owned())))?;
    sanitize_component(text.as_bytes()).map_err(bad)
}

/// Every regular file under `root`, depth-first in byte order of names. An explicit stack
/// rather than recursion, so a deeply nested tree cannot exhaust the call stack.
fn walk(root: &Path, name: &str) -> Result<Vec<Source>, CreateError> {
    let mut files = Vec::new();
    let mut stack = vec![(root.to_path_buf(), PathBuf::from(name), true)];
    while let Some((disk, path, is_root)) = stack.pop() {
        // The root was already followed; everything below is looked at without following.
        let meta = if is_root { fs::metadata(&disk) } else { fs::symlink_metadata(&disk) };
        let meta = meta.map_err(io_error(&disk))?;
        if meta.file_type().is_symlink() {
            return Err(CreateError::Symlink(disk));
        } else if meta.is_file() {
            if files.len() == MAX_FILES {
                return Err(CreateError::TooManyFiles(root.to_path_buf()));
            }
            files.push(Source { disk, path, length: meta.len() });
        } else if meta.is_dir() {
            let mut children = Vec::new();
            for entry in fs::read_dir(&disk).map_err(io_error(&disk))? {
                let entry = entry.map_err(io_error(&disk))?;
                let child = path.join(component(&entry.path(), &entry.file_name())?);
                children.push((entry.path(), child));
            }
            // Pushed in reverse so that they pop, and so are listed, in ascending order.
            children.sort_unstable_by(|a, b| b.1.cmp(&a.1));
            stack.extend(children.into_iter().map(|(disk, path)| (disk, path, false)));
        } else {
            return Err(CreateError::NotRegular(disk));
        }
    }
    Ok(files)
}

/// Reads every file in order through one buffer and hashes the concatenation.
fn hash_sources(
    sources: &[Source],
    piece_length: u64,
    total_length: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<[u8; 20]>, CreateError> {
    let mut hasher = PieceHasher::new(piece_length);
    let mut buf = vec![0u8; READ_BUF_LEN];
    let mut hashed = 0u64;
    for source in sources {
        let changed = || CreateError::Changed { path: source.disk.clone(), expected: source.length };
        let mut file = File::open(&source.disk).map_err(io_error(&source.disk))?;
        let mut left = source.length;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let read = read_some(&mut file, &mut buf[..want]).map_err(io_error(&source.disk))?;
            if read == 0 {
                return Err(changed());
            }
            hasher.update(&buf[..read]);
            left -= read as u64;
            hashed += read as u64;
            progress(hashed, total_length);
        }
        // A file that grew since it was measured would give a torrent that matches no copy.
        if read_some(&mut file, &mut buf[..1]).map_err(io_error(&source.disk))? != 0 {
            return Err(changed());
        }
    }
    Ok(hasher.finish())
}

/// `read`, retried when a signal interrupts it.
fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CreateError + '_ {
    move |source| CreateError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let unique = format!("kadswarm-{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
            let dir = std::env::temp_dir().join(unique);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        /// Writes `len` bytes that differ from file to file, creating parent directories.
        fn file(&self, relative: &str, len: usize, seed: u8) -> Vec<u8> {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            fs::write(path, &data).unwrap();
            data
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn sha1(bytes: &[u8]) -> [u8; 20] {
        Sha1::digest(bytes).into()
    }

    #[test]
    fn auto_piece_length_aims_at_1000_to_2000_pieces() {
        assert_eq!(auto_piece_length(0), 16 * 1024);
        assert_eq!(auto_piece_length(1), 16 * 1024);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        assert_eq!(auto_piece_length(u64::MAX), 16 << 20);
        // Below 32 MiB the 16 KiB floor gives fewer pieces; from about 31 GiB the 16 MiB
        // ceiling gives more.
        assert_eq!(auto_piece_length(1 << 40), 16 << 20);
        for shift in 25..=34 {
            for total in [1u64 << shift, (1 << shift) + 1, (3 << shift) / 2] {
                let len = auto_piece_length(total);
                assert!(is_valid_piece_length(len), "{len}");
                let pieces = total.div_ceil(len);
                assert!((1000..=2000).contains(&pieces), "{total} bytes in {pieces} pieces of {len}");
            }
        }
    }

    #[test]
    fn piece_hasher_ignores_how_the_stream_is_split() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let want: Vec<[u8; 20]> = data.chunks(16384).map(sha1).collect();
        for chunk in [1, 7, 16384, 16385, 100_000] {
            let mut hasher = PieceHasher::new(16384);
            data.chunks(chunk).for_each(|c| hasher.update(c));
            assert_eq!(hasher.finish(), want, "chunks of {chunk}");
        }
        let mut exact = PieceHasher::new(4);
        exact.update(b"abcdefgh");
        assert_eq!(exact.pieces_done(), 2);
        assert_eq!(exact.finish(), vec![sha1(b"abcd"), sha1(b"efgh")]);
    }

    #[test]
    fn creates_a_directory_torrent_hashing_across_files() {
        let dir = TempDir::new("create-dir");
        let root = dir.0.join("payload");
        // Created out of order; sizes put piece boundaries inside files and between them.
        let c = dir.file("payload/c", 16384, 3);
        let bx = dir.file("payload/b/x", 10_000, 1);
        let a = dir.file("payload/a", 0, 0);
        let by = dir.file("payload/b/y", 30_000, 2);
        let hidden = dir.file("payload/.hidden", 5, 4);
        fs::create_dir_all(root.join("empty/deeper")).unwrap();

        let mut calls = Vec::new();
        let m = create(&root, Some(16384), &mut |done, total| calls.push((done, total))).unwrap();
        let info = &m.info;
        let order: Vec<(&str, u64, u64)> =
            info.files.iter().map(|f| (f.path.to_str().unwrap(), f.length, f.offset)).collect();
        let want = vec![
            ("payload/.hidden", 5, 0),
            ("payload/a", 0, 5),
            ("payload/b/x", 10_000, 5),
            ("payload/b/y", 30_000, 10_005),
            ("payload/c", 16384, 40_005),
        ];
        assert_eq!(order, want);
        assert_eq!((info.name.as_str(), info.total_length, info.piece_length), ("payload", 56_389, 16384));

        let all = [hidden, a, bx, by, c].concat();
        let pieces: Vec<[u8; 20]> = all.chunks(16384).map(sha1).collect();
        assert_eq!(info.pieces, pieces);
        // One call per read; the empty file needs none.
        assert_eq!(calls, vec![(5, 56_389), (10_005, 56_389), (40_005, 56_389), (56_389, 56_389)]);

        assert_eq!(m.info_hash.0, sha1(&info.to_bytes()));
        let again = Metainfo::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn creates_a_single_file_torrent() {
        let dir = TempDir::new("create-file");
        let data = dir.file("movie.mkv", 3 * 16384 + 1, 9);
        let m = create(&dir.0.join("movie.mkv"), None, &mut |_, _| {}).unwrap();
        assert_eq!(
            m.info.files,
            vec![FileEntry { path: "movie.mkv".into(), length: data.len() as u64, offset: 0, pad: false }]
        );
        assert_eq!(m.info.piece_length, 16384);
        assert_eq!(m.info.pieces, data.chunks(16384).map(sha1).collect::<Vec<_>>());
        assert_eq!(Metainfo::from_bytes(&m.to_bytes()).unwrap(), m);
        // Named through `.`: the name comes from the resolved directory.
        let by_dot = create(&dir.0.join("."), None, &mut |_, _| {}).unwrap();
        assert_eq!(Some(by_dot.info.name.as_str()), dir.0.file_name().and_then(|n| n.to_str()));
    }

    #[test]
    fn refuses_what_it_cannot_publish_faithfully() {
        let dir = TempDir::new("create-bad");
        dir.file("ok/f", 10, 0);
        let ok = dir.0.join("ok");
        assert!(matches!(create(&ok, Some(16384 * 3), &mut |_, _| {}), Err(CreateError::PieceLength(49152))));
        assert!(matches!(create(&ok, Some(8192), &mut |_, _| {}), Err(CreateError::PieceLength(8192))));
        assert!(create(&ok, Some(64 << 20), &mut |_, _| {}).is_ok());

        fs::create_dir_all(dir.0.join("hollow/sub")).unwrap();
        dir.file("hollow/sub/zero", 0, 0);
        assert!(matches!(create(&dir.0.join("hollow"), None, &mut |_, _| {}), Err(CreateError::Empty(_))));
        assert!(matches!(create(&dir.0.join("missing"), None, &mut |_, _| {}), Err(CreateError::Io { .. })));

        // Names that a downloader would refuse are refused here, naming the file.
        for name in ["back\\slash", "CON", "aux.txt"] {
            let tree = dir.0.join(format!("names-{}", name.len()));
            dir.file(&format!("names-{}/{name}", name.len()), 1, 0);
            match create(&tree, None, &mut |_, _| {}) {
                Err(CreateError::Name { path, .. }) => assert!(path.ends_with(name), "{path:?}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_file_that_changed_size_since_the_walk_is_an_error() {
        let dir = TempDir::new("create-changed");
        dir.file("f", 10, 0);
        for declared in [5, 20] {
            let sources = [Source { disk: dir.0.join("f"), path: "f".into(), length: declared }];
            match hash_sources(&sources, 16384, declared, &mut |_, _| {}) {
                Err(CreateError::Changed { path, expected }) => {
                    assert_eq!((path, expected), (dir.0.join("f"), declared))
                }
                other => panic!("{declared}: {other:?}"),
            }
        }
        let sources = [Source { disk: dir.0.join("f"), path: "f".into(), length: 10 }];
        assert!(hash_sources(&sources, 16384, 10, &mut |_, _| {}).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn links_inside_the_tree_are_errors_but_the_named_root_is_followed() {
        let dir = TempDir::new("create-link");
        dir.file("real/f", 10, 0);
        std::os::unix::fs::symlink(dir.0.join("real/f"), dir.0.join("real/link")).unwrap();
        match create(&dir.0.join("real"), None, &mut |_, _| {}) {
            Err(CreateError::Symlink(path)) => assert!(path.ends_with("real/link")),
            other => panic!("{other:?}"),
        }
        fs::remove_file(dir.0.join("real/link")).unwrap();
        std::os::unix::fs::symlink(dir.0.join("real"), dir.0.join("alias")).unwrap();
        let m = create(&dir.0.join("alias"), None, &mut |_, _| {}).unwrap();
        assert_eq!(m.info.files[0].path, Path::new("alias/f"));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_names_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = TempDir::new("create-utf8");
        let tree = dir.0.join("t");
        fs::create_dir_all(&tree).unwrap();
        let bad = tree.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        if fs::write(&bad, b"x").is_err() {
            return; // Some filesystems (APFS) refuse such names themselves.
        }
        assert!(matches!(
            create(&tree, None, &mut |_, _| {}),
            Err(CreateError::Name { source: PathError::NotUtf8(_), .. })
        ));
    }
}
