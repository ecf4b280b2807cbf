//! Tests of [`Storage`]: block I/O across file boundaries, hashing, sparse pre-allocation,
//! the path defences, range checks, check_all and re-opening.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};

use sha1::{Digest, Sha1};

use super::*;
use crate::storage::testutil::{layout_of, payload, TempDir};

/// 3 pieces of 16 bytes and a short one of 8 over files of 10, 0, 4, 2 and 40 bytes: blocks
/// cross boundaries, an empty file sits mid-piece, and piece 0 spans four files.
const FILES: &[(&str, u64)] = &[("a/one", 10), ("a/empty", 0), ("b/c/two", 4), ("three", 2), ("four", 40)];

fn write_all(storage: &Storage, data: &[u8], pieces: &[usize]) {
    for &piece in pieces {
        let start = piece * 16;
        let end = (start + 16).min(data.len());
        storage.write_block(piece, 0, &data[start..end]).unwrap();
    }
}

/// A fresh payload of 56 bytes over [`FILES`], every piece written: the directory (kept alive
/// for the test), the payload and the storage.
fn all_written(tag: &str) -> (TempDir, Vec<u8>, Storage) {
    let dir = TempDir::new(tag);
    let data = payload(56);
    let storage = Storage::open(&dir.path, layout_of(&data, 16, FILES)).unwrap();
    write_all(&storage, &data, &[0, 1, 2, 3]);
    (dir, data, storage)
}

#[test]
fn blocks_written_across_files_read_back_and_land_in_the_right_files() {
    let dir = TempDir::new("rw");
    let data = payload(56);
    let storage = Storage::open(&dir.path, layout_of(&data, 16, FILES)).unwrap();
    // Odd block boundaries, so single blocks span two and three files.
    for (piece, begin, len) in [(0, 0, 9), (0, 9, 7), (1, 0, 3), (1, 3, 13), (2, 0, 16), (3, 0, 8)] {
        let at = piece * 16 + begin;
        storage.write_block(piece, begin as u64, &data[at..at + len]).unwrap();
    }
    assert_eq!(storage.read_block(0, 8, 8).unwrap(), &data[8..16]);
    assert_eq!(storage.read_block(3, 0, 8).unwrap(), &data[48..56]);
    let mut on_disk = Vec::new();
    for (path, _) in FILES {
        on_disk.extend(fs::read(dir.path.join(path)).unwrap());
    }
    assert_eq!(on_disk, data, "the files concatenated are the payload");
    assert_eq!(fs::metadata(dir.path.join("a/empty")).unwrap().len(), 0);
}

#[test]
fn piece_hashes_match_an_independent_sha1_of_the_payload() {
    let (_dir, data, storage) = all_written("hash");
    for (piece, chunk) in data.chunks(16).enumerate() {
        let expected: [u8; 20] = Sha1::digest(chunk).into();
        assert_eq!(storage.hash_piece(piece).unwrap(), expected, "piece {piece}");
        assert!(storage.verify_piece(piece).unwrap());
    }
    storage.write_block(2, 5, b"X").unwrap();
    assert!(!storage.verify_piece(2).unwrap());
    assert!(matches!(storage.hash_piece(4), Err(StorageError::PieceOutOfRange { piece: 4, count: 4 })));
}

#[test]
fn a_hash_resumed_part_way_reads_only_the_rest_of_the_piece_from_disk() {
    let (_dir, data, storage) = all_written("hash-from");
    // Piece 0 spans four files; resume it at every offset, the prefix taken from memory.
    for from in 0..=16 {
        let mut sha = Sha1::new();
        sha.update(&data[..from]);
        assert_eq!(storage.hash_piece_from(0, sha, from as u64).unwrap(), storage.hash_piece(0).unwrap(), "{from}");
    }
    // A prefix that is not what the disk holds fails the check: the disk is not re-read.
    let mut wrong = Sha1::new();
    wrong.update(b"not the payload!");
    assert!(!storage.verify_piece_from(1, wrong, 16).unwrap());
    let mut right = Sha1::new();
    right.update(&data[48..52]);
    assert!(storage.verify_piece_from(3, right, 4).unwrap());
    // Past the end of the (8-byte) last piece is an error, not a panic.
    assert!(matches!(storage.hash_piece_from(3, Sha1::new(), 9), Err(StorageError::BlockOutOfRange { .. })));
}

#[test]
fn hashing_streams_pieces_larger_than_its_buffer() {
    let dir = TempDir::new("bigpiece");
    // 200 KiB pieces: the hash loop must go round several times per file run.
    let data = payload(450 * 1024);
    let files = [("x", 70 * 1024), ("y", 300 * 1024), ("z", 80 * 1024)];
    let storage = Storage::open(&dir.path, layout_of(&data, 200 * 1024, &files)).unwrap();
    for (piece, chunk) in data.chunks(200 * 1024).enumerate() {
        storage.write_block(piece, 0, chunk).unwrap();
    }
    assert_eq!(storage.check_all(&mut |_, _| {}).unwrap(), [true, true, true]);
}

#[test]
fn files_are_preallocated_sparse() {
    let dir = TempDir::new("sparse");
    let len = 64 * 1024 * 1024;
    let layout = Layout {
        piece_length: 1 << 20,
        total_length: len,
        files: vec![("big".into(), len)],
        piece_hashes: vec![[0; 20]; 64],
        pad: Vec::new(),
    };
    let _storage = Storage::open(&dir.path, layout).unwrap();
    let meta = fs::metadata(dir.path.join("big")).unwrap();
    assert_eq!(meta.len(), len);
    // st_blocks counts 512-byte units actually allocated: a file full of written zeros would
    // have 131072 of them.
    assert!(meta.blocks() < 2048, "{} blocks allocated", meta.blocks());
}

#[test]
fn reopening_keeps_the_data_and_never_truncates() {
    let (dir, data, storage) = all_written("reopen");
    storage.flush().unwrap();
    drop(storage);
    // A file longer than the layout says may hold the user's bytes: leave them.
    let four = dir.path.join("four");
    fs::OpenOptions::new().write(true).open(&four).unwrap().set_len(100).unwrap();
    let storage = Storage::open(&dir.path, layout_of(&data, 16, FILES)).unwrap();
    assert_eq!(storage.check_all(&mut |_, _| {}).unwrap(), [true; 4]);
    assert_eq!(storage.read_block(1, 0, 16).unwrap(), &data[16..32]);
    assert_eq!(fs::metadata(&four).unwrap().len(), 100);
}

#[test]
fn unsafe_layout_paths_are_refused_before_anything_is_created() {
    let dir = TempDir::new("paths");
    let root = dir.path.join("root");
    let data = payload(4);
    for bad in ["../escape", "a/../../escape", "/tmp/kadswarm-absolute", "./a", "", ".kadswarm/x.resume"] {
        let err = Storage::open(&root, layout_of(&data, 4, &[("ok", 2), (bad, 2)])).unwrap_err();
        assert!(matches!(err, StorageError::UnsafePath { .. }), "{bad:?}: {err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "the message names the path: {err}");
    }
    let err = Storage::open(&root, layout_of(&data, 4, &[("a/b", 2), ("a//b", 2)])).unwrap_err();
    assert!(matches!(err, StorageError::DuplicatePath { .. }), "{err}");
    assert!(!root.exists(), "nothing was created for a refused layout");
    assert!(!dir.path.join("escape").exists());
}

#[test]
fn symlinks_out_of_the_root_are_refused_and_nothing_is_written_through_them() {
    let dir = TempDir::new("symlink");
    let (root, outside) = (dir.path.join("root"), dir.path.join("outside"));
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    let data = payload(4);
    symlink(&outside, root.join("dirlink")).unwrap();
    let err = Storage::open(&root, layout_of(&data, 4, &[("dirlink/sub/f", 4)])).unwrap_err();
    assert!(matches!(err, StorageError::OutsideRoot { .. }), "{err}");
    let err = Storage::open(&root, layout_of(&data, 4, &[("dirlink/f", 4)])).unwrap_err();
    assert!(matches!(err, StorageError::OutsideRoot { .. }), "{err}");
    // The file itself a link to outside, and one dangling to outside (open would create it).
    fs::write(outside.join("victim"), b"keep").unwrap();
    symlink(outside.join("victim"), root.join("filelink")).unwrap();
    let err = Storage::open(&root, layout_of(&data, 4, &[("filelink", 4)])).unwrap_err();
    assert!(matches!(err, StorageError::OutsideRoot { .. }), "{err}");
    symlink(outside.join("new"), root.join("dangling")).unwrap();
    assert!(Storage::open(&root, layout_of(&data, 4, &[("dangling", 4)])).is_err());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1, "nothing created outside");
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep");
    // A link that stays inside the root is the user's business, and fine.
    fs::create_dir_all(root.join("real")).unwrap();
    symlink(root.join("real"), root.join("inlink")).unwrap();
    let storage = Storage::open(&root, layout_of(&data, 4, &[("inlink/f", 4)])).unwrap();
    storage.write_block(0, 0, &data).unwrap();
    assert_eq!(fs::read(root.join("real/f")).unwrap(), data);
}

#[test]
fn blocks_outside_the_piece_or_the_payload_are_refused() {
    let dir = TempDir::new("range");
    let data = payload(56);
    let storage = Storage::open(&dir.path, layout_of(&data, 16, FILES)).unwrap();
    let refused = |r: Result<(), StorageError>| matches!(r, Err(StorageError::BlockOutOfRange { .. }));
    assert!(refused(storage.write_block(0, 10, &[0; 7])), "past the end of a full piece");
    assert!(refused(storage.write_block(3, 0, &[0; 9])), "past the end of the payload");
    assert!(refused(storage.write_block(3, u64::MAX, &[0; 2])), "offset overflow");
    assert!(matches!(storage.write_block(4, 0, &[0]), Err(StorageError::PieceOutOfRange { piece: 4, .. })));
    assert!(matches!(storage.write_block(usize::MAX, 0, &[0]), Err(StorageError::PieceOutOfRange { .. })));
    assert!(matches!(storage.read_block(3, 4, 5), Err(StorageError::BlockOutOfRange { .. })));
    assert!(matches!(storage.read_block(0, 1, u64::MAX), Err(StorageError::BlockOutOfRange { .. })));
    let err = storage.read_block(3, 8, 1).unwrap_err();
    assert!(err.to_string().contains("piece 3 of length 8"), "{err}");
    // Nothing was written by the refused calls.
    assert_eq!(fs::read(dir.path.join("four")).unwrap(), vec![0; 40]);
    storage.write_block(3, 8, &[]).unwrap();
}

#[test]
fn huge_reads_are_refused_instead_of_allocated() {
    let dir = TempDir::new("hugeread");
    let len = 2 * MAX_READ_LEN;
    let layout = Layout {
        piece_length: len,
        total_length: len,
        files: vec![("f".into(), len)],
        piece_hashes: vec![[0; 20]],
        pad: Vec::new(),
    };
    let storage = Storage::open(&dir.path, layout).unwrap();
    assert!(matches!(storage.read_block(0, 0, MAX_READ_LEN + 1), Err(StorageError::BlockTooLarge { .. })));
    assert_eq!(storage.read_block(0, len - 4, 4).unwrap(), [0; 4]);
}

#[test]
fn check_all_reports_exactly_the_written_pieces() {
    let dir = TempDir::new("check");
    let mut data = payload(56);
    // Piece 1 is all zeros, like the pre-allocated holes: only a written piece counts, so it
    // must come out false without being read (a hash would say true).
    data[16..32].fill(0);
    let storage = Storage::open(&dir.path, layout_of(&data, 16, FILES)).unwrap();
    write_all(&storage, &data, &[0, 3]);
    storage.write_block(2, 0, &data[32..40]).unwrap();
    let mut calls = Vec::new();
    assert_eq!(storage.check_all(&mut |done, total| calls.push((done, total))).unwrap(), [true, false, false, true]);
    assert_eq!(calls, [(1, 4), (2, 4), (3, 4), (4, 4)]);
    // Once written, the zero piece counts.
    write_all(&storage, &data, &[1]);
    assert_eq!(storage.check_all(&mut |_, _| {}).unwrap(), [true, true, false, true]);
}

#[test]
fn a_file_truncated_behind_our_back_makes_its_pieces_false_not_an_error() {
    let (dir, _data, storage) = all_written("truncated");
    fs::OpenOptions::new().write(true).open(dir.path.join("four")).unwrap().set_len(20).unwrap();
    // "four" covers payload bytes 16..56; 20 bytes of it reach to byte 36, inside piece 2.
    assert_eq!(storage.check_all(&mut |_, _| {}).unwrap(), [true, true, false, false]);
    assert!(!storage.verify_piece(3).unwrap());
    assert!(matches!(storage.read_block(3, 0, 8), Err(StorageError::ShortFile { .. })));
}

#[test]
fn threads_write_blocks_of_one_storage_at_once() {
    let dir = TempDir::new("threads");
    let data = payload(56);
    let storage = Storage::open(&dir.path, layout_of(&data, 16, FILES)).unwrap();
    std::thread::scope(|s| {
        for piece in 0..4 {
            let (storage, data) = (&storage, &data);
            s.spawn(move || write_all(storage, data, &[piece]));
        }
    });
    storage.flush().unwrap();
    assert_eq!(storage.check_all(&mut |_, _| {}).unwrap(), [true; 4]);
}

#[test]
fn padding_files_are_zeros_that_never_reach_the_disk() {
    let dir = TempDir::new("pad");
    // a.bin (5 bytes), 11 bytes of BEP 47 padding, b.bin (16 bytes): two 16-byte pieces.
    let mut payload = b"hello".to_vec();
    payload.extend_from_slice(&[0u8; 11]);
    payload.extend_from_slice(b"0123456789abcdef");
    let mut layout = layout_of(&payload, 16, &[("t/a.bin", 5), ("t/.pad/11", 11), ("t/b.bin", 16)]);
    layout.pad = vec![false, true, false];
    let storage = Storage::open(&dir.path, layout).unwrap();
    storage.write_block(0, 0, &payload[..16]).unwrap();
    storage.write_block(1, 0, &payload[16..]).unwrap();
    assert!(!dir.path.join("t/.pad").exists(), "no padding on disk");
    assert_eq!(storage.read_block(0, 0, 16).unwrap(), &payload[..16]);
    assert_eq!(storage.check_all(&mut |_, _| {}).unwrap(), vec![true, true]);
}
