//! The peer wire handshake (BEP 3 "peer protocol"): `19`, `BitTorrent protocol`, 8 reserved
//! bytes, the info-hash and the peer id, 68 bytes in all.
//!
//! Two reserved bits matter to us: BEP 10's extension protocol (`reserved[5] & 0x10`), needed
//! for metadata exchange (BEP 9), and BEP 5's DHT bit (`reserved[7] & 0x01`), which tells the
//! peer to expect our `port` message. Other bits (BEP 6 fast extension, BEP 52 v2) are kept
//! as received but not interpreted.

use crate::id::{InfoHash, ID_LEN};

use super::WireError;

/// The protocol string every BitTorrent v1 peer sends first, after its length byte.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of a handshake on the wire.
pub const HANDSHAKE_LEN: usize = 1 + PROTOCOL.len() + 8 + ID_LEN + 20;

/// Byte and mask of the BEP 10 extension-protocol bit ("bit 20 from the right").
const EXTENSION_BYTE: usize = 5;
const EXTENSION_MASK: u8 = 0x10;
/// Byte and mask of the BEP 5 DHT bit (the last bit of the reserved bytes).
const DHT_BYTE: usize = 7;
const DHT_MASK: u8 = 0x01;

/// A decoded handshake. `reserved` is kept whole so that bits we do not know survive a
/// decode/encode round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Our handshake: advertises the extension protocol (we fetch metadata through it) and
    /// the DHT (we run a node and send `port`).
    pub fn new(info_hash: InfoHash, peer_id: [u8; 20]) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[EXTENSION_BYTE] |= EXTENSION_MASK;
        reserved[DHT_BYTE] |= DHT_MASK;
        Handshake { reserved, info_hash, peer_id }
    }

    /// Whether the peer speaks BEP 10 extended messages.
    pub fn supports_extensions(&self) -> bool {
        self.reserved[EXTENSION_BYTE] & EXTENSION_MASK != 0
    }

    /// Whether the peer runs a DHT node and accepts (and may send) the BEP 5 `port` message.
    pub fn supports_dht(&self) -> bool {
        self.reserved[DHT_BYTE] & DHT_MASK != 0
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = PROTOCOL.len() as u8;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(self.info_hash.as_bytes());
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    /// Decodes the first [`HANDSHAKE_LEN`] bytes of `buf`. Bytes after them belong to the
    /// message stream that follows (peers often send their bitfield in the same segment), so
    /// they are left to the caller rather than rejected.
    ///
    /// Matching the info-hash against the torrent we want is the caller's job: an incoming
    /// connection may be for any torrent we serve.
    pub fn decode(buf: &[u8]) -> Result<Handshake, WireError> {
        let Some(buf) = buf.get(..HANDSHAKE_LEN) else {
            return Err(WireError::ShortHandshake(buf.len()));
        };
        // Encrypted connections (Message Stream Encryption, which no BEP specifies) and stray
        // non-BitTorrent traffic fail here; we do not speak MSE, so the only answer is to close.
        if buf[0] as usize != PROTOCOL.len() || &buf[1..20] != PROTOCOL {
            return Err(WireError::BadProtocol {
                len: buf[0],
                text: String::from_utf8_lossy(&buf[1..20]).into_owned(),
            });
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        let mut info_hash = [0u8; ID_LEN];
        info_hash.copy_from_slice(&buf[28..48]);
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&buf[48..68]);
        Ok(Handshake { reserved, info_hash: crate::id::Id(info_hash), peer_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use proptest::prelude::*;

    fn sample() -> Handshake {
        Handshake::new(Id([0xab; 20]), *b"-KS0001-123456789012")
    }

    #[test]
    fn layout_matches_bep3() {
        let bytes = sample().encode();
        assert_eq!(HANDSHAKE_LEN, 68);
        assert_eq!(bytes[0], 19);
        assert_eq!(&bytes[1..20], b"BitTorrent protocol");
        assert_eq!(&bytes[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x01]);
        assert_eq!(&bytes[28..48], &[0xab; 20]);
        assert_eq!(&bytes[48..68], b"-KS0001-123456789012");
    }

    #[test]
    fn round_trips_and_ignores_trailing_bytes() {
        let h = sample();
        let mut bytes = h.encode().to_vec();
        assert_eq!(Handshake::decode(&bytes), Ok(h));
        // A bitfield arriving in the same read must not spoil the handshake.
        bytes.extend_from_slice(&[0, 0, 0, 2, 5, 0xff]);
        assert_eq!(Handshake::decode(&bytes), Ok(h));
    }

    #[test]
    fn new_sets_extension_and_dht_bits_only() {
        let h = sample();
        assert!(h.supports_extensions());
        assert!(h.supports_dht());
        let plain = Handshake { reserved: [0; 8], ..h };
        assert!(!plain.supports_extensions());
        assert!(!plain.supports_dht());
        // Neighbouring bits must not be mistaken for ours.
        let others = Handshake { reserved: [0xff, 0xff, 0xff, 0xff, 0xff, !0x10, 0xff, !0x01], ..h };
        assert!(!others.supports_extensions());
        assert!(!others.supports_dht());
    }

    #[test]
    fn rejects_short_input() {
        let bytes = sample().encode();
        for len in 0..HANDSHAKE_LEN {
            assert_eq!(Handshake::decode(&bytes[..len]), Err(WireError::ShortHandshake(len)));
        }
    }

    #[test]
    fn rejects_wrong_protocol_string() {
        let mut bytes = sample().encode();
        bytes[1] = b'b';
        assert_eq!(
            Handshake::decode(&bytes),
            Err(WireError::BadProtocol { len: 19, text: "bitTorrent protocol".into() })
        );
        let mut bytes = sample().encode();
        bytes[0] = 18;
        assert!(matches!(Handshake::decode(&bytes), Err(WireError::BadProtocol { len: 18, .. })));
        // An HTTP request sent to our port by mistake.
        let mut http = b"GET / HTTP/1.1\r\nHost: example.org\r\n".to_vec();
        http.resize(HANDSHAKE_LEN, b' ');
        assert!(matches!(Handshake::decode(&http), Err(WireError::BadProtocol { len: b'G', .. })));
    }

    proptest! {
        #[test]
        fn any_fields_round_trip(reserved in any::<[u8; 8]>(), ih in any::<[u8; 20]>(), pid in any::<[u8; 20]>()) {
            let h = Handshake { reserved, info_hash: Id(ih), peer_id: pid };
            prop_assert_eq!(Handshake::decode(&h.encode()), Ok(h));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Handshake::decode(&bytes);
        }
    }
}
