//! Seeding: reads no further ahead of the peer's socket than the high-water mark, and
//! requests that are invalid or for pieces we lack cost the peer its connection.

use super::*;
use crate::swarm::session::limits::WRITE_HIGH_WATER;

/// An unchoked leecher of a complete torrent of `pieces` pieces.
fn leecher(pieces: usize) -> (Harness, PeerKey) {
    let all: Vec<usize> = (0..pieces).collect();
    let mut h = Harness::installed(pieces, &all);
    let key = h.join(1);
    h.msg(key, Message::Interested);
    let d = h.drain();
    assert!(d.to(key).contains(&&Message::Unchoke), "a free slot unchokes at once");
    (h, key)
}

fn answer_reads(h: &mut Harness, reads: &[(PeerKey, BlockRef)]) {
    for (key, block) in reads {
        let Message::Piece { data, .. } = h.block(*block, true) else { unreachable!() };
        h.core.handle(h.now, Input::BlockRead { key: *key, block: *block, result: Ok(data) });
    }
}

#[test]
fn reads_stop_at_the_high_water_mark_until_the_socket_takes_bytes() {
    let (mut h, key) = leecher(100);
    for i in 0..100u32 {
        for n in 0..2 {
            h.msg(key, Message::Request(BlockRef { index: i, begin: n * BLOCK, length: BLOCK }));
        }
    }
    let reads = h.drain().reads();
    let cap = WRITE_HIGH_WATER / BLOCK as usize;
    assert_eq!(reads.len(), cap, "a megabyte read ahead, no more");
    answer_reads(&mut h, &reads);
    let d = h.drain();
    let pieces = d.to(key).iter().filter(|m| matches!(m, Message::Piece { .. })).count();
    assert_eq!(pieces, cap);
    assert!(d.reads().is_empty(), "nothing more read while the peer's socket takes nothing");
    assert_eq!(h.core.counters().uploaded, (cap * BLOCK as usize) as u64);
    // Its socket takes one block's worth: one more block is read.
    h.core.handle(h.now, Input::Written { key, bytes: BLOCK as usize + 13 });
    assert_eq!(h.drain().reads().len(), 1);
}

#[test]
fn a_request_outside_the_torrent_or_for_a_piece_we_lack_drops_the_peer() {
    let (mut h, key) = leecher(2);
    h.msg(key, Message::Request(BlockRef { index: 0, begin: PIECE as u32 - 100, length: 200 }));
    assert!(matches!(h.drain().closed()[..], [(k, CloseReason::Protocol(_))] if k == key));

    let mut h = Harness::installed(2, &[0]);
    let key = h.join(1);
    h.msg(key, Message::Interested);
    h.msg(key, Message::Request(BlockRef { index: 1, begin: 0, length: BLOCK }));
    let d = h.drain();
    assert!(matches!(&d.closed()[..], [(k, CloseReason::Protocol(e))] if *k == key && e.contains("do not have")));
    assert!(d.reads().is_empty());
}

#[test]
fn a_block_read_for_a_peer_that_left_is_dropped() {
    let (mut h, key) = leecher(1);
    h.msg(key, Message::Request(BlockRef { index: 0, begin: 0, length: BLOCK }));
    let reads = h.drain().reads();
    h.core.handle(h.now, Input::PeerGone { key });
    answer_reads(&mut h, &reads);
    assert!(h.drain().sent.is_empty());
    assert_eq!(h.core.counters().uploaded, 0);
}
