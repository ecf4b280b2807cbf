// Tests use a fixed clock origin: the policy only compares instants it is given.
#![allow(clippy::disallowed_methods)]

use super::*;
use crate::id::Id;

const A: PeerKey = PeerKey(1);
const B: PeerKey = PeerKey(2);
const C: PeerKey = PeerKey(3);

/// `len` bytes standing for an info dictionary (the policy never parses it), and its hash.
fn metadata(len: usize) -> (Vec<u8>, InfoHash) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    (bytes.clone(), Id(sha1(&bytes)))
}

fn piece(info: &[u8], p: u32) -> Vec<u8> {
    let start = p as usize * METADATA_PIECE;
    info[start..info.len().min(start + METADATA_PIECE)].to_vec()
}

/// Asks `peer` for everything it may be asked and answers with the true pieces until the
/// metadata completes or it is asked nothing more.
fn serve_honestly(f: &mut MetadataFetch, peer: PeerKey, info: &[u8], now: Instant) -> Option<Vec<u8>> {
    for _ in 0..64 {
        let p = f.next_request(peer, now)?;
        if let Some(done) = f.on_data(peer, p, info.len() as u64, piece(info, p)).unwrap() {
            return Some(done);
        }
    }
    None
}

#[test]
fn a_liar_about_the_size_is_outvoted_and_never_asked() {
    let (info, hash) = metadata(40_000);
    let now = Instant::now();
    let mut f = MetadataFetch::new(hash);
    f.on_size(A, 99_999).unwrap();
    assert_eq!(f.planned_size(), Some(99_999), "the only vote decides");
    f.on_size(B, 40_000).unwrap();
    assert_eq!(f.planned_size(), Some(99_999), "a tie keeps the current plan");
    f.on_size(C, 40_000).unwrap();
    assert_eq!(f.planned_size(), Some(40_000), "two honest votes beat one liar");
    assert_eq!(f.next_request(A, now), None, "the liar voted for another size");
    let got = serve_honestly(&mut f, B, &info, now).or_else(|| serve_honestly(&mut f, C, &info, now));
    assert_eq!(got.as_deref(), Some(&info[..]));
    assert!(f.take_banned().is_empty(), "nobody sent a bad piece");
}

#[test]
fn a_size_liar_that_rejects_gives_way_to_the_honest_size_on_a_tie() {
    let (info, hash) = metadata(5_000);
    let now = Instant::now();
    let mut f = MetadataFetch::new(hash);
    f.on_size(A, 20_000).unwrap();
    f.on_size(B, 5_000).unwrap();
    let p = f.next_request(A, now).unwrap();
    f.on_reject(A, p);
    assert_eq!(f.planned_size(), Some(5_000), "a voter that cannot serve its size loses its vote");
    assert_eq!(serve_honestly(&mut f, B, &info, now).as_deref(), Some(&info[..]));
    assert!(f.take_banned().is_empty(), "rejecting is not lying");
}

#[test]
fn a_wrong_sized_piece_blames_its_sender_alone_and_frees_its_slots() {
    let (info, hash) = metadata(40_000);
    let now = Instant::now();
    let mut f = MetadataFetch::new(hash);
    f.on_size(A, 40_000).unwrap();
    f.on_size(B, 40_000).unwrap();
    assert_eq!(f.next_request(A, now), Some(0));
    assert_eq!(f.next_request(A, now), Some(1));
    assert_eq!(f.next_request(A, now), None, "at most {IN_FLIGHT_PER_PEER} in flight per peer");
    assert_eq!(f.next_request(B, now), Some(2));
    assert_eq!(f.on_data(B, 2, 40_000, piece(&info, 2)).unwrap(), None);
    let err = f.on_data(A, 0, 40_000, vec![0; 100]).unwrap_err();
    assert!(matches!(err, MetadataError::PieceSize { piece: 0, len: 100, .. }), "{err}");
    assert_eq!(f.take_banned(), vec![A]);
    // A's other request (piece 1) is released too; B's piece 2 is kept.
    assert_eq!(f.on_data(A, 1, 40_000, piece(&info, 1)).unwrap(), None, "the liar's late answer is ignored");
    assert_eq!(serve_honestly(&mut f, B, &info, now).as_deref(), Some(&info[..]));
    assert!(f.take_banned().is_empty(), "the honest peer is not blamed");
}

#[test]
fn a_piece_announcing_another_total_size_is_blamed() {
    let (info, hash) = metadata(5_000);
    let now = Instant::now();
    let mut f = MetadataFetch::new(hash);
    f.on_size(A, 5_000).unwrap();
    f.on_size(B, 5_000).unwrap();
    let p = f.next_request(A, now).unwrap();
    assert!(f.on_data(A, p, 6_000, piece(&info, p)).is_err());
    assert_eq!(f.take_banned(), vec![A]);
    assert_eq!(serve_honestly(&mut f, B, &info, now).as_deref(), Some(&info[..]));
}

/// Three senders, one piece each; B's is garbage of the right length. The whole fails its
/// hash; one peer fetches everything again, and B alone is proven wrong.
fn mismatch_round(first_single: PeerKey) -> (MetadataFetch, Vec<u8>) {
    let (info, hash) = metadata(40_000);
    let now = Instant::now();
    let mut f = MetadataFetch::new(hash);
    for k in [A, B, C] {
        f.on_size(k, 40_000).unwrap();
    }
    assert_eq!(f.next_request(A, now), Some(0));
    assert_eq!(f.next_request(B, now), Some(1));
    assert_eq!(f.next_request(C, now), Some(2));
    f.on_data(A, 0, 40_000, piece(&info, 0)).unwrap();
    f.on_data(B, 1, 40_000, vec![0xa5; METADATA_PIECE]).unwrap();
    let err = f.on_data(C, 2, 40_000, piece(&info, 2)).unwrap_err();
    assert!(matches!(err, MetadataError::HashMismatch { .. }), "{err}");
    assert!(f.take_banned().is_empty(), "a mismatch alone proves nobody wrong");
    // From now on one peer at a time.
    assert!(f.next_request(first_single, now).is_some());
    for k in [A, B, C].into_iter().filter(|k| *k != first_single) {
        assert_eq!(f.next_request(k, now), None, "only the single source is asked");
    }
    (f, info)
}

#[test]
fn a_hash_mismatch_is_refetched_from_one_honest_peer_and_only_the_liar_is_banned() {
    let (mut f, info) = mismatch_round(A);
    let now = Instant::now();
    // next_request above already asked A for piece 0.
    let mut got = f.on_data(A, 0, 40_000, piece(&info, 0)).unwrap();
    if got.is_none() {
        got = serve_honestly(&mut f, A, &info, now);
    }
    assert_eq!(got.as_deref(), Some(&info[..]));
    assert_eq!(f.take_banned(), vec![B], "exactly the sender of the bad piece");
}

#[test]
fn a_liar_chosen_as_the_single_source_convicts_itself_and_the_next_peer_completes() {
    let (mut f, info) = mismatch_round(B);
    let now = Instant::now();
    // B answers everything with garbage of the right lengths.
    for _ in 0..8 {
        let Some(p) = f.next_request(B, now) else { break };
        let len = piece(&info, p).len();
        let _ = f.on_data(B, p, 40_000, vec![0xa5; len]);
    }
    // Its first request (piece 0, asked in mismatch_round) is answered last.
    let _ = f.on_data(B, 0, 40_000, vec![0xa5; METADATA_PIECE]);
    assert_eq!(f.take_banned(), vec![B], "its own single-source fetch failed");
    assert_eq!(serve_honestly(&mut f, C, &info, now).as_deref(), Some(&info[..]));
    assert!(f.take_banned().is_empty(), "B is banned once; A and C never");
}

#[test]
fn timeouts_release_requests_and_unasked_data_is_ignored() {
    let (info, hash) = metadata(5_000);
    let now = Instant::now();
    let mut f = MetadataFetch::new(hash);
    f.on_size(A, 5_000).unwrap();
    f.on_size(B, 5_000).unwrap();
    assert_eq!(f.next_request(A, now), Some(0));
    assert_eq!(f.on_data(B, 0, 5_000, vec![1; 5_000]).unwrap(), None, "B was not asked");
    assert!(f.take_banned().is_empty());
    f.on_timer(now + REQUEST_TIMEOUT);
    assert_eq!(f.next_request(A, now), None, "a stalled peer waits while others can be asked");
    assert_eq!(serve_honestly(&mut f, B, &info, now + REQUEST_TIMEOUT).as_deref(), Some(&info[..]));
}

#[test]
fn unusable_sizes_are_refused_and_peers_leaving_free_their_slots() {
    let (info, hash) = metadata(5_000);
    let now = Instant::now();
    let mut f = MetadataFetch::new(hash);
    assert!(f.on_size(A, 0).is_err());
    assert!(f.on_size(A, MAX_METADATA_SIZE + 1).is_err());
    assert_eq!(f.planned_size(), None);
    f.on_size(A, 5_000).unwrap();
    f.on_size(B, 5_000).unwrap();
    assert_eq!(f.next_request(A, now), Some(0));
    f.peer_left(A);
    assert_eq!(serve_honestly(&mut f, B, &info, now).as_deref(), Some(&info[..]));
}

/// A Sybil crowd announcing a wrong size: the vote table stops at `MAX_VOTERS` (votes past it
/// are ignored, not errors), the crowd cannot be outvoted by the late honest peers then, but a
/// voter that leaves frees its seat for one that comes after.
#[test]
fn the_vote_table_stops_at_its_cap() {
    let (_, hash) = metadata(5_000);
    let mut f = MetadataFetch::new(hash);
    for i in 0..MAX_VOTERS as u64 {
        f.on_size(PeerKey(100 + i), 20_000).unwrap();
    }
    assert_eq!(f.voters.len(), MAX_VOTERS);
    for i in 0..10 {
        f.on_size(PeerKey(1_000_000 + i), 5_000).unwrap();
    }
    assert_eq!(f.voters.len(), MAX_VOTERS, "votes past the cap are not kept");
    assert_eq!(f.planned_size(), Some(20_000));
    f.peer_left(PeerKey(100));
    f.on_size(A, 5_000).unwrap();
    assert_eq!(f.voters.len(), MAX_VOTERS);
    assert_eq!(f.voters.get(&A).map(|v| v.size), Some(5_000), "a freed seat takes a new vote");
}
