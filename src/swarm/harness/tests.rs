//! Small swarms: a seeder and one or two leechers, checked for what the harness must get
//! right — the bytes, the counters, the links' speeds, determinism and the behaviour hook.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::scenario::{make_torrent, Class, Scenario};
use super::{test_epoch, Behaviour, Capacity, NodeSpec, Start, Swarm};
use crate::swarm::session::{Action, DiskOp};

const KIB: u64 = 1024;

fn small(seed: u64) -> Scenario {
    Scenario {
        size: 512 * 1024,
        piece_length: 16 * KIB,
        classes: vec![Class { name: "one".into(), count: 2, capacity: Capacity { up: 256 * KIB, down: 256 * KIB } }],
        ..Scenario::mixed(seed)
    }
}

#[test]
fn two_leechers_get_the_seeders_bytes_exactly() {
    let run = small(3).run(test_epoch()).expect("torrent");
    assert!(run.completed && run.drained);
    for i in 1..3 {
        assert!(run.byte_exact(i), "leecher {i} differs from the seeder");
        assert_eq!(run.swarm.stats(i).protocol_closes, 0);
    }
    let uploaded: u64 = (0..3).map(|i| run.swarm.core(i).counters().uploaded).sum();
    let delivered: u64 = (0..3).map(|i| run.swarm.stats(i).payload_delivered).sum();
    let dropped: u64 = (0..3).map(|i| run.swarm.stats(i).payload_dropped).sum();
    assert_eq!(uploaded, delivered + dropped, "every uploaded byte arrived or was lost to a close");
    let by_sender: u64 = (0..3).flat_map(|i| run.swarm.stats(i).payload_from.values().copied()).sum();
    assert_eq!(by_sender, delivered, "what arrived, counted by sender, is what was delivered");
    let from_seed = run.swarm.stats(1).payload_from.get(&0).copied().unwrap_or(0);
    assert!(from_seed > 0, "leecher 1 got bytes from the seeder");
}

#[test]
fn a_magnet_leecher_fetches_the_metadata_then_the_data() {
    let run = Scenario { magnet: true, ..small(4) }.run(test_epoch()).expect("torrent");
    assert!(run.completed);
    assert!(run.byte_exact(1) && run.byte_exact(2));
    assert_eq!(run.swarm.core(1).metainfo().map(|m| m.info_hash), Some(run.meta.info_hash));
}

#[test]
fn one_transfer_takes_the_time_the_bottleneck_link_gives_it() {
    // 1 MiB from a 256 KiB/s uplink to a fast downlink: at least 4 s, and not much more.
    let content = vec![7u8; 1 << 20];
    let meta = Arc::new(make_torrent("x", &content, 64 * KIB).expect("torrent"));
    let mut swarm = Swarm::new(1, test_epoch());
    let fast = Capacity { up: 8 << 20, down: 8 << 20 };
    swarm.add_node(NodeSpec::new(Capacity { up: 256 * KIB, ..fast }, Start::Seed { meta: Arc::clone(&meta), content }));
    swarm.add_node(NodeSpec::new(fast, Start::Metadata(meta)));
    swarm.dial(1, 0, Duration::ZERO, Duration::from_millis(10));
    assert!(swarm.run_until_complete(Duration::from_secs(60)));
    let t = swarm.stats(1).completed_at.expect("complete");
    assert!(t >= Duration::from_secs(4), "faster than the link: {t:?}");
    assert!(t < Duration::from_secs(6), "far slower than the link: {t:?}");
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let a = small(9).run(test_epoch()).expect("torrent");
    let b = small(9).run(test_epoch()).expect("torrent");
    let c = small(10).run(test_epoch()).expect("torrent");
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.swarm.events(), b.swarm.events());
    assert_ne!(a.fingerprint(), c.fingerprint());
}

/// Never reads a block for anyone: a free rider, through the behaviour hook.
struct NoUpload;

impl Behaviour for NoUpload {
    fn on_action(&mut self, _now: Instant, action: Action) -> Option<Action> {
        match action {
            Action::Disk(DiskOp::Read { .. }) => None,
            other => Some(other),
        }
    }
}

#[test]
fn a_behaviour_changes_what_the_node_does_and_nothing_else() {
    let content = vec![1u8; 256 * 1024];
    let meta = Arc::new(make_torrent("x", &content, 16 * KIB).expect("torrent"));
    let mut swarm = Swarm::new(2, test_epoch());
    let cap = Capacity { up: 512 * KIB, down: 512 * KIB };
    swarm.add_node(NodeSpec::new(cap, Start::Seed { meta: Arc::clone(&meta), content }));
    let rider = NodeSpec { behaviour: Box::new(NoUpload), ..NodeSpec::new(cap, Start::Metadata(Arc::clone(&meta))) };
    swarm.add_node(rider);
    swarm.add_node(NodeSpec::new(cap, Start::Metadata(meta)));
    swarm.dial(1, 0, Duration::ZERO, Duration::from_millis(5));
    swarm.dial(2, 0, Duration::ZERO, Duration::from_millis(5));
    swarm.dial(2, 1, Duration::ZERO, Duration::from_millis(5));
    assert!(swarm.run_until_complete(Duration::from_secs(600)));
    assert_eq!(swarm.stats(1).payload_sent, 0, "the free rider sent no block");
    assert!(swarm.stats(2).payload_sent > 0, "the honest leecher shared");
}

#[test]
fn identities_sharing_a_link_share_its_capacity_and_never_connect() {
    // Two identities of one machine with a 256 KiB/s downlink each fetch 1 MiB from a fast
    // seeder: alone, either would take 4 s; together their 2 MiB take 8 s through the one
    // downlink.
    let content = vec![3u8; 1 << 20];
    let meta = Arc::new(make_torrent("x", &content, 64 * KIB).expect("torrent"));
    let mut swarm = Swarm::new(4, test_epoch());
    let fast = Capacity { up: 8 << 20, down: 8 << 20 };
    swarm.add_node(NodeSpec::new(fast, Start::Seed { meta: Arc::clone(&meta), content }));
    let slow = Capacity { up: 256 * KIB, down: 256 * KIB };
    let a = swarm.add_node(NodeSpec::new(slow, Start::Metadata(Arc::clone(&meta))));
    let b = swarm.add_node(NodeSpec { shares_link_with: Some(a), ..NodeSpec::new(fast, Start::Metadata(meta)) });
    assert!(swarm.same_machine(a, b) && !swarm.same_machine(0, a));
    swarm.dial(a, 0, Duration::ZERO, Duration::from_millis(10));
    swarm.dial(b, 0, Duration::ZERO, Duration::from_millis(10));
    swarm.dial(b, a, Duration::ZERO, Duration::from_millis(10));
    assert!(swarm.run_until_complete(Duration::from_secs(60)));
    assert_eq!(swarm.stats(b).refused, 1, "the dial between the identities was refused");
    assert_eq!(swarm.core(a).peer_count() + swarm.core(b).peer_count(), 2, "each has only the seeder");
    let last = swarm.stats(a).completed_at.max(swarm.stats(b).completed_at).expect("complete");
    assert!(last >= Duration::from_millis(7900), "2 MiB through one 256 KiB/s downlink: {last:?}");
    assert!(last < Duration::from_secs(10), "{last:?}");
}

#[test]
fn a_node_that_leaves_after_completing_closes_its_connections_and_takes_no_more() {
    let content = vec![5u8; 256 * 1024];
    let meta = Arc::new(make_torrent("x", &content, 16 * KIB).expect("torrent"));
    let mut swarm = Swarm::new(6, test_epoch());
    let cap = Capacity { up: 1 << 20, down: 1 << 20 };
    swarm.add_node(NodeSpec::new(cap, Start::Seed { meta: Arc::clone(&meta), content }));
    let quitter = NodeSpec {
        leaves_after: Some(Duration::from_secs(1)),
        ..NodeSpec::new(cap, Start::Metadata(Arc::clone(&meta)))
    };
    let q = swarm.add_node(quitter);
    let late = swarm.add_node(NodeSpec::new(cap, Start::Metadata(meta)));
    swarm.dial(q, 0, Duration::ZERO, Duration::from_millis(5));
    swarm.run_until(Duration::from_secs(5));
    let done = swarm.stats(q).completed_at.expect("complete");
    assert!(done < Duration::from_secs(4), "{done:?}");
    assert!(swarm.has_left(q) && !swarm.has_left(0));
    assert_eq!((swarm.core(q).peer_count(), swarm.core(0).peer_count()), (0, 0), "both ends saw the close");
    swarm.dial(late, q, Duration::from_secs(5), Duration::from_millis(5));
    swarm.dial(late, 0, Duration::from_secs(5), Duration::from_millis(5));
    assert!(swarm.run_until_complete(Duration::from_secs(60)));
    assert_eq!(swarm.stats(late).refused, 1, "the dial to the leaver was refused");
    assert_eq!(swarm.core(late).peer_count(), 1, "only the seeder");
}
