//! BEP 9 messages (the examples of the BEP, hostile payloads) and the metadata assembler
//! (order, sizes, retries, the hash check).

use super::*;
use crate::wire::assert_canonical_bencode;
use proptest::prelude::*;

fn encode(m: &MetadataMessage) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

/// Deterministic, non-repeating bytes standing in for an info dictionary.
fn info(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn hash(bytes: &[u8]) -> InfoHash {
    let mut h = [0u8; 20];
    h.copy_from_slice(&Sha1::digest(bytes));
    Id(h)
}

#[test]
fn bep9_request_example() {
    let bytes = b"d8:msg_typei0e5:piecei0ee";
    assert_eq!(MetadataMessage::decode(bytes), Ok(MetadataMessage::Request { piece: 0 }));
    assert_eq!(encode(&MetadataMessage::Request { piece: 0 }), bytes);
}

#[test]
fn bep9_data_example() {
    // BEP 9 prints total_size as 3425 in the dictionary and 34256 in the bytes; the bytes win.
    let bytes = b"d8:msg_typei1e5:piecei0e10:total_sizei34256eexxxxxxxx";
    let m = MetadataMessage::Data { piece: 0, total_size: 34256, data: b"xxxxxxxx".to_vec() };
    assert_eq!(MetadataMessage::decode(bytes), Ok(m.clone()));
    assert_eq!(encode(&m), bytes);
}

#[test]
fn bep9_reject_example() {
    // BEP 9's encoded reject example repeats msg_type 1 by mistake; its dictionary says 2.
    let bytes = b"d8:msg_typei2e5:piecei0ee";
    assert_eq!(MetadataMessage::decode(bytes), Ok(MetadataMessage::Reject { piece: 0 }));
    assert_eq!(encode(&MetadataMessage::Reject { piece: 0 }), bytes);
}

#[test]
fn encoding_is_canonical_and_keys_may_come_in_any_order() {
    for m in [
        MetadataMessage::Request { piece: 3 },
        MetadataMessage::Reject { piece: u32::MAX },
        MetadataMessage::Data { piece: 1, total_size: MAX_METADATA_SIZE, data: vec![] },
    ] {
        assert_canonical_bencode(&encode(&m));
        assert_eq!(m.piece(), MetadataMessage::decode(&encode(&m)).unwrap().piece());
    }
    assert_eq!(MetadataMessage::decode(b"d5:piecei4e8:msg_typei2ee"), Ok(MetadataMessage::Reject { piece: 4 }));
    // Unknown extra keys (libtorrent's data messages may carry more) do not matter.
    assert_eq!(MetadataMessage::decode(b"d8:msg_typei0e5:piecei1e1:xi9ee"), Ok(MetadataMessage::Request { piece: 1 }));
}

#[test]
fn unknown_msg_type_is_reported_for_ignoring() {
    assert_eq!(MetadataMessage::decode(b"d8:msg_typei3e5:piecei0ee"), Err(MetadataError::UnknownType(3)));
    assert_eq!(MetadataMessage::decode(b"d8:msg_typei-1ee"), Err(MetadataError::UnknownType(-1)));
}

#[test]
fn hostile_messages_are_errors() {
    let cases: &[(&[u8], MetadataError)] = &[
        (b"d5:piecei0ee", MetadataError::Missing("msg_type")),
        (b"d8:msg_type1:0e", MetadataError::Missing("msg_type")),
        (b"d8:msg_typei0ee", MetadataError::Missing("piece")),
        (b"d8:msg_typei0e5:piecei-1ee", MetadataError::OutOfRange { field: "piece", value: -1 }),
        (b"d8:msg_typei2e5:piecei4294967296ee", MetadataError::OutOfRange { field: "piece", value: 1 << 32 }),
        (b"d8:msg_typei1e5:piecei0ee", MetadataError::Missing("total_size")),
        (b"d8:msg_typei1e5:piecei0e10:total_sizei0ee", MetadataError::OutOfRange { field: "total_size", value: 0 }),
        (
            b"d8:msg_typei1e5:piecei0e10:total_sizei16777217ee",
            MetadataError::OutOfRange { field: "total_size", value: 16777217 },
        ),
        (b"li1ee", MetadataError::NotADict),
    ];
    for (bytes, err) in cases {
        assert_eq!(MetadataMessage::decode(bytes).as_ref(), Err(err), "{}", String::from_utf8_lossy(bytes));
    }
    let mut long = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
    long.resize(long.len() + METADATA_PIECE + 1, b'x');
    assert_eq!(MetadataMessage::decode(&long), Err(MetadataError::DataTooLong(METADATA_PIECE + 1)));
    // Truncated dictionaries.
    let full = encode(&MetadataMessage::Request { piece: 12 });
    for len in 0..full.len() {
        assert!(matches!(MetadataMessage::decode(&full[..len]), Err(MetadataError::Bencode(_))), "cut at {len}");
    }
}

#[test]
fn serving_side_cuts_sixteen_kib_pieces() {
    let bytes = info(40_000);
    assert_eq!(metadata_piece(&bytes, 0), Some(&bytes[..16384]));
    assert_eq!(metadata_piece(&bytes, 1), Some(&bytes[16384..32768]));
    assert_eq!(metadata_piece(&bytes, 2), Some(&bytes[32768..]));
    assert_eq!(metadata_piece(&bytes, 3), None);
    assert_eq!(metadata_piece(&bytes, u32::MAX), None);
    let exact = info(32768);
    assert_eq!(metadata_piece(&exact, 1).map(<[u8]>::len), Some(16384));
    assert_eq!(metadata_piece(&exact, 2), None);
    assert_eq!(metadata_piece(&[], 0), None);
}

#[test]
fn assembles_out_of_order_pieces() {
    let bytes = info(40_000);
    let mut a = MetadataAssembler::new(hash(&bytes), 40_000).unwrap();
    assert_eq!((a.piece_count(), a.total_size()), (3, 40_000));
    assert_eq!(
        [a.next_request(), a.next_request(), a.next_request(), a.next_request()],
        [Some(0), Some(1), Some(2), None]
    );
    assert_eq!(a.on_data(2, metadata_piece(&bytes, 2).unwrap().to_vec()), Ok(None));
    assert_eq!(a.on_data(0, metadata_piece(&bytes, 0).unwrap().to_vec()), Ok(None));
    assert_eq!(a.on_data(1, metadata_piece(&bytes, 1).unwrap().to_vec()), Ok(Some(bytes)));
    // Done: nothing more to ask, late answers are ignored.
    assert_eq!(a.next_request(), None);
    assert_eq!(a.on_data(1, vec![0; 16384]), Ok(None));
}

#[test]
fn single_small_piece_and_exact_multiple() {
    for len in [1, 100, METADATA_PIECE, 2 * METADATA_PIECE] {
        let bytes = info(len);
        let mut a = MetadataAssembler::new(hash(&bytes), len as u64).unwrap();
        let mut result = None;
        while let Some(p) = a.next_request() {
            result = a.on_data(p, metadata_piece(&bytes, p).unwrap().to_vec()).unwrap();
        }
        assert_eq!(result, Some(bytes), "{len}");
    }
}

#[test]
fn rejected_and_timed_out_pieces_are_asked_again() {
    let bytes = info(50_000);
    let mut a = MetadataAssembler::new(hash(&bytes), 50_000).unwrap();
    assert_eq!([a.next_request(), a.next_request()], [Some(0), Some(1)]);
    a.on_reject(0);
    assert_eq!(a.next_request(), Some(0));
    a.on_timeout(1);
    assert_eq!(a.next_request(), Some(1));
    // A timeout for a piece already received, or one that does not exist, changes nothing.
    a.on_data(0, metadata_piece(&bytes, 0).unwrap().to_vec()).unwrap();
    a.on_timeout(0);
    a.on_timeout(99);
    assert_eq!([a.next_request(), a.next_request(), a.next_request()], [Some(2), Some(3), None]);
}

#[test]
fn wrong_hash_resets_everything() {
    let bytes = info(20_000);
    let mut a = MetadataAssembler::new(hash(&bytes), 20_000).unwrap();
    let mut forged = metadata_piece(&bytes, 1).unwrap().to_vec();
    forged[0] ^= 1;
    assert_eq!([a.next_request(), a.next_request()], [Some(0), Some(1)]);
    a.on_data(0, metadata_piece(&bytes, 0).unwrap().to_vec()).unwrap();
    let mut tampered = bytes.clone();
    tampered[METADATA_PIECE] ^= 1;
    assert_eq!(a.on_data(1, forged), Err(MetadataError::HashMismatch { expected: hash(&bytes), got: hash(&tampered) }));
    // Every piece is wanted again, and honest data now completes it.
    assert_eq!([a.next_request(), a.next_request(), a.next_request()], [Some(0), Some(1), None]);
    a.on_data(1, metadata_piece(&bytes, 1).unwrap().to_vec()).unwrap();
    assert_eq!(a.on_data(0, metadata_piece(&bytes, 0).unwrap().to_vec()), Ok(Some(bytes)));
}

#[test]
fn wrong_piece_sizes_are_errors() {
    let bytes = info(40_000);
    let mut a = MetadataAssembler::new(hash(&bytes), 40_000).unwrap();
    assert_eq!(a.next_request(), Some(0));
    assert_eq!(a.on_data(0, vec![0; 16383]), Err(MetadataError::PieceSize { piece: 0, len: 16383, expected: 16384 }));
    // The short piece did not count, and it is wanted again.
    assert_eq!(a.next_request(), Some(0));
    for bad in [7231, 7233, 16384] {
        assert_eq!(a.on_data(2, vec![0; bad]), Err(MetadataError::PieceSize { piece: 2, len: bad, expected: 7232 }));
    }
    assert_eq!(a.on_data(3, vec![0; 1]), Err(MetadataError::NoSuchPiece { piece: 3, pieces: 3 }));
    assert_eq!(a.on_data(u32::MAX, vec![]), Err(MetadataError::NoSuchPiece { piece: u32::MAX, pieces: 3 }));
}

#[test]
fn implausible_sizes_are_refused() {
    let h = Id([1; 20]);
    assert_eq!(MetadataAssembler::new(h, 0).unwrap_err(), MetadataError::TotalSize(0));
    assert_eq!(
        MetadataAssembler::new(h, MAX_METADATA_SIZE + 1).unwrap_err(),
        MetadataError::TotalSize(MAX_METADATA_SIZE + 1)
    );
    assert_eq!(MetadataAssembler::new(h, u64::MAX).unwrap_err(), MetadataError::TotalSize(u64::MAX));
    assert_eq!(MetadataAssembler::new(h, MAX_METADATA_SIZE).unwrap().piece_count(), 1024);
}

#[test]
fn duplicate_pieces_are_ignored() {
    let bytes = info(20_000);
    let mut a = MetadataAssembler::new(hash(&bytes), 20_000).unwrap();
    a.on_data(0, metadata_piece(&bytes, 0).unwrap().to_vec()).unwrap();
    // A second copy, even a bad one, neither replaces the first nor fails.
    assert_eq!(a.on_data(0, vec![0; 3]), Ok(None));
    assert_eq!(a.on_data(1, metadata_piece(&bytes, 1).unwrap().to_vec()), Ok(Some(bytes)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn messages_round_trip(kind in 0..3, piece in any::<u32>(), total in 1..=MAX_METADATA_SIZE, data in proptest::collection::vec(any::<u8>(), 0..=METADATA_PIECE)) {
        let m = match kind {
            0 => MetadataMessage::Request { piece },
            1 => MetadataMessage::Data { piece, total_size: total, data },
            _ => MetadataMessage::Reject { piece },
        };
        prop_assert_eq!(MetadataMessage::decode(&encode(&m)), Ok(m));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = MetadataMessage::decode(&bytes);
    }

    #[test]
    fn any_size_in_any_order_completes(len in 1usize..120_000, seed in any::<u64>()) {
        let bytes = info(len);
        let mut a = MetadataAssembler::new(hash(&bytes), len as u64).unwrap();
        let mut order: Vec<u32> = std::iter::from_fn(|| a.next_request()).collect();
        // A cheap deterministic shuffle from the seed.
        let n = order.len();
        for i in 0..n {
            order.swap(i, (seed.wrapping_mul(i as u64 + 1) % n as u64) as usize);
        }
        let mut result = None;
        for p in order {
            prop_assert!(result.is_none());
            result = a.on_data(p, metadata_piece(&bytes, p).unwrap().to_vec()).unwrap();
        }
        prop_assert_eq!(result, Some(bytes));
    }
}
