//! Durable replacement of small state files: the DHT `--state` file and its pool, the saved
//! metadata (BEP 9 info dictionaries kept as `.torrent` files) and the resume records.
//!
//! Every writer goes through [`write_atomic`], so that a crash, a power cut or a second
//! process writing the same file leaves either the old content or the new one, never a mix:
//!
//! - the temporary file gets a name of its own (pid, a random suffix, `create_new`), in the
//!   target's directory so the rename stays on one file system. A fixed name let two writers
//!   truncate each other's half-written file, and a stale directory or file left at that name
//!   blocked every later write;
//! - the data is `fsync`ed before the rename, or the rename could reach the disk before the
//!   data and a crash would leave an empty file under the target's name;
//! - the directory is `fsync`ed after the rename, which is what makes the new name durable;
//! - on any failure before the rename the temporary file is removed, so nothing litters.
//!
//! Whether the fsyncs happen cannot be observed from a test without a fault-injecting file
//! system; the tests cover the naming, the clean-up and the old-or-new property.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Attempts at a fresh temporary name before giving up: a collision needs the same pid and
/// the same 64 random bits, so a second attempt is already a sign of something odd.
const NAME_ATTEMPTS: usize = 8;

/// A step of [`write_atomic`] that failed, with the file it failed on.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {path:?}: {source}")]
pub struct DurableError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// For callers whose error types carry an `io::Error`: the kind is kept, the step and path
/// travel in the message.
impl From<DurableError> for io::Error {
    fn from(e: DurableError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

/// Replaces `path` with `bytes`: readers see the old file or the new one, never a mix, and
/// once this returns `Ok` the new content survives a crash. The directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    write_atomic_with(path, &mut |file| file.write_all(bytes))
}

/// [`write_atomic`] with the writing of the content left to `fill`, so that the tests can
/// make it fail half-way.
fn write_atomic_with(path: &Path, fill: &mut dyn FnMut(&mut File) -> io::Result<()>) -> Result<(), DurableError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        err("name a temporary file for", path)(io::Error::new(io::ErrorKind::InvalidInput, "no file name"))
    })?;
    let (tmp, file) = create_temp(dir, name)?;
    let written = write_synced(file, fill)
        .map_err(err("write", &tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(err("rename into place", path)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is durable only once the directory entry is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(err("sync directory", dir))
}

/// A new, empty file next to the target, named `.NAME.PID.RANDOM.tmp`: hidden, so that
/// directory listings of downloads do not show it, and never one another writer holds.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> Result<(PathBuf, File), DurableError> {
    for _ in 0..NAME_ATTEMPTS {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{:016x}.tmp", std::process::id(), rand::random::<u64>()));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(DurableError { op: "create", path: tmp, source }),
        }
    }
    let source = io::Error::new(io::ErrorKind::AlreadyExists, "every temporary name tried was taken");
    Err(DurableError { op: "create a temporary file in", path: dir.to_path_buf(), source })
}

/// Builds the mapper for `map_err` on one step, naming the step and its file.
fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DurableError + 'a {
    move |source| DurableError { op, path: path.to_path_buf(), source }
}

fn write_synced(mut file: File, fill: &mut dyn FnMut(&mut File) -> io::Result<()>) -> io::Result<()> {
    fill(&mut file)?;
    file.sync_all()
}

#[cfg(test)]
mod tests;
