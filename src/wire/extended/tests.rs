//! The BEP 10 extension handshake: the examples of BEP 10 and BEP 9, lenient reading of odd
//! values, canonical encoding and hostile payloads.

use super::*;
use crate::wire::assert_canonical_bencode;
use proptest::prelude::*;

fn encode(h: &ExtHandshake) -> Vec<u8> {
    let mut out = Vec::new();
    h.encode(&mut out);
    out
}

fn decode(bytes: &[u8]) -> ExtHandshake {
    ExtHandshake::decode(bytes).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(bytes)))
}

#[test]
fn bep10_example() {
    // BEP 10's encoded example as printed declares `6:` for `µT_PEX`, which is only 6 bytes
    // with µ as the single Latin-1 byte 0xb5 (the `v` string is UTF-8). Neither extension
    // name is one we know, so only `p` and `v` are taken.
    let h = decode(b"d1:md11:LT_metadatai1e6:\xb5T_PEXi2ee1:pi6881e1:v13:\xc2\xb5Torrent 1.2e");
    assert_eq!(
        h,
        ExtHandshake { listen_port: Some(6881), client: Some("µTorrent 1.2".into()), ..ExtHandshake::default() }
    );
    // The same example as BEP 10's table spells it, with `ut_pex`.
    let h = decode(b"d1:md11:LT_metadatai1e6:ut_pexi2ee1:pi6881e1:v13:\xc2\xb5Torrent 1.2e");
    assert_eq!(h.ut_pex, Some(2));
    assert_eq!(h.ut_metadata, None);
}

#[test]
fn bep10_disable_with_zero() {
    let h = decode(b"d1:md11:ut_metadatai0e6:ut_pexi0eee");
    assert_eq!((h.ut_metadata, h.ut_pex), (None, None));
}

#[test]
fn bep9_example() {
    // {'m': {'ut_metadata': 3}, 'metadata_size': 31235}
    let bytes = b"d1:md11:ut_metadatai3ee13:metadata_sizei31235ee";
    let h = decode(bytes);
    assert_eq!(h, ExtHandshake { ut_metadata: Some(3), metadata_size: Some(31235), ..ExtHandshake::default() });
    assert_eq!(encode(&h), bytes);
}

#[test]
fn encodes_every_field_canonically() {
    let h = ExtHandshake {
        ut_metadata: Some(1),
        ut_pex: Some(2),
        metadata_size: Some(40000),
        client: Some("kadswarm 0.1".into()),
        listen_port: Some(6881),
        reqq: Some(250),
        your_ip: Some("1.2.3.4".parse().unwrap()),
    };
    let bytes = encode(&h);
    assert_eq!(
        bytes,
        b"d1:md11:ut_metadatai1e6:ut_pexi2ee13:metadata_sizei40000e1:pi6881e4:reqqi250e\
          1:v12:kadswarm 0.16:yourip4:\x01\x02\x03\x04e"
    );
    assert_canonical_bencode(&bytes);
    assert_eq!(decode(&bytes), h);
    // An empty handshake still carries `m`.
    assert_eq!(encode(&ExtHandshake::default()), b"d1:mdee");
}

#[test]
fn unusable_extension_ids_read_as_absent() {
    for m in [&b"i256e"[..], b"i-1e", b"3:abc", b"le", b"i99999999999e"] {
        let mut bytes = b"d1:md11:ut_metadata".to_vec();
        bytes.extend_from_slice(m);
        bytes.extend_from_slice(b"6:ut_pexi7eee");
        let h = decode(&bytes);
        assert_eq!(h.ut_metadata, None, "{}", String::from_utf8_lossy(m));
        assert_eq!(h.ut_pex, Some(7));
    }
    assert_eq!(decode(b"d1:mi1ee").ut_metadata, None);
    assert_eq!(decode(b"de"), ExtHandshake::default());
}

#[test]
fn metadata_size_must_be_plausible() {
    let size = |n: i64| decode(format!("d13:metadata_sizei{n}ee").as_bytes()).metadata_size;
    assert_eq!(size(1), Some(1));
    assert_eq!(size(MAX_METADATA_SIZE as i64), Some(MAX_METADATA_SIZE));
    assert_eq!(size(MAX_METADATA_SIZE as i64 + 1), None);
    assert_eq!(size(0), None);
    assert_eq!(size(-5), None);
    assert_eq!(size(i64::MAX), None);
}

#[test]
fn numbers_out_of_range_read_as_absent() {
    assert_eq!(decode(b"d1:pi0ee").listen_port, None);
    assert_eq!(decode(b"d1:pi65536ee").listen_port, None);
    assert_eq!(decode(b"d1:pi65535ee").listen_port, Some(65535));
    assert_eq!(decode(b"d1:p4:6881e").listen_port, None);
    assert_eq!(decode(b"d4:reqqi0ee").reqq, None);
    assert_eq!(decode(b"d4:reqqi4294967296ee").reqq, None);
    assert_eq!(decode(b"d4:reqqi4294967295ee").reqq, Some(u32::MAX));
}

#[test]
fn yourip_of_either_family() {
    assert_eq!(decode(b"d6:yourip4:\x0a\x00\x00\x01e").your_ip, Some("10.0.0.1".parse().unwrap()));
    let mut v6 = b"d6:yourip16:".to_vec();
    v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    v6.push(b'e');
    assert_eq!(decode(&v6).your_ip, Some("2001:db8::1".parse().unwrap()));
    // With a port (6 bytes) it is not what BEP 10 specifies.
    assert_eq!(decode(b"d6:yourip6:\x0a\x00\x00\x01\x1a\xe1e").your_ip, None);
    assert_eq!(decode(b"d6:yourip0:e").your_ip, None);
}

#[test]
fn client_name_is_capped_on_a_character_boundary() {
    let long = format!("d1:v100:{}e", "x".repeat(100));
    assert_eq!(decode(long.as_bytes()).client, Some("x".repeat(MAX_CLIENT_LEN)));
    // A two-byte µ straddles the cut: drop it whole.
    let name = format!("{}µ", "a".repeat(MAX_CLIENT_LEN - 1));
    let bytes = format!("d1:v{}:{name}e", name.len());
    assert_eq!(decode(bytes.as_bytes()).client, Some("a".repeat(MAX_CLIENT_LEN - 1)));
    // Not UTF-8 at all: kept readable.
    assert_eq!(decode(b"d1:v2:\xff\xfee").client, Some("\u{fffd}\u{fffd}".into()));
}

#[test]
fn unknown_keys_are_ignored() {
    let h = decode(b"d1:ei1e4:ipv44:\x01\x02\x03\x041:md6:lt_tex4:wxyz11:ut_metadatai2ee11:upload_onlyi1e1:zli1eee");
    assert_eq!(h, ExtHandshake { ut_metadata: Some(2), ..ExtHandshake::default() });
}

#[test]
fn payloads_that_are_not_dictionaries_are_errors() {
    assert_eq!(ExtHandshake::decode(b"i1e"), Err(ExtError::NotADict("integer")));
    assert_eq!(ExtHandshake::decode(b"4:spam"), Err(ExtError::NotADict("string")));
    assert_eq!(ExtHandshake::decode(b"le"), Err(ExtError::NotADict("list")));
    // Truncated: every proper prefix of a valid handshake fails cleanly.
    let full = encode(&ExtHandshake { ut_metadata: Some(1), client: Some("x".into()), ..ExtHandshake::default() });
    for len in 0..full.len() {
        assert!(matches!(ExtHandshake::decode(&full[..len]), Err(ExtError::Bencode(_))), "cut at {len}");
    }
}

fn arb_handshake() -> impl Strategy<Value = ExtHandshake> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ];
    (
        proptest::option::of(1..=u8::MAX),
        proptest::option::of(1..=u8::MAX),
        proptest::option::of(1..=MAX_METADATA_SIZE),
        proptest::option::of("[ -~µ]{0,32}"),
        proptest::option::of(1..=u16::MAX),
        proptest::option::of(1..=u32::MAX),
        proptest::option::of(ip),
    )
        .prop_map(|(ut_metadata, ut_pex, metadata_size, client, listen_port, reqq, your_ip)| ExtHandshake {
            ut_metadata,
            ut_pex,
            metadata_size,
            client,
            listen_port,
            reqq,
            your_ip,
        })
}

proptest! {
    #[test]
    fn any_handshake_round_trips(h in arb_handshake()) {
        let bytes = encode(&h);
        assert_canonical_bencode(&bytes);
        prop_assert_eq!(ExtHandshake::decode(&bytes), Ok(h));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ExtHandshake::decode(&bytes);
    }

    #[test]
    fn random_dictionaries_never_panic(body in "(1:m|1:p|1:v|4:reqq|6:yourip|13:metadata_size|i-?[0-9]{1,20}e|[0-9]:[a-z\\xb5]{0,9}|d|l|e){0,12}") {
        let bytes = format!("d{body}e");
        let _ = ExtHandshake::decode(bytes.as_bytes());
    }
}
