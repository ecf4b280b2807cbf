//! Bytes per stored peer in the DHT peer store and per tracked source in the rate limiter,
//! measured with a counting allocator (this test binary's own), so that the caps in
//! `StoreConfig::default()` and the service unit's memory limit rest on a measurement.
//! Run with `--nocapture` to see the figures.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use kadswarm::dht::store::{PeerStore, StoreConfig, BYTES_PER_PEER_ESTIMATE};
use kadswarm::id::Id;
use kadswarm::net::limiter::{Limiter, LimiterConfig};
use rand::{rngs::StdRng, SeedableRng};

mod counting_alloc;

use counting_alloc::live;

fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// The bound written in `StoreConfig::default()`'s doc and bootstrap/OPERATIONS.md.
const MAX_BYTES_PER_PEER: f64 = 400.0;

#[test]
fn a_full_default_store_costs_what_its_doc_says() {
    let cfg = StoreConfig::default();
    let now = t0();
    let mut rng = StdRng::seed_from_u64(1);
    let before = live();
    let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
    // Fill it to `max_peers`: hosts on distinct /24s, each in a few swarms, swarms of 10-20.
    let mut i: u32 = 0;
    while s.peer_count() < cfg.max_peers {
        let host = i / 4;
        let ip = Ipv4Addr::from(0x0100_0001u32.wrapping_add(host << 8));
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(&(i % (cfg.max_peers as u32 / 15)).to_be_bytes());
        s.announce(now + Duration::from_millis(i as u64), Id(h), SocketAddr::new(ip.into(), 6881), false);
        i += 1;
        assert!(i < 10 * cfg.max_peers as u32, "the store stopped taking peers at {}", s.peer_count());
    }
    let bytes = (live() - before) as f64;
    let per_peer = bytes / s.peer_count() as f64;
    println!(
        "peer store: {} peers in {} swarms, {:.1} MiB, {per_peer:.0} bytes per peer",
        s.peer_count(),
        s.info_hash_count(),
        bytes / (1 << 20) as f64
    );
    assert!(per_peer <= MAX_BYTES_PER_PEER, "{per_peer:.0} bytes per stored peer");
    // The metrics estimate the store's memory from its peer count: keep that figure honest.
    let estimate = BYTES_PER_PEER_ESTIMATE as f64;
    assert!(
        (0.75 * estimate..=1.25 * estimate).contains(&per_peer),
        "{per_peer:.0} bytes per stored peer, but BYTES_PER_PEER_ESTIMATE is {estimate}"
    );
    drop(s);
}

#[test]
fn the_limiter_costs_a_fixed_few_bytes_per_tracked_source() {
    let before = live();
    let cfg = LimiterConfig::default();
    let l = Limiter::new(cfg, t0(), [1, 2]);
    let bytes = live() - before;
    let per_source = bytes as f64 / cfg.capacity as f64;
    println!("limiter: {} sources tracked in {} KiB, {per_source:.0} bytes per source", cfg.capacity, bytes / 1024);
    assert!(per_source <= 48.0);
    drop(l);
}
