//! The uTP packet header and its extensions (BEP 29): 20 fixed bytes, then a chain of
//! extensions of which only the selective ACK (type 1) is understood; unknown ones are skipped,
//! as the BEP asks, so newer peers still talk to us.

use thiserror::Error;

pub const HEADER_LEN: usize = 20;
pub const VERSION: u8 = 1;
const EXT_NONE: u8 = 0;
const EXT_SACK: u8 = 1;
/// Extensions read at most, so a packet cannot make us walk a long chain.
const MAX_EXTENSIONS: usize = 8;

/// The five packet types of BEP 29, with their wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    Data = 0,
    Fin = 1,
    State = 2,
    Reset = 3,
    Syn = 4,
}

impl PacketType {
    fn from_nibble(n: u8) -> Option<PacketType> {
        Some(match n {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: PacketType,
    pub conn_id: u16,
    /// The sender's clock when it sent the packet, in microseconds (wraps).
    pub ts_us: u32,
    /// The sender's last measured (its receive time - our send time), in microseconds: the
    /// one-way delay from us to it plus the clocks' offset. LEDBAT uses its changes.
    pub ts_diff_us: u32,
    /// Bytes the sender can still take into its receive buffer.
    pub wnd: u32,
    pub seq: u16,
    pub ack: u16,
}

/// A parsed datagram, borrowing the selective-ACK bitmask and the payload from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    /// The selective ACK bitmask: bit i of byte i/8 (least significant first) means
    /// ack + 2 + i arrived. We send multiples of 4 bytes as BEP 29 says, but accept any
    /// non-zero length: libtorrent sends just the bytes its reorder buffer spans.
    pub sack: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("uTP packet of {0} bytes is shorter than the 20-byte header")]
    Truncated(usize),
    #[error("uTP version {0} is not 1")]
    Version(u8),
    #[error("unknown uTP packet type {0}")]
    Type(u8),
    #[error("uTP extension chain runs past the end of the packet")]
    ExtensionTruncated,
    #[error("uTP selective ACK of {0} bytes is empty")]
    SackLength(usize),
    #[error("more than {MAX_EXTENSIONS} uTP extensions")]
    TooManyExtensions,
}

impl<'a> Packet<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Packet<'a>, HeaderError> {
        if bytes.len() < HEADER_LEN {
            return Err(HeaderError::Truncated(bytes.len()));
        }
        let version = bytes[0] & 0x0f;
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let kind = PacketType::from_nibble(bytes[0] >> 4).ok_or(HeaderError::Type(bytes[0] >> 4))?;
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let header = Header {
            kind,
            conn_id: u16_at(2),
            ts_us: u32_at(4),
            ts_diff_us: u32_at(8),
            wnd: u32_at(12),
            seq: u16_at(16),
            ack: u16_at(18),
        };
        let mut next = bytes[1];
        let mut at = HEADER_LEN;
        let mut sack = None;
        let mut count = 0;
        while next != EXT_NONE {
            count += 1;
            if count > MAX_EXTENSIONS {
                return Err(HeaderError::TooManyExtensions);
            }
            if at + 2 > bytes.len() {
                return Err(HeaderError::ExtensionTruncated);
            }
            let (kind, len) = (next, bytes[at + 1] as usize);
            next = bytes[at];
            let data = bytes.get(at + 2..at + 2 + len).ok_or(HeaderError::ExtensionTruncated)?;
            if kind == EXT_SACK {
                if len == 0 {
                    return Err(HeaderError::SackLength(len));
                }
                sack = Some(data);
            }
            at += 2 + len;
        }
        Ok(Packet { header, sack, payload: &bytes[at..] })
    }
}

/// Appends the wire form of a packet to `out`.
pub fn encode(header: &Header, sack: Option<&[u8]>, payload: &[u8], out: &mut Vec<u8>) {
    // We send multiples of 4 bytes; any non-empty length up to 255 is valid on the wire.
    debug_assert!(sack.is_none_or(|s| !s.is_empty() && s.len() <= 255));
    out.reserve(HEADER_LEN + sack.map_or(0, |s| s.len() + 2) + payload.len());
    out.push(((header.kind as u8) << 4) | VERSION);
    out.push(if sack.is_some() { EXT_SACK } else { EXT_NONE });
    out.extend_from_slice(&header.conn_id.to_be_bytes());
    out.extend_from_slice(&header.ts_us.to_be_bytes());
    out.extend_from_slice(&header.ts_diff_us.to_be_bytes());
    out.extend_from_slice(&header.wnd.to_be_bytes());
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.ack.to_be_bytes());
    if let Some(sack) = sack {
        out.push(EXT_NONE);
        out.push(sack.len() as u8);
        out.extend_from_slice(sack);
    }
    out.extend_from_slice(payload);
}

/// Sequence numbers wrap at 2^16: `a` is before `b` when b - a, taken modulo 2^16, is in the
/// first half of the circle.
pub fn seq_lt(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: PacketType) -> Header {
        Header { kind, conn_id: 0xbeef, ts_us: 0x0102_0304, ts_diff_us: 7, wnd: 1 << 20, seq: 65_535, ack: 3 }
    }

    #[test]
    fn every_type_round_trips_with_and_without_sack() {
        for kind in [PacketType::Data, PacketType::Fin, PacketType::State, PacketType::Reset, PacketType::Syn] {
            for sack in [None, Some(&[0b1010_0000u8, 0, 0, 1][..]), Some(&[0xff; 8][..])] {
                let mut out = Vec::new();
                encode(&header(kind), sack, b"payload", &mut out);
                let p = Packet::parse(&out).unwrap();
                assert_eq!(p.header, header(kind));
                assert_eq!(p.sack, sack);
                assert_eq!(p.payload, b"payload");
            }
        }
    }

    #[test]
    fn first_byte_is_what_the_demultiplexer_expects() {
        let mut out = Vec::new();
        encode(&header(PacketType::Syn), None, &[], &mut out);
        assert_eq!(out[0], 0x41);
        assert_eq!(crate::net::socket::classify(&out), crate::net::socket::Demux::Utp);
    }

    #[test]
    fn unknown_extensions_are_skipped() {
        let mut out = Vec::new();
        encode(&header(PacketType::Data), None, &[], &mut out);
        out[1] = 9; // an extension we do not know, then a SACK
        out.extend_from_slice(&[EXT_SACK, 3, 1, 2, 3, EXT_NONE, 4, 0xaa, 0, 0, 0]);
        out.extend_from_slice(b"xy");
        let p = Packet::parse(&out).unwrap();
        assert_eq!(p.sack, Some(&[0xaa, 0, 0, 0][..]));
        assert_eq!(p.payload, b"xy");
    }

    #[test]
    fn hostile_packets_are_errors() {
        let mut good = Vec::new();
        encode(&header(PacketType::Data), Some(&[1, 0, 0, 0]), b"", &mut good);
        assert_eq!(Packet::parse(&good[..19]), Err(HeaderError::Truncated(19)));
        let mut v2 = good.clone();
        v2[0] = 0x02;
        assert_eq!(Packet::parse(&v2), Err(HeaderError::Version(2)));
        let mut ty = good.clone();
        ty[0] = 0x51;
        assert_eq!(Packet::parse(&ty), Err(HeaderError::Type(5)));
        // The SACK claims 4 bytes but the packet ends after 2 of them.
        assert_eq!(Packet::parse(&good[..HEADER_LEN + 4]), Err(HeaderError::ExtensionTruncated));
        assert_eq!(Packet::parse(&good[..HEADER_LEN + 1]), Err(HeaderError::ExtensionTruncated));
        let mut odd = good.clone();
        odd[HEADER_LEN + 1] = 3;
        assert_eq!(Packet::parse(&odd[..HEADER_LEN + 5]).map(|p| p.sack), Ok(Some(&[1, 0, 0][..])));
        odd[HEADER_LEN + 1] = 0;
        assert_eq!(Packet::parse(&odd[..HEADER_LEN + 2]), Err(HeaderError::SackLength(0)));
        // A chain of empty unknown extensions longer than anyone sends.
        let mut chain = good[..HEADER_LEN].to_vec();
        chain[1] = 7;
        for _ in 0..20 {
            chain.extend_from_slice(&[7, 0]);
        }
        assert_eq!(Packet::parse(&chain), Err(HeaderError::TooManyExtensions));
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_lt(1, 2));
        assert!(seq_lt(65_535, 0));
        assert!(seq_lt(65_000, 100));
        assert!(!seq_lt(100, 65_000));
        assert!(!seq_lt(5, 5));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn headers_round_trip(kind in 0u8..5, conn_id: u16, ts: u32, diff: u32, wnd: u32, seq: u16, ack: u16,
                              payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let h = Header { kind: PacketType::from_nibble(kind).unwrap(), conn_id, ts_us: ts, ts_diff_us: diff, wnd, seq, ack };
            let mut out = Vec::new();
            encode(&h, None, &payload, &mut out);
            let p = Packet::parse(&out).unwrap();
            proptest::prop_assert_eq!(p.header, h);
            proptest::prop_assert_eq!(p.payload, &payload[..]);
        }
    }
}
