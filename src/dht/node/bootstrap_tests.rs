//! The bootstrap role through `handle_packet`: who gets into the pool (cookie-verified
//! addresses with BEP 42 ids, one per IP, never read-only nodes or spoofers), what the node
//! answers from it, that it stores no peers, and how entries age and survive a restart.

use super::*;
use crate::dht::cookie::COOKIE_LEN;
use crate::dht::krpc::{KrpcError, Response, ERR_PROTOCOL};
use crate::dht::pool_file;
use std::net::Ipv4Addr;

fn t0() -> Instant {
    crate::clock::now()
}

const ME: Id = Id([0x11; 20]);

fn boot(now: Instant) -> Node {
    let config = Config { derive_id_from_ip: false, role: Role::Bootstrap, ..Config::default() };
    Node::new(config, Some(ME), 5, now)
}

/// A public IPv4 address and a BEP 42 id for it.
fn public_node(rng: &mut StdRng) -> CompactNode {
    loop {
        let ip = Ipv4Addr::from(rng.random::<u32>());
        let addr = SocketAddr::new(ip.into(), rng.random_range(1024..u16::MAX));
        if Scope::Public.admits(addr) && !bep42::is_exempt(addr.ip()) {
            return CompactNode { id: bep42::node_id_for_ip(addr.ip(), rng), addr };
        }
    }
}

fn message(tid: &[u8], read_only: bool, body: Body) -> Vec<u8> {
    Message { tid: tid.to_vec(), version: None, ip: None, read_only, body }.encode()
}

fn query(tid: &[u8], sender: Id, method: Method) -> Vec<u8> {
    message(tid, false, Body::Query(Query { id: sender, method, want: Want::default() }))
}

fn pong(tid: &[u8], id: Id) -> Vec<u8> {
    message(tid, false, Body::Response(Response { id, ..Default::default() }))
}

fn sent(n: &mut Node) -> Vec<(SocketAddr, Message)> {
    std::iter::from_fn(|| n.poll_transmit())
        .map(|t| (t.to, Message::decode(&t.payload).expect("node sent an undecodable message")))
        .collect()
}

fn is_cookie_ping(m: &Message) -> bool {
    m.tid.len() == COOKIE_LEN && matches!(&m.body, Body::Query(q) if q.method == Method::Ping)
}

/// The transaction ids of the cookie pings in `out` to `to`.
fn cookie_pings_to(out: &[(SocketAddr, Message)], to: SocketAddr) -> Vec<Vec<u8>> {
    out.iter().filter(|(a, m)| *a == to && is_cookie_ping(m)).map(|(_, m)| m.tid.clone()).collect()
}

/// `node` queries us, and answers the ping that comes back. Returns whether it is pooled.
fn join(n: &mut Node, now: Instant, node: CompactNode) -> bool {
    n.handle_packet(now, node.addr, &query(b"q1", node.id, Method::Ping));
    let tids = cookie_pings_to(&sent(n), node.addr);
    assert_eq!(tids.len(), 1, "one cookie ping to a new querier {}", node.addr);
    n.handle_packet(now, node.addr, &pong(&tids[0], node.id));
    sent(n);
    n.pool().unwrap().contains(&node)
}

fn answer(n: &mut Node, from: SocketAddr, tid: &[u8]) -> Message {
    let mut msgs: Vec<Message> =
        sent(n).into_iter().filter(|(a, m)| *a == from && m.tid == tid).map(|(_, m)| m).collect();
    assert_eq!(msgs.len(), 1, "exactly one answer: {msgs:?}");
    msgs.remove(0)
}

fn response(m: &Message) -> &Response {
    match &m.body {
        Body::Response(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn a_querier_enters_the_pool_only_by_answering_its_cookie_ping() {
    // Fails without the cookie check: every forged answer below would plant the node.
    let now = t0();
    let mut rng = StdRng::seed_from_u64(1);
    let mut n = boot(now);
    let a = public_node(&mut rng);
    n.handle_packet(now, a.addr, &query(b"q1", a.id, Method::Ping));
    let tids = cookie_pings_to(&sent(&mut n), a.addr);
    assert_eq!(tids.len(), 1);
    let cookie = tids[0].clone();
    assert!(n.pool().unwrap().is_empty(), "a query alone proves nothing");
    assert_eq!(n.txs.len(), 0, "nothing is remembered about the ping");

    let mut wrong = cookie.clone();
    wrong[0] ^= 1;
    let other_port = SocketAddr::new(a.addr.ip(), a.addr.port() ^ 1);
    let other_ip = SocketAddr::new(Ipv4Addr::new(198, 51, 100, 7).into(), a.addr.port());
    let forgeries: [(SocketAddr, &[u8]); 5] =
        [(a.addr, &wrong), (a.addr, &cookie[..2]), (a.addr, b"abcd"), (other_port, &cookie), (other_ip, &cookie)];
    for (from, tid) in forgeries {
        n.handle_packet(now, from, &pong(tid, a.id));
    }
    assert!(n.pool().unwrap().is_empty(), "forged answers planted {:?}", n.pool().unwrap().iter().collect::<Vec<_>>());
    assert_eq!(n.bootstrap_stats().unwrap().bad_cookies, 4, "the 2-byte id is an ordinary unmatched response");

    n.handle_packet(now, a.addr, &pong(&cookie, a.id));
    assert!(n.pool().unwrap().contains(&a));
    assert_eq!(n.bootstrap_stats().unwrap().added, 1);
    assert!(n.table().contains(&a.id), "a cookie answer is a response for the routing table too");
    // A pooled node querying again is not pinged again.
    n.handle_packet(now, a.addr, &query(b"q2", a.id, Method::Ping));
    assert!(cookie_pings_to(&sent(&mut n), a.addr).is_empty());
}

#[test]
fn spoofed_queries_from_100000_sources_plant_nothing_and_cost_no_memory() {
    // Fails if verification kept state per pinged source or pooled queriers unverified.
    let start = t0();
    let mut rng = StdRng::seed_from_u64(2);
    let mut n = boot(start);
    let pool_bytes = n.pool().unwrap().heap_bytes();
    let limiter_bytes = n.limiter().memory_bytes();
    let secs = 2u64;
    let mut cookie_pings = 0u64;
    for i in 0..100_000u64 {
        let now = start + Duration::from_micros(i * secs * 10);
        let spoofed = public_node(&mut rng);
        n.handle_packet(
            now,
            spoofed.addr,
            &query(&(i as u32).to_be_bytes(), spoofed.id, Method::FindNode { target: spoofed.id }),
        );
        // And a guessed answer from another spoofed source, as if to a ping it never got.
        let guesser = public_node(&mut rng);
        n.handle_packet(now, guesser.addr, &pong(&rng.random::<[u8; 4]>(), guesser.id));
        cookie_pings += sent(&mut n).iter().filter(|(_, m)| is_cookie_ping(m)).count() as u64;
        if now >= n.next_deadline() {
            n.handle_timeout(now);
        }
    }
    let pool = n.pool().unwrap();
    assert_eq!(pool.len(), 0);
    assert_eq!(pool.heap_bytes(), pool_bytes, "the pool did not grow");
    assert_eq!(n.limiter().memory_bytes(), limiter_bytes, "the limiter is fixed-size");
    let stats = n.bootstrap_stats().unwrap();
    assert_eq!(stats.bad_cookies, 100_000);
    // Pings go out within the budget (a burst of one second's worth, then the rate) ...
    let budget = PoolConfig::default().verify_pings_per_sec as u64 * (secs + 1);
    assert_eq!(stats.verify_pings, cookie_pings);
    assert!(cookie_pings <= budget, "{cookie_pings} cookie pings");
    assert!(stats.pings_suppressed >= 100_000 - budget);
    // ... and leave no transaction behind; the few ordinary pings are the routing table's.
    assert!(n.txs.len() < 200, "{} transactions pending", n.txs.len());
}

#[test]
fn bep42_ids_are_required_from_public_addresses() {
    // Fails without the BEP 42 check in the pool: the node answering with a made-up id gets in.
    let now = t0();
    let mut rng = StdRng::seed_from_u64(3);
    let mut n = boot(now);
    let a = public_node(&mut rng);
    let mut made_up = a.id;
    made_up.0[0] ^= 0x20;
    // A querier with an invalid id is not even pinged.
    n.handle_packet(now, a.addr, &query(b"q1", made_up, Method::Ping));
    assert!(cookie_pings_to(&sent(&mut n), a.addr).is_empty());
    // One that claims a valid id in its query but answers with another is refused.
    n.handle_packet(now, a.addr, &query(b"q2", a.id, Method::Ping));
    let tids = cookie_pings_to(&sent(&mut n), a.addr);
    n.handle_packet(now, a.addr, &pong(&tids[0], made_up));
    assert!(n.pool().unwrap().is_empty());
    assert_eq!(n.bootstrap_stats().unwrap().refused_invalid_id, 2);
    assert!(join(&mut n, now, a));
    // Local addresses are exempt (BEP 42): any id.
    let lan = CompactNode { id: Id([0x42; 20]), addr: "192.168.1.20:6881".parse().unwrap() };
    assert!(join(&mut n, now, lan));
}

#[test]
fn read_only_nodes_are_never_pooled() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(4);
    let mut n = boot(now);
    let a = public_node(&mut rng);
    let ro_query = message(b"q1", true, Body::Query(Query { id: a.id, method: Method::Ping, want: Want::default() }));
    n.handle_packet(now, a.addr, &ro_query);
    assert!(cookie_pings_to(&sent(&mut n), a.addr).is_empty(), "a read-only querier is not pinged");
    // One that was pinged but answers flagged read-only stays out too.
    n.handle_packet(now, a.addr, &query(b"q2", a.id, Method::Ping));
    let tids = cookie_pings_to(&sent(&mut n), a.addr);
    n.handle_packet(now, a.addr, &message(&tids[0], true, Body::Response(Response { id: a.id, ..Default::default() })));
    assert!(n.pool().unwrap().is_empty());
    assert_eq!(n.bootstrap_stats().unwrap().refused_read_only, 1);
}

#[test]
fn one_entry_per_ip_the_latest_port_and_id_win() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(5);
    let mut n = boot(now);
    let a = public_node(&mut rng);
    assert!(join(&mut n, now, a));
    let moved =
        CompactNode { id: bep42::node_id_for_ip(a.addr.ip(), &mut rng), addr: SocketAddr::new(a.addr.ip(), 7777) };
    assert!(join(&mut n, now, moved));
    let pool = n.pool().unwrap();
    assert_eq!(pool.len(), 1);
    assert!(!pool.contains(&a));
    assert_eq!(n.bootstrap_stats().unwrap().replaced, 1);
}

#[test]
fn find_node_and_get_peers_are_answered_from_the_pool_entries_closest_to_the_target() {
    // Fails when answers come from the routing table: it keeps 8 nodes a bucket, the pool all.
    let now = t0();
    let mut rng = StdRng::seed_from_u64(6);
    let mut n = boot(now);
    let pooled: Vec<CompactNode> = (0..300).map(|_| public_node(&mut rng)).collect();
    for p in &pooled {
        assert!(join(&mut n, now, *p));
    }
    assert!(n.table().len() < pooled.len(), "the table keeps only some of them");
    let asker = public_node(&mut rng);
    let mut differs_from_table = 0;
    for i in 0..40u8 {
        let target = Id::random(&mut rng);
        let mut best = pooled.clone();
        best.sort_by_key(|p| p.id.distance(&target));
        best.truncate(8);
        let method = if i % 2 == 0 {
            Method::FindNode { target }
        } else {
            Method::GetPeers { info_hash: target, noseed: false, scrape: false }
        };
        n.handle_packet(now, asker.addr, &query(&[b'f', i], asker.id, method));
        let m = answer(&mut n, asker.addr, &[b'f', i]);
        assert_eq!(response(&m).nodes, best, "target {target}");
        if n.table().closest(&target, 8, true) != best {
            differs_from_table += 1;
        }
    }
    assert!(
        differs_from_table > 20,
        "the table alone would have answered the same ({differs_from_table} of 40 differ)"
    );
}

#[test]
fn a_young_pool_is_topped_up_with_confirmed_table_nodes_only() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(7);
    let mut n = boot(now);
    let a = public_node(&mut rng);
    assert!(join(&mut n, now, a));
    // Confirmed table contacts that are not pooled: they answered ordinary pings.
    let known: Vec<CompactNode> = (0..3).map(|_| public_node(&mut rng)).collect();
    n.add_known_nodes(now, &known);
    for (to, m) in sent(&mut n) {
        let Some(k) = known.iter().find(|k| k.addr == to) else { continue };
        if matches!(&m.body, Body::Query(q) if q.method == Method::Ping) {
            n.handle_packet(now, to, &pong(&m.tid, k.id));
        }
    }
    assert!(known.iter().all(|k| n.table().contains(&k.id) && !n.pool().unwrap().contains(k)));
    // Unconfirmed ones: they queried, but never answered their cookie pings.
    let unverified: Vec<CompactNode> = (0..5).map(|_| public_node(&mut rng)).collect();
    for b in &unverified {
        n.handle_packet(now, b.addr, &query(b"q", b.id, Method::Ping));
    }
    sent(&mut n);
    n.handle_packet(now, addr_of(9), &query(b"fn", Id([9; 20]), Method::FindNode { target: a.id }));
    let nodes = response(&answer(&mut n, addr_of(9), b"fn")).nodes.clone();
    assert_eq!(nodes[0], a, "the pool entry first");
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    assert!(known.iter().all(|k| nodes.contains(k)), "{nodes:?}");
}

fn addr_of(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, i, 1], 6881))
}

#[test]
fn a_bootstrap_node_stores_no_peers() {
    // Fails in the normal role: get_peers hands out a token and announce_peer is stored.
    let now = t0();
    let mut n = boot(now);
    let ih = Id([7; 20]);
    let q = addr_of(1);
    n.handle_packet(
        now,
        q,
        &query(b"g1", Id([1; 20]), Method::GetPeers { info_hash: ih, noseed: false, scrape: false }),
    );
    let m = answer(&mut n, q, b"g1");
    assert_eq!(response(&m).token, None, "no token, so nobody announces to us");
    let forged_token = n.store().token_for(q.ip());
    let announce =
        Method::AnnouncePeer { info_hash: ih, port: 6881, implied_port: false, token: forged_token, seed: false };
    n.handle_packet(now, q, &query(b"a1", Id([1; 20]), announce));
    let m = answer(&mut n, q, b"a1");
    assert!(matches!(m.body, Body::Error(KrpcError { code: ERR_PROTOCOL, .. })), "{m:?}");
    assert_eq!(n.store().peer_count(), 0);
    n.handle_packet(
        now,
        addr_of(2),
        &query(b"g2", Id([2; 20]), Method::GetPeers { info_hash: ih, noseed: false, scrape: false }),
    );
    assert!(response(&answer(&mut n, addr_of(2), b"g2")).values.is_empty());
}

#[test]
fn silent_entries_are_pinged_again_and_dropped_unless_they_answer() {
    let start = t0();
    let mut rng = StdRng::seed_from_u64(8);
    let mut n = boot(start);
    let nodes: Vec<CompactNode> = (0..6).map(|_| public_node(&mut rng)).collect();
    for p in &nodes {
        assert!(join(&mut n, start, *p));
    }
    let cfg = PoolConfig::default();
    let stale = start + cfg.max_age + Duration::from_secs(1);
    n.handle_timeout(stale);
    let out = sent(&mut n);
    for (i, p) in nodes.iter().enumerate() {
        let tids = cookie_pings_to(&out, p.addr);
        assert_eq!(tids.len(), 1, "entry {i} pinged again once");
        if i < 3 {
            n.handle_packet(stale, p.addr, &pong(&tids[0], p.id));
        }
    }
    assert_eq!(n.pool().unwrap().len(), 6);
    let dead = start + cfg.max_age + cfg.grace + Duration::from_secs(2);
    n.handle_timeout(dead);
    let pool = n.pool().unwrap();
    assert_eq!(pool.len(), 3);
    assert!(nodes[..3].iter().all(|p| pool.contains(p)));
    assert_eq!(n.bootstrap_stats().unwrap().expired, 3);
    assert!(n.next_deadline() <= dead + Duration::from_secs(1), "the sweep keeps a deadline");
}

#[test]
fn the_pool_survives_a_restart() {
    let now = t0();
    let mut rng = StdRng::seed_from_u64(9);
    let mut first = boot(now);
    let pooled: Vec<CompactNode> = (0..40).map(|_| public_node(&mut rng)).collect();
    for p in &pooled {
        assert!(join(&mut first, now, *p));
    }
    let path = std::env::temp_dir().join(format!("kadswarm-node-pool-{}.state.pool", std::process::id()));
    pool_file::write_atomic(&path, &pool_file::encode(first.pool().unwrap().iter())).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 + 4 + 40 * 26 + 4);
    let saved = pool_file::load(&path, 1_000_000).unwrap().unwrap();
    let _ = std::fs::remove_file(&path);

    let mut second = boot(now);
    assert_eq!(second.load_pool(now, &saved), 40);
    let mut a: Vec<CompactNode> = first.pool().unwrap().iter().collect();
    let mut b: Vec<CompactNode> = second.pool().unwrap().iter().collect();
    a.sort_by_key(|n| n.id);
    b.sort_by_key(|n| n.id);
    assert_eq!(a, b);
    let target = Id::random(&mut rng);
    second.handle_packet(now, addr_of(1), &query(b"fn", Id([1; 20]), Method::FindNode { target }));
    let m = answer(&mut second, addr_of(1), b"fn");
    assert_eq!(response(&m).nodes, first.pool().unwrap().closest(&target, false, 8));
    // A normal node ignores a pool.
    let mut normal = Node::new(Config::default(), None, 1, now);
    assert_eq!(normal.load_pool(now, &saved), 0);
    assert!(normal.pool().is_none());
}
