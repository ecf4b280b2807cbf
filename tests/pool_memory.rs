//! Bytes per entry of a bootstrap node's pool at its default size of 1,000,000 nodes,
//! measured with a counting allocator (this test binary's own), so that `--pool-size` and
//! the service's memory limit rest on a measurement. Run with `--nocapture` to see the
//! figures, and the time of a closest-nodes search at that size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use kadswarm::dht::bep42;
use kadswarm::dht::compact::CompactNode;
use kadswarm::dht::pool::{Pool, PoolConfig, PoolInsert};
use kadswarm::id::Id;
use kadswarm::net::addr::Scope;
use rand::{rngs::StdRng, SeedableRng};

mod counting_alloc;

use counting_alloc::live;

#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

/// The bound the `--pool-size` help and bootstrap/README.md quote (about 34 bytes measured).
const MAX_BYTES_PER_ENTRY_V4: f64 = 40.0;

/// Distinct public IPv4 addresses: an odd multiplier is a bijection of u32.
fn public_v4(i: u32) -> Option<IpAddr> {
    let ip = IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(0x9e37_79b1)));
    (Scope::Public.admits(SocketAddr::new(ip, 1)) && !bep42::is_exempt(ip)).then_some(ip)
}

#[test]
fn a_million_entry_pool_costs_what_the_help_says() {
    let now = clock();
    let cfg = PoolConfig::default();
    let mut rng = StdRng::seed_from_u64(1);
    // The nodes are made before measuring; only the pool's own allocations count.
    let nodes: Vec<CompactNode> = (0u32..)
        .filter_map(public_v4)
        .take(cfg.capacity)
        .map(|ip| CompactNode { id: bep42::node_id_for_ip(ip, &mut rng), addr: SocketAddr::new(ip, 6881) })
        .collect();
    let before = live();
    let started = clock();
    let mut pool = Pool::new(cfg, now);
    for n in &nodes {
        assert_eq!(pool.insert(now, *n), PoolInsert::Added);
    }
    let filled_in = started.elapsed();
    assert!(pool.insert(now, CompactNode { addr: SocketAddr::new(nodes[0].addr.ip(), 1), ..nodes[0] }).entered());
    let bytes = (live() - before) as f64;
    let per_entry = bytes / pool.len() as f64;

    let targets: Vec<Id> = (0..100_000).map(|_| Id::random(&mut rng)).collect();
    let started = clock();
    let mut answered = 0;
    for t in &targets {
        answered += pool.closest(t, false, 8).len();
    }
    let per_search = started.elapsed() / targets.len() as u32;
    assert_eq!(answered, 8 * targets.len());
    println!(
        "pool: {} IPv4 entries in {:.1} MiB, {per_entry:.1} bytes per entry; filled in {filled_in:?}, \
         closest 8 in {per_search:?}",
        pool.len(),
        bytes / (1 << 20) as f64
    );
    assert!(per_entry <= MAX_BYTES_PER_ENTRY_V4, "{per_entry:.1} bytes per pool entry");
    drop(pool);
}

#[test]
fn ipv6_entries_cost_their_longer_address() {
    let now = clock();
    let mut rng = StdRng::seed_from_u64(2);
    let nodes: Vec<CompactNode> = (0u32..200_000)
        .map(|i| {
            let mut o = [0u8; 16];
            o[..2].copy_from_slice(&[0x20, 0x01]);
            o[4..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b1).to_be_bytes());
            let ip = IpAddr::V6(Ipv6Addr::from(o));
            CompactNode { id: bep42::node_id_for_ip(ip, &mut rng), addr: SocketAddr::new(ip, 6881) }
        })
        .collect();
    let before = live();
    let mut pool = Pool::new(PoolConfig::default(), now);
    for n in &nodes {
        assert_eq!(pool.insert(now, *n), PoolInsert::Added);
    }
    let per_entry = (live() - before) as f64 / pool.len() as f64;
    println!("pool: {} IPv6 entries, {per_entry:.1} bytes per entry", pool.len());
    assert!(per_entry <= 52.0, "{per_entry:.1} bytes per IPv6 pool entry");
}
