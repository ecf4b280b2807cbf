//! PropShare's free-rider rules alone ([`super::reciprocity`] while leeching, [`super::spread`]
//! while seeding): traffic, interest and unchokes fed by hand, no sockets.

use super::*;

fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// A PropShare leecher with peers `1..=n`, all interested in us and we in them.
fn leecher(n: u64, t: Instant) -> Choker {
    let config = ChokerConfig { kind: ChokerKind::PropShare, ..ChokerConfig::default() };
    let mut c = Choker::new(config, 7);
    for k in 1..=n {
        c.peer_connected(t, PeerKey(k));
        c.set_interested(PeerKey(k), true);
        c.we_are_interested(PeerKey(k), true);
    }
    c
}

/// [`leecher`] with peers 1 and 2 after its first round: peer 1 gave, so peer 2 holds the
/// optimistic unchoke (returned).
fn leecher_with_optimistic(t: Instant) -> (Choker, PeerKey) {
    let mut c = leecher(2, t);
    c.on_downloaded(PeerKey(1), t, 50_000);
    c.tick(t);
    let opt = c.optimistic().expect("an optimistic peer");
    (c, opt)
}

/// Sends `peer` blocks of 16 KiB until it is choked or `limit` bytes went; returns the bytes.
fn feed(c: &mut Choker, peer: PeerKey, t: Instant, limit: u64) -> u64 {
    let mut sent = 0;
    while c.is_unchoked(peer) && sent < limit {
        c.on_uploaded(peer, t, 16_384);
        sent += 16_384;
    }
    sent
}

#[test]
fn a_peer_that_keeps_us_choked_loses_the_optimistic_unchoke_after_one_trial() {
    let t = t0();
    let mut c = leecher(3, t);
    c.on_downloaded(PeerKey(1), t, 50_000);
    c.tick(t);
    c.take_changes();
    let thief = c.optimistic().expect("an optimistic peer");
    assert_ne!(thief, PeerKey(1));
    let sent = feed(&mut c, thief, t, 10 << 20);
    assert_eq!(sent, MIN_TRIAL_BYTES, "the trial is two blocks at this rate");
    assert!(c.refused(thief) && !c.is_unchoked(thief));
    // The optimistic share moved on at once, to the one peer left.
    let other = PeerKey(5 - thief.0);
    assert_eq!(c.optimistic(), Some(other));
    let changes = c.take_changes();
    assert_eq!(
        changes,
        vec![ChokeDecision { peer: thief, unchoke: false }, ChokeDecision { peer: other, unchoke: true }]
    );
    // And the refuser is not drawn again while it gives nothing, over many rounds.
    for round in 1..=20u32 {
        c.on_downloaded(PeerKey(1), t, 50_000);
        c.tick(t + Duration::from_secs(10 * u64::from(round)));
        assert!(!c.is_unchoked(thief), "round {round}");
    }
}

#[test]
fn an_honest_peer_unchokes_us_within_its_trial_and_keeps_the_gift() {
    let t = t0();
    let (mut c, opt) = leecher_with_optimistic(t);
    c.on_uploaded(opt, t, 16_384);
    c.peer_unchoked_us(opt, true);
    assert_eq!(feed(&mut c, opt, t, 1 << 20), 1 << 20, "no trial once it has unchoked us");
    assert!(!c.refused(opt) && c.is_unchoked(opt));
}

#[test]
fn a_choked_peer_that_sends_data_is_unchoked_at_once_with_a_share() {
    let t = t0();
    let mut c = leecher(7, t);
    for k in 1..=5 {
        c.on_downloaded(PeerKey(k), t, 10_000);
    }
    c.tick(t);
    c.take_changes();
    let waiting = (6..=7).map(PeerKey).find(|k| !c.is_unchoked(*k)).expect("one of 6, 7 is choked");
    c.on_downloaded(waiting, t + Duration::from_secs(1), 16_384);
    assert!(c.is_unchoked(waiting));
    assert_eq!(c.weight(waiting), WEIGHT_SCALE / 100 * OPTIMISTIC_PERCENT);
    assert_eq!(c.take_changes(), vec![ChokeDecision { peer: waiting, unchoke: true }]);
}

#[test]
fn data_from_a_refuser_clears_it() {
    let t = t0();
    let (mut c, opt) = leecher_with_optimistic(t);
    feed(&mut c, opt, t, 10 << 20);
    assert!(c.refused(opt));
    c.on_downloaded(opt, t, 16_384);
    assert!(!c.refused(opt) && c.is_unchoked(opt), "answered at once");
}

#[test]
fn a_peer_with_nothing_we_want_gets_four_trials_then_is_choked() {
    let t = t0();
    let (mut c, opt) = leecher_with_optimistic(t);
    c.we_are_interested(opt, false);
    assert_eq!(feed(&mut c, opt, t, 10 << 20), DEBT_TRIALS * MIN_TRIAL_BYTES);
    assert!(c.refused(opt));
}

#[test]
fn a_round_of_gifts_without_a_byte_back_makes_a_refuser_even_if_it_unchoked_us() {
    let t = t0();
    let (mut c, opt) = leecher_with_optimistic(t);
    // It unchokes us (so no trial ends) but never sends a byte.
    c.peer_unchoked_us(opt, true);
    feed(&mut c, opt, t, 1 << 20);
    c.on_downloaded(PeerKey(1), t, 50_000);
    c.tick(t + Duration::from_secs(10));
    assert!(c.refused(opt));
    assert!(!c.is_unchoked(opt), "its optimistic turn ended with the round");
}

#[test]
fn the_trial_grows_with_our_upload_rate() {
    let t = t0();
    let mut c = leecher(2, t);
    c.on_downloaded(PeerKey(1), t, 50_000);
    c.tick(t);
    assert_eq!(c.trial_bytes(), MIN_TRIAL_BYTES);
    // 40 MB in a 10 s round: 4 MB/s, a quarter of a second of it is 1 MB.
    c.on_uploaded(PeerKey(1), t, 40_000_000);
    c.on_downloaded(PeerKey(1), t, 50_000);
    c.tick(t + Duration::from_secs(10));
    assert_eq!(c.trial_bytes(), 1_000_000);
}

#[test]
fn tit_for_tat_has_no_trials() {
    let t = t0();
    let mut c = Choker::new(ChokerConfig::default(), 7);
    // Six peers: four regular slots, and the optimistic unchoke among the other two.
    for k in 1..=6 {
        c.peer_connected(t, PeerKey(k));
        c.set_interested(PeerKey(k), true);
        c.we_are_interested(PeerKey(k), true);
    }
    c.tick(t);
    let opt = c.optimistic().unwrap();
    assert_eq!(feed(&mut c, opt, t, 1 << 20), 1 << 20);
    assert!(!c.refused(opt) && c.take_changes().is_empty());
}

/// A PropShare seed of a 64-piece torrent with peers `1..=n`, all interested.
fn seed(n: u64, t: Instant) -> Choker {
    let config = ChokerConfig { kind: ChokerKind::PropShare, ..ChokerConfig::default() };
    let mut c = Choker::new(config, 7);
    c.set_piece_count(64);
    c.set_seeding(true);
    for k in 1..=n {
        c.peer_connected(t, PeerKey(k));
        c.set_interested(PeerKey(k), true);
    }
    c.tick(t);
    c
}

#[test]
fn a_seed_ranks_a_leecher_that_passes_nothing_on_after_all_others() {
    let t = t0();
    let mut c = seed(6, t);
    // Peer 1 takes eight pieces alone; none of them shows up anywhere else. It also takes
    // from us faster than anyone, which alone would keep it in a slot.
    for piece in 0..SINK_PIECES {
        c.on_gave_piece(PeerKey(1), piece);
        c.on_uploaded(PeerKey(1), t, 10_000_000);
    }
    assert!(c.is_sink(PeerKey(1)));
    for round in 1..=6u64 {
        c.tick(t + Duration::from_secs(10 * round));
        assert!(!c.is_unchoked(PeerKey(1)) || c.optimistic() == Some(PeerKey(1)), "round {round}");
    }
    // One of its pieces turns up at peer 2: it passed it on, and is back in the running.
    c.on_have_piece(PeerKey(2), 3);
    assert!(!c.is_sink(PeerKey(1)));
}

#[test]
fn a_piece_given_to_two_peers_is_evidence_for_neither() {
    let t = t0();
    let mut c = seed(3, t);
    c.on_gave_piece(PeerKey(1), 0);
    c.on_gave_piece(PeerKey(2), 0);
    c.on_have_piece(PeerKey(3), 0);
    for piece in 1..SINK_PIECES {
        c.on_gave_piece(PeerKey(1), piece);
    }
    assert!(!c.is_sink(PeerKey(1)), "seven pieces alone, one shared: not yet a sink");
    c.on_gave_piece(PeerKey(1), SINK_PIECES);
    assert!(c.is_sink(PeerKey(1)), "the spread of the shared piece was not credited to it");
}

#[test]
fn a_leecher_and_a_tit_for_tat_seed_keep_no_spread_records() {
    let t = t0();
    let mut c = leecher(2, t);
    c.set_piece_count(64);
    for piece in 0..2 * SINK_PIECES {
        c.on_gave_piece(PeerKey(1), piece);
    }
    c.set_seeding(true);
    assert!(!c.is_sink(PeerKey(1)), "pieces given while leeching are not seed evidence");
    let mut tft = Choker::new(ChokerConfig::default(), 7);
    tft.set_piece_count(64);
    tft.set_seeding(true);
    tft.peer_connected(t, PeerKey(1));
    for piece in 0..2 * SINK_PIECES {
        tft.on_gave_piece(PeerKey(1), piece);
    }
    assert!(!tft.is_sink(PeerKey(1)));
}
