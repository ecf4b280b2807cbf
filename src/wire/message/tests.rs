//! Framing of BEP 3 / BEP 5 / BEP 10 messages: round trips, byte layouts from BEP 3, partial
//! frames and hostile ones.

use super::*;
use crate::id::Id;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits::default()
}

fn encode(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out.len(), m.encoded_len(), "encoded_len of {m:?}");
    out
}

fn decode_all(buf: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
    decode_frame(buf, &limits())
}

/// One of every message, with edge values where a field has them.
fn samples() -> Vec<Message> {
    let max_block = BlockRef { index: u32::MAX, begin: u32::MAX, length: DEFAULT_MAX_BLOCK_LEN };
    vec![
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(0),
        Message::Have(u32::MAX),
        Message::Bitfield(vec![]),
        Message::Bitfield(vec![0b1010_0000, 0xff, 0x01]),
        Message::Request(BlockRef { index: 1, begin: 16384, length: 16384 }),
        Message::Request(max_block),
        Message::Piece { index: 7, begin: 32768, data: vec![0x5a; 16384] },
        Message::Piece { index: 0, begin: 0, data: vec![] },
        Message::Cancel(BlockRef { index: 1, begin: 0, length: 1 }),
        Message::Cancel(max_block),
        Message::Port(6881),
        Message::Port(0),
        Message::Extended { id: 0, payload: b"d1:md11:ut_metadatai1eee".to_vec() },
        Message::Extended { id: 255, payload: vec![] },
    ]
}

#[test]
fn every_message_round_trips() {
    for m in samples() {
        let bytes = encode(&m);
        assert_eq!(decode_all(&bytes), Ok(Some((m.clone(), bytes.len()))), "{m:?}");
    }
}

#[test]
fn layouts_match_bep3() {
    let cases: Vec<(Message, Vec<u8>)> = vec![
        (Message::KeepAlive, vec![0, 0, 0, 0]),
        (Message::Choke, vec![0, 0, 0, 1, 0]),
        (Message::NotInterested, vec![0, 0, 0, 1, 3]),
        (Message::Have(0x0102_0304), vec![0, 0, 0, 5, 4, 1, 2, 3, 4]),
        (Message::Bitfield(vec![0xf0]), vec![0, 0, 0, 2, 5, 0xf0]),
        (
            Message::Request(BlockRef { index: 1, begin: 0x4000, length: 0x4000 }),
            vec![0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
        ),
        (
            Message::Piece { index: 2, begin: 3, data: b"ab".to_vec() },
            vec![0, 0, 0, 11, 7, 0, 0, 0, 2, 0, 0, 0, 3, b'a', b'b'],
        ),
        (
            Message::Cancel(BlockRef { index: 1, begin: 0x4000, length: 0x4000 }),
            vec![0, 0, 0, 13, 8, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
        ),
        // BEP 5: two bytes of port, big-endian.
        (Message::Port(6881), vec![0, 0, 0, 3, 9, 0x1a, 0xe1]),
        // BEP 10: id 20, then the extension id, then the payload.
        (Message::Extended { id: 3, payload: b"de".to_vec() }, vec![0, 0, 0, 4, 20, 3, b'd', b'e']),
    ];
    for (m, bytes) in cases {
        assert_eq!(encode(&m), bytes, "{m:?}");
        assert_eq!(decode_all(&bytes), Ok(Some((m, bytes.len()))));
    }
}

#[test]
fn every_prefix_of_a_frame_asks_for_more() {
    for m in samples() {
        let bytes = encode(&m);
        for len in 0..bytes.len() {
            assert_eq!(decode_all(&bytes[..len]), Ok(None), "{m:?} cut at {len}");
        }
    }
}

#[test]
fn back_to_back_frames_decode_in_order() {
    let all = samples();
    let mut stream = Vec::new();
    for m in &all {
        m.encode(&mut stream);
    }
    let mut at = 0;
    let mut got = Vec::new();
    while let Some((m, used)) = decode_all(&stream[at..]).unwrap() {
        got.push(m);
        at += used;
    }
    assert_eq!(at, stream.len());
    assert_eq!(got, all);
}

#[test]
fn default_limits_allow_one_mebibyte_frames() {
    assert_eq!(limits().max_frame_len(), 1024 * 1024 + 2);
    assert_eq!(Limits::default().with_piece_count(17).max_bitfield_len, 3);
    assert_eq!(Limits::default().with_piece_count(16).max_bitfield_len, 2);
}

#[test]
fn huge_length_is_refused_from_the_prefix_alone() {
    let max = limits().max_frame_len();
    assert_eq!(decode_all(&[0xff; 4]), Err(WireError::FrameTooLong { len: u32::MAX, max }));
    let just_over = (max + 1).to_be_bytes();
    assert_eq!(decode_all(&just_over), Err(WireError::FrameTooLong { len: max + 1, max }));
}

#[test]
fn wrong_fixed_lengths_are_refused_before_the_payload_arrives() {
    let cases = [
        (ID_CHOKE, 2, "choke", 1),
        (ID_UNCHOKE, 0x10_0000, "unchoke", 1),
        (ID_INTERESTED, 5, "interested", 1),
        (ID_NOT_INTERESTED, 13, "not interested", 1),
        (ID_HAVE, 4, "have", 5),
        (ID_HAVE, 6, "have", 5),
        (ID_REQUEST, 12, "request", 13),
        (ID_CANCEL, 14, "cancel", 13),
        (ID_PORT, 2, "port", 3),
        (ID_PORT, 5, "port", 3),
    ];
    for (id, len, name, expected) in cases {
        let mut frame = u32::to_be_bytes(len).to_vec();
        frame.push(id);
        // Only the header is here: the error must not wait for the rest.
        let err = WireError::BadLength { name, len, expected };
        assert_eq!(decode_all(&frame), Err(err.clone()));
        frame.resize(4 + len as usize, 0);
        assert_eq!(decode_all(&frame), Err(err));
    }
}

#[test]
fn have_with_three_bytes_is_an_error() {
    assert_eq!(
        decode_all(&[0, 0, 0, 4, ID_HAVE, 0, 0, 1]),
        Err(WireError::BadLength { name: "have", len: 4, expected: 5 })
    );
}

#[test]
fn bitfield_longer_than_the_limit_is_refused() {
    let tight = Limits::default().with_piece_count(20);
    let ok = encode(&Message::Bitfield(vec![0xff, 0xff, 0xf0]));
    assert!(decode_frame(&ok, &tight).unwrap().is_some());
    let long = encode(&Message::Bitfield(vec![0xff; 4]));
    assert_eq!(decode_frame(&long, &tight), Err(WireError::TooLong { name: "bitfield", len: 4, max: 3 }));
    // Under the default limit, from the header alone.
    let len = DEFAULT_MAX_BITFIELD_LEN + 2;
    let mut header = len.to_be_bytes().to_vec();
    header.push(ID_BITFIELD);
    assert_eq!(
        decode_all(&header),
        Err(WireError::TooLong { name: "bitfield", len: DEFAULT_MAX_BITFIELD_LEN + 1, max: DEFAULT_MAX_BITFIELD_LEN })
    );
}

#[test]
fn request_and_cancel_lengths_are_bounded() {
    let max = DEFAULT_MAX_BLOCK_LEN;
    for (make, name) in [(Message::Request as fn(BlockRef) -> Message, "request"), (Message::Cancel, "cancel")] {
        for bad in [0, max + 1, u32::MAX] {
            let bytes = encode(&make(BlockRef { index: 0, begin: 0, length: bad }));
            assert_eq!(decode_all(&bytes), Err(WireError::BlockLength { name, len: bad, max }));
        }
        let bytes = encode(&make(BlockRef { index: 0, begin: 0, length: max }));
        assert!(decode_all(&bytes).unwrap().is_some());
    }
    let small = Limits { max_block_len: 16384, ..limits() };
    let bytes = encode(&Message::Request(BlockRef { index: 0, begin: 0, length: 16385 }));
    assert_eq!(decode_frame(&bytes, &small), Err(WireError::BlockLength { name: "request", len: 16385, max: 16384 }));
}

#[test]
fn piece_sizes_are_bounded() {
    assert_eq!(decode_all(&[0, 0, 0, 8, ID_PIECE]), Err(WireError::TooShort { name: "piece", len: 8, min: 9 }));
    let len = 9 + DEFAULT_MAX_BLOCK_LEN + 1;
    let mut header = len.to_be_bytes().to_vec();
    header.push(ID_PIECE);
    assert_eq!(
        decode_all(&header),
        Err(WireError::TooLong { name: "piece", len: DEFAULT_MAX_BLOCK_LEN + 1, max: DEFAULT_MAX_BLOCK_LEN })
    );
}

#[test]
fn extended_messages_are_checked() {
    // No room for the extension id.
    assert_eq!(decode_all(&[0, 0, 0, 1, ID_EXTENDED]), Err(WireError::TooShort { name: "extended", len: 1, min: 2 }));
    let small = Limits { max_extended_len: 10, ..limits() };
    let ok = encode(&Message::Extended { id: 1, payload: vec![b'x'; 10] });
    assert!(decode_frame(&ok, &small).unwrap().is_some());
    let long = encode(&Message::Extended { id: 1, payload: vec![b'x'; 11] });
    assert_eq!(decode_frame(&long, &small), Err(WireError::TooLong { name: "extended", len: 11, max: 10 }));
    // A truncated payload is waited for, not misread: the frame says how long it is.
    assert_eq!(decode_frame(&long[..long.len() - 1], &limits()), Ok(None));
}

#[test]
fn unknown_ids_are_errors() {
    let known = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20];
    for id in (0..=255u8).filter(|id| !known.contains(id)) {
        assert_eq!(decode_all(&[0, 0, 0, 1, id]), Err(WireError::UnknownId { id, len: 1 }));
    }
    // BEP 6 `have all` (14): we never offer the fast extension, so it is a violation.
    assert_eq!(decode_all(&[0, 0, 0, 1, 14, 0xff]), Err(WireError::UnknownId { id: 14, len: 1 }));
}

fn framed(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        m.encode(&mut out);
    }
    out
}

fn drain(reader: &mut FrameReader) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = reader.next_message().unwrap() {
        out.push(m);
    }
    out
}

#[test]
fn reader_reassembles_byte_by_byte() {
    let all = samples();
    let mut reader = FrameReader::new(limits());
    let mut got = Vec::new();
    for b in framed(&all) {
        reader.push(&[b]).unwrap();
        got.extend(drain(&mut reader));
    }
    assert_eq!(got, all);
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn reader_splits_handshake_from_the_messages_after_it() {
    let hs = Handshake::new(Id([7; 20]), [9; 20]);
    let mut bytes = hs.encode().to_vec();
    bytes.extend(framed(&[Message::Bitfield(vec![0x80]), Message::Unchoke]));
    let mut reader = FrameReader::new(limits());
    reader.push(&bytes[..HANDSHAKE_LEN - 1]).unwrap();
    assert_eq!(reader.next_handshake(), Ok(None));
    reader.push(&bytes[HANDSHAKE_LEN - 1..]).unwrap();
    assert_eq!(reader.next_handshake(), Ok(Some(hs)));
    assert_eq!(drain(&mut reader), vec![Message::Bitfield(vec![0x80]), Message::Unchoke]);
}

#[test]
fn reader_refuses_more_than_one_frame_of_backlog() {
    let small = Limits { max_block_len: 16, max_bitfield_len: 16, max_extended_len: 16 };
    let mut reader = FrameReader::new(small);
    assert_eq!(reader.capacity(), HANDSHAKE_LEN);
    reader.push(&[0; 60]).unwrap();
    assert_eq!(reader.room(), 8);
    assert_eq!(reader.push(&[0; 9]), Err(WireError::BufferFull { buffered: 60, pushed: 9, cap: 68 }));
    // Nothing of the refused push was kept.
    assert_eq!(reader.buffered(), 60);
    assert_eq!(drain(&mut reader).len(), 15);
    reader.push(&[0; 9]).unwrap();
}

#[test]
fn full_reader_always_has_a_frame_or_an_error() {
    let mut reader = FrameReader::new(limits());
    let biggest = Message::Extended { id: 1, payload: vec![1; DEFAULT_MAX_EXTENDED_LEN as usize] };
    let bytes = encode(&biggest);
    assert_eq!(bytes.len(), reader.capacity());
    reader.push(&bytes).unwrap();
    assert_eq!(reader.room(), 0);
    assert_eq!(reader.next_message(), Ok(Some(biggest)));
    // After that big frame the reader gives the memory back once it is empty.
    reader.push(&encode(&Message::Choke)).unwrap();
    assert!(reader.buf.capacity() <= KEEP_CAPACITY, "kept {} bytes", reader.buf.capacity());
    assert_eq!(reader.next_message(), Ok(Some(Message::Choke)));
}

#[test]
fn reader_applies_new_limits() {
    let mut reader = FrameReader::new(limits());
    reader.set_limits(limits().with_piece_count(8));
    reader.push(&encode(&Message::Bitfield(vec![0xff, 0]))).unwrap();
    assert_eq!(reader.next_message(), Err(WireError::TooLong { name: "bitfield", len: 2, max: 1 }));
}

fn arb_block() -> impl Strategy<Value = BlockRef> {
    (any::<u32>(), any::<u32>(), 1..=DEFAULT_MAX_BLOCK_LEN).prop_map(|(index, begin, length)| BlockRef {
        index,
        begin,
        length,
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        any::<u32>().prop_map(Message::Have),
        bytes().prop_map(Message::Bitfield),
        arb_block().prop_map(Message::Request),
        (any::<u32>(), any::<u32>(), bytes()).prop_map(|(index, begin, data)| Message::Piece { index, begin, data }),
        arb_block().prop_map(Message::Cancel),
        any::<u16>().prop_map(Message::Port),
        (any::<u8>(), bytes()).prop_map(|(id, payload)| Message::Extended { id, payload }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_message_round_trips_and_any_cut_waits(m in arb_message(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&m);
        prop_assert_eq!(decode_all(&bytes), Ok(Some((m.clone(), bytes.len()))));
        let cut = cut.index(bytes.len());
        prop_assert_eq!(decode_all(&bytes[..cut]), Ok(None));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_all(&bytes);
        let mut reader = FrameReader::new(limits());
        reader.push(&bytes).unwrap();
        while let Ok(Some(_)) = reader.next_message() {}
    }

    #[test]
    fn random_frames_with_plausible_headers_never_panic(
        id in 0u8..24,
        len in 0u32..40,
        body in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut frame = len.to_be_bytes().to_vec();
        frame.push(id);
        frame.extend_from_slice(&body);
        if let Ok(Some((_, used))) = decode_all(&frame) {
            prop_assert!(used <= frame.len());
        }
    }
}
