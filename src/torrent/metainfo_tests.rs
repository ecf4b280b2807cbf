//! Tests of BEP 3 metainfo parsing and encoding, with fixtures written by `bencode_writer`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sha1::{Digest, Sha1};

use super::metainfo::*;
use super::path::PathError;
use crate::bencode_writer::Writer;
use crate::magnet::Magnet;

const PL: i64 = 16 * 1024;

enum Files<'a> {
    Single(i64),
    Multi(&'a [(i64, &'a [&'a [u8]])]),
}

/// An info dictionary with `hashes` made-up piece hashes.
fn info_dict(name: &[u8], files: Files<'_>, piece_length: i64, hashes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.begin_dict();
    match files {
        Files::Multi(list) => {
            w.key(b"files").begin_list();
            for (length, path) in list {
                w.begin_dict().key(b"length").int(*length).key(b"path").begin_list();
                for part in *path {
                    w.bytes(part);
                }
                w.end().end();
            }
            w.end();
        }
        Files::Single(length) => {
            w.key(b"length").int(length);
        }
    }
    w.key(b"name").bytes(name).key(b"piece length").int(piece_length);
    w.key(b"pieces").bytes_from_parts(hashes * 20, |o| (0..hashes).for_each(|i| o.extend_from_slice(&[i as u8; 20])));
    w.end();
    out
}

/// Hashes needed for `total` bytes in pieces of [`PL`].
fn count(total: i64) -> usize {
    (total as u64).div_ceil(PL as u64) as usize
}

fn single(name: &[u8], length: i64) -> Vec<u8> {
    info_dict(name, Files::Single(length), PL, count(length))
}

fn multi(name: &[u8], files: &[(i64, &[&[u8]])]) -> Vec<u8> {
    let total = files.iter().map(|f| f.0).sum();
    info_dict(name, Files::Multi(files), PL, count(total))
}

/// The same dictionary with `extra` (already bencoded key and value) appended.
fn with_key(dict: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut out = dict[..dict.len() - 1].to_vec();
    out.extend_from_slice(extra);
    out.push(b'e');
    out
}

/// A `.torrent` file around `info`, with its keys deliberately out of order.
fn torrent(info: &[u8]) -> Vec<u8> {
    let mut out = b"d4:info".to_vec();
    out.extend_from_slice(info);
    out.extend_from_slice(b"8:announce14:http://trackere");
    out
}

fn sha1(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

/// Bendy's strict decoder takes it: sorted keys, no trailing bytes.
fn is_canonical(bytes: &[u8]) -> bool {
    crate::wire::strict_bencode_check(bytes).is_ok()
}

#[test]
fn parses_a_single_file_torrent() {
    let m = Metainfo::from_bytes(&torrent(&single(b"a.iso", 40_000))).unwrap();
    let info = &m.info;
    assert_eq!((info.name.as_str(), info.piece_length, info.total_length), ("a.iso", 16384, 40_000));
    assert_eq!(info.files, vec![FileEntry { path: PathBuf::from("a.iso"), length: 40_000, offset: 0, pad: false }]);
    assert_eq!(info.piece_count(), 3);
    assert_eq!(info.pieces[2], [2; 20]);
    let lens: Vec<u64> = (0..5).map(|i| info.piece_len(i)).collect();
    assert_eq!(lens, [16384, 16384, 40_000 - 32768, 0, 0]);
    assert_eq!(info.piece_len(usize::MAX), 0);
    assert_eq!(m.announce.as_deref(), Some("http://tracker"));
    assert!(!info.private);
}

#[test]
fn parses_a_multi_file_torrent_with_offsets() {
    let files: &[(i64, &[&[u8]])] = &[(10, &[b"a"]), (0, &[b"sub", b"b"]), (20_000, &[b"c.txt"]), (5, &[b"sub", b"d"])];
    let m = Metainfo::from_bytes(&torrent(&multi(b"dir", files))).unwrap();
    let got: Vec<(&Path, u64, u64)> = m.info.files.iter().map(|f| (f.path.as_path(), f.length, f.offset)).collect();
    let want: Vec<(&Path, u64, u64)> = vec![
        (Path::new("dir/a"), 10, 0),
        (Path::new("dir/sub/b"), 0, 10),
        (Path::new("dir/c.txt"), 20_000, 10),
        (Path::new("dir/sub/d"), 5, 20_010),
    ];
    assert_eq!(got, want);
    assert_eq!((m.info.total_length, m.info.piece_count()), (20_015, 2));
    assert_eq!(m.info.piece_len(1), 20_015 - 16384);
    // A multi-file torrent of one file stays multi-file when encoded again.
    let one = Info::from_bytes(&multi(b"dir", &[(3, &[b"x"])])).unwrap();
    assert_eq!(one.files[0].path, Path::new("dir/x"));
    assert_eq!(Info::from_bytes(&one.to_bytes()).unwrap(), one);
}

#[test]
fn info_hash_covers_the_exact_bytes_of_an_unsorted_info_dict() {
    // Unsorted keys and a zero-padded integer: a re-encoding would differ.
    let info = b"d6:pieces20:AAAAAAAAAAAAAAAAAAAA4:name5:a.txt12:piece lengthi16384e6:lengthi0100ee";
    let m = Metainfo::from_bytes(&torrent(info)).unwrap();
    assert_eq!(m.info_bytes, info);
    assert_eq!(m.info_hash.0, sha1(info));
    assert_ne!(m.info_hash.0, sha1(&m.info.to_bytes()));
    assert_eq!(m.info.total_length, 100);
    assert_eq!(Metainfo::from_info_bytes(info.to_vec()).unwrap(), Metainfo { announce: None, ..m.clone() });
    // Written out again, the torrent keeps the original bytes and so the hash.
    assert_eq!(Metainfo::from_bytes(&m.to_bytes()).unwrap(), m);
}

#[test]
fn the_first_of_duplicate_info_keys_is_parsed_and_hashed() {
    let first = single(b"first", 5);
    let mut file = b"d4:info".to_vec();
    file.extend_from_slice(&first);
    file.extend_from_slice(b"4:info");
    file.extend_from_slice(&single(b"second", 5));
    file.push(b'e');
    let m = Metainfo::from_bytes(&file).unwrap();
    assert_eq!((m.info.name.as_str(), m.info_hash.0), ("first", sha1(&first)));
}

#[test]
fn created_info_round_trips_canonically() {
    let files: &[(i64, &[&[u8]])] = &[(70_000, &[b"z"]), (1, &[b"a", b"b"])];
    let mut info = Info::from_bytes(&multi(b"n", files)).unwrap();
    info.private = true;
    let bytes = info.to_bytes();
    assert!(is_canonical(&bytes), "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(Info::from_bytes(&bytes).unwrap(), info);
    let single = Info::from_bytes(&single(b"one", 1)).unwrap();
    assert!(is_canonical(&single.to_bytes()));
    assert_eq!(Info::from_bytes(&single.to_bytes()).unwrap(), single);

    let mut m = Metainfo::from_info_bytes(bytes).unwrap();
    m.announce = Some("udp://t:1".into());
    m.nodes = vec![("router.example".into(), 6881), ("10.0.0.1".into(), 1)];
    let file = m.to_bytes();
    assert!(is_canonical(&file));
    assert_eq!(Metainfo::from_bytes(&file).unwrap(), m);
}

#[test]
fn nodes_keep_good_entries_and_skip_bad_ones() {
    let nodes = b"5:nodesll4:a.bzi1eel1:xi0eel1:yi65536eel0:i5eel1:zel2:okei7ee";
    let m = Metainfo::from_bytes(&with_key(&torrent(&single(b"n", 1)), nodes)).unwrap();
    assert_eq!(m.nodes, vec![("a.bz".to_owned(), 1)]);
    let no_nodes = with_key(&torrent(&single(b"n", 1)), b"5:nodesi3e");
    assert!(Metainfo::from_bytes(&no_nodes).unwrap().nodes.is_empty());
}

#[test]
fn private_flag_errs_on_the_side_of_private() {
    let base = single(b"p", 1);
    for (extra, private) in
        [(&b""[..], false), (b"7:privatei0e", false), (b"7:privatei1e", true), (b"7:private1:1", true)]
    {
        assert_eq!(Info::from_bytes(&with_key(&base, extra)).unwrap().private, private, "{extra:?}");
    }
}

#[test]
fn magnet_names_the_info_hash_and_name() {
    let m = Metainfo::from_bytes(&torrent(&single(b"My File", 9))).unwrap();
    let parsed = Magnet::parse(&m.magnet()).unwrap();
    assert_eq!((parsed.info_hash, parsed.display_name.as_deref()), (m.info_hash, Some("My File")));
}

#[test]
fn piece_length_must_be_a_power_of_two_from_16_kib_to_64_mib() {
    for ok in [16 * 1024, 1 << 20, 64 << 20] {
        let info = info_dict(b"x", Files::Single(1), ok, 1);
        assert_eq!(Info::from_bytes(&info).unwrap().piece_length, ok as u64);
    }
    for bad in [0, -16384, 1, 8192, 16383, 3 * 16384, 1_000_000, 128 << 20, 1 << 62, i64::MIN] {
        let info = info_dict(b"x", Files::Single(1), bad, 1);
        assert_eq!(Info::from_bytes(&info), Err(MetainfoError::PieceLength(bad)), "{bad}");
    }
}

#[test]
fn pieces_must_match_the_length() {
    let ragged = b"d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces21:012345678901234567890e";
    assert_eq!(Info::from_bytes(ragged), Err(MetainfoError::PiecesNotWhole(21)));
    for hashes in [0, 2, 4] {
        let info = info_dict(b"x", Files::Single(40_000), PL, hashes);
        let want =
            MetainfoError::PieceCount { declared: hashes as u64, expected: 3, total: 40_000, piece_length: 16384 };
        assert_eq!(Info::from_bytes(&info), Err(want));
    }
}

#[test]
fn huge_declared_sizes_are_refused_before_use() {
    let cases = [
        (info_dict(b"x", Files::Single(1 << 60), PL, 1), MetainfoError::TotalTooLarge(0)),
        (info_dict(b"x", Files::Single(i64::MAX), PL, 1), MetainfoError::TotalTooLarge(0)),
        (info_dict(b"x", Files::Single(-1), PL, 1), MetainfoError::NegativeLength { index: 0, length: -1 }),
        (
            info_dict(b"x", Files::Multi(&[(1 << 49, &[b"a"]), (1 << 49, &[b"b"]), (1, &[b"c"])]), PL, 1),
            MetainfoError::TotalTooLarge(2),
        ),
        (info_dict(b"x", Files::Multi(&[(1, &[b"a"]), (i64::MAX, &[b"b"])]), PL, 1), MetainfoError::TotalTooLarge(1)),
        (
            info_dict(b"x", Files::Multi(&[(1, &[b"a"]), (i64::MIN, &[b"b"])]), PL, 1),
            MetainfoError::NegativeLength { index: 1, length: i64::MIN },
        ),
        // A plausible total with a single hash: refused by comparing counts, not by building
        // 2^35 of anything.
        (
            info_dict(b"x", Files::Single(1 << 49), PL, 1),
            MetainfoError::PieceCount { declared: 1, expected: 1 << 35, total: 1 << 49, piece_length: 16384 },
        ),
    ];
    for (info, want) in cases {
        assert_eq!(Info::from_bytes(&info), Err(want));
    }
    let oversized = vec![b' '; MAX_METAINFO_LEN + 1];
    assert_eq!(Metainfo::from_bytes(&oversized), Err(MetainfoError::TooLarge(MAX_METAINFO_LEN + 1)));
    assert_eq!(Info::from_bytes(&oversized), Err(MetainfoError::TooLarge(MAX_METAINFO_LEN + 1)));
    // A string declaring far more bytes than the input holds fails in the decoder.
    assert!(matches!(Metainfo::from_bytes(b"d4:info99999999999:xe"), Err(MetainfoError::Bencode(_))));
}

#[test]
fn file_count_is_capped() {
    let names: Vec<String> = (0..=MAX_FILES).map(|i| i.to_string()).collect();
    let paths: Vec<[&[u8]; 1]> = names.iter().map(|n| [n.as_bytes()]).collect();
    let files: Vec<(i64, &[&[u8]])> = paths.iter().map(|p| (1, &p[..])).collect();
    let too_many = multi(b"many", &files);
    assert_eq!(Info::from_bytes(&too_many), Err(MetainfoError::TooManyFiles(MAX_FILES + 1)));
    let at_limit = Info::from_bytes(&multi(b"many", &files[..MAX_FILES])).unwrap();
    assert_eq!((at_limit.files.len(), at_limit.total_length), (MAX_FILES, MAX_FILES as u64));
}

#[test]
fn path_attacks_are_rejected_naming_the_component() {
    let long = vec![b'a'; 256];
    let attacks: &[(&[&[u8]], PathError)] = &[
        (&[b"..", b"etc", b"passwd"], PathError::Traversal("..".into())),
        (&[b"../etc"], PathError::Separator("../etc".into())),
        (&[b"/etc/passwd"], PathError::Separator("/etc/passwd".into())),
        (&[b"", b"etc", b"passwd"], PathError::Empty),
        (&[b"a", b"..", b"..", b"b"], PathError::Traversal("..".into())),
        (&[b"a/../../b"], PathError::Separator("a/../../b".into())),
        (&[b""], PathError::Empty),
        (&[], PathError::NoComponents),
        (&[b"."], PathError::Traversal(".".into())),
        (&[b"a", b"."], PathError::Traversal(".".into())),
        (&[b"CON"], PathError::WindowsReserved("CON".into())),
        (&[b"d", b"aux.txt"], PathError::WindowsReserved("aux.txt".into())),
        (&[b"a\0.txt"], PathError::Nul("a\0.txt".into())),
        (&[b"..\\..\\windows"], PathError::Separator("..\\..\\windows".into())),
        (&[b"\xc3\x28"], PathError::NotUtf8("\u{fffd}(".into())),
    ];
    for (index, (path, want)) in attacks.iter().enumerate() {
        let files: &[(i64, &[&[u8]])] = &[(1, &[b"fine"]), (1, path)];
        let got = Info::from_bytes(&multi(b"dir", files));
        assert_eq!(got, Err(MetainfoError::Path { index: 1, source: want.clone() }), "case {index}");
        let text = got.unwrap_err().to_string();
        assert!(text.contains("file 1"), "{text}");
    }
    let files: &[(i64, &[&[u8]])] = &[(1, &[&long[..]])];
    assert!(matches!(
        Info::from_bytes(&multi(b"d", files)),
        Err(MetainfoError::Path { source: PathError::TooLong { .. }, .. })
    ));

    let bad_names: &[(&[u8], PathError)] = &[
        (b"../../etc/passwd", PathError::Separator("../../etc/passwd".into())),
        (b"..", PathError::Traversal("..".into())),
        (b"/", PathError::Separator("/".into())),
        (b"", PathError::Empty),
        (b"nul", PathError::WindowsReserved("nul".into())),
    ];
    for (name, want) in bad_names {
        assert_eq!(Info::from_bytes(&single(name, 1)), Err(MetainfoError::Name(want.clone())));
        assert_eq!(Info::from_bytes(&multi(name, &[(1, &[b"f"])])), Err(MetainfoError::Name(want.clone())));
    }
    let err = Metainfo::from_bytes(&torrent(&multi(b"d", &[(1, &[b"..", b"x"])]))).unwrap_err();
    assert_eq!(err.to_string(), "bad path of file 0: path component \"..\" leads out of its directory");
}

#[test]
fn two_files_on_one_path_are_rejected() {
    let same: &[(i64, &[&[u8]])] = &[(1, &[b"b"]), (1, &[b"a", b"x"]), (1, &[b"b"])];
    assert_eq!(Info::from_bytes(&multi(b"d", same)), Err(MetainfoError::DuplicatePath("d/b".into())));
    let nested: &[(i64, &[&[u8]])] = &[(1, &[b"a", b"b", b"c"]), (1, &[b"a", b"b"]), (1, &[b"a", b"bb"])];
    let want = MetainfoError::FileIsDirectory { file: "d/a/b".into(), inner: "d/a/b/c".into() };
    assert_eq!(Info::from_bytes(&multi(b"d", nested)), Err(want));
    // A shared prefix of bytes is not a shared directory.
    let siblings: &[(i64, &[&[u8]])] = &[(1, &[b"a"]), (1, &[b"ab"]), (1, &[b"a.b"])];
    assert!(Info::from_bytes(&multi(b"d", siblings)).is_ok());
}

/// Paths equal in lower case are one file on a case-insensitive file system: refused, as
/// is a file whose name is a case variant of another file's directory.
#[test]
fn paths_that_differ_only_in_case_are_rejected() {
    let twins: &[(i64, &[&[u8]])] = &[(1, &[b"README"]), (1, &[b"x"]), (1, &[b"Readme"])];
    let want = MetainfoError::CaseClash { first: "d/README".into(), second: "d/Readme".into() };
    assert_eq!(Info::from_bytes(&multi(b"d", twins)), Err(want));
    let dirs: &[(i64, &[&[u8]])] = &[(1, &[b"Sub", b"a"]), (1, &[b"sub", b"A"])];
    assert!(matches!(Info::from_bytes(&multi(b"d", dirs)), Err(MetainfoError::CaseClash { .. })));
    let file_and_dir: &[(i64, &[&[u8]])] = &[(1, &[b"a", b"B"]), (1, &[b"a", b"b", b"c"])];
    let want = MetainfoError::CaseClash { first: "d/a/B".into(), second: "d/a/b/c".into() };
    assert_eq!(Info::from_bytes(&multi(b"d", file_and_dir)), Err(want));
    // Beyond ASCII: Ä and ä fold together.
    let unicode: &[(i64, &[&[u8]])] = &[(1, &["Ä.txt".as_bytes()]), (1, &["ä.txt".as_bytes()])];
    assert!(matches!(Info::from_bytes(&multi(b"d", unicode)), Err(MetainfoError::CaseClash { .. })));
    let text = Metainfo::from_bytes(&torrent(&multi(b"d", twins))).unwrap_err().to_string();
    assert!(text.contains("differ only in case"), "{text}");
    // Different names that merely share letters stay fine, as does a pad file named like another.
    let fine: &[(i64, &[&[u8]])] = &[(1, &[b"a"]), (1, &[b"ab"]), (1, &[b"A.b"]), (1, &[b"sub", b"a"])];
    assert!(Info::from_bytes(&multi(b"d", fine)).is_ok());
}

#[test]
fn malformed_dictionaries_are_refused() {
    let one = single(b"x", 1);
    let no_files: &[(i64, &[&[u8]])] = &[];
    let cases: Vec<(Vec<u8>, MetainfoError)> = vec![
        (with_key(&one, b"5:filesle"), MetainfoError::LengthAndFiles),
        (info_dict(b"x", Files::Multi(no_files), PL, 0), MetainfoError::Empty),
        (multi(b"x", &[(0, &[b"a"]), (0, &[b"b"])]), MetainfoError::Empty),
        (single(b"x", 0), MetainfoError::Empty),
        (b"d4:name1:x12:piece lengthi16384e6:pieces0:e".to_vec(), MetainfoError::NoLayout),
        (b"d6:lengthi1e12:piece lengthi16384e6:pieces0:e".to_vec(), MetainfoError::Missing("name")),
        (
            b"d6:lengthi1e4:namei1e12:piece lengthi16384e6:pieces0:e".to_vec(),
            MetainfoError::WrongType { key: "name", expected: "a byte string" },
        ),
        (b"d6:lengthi1e4:name1:x6:pieces0:e".to_vec(), MetainfoError::Missing("piece length")),
        (b"d6:lengthi1e4:name1:x12:piece lengthi16384ee".to_vec(), MetainfoError::Missing("pieces")),
        (
            b"d6:length1:14:name1:x12:piece lengthi16384e6:pieces0:e".to_vec(),
            MetainfoError::WrongType { key: "length", expected: "an integer" },
        ),
        (
            b"d5:filesi1e4:name1:x12:piece lengthi16384e6:pieces0:e".to_vec(),
            MetainfoError::WrongType { key: "files", expected: "a list" },
        ),
        (
            b"d5:filesli1ee4:name1:x12:piece lengthi16384e6:pieces0:e".to_vec(),
            MetainfoError::BadFile { index: 0, key: "length" },
        ),
        (b"le".to_vec(), MetainfoError::NotDict("info")),
    ];
    for (info, want) in cases {
        assert_eq!(Info::from_bytes(&info), Err(want), "{}", String::from_utf8_lossy(&info));
    }
    let truncated = single(b"x", 1);
    assert!(matches!(Info::from_bytes(&truncated[..truncated.len() - 1]), Err(MetainfoError::Bencode(_))));
    let no_path = b"d5:filesld6:lengthi1eee4:name1:x12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";
    assert_eq!(Info::from_bytes(no_path), Err(MetainfoError::BadFile { index: 0, key: "path" }));
    let int_path = b"d5:filesld6:lengthi1e4:pathli1eeee4:name1:x12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";
    assert_eq!(Info::from_bytes(int_path), Err(MetainfoError::BadFile { index: 0, key: "path" }));
    assert_eq!(Metainfo::from_bytes(b"le"), Err(MetainfoError::NotDict("metainfo")));
    assert_eq!(Metainfo::from_bytes(b"d8:announce1:xe"), Err(MetainfoError::Missing("info")));
}

#[test]
fn only_a_whole_torrent_may_be_followed_by_bytes() {
    let info = single(b"x", 1);
    let mut trailing = info.clone();
    trailing.extend_from_slice(b"\n");
    assert_eq!(Info::from_bytes(&trailing), Err(MetainfoError::TrailingBytes(1)));
    assert_eq!(Metainfo::from_info_bytes(trailing), Err(MetainfoError::TrailingBytes(1)));
    let mut file = torrent(&info);
    file.extend_from_slice(b"\r\n");
    assert_eq!(Metainfo::from_bytes(&file).unwrap().info_hash.0, sha1(&info));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Metainfo::from_bytes(&bytes);
        let _ = Info::from_bytes(&bytes);
    }

    #[test]
    fn mutated_torrents_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4), cut in any::<usize>()) {
        let files: &[(i64, &[&[u8]])] = &[(20_000, &[b"a", b"b"]), (3, &[b"c"])];
        let mut file = torrent(&with_key(&multi(b"dir", files), b"7:privatei1e"));
        for (pos, byte) in edits {
            let len = file.len();
            file[pos % len] = byte;
        }
        if let Ok(m) = Metainfo::from_bytes(&file) {
            // Whatever is accepted is consistent and its hash is of bytes from the input.
            prop_assert_eq!(m.info_hash.0, sha1(&m.info_bytes));
            prop_assert_eq!(m.info.files.iter().map(|f| f.length).sum::<u64>(), m.info.total_length);
            prop_assert_eq!(m.info.piece_count() as u64, m.info.total_length.div_ceil(m.info.piece_length));
        }
        file.truncate(cut % file.len());
        let _ = Metainfo::from_bytes(&file);
    }
}

#[test]
fn bep47_padding_files_are_marked_and_may_share_a_name() {
    // libtorrent names padding `.pad/<size>`: two pads of one size share a path.
    let mut info = Vec::new();
    let mut w = crate::bencode_writer::Writer::new(&mut info);
    w.begin_dict().key(b"files").begin_list();
    for (attr, len, path) in [(None, 5, "a"), (Some("p"), 16379, ".pad"), (Some("p"), 16379, ".pad"), (None, 3, "b")] {
        w.begin_dict();
        if let Some(a) = attr {
            w.key(b"attr").bytes(a.as_bytes());
        }
        w.key(b"length").int(len).key(b"path").begin_list().bytes(path.as_bytes()).bytes(b"16379").end().end();
    }
    w.end();
    w.key(b"name").bytes(b"t").key(b"piece length").int(16384).key(b"pieces").bytes(&[0u8; 40]).end();
    let parsed = Info::from_bytes(&info).unwrap();
    let pads: Vec<bool> = parsed.files.iter().map(|f| f.pad).collect();
    assert_eq!(pads, vec![false, true, true, false]);
    assert_eq!(Info::from_bytes(&parsed.to_bytes()).unwrap(), parsed, "attr survives a round trip");
}
