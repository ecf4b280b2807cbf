//! KRPC decode and encode per message type, routing-table "closest 8" on a full table, and
//! the per-source rate limiter's cost per datagram (what every packet pays before decoding).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use kadswarm::dht::compact::CompactNode;
use kadswarm::dht::krpc::{Body, KrpcError, Message, Method, Query, Response, Want};
use kadswarm::dht::routing::{Contact, RoutingConfig, RoutingTable};
use kadswarm::id::Id;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn query(method: Method) -> Message {
    Message {
        tid: b"ab".to_vec(),
        version: Some(b"KS\x00\x01".to_vec()),
        ip: None,
        read_only: false,
        body: Body::Query(Query { id: Id([1; 20]), method, want: Want::default() }),
    }
}

fn messages() -> Vec<(&'static str, Message)> {
    let nodes: Vec<CompactNode> =
        (0..8u8).map(|i| CompactNode { id: Id([i; 20]), addr: SocketAddr::from(([10, 0, i, 1], 6881)) }).collect();
    let response = |r: Response| Message {
        tid: b"ab".to_vec(),
        version: Some(b"KS\x00\x01".to_vec()),
        ip: Some("1.2.3.4:5".parse().unwrap()),
        read_only: false,
        body: Body::Response(r),
    };
    vec![
        ("ping", query(Method::Ping)),
        ("find_node", query(Method::FindNode { target: Id([2; 20]) })),
        ("get_peers", query(Method::GetPeers { info_hash: Id([3; 20]), noseed: false, scrape: false })),
        (
            "announce_peer",
            query(Method::AnnouncePeer {
                info_hash: Id([3; 20]),
                port: 6881,
                implied_port: true,
                token: vec![7; 8],
                seed: false,
            }),
        ),
        ("sample_infohashes", query(Method::SampleInfohashes { target: Id([4; 20]) })),
        ("response_ping", response(Response { id: Id([5; 20]), ..Default::default() })),
        ("response_nodes", response(Response { id: Id([5; 20]), nodes: nodes.clone(), ..Default::default() })),
        (
            "response_peers",
            response(Response {
                id: Id([5; 20]),
                nodes,
                token: Some(vec![1; 8]),
                values: (0..50u8).map(|i| SocketAddr::from(([10, 1, 0, i], 6881))).collect(),
                ..Default::default()
            }),
        ),
        (
            "error",
            Message {
                tid: b"ab".to_vec(),
                version: None,
                ip: None,
                read_only: false,
                body: Body::Error(KrpcError { code: 203, message: "Protocol Error".into() }),
            },
        ),
    ]
}

fn bench_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("krpc");
    for (name, msg) in messages() {
        let bytes = msg.encode();
        g.bench_function(format!("decode/{name}"), |b| b.iter(|| Message::decode(black_box(&bytes))));
        g.bench_function(format!("encode/{name}"), |b| b.iter(|| black_box(&msg).encode()));
    }
    g.finish();
}

fn bench_routing(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(3);
    let own = Id::random(&mut rng);
    let mut table = RoutingTable::new(own, RoutingConfig::default());
    // Offer many nodes, closer and closer to our id, until the table stops growing: full.
    for i in 0..200_000u32 {
        let id = own.random_with_prefix((i % 24) as usize, &mut rng);
        let addr = SocketAddr::from(([11 + (i >> 16) as u8, (i >> 8) as u8, i as u8, 1], 6881));
        table.heard_from(now, CompactNode { id, addr }, Contact::Response);
    }
    let targets: Vec<Id> = (0..1024).map(|_| Id::random(&mut rng)).collect();
    let mut i = 0;
    c.bench_function(&format!("routing/closest8_of_{}_nodes", table.len()), |b| {
        b.iter(|| {
            i = (i + 1) % targets.len();
            table.closest(black_box(&targets[i]), 8, false)
        })
    });
}

fn bench_limiter(c: &mut Criterion) {
    use kadswarm::net::limiter::{Limiter, LimiterConfig};
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let mut g = c.benchmark_group("limiter");
    // A few busy sources (the table stays hot) and a spoofed flood (every source new, every
    // check claims a slot), each at the default limits.
    for (name, sources) in [("check/64_sources", 64u32), ("check/random_sources", u32::MAX)] {
        let mut l = Limiter::new(LimiterConfig::default(), start, [1, 2]);
        let mut i: u32 = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let n = if sources == u32::MAX { i.wrapping_mul(2_654_435_761) } else { i % sources };
                let from = SocketAddr::from((n.to_be_bytes(), 6881));
                let now = start + std::time::Duration::from_micros(u64::from(i));
                l.check(black_box(now), black_box(from))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_codec, bench_routing, bench_limiter);
criterion_main!(benches);
