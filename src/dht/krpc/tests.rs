//! Round trips of every KRPC message type, interop with bytes other clients send, and hostile
//! input.

use super::*;
use proptest::prelude::*;

fn id(b: u8) -> Id {
    Id([b; 20])
}

fn query(method: Method) -> Message {
    Message {
        tid: b"aa".to_vec(),
        version: Some(b"KS01".to_vec()),
        ip: None,
        read_only: false,
        body: Body::Query(Query { id: id(1), method, want: Want::default() }),
    }
}

fn round_trip(m: &Message) {
    let bytes = m.encode();
    let back = Message::decode(&bytes).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&bytes)));
    assert_eq!(&back, m);
    // Canonical form: re-encoding gives identical bytes, and a strict decoder agrees.
    assert_eq!(back.encode(), bytes);
    assert_canonical(&bytes);
}

/// Walks `bytes` with bendy's decoder, which rejects unsorted or duplicate keys and trailing
/// bytes: an implementation independent of ours.
fn assert_canonical(bytes: &[u8]) {
    use bendy::decoding::{Decoder, Object};
    fn walk(obj: Object) -> Result<(), bendy::decoding::Error> {
        match obj {
            Object::List(mut l) => {
                while let Some(o) = l.next_object()? {
                    walk(o)?;
                }
            }
            Object::Dict(mut d) => {
                while let Some((_, v)) = d.next_pair()? {
                    walk(v)?;
                }
            }
            Object::Integer(_) | Object::Bytes(_) => {}
        }
        Ok(())
    }
    let mut dec = Decoder::new(bytes);
    let top = dec.next_object().and_then(|o| o.map_or(Ok(()), walk));
    assert!(top.is_ok(), "not canonical bencode: {top:?} in {:?}", String::from_utf8_lossy(bytes));
    assert!(matches!(dec.next_object(), Ok(None)), "trailing bytes after the message");
}

#[test]
fn bendy_rejects_unsorted_keys_so_the_canonical_check_can_fail() {
    let result = std::panic::catch_unwind(|| assert_canonical(b"d1:bi1e1:ai2ee"));
    assert!(result.is_err());
}

#[test]
fn every_query_round_trips() {
    let methods = vec![
        Method::Ping,
        Method::FindNode { target: id(2) },
        Method::GetPeers { info_hash: id(3), noseed: false, scrape: false },
        Method::GetPeers { info_hash: id(3), noseed: true, scrape: false },
        Method::GetPeers { info_hash: id(3), noseed: false, scrape: true },
        Method::AnnouncePeer { info_hash: id(4), port: 6881, implied_port: false, token: b"tok".to_vec(), seed: false },
        Method::AnnouncePeer { info_hash: id(4), port: 1, implied_port: true, token: vec![0; 8], seed: true },
        Method::SampleInfohashes { target: id(5) },
        Method::Unknown { name: b"vote".to_vec(), target: Some(id(6)) },
        Method::Unknown { name: b"nonsense".to_vec(), target: None },
    ];
    for m in methods {
        round_trip(&query(m));
    }
    let mut q = query(Method::FindNode { target: id(9) });
    if let Body::Query(ref mut qq) = q.body {
        qq.want = Want { n4: true, n6: true };
    }
    q.read_only = true;
    round_trip(&q);
}

#[test]
fn responses_and_errors_round_trip() {
    let r = Response {
        id: id(7),
        nodes: vec![CompactNode { id: id(8), addr: "1.2.3.4:5".parse().unwrap() }],
        nodes6: vec![CompactNode { id: id(9), addr: "[::2]:6".parse().unwrap() }],
        values: vec!["5.6.7.8:9".parse().unwrap(), "[::3]:7".parse().unwrap()],
        token: Some(b"secret".to_vec()),
        samples: Some(vec![id(10), id(11)]),
        interval: Some(60),
        num: Some(1234),
        bf_seeds: Some(Box::new(Bloom([0xa5; BLOOM_BYTES]))),
        bf_peers: Some(Box::new(Bloom([0x0f; BLOOM_BYTES]))),
    };
    round_trip(&Message {
        tid: vec![0, 1, 2, 3],
        version: None,
        ip: Some("9.9.9.9:1000".parse().unwrap()),
        read_only: false,
        body: Body::Response(r),
    });
    round_trip(&Message {
        tid: vec![],
        version: None,
        ip: None,
        read_only: false,
        body: Body::Response(Response { id: id(1), ..Default::default() }),
    });
    round_trip(&Message {
        tid: b"xy".to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Error(KrpcError { code: 203, message: "Protocol Error".into() }),
    });
}

#[test]
fn decodes_bep5_examples_and_unsorted_keys() {
    let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    let m = Message::decode(ping).unwrap();
    assert_eq!(m.tid, b"aa");
    assert!(matches!(m.body, Body::Query(Query { method: Method::Ping, .. })));
    // Same message with keys out of order, as some clients send.
    let unsorted = b"d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee";
    assert_eq!(Message::decode(unsorted).unwrap(), m);
    let announce = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
    match Message::decode(announce).unwrap().body {
        Body::Query(Query { method: Method::AnnouncePeer { port, implied_port, token, .. }, .. }) => {
            assert_eq!((port, implied_port, token.as_slice()), (6881, true, &b"aoeusnth"[..]));
        }
        other => panic!("{other:?}"),
    }
    let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
    assert_eq!(
        Message::decode(err).unwrap().body,
        Body::Error(KrpcError { code: 201, message: "A Generic Error Ocurred".into() })
    );
}

#[test]
fn scrape_flag_and_filters_decode_from_other_clients_bytes() {
    let q =
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234566:scrapei1ee1:q9:get_peers1:t2:aa1:y1:qe";
    match Message::decode(q).unwrap().body {
        Body::Query(Query { method: Method::GetPeers { scrape, noseed, .. }, .. }) => assert!(scrape && !noseed),
        other => panic!("{other:?}"),
    }
    let mut r = b"d1:rd4:BFpe256:".to_vec();
    r.extend([1u8; 256]);
    r.extend(b"4:BFsd3:abc2:id20:abcdefghij0123456789e1:t2:aa1:y1:re");
    let Body::Response(resp) = Message::decode(&r).unwrap().body else { panic!("a response") };
    assert_eq!(resp.bf_peers.as_deref(), Some(&Bloom([1; BLOOM_BYTES])));
    // A filter of the wrong size is left out; the rest of the answer stands.
    assert_eq!(resp.bf_seeds, None);
}

#[test]
fn hostile_input_is_an_error_with_tid_when_readable() {
    let cases: &[&[u8]] = &[
        b"",
        b"le",
        b"d1:t2:aae",
        b"d1:t2:aa1:y1:qe",
        b"d1:t2:aa1:y1:q1:q4:pinge",
        b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",
        b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe",
        b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe",
        b"d1:ad2:id20:abcdefghij01234567894:porti70000e5:token1:x9:info_hash20:mnopqrstuvwxyz123456e1:q13:announce_peer1:t2:aa1:y1:qe",
        b"d1:rd2:id20:abcdefghij01234567895:nodes3:abce1:t2:aa1:y1:re",
        b"d1:t2:aa1:y1:ze",
        b"d1:e4:oops1:t2:aa1:y1:ee",
        b"d1:t999999999:aa1:y1:qe",
    ];
    for c in cases {
        let err = Message::decode(c);
        assert!(err.is_err(), "accepted {:?}", String::from_utf8_lossy(c));
    }
    let e = Message::decode(b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe").unwrap_err();
    assert_eq!(e.tid.as_deref(), Some(&b"aa"[..]));
    assert!(e.answerable);
    assert_eq!(Message::decode(b"i5e").unwrap_err().error, DecodeError::NotADict);
}

#[test]
fn huge_and_deep_inputs_fail_fast() {
    let mut deep = b"d1:a".to_vec();
    deep.extend(std::iter::repeat_n(b'l', 100_000));
    assert!(Message::decode(&deep).is_err());
    let huge_len = b"d1:t18446744073709551615:a1:y1:qe";
    assert!(Message::decode(huge_len).is_err());
}

#[test]
fn oversized_tid_is_not_echoed() {
    let mut m = b"d1:t".to_vec();
    m.extend_from_slice(format!("{}:", MAX_TID_LEN + 1).as_bytes());
    m.extend(std::iter::repeat_n(b'x', MAX_TID_LEN + 1));
    m.extend_from_slice(b"1:y1:qe");
    let e = Message::decode(&m).unwrap_err();
    assert_eq!(e.tid, None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(pos in 0usize..200, byte in any::<u8>()) {
        let mut m = query(Method::AnnouncePeer { info_hash: id(4), port: 6881, implied_port: true, token: b"tok".to_vec(), seed: false }).encode();
        let i = pos % m.len();
        m[i] = byte;
        let _ = Message::decode(&m);
        m.truncate(i);
        let _ = Message::decode(&m);
    }

    /// Every message type with every optional field, as generated: our decoder gives back what
    /// was encoded, re-encoding is byte-identical, and bendy's strict decoder accepts it.
    #[test]
    fn every_message_round_trips(m in arb_message()) {
        round_trip(&m);
    }
}

fn arb_id() -> impl Strategy<Value = Id> {
    any::<[u8; 20]>().prop_map(Id)
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

/// Integers with the extremes that a decimal writer or parser may get wrong.
fn arb_int() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0), Just(-1), Just(i64::MIN), Just(i64::MAX), any::<i64>()]
}

fn arb_v4() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 4]>(), any::<u16>()).prop_map(SocketAddr::from)
}

fn arb_v6() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((std::net::Ipv6Addr::from(ip), port)))
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![arb_v4(), arb_v6()]
}

/// `nodes` carries IPv4 contacts and `nodes6` IPv6 ones (BEP 32).
fn arb_nodes(addr: impl Strategy<Value = SocketAddr>) -> impl Strategy<Value = Vec<CompactNode>> {
    proptest::collection::vec((arb_id(), addr).prop_map(|(id, addr)| CompactNode { id, addr }), 0..10)
}

fn arb_method() -> impl Strategy<Value = Method> {
    const KNOWN: [&[u8]; 5] = [b"ping", b"find_node", b"get_peers", b"announce_peer", b"sample_infohashes"];
    prop_oneof![
        Just(Method::Ping),
        arb_id().prop_map(|target| Method::FindNode { target }),
        (arb_id(), any::<bool>(), any::<bool>()).prop_map(|(info_hash, noseed, scrape)| Method::GetPeers {
            info_hash,
            noseed,
            scrape
        }),
        (arb_id(), any::<u16>(), any::<bool>(), arb_bytes(MAX_TOKEN_LEN), any::<bool>()).prop_map(
            |(info_hash, port, implied_port, token, seed)| Method::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                seed
            }
        ),
        arb_id().prop_map(|target| Method::SampleInfohashes { target }),
        (
            arb_bytes(64).prop_filter("a known method", |n| !KNOWN.contains(&n.as_slice())),
            proptest::option::of(arb_id())
        )
            .prop_map(|(name, target)| Method::Unknown { name, target }),
    ]
}

fn arb_query() -> impl Strategy<Value = Query> {
    (arb_id(), arb_method(), any::<bool>(), any::<bool>()).prop_map(|(id, method, n4, n6)| Query {
        id,
        method,
        want: Want { n4, n6 },
    })
}

fn arb_response() -> impl Strategy<Value = Response> {
    use proptest::option::of;
    (
        arb_id(),
        arb_nodes(arb_v4()),
        arb_nodes(arb_v6()),
        proptest::collection::vec(arb_addr(), 0..20),
        of(arb_bytes(MAX_TOKEN_LEN)),
        of(proptest::collection::vec(arb_id(), 0..20)),
        of(arb_int()),
        of(arb_int()),
        of(arb_bloom()),
        of(arb_bloom()),
    )
        .prop_map(|(id, nodes, nodes6, values, token, samples, interval, num, bf_seeds, bf_peers)| Response {
            id,
            nodes,
            nodes6,
            values,
            token,
            samples,
            interval,
            num,
            bf_seeds,
            bf_peers,
        })
}

fn arb_bloom() -> impl Strategy<Value = Box<Bloom>> {
    proptest::collection::vec(any::<u8>(), BLOOM_BYTES)
        .prop_map(|v| Box::new(Bloom::from_slice(&v).expect("256 bytes")))
}

fn arb_error() -> impl Strategy<Value = KrpcError> {
    // Messages are kept to 200 characters by the decoder; any characters, not just ASCII.
    (arb_int(), proptest::collection::vec(any::<char>(), 0..=200))
        .prop_map(|(code, chars)| KrpcError { code, message: chars.into_iter().collect() })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        arb_query().prop_map(Body::Query),
        arb_response().prop_map(Body::Response),
        arb_error().prop_map(Body::Error),
    ];
    (arb_bytes(MAX_TID_LEN), proptest::option::of(arb_bytes(16)), proptest::option::of(arb_addr()), any::<bool>(), body)
        .prop_map(|(tid, version, ip, read_only, body)| Message { tid, version, ip, read_only, body })
}
