//! The swarm harness at full size: one seeder and 50 leechers of mixed capacities share a
//! 4 MiB torrent in virtual time (`kadswarm::swarm::harness`, the production torrent cores
//! over simulated links). Every leecher must finish with the seeder's bytes, every uploaded
//! byte must be accounted for, and capacity must show in who finishes first. Speed is the
//! bench's business (`benches/swarm_harness.rs`), not asserted here.

use std::time::Instant;

use kadswarm::swarm::harness::scenario::{Built, Class, Scenario};
use kadswarm::swarm::harness::Capacity;

/// Only an origin for virtual time: the harness never reads the clock.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn run(s: &Scenario) -> Built {
    s.run(epoch()).expect("the generated torrent is valid")
}

#[test]
fn fifty_leechers_of_mixed_capacities_all_finish_byte_exact() {
    let s = Scenario::mixed(2026);
    let r = run(&s);
    assert!(r.completed, "not every leecher finished within {:?}", s.limit);
    assert!(r.drained, "payload still on the links long after completion");
    let n = r.swarm.len();
    assert_eq!(n, 51);
    for i in 1..n {
        assert!(r.byte_exact(i), "leecher {i} holds other bytes than the seeder");
        let st = r.swarm.stats(i);
        assert_eq!((st.protocol_closes, st.pieces_failed, st.failed), (0, 0, false), "leecher {i}: {st:?}");
        assert_eq!(r.swarm.core(i).progress(), Some((s.size as u64, s.size as u64)));
    }
    let total = |f: &dyn Fn(usize) -> u64| (0..n).map(f).sum::<u64>();
    let uploaded = total(&|i| r.swarm.core(i).counters().uploaded);
    let received = total(&|i| r.swarm.core(i).counters().received);
    let delivered = total(&|i| r.swarm.stats(i).payload_delivered);
    let dropped = total(&|i| r.swarm.stats(i).payload_dropped);
    // Conservation on the links: what the cores uploaded arrived, or died with a closed
    // connection.
    assert_eq!(uploaded, delivered + dropped);
    // What arrived was counted by the receiving core, or came when no longer requested
    // (cancelled in endgame) and was discarded: the 50 copies plus duplicates.
    let discarded = total(&|i| r.swarm.stats(i).payload_discarded);
    assert_eq!(delivered, received + discarded);
    let needed = 50 * s.size as u64;
    assert!(received >= needed, "received {received} of {needed}");
    let duplicates = received - needed;
    assert!(duplicates < needed / 10, "{duplicates} duplicate bytes: endgame is out of hand");
    // The seeder had to give every piece at least once.
    assert!(r.swarm.core(0).counters().uploaded >= s.size as u64);
}

/// Over a 4 MiB torrent the run lasts two choker rounds, so tit-for-tat has little time to
/// sort the medium and fast classes (their means come out within a few per cent); the slow
/// class, with a quarter of the medium's upload and half its download, is reliably last.
#[test]
fn faster_leechers_finish_first_on_average() {
    let s = Scenario::mixed(7);
    let r = run(&s);
    assert!(r.completed);
    let mean = |c| r.mean_completion(c).expect("all of the class finished");
    let (slow, medium, fast) = (mean(0), mean(1), mean(2));
    assert!(fast < slow && medium < slow, "fast {fast:?}, medium {medium:?}, slow {slow:?}");
}

#[test]
fn a_mixed_swarm_is_deterministic_for_a_seed() {
    let small = |seed| Scenario {
        size: 1 << 20,
        classes: vec![
            Class { name: "slow".into(), count: 6, capacity: Capacity { up: 128 << 10, down: 512 << 10 } },
            Class { name: "fast".into(), count: 6, capacity: Capacity { up: 2 << 20, down: 2 << 20 } },
        ],
        ..Scenario::mixed(seed)
    };
    let (a, b, c) = (run(&small(5)), run(&small(5)), run(&small(6)));
    assert!(a.completed && c.completed);
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.swarm.events(), b.swarm.events());
    assert_eq!(a.swarm.elapsed(), b.swarm.elapsed());
    assert_ne!(a.fingerprint(), c.fingerprint());
}
