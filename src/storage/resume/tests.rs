//! Tests of resume records: round trip, what is ignored, and when the record is trusted.

use std::fs;
use std::time::Duration;

use super::*;
use crate::storage::testutil::{layout_of, payload, TempDir};

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";
const FILES: &[(&str, u64)] = &[("a", 20), ("b", 20), ("c", 8)];

/// A complete 48-byte payload in three files of 20, 20 and 8 bytes, 16-byte pieces: piece 0
/// lies in "a", piece 1 spans "a" and "b", piece 2 spans "b" and "c".
fn complete(dir: &TempDir) -> (Storage, Vec<u8>) {
    let data = payload(48);
    let storage = Storage::open(&dir.path, layout_of(&data, 16, FILES)).unwrap();
    for (piece, chunk) in data.chunks(16).enumerate() {
        storage.write_block(piece, 0, chunk).unwrap();
    }
    (storage, data)
}

/// Changes one byte of a file behind the storage's back, then sets its mtime to `mtime`.
fn tamper(path: &Path, mtime: SystemTime) {
    let mut bytes = fs::read(path).unwrap();
    bytes[0] ^= 0xff;
    fs::write(path, bytes).unwrap();
    File::options().write(true).open(path).unwrap().set_modified(mtime).unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn a_record_round_trips_through_its_file() {
    let dir = TempDir::new("resume-rt");
    let (storage, _) = complete(&dir);
    let record = ResumeRecord::capture(&storage, &HASH.to_uppercase(), &[true, false, true]).unwrap();
    assert_eq!(record.info_hash_hex, HASH);
    assert_eq!(record.pieces, "a0");
    assert_eq!(record.files.iter().map(|f| f.0).collect::<Vec<_>>(), [20, 20, 8]);
    let path = resume_path(&dir.path, HASH).unwrap();
    assert_eq!(path, dir.path.join(".kadswarm").join(format!("{HASH}.resume")));
    assert_eq!(ResumeRecord::load(&path).unwrap(), None, "no record yet");
    record.save(&path).unwrap();
    // Saving again replaces the record atomically rather than appending or failing.
    record.save(&path).unwrap();
    assert_eq!(ResumeRecord::load(&path).unwrap(), Some(record.clone()));
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file left behind");
    assert_eq!(record.have(3), Some(vec![true, false, true]));
    assert!(matches!(
        ResumeRecord::capture(&storage, HASH, &[true]),
        Err(StorageError::BitfieldLength { got: 1, pieces: 3 })
    ));
}

/// Whatever sits at the temporary name the previous version used (`NAME.tmpPID`, the same
/// for every save of a process) does not stop the record from being saved.
#[test]
fn a_directory_at_the_old_temporary_name_does_not_block_saving() {
    let dir = TempDir::new("resume-stale-tmp");
    let (storage, _) = complete(&dir);
    let record = ResumeRecord::capture(&storage, HASH, &[true, true, true]).unwrap();
    let path = resume_path(&dir.path, HASH).unwrap();
    fs::create_dir_all(dir.path.join(RESUME_DIR).join(format!("{HASH}.resume.tmp{}", std::process::id()))).unwrap();
    record.save(&path).unwrap();
    assert_eq!(ResumeRecord::load(&path).unwrap(), Some(record));
}

#[test]
fn corrupt_truncated_or_oversized_records_are_ignored() {
    let dir = TempDir::new("resume-bad");
    let (storage, _) = complete(&dir);
    let path = resume_path(&dir.path, HASH).unwrap();
    let record = ResumeRecord::capture(&storage, HASH, &[true, true, true]).unwrap();
    record.save(&path).unwrap();
    let json = fs::read(&path).unwrap();
    for bad in [&json[..json.len() / 2], b"", b"\0\0\0\0", b"{\"info_hash_hex\":1}", b"[[[[[[[[[[[[[[[["] {
        fs::write(&path, bad).unwrap();
        assert_eq!(ResumeRecord::load(&path).unwrap(), None, "{:?}", String::from_utf8_lossy(bad));
    }
    fs::write(&path, &json).unwrap();
    let size = json.len() as u64;
    assert_eq!(load_capped(&path, size).unwrap(), Some(record));
    assert_eq!(load_capped(&path, size - 1).unwrap(), None, "one byte over the cap");
    // A directory in its place is not a record we can read: an error, not a panic.
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    assert!(ResumeRecord::load(&path).is_err());
}

#[test]
fn a_matching_record_is_trusted_without_hashing() {
    let dir = TempDir::new("resume-trust");
    let (storage, _) = complete(&dir);
    let record = ResumeRecord::capture(&storage, HASH, &[true, false, true]).unwrap();
    // Corrupt "a" but put its mtime back: the record still matches, so piece 0 is taken on
    // trust (a hash would say false) and piece 1 stays as recorded (a hash would say true).
    let a = dir.path.join("a");
    tamper(&a, mtime(&a));
    let mut calls = 0;
    let have = verified_pieces(&storage, HASH, Some(&record), &mut |_, _| calls += 1).unwrap();
    assert_eq!(have, [true, false, true]);
    assert_eq!(calls, 3);
}

#[test]
fn a_changed_mtime_re_hashes_the_pieces_touching_that_file() {
    let dir = TempDir::new("resume-mtime");
    let (storage, _) = complete(&dir);
    let record = ResumeRecord::capture(&storage, HASH, &[true, true, true]).unwrap();
    let c = dir.path.join("c");
    tamper(&c, mtime(&c) + Duration::from_secs(3));
    // Piece 2 touches "c" and is hashed (false); pieces 0 and 1 are trusted.
    assert_eq!(verified_pieces(&storage, HASH, Some(&record), &mut |_, _| {}).unwrap(), [true, true, false]);
    // A piece the record did not claim is hashed too when its file changed: the user may have
    // put the finished file there. (Tampering again flips the byte back.)
    tamper(&c, mtime(&c) + Duration::from_secs(4));
    let record = ResumeRecord::capture(&storage, HASH, &[true, true, false]).unwrap();
    File::options().write(true).open(&c).unwrap().set_modified(mtime(&c) + Duration::from_secs(5)).unwrap();
    assert_eq!(verified_pieces(&storage, HASH, Some(&record), &mut |_, _| {}).unwrap(), [true, true, true]);
}

#[test]
fn a_foreign_or_malformed_record_falls_back_to_checking_everything() {
    let dir = TempDir::new("resume-foreign");
    let (storage, _) = complete(&dir);
    let a = dir.path.join("a");
    let record = ResumeRecord::capture(&storage, HASH, &[true, true, true]).unwrap();
    tamper(&a, mtime(&a));
    let full = [false, true, true];
    assert_eq!(storage.check_all(&mut |_, _| {}).unwrap(), full);
    let other = "f".repeat(40);
    assert_eq!(verified_pieces(&storage, &other, Some(&record), &mut |_, _| {}).unwrap(), full);
    for pieces in ["e", "ff", "+0", "zz", ""] {
        let bad = ResumeRecord { pieces: pieces.to_owned(), ..record.clone() };
        assert_eq!(verified_pieces(&storage, HASH, Some(&bad), &mut |_, _| {}).unwrap(), full, "{pieces:?}");
    }
    let fewer = ResumeRecord { files: record.files[..2].to_vec(), ..record.clone() };
    assert_eq!(verified_pieces(&storage, HASH, Some(&fewer), &mut |_, _| {}).unwrap(), full);
    assert_eq!(verified_pieces(&storage, HASH, None, &mut |_, _| {}).unwrap(), full);
}

#[test]
fn resume_paths_take_only_hex_info_hashes() {
    let root = Path::new("/data");
    assert!(resume_path(root, &"A".repeat(64)).unwrap().ends_with(format!(".kadswarm/{}.resume", "a".repeat(64))));
    let (g, short, slash) = ("g".repeat(40), "a".repeat(39), format!("{}/", "a".repeat(39)));
    for bad in ["", "../../../etc/passwd", g.as_str(), short.as_str(), slash.as_str()] {
        let err = resume_path(root, bad).unwrap_err();
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn bitfields_encode_high_bit_first_and_decode_strictly() {
    let have = [true, false, false, false, false, false, false, true, true];
    assert_eq!(encode_bitfield(&have), "8180");
    assert_eq!(decode_bitfield("8180", 9), Some(have.to_vec()));
    assert_eq!(decode_bitfield("81C0", 9), None, "a spare bit set");
    assert_eq!(decode_bitfield("81", 9), None);
    assert_eq!(decode_bitfield("", 0), Some(vec![]));
    assert_eq!(decode_bitfield("é0", 1), None);
}

#[test]
fn times_before_the_epoch_keep_forward_nanoseconds() {
    assert_eq!(unix_time(UNIX_EPOCH + Duration::new(5, 7)), (5, 7));
    assert_eq!(unix_time(UNIX_EPOCH - Duration::new(5, 0)), (-5, 0));
    assert_eq!(unix_time(UNIX_EPOCH - Duration::new(5, 250_000_000)), (-6, 750_000_000));
}
