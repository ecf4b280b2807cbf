//! The traversal alone: slots, windows, retries and termination, with no node around it.

use super::*;

fn t0() -> Instant {
    crate::clock::now()
}

fn node(first_byte: u8, i: u8) -> CompactNode {
    let mut id = [0u8; 20];
    id[0] = first_byte;
    id[19] = i;
    CompactNode { id: Id(id), addr: SocketAddr::from(([10, 0, first_byte, i], 6881)) }
}

fn lookup(alpha: usize) -> Lookup {
    let config = LookupConfig { k: 8, alpha, max_candidates: 64, max_queries: 100, ..LookupConfig::default() };
    Lookup::new(LookupId(1), LookupKind::FindNode, Id::ZERO, Id::MAX, config, t0())
}

fn drain(l: &mut Lookup) -> Vec<SocketAddr> {
    std::iter::from_fn(|| l.next_query()).map(|(_, a)| a).collect()
}

#[test]
fn at_most_alpha_in_flight_closest_first_and_never_twice() {
    let mut l = lookup(3);
    let nodes: Vec<_> = (1..=10).rev().map(|i| node(i, 0)).collect();
    l.add_nodes(&nodes, 0);
    let first = drain(&mut l);
    assert_eq!(first, vec![node(1, 0).addr, node(2, 0).addr, node(3, 0).addr]);
    // An answer frees one slot: exactly one new query, to the next closest.
    l.on_response(node(1, 0).addr, node(1, 0).id, &[], &[], None);
    assert_eq!(drain(&mut l), vec![node(4, 0).addr]);
    // The same node answering again changes nothing.
    l.on_response(node(1, 0).addr, node(1, 0).id, &[], &[], None);
    assert!(drain(&mut l).is_empty());
}

#[test]
fn ends_when_the_k_closest_answered() {
    let mut l = lookup(8);
    let nodes: Vec<_> = (1..=12).map(|i| node(i, 0)).collect();
    l.add_nodes(&nodes, 0);
    let asked = drain(&mut l);
    assert_eq!(asked.len(), 8);
    assert!(!l.is_done());
    for n in &nodes[..8] {
        l.on_response(n.addr, n.id, &[], &[], None);
    }
    assert!(l.is_done());
    let closest: Vec<_> = l.closest().into_iter().map(|(n, _)| n).collect();
    assert_eq!(closest, nodes[..8].to_vec());
    // Far nodes were never needed.
    assert_eq!(l.stats().queries, 8);
}

#[test]
fn closer_nodes_from_answers_are_followed_and_rounds_counted() {
    let mut l = lookup(1);
    l.add_nodes(&[node(0x80, 0)], 0);
    assert_eq!(drain(&mut l), vec![node(0x80, 0).addr]);
    l.on_response(node(0x80, 0).addr, node(0x80, 0).id, &[node(0x40, 0)], &[], None);
    assert_eq!(drain(&mut l), vec![node(0x40, 0).addr]);
    l.on_response(node(0x40, 0).addr, node(0x40, 0).id, &[node(0x01, 0)], &[], None);
    assert_eq!(drain(&mut l), vec![node(0x01, 0).addr]);
    l.on_response(node(0x01, 0).addr, node(0x01, 0).id, &[], &[], None);
    assert!(l.is_done());
    assert_eq!(l.stats().rounds, 3);
}

#[test]
fn short_timeout_frees_the_slot_and_retries_once() {
    let mut l = lookup(1);
    l.add_nodes(&[node(1, 0), node(2, 0)], 0);
    assert_eq!(drain(&mut l), vec![node(1, 0).addr]);
    match l.on_short_timeout(node(1, 0).addr) {
        ShortTimeout::Retry { addr, .. } => assert_eq!(addr, node(1, 0).addr),
        ShortTimeout::Nothing => panic!("expected a retry"),
    }
    // The slot is free for the next node.
    assert_eq!(drain(&mut l), vec![node(2, 0).addr]);
    assert!(matches!(l.on_short_timeout(node(1, 0).addr), ShortTimeout::Nothing));
    // A late answer to either attempt still counts.
    l.on_response(node(1, 0).addr, node(1, 0).id, &[], &[], None);
    l.on_response(node(2, 0).addr, node(2, 0).id, &[], &[], None);
    assert!(l.is_done());
    assert_eq!(l.closest().len(), 2);
}

#[test]
fn failed_nodes_leave_the_window() {
    let mut l = lookup(2);
    l.add_nodes(&[node(1, 0), node(2, 0), node(3, 0)], 0);
    drain(&mut l);
    l.on_short_timeout(node(1, 0).addr);
    // Two attempts were outstanding; only when both time out is the node failed.
    l.on_timeout(node(1, 0).addr);
    l.on_timeout(node(1, 0).addr);
    l.on_response(node(2, 0).addr, node(2, 0).id, &[], &[], None);
    let next = drain(&mut l);
    assert_eq!(next, vec![node(3, 0).addr]);
    l.on_response(node(3, 0).addr, node(3, 0).id, &[], &[], None);
    assert!(l.is_done());
    let ids: Vec<_> = l.closest().into_iter().map(|(n, _)| n.id).collect();
    assert_eq!(ids, vec![node(2, 0).id, node(3, 0).id]);
}

#[test]
fn an_answer_under_another_id_is_distrusted() {
    let mut l = lookup(1);
    l.add_nodes(&[node(1, 0)], 0);
    drain(&mut l);
    l.on_response(node(1, 0).addr, node(9, 9).id, &[node(2, 0)], &[], None);
    assert!(l.closest().is_empty());
    assert!(drain(&mut l).is_empty(), "nodes named by an impostor are not followed");
    assert!(l.is_done());
}

#[test]
fn peers_are_reported_once_and_tokens_kept() {
    let mut l = lookup(2);
    l.add_nodes(&[node(1, 0), node(2, 0)], 0);
    drain(&mut l);
    let p: SocketAddr = "1.2.3.4:5".parse().unwrap();
    assert_eq!(l.on_response(node(1, 0).addr, node(1, 0).id, &[], &[p], Some(b"t1".to_vec())), vec![p]);
    assert!(l.on_response(node(2, 0).addr, node(2, 0).id, &[], &[p], None).is_empty());
    assert_eq!(l.closest()[0].1.as_deref(), Some(&b"t1"[..]));
}

#[test]
fn routers_are_asked_and_learn_their_id() {
    let mut l = lookup(3);
    let router: SocketAddr = "10.9.9.9:6881".parse().unwrap();
    l.add_router(router);
    assert_eq!(drain(&mut l), vec![router]);
    l.on_response(router, node(5, 0).id, &[node(1, 0)], &[], None);
    assert_eq!(drain(&mut l), vec![node(1, 0).addr]);
}

#[test]
fn query_budget_bounds_the_lookup() {
    let config = LookupConfig { k: 8, alpha: 8, max_candidates: 64, max_queries: 5, ..LookupConfig::default() };
    let mut l = Lookup::new(LookupId(1), LookupKind::FindNode, Id::ZERO, Id::MAX, config, t0());
    let nodes: Vec<_> = (1..=20).map(|i| node(i, 0)).collect();
    l.add_nodes(&nodes, 0);
    assert_eq!(drain(&mut l).len(), 5);
    for n in &nodes[..5] {
        l.on_timeout(n.addr);
    }
    assert!(l.is_done());
}

/// A node at `ip` with an id that has `first_byte` first.
fn node_at(first_byte: u8, i: u8, ip: [u8; 4], port: u16) -> CompactNode {
    let mut id = [0u8; 20];
    id[0] = first_byte;
    id[18] = i;
    CompactNode { id: Id(id), addr: SocketAddr::from((ip, port)) }
}

#[test]
fn one_host_cannot_fill_the_candidates_and_a_network_gets_a_few() {
    let mut l = lookup(1);
    let liar = node_at(0x80, 0, [198, 51, 100, 7], 6881);
    l.add_nodes(&[liar], 0);
    assert_eq!(drain(&mut l), vec![liar.addr]);
    // It answers with 2,500 nodes at its own IP, all closer to the target than anyone.
    let same_ip: Vec<_> = (0..2500u32)
        .map(|i| {
            let mut n = node_at(0, (i % 250) as u8, [198, 51, 100, 7], 1024 + i as u16);
            n.id.0[17] = (i / 250) as u8;
            n
        })
        .collect();
    l.on_response(liar.addr, liar.id, &same_ip, &[], None);
    assert!(drain(&mut l).is_empty(), "no node of the liar's own host is taken");
    // Nodes of its /24: a few at most.
    let same_net: Vec<_> = (1..=200u8).map(|i| node_at(0, i, [198, 51, 100, i], 6881)).collect();
    let mut l = lookup(8);
    l.add_nodes(&[liar], 0);
    drain(&mut l);
    l.on_response(liar.addr, liar.id, &same_net, &[], None);
    let asked = drain(&mut l);
    assert_eq!(asked.len(), LookupConfig::default().max_per_net - 1, "the liar itself is one of its /24");
}

#[test]
fn values_are_capped_per_reply_and_per_lookup() {
    let config = LookupConfig { k: 8, alpha: 8, max_values_per_reply: 200, max_peers: 500, ..LookupConfig::default() };
    let mut l = Lookup::new(LookupId(1), LookupKind::GetPeers, Id::ZERO, Id::MAX, config, t0());
    let nodes: Vec<_> = (1..=8).map(|i| node(i, 0)).collect();
    l.add_nodes(&nodes, 0);
    drain(&mut l);
    let mut total = 0;
    for (k, n) in nodes.iter().enumerate() {
        let values: Vec<SocketAddr> =
            (0..8000u32).map(|i| SocketAddr::from(((0x0c00_0000 + k as u32 * 10_000 + i).to_be_bytes(), 80))).collect();
        let fresh = l.on_response(n.addr, n.id, &[], &values, None);
        assert!(fresh.len() <= 200, "{} values taken from one reply", fresh.len());
        total += fresh.len();
    }
    assert_eq!(total, 500, "the lookup's cap");
    assert_eq!(l.peers().len(), 500);
}

#[test]
fn ids_valid_for_their_address_come_first_among_the_closest() {
    let mut l = lookup(8);
    // Eight close nodes with made-up ids on public addresses, and eight a little farther
    // with BEP 42 ids for theirs.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let sybils: Vec<_> = (1..=8u8).map(|i| node_at(0, i, [203, 0, i, 1], 6881)).collect();
    let honest: Vec<CompactNode> = (1..=8u8)
        .map(|i| {
            let ip = std::net::IpAddr::from([198, 18 + i, 0, 1]);
            CompactNode { id: bep42::node_id_for_ip(ip, &mut rng), addr: SocketAddr::new(ip, 6881) }
        })
        .collect();
    let all: Vec<_> = sybils.iter().chain(&honest).copied().collect();
    // The honest nodes are found first and answer; one of them (or a liar among them)
    // names the Sybils, which then answer too.
    l.add_nodes(&honest, 0);
    for (round, _) in (0..4).enumerate() {
        for a in drain(&mut l) {
            let n = all.iter().find(|n| n.addr == a).unwrap();
            let named = if round == 0 && *n == honest[0] { &sybils[..] } else { &[] };
            l.on_response(n.addr, n.id, named, &[], None);
        }
    }
    assert_eq!(l.stats().responses, 16, "everyone answered");
    let closest: Vec<_> = l.closest().into_iter().map(|(n, _)| n).collect();
    assert_eq!(closest.len(), 8);
    assert!(closest.iter().all(|n| honest.contains(n)), "valid ids are preferred: {closest:?}");
}
