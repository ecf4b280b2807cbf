//! BEP 32 on a dual-stack node: one routing table per family, `nodes`/`nodes6` as `want`
//! asks, and lookups that run in both families under one id.

use std::net::Ipv6Addr;

use super::*;
use crate::dht::krpc::Response;

fn t0() -> Instant {
    crate::clock::now()
}

const ME: Id = Id([0x11; 20]);
/// The find_node target of these tests: v4 contacts are made closer to it than v6 ones, so
/// that a single shared table would fill an answer's k places with v4 contacts only.
const TARGET: Id = Id([0x80; 20]);

fn dual_node(now: Instant) -> Node {
    let config = Config { derive_id_from_ip: false, dual_stack: true, ..Config::default() };
    Node::new(config, Some(ME), 42, now)
}

fn v4(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, i, 1], 6881))
}

/// A unique-local address, each in its own /64 (the limiter's host unit).
fn v6(i: u8) -> SocketAddr {
    SocketAddr::new(Ipv6Addr::new(0xfd00, 0, 0, i as u16, 0, 0, 0, 1).into(), 6881)
}

/// Close to TARGET (same first byte).
fn near_id(i: u8) -> Id {
    let mut b = [0x80; 20];
    b[19] = i;
    Id(b)
}

/// Far from TARGET (first bit differs).
fn far_id(i: u8) -> Id {
    let mut b = [0x01; 20];
    b[19] = i;
    Id(b)
}

fn message(tid: &[u8], body: Body) -> Vec<u8> {
    Message { tid: tid.to_vec(), version: None, ip: None, read_only: false, body }.encode()
}

fn query(tid: &[u8], sender: Id, method: Method, want: Want) -> Vec<u8> {
    message(tid, Body::Query(Query { id: sender, method, want }))
}

fn sent(node: &mut Node) -> Vec<(SocketAddr, Message)> {
    std::iter::from_fn(|| node.poll_transmit())
        .map(|t| (t.to, Message::decode(&t.payload).expect("node sent an undecodable message")))
        .collect()
}

fn answer_to(node: &mut Node, from: SocketAddr, tid: &[u8]) -> Response {
    let mut answers: Vec<Response> = sent(node)
        .into_iter()
        .filter(|(to, m)| *to == from && m.tid == tid)
        .filter_map(|(_, m)| match m.body {
            Body::Response(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1, "expected exactly one answer");
    answers.remove(0)
}

/// Ten v4 queriers near TARGET and four v6 queriers far from it.
fn populated(now: Instant) -> Node {
    let mut n = dual_node(now);
    for i in 1..=10 {
        n.handle_packet(now, v4(i), &query(b"p", near_id(i), Method::Ping, Want::default()));
    }
    for i in 1..=4 {
        n.handle_packet(now, v6(i), &query(b"p", far_id(i), Method::Ping, Want::default()));
    }
    sent(&mut n);
    n
}

#[test]
fn each_family_has_its_own_table() {
    let now = t0();
    let n = populated(now);
    let t6 = n.table6().expect("a dual-stack node has an IPv6 table");
    assert!((1..=4).all(|i| t6.contains(&far_id(i))), "v6 contacts are in the v6 table");
    assert!((1..=4).all(|i| !n.table().contains(&far_id(i))), "and not in the v4 one");
    assert!(t6.iter().all(|e| e.node.addr.is_ipv6()));
    assert!(n.table().iter().all(|e| e.node.addr.is_ipv4()));
    assert!(n.table().contains(&near_id(1)));
    assert_eq!(n.node_count(), n.table().len() + t6.len());
    assert!(Node::new(Config::default(), None, 1, now).table6().is_none(), "single-stack by default");
}

#[test]
fn a_response_from_a_v6_node_enters_the_v6_table() {
    let now = t0();
    let mut n = dual_node(now);
    n.ping(now, v6(9));
    let out = sent(&mut n);
    assert_eq!(out.len(), 1);
    let (to, q) = &out[0];
    assert_eq!(*to, v6(9));
    n.handle_packet(now, v6(9), &message(&q.tid, Body::Response(Response { id: far_id(9), ..Default::default() })));
    assert!(n.table6().unwrap().contains(&far_id(9)));
    assert!(!n.table().contains(&far_id(9)));
}

#[test]
fn want_n4_n6_gets_both_families_and_the_default_the_queriers_own() {
    let now = t0();
    let mut n = populated(now);
    let both = Want { n4: true, n6: true };
    let find = Method::FindNode { target: TARGET };

    n.handle_packet(now, v4(50), &query(b"b4", Id([0x50; 20]), find.clone(), both));
    let r = answer_to(&mut n, v4(50), b"b4");
    let v6_ids: Vec<Id> = (1..=4).map(far_id).collect();
    assert_eq!(r.nodes.len(), 8, "k v4 nodes: {:?}", r.nodes);
    assert!(r.nodes.iter().all(|c| c.addr.is_ipv4() && c.id.0[0] == 0x80));
    assert_eq!(r.nodes6.len(), 4, "every v6 contact, though all v4 ones are closer: {:?}", r.nodes6);
    for c in &r.nodes6 {
        assert!(v6_ids.contains(&c.id) && c.addr.is_ipv6());
        assert_eq!(c.addr, v6(c.id.0[19]), "each with its own address");
    }

    // Asked from v6 too: still both.
    n.handle_packet(now, v6(50), &query(b"b6", Id([0x51; 20]), find.clone(), both));
    let r = answer_to(&mut n, v6(50), b"b6");
    assert_eq!(r.nodes.len(), 8);
    assert!(v6_ids.iter().all(|id| r.nodes6.iter().any(|c| c.id == *id)), "{:?}", r.nodes6);

    // No `want`: the querier's own family only.
    n.handle_packet(now, v4(51), &query(b"d4", Id([0x52; 20]), find.clone(), Want::default()));
    let r = answer_to(&mut n, v4(51), b"d4");
    assert_eq!((r.nodes.len(), r.nodes6.len()), (8, 0));
    n.handle_packet(now, v6(51), &query(b"d6", Id([0x53; 20]), find.clone(), Want::default()));
    let r = answer_to(&mut n, v6(51), b"d6");
    assert!(r.nodes.is_empty());
    assert!(v6_ids.iter().all(|id| r.nodes6.iter().any(|c| c.id == *id)), "{:?}", r.nodes6);

    // get_peers follows `want` for nodes as well.
    let gp = Method::GetPeers { info_hash: TARGET, noseed: false, scrape: false };
    n.handle_packet(now, v4(52), &query(b"g", Id([0x54; 20]), gp, Want { n4: false, n6: true }));
    let r = answer_to(&mut n, v4(52), b"g");
    assert!(r.nodes.is_empty());
    assert!(v6_ids.iter().all(|id| r.nodes6.iter().any(|c| c.id == *id)), "{:?}", r.nodes6);
}

#[test]
fn a_lookup_runs_in_both_families_under_one_id() {
    let now = t0();
    // The v4 table is full enough to need no router; the v6 table is empty and has one.
    let mut n = dual_node(now);
    for i in 1..=10 {
        n.handle_packet(now, v4(i), &query(b"p", near_id(i), Method::Ping, Want::default()));
    }
    sent(&mut n);
    let router6 = v6(200);
    n.set_routers(now, vec![router6]);

    let id = n.get_peers(now, TARGET);
    let out = sent(&mut n);
    let to6: Vec<&Message> = out.iter().filter(|(to, _)| *to == router6).map(|(_, m)| m).collect();
    assert_eq!(to6.len(), 1, "the v6 family's lookup asks the v6 router: {out:?}");
    assert!(out.iter().any(|(to, _)| to.is_ipv4()), "and the v4 family's asks v4 contacts");

    // The v6 router answers with a v6 peer.
    let peer6 = SocketAddr::new(Ipv6Addr::new(0xfd00, 0, 0, 0x77, 0, 0, 0, 2).into(), 7000);
    let resp = Response { id: far_id(200), values: vec![peer6], token: Some(b"tok".to_vec()), ..Default::default() };
    n.handle_packet(now, router6, &message(&to6[0].tid, Body::Response(resp)));
    assert!(n.table6().unwrap().contains(&far_id(200)), "the answering router joins the v6 table");

    // Let everything else time out.
    let later = now + Duration::from_secs(120);
    n.handle_timeout(later);
    let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
    let peers: Vec<SocketAddr> = events
        .iter()
        .filter_map(|e| match e {
            Event::Peers { lookup, peers, .. } if *lookup == id => Some(peers.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(peers, vec![peer6]);
    let done: Vec<&LookupSummary> = events
        .iter()
        .filter_map(|e| match e {
            Event::LookupDone(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 1, "one LookupDone for both families: {done:?}");
    assert_eq!(done[0].id, id);
    assert_eq!(done[0].peers, 1);
}

#[test]
fn each_family_judges_addresses_by_its_own_scope() {
    // Public over IPv4, on a LAN (unique-local addresses) over IPv6.
    let now = t0();
    let config = Config {
        derive_id_from_ip: false,
        dual_stack: true,
        scope: crate::net::addr::Scope::Public,
        scope_v6: Some(crate::net::addr::Scope::Private),
        ..Config::default()
    };
    let mut n = Node::new(config, Some(ME), 42, now);
    let router4 = SocketAddr::from(([198, 51, 100, 1], 6881));
    let router6 = v6(1);
    n.set_routers(now, vec![router4, router6]);
    n.find_node(now, TARGET);
    let out = sent(&mut n);
    let tid_to = |to: SocketAddr| out.iter().find(|(a, _)| *a == to).map(|(_, m)| m.tid.clone()).expect("queried");
    let lan4 = CompactNode { id: near_id(4), addr: SocketAddr::from(([10, 0, 0, 9], 6881)) };
    let lan6 = CompactNode { id: near_id(6), addr: v6(9) };
    let r4 = Response { id: far_id(4), nodes: vec![lan4], ..Default::default() };
    n.handle_packet(now, router4, &message(&tid_to(router4), Body::Response(r4)));
    let r6 = Response { id: far_id(6), nodes6: vec![lan6], ..Default::default() };
    n.handle_packet(now, router6, &message(&tid_to(router6), Body::Response(r6)));
    let next: Vec<SocketAddr> = sent(&mut n).into_iter().map(|(to, _)| to).collect();
    assert!(next.contains(&lan6.addr), "a LAN address is fine in the LAN family: {next:?}");
    assert!(!next.contains(&lan4.addr), "but a private one from the public family is a leak: {next:?}");
    assert_eq!(n.stats().implausible_dropped, 1);
}
