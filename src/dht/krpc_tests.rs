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
        Method::GetPeers { info_hash: id(3), noseed: false },
        Method::GetPeers { info_hash: id(3), noseed: true },
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

    #[test]
    fn find_node_round_trips(t in any::<[u8; 20]>(), tid in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut m = query(Method::FindNode { target: Id(t) });
        m.tid = tid;
        round_trip(&m);
    }
}
