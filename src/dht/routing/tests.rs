use std::net::{Ipv4Addr, SocketAddr};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

fn t0() -> Instant {
    crate::clock::now()
}

/// A contact in its own /24 so the subnet rule stays out of the way unless a test wants it.
fn node(id: Id, i: u32) -> CompactNode {
    CompactNode { id, addr: SocketAddr::from((Ipv4Addr::from(0x0a00_0001 + (i << 8)), 6881)) }
}

fn own() -> Id {
    Id([0x55; 20])
}

/// An id that shares exactly `prefix` bits with `own()`, distinguished by `tag`.
fn id_at_depth(prefix: usize, tag: u8) -> Id {
    let mut rng = StdRng::seed_from_u64(u64::from(tag) + 1000 * prefix as u64);
    own().random_with_prefix(prefix, &mut rng)
}

#[test]
fn full_far_bucket_caches_while_own_bucket_splits() {
    let now = t0();
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    for i in 0..8u32 {
        assert_eq!(t.heard_from(now, node(id_at_depth(0, i as u8), i), Contact::Response), InsertOutcome::Added);
    }
    assert_eq!(t.bucket_count(), 1);
    // The ninth node of the far half splits the one bucket, which covered our id too...
    let out = t.heard_from(now, node(id_at_depth(0, 100), 100), Contact::Response);
    assert_eq!(t.bucket_count(), 2);
    // ...but bucket 0 (the far half) is still full of good nodes: the newcomer waits.
    assert_eq!(out, InsertOutcome::Cached { ping: vec![] });
    assert_eq!(t.len(), 8);
    // Nodes near us keep splitting the bucket that holds our own id.
    for d in 1..20usize {
        let i = 200 + d as u32;
        assert_eq!(t.heard_from(now, node(id_at_depth(d, 1), i), Contact::Response), InsertOutcome::Added);
    }
    assert_eq!(t.len(), 27);
    assert!(t.bucket_count() > 10);
    assert_eq!(t.bucket_summary()[0], (8, 1));
}

#[test]
fn closest_matches_brute_force() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(9);
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    let mut all = Vec::new();
    for i in 0..5000u32 {
        // Biased towards our id so that many buckets fill.
        let depth = rng.random_range(0..24usize);
        let id = own().random_with_prefix(depth, &mut rng);
        let n = node(id, i);
        if matches!(t.heard_from(now, n, Contact::Response), InsertOutcome::Added) {
            all.push(n);
        }
    }
    let members: Vec<CompactNode> = t.iter().map(|e| e.node).collect();
    assert_eq!(members.len(), t.len());
    for _ in 0..300 {
        let target = if rng.random_bool(0.5) {
            Id::random(&mut rng)
        } else {
            own().random_with_prefix(rng.random_range(0..30), &mut rng)
        };
        let mut expect = members.clone();
        expect.sort_by_key(|n| n.id.distance(&target));
        expect.truncate(8);
        assert_eq!(t.closest(&target, 8, false), expect, "target {target}");
    }
    assert_eq!(t.closest(&own(), 1000, false).len(), members.len());
    // has_confirmed(n) says whether closest(_, n, false) fills all n places.
    for n in [1, 8, members.len(), members.len() + 1] {
        assert_eq!(t.has_confirmed(n), t.closest(&own(), n, false).len() == n, "n = {n}");
    }
}

#[test]
fn one_node_per_ip_and_two_per_subnet() {
    let now = t0();
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    let a = node(id_at_depth(0, 1), 1);
    assert_eq!(t.heard_from(now, a, Contact::Response), InsertOutcome::Added);
    let same_ip = CompactNode { id: id_at_depth(0, 2), addr: SocketAddr::new(a.addr.ip(), 7000) };
    assert_eq!(t.heard_from(now, same_ip, Contact::Response), InsertOutcome::Rejected(Rejection::DuplicateIp));
    let subnet =
        |last: u8, tag: u8| CompactNode { id: id_at_depth(0, tag), addr: SocketAddr::from(([10, 0, 1, last], 6881)) };
    assert_eq!(t.heard_from(now, subnet(2, 3), Contact::Response), InsertOutcome::Added);
    assert_eq!(t.heard_from(now, subnet(3, 4), Contact::Response), InsertOutcome::Rejected(Rejection::SubnetFull));
    let relaxed = RoutingConfig { one_per_ip: false, max_per_subnet: 0, ..RoutingConfig::default() };
    let mut t = RoutingTable::new(own(), relaxed);
    for tag in 1..=4 {
        assert_eq!(t.heard_from(now, subnet(2, tag), Contact::Response), InsertOutcome::Added);
    }
}

#[test]
fn a_bad_node_gives_way_to_the_best_replacement() {
    let now = t0();
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    let far: Vec<CompactNode> = (0..8u32).map(|i| node(id_at_depth(0, i as u8), i)).collect();
    for n in &far {
        t.heard_from(now, *n, Contact::Response);
    }
    let near = node(id_at_depth(3, 1), 50);
    t.heard_from(now, near, Contact::Response); // splits off our half
    let waiting = node(id_at_depth(0, 60), 60);
    assert!(matches!(t.heard_from(now, waiting, Contact::Response), InsertOutcome::Cached { .. }));
    // Sixteen minutes later every far node is questionable: a newcomer asks for pings.
    let later = now + Duration::from_secs(16 * 60);
    let other = node(id_at_depth(0, 61), 61);
    let InsertOutcome::Cached { ping } = t.heard_from(later, other, Contact::Query) else { panic!("cached") };
    assert_eq!(ping.len(), 8, "each questionable member is pinged once");
    let InsertOutcome::Cached { ping } = t.heard_from(later, other, Contact::Query) else { panic!("cached") };
    assert!(ping.is_empty(), "not pinged again right away");
    // The first far node fails twice: bad, and the answering replacement takes its place.
    t.failed(&far[0].id, far[0].addr);
    assert!(t.contains(&far[0].id), "one failure is not enough for a node that answered");
    t.failed(&far[0].id, far[0].addr);
    assert!(!t.contains(&far[0].id));
    assert!(t.contains(&waiting.id), "the answering candidate outranks the one that only queried");
    // A failure reported for a different address is not this node's.
    t.failed(&far[1].id, other.addr);
    t.failed(&far[1].id, other.addr);
    assert!(t.contains(&far[1].id));
}

#[test]
fn queriers_are_unconfirmed_until_they_answer() {
    let now = t0();
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    let q = node(id_at_depth(2, 1), 1);
    assert_eq!(t.heard_from(now, q, Contact::Query), InsertOutcome::Added);
    assert!(t.closest(&q.id, 8, false).is_empty());
    assert_eq!(t.closest(&q.id, 8, true), vec![q]);
    assert!(!t.has_confirmed(1) && t.has_confirmed(0));
    assert!(t.good_nodes(now).is_empty());
    assert!(t.questionable_to_ping(now, 8).is_empty(), "the node pings queriers itself on adding them");
    assert_eq!(t.questionable_to_ping(now + PING_AGAIN_AFTER, 8), vec![q]);
    // One unanswered query removes a node that never answered.
    t.failed(&q.id, q.addr);
    assert!(t.is_empty());
    t.heard_from(now, q, Contact::Query);
    t.heard_from(now, q, Contact::Response);
    assert_eq!(t.good_nodes(now), vec![q]);
}

#[test]
fn answering_nodes_displace_unconfirmed_ones() {
    let now = t0();
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    t.heard_from(now, node(id_at_depth(4, 0), 99), Contact::Response); // our own half stays apart
    for i in 0..8u32 {
        t.heard_from(now, node(id_at_depth(0, i as u8), i), Contact::Query);
    }
    let n = node(id_at_depth(0, 50), 50);
    assert!(matches!(t.heard_from(now, n, Contact::Response), InsertOutcome::ReplacedUnconfirmed { .. }));
    assert!(t.contains(&n.id));
}

#[test]
fn a_known_id_from_a_new_address_is_not_believed_while_the_old_one_answers() {
    let now = t0();
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    let n = node(id_at_depth(1, 1), 1);
    t.heard_from(now, n, Contact::Response);
    let moved = CompactNode { id: n.id, addr: node(n.id, 2).addr };
    assert_eq!(t.heard_from(now, moved, Contact::Response), InsertOutcome::Rejected(Rejection::AddressMismatch));
    t.failed(&n.id, n.addr);
    t.failed(&n.id, n.addr);
    assert_eq!(t.heard_from(now, moved, Contact::Response), InsertOutcome::Updated);
    assert_eq!(t.closest(&n.id, 1, false), vec![moved]);
}

#[test]
fn bep42_ids_are_enforced_or_preferred() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(4);
    let public = |i: u8| SocketAddr::from(([203, 0, i, 1], 6881));
    let strict = RoutingConfig { enforce_bep42: true, ..RoutingConfig::default() };
    let mut t = RoutingTable::new(own(), strict);
    let forged = CompactNode { id: Id([0x11; 20]), addr: public(1) };
    assert_eq!(t.heard_from(now, forged, Contact::Response), InsertOutcome::Rejected(Rejection::InvalidId));
    let honest = CompactNode { id: bep42::node_id_for_ip(public(1).ip(), &mut rng), addr: public(1) };
    assert_eq!(t.heard_from(now, honest, Contact::Response), InsertOutcome::Added);
    let local = CompactNode { id: Id([0x11; 20]), addr: SocketAddr::from(([10, 9, 9, 9], 1)) };
    assert_eq!(t.heard_from(now, local, Contact::Response), InsertOutcome::Added, "private addresses are exempt");

    // Lenient: unverified nodes fill a bucket, then verified ones take their places.
    let mut t = RoutingTable::new(Id([0xff; 20]), RoutingConfig::default());
    t.heard_from(now, CompactNode { id: Id([0xfe; 20]), addr: public(200) }, Contact::Response);
    let mut unverified = 0;
    for i in 1..=8u8 {
        let mut id = Id([0; 20]);
        id.0[19] = i; // top bit 0: the far bucket; not a BEP 42 id for these addresses
        if t.heard_from(now, CompactNode { id, addr: public(i) }, Contact::Response) == InsertOutcome::Added {
            unverified += 1;
        }
    }
    assert_eq!(unverified, 8);
    let mut replaced = 0;
    for i in 100..130u8 {
        let id = bep42::node_id_for_ip(public(i).ip(), &mut rng);
        if id.bit(0) {
            continue;
        }
        if let InsertOutcome::ReplacedUnverified { .. } =
            t.heard_from(now, CompactNode { id, addr: public(i) }, Contact::Response)
        {
            replaced += 1;
        }
    }
    assert_eq!(replaced, 8, "verified ids displaced every unverified one");
    let far: Vec<&Entry> = t.iter().filter(|e| !e.node.id.bit(0)).collect();
    assert_eq!(far.len(), 8);
    assert!(far.iter().all(|e| e.verified), "no unverified node is left in the far bucket");
}

#[test]
fn stale_buckets_get_targets_inside_them() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(5);
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    for d in 0..6usize {
        for tag in 0..9u8 {
            t.heard_from(now, node(id_at_depth(d, tag), (d * 16) as u32 + u32::from(tag)), Contact::Response);
        }
    }
    let buckets = t.bucket_count();
    assert!(t.stale_bucket_targets(now + Duration::from_secs(60), Duration::from_secs(900), &mut rng).is_empty());
    let later = now + Duration::from_secs(901);
    let targets = t.stale_bucket_targets(later, Duration::from_secs(900), &mut rng);
    assert_eq!(targets.len(), buckets);
    for (i, target) in targets.iter().enumerate() {
        assert_eq!(t.bucket_index(target), i);
    }
    assert!(t.stale_bucket_targets(later, Duration::from_secs(900), &mut rng).is_empty(), "refreshed now");
}

#[test]
fn changing_our_id_keeps_the_nodes() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(6);
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    for i in 0..200u32 {
        t.heard_from(now, node(Id::random(&mut rng), i), Contact::Response);
    }
    // Everything the table knows, members before candidates, in the order it rebuilds from.
    let known: Vec<CompactNode> =
        t.buckets.iter().flat_map(|b| b.nodes.iter().chain(&b.replacements)).map(|e| e.node).collect();
    let new_id = Id::random(&mut rng);
    t.set_own_id(new_id);
    assert_eq!(t.own_id(), new_id);
    // A table built fresh around the new id from the same contacts is what the rebuild must match.
    let mut fresh = RoutingTable::new(new_id, RoutingConfig::default());
    for n in &known {
        fresh.heard_from(now, *n, Contact::Response);
    }
    let members = |t: &RoutingTable| {
        let mut ids: Vec<Id> = t.iter().map(|e| e.node.id).collect();
        ids.sort();
        ids
    };
    assert!(fresh.len() > 8, "the test needs more than one bucket's worth: {}", fresh.len());
    assert_eq!(t.len(), fresh.len());
    assert_eq!(members(&t), members(&fresh));
    assert_eq!(t.bucket_summary(), fresh.bucket_summary());
    assert_eq!(t.heard_from(now, node(new_id, 999), Contact::Response), InsertOutcome::Rejected(Rejection::OwnId));
    let ips: std::collections::HashSet<_> = t.iter().map(|e| e.node.addr.ip()).collect();
    assert_eq!(ips.len(), t.iter().count());
}

#[test]
fn client_versions_are_kept_and_counted() {
    let now = t0();
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    let a = node(id_at_depth(0, 1), 1);
    let b = node(id_at_depth(1, 1), 2);
    let c = node(id_at_depth(2, 1), 3);
    for n in [a, b, c] {
        t.heard_from(now, n, Contact::Response);
    }
    t.note_version(&a, b"LT\x02\x01");
    t.note_version(&b, b"\x00\x01a very long hostile version string");
    t.note_version(&CompactNode { id: c.id, addr: a.addr }, b"XX\x00\x01"); // not from c's address
    let e = t.iter().find(|e| e.node.id == a.id).unwrap();
    assert_eq!(e.version.unwrap().as_bytes(), b"LT\x02\x01");
    let counts: Vec<(String, usize)> = t.clients().into_iter().collect();
    assert_eq!(counts, vec![("??".to_string(), 1), ("LT".to_string(), 1), ("none".to_string(), 1)]);
}

#[test]
fn loopback_nodes_are_told_apart_by_port() {
    // A test network on [::1] (IPv6 has one loopback address) runs every node on it: the
    // one-per-IP and per-subnet rules count each port as a host there, and nowhere else.
    let now = t0();
    let mut t = RoutingTable::new(own(), RoutingConfig::default());
    let at = |ip: &str, port: u16| SocketAddr::new(ip.parse().unwrap(), port);
    for port in 1..=4u16 {
        let n = CompactNode { id: id_at_depth(0, port as u8), addr: at("::1", 6000 + port) };
        assert_eq!(t.heard_from(now, n, Contact::Response), InsertOutcome::Added, "[::1]:{}", 6000 + port);
    }
    let public = CompactNode { id: id_at_depth(0, 50), addr: at("2001:4860::1", 1) };
    assert_eq!(t.heard_from(now, public, Contact::Response), InsertOutcome::Added);
    let same_ip = CompactNode { id: id_at_depth(0, 51), addr: at("2001:4860::1", 2) };
    assert_eq!(t.heard_from(now, same_ip, Contact::Response), InsertOutcome::Rejected(Rejection::DuplicateIp));
}
