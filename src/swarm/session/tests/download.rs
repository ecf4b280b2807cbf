//! Downloading: parole, smart ban and bans after repeated failures, endgame cancels, request
//! timeouts, our `have`s, and a disk error stopping the torrent.

use super::*;

/// Delivers every block `key` was asked for in `d`, good or not.
fn answer(h: &mut Harness, key: PeerKey, d: &Drained, good: bool) {
    for b in d.requests(key) {
        let m = h.block(b, good);
        h.msg(key, m);
    }
}

/// The hash result the disk thread would give for `index`, the blocks as sent.
fn hashed(h: &mut Harness, index: u32, ok: bool, blocks: &[(BlockRef, bool)]) {
    let blocks = blocks.iter().map(|(b, good)| (*b, h.block_hash(*b, *good))).collect();
    h.core.handle(h.now, Input::PieceHashed { index, ok, blocks });
}

fn b(index: u32, n: u32) -> BlockRef {
    BlockRef { index, begin: n * BLOCK, length: BLOCK }
}

#[test]
fn a_sole_source_failing_twice_is_banned_its_neighbour_is_not() {
    let mut h = Harness::installed(1, &[]);
    let liar = h.seeder(1);
    let honest = h.join(2);
    let d = h.drain();
    assert_eq!(d.requests(liar), vec![b(0, 0), b(0, 1)]);
    answer(&mut h, liar, &d, false);
    let d = h.drain();
    assert_eq!(d.writes(), 2);
    assert_eq!(d.hashes(), vec![(0, false)]);
    hashed(&mut h, 0, false, &[(b(0, 0), false), (b(0, 1), true)]);
    let d = h.drain();
    assert!(d.events().contains(&&TorrentEvent::PieceFailed(0)));
    assert!(d.closed().is_empty(), "one failure bans nobody");
    // On parole: fetched again from the same peer alone, and wrong again.
    assert_eq!(d.requests(liar), vec![b(0, 0), b(0, 1)]);
    answer(&mut h, liar, &d, false);
    h.drain();
    hashed(&mut h, 0, false, &[(b(0, 0), false), (b(0, 1), true)]);
    let d = h.drain();
    assert_eq!(d.closed(), vec![(liar, &CloseReason::Closed)]);
    assert!(d.events().contains(&&TorrentEvent::PeerBanned(Harness::addr(1).ip())));
    assert!(h.core.banned().contains(&Harness::addr(1).ip()));
    assert!(!h.core.banned().contains(&Harness::addr(2).ip()));
    assert_eq!(h.core.counters().hash_failures, 2);
    let again = Hello {
        addr: Harness::addr(1),
        origin: PeerOrigin::default(),
        peer_id: [0; 20],
        supports_ext: true,
        supports_dht: false,
    };
    assert_eq!(h.core.connect(h.now, again), Err(Refused::Banned));
    assert!(h.core.peers.contains_key(&honest));
}

#[test]
fn smart_ban_blames_only_the_sender_of_the_differing_block() {
    let mut h = Harness::with_config(1, |c| c.ban_after_failures = 1);
    h.install(&[]);
    let a = h.seeder(1);
    h.drain();
    let block0 = h.block(b(0, 0), true);
    h.msg(a, block0);
    // A chokes us: its other request goes back to the picker, and B gets it.
    h.msg(a, Message::Choke);
    let liar = h.seeder(2);
    let d = h.drain();
    assert_eq!(d.requests(liar), vec![b(0, 1)]);
    answer(&mut h, liar, &d, false);
    let d = h.drain();
    assert_eq!(d.hashes(), vec![(0, false)]);
    hashed(&mut h, 0, false, &[(b(0, 0), true), (b(0, 1), false)]);
    let d = h.drain();
    assert!(d.closed().is_empty(), "two senders: nobody is proven yet");
    // Fetched again, from the one peer that unchokes us; this time it is right, and the
    // evidence kept from the failure names the block that differed.
    let again = d.requests(liar);
    assert_eq!(again, vec![b(0, 0), b(0, 1)]);
    answer(&mut h, liar, &d, true);
    let d = h.drain();
    assert_eq!(d.hashes(), vec![(0, true)], "block hashes are wanted to compare with the evidence");
    hashed(&mut h, 0, true, &[(b(0, 0), true), (b(0, 1), true)]);
    let d = h.drain();
    assert!(d.events().contains(&&TorrentEvent::PieceVerified(0)));
    assert!(d.events().contains(&&TorrentEvent::PeerBanned(Harness::addr(2).ip())));
    assert_eq!(d.closed(), vec![(liar, &CloseReason::Closed)]);
    assert!(!h.core.banned().contains(&Harness::addr(1).ip()), "the honest neighbour is kept");
}

#[test]
fn parole_keeps_a_failed_piece_with_one_peer_until_it_times_out() {
    let mut h = Harness::installed(2, &[]);
    let a = h.seeder(1);
    let d = h.drain();
    let first: Vec<BlockRef> = d.requests(a);
    assert_eq!(first.len(), 4, "both pieces asked from A");
    answer(&mut h, a, &d, false);
    h.drain();
    for piece in 0..2 {
        hashed(&mut h, piece, false, &[(b(piece, 0), false), (b(piece, 1), false)]);
    }
    let d = h.drain();
    // Both failed pieces are A's to fetch again (it is first to ask).
    assert_eq!(d.requests(a).len(), 4);
    // B arrives: nothing on parole is handed to it while A holds it.
    let other = h.seeder(2);
    let d = h.drain();
    assert_eq!(d.requests(other), vec![], "B may not fetch what A holds on parole");
    // A sits on them past PAROLE_TIME: B may take them over (its next pump is its timer).
    h.advance(download_parole() + Duration::from_millis(1));
    let d = h.drain();
    assert!(!d.requests(other).is_empty(), "after the parole time B takes the pieces over");
}

fn download_parole() -> Duration {
    super::super::download::PAROLE_TIME
}

#[test]
fn endgame_cancels_the_duplicate_request_when_a_block_arrives() {
    let mut h = Harness::installed(1, &[]);
    let a = h.seeder(1);
    let other = h.seeder(2);
    let d = h.drain();
    assert_eq!(d.requests(a), vec![b(0, 0), b(0, 1)]);
    assert_eq!(d.requests(other).len(), 2, "endgame: the last blocks asked from B too");
    let m = h.block(b(0, 0), true);
    h.msg(a, m);
    let d = h.drain();
    assert_eq!(d.to(other), vec![&Message::Cancel(b(0, 0))]);
    // B's late copy is a duplicate: never written.
    let m = h.block(b(0, 0), true);
    h.msg(other, m);
    assert_eq!(h.drain().writes(), 0);
}

#[test]
fn requests_left_unanswered_are_given_back_after_the_request_timeout() {
    let mut h = Harness::installed(8, &[]);
    // A has pieces 0 and 1 only: once their four blocks are asked, it has nothing more to
    // give unless the picker takes them back from it.
    let a = h.join(1);
    h.msg(a, Message::Bitfield(vec![0b1100_0000]));
    h.msg(a, Message::Unchoke);
    let d = h.drain();
    let mut asked = d.requests(a);
    asked.sort();
    assert_eq!(asked, vec![b(0, 0), b(0, 1), b(1, 0), b(1, 1)]);
    let timeout = h.core.config().peer.request_timeout;
    h.advance(timeout - Duration::from_secs(1));
    assert!(h.drain().requests(a).is_empty(), "nothing asked again before the timeout");
    h.advance(Duration::from_secs(2));
    let mut again = h.drain().requests(a);
    again.sort();
    assert_eq!(again, asked, "the timed-out blocks are free to ask again");
}

#[test]
fn a_verified_piece_is_announced_to_every_peer_and_completes_the_torrent() {
    let mut h = Harness::installed(2, &[1]);
    let a = h.seeder(1);
    let leecher = h.join(2);
    let d = h.drain();
    // Our bitfield greets every peer.
    assert!(d.to(leecher).contains(&&Message::Bitfield(vec![0b0100_0000])));
    answer(&mut h, a, &d, true);
    h.drain();
    hashed(&mut h, 0, true, &[]);
    let d = h.drain();
    assert!(d.to(a).contains(&&Message::Have(0)));
    assert!(d.to(leecher).contains(&&Message::Have(0)));
    assert!(d.to(a).contains(&&Message::NotInterested), "nothing left to want from A");
    let events = d.events();
    assert!(events.contains(&&TorrentEvent::PieceVerified(0)));
    assert!(events.contains(&&TorrentEvent::Complete));
    assert!(h.core.is_complete());
    assert_eq!(h.core.progress(), Some((2 * PIECE as u64, 2 * PIECE as u64)));
    assert_eq!(h.core.counters().fetched_pieces, 1);
}

#[test]
fn a_disk_error_stops_the_torrent_once_and_keeps_what_was_verified() {
    let mut h = Harness::installed(4, &[0]);
    let a = h.seeder(1);
    let other = h.seeder(2);
    let d = h.drain();
    answer(&mut h, a, &d, true);
    let d = h.drain();
    assert!(d.writes() > 0);
    let fault =
        DiskFault { what: "writing /x".into(), kind: Some(std::io::ErrorKind::StorageFull), reason: "full".into() };
    let block = b(1, 0);
    h.core.handle(h.now, Input::WriteFailed { block, fault: fault.clone() });
    h.core.handle(h.now, Input::WriteFailed { block, fault: fault.clone() });
    let d = h.drain();
    let failed: Vec<_> = d.events().into_iter().filter(|e| matches!(e, TorrentEvent::Failed(_))).collect();
    assert_eq!(failed, vec![&TorrentEvent::Failed(fault.clone())], "reported once");
    let mut closed = d.closed();
    closed.sort_by_key(|(k, _)| *k);
    assert_eq!(closed, vec![(a, &CloseReason::Closed), (other, &CloseReason::Closed)]);
    assert_eq!(h.core.fault(), Some(&fault));
    assert!(h.core.have().unwrap().get(0), "a verified piece is not lost");
    assert!(h.core.banned().is_empty(), "no peer is blamed for our disk");
    let hello = Hello {
        addr: Harness::addr(3),
        origin: PeerOrigin::default(),
        peer_id: [0; 20],
        supports_ext: true,
        supports_dht: false,
    };
    assert_eq!(h.core.connect(h.now, hello), Err(Refused::Stopped));
    // A hash that was under way proves nothing now.
    hashed(&mut h, 1, false, &[]);
    assert!(h.drain().events().is_empty());
    assert_eq!(h.core.counters().hash_failures, 0);
}

/// An attacker with a whole IPv6 prefix, sending one bad block from each of its addresses:
/// the strike, proof and ban tables stop at `MAX_OFFENDERS`, and a new offender still gets
/// its strike once the one-off strikes of addresses long gone are let go.
#[test]
fn the_ban_tables_stop_at_their_cap() {
    use super::super::limits::MAX_OFFENDERS;
    let mut h = Harness::installed(4, &[]);
    let ip = |n: usize| {
        std::net::IpAddr::from(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (n >> 16) as u16, n as u16))
    };
    let n = MAX_OFFENDERS + 500;
    for i in 0..n {
        h.core.strike(Vec::new(), vec![ip(i)]);
    }
    assert!(h.core.strikes.len() <= MAX_OFFENDERS, "{} strikes kept", h.core.strikes.len());
    assert!(h.core.strikes.contains_key(&ip(n - 1)), "the newest offender is still counted");
    for i in 0..n {
        h.core.strike(vec![ip(i)], vec![ip(i), ip(i)]);
    }
    assert!(h.core.proven.len() <= MAX_OFFENDERS, "{} proven kept", h.core.proven.len());
    assert!(h.core.banned.len() <= MAX_OFFENDERS, "{} banned kept", h.core.banned.len());
    assert!(!h.core.banned.is_empty());
}
