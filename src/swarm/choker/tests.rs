//! The choker alone, in virtual time: peers named by number, rounds driven by hand, traffic fed
//! as bytes per round.

use std::collections::BTreeSet;

use super::*;

fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn at(t0: Instant, secs: u64) -> Instant {
    t0 + Duration::from_secs(secs)
}

fn peer(n: u64) -> PeerKey {
    PeerKey(n)
}

/// Connects interested peers.
fn connect(c: &mut Choker, now: Instant, peers: impl IntoIterator<Item = u64>) {
    for n in peers {
        c.peer_connected(now, peer(n));
        c.set_interested(peer(n), true);
    }
}

/// One round of traffic from us to them: `(peer, bytes)`.
fn download(c: &mut Choker, now: Instant, bytes: &[(u64, u64)]) {
    for &(n, b) in bytes {
        c.on_downloaded(peer(n), now, b);
    }
}

fn unchoked(c: &Choker, peers: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
    peers.into_iter().filter(|n| c.is_unchoked(peer(*n))).collect()
}

fn set(peers: &[u64]) -> BTreeSet<u64> {
    peers.iter().copied().collect()
}

/// Peers 1..=6, peer 1 the fastest, after the first round.
fn six_ranked(seed: u64) -> (Choker, Instant) {
    let t = t0();
    let mut c = Choker::new(ChokerConfig::default(), seed);
    connect(&mut c, t, 1..=6);
    download(&mut c, t, &[(1, 600), (2, 500), (3, 400), (4, 300), (5, 200), (6, 100)]);
    (c, t)
}

#[test]
fn the_four_fastest_interested_uploaders_are_unchoked() {
    let (mut c, t) = six_ranked(1);
    let decisions = c.tick(t);
    assert_eq!(decisions.len(), 5);
    assert!(decisions.iter().all(|d| d.unchoke));
    let opt = c.optimistic().unwrap();
    assert!(opt == peer(5) || opt == peer(6));
    let mut expected = set(&[1, 2, 3, 4]);
    expected.insert(opt.0);
    assert_eq!(unchoked(&c, 1..=6), expected);
    // Nothing between rounds, and nothing to say when nothing changed.
    assert!(c.tick(at(t, 5)).is_empty());
    assert_eq!(c.next_deadline(), Some(at(t, 10)));
    download(&mut c, at(t, 5), &[(1, 600), (2, 500), (3, 400), (4, 300)]);
    assert!(c.tick(at(t, 10)).is_empty());
}

#[test]
fn a_slow_peer_that_speeds_up_replaces_the_slowest_next_round() {
    let (mut c, t) = six_ranked(1);
    c.tick(t);
    let slow = if c.optimistic() == Some(peer(5)) { 6 } else { 5 };
    download(&mut c, at(t, 5), &[(1, 600), (2, 500), (3, 400), (4, 300), (slow, 10_000)]);
    let decisions = c.tick(at(t, 10));
    assert_eq!(
        decisions,
        vec![ChokeDecision { peer: peer(4), unchoke: false }, ChokeDecision { peer: peer(slow), unchoke: true }]
    );
}

#[test]
fn an_uninterested_peer_is_not_unchoked() {
    let t = t0();
    let mut c = Choker::new(ChokerConfig::default(), 1);
    connect(&mut c, t, 1..=3);
    c.peer_connected(t, peer(9));
    download(&mut c, t, &[(9, 1_000_000), (1, 10)]);
    c.tick(t);
    assert_eq!(unchoked(&c, [1, 2, 3, 9]), set(&[1, 2, 3]));
    assert_eq!(c.optimistic(), None, "no choked interested peer to try");

    c.set_interested(peer(9), true);
    c.tick(at(t, 10));
    assert!(c.is_unchoked(peer(9)));
    c.set_interested(peer(1), false);
    assert_eq!(c.tick(at(t, 20)), vec![ChokeDecision { peer: peer(1), unchoke: false }]);
}

/// Peers 1..=4 send every round and hold the regular slots; `choked` others send nothing.
fn rotation(seed: u64, choked: u64, rounds: u64, new_peer_weight: u32) -> (Choker, Vec<Option<PeerKey>>) {
    let t = t0();
    let mut c = Choker::new(ChokerConfig { new_peer_weight, ..ChokerConfig::default() }, seed);
    connect(&mut c, t, 1..=4 + choked);
    let mut optimistic = Vec::new();
    for round in 0..rounds {
        let now = at(t, 10 * round);
        download(&mut c, now, &[(1, 1000), (2, 1000), (3, 1000), (4, 1000)]);
        c.tick(now);
        assert_eq!(unchoked(&c, 1..=4), set(&[1, 2, 3, 4]));
        assert_eq!(unchoked(&c, 1..=4 + choked).len(), 5);
        optimistic.push(c.optimistic());
    }
    (c, optimistic)
}

#[test]
fn the_optimistic_unchoke_rotates_every_30_seconds() {
    let (_, opt) = rotation(1, 4, 10, 3);
    assert!(opt.iter().all(|o| o.is_some_and(|p| (5..=8).contains(&p.0))));
    for turn in opt.chunks(3) {
        assert!(turn.iter().all(|o| *o == turn[0]), "held for a whole turn: {opt:?}");
    }
    for pair in opt.windows(2).skip(2).step_by(3) {
        assert_ne!(pair[0], pair[1], "moved at the turn: {opt:?}");
    }
}

#[test]
fn the_peer_whose_turn_ended_sits_out_the_next_one() {
    // With two candidates, a fresh draw would repeat half the time; the turn must alternate.
    for seed in 0..10 {
        let (_, opt) = rotation(seed, 2, 12, 3);
        let turns: Vec<_> = opt.iter().step_by(3).collect();
        assert!(turns.windows(2).all(|w| w[0] != w[1]), "seed {seed}: {turns:?}");
    }
}

#[test]
fn over_many_rounds_every_choked_peer_gets_a_turn() {
    for seed in 0..5 {
        let (_, opt) = rotation(seed, 6, 180, 3);
        let turns: BTreeSet<u64> = opt.iter().flatten().map(|p| p.0).collect();
        assert_eq!(turns, (5..=10).collect(), "seed {seed}");
    }
}

#[test]
fn new_peers_get_the_optimistic_unchoke_more_often() {
    // Old peers 5, 6, 7 and 9 connect at the start; new peer 8 five seconds before the second
    // turn. The peer whose turn ends sits out, so the choice is among three old peers and peer 8.
    let (mut new, mut old) = (0, 0);
    for seed in 0..300 {
        let t = t0();
        let mut c = Choker::new(ChokerConfig::default(), seed);
        connect(&mut c, t, [1, 2, 3, 4, 5, 6, 7, 9]);
        for round in 0..=3 {
            let now = at(t, 10 * round);
            if round == 3 {
                connect(&mut c, at(t, 25), [8]);
            }
            download(&mut c, now, &[(1, 1000), (2, 1000), (3, 1000), (4, 1000)]);
            c.tick(now);
        }
        match c.optimistic() {
            Some(PeerKey(8)) => new += 1,
            Some(PeerKey(9)) => old += 1,
            _ => {}
        }
    }
    // Weights 3:1:1:1 expect 150 against about 38 (peer 9 sits out when its turn just ended);
    // equal weights would give about 75 against 56.
    assert!(new > 120 && old < 80 && new > 2 * old, "new {new}, old {old}");
}

#[test]
fn a_snubbed_peer_loses_its_slot() {
    let t = t0();
    let mut c = Choker::new(ChokerConfig { slots: 1, ..ChokerConfig::default() }, 1);
    connect(&mut c, t, [1]);
    c.tick(t);
    assert!(c.is_unchoked(peer(1)));
    for round in 1..=4 {
        c.tick(at(t, 10 * round));
    }
    connect(&mut c, at(t, 45), [2, 3]);
    c.tick(at(t, 50));
    // Fifty silent seconds: still within `snub_after`, so peer 1 keeps its slot on the tie.
    assert!(c.is_unchoked(peer(1)) && !c.is_snubbed(peer(1), at(t, 50)));
    let opt = c.optimistic().unwrap().0;
    let other = if opt == 2 { 3 } else { 2 };

    let decisions = c.tick(at(t, 60));
    assert!(c.is_snubbed(peer(1), at(t, 60)));
    assert_eq!(
        decisions,
        vec![ChokeDecision { peer: peer(1), unchoke: false }, ChokeDecision { peer: peer(other), unchoke: true }]
    );
    assert_eq!(c.optimistic(), Some(peer(opt)));

    // Data ends the snub, and the rate wins the slot back.
    download(&mut c, at(t, 65), &[(1, 1000)]);
    assert!(!c.is_snubbed(peer(1), at(t, 65)));
    c.tick(at(t, 70));
    assert!(c.is_unchoked(peer(1)) && !c.is_unchoked(peer(other)));
}

#[test]
fn seeding_ranks_by_upload_rate_and_snubs_nobody() {
    let t = t0();
    // Turns off: this is about the ranking alone (turns are tested below).
    let mut c = Choker::new(ChokerConfig { seed_turn_rounds: 0, ..ChokerConfig::default() }, 1);
    c.set_seeding(true);
    connect(&mut c, t, 1..=6);
    for round in 0..8 {
        let now = at(t, 10 * round);
        // The peers that take the most from us come last in key order and give us nothing.
        for n in 1..=6 {
            c.on_uploaded(peer(n), now, n * 100);
        }
        c.tick(now);
        assert!(unchoked(&c, 3..=6) == set(&[3, 4, 5, 6]), "round {round}");
    }
    assert!(!c.is_snubbed(peer(3), at(t, 70)));
    // Leeching, the same peers have sent nothing for 80 s since we unchoked them: snubbed.
    c.set_seeding(false);
    assert!(c.is_snubbed(peer(3), at(t, 80)));
    c.tick(at(t, 80));
    assert!(unchoked(&c, 3..=6).is_empty());
}

#[test]
fn a_peer_that_leaves_frees_its_slot_for_the_next_round() {
    let (mut c, t) = six_ranked(1);
    c.tick(t);
    let rest = if c.optimistic() == Some(peer(5)) { 6 } else { 5 };
    c.peer_left(peer(1));
    assert!(!c.is_unchoked(peer(1)));
    download(&mut c, at(t, 5), &[(2, 500), (3, 400), (4, 300), (rest, 100)]);
    assert_eq!(c.tick(at(t, 10)), vec![ChokeDecision { peer: peer(rest), unchoke: true }]);
}

#[test]
fn deadlines_follow_the_rounds() {
    let t = t0();
    let mut c = Choker::new(ChokerConfig::default(), 1);
    assert_eq!(c.next_deadline(), None);
    assert!(c.tick(t).is_empty());
    connect(&mut c, at(t, 3), [1]);
    assert_eq!(c.next_deadline(), Some(at(t, 3)), "the first peer does not wait a round");
    assert_eq!(c.tick(at(t, 3)), vec![ChokeDecision { peer: peer(1), unchoke: true }]);
    assert_eq!(c.next_deadline(), Some(at(t, 13)));
    // A late driver gets one round, and the next one a full interval later.
    c.tick(at(t, 25));
    assert_eq!(c.next_deadline(), Some(at(t, 35)));
}

#[test]
fn one_quiet_round_does_not_cost_a_slot_but_two_do() {
    let t = t0();
    let mut c = Choker::new(ChokerConfig::default(), 1);
    connect(&mut c, t, 1..=6);
    download(&mut c, t, &[(1, 1000), (2, 500), (3, 500), (4, 500)]);
    c.tick(t);
    let rival = if c.optimistic() == Some(peer(5)) { 6 } else { 5 };
    // Peer 1 goes quiet; the rival sends more than peer 1 did in a round, less than in two.
    download(&mut c, at(t, 5), &[(2, 500), (3, 500), (4, 500), (rival, 600)]);
    assert!(c.tick(at(t, 10)).is_empty(), "the window still holds peer 1's earlier round");
    download(&mut c, at(t, 15), &[(2, 500), (3, 500), (4, 500), (rival, 600)]);
    assert_eq!(
        c.tick(at(t, 20)),
        vec![ChokeDecision { peer: peer(1), unchoke: false }, ChokeDecision { peer: peer(rival), unchoke: true }]
    );
}

#[test]
fn equal_peers_keep_their_slots_instead_of_flapping() {
    for seed in 0..10 {
        let t = t0();
        let mut c = Choker::new(ChokerConfig::default(), seed);
        connect(&mut c, t, 1..=8);
        assert_eq!(c.tick(t).len(), 5);
        // Nobody sends anything, nobody is snubbed yet, the optimistic turn is not over.
        assert!(c.tick(at(t, 10)).is_empty(), "seed {seed}");
        assert!(c.tick(at(t, 20)).is_empty(), "seed {seed}");
    }
}

#[test]
fn a_newly_interested_peer_gets_a_free_slot_at_once() {
    let t = t0();
    let mut c = Choker::new(ChokerConfig::default(), 7);
    c.peer_connected(t, peer(1));
    c.tick(t); // the round at connection: not interested yet, stays choked
    assert!(!c.is_unchoked(peer(1)));
    assert!(!c.unchoke_if_slot_free(peer(1), t), "not interested: no slot");
    c.set_interested(peer(1), true);
    assert!(c.unchoke_if_slot_free(peer(1), at(t, 1)));
    assert!(c.is_unchoked(peer(1)));
    // With every regular slot taken, a newcomer waits for the round.
    connect(&mut c, t, 2..=4);
    for n in 2..=4 {
        assert!(c.unchoke_if_slot_free(peer(n), at(t, 1)));
    }
    connect(&mut c, t, [5]);
    assert!(!c.unchoke_if_slot_free(peer(5), at(t, 1)));
}

/// A seeder's rounds in virtual time: `peers` interested peers, peer `n` able to take `n` units a
/// second, each unchoked peer taking that much over the round. Returns, per round, the peers
/// holding regular slots (the optimistic one left out).
fn seed_rounds(config: ChokerConfig, peers: u64, rounds: u64, seed: u64) -> Vec<BTreeSet<u64>> {
    let t = t0();
    let mut c = Choker::new(config, seed);
    c.set_seeding(true);
    connect(&mut c, t, 1..=peers);
    let mut out = Vec::new();
    for round in 0..rounds {
        let now = at(t, 10 * round);
        c.tick(now);
        let regular: BTreeSet<u64> =
            (1..=peers).filter(|n| c.is_unchoked(peer(*n)) && c.optimistic() != Some(peer(*n))).collect();
        for n in 1..=peers {
            if c.is_unchoked(peer(n)) {
                c.on_uploaded(peer(n), now, n * 1000 * 10);
            }
        }
        out.push(regular);
    }
    out
}

/// Rounds each peer held a regular slot, and the longest run of rounds in a row.
fn slot_rounds(rounds: &[BTreeSet<u64>], n: u64) -> (usize, usize) {
    let (mut total, mut run, mut longest) = (0, 0, 0);
    for r in rounds {
        if r.contains(&n) {
            total += 1;
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    (total, longest)
}

#[test]
fn seeding_rotates_the_slots_in_turns_of_three_rounds() {
    for seed in 0..5 {
        let rounds = seed_rounds(ChokerConfig::default(), 12, 60, seed);
        for n in 1..=12 {
            let (total, longest) = slot_rounds(&rounds, n);
            // Twelve interested peers: there is always someone whose turn is not used up.
            assert!(longest <= 3, "seed {seed}: peer {n} held a slot {longest} rounds in a row");
            assert!(total >= 1, "seed {seed}: peer {n}, one of the slowest or not, never had a regular slot");
        }
        assert!(rounds.iter().all(|r| r.len() == 4), "seed {seed}: every slot is used");
    }
}

#[test]
fn seeding_turns_still_favour_the_fastest_peers() {
    for seed in 0..5 {
        let rounds = seed_rounds(ChokerConfig::default(), 12, 60, seed);
        let held = |peers: std::ops::RangeInclusive<u64>| -> usize { peers.map(|n| slot_rounds(&rounds, n).0).sum() };
        let (fast, slow) = (held(9..=12), held(1..=4));
        assert!(fast > 2 * slow, "seed {seed}: the 4 fastest held {fast} slot-rounds, the 4 slowest {slow}");
    }
}

#[test]
fn without_turns_the_slots_stay_with_few_peers() {
    // What the turns are for: only the optimistic unchoke lets a peer show its rate, so without
    // turns the slots settle on the fastest peers it found, and the slowest never get one.
    for seed in 0..5 {
        let rounds = seed_rounds(ChokerConfig { seed_turn_rounds: 0, ..ChokerConfig::default() }, 12, 60, seed);
        let longest = (1..=12).map(|n| slot_rounds(&rounds, n).1).max().unwrap_or(0);
        let never = (1..=12).filter(|n| slot_rounds(&rounds, *n).0 == 0).count();
        assert!(longest >= 20, "seed {seed}: no peer kept a slot for long ({longest} rounds)");
        assert!(never >= 1, "seed {seed}: every peer had a regular slot");
    }
}

/// Seeding to more leechers than slots: when a leecher with a slot finishes (loses interest)
/// or leaves, the best waiting leecher gets the slot at once, not at the next round ten
/// seconds later (30 leechers of one seeder finished in waves ten seconds apart).
#[test]
fn a_slot_freed_between_rounds_goes_to_a_waiting_peer_at_once() {
    let t = t0();
    let mut c = Choker::new(ChokerConfig::default(), 7);
    c.set_seeding(true);
    connect(&mut c, t, 1..=8);
    c.tick(t);
    let opt = c.optimistic().unwrap();
    let regular: Vec<u64> = (1..=8).filter(|n| c.is_unchoked(peer(*n)) && peer(*n) != opt).collect();
    assert_eq!(regular.len(), 4);
    assert!(c.fill_free_slots(at(t, 1)).is_empty(), "no slot is free");

    c.set_interested(peer(regular[0]), false);
    let filled = c.fill_free_slots(at(t, 2));
    assert_eq!(filled.len(), 1, "the finished leecher's slot is given again");
    assert!(c.is_unchoked(filled[0]) && filled[0] != opt && !regular.contains(&filled[0].0));

    c.peer_left(peer(regular[1]));
    let filled2 = c.fill_free_slots(at(t, 3));
    assert_eq!(filled2.len(), 1, "so is the slot of a leecher that left");
    assert_ne!(filled2, filled);
    let interested_unchoked =
        (1..=8).filter(|n| *n != regular[0] && *n != regular[1] && c.is_unchoked(peer(*n)) && peer(*n) != opt).count();
    assert_eq!(interested_unchoked, 4, "still four regular slots, no more");
}

/// Leeching with tit-for-tat the same holds; with PropShare the round shares out the upload,
/// so nothing is filled in between.
#[test]
fn freed_slots_are_filled_only_by_tit_for_tat_or_seeding() {
    let t = t0();
    for (kind, seeding, expect) in
        [(ChokerKind::TitForTat, false, 1), (ChokerKind::PropShare, false, 0), (ChokerKind::PropShare, true, 1)]
    {
        let mut c = Choker::new(ChokerConfig { kind, slots: 1, ..ChokerConfig::default() }, 3);
        c.set_seeding(seeding);
        connect(&mut c, t, [1, 2, 3]);
        c.tick(t);
        let holder = (1..=3).find(|n| c.is_unchoked(peer(*n)) && c.optimistic() != Some(peer(*n)));
        let Some(holder) = holder else { continue };
        c.peer_left(peer(holder));
        assert_eq!(c.fill_free_slots(at(t, 1)).len(), expect, "{kind:?} seeding {seeding}");
    }
}
