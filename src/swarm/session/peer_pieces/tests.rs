//! The interest count of one peer: O(1) per `have`, and always what a full recount finds.

use super::*;

const PIECES: usize = 10_000;

/// A seeder (we have every piece) and a peer that announces its pieces one `have` at a time:
/// each `have` used to cost a pass over the peer's bitfield, now none does.
#[test]
fn a_stream_of_haves_to_a_seeder_scans_nothing() {
    let mut p = PeerPieces::new(Bitfield::full(PIECES));
    p.set_theirs(Bitfield::new(PIECES));
    for round in 0..3 {
        for i in 0..PIECES {
            // What the task does per `have`: record it, then decide interest.
            assert_eq!(p.their_have(i), round == 0);
            assert!(!p.interesting());
        }
    }
    assert_eq!(p.scans(), 1, "only the bitfield message is a pass over the pieces");
    assert_eq!(p.recount(), 0);
}

/// Their haves, their bitfields and ours, in every interleaving a task can see (including our
/// `have` arriving for a piece already in the snapshot): the count matches a recount.
#[test]
fn the_count_matches_a_full_recount() {
    let n = 37;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let random_bits = |next: &mut dyn FnMut() -> u64| {
        let mut b = Bitfield::new(n);
        for k in 0..n {
            if next().is_multiple_of(2) {
                b.set(k);
            }
        }
        b
    };
    let mut p = PeerPieces::new(random_bits(&mut next));
    for step in 0..5_000u32 {
        // A fresh connection now and then, or our pieces would soon all be set.
        if step.is_multiple_of(200) {
            p = PeerPieces::new(random_bits(&mut next));
        }
        let i = (next() % (n as u64 + 2)) as usize; // a few out of range too
        match next() % 16 {
            0 => p.set_theirs(random_bits(&mut next)),
            1..=12 => {
                p.their_have(i);
            }
            _ => p.our_have(i),
        }
        assert_eq!(p.interesting(), p.recount() > 0, "step {step}");
        assert_eq!(p.wanted, p.recount(), "step {step}");
    }
}
