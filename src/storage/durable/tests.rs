use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::storage::testutil::TempDir;

/// The names in `dir`, sorted, so a leftover temporary file shows in the assertion.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A payload that is recognisably whole: `len` copies of `byte`.
fn whole(byte: u8, len: usize) -> Vec<u8> {
    vec![byte; len]
}

#[test]
fn replaces_the_file_and_leaves_only_the_target() {
    let dir = TempDir::new("durable-replace");
    let path = dir.path.join("state.json");
    write_atomic(&path, b"old").unwrap();
    write_atomic(&path, b"new").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new");
    assert_eq!(listing(&dir.path), ["state.json"]);
}

/// Two threads replace one file 100 times each while a third reads it: every write
/// succeeds and every read sees one writer's whole payload. With one fixed temporary name
/// the writers truncate each other's file and rename it away under each other's feet.
#[test]
fn concurrent_writers_never_clobber_each_other() {
    const LEN: usize = 64 * 1024;
    const ROUNDS: usize = 100;
    let dir = TempDir::new("durable-concurrent");
    let path = Arc::new(dir.path.join("target"));
    write_atomic(&path, &whole(b'0', LEN)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [b'a', b'b']
        .into_iter()
        .map(|byte| {
            let path = Arc::clone(&path);
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    write_atomic(&path, &whole(byte, LEN)).unwrap_or_else(|e| panic!("round {round}: {e}"));
                }
            })
        })
        .collect();
    let reader = {
        let (path, done) = (Arc::clone(&path), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut reads = 0;
            // Bounded: the writers finish in well under a second; the cap only guards a hang.
            while !done.load(Ordering::Relaxed) && reads < 1_000_000 {
                let bytes = fs::read(&*path).unwrap();
                assert_eq!(bytes.len(), LEN, "a torn file after {reads} reads");
                assert!(bytes.iter().all(|&b| b == bytes[0]), "a mixed file after {reads} reads");
                reads += 1;
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert_eq!(listing(&dir.path), ["target"]);
}

/// A failure half-way through the write leaves the old content and no temporary file.
#[test]
fn a_failed_write_keeps_the_old_file_and_leaves_no_litter() {
    let dir = TempDir::new("durable-fail");
    let path = dir.path.join("resume");
    write_atomic(&path, b"old record").unwrap();
    let err = write_atomic_with(&path, &mut |f| {
        f.write_all(b"half of the new")?;
        Err(io::Error::other("disk on fire"))
    })
    .unwrap_err();
    assert_eq!(err.op, "write", "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"old record");
    assert_eq!(listing(&dir.path), ["resume"]);
}

/// A rename that fails (the target is a non-empty directory) removes the temporary file.
#[test]
fn a_failed_rename_leaves_no_litter() {
    let dir = TempDir::new("durable-rename");
    let path = dir.path.join("busy");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("inside"), b"x").unwrap();
    let err = write_atomic(&path, b"data").unwrap_err();
    assert_eq!(err.op, "rename into place", "{err}");
    assert_eq!(listing(&dir.path), ["busy"]);
}

/// Whatever sits at the names older versions used (`NAME.tmp`, `NAME.tmpPID`) does not
/// stand in the way: the temporary name is new each time.
#[test]
fn stale_files_at_old_temporary_names_do_not_block_the_write() {
    let dir = TempDir::new("durable-stale");
    let path = dir.path.join("rt.state");
    fs::create_dir(dir.path.join("rt.state.tmp")).unwrap();
    fs::create_dir(dir.path.join(format!("rt.state.tmp{}", std::process::id()))).unwrap();
    write_atomic(&path, b"state").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"state");
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let dir = TempDir::new("durable-nodir");
    let path = dir.path.join("no").join("such").join("file");
    let err = write_atomic(&path, b"x").unwrap_err();
    assert_eq!(err.op, "create", "{err}");
    assert!(err.to_string().contains("such"), "{err}");
}
