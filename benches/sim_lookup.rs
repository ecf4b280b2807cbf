//! One find_node lookup in a simulated 5,000-node network (virtual time, no sockets): the CPU
//! cost of a whole lookup, all the nodes it touches included.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kadswarm::sim::{Network, SimConfig};

fn bench_lookup(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now();
    let mut net = Network::new(SimConfig { seed: 11, ..SimConfig::default() }, epoch);
    net.grow(5000, Duration::from_millis(50), Duration::from_secs(300));
    let mut g = c.benchmark_group("sim");
    g.sample_size(30);
    g.bench_function("find_node_lookup_5000_nodes", |b| {
        b.iter(|| {
            let from = net.random_alive().expect("live nodes");
            let target = net.random_id();
            net.find_node(from, target).expect("lookup finished")
        })
    });
    g.finish();
}

criterion_group!(benches, bench_lookup);
criterion_main!(benches);
