//! Transcript tests of the node core: one packet in, then an assertion on exactly what it
//! sent back.

use super::*;
use crate::dht::krpc::{KrpcError, Response, ERR_METHOD_UNKNOWN, ERR_PROTOCOL};

fn t0() -> Instant {
    crate::clock::now()
}

const ME: Id = Id([0x11; 20]);

fn new_node(now: Instant) -> Node {
    let config = Config { derive_id_from_ip: false, ..Config::default() };
    Node::new(config, Some(ME), 42, now)
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, i, 1], 6881))
}

fn query_bytes(tid: &[u8], sender: Id, method: Method) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Query(Query { id: sender, method, want: Want::default() }),
    }
    .encode()
}

fn sent(node: &mut Node) -> Vec<(SocketAddr, Message)> {
    std::iter::from_fn(|| node.poll_transmit())
        .map(|t| (t.to, Message::decode(&t.payload).expect("node sent an undecodable message")))
        .collect()
}

/// The single answer to `from` (the node may also ping a new querier to confirm it).
fn answer_to(node: &mut Node, from: SocketAddr, tid: &[u8]) -> Message {
    let msgs: Vec<Message> =
        sent(node).into_iter().filter(|(to, m)| *to == from && m.tid == tid).map(|(_, m)| m).collect();
    assert_eq!(msgs.len(), 1, "expected exactly one answer, got {msgs:?}");
    msgs.into_iter().next().unwrap()
}

/// Sends a `get_peers` for `ih` from `addr(from)` (id `[from; 20]`) and returns the answer.
fn get_peers(node: &mut Node, now: Instant, from: u8, tid: &[u8], ih: Id) -> Message {
    let q = query_bytes(tid, Id([from; 20]), Method::GetPeers { info_hash: ih, noseed: false, scrape: false });
    node.handle_packet(now, addr(from), &q);
    answer_to(node, addr(from), tid)
}

fn response(m: &Message) -> &Response {
    match &m.body {
        Body::Response(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn ping_is_answered_with_our_id_and_the_senders_address() {
    let now = t0();
    let mut n = new_node(now);
    n.handle_packet(now, addr(1), &query_bytes(b"xy", Id([1; 20]), Method::Ping));
    let m = answer_to(&mut n, addr(1), b"xy");
    assert_eq!(response(&m).id, ME);
    assert_eq!(m.ip, Some(addr(1)));
    assert_eq!(n.stats().pings_in, 1);
}

#[test]
fn a_new_querier_is_pinged_once_to_confirm_it() {
    let now = t0();
    let mut n = new_node(now);
    n.handle_packet(now, addr(1), &query_bytes(b"a", Id([1; 20]), Method::Ping));
    let out = sent(&mut n);
    let pings: Vec<_> = out
        .iter()
        .filter(|(to, m)| *to == addr(1) && matches!(&m.body, Body::Query(q) if q.method == Method::Ping))
        .collect();
    assert_eq!(pings.len(), 1);
    // A second query from the same node does not trigger another ping.
    n.handle_packet(now, addr(1), &query_bytes(b"b", Id([1; 20]), Method::Ping));
    assert_eq!(sent(&mut n).len(), 1);
}

#[test]
fn read_only_queriers_stay_out_of_the_table() {
    let now = t0();
    let mut n = new_node(now);
    let mut m = Message::decode(&query_bytes(b"a", Id([1; 20]), Method::Ping)).unwrap();
    m.read_only = true;
    n.handle_packet(now, addr(1), &m.encode());
    assert_eq!(sent(&mut n).len(), 1, "answered, but not pinged");
    assert!(!n.table().contains(&Id([1; 20])));
}

#[test]
fn malformed_queries_get_203_and_garbage_is_dropped() {
    let now = t0();
    let mut n = new_node(now);
    n.handle_packet(now, addr(1), b"d1:ad2:id3:abce1:q4:ping1:t2:zz1:y1:qe");
    let m = answer_to(&mut n, addr(1), b"zz");
    assert!(matches!(m.body, Body::Error(KrpcError { code: ERR_PROTOCOL, .. })));
    n.handle_packet(now, addr(1), b"\x00\x01garbage");
    n.handle_packet(now, addr(1), b"d1:eli201e3:bad1:t2:zz1:y1:e");
    n.handle_packet(now, addr(1), b"d1:eli201ee1:t2:zz1:y1:ze");
    assert!(sent(&mut n).is_empty(), "errors and garbage are never answered");
    assert_eq!(n.stats().malformed_dropped, 3);
}

#[test]
fn unknown_methods_with_a_target_act_as_find_node() {
    let now = t0();
    let mut n = new_node(now);
    for i in 2..12 {
        let resp = Message {
            tid: vec![],
            version: None,
            ip: None,
            read_only: false,
            body: Body::Query(Query { id: Id([i; 20]), method: Method::Ping, want: Want::default() }),
        };
        n.handle_packet(now, addr(i), &resp.encode());
    }
    sent(&mut n);
    let q = query_bytes(b"u1", Id([1; 20]), Method::Unknown { name: b"vote".to_vec(), target: Some(Id([3; 20])) });
    n.handle_packet(now, addr(1), &q);
    let m = answer_to(&mut n, addr(1), b"u1");
    assert_eq!(response(&m).nodes.len(), 8);
    assert_eq!(response(&m).nodes[0].id, Id([3; 20]), "closest first");
    let q = query_bytes(b"u2", Id([1; 20]), Method::Unknown { name: b"dance".to_vec(), target: None });
    n.handle_packet(now, addr(1), &q);
    let m = answer_to(&mut n, addr(1), b"u2");
    assert!(matches!(m.body, Body::Error(KrpcError { code: ERR_METHOD_UNKNOWN, .. })));
}

#[test]
fn announce_needs_our_token_and_is_found_by_get_peers() {
    let now = t0();
    let mut n = new_node(now);
    let ih = Id([7; 20]);
    let m = get_peers(&mut n, now, 1, b"g1", ih);
    let token = response(&m).token.clone().expect("get_peers answers carry a token");
    assert!(response(&m).values.is_empty());

    // Somebody else's token is refused.
    let bad =
        Method::AnnouncePeer { info_hash: ih, port: 5000, implied_port: false, token: b"nope".to_vec(), seed: false };
    n.handle_packet(now, addr(1), &query_bytes(b"a0", Id([1; 20]), bad));
    assert!(matches!(answer_to(&mut n, addr(1), b"a0").body, Body::Error(KrpcError { code: ERR_PROTOCOL, .. })));
    // The token of another address is refused too.
    let stolen =
        Method::AnnouncePeer { info_hash: ih, port: 5000, implied_port: false, token: token.clone(), seed: false };
    n.handle_packet(now, addr(2), &query_bytes(b"a1", Id([2; 20]), stolen));
    assert!(matches!(answer_to(&mut n, addr(2), b"a1").body, Body::Error(_)));

    let good = Method::AnnouncePeer { info_hash: ih, port: 5000, implied_port: false, token, seed: false };
    n.handle_packet(now, addr(1), &query_bytes(b"a2", Id([1; 20]), good));
    assert!(matches!(answer_to(&mut n, addr(1), b"a2").body, Body::Response(_)));

    let m = get_peers(&mut n, now, 3, b"g2", ih);
    assert_eq!(response(&m).values, vec![SocketAddr::from(([10, 0, 1, 1], 5000))]);
}

/// Every reply is counted once under the kind of query it answered (errors apart), with the
/// bytes of the datagram that carried it.
#[test]
fn replies_are_counted_by_kind_with_their_bytes() {
    use crate::dht::stats::ReplyKind;
    let now = t0();
    let mut n = new_node(now);
    let ih = Id([7; 20]);
    // The bytes of the one reply to `tid` (the node may also ping us: that is a query).
    let ask = |n: &mut Node, tid: &[u8], method: Method| -> (Message, u64) {
        n.handle_packet(now, addr(1), &query_bytes(tid, Id([1; 20]), method));
        let replies: Vec<_> = std::iter::from_fn(|| n.poll_transmit())
            .filter(|t| t.to == addr(1))
            .filter_map(|t| {
                Message::decode(&t.payload).ok().filter(|m| m.tid == tid).map(|m| (m, t.payload.len() as u64))
            })
            .collect();
        assert_eq!(replies.len(), 1, "one reply to {tid:?}");
        replies.into_iter().next().unwrap()
    };
    let mut expect = std::collections::HashMap::new();
    let (m, len) = ask(&mut n, b"g", Method::GetPeers { info_hash: ih, noseed: false, scrape: false });
    expect.insert(ReplyKind::GetPeers, len);
    let token = response(&m).token.clone().expect("a token");
    let asked = [
        (&b"p"[..], Method::Ping, ReplyKind::Ping),
        (b"f", Method::FindNode { target: Id([3; 20]) }, ReplyKind::FindNode),
        (b"a", Method::AnnouncePeer { info_hash: ih, port: 5000, implied_port: false, token, seed: false }, {
            ReplyKind::AnnouncePeer
        }),
        (b"s", Method::SampleInfohashes { target: Id([3; 20]) }, ReplyKind::SampleInfohashes),
        (b"u", Method::Unknown { name: b"vote".to_vec(), target: Some(Id([3; 20])) }, ReplyKind::Unknown),
        (b"e", Method::Unknown { name: b"dance".to_vec(), target: None }, ReplyKind::Error),
    ];
    for (tid, method, kind) in asked {
        let (_, len) = ask(&mut n, tid, method);
        expect.insert(kind, len);
    }
    let replies = &n.stats().replies;
    for kind in ReplyKind::ALL {
        assert_eq!(replies.sent(kind), 1, "{kind:?}");
        assert_eq!(replies.bytes(kind), expect[&kind], "{kind:?}");
    }
}

#[test]
fn implied_port_uses_the_source_port() {
    let now = t0();
    let mut n = new_node(now);
    let ih = Id([7; 20]);
    let token = response(&get_peers(&mut n, now, 1, b"g", ih)).token.clone().unwrap();
    let m = Method::AnnouncePeer { info_hash: ih, port: 1, implied_port: true, token, seed: false };
    n.handle_packet(now, addr(1), &query_bytes(b"a", Id([1; 20]), m));
    sent(&mut n);
    assert_eq!(n.store().get_peers(now, &ih, false, &mut StdRng::seed_from_u64(1)), vec![addr(1)]);
}

#[test]
fn sample_infohashes_reports_what_is_stored() {
    let now = t0();
    let mut n = new_node(now);
    for i in 0..3u8 {
        let ih = Id([0x40 + i; 20]);
        let token = response(&get_peers(&mut n, now, 1, b"g", ih)).token.clone().unwrap();
        let m = Method::AnnouncePeer { info_hash: ih, port: 99, implied_port: false, token, seed: false };
        n.handle_packet(now, addr(1), &query_bytes(b"a", Id([1; 20]), m));
        sent(&mut n);
    }
    n.handle_packet(now, addr(2), &query_bytes(b"s", Id([2; 20]), Method::SampleInfohashes { target: Id([0; 20]) }));
    let m = answer_to(&mut n, addr(2), b"s");
    let r = response(&m);
    let mut samples = r.samples.clone().unwrap();
    samples.sort();
    assert_eq!(samples, vec![Id([0x40; 20]), Id([0x41; 20]), Id([0x42; 20])]);
    assert_eq!(r.num, Some(3));
    assert!(r.interval.is_some_and(|i| i > 0));
}

#[test]
fn answers_from_the_wrong_address_are_ignored() {
    let now = t0();
    let mut n = new_node(now);
    n.set_routers(now, vec![addr(9)]);
    n.handle_timeout(now);
    let out = sent(&mut n);
    assert_eq!(out.len(), 1, "one bootstrap query to the one router");
    let (to, q) = &out[0];
    assert_eq!(*to, addr(9));
    let answer = Message {
        tid: q.tid.clone(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Response(Response { id: Id([9; 20]), ..Default::default() }),
    };
    n.handle_packet(now, addr(8), &answer.encode());
    assert_eq!(n.stats().unmatched_responses, 1);
    assert!(n.table().is_empty());
    n.handle_packet(now, addr(9), &answer.encode());
    assert!(n.table().contains(&Id([9; 20])));
}

#[test]
fn a_lookup_sends_alpha_queries_each_to_a_different_node() {
    let now = t0();
    let mut n = new_node(now);
    // Fill the table through answered pings.
    for i in 1..=20u8 {
        n.handle_packet(now, addr(i), &query_bytes(&[i], Id([i; 20]), Method::Ping));
    }
    let pings: Vec<_> = sent(&mut n).into_iter().filter(|(_, m)| matches!(m.body, Body::Query(_))).collect();
    for (to, m) in pings {
        let i = to.ip().to_string().split('.').nth(2).unwrap().parse::<u8>().unwrap();
        let r = Message {
            tid: m.tid,
            version: None,
            ip: None,
            read_only: false,
            body: Body::Response(Response { id: Id([i; 20]), ..Default::default() }),
        };
        n.handle_packet(now, to, &r.encode());
    }
    sent(&mut n);
    n.find_node(now, Id([0; 20]));
    let out = sent(&mut n);
    let targets: std::collections::HashSet<_> = out.iter().map(|(to, _)| *to).collect();
    assert_eq!(out.len(), Config::default().lookup.alpha);
    assert_eq!(targets.len(), out.len(), "no node asked twice");
}

#[test]
fn external_address_votes_change_our_id() {
    let now = t0();
    let mut n = Node::new(Config::default(), Some(ME), 1, now);
    let public: SocketAddr = "203.0.113.7:6881".parse().unwrap();
    for i in 1..=crate::dht::external_ip::MIN_VOTES as u8 {
        n.find_node(now, Id([i; 20]));
        let peer = SocketAddr::from(([198, 51, i, 1], 6881));
        // Answer a query we did not send: must not count.
        let r = Message {
            tid: vec![0xff, 0xff],
            version: None,
            ip: Some(public),
            read_only: false,
            body: Body::Response(Response { id: Id([i; 20]), ..Default::default() }),
        };
        n.handle_packet(now, peer, &r.encode());
    }
    assert_eq!(n.id(), ME, "unsolicited answers are not votes");
    // Answers everything the node sends, and what it sends next, for a few rounds.
    let answer_all = |n: &mut Node| {
        for _ in 0..5 {
            for (to, q) in sent(n) {
                let r = Message {
                    tid: q.tid,
                    version: None,
                    ip: Some(public),
                    read_only: false,
                    body: Body::Response(Response { id: responder_id(to), ..Default::default() }),
                };
                n.handle_packet(now, to, &r.encode());
            }
        }
    };
    // Eight routers in one /24 all say the same: one network's word is not enough.
    n.set_routers(now, (1..=8u8).map(|i| SocketAddr::from(([198, 51, 100, i], 6881))).collect());
    n.handle_timeout(now);
    answer_all(&mut n);
    assert_eq!(n.id(), ME, "votes from one /24 do not change our id");
    // Eight routers in eight networks do.
    let later = now + Duration::from_secs(120);
    n.set_routers(later, (1..=8u8).map(|i| SocketAddr::from(([198, 18, i, 1], 6881))).collect());
    n.handle_timeout(later);
    answer_all(&mut n);
    assert_ne!(n.id(), ME);
    assert!(bep42::is_valid_id(&n.id(), public.ip()));
    assert_eq!(n.external_ip(), Some(public.ip()));
}

/// A distinct id per answering router, taken from the last octet of its address.
fn responder_id(addr: SocketAddr) -> Id {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => Id([v4.octets()[3]; 20]),
        std::net::IpAddr::V6(v6) => Id([v6.octets()[15]; 20]),
    }
}

#[test]
fn client_versions_of_queriers_are_kept() {
    let now = t0();
    let mut n = new_node(now);
    let mut m = Message::decode(&query_bytes(b"v1", Id([3; 20]), Method::Ping)).unwrap();
    m.version = Some(b"LT\x02\x01".to_vec());
    n.handle_packet(now, addr(3), &m.encode());
    let entry = n.table().iter().find(|e| e.node.id == Id([3; 20])).expect("querier in the table");
    assert_eq!(entry.version.map(|v| v.client()), Some("LT".to_string()));
}

#[test]
fn a_pinged_peer_port_joins_the_table_when_it_answers() {
    let now = t0();
    let mut n = new_node(now);
    n.ping(now, addr(7));
    let out = sent(&mut n);
    assert_eq!(out.len(), 1);
    let (to, q) = &out[0];
    assert!(matches!(&q.body, Body::Query(Query { method: Method::Ping, .. })));
    let answer = Message {
        tid: q.tid.clone(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Response(Response { id: Id([7; 20]), ..Default::default() }),
    };
    n.handle_packet(now, *to, &answer.encode());
    assert!(n.table().contains(&Id([7; 20])));
}
