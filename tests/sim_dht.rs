//! DHT properties on a simulated network of 5,000 production node cores in virtual time:
//! lookups find the true k closest nodes despite packet loss and churn, and announced peers
//! are found by anyone.

use std::time::{Duration, Instant};

use kadswarm::id::Id;
use kadswarm::sim::{Network, SimConfig};

const NODES: usize = 5000;
const LOOKUPS: usize = 200;
const K: usize = 8;

fn epoch() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn percentile(values: &mut [usize], p: f64) -> usize {
    values.sort_unstable();
    let idx = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[idx.min(values.len() - 1)]
}

/// Runs `LOOKUPS` find_node lookups from random live nodes to random targets and returns the
/// fraction whose k closest equal the brute-force k closest live nodes.
fn lookup_accuracy(net: &mut Network, label: &str) -> f64 {
    let mut exact = 0;
    let mut queries = Vec::new();
    let mut rounds = Vec::new();
    for _ in 0..LOOKUPS {
        let from = net.random_alive().expect("live nodes");
        let target: Id = net.random_id();
        let summary = net.find_node(from, target).expect("lookup finished within its time limit");
        let got: Vec<Id> = summary.closest.iter().map(|n| n.id).collect();
        if got == net.true_closest(&target, K, from) {
            exact += 1;
        }
        queries.push(summary.stats.queries);
        rounds.push(summary.stats.rounds as usize);
    }
    let ratio = exact as f64 / LOOKUPS as f64;
    println!(
        "{label}: {exact}/{LOOKUPS} lookups exact ({:.1}%); messages per lookup median {} p99 {}; round trips median {} p99 {}",
        ratio * 100.0,
        percentile(&mut queries, 0.5),
        percentile(&mut queries, 0.99),
        percentile(&mut rounds, 0.5),
        percentile(&mut rounds, 0.99),
    );
    ratio
}

#[test]
fn five_thousand_nodes_with_loss_and_churn() {
    let config = SimConfig { seed: 0x5eed, loss: 0.01, ..SimConfig::default() };
    let mut net = Network::new(config, epoch());
    let built = epoch();
    net.grow(NODES, Duration::from_millis(50), Duration::from_secs(600));
    println!(
        "built {NODES} nodes in {:.1}s wall; mean table size {:.1}; packets delivered {} lost {}",
        built.elapsed().as_secs_f64(),
        (0..net.len()).map(|i| net.node(i).table().len()).sum::<usize>() as f64 / net.len() as f64,
        net.stats.delivered,
        net.stats.lost,
    );

    let accuracy = lookup_accuracy(&mut net, "1% loss");
    assert!(accuracy >= 0.99, "only {:.1}% of lookups found the true {K} closest", accuracy * 100.0);

    // Every announced peer is found by get_peers from another random node.
    let mut announced = Vec::new();
    for port in 1000..1020u16 {
        let who = net.random_alive().expect("live nodes");
        let info_hash = net.random_id();
        let summary = net.announce(who, info_hash, port).expect("announce finished");
        assert!(summary.announced_to > 0, "announce reached nobody");
        announced.push((info_hash, std::net::SocketAddr::new(net.addr(who).ip(), port), who));
    }
    for (info_hash, peer, who) in &announced {
        // Any live node but the announcer (a few draws; 5,000 nodes make a clash rare).
        let asker = (0..100).filter_map(|_| net.random_alive()).find(|a| a != who).expect("another live node");
        let (_, peers) = net.get_peers(asker, *info_hash).expect("get_peers finished");
        assert!(peers.contains(peer), "peer {peer} announced for {info_hash} not found (got {peers:?})");
    }
    println!("{} announced peers all found by get_peers from other nodes", announced.len());

    // 30% of the nodes vanish without warning.
    let victims = NODES * 3 / 10;
    for _ in 0..victims {
        let i = net.random_alive().expect("more live nodes than victims");
        net.kill(i);
    }
    let accuracy = lookup_accuracy(&mut net, "1% loss, 30% killed");
    assert!(accuracy >= 0.95, "only {:.1}% of lookups exact after churn", accuracy * 100.0);
}
