//! The node against hostile sources: floods from one address and from many spoofed ones.
//! Each test plays the attacker through `handle_packet` in virtual time and counts exactly
//! what the node sent back.

use super::*;

fn t0() -> Instant {
    crate::clock::now()
}

fn node(now: Instant, limits: LimiterConfig) -> Node {
    let config = Config { derive_id_from_ip: false, limits, ..Config::default() };
    Node::new(config, Some(Id([0x11; 20])), 7, now)
}

fn ping(tid: u32, sender: Id) -> Vec<u8> {
    Message {
        tid: tid.to_be_bytes().to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Query(Query { id: sender, method: Method::Ping, want: Want::default() }),
    }
    .encode()
}

fn drain(n: &mut Node) -> Vec<Transmit> {
    std::iter::from_fn(|| n.poll_transmit()).collect()
}

#[test]
fn a_flooder_at_fifty_times_its_limit_is_cut_off_while_a_polite_source_is_answered() {
    let start = t0();
    let limits = LimiterConfig::default();
    let mut n = node(start, limits);
    let flooder: SocketAddr = "198.51.100.7:6881".parse().unwrap();
    let polite: SocketAddr = "203.0.113.9:6881".parse().unwrap();
    let rate = limits.rate as u64;
    let flood_rate = 50 * rate;
    let secs = 60u64;
    let (mut to_flooder, mut to_polite, mut polite_sent) = (0u64, 0u64, 0u64);
    let mut tid = 0u32;
    for ms in 0..secs * 1000 {
        let now = start + Duration::from_millis(ms);
        if ms % (1000 / flood_rate) == 0 {
            tid += 1;
            n.handle_packet(now, flooder, &ping(tid, Id([0x22; 20])));
        }
        if ms % 500 == 0 {
            tid += 1;
            polite_sent += 1;
            n.handle_packet(now, polite, &ping(tid, Id([0x33; 20])));
        }
        for t in drain(&mut n) {
            if t.to == flooder {
                to_flooder += 1;
            } else if t.to == polite {
                to_polite += 1;
            }
        }
        if now >= n.next_deadline() {
            n.handle_timeout(now);
        }
    }
    let flood_sent = secs * flood_rate;
    // Everything the flooder gets (answers and the one ping that confirms it) fits in its
    // burst and a few seconds of its rate: it is blocked soon after it starts.
    let allowance = limits.burst as u64 + 5 * rate + 1;
    assert!(to_flooder <= allowance, "the flooder got {to_flooder} datagrams for {flood_sent} sent");
    assert!(n.stats().rate_limited + n.stats().blocked_drops >= flood_sent - allowance);
    assert!(n.stats().blocked_drops > flood_sent / 2, "a flood that goes on is blocked");
    assert!(n.limiter().stats().blocks >= 1);
    // The polite source: one answer per query (it may also be pinged once to confirm it).
    let answered_share = to_polite.min(polite_sent) as f64 / polite_sent as f64;
    assert!(answered_share >= 0.99, "polite source answered {to_polite} of {polite_sent}");
}

#[test]
fn with_the_limit_off_every_query_is_answered() {
    let start = t0();
    let mut n = node(start, LimiterConfig::off());
    let flooder: SocketAddr = "198.51.100.7:6881".parse().unwrap();
    for i in 0..10_000u32 {
        n.handle_packet(start, flooder, &ping(i, Id([0x22; 20])));
    }
    let answers = drain(&mut n).iter().filter(|t| t.to == flooder).count();
    assert!(answers >= 10_000, "{answers}");
}

#[test]
fn a_spoofed_flood_from_random_sources_leaves_memory_bounded() {
    let start = t0();
    let mut n = node(start, LimiterConfig::default());
    let table_cap_bytes = n.limiter().memory_bytes();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..100_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let [a, b, c, d, ..] = x.to_be_bytes();
        let from = SocketAddr::from(([a | 1, b, c, d], 1024 + (i % 60_000) as u16));
        let now = start + Duration::from_micros(i * 10);
        n.handle_packet(now, from, &ping(i as u32, Id::random(&mut StdRng::seed_from_u64(i))));
        drain(&mut n);
        if now >= n.next_deadline() {
            n.handle_timeout(now);
        }
    }
    assert_eq!(n.limiter().memory_bytes(), table_cap_bytes, "the limiter's table never grows");
    assert!(n.limiter().tracked() <= LimiterConfig::default().capacity);
    // The pings that confirm new queriers are bounded by the transaction table...
    assert!(n.txs.len() < u16::MAX as usize);
    // ...and the routing table by its own rules.
    assert!(n.table().len() <= 160 * 8 * 2, "{}", n.table().len());
}

#[test]
fn garbage_gets_no_reply_even_with_a_transaction_id() {
    let now = t0();
    let mut n = node(now, LimiterConfig::default());
    let victim: SocketAddr = "198.51.100.1:6881".parse().unwrap();
    for g in [&b"d1:t1:xe"[..], b"d1:t2:ab1:y1:re", b"d1:t2:ab1:y1:ee", b"d1:t2:ab1:q4:pinge", b"le", b"\x00garbage"] {
        n.handle_packet(now, victim, g);
    }
    assert!(drain(&mut n).is_empty(), "only a query (y = q) may get error 203");
}

fn query(tid: u32, sender: Id, method: Method) -> Vec<u8> {
    Message {
        tid: tid.to_be_bytes().to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Query(Query { id: sender, method, want: Want::default() }),
    }
    .encode()
}

fn answer(n: &mut Node, to: SocketAddr) -> crate::dht::krpc::Response {
    let mut answers: Vec<_> = drain(n)
        .into_iter()
        .filter(|t| t.to == to)
        .filter_map(|t| match Message::decode(&t.payload).ok()?.body {
            Body::Response(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1, "one answer to {to}");
    answers.remove(0)
}

#[test]
fn a_full_store_withholds_tokens_so_announces_go_elsewhere() {
    let now = t0();
    let store = crate::dht::store::StoreConfig { max_info_hashes: 2, ..Default::default() };
    let config = Config { derive_id_from_ip: false, store, ..Config::default() };
    let mut n = Node::new(config, Some(Id([0x11; 20])), 7, now);
    let mut tid = 0;
    for (i, h) in [[1u8; 20], [2; 20], [3; 20]].into_iter().enumerate() {
        let from = SocketAddr::from(([203, 0, 113, 10 + i as u8], 6881));
        tid += 1;
        n.handle_packet(
            now,
            from,
            &query(tid, Id([0x40 + i as u8; 20]), Method::GetPeers { info_hash: Id(h), noseed: false, scrape: false }),
        );
        let token = answer(&mut n, from).token;
        if i < 2 {
            let token = token.expect("a store with room hands out tokens");
            tid += 1;
            let m = Method::AnnouncePeer { info_hash: Id(h), port: 7000, implied_port: false, token, seed: false };
            n.handle_packet(now, from, &query(tid, Id([0x40 + i as u8; 20]), m));
            drain(&mut n);
        } else {
            assert_eq!(token, None, "no token for a swarm the full store could not take");
        }
    }
    assert_eq!(n.store().info_hash_count(), 2);
    assert_eq!(n.stats().tokens_withheld, 1);
}

#[test]
fn a_flood_of_port_messages_leaves_lookups_working() {
    let start = t0();
    let mut n = node(start, LimiterConfig::default());
    let peer_ip = [198, 51, 100, 20];
    let mut pings = 0;
    // A peer (or many) sends 100,000 `port` messages in ten seconds, each another port.
    for i in 0..100_000u32 {
        let now = start + Duration::from_micros(i as u64 * 100);
        n.ping(now, SocketAddr::from((peer_ip, 1024 + (i % 60_000) as u16)));
        pings += drain(&mut n).len();
        if now >= n.next_deadline() {
            n.handle_timeout(now);
        }
    }
    // One at a time: a new one only when the last has timed out (5 s).
    assert!(pings <= 2, "one ping at a time to that IP, got {pings}");
    // Many IPs: the global budget holds (20/s, a burst of 80).
    let mut pings = 0;
    let t = start + Duration::from_secs(10);
    for i in 0..100_000u32 {
        let [_, b, c, d] = i.to_be_bytes();
        n.ping(t + Duration::from_micros(i as u64 * 10), SocketAddr::from(([100, b, c, d | 1], 6881)));
        pings += drain(&mut n).len();
    }
    assert!(pings <= 80 + 20 + 1, "{pings} pings for 100,000 port messages in one second");
    assert!(n.stats().pings_suppressed >= 199_000);
    // A lookup still gets its queries out.
    let now = t + Duration::from_secs(1);
    assert!(n.txs.len() < 200, "the flood holds {} transactions", n.txs.len());
    n.add_known_nodes(now, &[CompactNode { id: Id([0x55; 20]), addr: "203.0.113.55:6881".parse().unwrap() }]);
    let sent = drain(&mut n);
    let to_it = sent.iter().filter(|t| t.to == "203.0.113.55:6881".parse::<SocketAddr>().unwrap()).count();
    assert_eq!(to_it, 2, "a ping and the join lookup's query both went out");
}

#[test]
fn a_public_node_never_queries_private_or_loopback_addresses_it_is_handed() {
    let now = t0();
    let config = Config { derive_id_from_ip: false, scope: crate::net::addr::Scope::Public, ..Config::default() };
    let mut n = Node::new(config, Some(Id([0x11; 20])), 7, now);
    let router: SocketAddr = "203.0.113.1:6881".parse().unwrap();
    n.set_routers(now, vec![router]);
    n.handle_timeout(now);
    let q = drain(&mut n).into_iter().find(|t| t.to == router).expect("bootstrap query");
    let tid = Message::decode(&q.payload).unwrap().tid;
    let bad = ["127.0.0.1:6881", "10.0.0.1:6881", "192.168.1.1:6881", "224.0.0.1:6881", "8.8.8.8:0"];
    let mut nodes: Vec<CompactNode> = bad
        .iter()
        .enumerate()
        .map(|(i, a)| CompactNode { id: Id([0x12 + i as u8; 20]), addr: a.parse().unwrap() })
        .collect();
    nodes.push(CompactNode { id: Id([0x20; 20]), addr: "198.51.100.9:6881".parse().unwrap() });
    let r = Message {
        tid,
        version: None,
        ip: None,
        read_only: false,
        body: Body::Response(crate::dht::krpc::Response { id: Id([0x30; 20]), nodes, ..Default::default() }),
    };
    n.handle_packet(now, router, &r.encode());
    let to: Vec<SocketAddr> = drain(&mut n).into_iter().map(|t| t.to).collect();
    assert!(to.contains(&"198.51.100.9:6881".parse().unwrap()), "{to:?}");
    for b in bad {
        assert!(!to.contains(&b.parse().unwrap()), "queried {b}");
    }
    assert_eq!(n.stats().implausible_dropped, bad.len() as u64);
}

/// What each query type costs us on the wire: bytes out per byte in, with the node's table
/// and store full, so that every reply is as big as it gets. The figures are in the README.
#[test]
fn no_reply_is_much_bigger_than_its_query() {
    let start = t0();
    let mut n = node(start, LimiterConfig::off());
    let ih = Id([0x77; 20]);
    // A table full enough for 8-node answers, and a swarm with far more peers than fit.
    let mut tid = 0u32;
    for i in 0..400u32 {
        let [_, _, b, c] = (i + 1).to_be_bytes();
        let from = SocketAddr::from(([45, b, c, 1], 6881));
        tid += 1;
        n.handle_packet(start, from, &query(tid, Id::random(&mut StdRng::seed_from_u64(i as u64)), Method::Ping));
        drain(&mut n);
        tid += 1;
        let gp = Method::GetPeers { info_hash: ih, noseed: false, scrape: false };
        n.handle_packet(start, from, &query(tid, Id([0x40; 20]), gp));
        let token = answer_or_none(&mut n, from).and_then(|r| r.token).expect("token");
        tid += 1;
        let ap = Method::AnnouncePeer { info_hash: ih, port: 6881, implied_port: false, token, seed: false };
        n.handle_packet(start, from, &query(tid, Id([0x40; 20]), ap));
        drain(&mut n);
    }
    for h in 0..40u8 {
        let from = SocketAddr::from(([46, h, 0, 1], 6881));
        tid += 1;
        n.handle_packet(
            start,
            from,
            &query(tid, Id([0x41; 20]), Method::GetPeers { info_hash: Id([h; 20]), noseed: false, scrape: false }),
        );
        let token = answer_or_none(&mut n, from).and_then(|r| r.token).expect("token");
        tid += 1;
        let ap = Method::AnnouncePeer { info_hash: Id([h; 20]), port: 1, implied_port: false, token, seed: false };
        n.handle_packet(start, from, &query(tid, Id([0x41; 20]), ap));
        drain(&mut n);
    }
    println!(
        "table {} nodes, store {} peers in {} swarms, {} announces refused",
        n.table().len(),
        n.store().peer_count(),
        n.store().info_hash_count(),
        n.stats().announces_refused
    );
    let asker = SocketAddr::from(([47, 0, 0, 1], 6881));
    let me = Id([0x42; 20]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ping", query(1, me, Method::Ping)),
        ("find_node", query(2, me, Method::FindNode { target: Id([0x99; 20]) })),
        ("get_peers", query(3, me, Method::GetPeers { info_hash: ih, noseed: false, scrape: false })),
        ("get_peers scrape", query(6, me, Method::GetPeers { info_hash: ih, noseed: false, scrape: true })),
        ("sample_infohashes", query(4, me, Method::SampleInfohashes { target: Id([0x99; 20]) })),
        (
            "announce_peer (bad token)",
            query(
                5,
                me,
                Method::AnnouncePeer {
                    info_hash: ih,
                    port: 1,
                    implied_port: false,
                    token: b"nope".to_vec(),
                    seed: false,
                },
            ),
        ),
        ("malformed query", b"d1:ad2:id3:abce1:q4:ping1:t2:zz1:y1:qe".to_vec()),
        ("unknown method", b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:zz1:y1:qe".to_vec()),
    ];
    for (what, q) in cases {
        n.handle_packet(start, asker, &q);
        let out: Vec<Transmit> = drain(&mut n).into_iter().filter(|t| t.to == asker).collect();
        let reply = out.iter().map(|t| t.payload.len()).max().unwrap_or(0);
        let ratio = reply as f64 / q.len() as f64;
        println!("{what}: {} bytes in, {reply} bytes out, {ratio:.1}x", q.len());
        assert!(reply <= 1200, "{what}: a {reply}-byte reply does not fit the budget");
        let bound = if what.starts_with("get_peers") || what == "sample_infohashes" || what == "find_node" {
            14.0
        } else {
            4.0
        };
        assert!(ratio <= bound, "{what}: {ratio:.1}x");
    }
}

fn answer_or_none(n: &mut Node, to: SocketAddr) -> Option<crate::dht::krpc::Response> {
    drain(n).into_iter().filter(|t| t.to == to).find_map(|t| match Message::decode(&t.payload).ok()?.body {
        Body::Response(r) => Some(r),
        _ => None,
    })
}
