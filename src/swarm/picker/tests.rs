//! The picker alone, in the manner of libtorrent's test_piece_picker.cpp: a torrent drawn as a
//! string of availabilities and a string of pieces we have, then one assertion per behaviour.

use super::*;

const A: PeerKey = PeerKey(1);
const B: PeerKey = PeerKey(2);
const C: PeerKey = PeerKey(3);
const D: PeerKey = PeerKey(4);

/// A bitfield from a picture: `*` is set, anything else clear ("**.*" has pieces 0, 1 and 3).
fn bits(s: &str) -> Bitfield {
    let mut b = Bitfield::new(s.len());
    for (i, c) in s.chars().enumerate() {
        if c == '*' {
            b.set(i);
        }
    }
    b
}

/// A torrent of two-block pieces, one per character of `availability`: piece `i` is held by as
/// many background peers as its digit says (`.` for none), and we have the pieces drawn `*` in
/// `have` (which may stop short: the rest are missing).
fn setup(availability: &str, have: &str, seed: u64) -> Picker {
    let n = availability.len();
    let have = bits(&format!("{have:.<n$}"));
    let mut p = Picker::new(n, 2 * BLOCK, n as u64 * 2 * u64::from(BLOCK), &have, seed).unwrap();
    for k in 0..9u32 {
        let held: String =
            availability.chars().map(|c| if c.to_digit(10).unwrap_or(0) > k { '*' } else { '.' }).collect();
        p.peer_has_bitfield(PeerKey(100 + u64::from(k)), &bits(&held)).unwrap();
    }
    p
}

fn block(index: u32, nth: u32) -> BlockRef {
    BlockRef { index, begin: nth * BLOCK, length: BLOCK }
}

/// The pieces of `blocks`, in order of first appearance.
fn pieces(blocks: &[BlockRef]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for b in blocks {
        if !out.contains(&b.index) {
            out.push(b.index);
        }
    }
    out
}

#[test]
fn rarest_first_picks_the_least_available_piece() {
    let mut p = setup("....3123", "****....", 1);
    assert_eq!(p.availability(5), 1);
    let picked = p.pick(A, &bits("********"), 8);
    assert_eq!(picked.len(), 8);
    assert_eq!(&picked[..4], &[block(5, 0), block(5, 1), block(6, 0), block(6, 1)]);
    let rest = pieces(&picked[4..]);
    assert!(rest == vec![4, 7] || rest == vec![7, 4], "{rest:?}");
}

#[test]
fn rarest_first_ties_are_broken_at_random() {
    let first: std::collections::BTreeSet<u32> =
        (0..20).map(|seed| setup("....1111", "****....", seed).pick(A, &bits("********"), 1)[0].index).collect();
    assert!(first.len() > 1, "every seed chose {first:?}");
    assert!(first.iter().all(|i| (4..8).contains(i)));
}

#[test]
fn random_first_picks_only_among_pieces_the_peer_has() {
    let mut chosen = std::collections::BTreeSet::new();
    for seed in 0..30 {
        let mut p = setup("1191911", "", seed);
        let picked = p.pick(A, &bits("*.*.*.."), 1);
        chosen.insert(picked[0].index);
    }
    assert!(chosen.iter().all(|i| [0, 2, 4].contains(i)), "{chosen:?}");
    // Rarest first would always take piece 0; random-first also takes the common ones.
    assert!(chosen.contains(&2) || chosen.contains(&4), "{chosen:?}");
}

#[test]
fn random_first_ends_after_enough_verified_pieces() {
    let mut three = std::collections::BTreeSet::new();
    for seed in 0..30 {
        three.insert(setup("000019999", "***......", seed).pick(A, &bits("*********"), 1)[0].index);
        // With four verified pieces the rarest one wins every time.
        assert_eq!(setup("000019999", "****.....", seed).pick(A, &bits("*********"), 1)[0].index, 4);
    }
    assert!(three.len() > 1, "{three:?}");
}

#[test]
fn partial_pieces_are_finished_first() {
    let mut p = setup("....1299", "****....", 1);
    // A only has the common piece 7 and starts it.
    assert_eq!(p.pick(A, &bits(".......*"), 1), vec![block(7, 0)]);
    // B has everything: the rest of piece 7 comes before the rarest new piece.
    assert_eq!(p.pick(B, &bits("********"), 3), vec![block(7, 1), block(4, 0), block(4, 1)]);
    assert_eq!(p.pieces_in_progress(), 2);
}

#[test]
fn endgame_duplicates_requests_and_cancels_the_others() {
    let mut p = setup("22", "", 1);
    let all = bits("**");
    assert_eq!(p.pick(A, &all, 3).len(), 3);
    assert!(!p.in_endgame(), "one block is still open");
    let last = p.pick(B, &all, 1);
    assert_eq!(last.len(), 1);
    assert!(p.in_endgame());
    // B asks for the three blocks A has; C for all four; D only for B's block, the one block
    // below the limit of three peers; after that nobody gets anything.
    let b_dups = p.pick(B, &all, 10);
    assert_eq!(b_dups.len(), 3);
    assert!(!b_dups.contains(&last[0]), "never the same block twice from one peer");
    assert_eq!(p.pick(C, &all, 10).len(), 4);
    assert_eq!(p.pick(D, &all, 10), last);
    assert!(p.pick(PeerKey(5), &all, 10).is_empty());

    let first = b_dups[0];
    let got = p.on_block(B, first).unwrap();
    assert_eq!(got.status, BlockStatus::Partial);
    assert_eq!(got.cancels, vec![(A, first), (C, first)]);
    let again = p.on_block(A, first).unwrap();
    assert_eq!(again, BlockOutcome { status: BlockStatus::Duplicate, cancels: vec![] });
    assert_eq!(p.contributors(first.index as usize), vec![B], "the first copy is the one kept");
}

#[test]
fn failed_verification_requeues_the_piece() {
    let mut p = setup("2", "", 1);
    let all = bits("*");
    assert_eq!(p.pick(A, &all, 1), vec![block(0, 0)]);
    assert_eq!(p.pick(B, &all, 1), vec![block(0, 1)]);
    assert_eq!(p.on_block(A, block(0, 0)).unwrap().status, BlockStatus::Partial);
    assert_eq!(p.on_block(B, block(0, 1)).unwrap().status, BlockStatus::PieceComplete(0));
    assert_eq!(p.contributors(0), vec![A, B]);

    assert_eq!(p.on_piece_verified(0, false), vec![A, B]);
    assert_eq!((p.hash_failures(A), p.hash_failures(B), p.hash_failures(C)), (1, 1, 0));
    assert!(!p.have().get(0));
    assert_eq!(p.pieces_in_progress(), 0, "a failed piece keeps no block state");
    assert_eq!(p.missing_pieces().collect::<Vec<_>>(), vec![0]);
    assert_eq!(p.pick(C, &all, 5), vec![block(0, 0), block(0, 1)]);

    p.on_block(C, block(0, 0)).unwrap();
    p.on_block(C, block(0, 1)).unwrap();
    assert!(p.on_piece_verified(0, true).is_empty());
    assert!(p.is_complete() && p.have().get(0));
    assert_eq!(p.missing_pieces().count(), 0);
    assert_eq!(p.on_block(C, block(0, 0)).unwrap().status, BlockStatus::Duplicate);
    assert!(p.pick(C, &all, 5).is_empty());
}

#[test]
fn out_of_range_indices_from_peers_are_ignored() {
    let mut p = setup("11", "", 1);
    assert_eq!(p.peer_has(A, 2), Err(PickerError::PieceOutOfRange { index: 2, piece_count: 2 }));
    assert!(p.peer_has(A, usize::MAX).is_err());
    assert_eq!(p.peer_has_bitfield(A, &bits("***")), Err(PickerError::BitfieldLength { got: 3, expected: 2 }));
    assert_eq!((p.availability(0), p.availability(1), p.availability(2)), (1, 1, 0));
    // A repeated `have` counts once.
    p.peer_has(A, 1).unwrap();
    p.peer_has(A, 1).unwrap();
    assert_eq!(p.availability(1), 2);

    for bad in [
        BlockRef { index: 2, begin: 0, length: BLOCK },
        BlockRef { index: u32::MAX, begin: 0, length: BLOCK },
        BlockRef { index: 0, begin: 100, length: BLOCK },
        BlockRef { index: 0, begin: 2 * BLOCK, length: BLOCK },
        BlockRef { index: 0, begin: u32::MAX, length: 1 },
        BlockRef { index: 0, begin: 0, length: 100 },
    ] {
        assert!(p.on_block(A, bad).is_err(), "{bad:?}");
        p.on_rejected(A, bad);
        p.on_request_timeout(A, bad);
    }
    assert!(p.on_piece_verified(7, true).is_empty());
    assert_eq!(p.pieces_in_progress(), 0);
    // A bitfield longer than the torrent only offers the pieces that exist.
    let picked = p.pick(A, &bits("*****"), 10);
    assert_eq!(pieces(&picked).len(), 2);
}

#[test]
fn peer_left_releases_its_blocks_and_availability() {
    let mut p = setup("2", "", 1);
    p.peer_has_bitfield(A, &bits("*")).unwrap();
    assert_eq!(p.availability(0), 3);
    assert_eq!(p.pick(A, &bits("*"), 2).len(), 2);
    p.on_block(A, block(0, 0)).unwrap();
    assert!(p.in_endgame());

    p.peer_left(A);
    assert_eq!(p.availability(0), 2);
    assert!(!p.in_endgame());
    // The undelivered block is free for B; the delivered one stays A's.
    assert_eq!(p.pick(B, &bits("*"), 2), vec![block(0, 1)]);
    assert_eq!(p.contributors(0), vec![A]);
}

#[test]
fn timeouts_and_rejects_release_only_the_requesting_peer() {
    let mut p = setup("2", "", 1);
    let all = bits("*");
    assert_eq!(p.pick(A, &all, 1), vec![block(0, 0)]);
    p.on_request_timeout(A, block(0, 0));
    assert_eq!(p.pieces_in_progress(), 0, "an untouched piece drops its block state");
    assert_eq!(p.pick(B, &all, 1), vec![block(0, 0)]);
    // A reject from a peer that never had the block changes nothing.
    p.on_rejected(A, block(0, 0));
    assert_eq!(p.pick(C, &all, 1), vec![block(0, 1)]);
    p.on_rejected(C, block(0, 1));
    assert_eq!(p.pick(D, &all, 1), vec![block(0, 1)]);
}

#[test]
fn a_late_block_after_a_timeout_is_kept_and_cancels_the_new_request() {
    let mut p = setup("2", "", 1);
    let all = bits("*");
    p.pick(A, &all, 1);
    p.on_request_timeout(A, block(0, 0));
    assert_eq!(p.pick(B, &all, 1), vec![block(0, 0)]);
    let late = p.on_block(A, block(0, 0)).unwrap();
    assert_eq!(late, BlockOutcome { status: BlockStatus::Partial, cancels: vec![(B, block(0, 0))] });
    assert_eq!(p.contributors(0), vec![A]);
}

#[test]
fn last_piece_is_shorter_with_a_short_last_block() {
    let piece_length = 4 * BLOCK;
    let total = 2 * u64::from(piece_length) + u64::from(BLOCK) + 100;
    let mut p = Picker::new(3, piece_length, total, &Bitfield::new(3), 1).unwrap();
    let picked = p.pick(A, &bits("..*"), 10);
    assert_eq!(picked, vec![block(2, 0), BlockRef { index: 2, begin: BLOCK, length: 100 }]);
    let full_length = BlockRef { index: 2, begin: BLOCK, length: BLOCK };
    assert_eq!(p.on_block(A, full_length), Err(PickerError::BadBlock { block: full_length }));
    p.on_block(A, picked[0]).unwrap();
    assert_eq!(p.on_block(A, picked[1]).unwrap().status, BlockStatus::PieceComplete(2));
    // Other pieces are full size.
    assert_eq!(p.pick(A, &bits("*.."), 10).len(), 4);

    // A piece length that is not a multiple of the block size ends each piece in a short block.
    let mut odd = Picker::new(2, BLOCK + 5, 2 * u64::from(BLOCK + 5), &Bitfield::new(2), 1).unwrap();
    assert_eq!(odd.pick(A, &bits("*."), 10), vec![block(0, 0), BlockRef { index: 0, begin: BLOCK, length: 5 }]);
}

#[test]
fn inconsistent_geometry_is_refused() {
    let none = Bitfield::new(3);
    assert!(Picker::new(3, BLOCK, 2 * u64::from(BLOCK), &none, 1).is_err(), "too many pieces");
    assert!(Picker::new(3, BLOCK, 4 * u64::from(BLOCK), &none, 1).is_err(), "too few pieces");
    assert!(Picker::new(3, 0, 3, &none, 1).is_err());
    assert!(Picker::new(0, BLOCK, 0, &Bitfield::new(0), 1).is_err());
    assert_eq!(
        Picker::new(3, BLOCK, 3 * u64::from(BLOCK), &Bitfield::new(4), 1).err(),
        Some(PickerError::BitfieldLength { got: 4, expected: 3 })
    );
    assert!(Picker::new(3, BLOCK, 3 * u64::from(BLOCK) - 1, &none, 1).is_ok());
}

#[test]
fn block_state_lives_only_while_a_piece_is_in_progress() {
    let mut p = setup("2222", "", 1);
    assert_eq!(p.pieces_in_progress(), 0);
    assert_eq!(p.pick(A, &bits("****"), 4).len(), 4);
    assert_eq!(p.pieces_in_progress(), 2);
    // Nothing arrived: both pieces are untouched again and keep no per-block state.
    p.peer_left(A);
    assert_eq!(p.pieces_in_progress(), 0);
}
