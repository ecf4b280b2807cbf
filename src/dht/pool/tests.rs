//! The pool on its own: closest search against brute force, the rules of entry (BEP 42, one
//! entry per host, no eviction) and aging.

use super::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn t0() -> Instant {
    crate::clock::now()
}

fn pool(now: Instant) -> Pool {
    Pool::new(PoolConfig::default(), now)
}

/// A public IPv4 address (outside every exempt range) and a BEP 42 id for it.
fn public_node(rng: &mut StdRng) -> CompactNode {
    loop {
        let ip = Ipv4Addr::from(rng.random::<u32>());
        if bep42::is_exempt(ip.into()) || !crate::net::addr::Scope::Public.admits(SocketAddr::new(ip.into(), 1)) {
            continue;
        }
        let id = bep42::node_id_for_ip(ip.into(), rng);
        return CompactNode { id, addr: SocketAddr::new(ip.into(), rng.random_range(1024..u16::MAX)) };
    }
}

fn public_v6(rng: &mut StdRng) -> CompactNode {
    let mut o = [0u8; 16];
    rng.fill(&mut o[..]);
    o[0] = 0x20;
    o[1] = 0x01;
    let ip = IpAddr::V6(Ipv6Addr::from(o));
    CompactNode { id: bep42::node_id_for_ip(ip, rng), addr: SocketAddr::new(ip, 6881) }
}

fn brute_force(all: &[CompactNode], target: &Id, v6: bool, k: usize) -> Vec<CompactNode> {
    let mut v: Vec<CompactNode> = all.iter().filter(|n| n.addr.is_ipv6() == v6).copied().collect();
    v.sort_by_key(|n| n.id.distance(target));
    v.truncate(k);
    v
}

#[test]
fn closest_search_is_exact_against_brute_force() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(10);
    for size in [0usize, 1, 7, 8, 9, 40, 300, 5_000, 20_000] {
        let mut p = pool(now);
        let mut all = Vec::new();
        while all.len() < size {
            let n = public_node(&mut rng);
            if p.insert(now, n) == PoolInsert::Added {
                all.push(n);
            }
        }
        for _ in 0..6 {
            all.push(public_v6(&mut rng));
            p.insert(now, *all.last().unwrap());
        }
        assert_eq!(p.len(), all.len());
        let mut targets: Vec<Id> = (0..100).map(|_| Id::random(&mut rng)).collect();
        // Targets on and right next to entries, where the neighbourhood is densest.
        for n in all.iter().take(30) {
            targets.push(n.id);
            let mut near = n.id;
            near.0[19] ^= 1;
            targets.push(near);
        }
        for target in &targets {
            for v6 in [false, true] {
                let best = brute_force(&all, target, v6, 20);
                for k in [1, 8, 20] {
                    let expect = &best[..k.min(best.len())];
                    assert_eq!(p.closest(target, v6, k), expect, "pool of {size}, k {k}, v6 {v6}, target {target}");
                }
            }
        }
    }
}

#[test]
fn closest_search_is_exact_for_clustered_ids() {
    // Private addresses take any id: ids that share long prefixes, so that the search must
    // widen across many empty buckets and then pick within a crowded one.
    let now = t0();
    let mut rng = StdRng::seed_from_u64(11);
    let mut p = pool(now);
    let mut all = Vec::new();
    for i in 0..3_000u32 {
        let mut id = Id::random(&mut rng);
        id.0[..2].copy_from_slice(&[0xab, if i % 3 == 0 { 0xcd } else { 0xce }]);
        if i % 10 == 0 {
            id.0[..8].copy_from_slice(&[0x12; 8]);
        }
        let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881));
        let n = CompactNode { id, addr };
        assert_eq!(p.insert(now, n), PoolInsert::Added);
        all.push(n);
    }
    let mut targets: Vec<Id> = (0..100).map(|_| Id::random(&mut rng)).collect();
    targets.extend([Id([0xab; 20]), Id([0x12; 20]), Id([0; 20]), Id([0xff; 20])]);
    for target in &targets {
        assert_eq!(p.closest(target, false, 8), brute_force(&all, target, false, 8), "target {target}");
    }
}

#[test]
fn public_addresses_need_a_bep42_id_and_exempt_ones_do_not() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(12);
    let mut p = pool(now);
    let good = public_node(&mut rng);
    let mut bad = good;
    bad.id.0[0] ^= 0x80;
    assert_eq!(p.insert(now, bad), PoolInsert::InvalidId);
    assert!(p.is_empty());
    assert_eq!(p.insert(now, good), PoolInsert::Added);
    let v6 = public_v6(&mut rng);
    assert_eq!(p.insert(now, CompactNode { id: Id([7; 20]), addr: v6.addr }), PoolInsert::InvalidId);
    assert_eq!(p.insert(now, v6), PoolInsert::Added);
    for exempt in ["10.1.2.3:1", "192.168.9.9:2", "127.0.5.1:3", "[fd00::1]:4"] {
        let n = CompactNode { id: Id([9; 20]), addr: exempt.parse().unwrap() };
        assert_eq!(p.insert(now, n), PoolInsert::Added, "{exempt}");
    }
    assert_eq!(p.len(), 6);
}

#[test]
fn one_entry_per_host_the_newest_wins() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(13);
    let mut p = pool(now);
    // Enough other entries that the buckets have split a few times.
    for _ in 0..2_000 {
        p.insert(now, public_node(&mut rng));
    }
    let first = public_node(&mut rng);
    assert_eq!(p.insert(now, first), PoolInsert::Added);
    let len = p.len();
    assert_eq!(p.insert(now, first), PoolInsert::Refreshed);
    // The same IP on another port, then with another (valid) id: each replaces the last.
    let other_port = CompactNode { addr: SocketAddr::new(first.addr.ip(), first.addr.port() ^ 1), ..first };
    assert_eq!(p.insert(now, other_port), PoolInsert::Replaced { old: first });
    let other_id = CompactNode { id: bep42::node_id_for_ip(first.addr.ip(), &mut rng), ..other_port };
    assert_eq!(p.insert(now, other_id), PoolInsert::Replaced { old: other_port });
    assert_eq!(p.len(), len);
    assert_eq!(p.host_entry(first.addr), Some(other_id));
    assert!(!p.contains(&first) && !p.contains(&other_port) && p.contains(&other_id));
    assert_eq!(p.iter().filter(|n| n.addr.ip() == first.addr.ip()).count(), 1);
    // An IPv6 host is its /64; an IPv4-mapped address is the IPv4 host.
    let v6 = public_v6(&mut rng);
    p.insert(now, v6);
    let IpAddr::V6(ip6) = v6.addr.ip() else { unreachable!() };
    let mut sibling = ip6.octets();
    sibling[15] ^= 0x55;
    let sibling = IpAddr::V6(Ipv6Addr::from(sibling));
    let next = CompactNode { id: bep42::node_id_for_ip(sibling, &mut rng), addr: SocketAddr::new(sibling, 7) };
    assert_eq!(p.insert(now, next), PoolInsert::Replaced { old: v6 });
    let IpAddr::V4(ip4) = other_id.addr.ip() else { unreachable!() };
    let mapped = CompactNode { addr: SocketAddr::new(ip4.to_ipv6_mapped().into(), 99), ..other_id };
    assert!(matches!(p.insert(now, mapped), PoolInsert::Replaced { .. }));
    assert_eq!(p.family_lens().1, 1);
    // Exempt addresses: one per IP as well (loopback: one per address and port, as in the
    // rest of the code, since test networks share an IP).
    let a = CompactNode { id: Id([1; 20]), addr: "10.9.9.9:1".parse().unwrap() };
    let b = CompactNode { id: Id([2; 20]), addr: "10.9.9.9:2".parse().unwrap() };
    assert_eq!(p.insert(now, a), PoolInsert::Added);
    assert_eq!(p.insert(now, b), PoolInsert::Replaced { old: a });
    assert_eq!(p.host_entry(a.addr), Some(b));
}

#[test]
fn a_full_pool_refuses_newcomers_and_keeps_its_entries() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(14);
    let mut p = Pool::new(PoolConfig { capacity: 100, ..PoolConfig::default() }, now);
    let mut kept = Vec::new();
    while p.len() < 100 {
        let n = public_node(&mut rng);
        if p.insert(now, n) == PoolInsert::Added {
            kept.push(n);
        }
    }
    for _ in 0..50 {
        assert_eq!(p.insert(now, public_node(&mut rng)), PoolInsert::Full);
    }
    assert!(kept.iter().all(|n| p.contains(n)));
    // A member moving to another port still may: it frees its own place.
    let moved = CompactNode { addr: SocketAddr::new(kept[0].addr.ip(), 1), ..kept[0] };
    assert!(matches!(p.insert(now, moved), PoolInsert::Replaced { .. }));
    assert_eq!(p.len(), 100);
}

#[test]
fn silent_entries_are_pinged_after_max_age_and_dropped_after_grace() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(15);
    let cfg = PoolConfig::default();
    let mut p = Pool::new(cfg, now);
    let nodes: Vec<CompactNode> = (0..10).map(|_| public_node(&mut rng)).collect();
    for n in &nodes {
        p.insert(now, *n);
    }
    assert!(p.sweep(now + cfg.max_age - Duration::from_secs(1)).is_empty(), "too early");
    let stale_at = now + cfg.max_age;
    let mut stale = p.sweep(stale_at);
    stale.sort_by_key(|n| n.id);
    let mut expect = nodes.clone();
    expect.sort_by_key(|n| n.id);
    assert_eq!(stale, expect, "every silent entry is handed back to be pinged");
    assert_eq!(p.len(), 10, "...but not dropped yet");
    // Half of them answer.
    for n in &nodes[..5] {
        assert_eq!(p.insert(stale_at + Duration::from_secs(5), *n), PoolInsert::Refreshed);
    }
    p.sweep(now + cfg.max_age + cfg.grace);
    assert_eq!(p.len(), 5);
    assert!(nodes[..5].iter().all(|n| p.contains(n)));
    assert!(p.unsaved());
}

#[test]
fn the_sweep_covers_a_large_pool_within_half_the_grace() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(16);
    let cfg = PoolConfig::default();
    let mut p = Pool::new(cfg, now);
    for _ in 0..20_000 {
        p.insert(now, public_node(&mut rng));
    }
    for _ in 0..3 {
        p.insert(now, public_v6(&mut rng));
    }
    let len = p.len();
    let at = now + cfg.max_age;
    let mut seen = std::collections::HashSet::new();
    let ticks = cfg.grace.as_secs() / 2;
    for s in 0..ticks {
        for n in p.sweep(at + Duration::from_secs(s)) {
            seen.insert(n.addr);
        }
        assert!(p.sweep_batch() >= len / ticks as usize);
    }
    assert_eq!(seen.len(), len, "every entry (both families) is visited once per grace/2");
}

#[test]
fn loaded_entries_are_served_and_pinged_again_soon() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(17);
    let mut p = pool(now);
    let mut saved: Vec<CompactNode> = (0..20).map(|_| public_node(&mut rng)).collect();
    let mut forged = saved[0];
    forged.id.0[1] ^= 0x40;
    saved.push(forged);
    assert_eq!(p.load(now, &saved), 20, "BEP 42 applies to saved entries too");
    assert_eq!(p.closest(&saved[3].id, false, 1), vec![saved[3]]);
    let stale: std::collections::HashSet<CompactNode> =
        (0..2).flat_map(|s| p.sweep(now + Duration::from_secs(s))).collect();
    assert_eq!(stale.len(), 20, "all of them are pinged within the first sweeps");
}

#[test]
fn memory_is_about_the_entries_themselves() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(18);
    let mut p = pool(now);
    for _ in 0..50_000 {
        p.insert(now, public_node(&mut rng));
    }
    let per_entry = p.heap_bytes() as f64 / p.len() as f64;
    assert_eq!(std::mem::size_of::<Entry<4>>(), 32);
    assert_eq!(std::mem::size_of::<Entry<16>>(), 44);
    assert!(per_entry < 36.0, "{per_entry:.1} bytes per entry");
}
