//! The peer store's tokens, expiry and caps, and the attacks the caps are for: one host or
//! one network trying to own a swarm or the whole store.

use super::*;
use crate::id::Id;
use crate::net::addr::KeyCounts;
use rand::{rngs::StdRng, SeedableRng};

fn t0() -> Instant {
    crate::clock::now()
}

/// Peer `i` on its own /24, so that the per-network caps stay out of the way.
fn peer(i: u32) -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::from(0x0b00_0000 + (i << 8) + 1), 6881))
}

fn ih(i: u16) -> InfoHash {
    let mut b = [0u8; 20];
    b[..2].copy_from_slice(&i.to_be_bytes());
    Id(b)
}

fn stored(s: &PeerStore, h: InfoHash) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = s
        .swarms
        .get(&h)
        .map(|w| w.peers.iter().flat_map(|(ip, l)| l.iter().map(|e| SocketAddr::new(*ip, e.port))).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Every count the store keeps agrees with its entries.
fn assert_consistent(s: &PeerStore) {
    let mut counts = KeyCounts::default();
    let mut total = 0;
    for (k, w) in &s.swarms {
        assert_eq!(s.keys[w.slot], *k, "slots stay consistent");
        let mut local = KeyCounts::default();
        let mut n = 0;
        for (ip, list) in &w.peers {
            assert!(!list.is_empty());
            for e in list {
                let a = SocketAddr::new(*ip, e.port);
                for key in [host_key(a), net_key(a)] {
                    counts.add(key);
                    local.add(key);
                }
                n += 1;
            }
        }
        assert_eq!(w.len, n);
        assert_eq!(w.counts, local);
        total += n;
    }
    assert_eq!(s.keys.len(), s.swarms.len());
    assert_eq!(total, s.peer_count());
    assert_eq!(counts, s.counts);
}

#[test]
fn tokens_are_bound_to_ip_and_last_two_rotations() {
    let mut rng = StdRng::seed_from_u64(1);
    let now = t0();
    let cfg = StoreConfig::default();
    let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    let tok = s.token_for(a);
    assert!(s.token_valid(a, &tok));
    assert!(!s.token_valid(b, &tok), "a token is no good from another address");
    assert!(!s.token_valid(a, &tok[..4]));
    s.tick(now + cfg.secret_rotation, &mut rng);
    assert!(s.token_valid(a, &tok), "still valid one rotation later");
    s.tick(now + cfg.secret_rotation * 2, &mut rng);
    assert!(!s.token_valid(a, &tok), "expired after two rotations");
}

#[test]
fn peers_expire_after_their_ttl() {
    let mut rng = StdRng::seed_from_u64(2);
    let now = t0();
    let cfg = StoreConfig::default();
    let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
    assert_eq!(s.announce(now, ih(1), peer(1), false), Announced::Stored);
    assert_eq!(s.announce(now + Duration::from_secs(600), ih(1), peer(2), true), Announced::Stored);
    assert_eq!(s.peer_count(), 2);
    let later = now + cfg.peer_ttl + Duration::from_secs(1);
    assert_eq!(s.get_peers(later, &ih(1), false, &mut rng), vec![peer(2)], "expired peers are not handed out");
    s.tick(later + SWEEP_INTERVAL, &mut rng);
    assert_eq!(s.peer_count(), 1);
    assert_eq!(s.is_seed(&ih(1), &peer(2)), Some(true));
    assert_eq!(s.host_entries(peer(1)), 0, "the expired host's budget is given back");
    s.tick(later + cfg.peer_ttl + SWEEP_INTERVAL * 2, &mut rng);
    assert_eq!((s.peer_count(), s.info_hash_count()), (0, 0), "empty swarms are dropped");
    assert!(s.counts.is_empty());
}

#[test]
fn a_full_swarm_and_a_full_store_refuse_newcomers_instead_of_evicting() {
    let mut rng = StdRng::seed_from_u64(3);
    let now = t0();
    let cfg = StoreConfig { max_info_hashes: 10, max_peers_per_hash: 20, ..StoreConfig::default() };
    let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
    let at = |secs: u64| now + Duration::from_secs(secs);

    // One swarm over-filled: 25 peers, one a second. The first 20 stay; the rest are refused.
    for i in 0..25u32 {
        let expect = if i < 20 { Announced::Stored } else { Announced::Refused(Refusal::SwarmFull) };
        assert_eq!(s.announce(at(i.into()), ih(0), peer(i), false), expect, "peer {i}");
    }
    assert_eq!(stored(&s, ih(0)), (0..20).map(peer).collect::<Vec<_>>(), "nobody was pushed out");
    assert!(!s.has_room_for(&ih(0)), "no token for a full swarm");
    // A member re-announcing is refreshed, not refused.
    assert_eq!(s.announce(at(30), ih(0), peer(5), false), Announced::Refreshed);
    assert_eq!(s.peer_count(), 20);

    // Nine more swarms fill the store; a tenth-plus-one is refused and no swarm is evicted,
    // not even the smallest (ih(4), one peer).
    let size = |k: u16| if k == 4 { 1 } else { u32::from(k) + 2 };
    for k in 1..=9u16 {
        for j in 0..size(k) {
            assert!(s.announce(at(40), ih(k), peer(1000 + 100 * u32::from(k) + j), false).stored());
        }
    }
    let total = 20 + (1..=9).map(size).sum::<u32>() as usize;
    assert_eq!((s.info_hash_count(), s.peer_count()), (10, total));
    assert!(!s.has_room_for(&ih(50)));
    assert!(s.has_room_for(&ih(4)), "a stored swarm with room still gets tokens");
    assert_eq!(s.announce(at(50), ih(50), peer(5000), false), Announced::Refused(Refusal::StoreFull));
    assert_eq!(s.info_hash_count(), 10);
    for k in 0..=9u16 {
        assert!(s.swarms.contains_key(&ih(k)), "swarm {k} kept");
    }
    assert_eq!(stored(&s, ih(4)), vec![peer(1400)], "the small swarm is still findable");
    assert_consistent(&s);

    // Once the first swarm's peers expire, there is room again.
    s.tick(at(20) + cfg.peer_ttl + SWEEP_INTERVAL, &mut rng);
    assert!(!s.swarms.contains_key(&ih(0)));
    assert_eq!(s.announce(at(20) + cfg.peer_ttl + SWEEP_INTERVAL, ih(50), peer(5000), false), Announced::Stored);
    assert_consistent(&s);
}

#[test]
fn a_host_gets_a_few_entries_per_swarm_and_new_ports_replace_its_own() {
    let mut rng = StdRng::seed_from_u64(6);
    let now = t0();
    let cfg = StoreConfig::default();
    let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
    let host = |port: u16| SocketAddr::from(([198, 51, 100, 7], port));
    for p in 0..300u16 {
        let r = s.announce(now + Duration::from_secs(p.into()), ih(1), host(1000 + p), false);
        let expect = if (p as usize) < cfg.max_per_host_per_swarm { Announced::Stored } else { Announced::ReplacedOwn };
        assert_eq!(r, expect, "port {p}");
    }
    // The host holds exactly its cap here: its newest ports.
    let newest: Vec<SocketAddr> = (300 - cfg.max_per_host_per_swarm as u16..300).map(|p| host(1000 + p)).collect();
    assert_eq!(stored(&s, ih(1)), newest);
    // Honest peers are not displaced: 96 others still make up 96 of the 100 values.
    for i in 0..96 {
        assert!(s.announce(now, ih(1), peer(i), false).stored());
    }
    let values = s.get_peers(now + Duration::from_secs(301), &ih(1), false, &mut rng);
    assert_eq!(values.len(), 100);
    assert_eq!(values.iter().filter(|a| a.ip() == host(0).ip()).count(), cfg.max_per_host_per_swarm);
    assert_consistent(&s);
}

#[test]
fn an_ipv6_host_is_its_slash_64_and_a_network_is_capped_per_swarm() {
    let mut rng = StdRng::seed_from_u64(7);
    let now = t0();
    let cfg = StoreConfig::default();
    let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
    // Many addresses of one /64: one host.
    for i in 0..50u16 {
        let a: SocketAddr = format!("[2001:db8:1:2::{i:x}]:6881").parse().unwrap();
        s.announce(now, ih(1), a, false);
    }
    assert_eq!(stored(&s, ih(1)).len(), cfg.max_per_host_per_swarm);
    // Many hosts of one IPv4 /24: the network's share of one swarm is capped.
    for i in 1..=250u8 {
        s.announce(now, ih(2), SocketAddr::from(([203, 0, 113, i], 6881)), false);
    }
    assert_eq!(stored(&s, ih(2)).len(), cfg.max_per_net_per_swarm);
    assert_consistent(&s);
}

#[test]
fn one_ip_with_a_thousand_ports_in_five_thousand_swarms_holds_at_most_its_cap() {
    let mut rng = StdRng::seed_from_u64(8);
    let now = t0();
    let cfg = StoreConfig::default();
    let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
    // A small, legitimate swarm announced from other addresses first.
    let small = ih(60_000);
    for i in 0..3 {
        assert!(s.announce(now, small, peer(i), false).stored());
    }
    let attacker = |port: u16| SocketAddr::from(([198, 51, 100, 66], port));
    let mut stored_any = 0usize;
    for h in 0..5000u16 {
        for port in 0..1000u16 {
            if s.announce(now, ih(h), attacker(1024 + port), false).stored() {
                stored_any += 1;
            }
        }
    }
    assert!(stored_any > 0);
    assert_eq!(s.host_entries(attacker(1)), cfg.max_per_host, "the host's budget over all swarms");
    assert_eq!(s.peer_count(), cfg.max_per_host + 3);
    assert!(s.info_hash_count() <= cfg.max_per_host + 1);
    let found = s.get_peers(now, &small, false, &mut rng);
    assert_eq!(found.len(), 3, "the small swarm is still findable");
    assert_consistent(&s);
}

#[test]
fn a_million_announces_from_ten_thousand_addresses_stay_within_the_caps() {
    let mut rng = StdRng::seed_from_u64(9);
    let now = t0();
    let cfg = StoreConfig::default();
    let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..1_000_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let host = (x % 10_000) as u32;
        let a = SocketAddr::from((std::net::Ipv4Addr::from(0x2000_0000 + host * 977), 1024 + (x >> 48) as u16 % 1000));
        s.announce(now + Duration::from_micros(i), ih((x >> 20) as u16), a, false);
    }
    assert!(s.peer_count() <= cfg.max_peers);
    assert!(s.info_hash_count() <= cfg.max_info_hashes);
    for w in s.swarms.values() {
        assert!(w.len <= cfg.max_peers_per_hash);
    }
    assert!(s.counts.iter().all(|(k, c)| {
        let per_host = crate::net::addr::is_host_key(k);
        c <= if per_host { cfg.max_per_host } else { cfg.max_per_net }
    }));
    assert_consistent(&s);
}

#[test]
fn answers_are_a_random_packet_sized_subset_of_the_right_family() {
    let mut rng = StdRng::seed_from_u64(4);
    let now = t0();
    let mut s = PeerStore::new(StoreConfig::default(), now, &mut rng);
    for i in 0..500 {
        s.announce(now, ih(1), peer(i), false);
    }
    let v6: SocketAddr = "[2001:db8::1]:6881".parse().unwrap();
    s.announce(now, ih(1), v6, false);
    let a = s.get_peers(now, &ih(1), false, &mut rng);
    let b = s.get_peers(now, &ih(1), false, &mut rng);
    assert_eq!(a.len(), 100);
    assert!(a.iter().all(|p| p.is_ipv4()));
    assert_ne!(a, b, "different random subsets");
    assert_eq!(s.get_peers(now, &ih(1), true, &mut rng), vec![v6]);
    assert!(s.get_peers(now, &ih(2), false, &mut rng).is_empty());
}

#[test]
fn samples_are_distinct_and_count_everything() {
    let mut rng = StdRng::seed_from_u64(5);
    let now = t0();
    let mut s = PeerStore::new(StoreConfig::default(), now, &mut rng);
    assert_eq!(s.sample(&mut rng), (Vec::new(), 0));
    for i in 0..30u16 {
        s.announce(now, ih(i), peer(i.into()), false);
    }
    let (samples, num) = s.sample(&mut rng);
    assert_eq!(num, 30);
    assert_eq!(samples.len(), 20);
    let unique: std::collections::HashSet<_> = samples.iter().collect();
    assert_eq!(unique.len(), 20);
}
