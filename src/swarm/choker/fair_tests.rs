//! The weighted kinds' rounds alone (PropShare, and that tit-for-tat and seeding stay
//! unweighted): who is unchoked and with what weight, traffic fed by hand.

use super::*;

fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn propshare(peers: std::ops::RangeInclusive<u64>, t: Instant) -> Choker {
    let config = ChokerConfig { kind: ChokerKind::PropShare, ..ChokerConfig::default() };
    let mut c = Choker::new(config, 5);
    for n in peers {
        c.peer_connected(t, PeerKey(n));
        c.set_interested(PeerKey(n), true);
    }
    c
}

#[test]
fn propshare_unchokes_every_giver_with_a_weight_proportional_to_its_gift() {
    let t = t0();
    // Seven givers: more than tit-for-tat's four slots, all of them unchoked.
    let mut c = propshare(1..=8, t);
    for n in 1..=7 {
        c.on_downloaded(PeerKey(n), t, n * 1000);
    }
    c.tick(t);
    assert!(c.is_weighted());
    assert_eq!(c.optimistic(), Some(PeerKey(8)), "the one peer that gave nothing");
    let reciprocal = (WEIGHT_SCALE / 100 * (100 - OPTIMISTIC_PERCENT)) as f64;
    for n in 1..=7u64 {
        assert!(c.is_unchoked(PeerKey(n)));
        let want = reciprocal * n as f64 / 28.0;
        assert!((c.weight(PeerKey(n)) as f64 - want).abs() <= 1.0, "peer {n}: {}", c.weight(PeerKey(n)));
    }
    assert_eq!(c.weight(PeerKey(8)), WEIGHT_SCALE / 100 * OPTIMISTIC_PERCENT);
}

#[test]
fn propshare_chokes_non_givers_but_the_optimistic_one_and_a_giver_gone_quiet() {
    let t = t0();
    let mut c = propshare(1..=4, t);
    c.on_downloaded(PeerKey(1), t, 5000);
    c.on_downloaded(PeerKey(2), t, 5000);
    c.tick(t);
    let opt = c.optimistic().unwrap();
    assert!(opt == PeerKey(3) || opt == PeerKey(4));
    let other = if opt == PeerKey(3) { PeerKey(4) } else { PeerKey(3) };
    assert!(!c.is_unchoked(other) && c.weight(other) == 0);
    // Next round peer 2 sends nothing: it loses its share at once (PropShare looks at the
    // last round only); peer 1 now holds all of the reciprocal part.
    c.on_downloaded(PeerKey(1), t, 5000);
    let d = c.tick(t + Duration::from_secs(10));
    assert!(d.contains(&ChokeDecision { peer: PeerKey(2), unchoke: false }));
    assert_eq!(c.weight(PeerKey(1)), WEIGHT_SCALE / 100 * (100 - OPTIMISTIC_PERCENT));
}

#[test]
fn an_optimistic_peer_that_gives_earns_a_share_and_the_optimistic_share_moves_on() {
    let t = t0();
    let mut c = propshare(1..=3, t);
    c.on_downloaded(PeerKey(1), t, 5000);
    c.tick(t);
    let opt = c.optimistic().unwrap();
    c.on_downloaded(PeerKey(1), t, 1000);
    c.on_downloaded(opt, t, 1000);
    c.tick(t + Duration::from_secs(10));
    let reciprocal = WEIGHT_SCALE / 100 * (100 - OPTIMISTIC_PERCENT);
    assert_eq!(c.weight(opt), reciprocal / 2, "an equal giver, an equal share");
    let next = c.optimistic().unwrap();
    assert!(next != opt && next != PeerKey(1));
    assert!(c.is_unchoked(next));
}

#[test]
fn with_no_givers_propshare_shares_equally_among_up_to_slots_peers() {
    let t = t0();
    let mut c = propshare(1..=6, t);
    c.tick(t);
    assert!(c.is_weighted());
    let unchoked: Vec<u64> = (1..=6).filter(|n| c.is_unchoked(PeerKey(*n))).collect();
    assert_eq!(unchoked.len(), 5, "four slots and the optimistic one");
    let opt = c.optimistic().unwrap();
    let regular: Vec<u64> =
        unchoked.iter().copied().filter(|n| PeerKey(*n) != opt).map(|n| c.weight(PeerKey(n))).collect();
    assert!(regular.iter().all(|w| *w == regular[0] && *w > 0));
}

#[test]
fn seeding_and_tit_for_tat_rounds_carry_no_weights() {
    let t = t0();
    let mut c = propshare(1..=3, t);
    c.on_downloaded(PeerKey(1), t, 5000);
    c.set_seeding(true);
    c.tick(t);
    assert!(!c.is_weighted());
    assert_eq!(c.weight(PeerKey(1)), 0);
    // A newly interested peer takes a free slot at once, as tit-for-tat and seeding do.
    c.peer_connected(t, PeerKey(9));
    c.set_interested(PeerKey(9), true);
    assert!(c.unchoke_if_slot_free(PeerKey(9), t));

    let mut tft = Choker::new(ChokerConfig::default(), 5);
    tft.peer_connected(t, PeerKey(1));
    tft.set_interested(PeerKey(1), true);
    tft.on_downloaded(PeerKey(1), t, 5000);
    tft.tick(t);
    assert!(!tft.is_weighted() && tft.is_unchoked(PeerKey(1)));
}

/// A BitTyrant leecher of 100 kB/s: 1 MB a round, 250 kB each at the equal split.
fn bittyrant(peers: std::ops::RangeInclusive<u64>, t: Instant) -> Choker {
    let config = ChokerConfig { kind: ChokerKind::BitTyrant { upload_capacity: 100_000 }, ..ChokerConfig::default() };
    let mut c = Choker::new(config, 5);
    c.set_piece_length(32 * 1024);
    for n in peers {
        c.peer_connected(t, PeerKey(n));
        c.set_interested(PeerKey(n), true);
    }
    c
}

const EQUAL: u64 = 250_000;

#[test]
fn bittyrant_pays_less_to_a_peer_that_reciprocated_three_rounds_in_a_row() {
    let t = t0();
    let mut c = bittyrant(1..=1, t);
    c.tick(t);
    assert!(c.is_weighted() && c.is_unchoked(PeerKey(1)));
    assert_eq!(c.weight(PeerKey(1)), EQUAL, "the equal split to start with");
    c.peer_unchoked_us(PeerKey(1), true);
    for round in 1..=3u64 {
        assert_eq!(c.weight(PeerKey(1)), EQUAL, "not before round {round} ends");
        c.on_downloaded(PeerKey(1), t, 50_000);
        c.tick(t + Duration::from_secs(10 * round));
    }
    assert_eq!(c.weight(PeerKey(1)), EQUAL - EQUAL * SHRINK_PERCENT / 100);
    assert!(c.optimistic().is_none(), "BitTyrant has no optimistic unchoke");
}

#[test]
fn bittyrant_pays_more_to_a_peer_that_did_not_unchoke_us_back() {
    let t = t0();
    let mut c = bittyrant(1..=2, t);
    c.tick(t);
    assert!(c.is_unchoked(PeerKey(1)) && c.is_unchoked(PeerKey(2)));
    // Peer 1 unchokes us, peer 2 never does.
    c.peer_unchoked_us(PeerKey(1), true);
    c.tick(t + Duration::from_secs(10));
    assert_eq!(c.weight(PeerKey(1)), EQUAL);
    assert_eq!(c.weight(PeerKey(2)), EQUAL + EQUAL * GROW_PERCENT / 100);
    c.tick(t + Duration::from_secs(20));
    assert_eq!(c.weight(PeerKey(2)), EQUAL * 144 / 100, "and again, compounded");
}

#[test]
fn bittyrant_unchokes_by_return_per_byte_within_its_capacity() {
    let t = t0();
    let mut c = bittyrant(1..=6, t);
    // None has unchoked us: d comes from their have rate, peer n announcing n pieces.
    for n in 1..=6 {
        for _ in 0..n {
            c.on_have(PeerKey(n));
        }
    }
    c.tick(t);
    let unchoked: Vec<u64> = (1..=6).filter(|n| c.is_unchoked(PeerKey(*n))).collect();
    assert_eq!(unchoked, vec![3, 4, 5, 6], "four equal payments fit in 1 MB, best d/u first");
    let paid: u64 = (1..=6).map(|n| c.weight(PeerKey(n))).sum();
    assert!(paid <= 1_000_000, "{paid}");
    // Peers 3..6 did not reciprocate and now cost 20 % more: only three fit.
    c.tick(t + Duration::from_secs(10));
    let unchoked: Vec<u64> = (1..=6).filter(|n| c.is_unchoked(PeerKey(*n))).collect();
    let paid: u64 = (1..=6).map(|n| c.weight(PeerKey(n))).sum();
    assert_eq!(unchoked.len(), 3, "{unchoked:?}");
    assert!(paid <= 1_000_000, "{paid}");
}
