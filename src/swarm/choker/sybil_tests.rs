//! PropShare's per-host rules alone ([`super::hosts`]): connections from one host (a Sybil's
//! identities, all on one IP) share what the choker hands out per peer. Each test fails with
//! the rule taken out.

use super::*;

fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// Host numbers: peers 1..=4 are one machine, every other peer a host of its own.
fn host(k: u64) -> u128 {
    if k <= 4 {
        1
    } else {
        u128::from(k)
    }
}

/// A choker of `kind` with interested peers `1..=n` (1..=4 from one host), we interested in all.
fn choker(kind: ChokerKind, n: u64, t: Instant, seed: u64) -> Choker {
    let mut c = Choker::new(ChokerConfig { kind, ..ChokerConfig::default() }, seed);
    for k in 1..=n {
        c.peer_connected_from(t, PeerKey(k), host(k));
        c.set_interested(PeerKey(k), true);
        c.we_are_interested(PeerKey(k), true);
    }
    c
}

#[test]
fn a_hosts_identities_share_one_optimistic_ticket() {
    // Peers 1-4 (one host), 5 and 6; peer 7 gave, so the draw is among 1-6. A fair draw per
    // host gives 5 a third of the turns; per connection it would get a sixth.
    let t = t0();
    let draws = 600;
    let mut fives = 0;
    for seed in 0..draws {
        let mut c = choker(ChokerKind::PropShare, 7, t, seed);
        c.on_downloaded(PeerKey(7), t, 50_000);
        c.tick(t);
        fives += u32::from(c.optimistic() == Some(PeerKey(5)));
    }
    let share = f64::from(fives) / draws as f64;
    assert!((0.27..0.40).contains(&share), "peer 5 drawn {share:.3} of the time, a third expected");
}

#[test]
fn a_host_is_answered_at_once_for_one_identity_at_a_time() {
    let t = t0();
    let mut c = choker(ChokerKind::PropShare, 7, t, 7);
    // 5, 6 and 7 gave in the first round; 1-4 are choked (bar maybe the optimistic one).
    for k in 5..=7 {
        c.on_downloaded(PeerKey(k), t, 10_000);
    }
    c.tick(t);
    c.take_changes();
    let later = t + Duration::from_secs(1);
    let choked: Vec<PeerKey> = (1..=4).map(PeerKey).filter(|k| !c.is_unchoked(*k)).collect();
    assert!(choked.len() >= 3);
    let optimistic_is_theirs = c.optimistic().is_some_and(|o| o.0 <= 4);
    for k in &choked {
        c.on_downloaded(*k, later, 16_384);
    }
    let answered = choked.iter().filter(|k| c.is_unchoked(**k)).count();
    let expected = if optimistic_is_theirs { 0 } else { 1 };
    assert_eq!(answered, expected, "one gift per host (optimistic held by it: {optimistic_is_theirs})");
    // Another host's gift is still answered.
    let mut other = choker(ChokerKind::PropShare, 8, t, 7);
    for k in 5..=7 {
        other.on_downloaded(PeerKey(k), t, 10_000);
    }
    other.tick(t);
    if !other.is_unchoked(PeerKey(8)) {
        other.on_downloaded(PeerKey(8), later, 16_384);
        assert!(other.is_unchoked(PeerKey(8)));
    }
}

#[test]
fn the_equal_split_gives_each_host_a_place_before_any_gets_two() {
    // Nobody gave: four places split equally among 1-4 (one host), 5 and 6, plus the
    // optimistic one. Every host is in.
    let t = t0();
    for seed in 0..50 {
        let mut c = choker(ChokerKind::PropShare, 6, t, seed);
        c.tick(t);
        for k in [5, 6] {
            assert!(c.is_unchoked(PeerKey(k)), "seed {seed}: peer {k} left out");
        }
    }
}

/// A seeding choker of `kind` (peers as in [`choker`]) one round after the host's four
/// identities took from us a hundred times faster than peers 5-7.
fn seed_with_a_fast_host(kind: ChokerKind) -> Choker {
    let t = t0();
    let mut c = choker(kind, 7, t, 7);
    c.set_seeding(true);
    c.tick(t);
    for k in 1..=7 {
        let bytes = if k <= 4 { 10_000_000 } else { 100_000 };
        c.on_uploaded(PeerKey(k), t, bytes);
    }
    c.tick(t + Duration::from_secs(10));
    c
}

#[test]
fn a_propshare_seed_gives_a_host_one_slot_while_others_wait() {
    let c = seed_with_a_fast_host(ChokerKind::PropShare);
    let theirs = (1..=4).filter(|k| c.is_unchoked(PeerKey(*k)) && c.optimistic() != Some(PeerKey(*k))).count();
    assert_eq!(theirs, 1, "one regular slot for the host");
    for k in 5..=7 {
        assert!(c.is_unchoked(PeerKey(k)), "peer {k} waits behind a host that has a slot");
    }
}

#[test]
fn tit_for_tat_keeps_counting_connections() {
    // The stock choker is the yardstick: the same fast host takes every slot there.
    let c = seed_with_a_fast_host(ChokerKind::TitForTat);
    assert!((1..=4).all(|k| c.is_unchoked(PeerKey(k))));
}
