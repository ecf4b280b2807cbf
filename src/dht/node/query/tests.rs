//! The crawler's node API: direct queries and their events, incoming info-hash reports and
//! their cap, scrape answers, and scraping lookups with their values follow-up.

use super::super::*;
use crate::dht::bloom::Bloom;
use crate::dht::krpc::KrpcError;

fn t0() -> Instant {
    crate::clock::now()
}

const ME: Id = Id([0x11; 20]);

fn node(now: Instant, report: bool) -> Node {
    let config = Config { derive_id_from_ip: false, report_incoming_info_hashes: report, ..Config::default() };
    Node::new(config, Some(ME), 42, now)
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, i, 1], 6881))
}

fn msg(tid: &[u8], body: Body) -> Vec<u8> {
    Message { tid: tid.to_vec(), version: None, ip: None, read_only: false, body }.encode()
}

fn query(tid: &[u8], sender: Id, method: Method) -> Vec<u8> {
    msg(tid, Body::Query(Query { id: sender, method, want: Want::default() }))
}

/// The queries the node sent, as (to, tid, method).
fn sent_queries(n: &mut Node) -> Vec<(SocketAddr, Vec<u8>, Method)> {
    std::iter::from_fn(|| n.poll_transmit())
        .filter_map(|t| match Message::decode(&t.payload).ok()? {
            Message { tid, body: Body::Query(q), .. } => Some((t.to, tid, q.method)),
            _ => None,
        })
        .collect()
}

fn events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

#[test]
fn a_direct_query_is_answered_or_fails_by_event() {
    let now = t0();
    let mut n = node(now, false);
    let target = Id([5; 20]);
    let q = n.query(now, addr(1), Some(Id([1; 20])), Method::SampleInfohashes { target }).expect("room");
    let out = sent_queries(&mut n);
    assert_eq!(out.len(), 1);
    let r = Response { id: Id([1; 20]), samples: Some(vec![Id([9; 20])]), num: Some(7), ..Default::default() };
    n.handle_packet(now, addr(1), &msg(&out[0].1, Body::Response(r)));
    match events(&mut n).as_slice() {
        [Event::QueryAnswered { id, from, response }] => {
            assert_eq!((*id, *from, response.num), (q, addr(1), Some(7)));
        }
        other => panic!("{other:?}"),
    }
    // The responder joined the routing table as any responder does.
    assert!(n.table().contains(&Id([1; 20])));

    let q2 = n.query(now, addr(2), None, Method::Ping).expect("room");
    let q3 = n.query(now, addr(3), None, Method::Unknown { name: b"x".to_vec(), target: None }).expect("room");
    assert_ne!(q2, q3);
    let out = sent_queries(&mut n);
    let err = Body::Error(KrpcError { code: 204, message: "Method Unknown".into() });
    n.handle_packet(now, addr(3), &msg(&out[1].1, err));
    let later = now + Duration::from_secs(6);
    n.handle_timeout(later);
    let evs = events(&mut n);
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::QueryFailed { id, failure: QueryFailure::Error(204), .. } if *id == q3)));
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::QueryFailed { id, failure: QueryFailure::Timeout, .. } if *id == q2)));
}

#[test]
fn incoming_info_hashes_are_reported_only_when_asked_and_capped() {
    let now = t0();
    let mut quiet = node(now, false);
    let gp = Method::GetPeers { info_hash: Id([7; 20]), noseed: false, scrape: false };
    quiet.handle_packet(now, addr(1), &query(b"a", Id([1; 20]), gp.clone()));
    assert!(!events(&mut quiet).iter().any(|e| matches!(e, Event::InfoHashSeen { .. })));

    let mut n = node(now, true);
    n.config.max_info_hash_events = 3;
    for i in 0..10u8 {
        let gp = Method::GetPeers { info_hash: Id([i; 20]), noseed: false, scrape: false };
        n.handle_packet(now, addr(i + 1), &query(&[i], Id([i + 1; 20]), gp));
    }
    let seen = events(&mut n).into_iter().filter(|e| matches!(e, Event::InfoHashSeen { .. })).count();
    assert_eq!(seen, 3, "the queue holds the cap's worth");
    assert_eq!(n.info_hash_events_dropped(), 7);
    // Polling made room again.
    n.handle_packet(now, addr(50), &query(b"z", Id([50; 20]), gp));
    assert!(events(&mut n).iter().any(|e| matches!(e, Event::InfoHashSeen { announced: false, .. })));
}

#[test]
fn a_scrape_is_answered_with_filters_and_fewer_values() {
    let now = t0();
    let mut n = node(now, false);
    let ih = Id([0x77; 20]);
    for i in 0..60u8 {
        let from = SocketAddr::from(([45, i, 0, 1], 6881));
        let gp = Method::GetPeers { info_hash: ih, noseed: false, scrape: false };
        n.handle_packet(now, from, &query(&[i, 0], Id([0x40; 20]), gp));
        let token = std::iter::from_fn(|| n.poll_transmit())
            .filter_map(|t| match Message::decode(&t.payload).ok()?.body {
                Body::Response(r) => r.token,
                _ => None,
            })
            .next()
            .expect("token");
        let ap = Method::AnnouncePeer { info_hash: ih, port: 1, implied_port: false, token, seed: i % 3 == 0 };
        n.handle_packet(now, from, &query(&[i, 1], Id([0x40; 20]), ap));
        while n.poll_transmit().is_some() {}
    }
    let asker = addr(200);
    n.handle_packet(
        now,
        asker,
        &query(b"s", Id([2; 20]), Method::GetPeers { info_hash: ih, noseed: false, scrape: true }),
    );
    let r = std::iter::from_fn(|| n.poll_transmit())
        .filter(|t| t.to == asker)
        .find_map(|t| match Message::decode(&t.payload).ok()?.body {
            Body::Response(r) => Some(r),
            _ => None,
        })
        .expect("an answer");
    assert_eq!(r.values.len(), answer::MAX_VALUES_WITH_SCRAPE);
    let (seeds, peers) = (r.bf_seeds.expect("BFsd").estimate(), r.bf_peers.expect("BFpe").estimate());
    assert!((17..=23).contains(&seeds) && (36..=44).contains(&peers), "seeds {seeds} peers {peers}");
}

#[test]
fn a_scraping_lookup_asks_again_for_values_a_scrape_answer_left_out() {
    let now = t0();
    let mut n = node(now, false);
    let x = Id([0x70; 20]);
    n.handle_packet(now, addr(1), &query(b"p", x, Method::Ping));
    let _ = sent_queries(&mut n);
    let ih = Id([0x71; 20]);
    let lookup = n.get_peers_with(now, ih, GetPeersOptions { scrape: true });
    let out: Vec<_> =
        sent_queries(&mut n).into_iter().filter(|(_, _, m)| matches!(m, Method::GetPeers { .. })).collect();
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].2, Method::GetPeers { scrape: true, .. }));
    // libtorrent's way: filters that show peers, and no values.
    let mut bf = Bloom::default();
    bf.insert(addr(99));
    let r = Response { id: x, token: Some(b"t".to_vec()), bf_peers: Some(Box::new(bf)), ..Default::default() };
    n.handle_packet(now, addr(1), &msg(&out[0].1, Body::Response(r)));
    let follow = sent_queries(&mut n);
    assert_eq!(follow.len(), 1, "{follow:?}");
    assert!(matches!(follow[0].2, Method::GetPeers { scrape: false, .. }));
    assert!(!events(&mut n).iter().any(|e| matches!(e, Event::LookupDone(_))), "the lookup waits for the values");
    let r = Response { id: x, values: vec![addr(99)], ..Default::default() };
    n.handle_packet(now, addr(1), &msg(&follow[0].1, Body::Response(r)));
    let evs = events(&mut n);
    assert!(evs.iter().any(|e| matches!(e, Event::Peers { peers, .. } if peers == &vec![addr(99)])));
    let summary = evs
        .iter()
        .find_map(|e| match e {
            Event::LookupDone(s) if s.id == lookup => Some(s.clone()),
            _ => None,
        })
        .expect("done");
    assert_eq!(summary.peers, 1);
    let est = summary.scrape.expect("an estimate");
    assert_eq!((est.seeds, est.leechers, est.nodes), (0, 1, 1));
}
