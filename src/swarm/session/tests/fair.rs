//! The weighted upload (PropShare) end to end through the core: peers send us data in set
//! proportions, ask us for more than our uplink can carry, and a model of the uplink drains
//! the per-peer queues round-robin one frame at a time, as the swarm harness and a kernel
//! draining several sockets do. What each peer gets must follow the choker's shares.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::*;
use crate::swarm::choker::ChokerKind;

/// Our uplink in the model, bytes/s.
const UPLINK: f64 = 1_000_000.0;
/// We have the first `HAVE` of `PIECES` pieces; peers have the rest.
const PIECES: usize = 400;
const HAVE: usize = 100;
const ROUND: Duration = Duration::from_secs(10);

/// The connections as the test sees them: frames waiting on our uplink per peer, our requests
/// to each peer not answered yet, and their requests to us not served yet.
#[derive(Default)]
struct Wire {
    queues: BTreeMap<PeerKey, VecDeque<(usize, u64)>>,
    last: Option<PeerKey>,
    ours: BTreeMap<PeerKey, Vec<BlockRef>>,
    asked: BTreeMap<PeerKey, usize>,
    next_ask: BTreeMap<PeerKey, u32>,
    unchoked: BTreeSet<PeerKey>,
    /// Block payload bytes that left our uplink for each peer.
    delivered: BTreeMap<PeerKey, u64>,
}

impl Wire {
    /// Carries out what the core asked for: sends queue up, reads are answered at once.
    fn process(&mut self, h: &mut Harness) {
        for _ in 0..100_000 {
            let actions = h.actions();
            if actions.is_empty() {
                return;
            }
            for a in actions {
                match a {
                    Action::Send { key, msg } => {
                        match &msg {
                            Message::Request(b) => self.ours.entry(key).or_default().push(*b),
                            Message::Unchoke => {
                                self.unchoked.insert(key);
                            }
                            Message::Choke => {
                                self.unchoked.remove(&key);
                                self.asked.insert(key, 0);
                            }
                            _ => {}
                        }
                        let payload = if let Message::Piece { data, .. } = &msg { data.len() as u64 } else { 0 };
                        self.queues.entry(key).or_default().push_back((msg.encoded_len(), payload));
                    }
                    Action::Disk(DiskOp::Read { key, block }) => {
                        let Message::Piece { data, .. } = h.block(block, true) else { unreachable!() };
                        h.core.handle(h.now, Input::BlockRead { key, block, result: Ok(data) });
                    }
                    _ => {}
                }
            }
        }
        panic!("the core never stopped acting");
    }

    /// Keeps `depth` requests of each of `askers` waiting with us while we unchoke it.
    fn top_up(&mut self, h: &mut Harness, askers: &[PeerKey], depth: usize) {
        for &key in askers {
            if !self.unchoked.contains(&key) {
                continue;
            }
            while self.asked.get(&key).copied().unwrap_or(0) < depth {
                let n = self.next_ask.entry(key).or_insert(0);
                let block = BlockRef { index: (*n / 2) % HAVE as u32, begin: (*n % 2) * BLOCK, length: BLOCK };
                *n += 1;
                *self.asked.entry(key).or_insert(0) += 1;
                h.msg(key, Message::Request(block));
            }
        }
        self.process(h);
    }

    /// The peer sends us `blocks` of what we asked it for, newest requests first.
    fn contribute(&mut self, h: &mut Harness, key: PeerKey, blocks: usize) {
        for _ in 0..blocks {
            let b = self.ours.get_mut(&key).and_then(Vec::pop).expect("we keep asking the peer");
            let msg = h.block(b, true);
            h.msg(key, msg);
            self.process(h);
        }
    }

    /// Runs the uplink for `span` of virtual time: the next connection in turn that has a frame
    /// sends one, and the time moves on by its length at [`UPLINK`].
    fn run(&mut self, h: &mut Harness, span: Duration, askers: &[PeerKey]) {
        let end = h.now + span;
        for _ in 0..1_000_000 {
            if h.now >= end {
                return;
            }
            self.top_up(h, askers, 16);
            let keys: Vec<PeerKey> = self.queues.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect();
            let next = keys.iter().find(|k| Some(**k) > self.last).or(keys.first()).copied();
            let Some(key) = next else {
                h.advance(Duration::from_millis(10));
                self.process(h);
                continue;
            };
            self.last = Some(key);
            let (len, payload) = self.queues.get_mut(&key).and_then(VecDeque::pop_front).unwrap();
            h.advance(Duration::from_secs_f64(len as f64 / UPLINK));
            if payload > 0 {
                *self.delivered.entry(key).or_insert(0) += payload;
                let asked = self.asked.entry(key).or_insert(0);
                *asked = asked.saturating_sub(1);
            }
            h.core.handle(h.now, Input::Written { key, bytes: len });
            self.process(h);
        }
        panic!("the uplink model ran out of steps");
    }
}

/// A PropShare leecher with the first [`HAVE`] pieces, and `n` peers that have the rest, are
/// interested in ours and unchoke us.
fn propshare_leecher(n: u8) -> (Harness, Wire, Vec<PeerKey>) {
    propshare_leecher_unchoked_by(n, n)
}

/// As [`propshare_leecher`], but only the first `unchoking` of the `n` peers unchoke us.
fn propshare_leecher_unchoked_by(n: u8, unchoking: u8) -> (Harness, Wire, Vec<PeerKey>) {
    let mut h = Harness::with_config(PIECES, |c| c.choker.kind = ChokerKind::PropShare);
    h.install(&(0..HAVE).collect::<Vec<_>>());
    let mut theirs = Bitfield::new(PIECES);
    for i in HAVE..PIECES {
        theirs.set(i);
    }
    let mut wire = Wire::default();
    let mut keys = Vec::new();
    for i in 1..=n {
        let key = h.join(i);
        h.msg(key, Message::Bitfield(theirs.as_bytes().to_vec()));
        if i <= unchoking {
            h.msg(key, Message::Unchoke);
        }
        h.msg(key, Message::Interested);
        keys.push(key);
    }
    wire.process(&mut h);
    // The first round, due at once, finds nobody has sent anything yet.
    h.advance(Duration::ZERO);
    wire.process(&mut h);
    (h, wire, keys)
}

fn shares(wire: &Wire, keys: &[PeerKey]) -> Vec<f64> {
    let total: u64 = wire.delivered.values().sum();
    keys.iter().map(|k| wire.delivered.get(k).copied().unwrap_or(0) as f64 / total as f64).collect()
}

/// Peers 1, 2 and 3 send us 1:2:3 blocks every round; peer 4 has pieces we want, unchokes us
/// and sends nothing. All four ask us for more than our uplink carries. From the round after
/// the first gifts the upload is split 1:2:3 between the givers; peer 4 had one round of the
/// optimistic share, refused it (`choker::reciprocity`) and is not served again.
#[test]
fn propshare_uploads_in_proportion_to_what_each_peer_gave_and_a_refuser_gets_no_more() {
    let (mut h, mut wire, keys) = propshare_leecher(4);
    let givers = &keys[..3];
    let mut to_idle_by_round = Vec::new();
    for round in 0..6 {
        for (i, key) in givers.iter().enumerate() {
            wire.contribute(&mut h, *key, 4 * (i + 1));
        }
        if round == 2 {
            // The rounds before served everyone alike, then gave peer 4 its optimistic turn;
            // measure from here.
            wire.delivered.clear();
        }
        let before = wire.delivered.get(&keys[3]).copied().unwrap_or(0);
        wire.run(&mut h, ROUND, &keys);
        to_idle_by_round.push(wire.delivered.get(&keys[3]).copied().unwrap_or(0) - before);
    }
    let s = shares(&wire, &keys);
    let expected = [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0];
    for (got, want) in s.iter().zip(expected) {
        assert!((got - want).abs() <= 0.1 * want, "shares {s:?}, expected {expected:?}");
    }
    assert!(h.core.choker.refused(keys[3]));
    assert_eq!(to_idle_by_round[3..], [0, 0, 0], "bytes to the refuser by round: {to_idle_by_round:?}");
    assert!(h.core.choker.is_weighted());
}

/// Two peers that have pieces we want, keep us choked and send nothing: each gets one short
/// trial at most (a couple of blocks, not a round of the optimistic share), never both at
/// once, and then nothing; the giver gets the rest of the uplink.
#[test]
fn peers_that_keep_us_choked_get_one_trial_each_and_then_nothing() {
    // Only peer 1 unchokes us (and gives); 2 and 3 never do.
    let (mut h, mut wire, keys) = propshare_leecher_unchoked_by(3, 1);
    for _ in 0..6 {
        wire.contribute(&mut h, keys[0], 8);
        wire.run(&mut h, ROUND, &keys);
        let idle_unchoked = keys[1..].iter().filter(|k| wire.unchoked.contains(k)).count();
        assert!(idle_unchoked <= 1, "at most one trial at a time");
    }
    for idle in &keys[1..] {
        let got = wire.delivered.get(idle).copied().unwrap_or(0);
        assert!(h.core.choker.refused(*idle), "{idle:?} refused");
        // A trial is 32 KiB or a quarter second of upload; blocks already queued may follow it.
        assert!(got <= 2 * (UPLINK as u64 / 4), "{idle:?} got {got} B");
    }
    let s = shares(&wire, &keys);
    assert!(s[0] >= 0.9, "the giver gets the uplink: {s:?}");
}

/// Work-conserving: when only the smallest share-holder asks for anything, it gets the whole
/// uplink, not its 13 %.
#[test]
fn a_share_nobody_uses_goes_to_the_peer_that_asks() {
    let (mut h, mut wire, keys) = propshare_leecher(4);
    for round in 0..3 {
        for (i, key) in keys[..3].iter().enumerate() {
            wire.contribute(&mut h, *key, 4 * (i + 1));
        }
        if round == 1 {
            wire.delivered.clear();
        }
        // Only peer 1, the smallest giver, asks us for blocks.
        wire.run(&mut h, ROUND, &keys[..1]);
    }
    let to_one = wire.delivered.get(&keys[0]).copied().unwrap_or(0) as f64;
    let capacity = UPLINK * ROUND.as_secs_f64();
    assert!(h.core.choker.weight(keys[0]) < h.core.choker.weight(keys[2]));
    assert!(to_one >= 0.9 * capacity, "{to_one} of {capacity} bytes went to the only peer asking");
}

/// The core tells BitTyrant who has us unchoked: a peer that unchokes us is paid less after
/// three rounds of it, one that keeps us choked is paid more every round we unchoke it.
#[test]
fn bittyrant_hears_from_the_core_who_unchokes_us() {
    let kind = ChokerKind::BitTyrant { upload_capacity: 100_000 };
    let mut h = Harness::with_config(PIECES, |c| c.choker.kind = kind);
    h.install(&(0..HAVE).collect::<Vec<_>>());
    let mut theirs = Bitfield::new(PIECES);
    for i in HAVE..PIECES {
        theirs.set(i);
    }
    let generous = h.join(1);
    let stingy = h.join(2);
    for key in [generous, stingy] {
        h.msg(key, Message::Bitfield(theirs.as_bytes().to_vec()));
        h.msg(key, Message::Interested);
    }
    h.msg(generous, Message::Unchoke);
    // 1 MB a round, 250 kB each at the equal split; both fit, so both stay unchoked.
    let equal = 250_000;
    h.advance(3 * ROUND);
    assert!(h.core.choker.is_unchoked(generous) && h.core.choker.is_unchoked(stingy));
    assert!(h.core.choker.weight(generous) < equal, "{}", h.core.choker.weight(generous));
    assert!(h.core.choker.weight(stingy) > equal, "{}", h.core.choker.weight(stingy));
}
