//! The BEP 11 message: the spec's layout, canonical encoding, round trips, and hostile payloads
//! (oversized lists, bad compact lengths, odd flags, wrong types, huge strings).

use super::*;
use crate::wire::assert_canonical_bencode;
use proptest::prelude::*;

fn encode(m: &PexMessage) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

fn decode(bytes: &[u8]) -> Result<PexMessage, PexError> {
    PexMessage::decode(bytes, &PexLimits::default())
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `n` distinct IPv4 peers 10.0.x.y:6881 as one compact string.
fn compact4(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| [10, 0, (i >> 8) as u8, i as u8, 0x1a, 0xe1]).collect()
}

fn dict(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"d".to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(format!("{}:{k}{}:", k.len(), v.len()).as_bytes());
        out.extend_from_slice(v);
    }
    out.push(b'e');
    out
}

#[test]
fn decodes_bep11_layout_v4_and_v6() {
    let mut added6 = vec![0u8; 16];
    added6[15] = 1; // ::1
    added6.extend_from_slice(&[0x1a, 0xe2]);
    let bytes = dict(&[
        ("added", &[1, 2, 3, 4, 0x1a, 0xe1, 5, 6, 7, 8, 0, 80]),
        ("added.f", &[0x12, 0x04]),
        ("added6", &added6),
        ("added6.f", &[0x02]),
        ("dropped", &[9, 9, 9, 9, 0, 1]),
    ]);
    let m = decode(&bytes).unwrap();
    assert_eq!(
        m.added,
        vec![
            (a("1.2.3.4:6881"), PexFlags::SEED | PexFlags::REACHABLE),
            (a("5.6.7.8:80"), PexFlags::UTP),
            (a("[::1]:6882"), PexFlags::SEED),
        ]
    );
    assert_eq!(m.dropped, vec![a("9.9.9.9:1")]);
    assert!((PexFlags::SEED | PexFlags::REACHABLE).contains(PexFlags::SEED));
    assert!(!PexFlags::UTP.contains(PexFlags::SEED));
}

#[test]
fn encodes_canonically_and_round_trips() {
    let m = PexMessage {
        added: vec![(a("1.2.3.4:6881"), PexFlags::SEED), (a("[2001:db8::7]:51413"), PexFlags::UTP)],
        dropped: vec![a("4.3.2.1:1"), a("[2001:db8::9]:2")],
    };
    let bytes = encode(&m);
    assert_canonical_bencode(&bytes);
    assert_eq!(decode(&bytes).unwrap(), m);
    // Only IPv4: the v6 keys are left out, the v4 ones are always there.
    let m = PexMessage { added: vec![(a("1.2.3.4:6881"), PexFlags(0x10))], dropped: vec![] };
    let bytes = encode(&m);
    assert_eq!(bytes, b"d5:added6:\x01\x02\x03\x04\x1a\xe17:added.f1:\x107:dropped0:e");
    assert_eq!(encode(&PexMessage::default()), b"d5:added0:7:added.f0:7:dropped0:e");
    assert!(decode(&encode(&PexMessage::default())).unwrap().is_empty());
}

#[test]
fn short_flags_read_as_zero_and_long_flags_are_ignored() {
    let m = decode(&dict(&[("added", &compact4(3)), ("added.f", &[0x02])])).unwrap();
    let flags: Vec<_> = m.added.iter().map(|(_, f)| f.0).collect();
    assert_eq!(flags, vec![0x02, 0, 0]);
    let m = decode(&dict(&[("added", &compact4(1)), ("added.f", &[0x04; 500])])).unwrap();
    assert_eq!(m.added, vec![(a("10.0.0.0:6881"), PexFlags::UTP)]);
}

#[test]
fn missing_keys_are_empty_and_unknown_keys_ignored() {
    assert!(decode(b"de").unwrap().is_empty());
    let m = decode(&dict(&[("added", &compact4(1)), ("zzz", b"whatever")])).unwrap();
    assert_eq!(m.added.len(), 1);
}

#[test]
fn oversized_lists_keep_only_the_first_fifty() {
    let bytes = dict(&[("added", &compact4(1000)), ("added.f", &[1; 1000]), ("dropped", &compact4(700))]);
    assert!(bytes.len() < MAX_PEX_PAYLOAD);
    let m = decode(&bytes).unwrap();
    assert_eq!(m.added.len(), MAX_ADDED_CONSIDERED);
    assert_eq!(m.dropped.len(), MAX_DROPPED_CONSIDERED);
    assert_eq!(m.added[0].0, a("10.0.0.0:6881"));
    assert_eq!(m.added[49].0, a("10.0.0.49:6881"));
    // The cap counts both families together, IPv4 first.
    let six = vec![0x20u8; 18 * 10];
    let m = decode(&dict(&[("added", &compact4(45)), ("added6", &six)])).unwrap();
    assert_eq!(m.added.len(), 50);
    assert_eq!(m.added.iter().filter(|(x, _)| x.is_ipv6()).count(), 5);
    let tight = PexLimits { max_added: 2, max_dropped: 0, ..PexLimits::default() };
    let m = PexMessage::decode(&dict(&[("added", &compact4(5)), ("dropped", &compact4(5))]), &tight).unwrap();
    assert_eq!((m.added.len(), m.dropped.len()), (2, 0));
}

#[test]
fn bad_compact_lengths_are_errors() {
    for (key, len, unit) in
        [("added", 7, 6), ("added", 5, 6), ("dropped", 13, 6), ("added6", 17, 18), ("dropped6", 6, 18)]
    {
        let bytes = dict(&[(key, &vec![1u8; len])]);
        match decode(&bytes) {
            Err(PexError::BadCompactLength { key: k, len: l, unit: u }) => assert_eq!((k, l, u), (key, len, unit)),
            other => panic!("{key} of {len}: {other:?}"),
        }
    }
}

#[test]
fn wrong_types_and_non_dicts_are_errors() {
    assert_eq!(decode(b"i5e"), Err(PexError::NotADict("integer")));
    assert_eq!(decode(b"3:abc"), Err(PexError::NotADict("string")));
    assert_eq!(decode(b"le"), Err(PexError::NotADict("list")));
    assert!(matches!(decode(b""), Err(PexError::Bencode(_))));
    assert!(matches!(decode(b"d5:added"), Err(PexError::Bencode(_))));
    assert_eq!(decode(b"d5:addedi6ee"), Err(PexError::NotAString { key: "added" }));
    assert_eq!(decode(b"d7:added.fleee"), Err(PexError::NotAString { key: "added.f" }));
    assert_eq!(decode(b"d8:dropped6deee"), Err(PexError::NotAString { key: "dropped6" }));
}

#[test]
fn huge_payloads_and_string_lengths_are_refused_without_allocating() {
    // A declared length far past the input: the bencode reader refuses it before reading.
    assert!(matches!(decode(b"d5:added99999999999999:xe"), Err(PexError::Bencode(_))));
    let huge = dict(&[("added", &compact4(20_000))]);
    assert!(matches!(decode(&huge), Err(PexError::TooLong { max: MAX_PEX_PAYLOAD, .. })));
    // Deep nesting under an unknown key is bounded by the bencode reader.
    let mut deep = b"d1:x".to_vec();
    deep.extend(std::iter::repeat_n(b'l', 10_000));
    assert!(decode(&deep).is_err());
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(ip.into()), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(ip.into()), p)),
    ]
}

/// IPv4 entries before IPv6 ones, as decode returns them.
fn v4_first<T: Clone>(items: &[T], addr: impl Fn(&T) -> SocketAddr) -> Vec<T> {
    let (mut v4, v6): (Vec<T>, Vec<T>) = items.iter().cloned().partition(|x| addr(x).is_ipv4());
    v4.extend(v6);
    v4
}

proptest! {
    #[test]
    fn round_trip(
        added in proptest::collection::vec((arb_addr(), any::<u8>()), 0..50),
        dropped in proptest::collection::vec(arb_addr(), 0..50),
    ) {
        let m = PexMessage {
            added: v4_first(&added, |(a, _)| *a).into_iter().map(|(a, f)| (a, PexFlags(f))).collect(),
            dropped: v4_first(&dropped, |a| *a),
        };
        let bytes = encode(&m);
        assert_canonical_bencode(&bytes);
        prop_assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = decode(&bytes) {
            prop_assert!(m.added.len() <= MAX_ADDED_CONSIDERED && m.dropped.len() <= MAX_DROPPED_CONSIDERED);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        added in proptest::collection::vec((arb_addr(), any::<u8>()), 0..20),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let m = PexMessage { added: added.into_iter().map(|(a, f)| (a, PexFlags(f))).collect(), dropped: vec![] };
        let mut bytes = encode(&m);
        let i = at % bytes.len();
        bytes[i] = byte;
        let _ = decode(&bytes);
        bytes.truncate(i);
        let _ = decode(&bytes);
    }
}
