//! BT-SEARCH encoding, libtorrent's exact bytes, and hostile datagrams.

use super::*;

fn ih(n: u8) -> InfoHash {
    InfoHash::from_slice(&[n; 20]).unwrap()
}

/// What libtorrent 2.1's `render_lsd_packet` produces (cookie printed with `%x`).
const LIBTORRENT: &[u8] = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n\
Infohash: 8f2365ccbe84a5bdb8cc00ec9513acc2a61e4535\r\ncookie: 2476fa45\r\n\r\n\r\n";

#[test]
fn parses_libtorrent_announce() {
    let a = Announce::parse(LIBTORRENT).unwrap();
    assert_eq!(a.port, 6881);
    assert_eq!(a.info_hashes, vec!["8f2365ccbe84a5bdb8cc00ec9513acc2a61e4535".parse().unwrap()]);
    assert_eq!(a.cookie.as_deref(), Some("2476fa45"));
}

#[test]
fn encodes_what_libtorrent_sends() {
    let a = Announce {
        port: 6881,
        info_hashes: vec!["8f2365ccbe84a5bdb8cc00ec9513acc2a61e4535".parse().unwrap()],
        cookie: Some("2476fa45".into()),
    };
    assert_eq!(a.encode(Family::V4), LIBTORRENT);
}

#[test]
fn round_trip_many_hashes_and_v6_host() {
    let a = Announce { port: 51413, info_hashes: (1..=MAX_INFOHASHES as u8).map(ih).collect(), cookie: None };
    let bytes = a.encode(Family::V6);
    assert!(bytes.len() <= MAX_MESSAGE, "{} bytes", bytes.len());
    assert!(bytes.starts_with(b"BT-SEARCH * HTTP/1.1\r\nHost: [ff15::efc0:988f]:6771\r\n"));
    assert_eq!(Announce::parse(&bytes).unwrap(), a);
}

#[test]
fn encode_caps_hashes_per_message() {
    let a = Announce { port: 1, info_hashes: (1..=40).map(ih).collect(), cookie: Some("c".into()) };
    let back = Announce::parse(&a.encode(Family::V4)).unwrap();
    assert_eq!(back.info_hashes, (1..=MAX_INFOHASHES as u8).map(ih).collect::<Vec<_>>());
}

#[test]
fn header_names_in_any_case_and_lf_only_lines() {
    let text = format!(
        "bt-search * http/1.1\nHOST: 239.192.152.143:6771\nport:  6881 \nINFOHASH: {}\nCookie: abc\n\n",
        ih(7).to_hex().to_uppercase()
    );
    let a = Announce::parse(text.as_bytes()).unwrap();
    assert_eq!((a.port, a.info_hashes, a.cookie.as_deref()), (6881, vec![ih(7)], Some("abc")));
}

#[test]
fn forgives_missing_host_and_final_blank_line_and_skips_unknown_headers() {
    let text = format!("BT-SEARCH * HTTP/1.1\r\nX-Whatever: 1\r\nPort: 10\r\nInfohash: {}", ih(3).to_hex());
    let a = Announce::parse(text.as_bytes()).unwrap();
    assert_eq!((a.port, a.info_hashes, a.cookie), (10, vec![ih(3)], None));
}

#[test]
fn headers_after_the_blank_line_are_body_and_ignored() {
    let text = format!("BT-SEARCH * HTTP/1.1\r\nPort: 10\r\n\r\nInfohash: {}\r\n", ih(3).to_hex());
    assert_eq!(Announce::parse(text.as_bytes()), Err(MessageError::NoInfoHash(0)));
}

#[test]
fn no_line_breaks_at_all() {
    let text = format!("BT-SEARCH * HTTP/1.1 Port: 10 Infohash: {}", ih(3).to_hex());
    assert!(Announce::parse(text.as_bytes()).is_err());
    assert_eq!(Announce::parse(b""), Err(MessageError::NotBtSearch));
    assert_eq!(Announce::parse(b"BT-SEARCH * HTTP/1.1"), Err(MessageError::MissingPort));
}

#[test]
fn wrong_request_lines() {
    for line in ["M-SEARCH * HTTP/1.1", "BT-SEARCH", "BT-SEARCH *", "BT-SEARCH * SIP/2.0", "GET / HTTP/1.1"] {
        let text = format!("{line}\r\nPort: 1\r\nInfohash: {}\r\n\r\n", ih(1).to_hex());
        assert_eq!(Announce::parse(text.as_bytes()), Err(MessageError::NotBtSearch), "{line}");
    }
}

#[test]
fn huge_datagrams_are_refused_unread() {
    let mut text = format!("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: {}\r\n", ih(1).to_hex()).into_bytes();
    text.resize(MAX_MESSAGE + 1, b'x');
    assert_eq!(Announce::parse(&text), Err(MessageError::TooLong(MAX_MESSAGE + 1)));
    assert!(Announce::parse(&vec![b'\n'; 65_000]).is_err());
}

#[test]
fn missing_headers() {
    let no_port = format!("BT-SEARCH * HTTP/1.1\r\nInfohash: {}\r\n\r\n", ih(1).to_hex());
    assert_eq!(Announce::parse(no_port.as_bytes()), Err(MessageError::MissingPort));
    let no_hash = "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 1\r\n\r\n";
    assert_eq!(Announce::parse(no_hash.as_bytes()), Err(MessageError::NoInfoHash(0)));
}

#[test]
fn bad_ports() {
    for port in ["0", "-1", "65536", "99999999999999999999", "", "12a", "0x50", "+80", "1 2", "６８８１"] {
        let text = format!("BT-SEARCH * HTTP/1.1\r\nPort: {port}\r\nInfohash: {}\r\n\r\n", ih(1).to_hex());
        assert!(
            matches!(Announce::parse(text.as_bytes()), Err(MessageError::BadPort(_))),
            "port {port:?} was accepted"
        );
    }
    let two = format!("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nport: 2\r\nInfohash: {}\r\n\r\n", ih(1).to_hex());
    assert_eq!(Announce::parse(two.as_bytes()), Err(MessageError::DuplicatePort));
    let max = format!("BT-SEARCH * HTTP/1.1\r\nPort: 65535\r\nInfohash: {}\r\n\r\n", ih(1).to_hex());
    assert_eq!(Announce::parse(max.as_bytes()).unwrap().port, 65535);
}

#[test]
fn bad_hex_is_skipped_and_counted() {
    let good = ih(9).to_hex();
    let bad = [
        "zz".repeat(20),
        good[..39].to_string(),
        format!("{good}0"),
        "0".repeat(40),
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".to_string(), // base32: not accepted here
    ];
    let mut text = String::from("BT-SEARCH * HTTP/1.1\r\nPort: 5\r\n");
    for b in &bad {
        text.push_str(&format!("Infohash: {b}\r\n"));
    }
    assert_eq!(Announce::parse(text.as_bytes()), Err(MessageError::NoInfoHash(bad.len())));
    text.push_str(&format!("Infohash: {good}\r\n"));
    assert_eq!(Announce::parse(text.as_bytes()).unwrap().info_hashes, vec![ih(9)]);
}

#[test]
fn too_many_hashes_keeps_the_first_ones() {
    let mut text = String::from("BT-SEARCH * HTTP/1.1\r\nPort: 5\r\n");
    for n in 1..=25u8 {
        text.push_str(&format!("Infohash: {}\n", ih(n).to_hex()));
    }
    assert!(text.len() <= MAX_MESSAGE);
    let a = Announce::parse(text.as_bytes()).unwrap();
    assert_eq!(a.info_hashes, (1..=MAX_INFOHASHES as u8).map(ih).collect::<Vec<_>>());
}

#[test]
fn a_thousand_hash_lines_are_too_long_to_read() {
    let mut text = String::from("BT-SEARCH * HTTP/1.1\r\nPort: 5\r\n");
    for n in 0..1000u32 {
        text.push_str(&format!("Infohash: {}\r\n", ih((n % 250) as u8 + 1).to_hex()));
    }
    assert!(matches!(Announce::parse(text.as_bytes()), Err(MessageError::TooLong(_))));
}

#[test]
fn invalid_utf8_is_no_panic() {
    let mut text = b"BT-SEARCH * HTTP/1.1\r\nPort: 5\r\n".to_vec();
    text.extend_from_slice(b"Infohash: \xff\xfe");
    text.extend_from_slice(&[0x80; 38]);
    text.extend_from_slice(b"\r\ncookie: \xc3\x28\r\n\xff\xff: x\r\n");
    text.extend_from_slice(format!("Infohash: {}\r\n\r\n", ih(4).to_hex()).as_bytes());
    let a = Announce::parse(&text).unwrap();
    assert_eq!((a.info_hashes, a.cookie), (vec![ih(4)], None));
    assert!(Announce::parse(b"\xff\xfe\xfd\r\n\r\n").is_err());
}

#[test]
fn header_line_without_colon() {
    let text = format!("BT-SEARCH * HTTP/1.1\r\nPort 5\r\nInfohash: {}\r\n\r\n", ih(1).to_hex());
    assert!(matches!(Announce::parse(text.as_bytes()), Err(MessageError::BadHeaderLine(_))));
}

#[test]
fn overlong_cookie_is_dropped() {
    let text = format!(
        "BT-SEARCH * HTTP/1.1\r\nPort: 5\r\nInfohash: {}\r\ncookie: {}\r\n\r\n",
        ih(1).to_hex(),
        "c".repeat(65)
    );
    assert_eq!(Announce::parse(text.as_bytes()).unwrap().cookie, None);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz: prefixes and byte flips of a valid message.
    let base = Announce { port: 6881, info_hashes: vec![ih(1), ih(2)], cookie: Some("ab".into()) }.encode(Family::V4);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..5000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut m = base[..(i % (base.len() + 1))].to_vec();
        if !m.is_empty() {
            let at = (state as usize) % m.len();
            m[at] = (state >> 32) as u8;
        }
        let _ = Announce::parse(&m);
    }
}
