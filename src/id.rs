//! 160-bit identifiers of the Mainline DHT (BEP 5): node ids and info-hashes share one
//! keyspace, compared with the XOR metric.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, RngExt};

/// Length in bytes of a node id or info-hash.
pub const ID_LEN: usize = 20;

/// A 160-bit value: a node id, an info-hash, or the XOR distance between two of them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; ID_LEN]);

/// The id a DHT node chooses for itself.
pub type NodeId = Id;
/// The SHA-1 of a torrent's info dictionary; lives in the same keyspace as node ids.
pub type InfoHash = Id;

/// Why a string or byte slice is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("an id is 20 bytes, got {0}")]
    Length(usize),
    #[error("`{0}` is not a 40-character hex or 32-character base32 info-hash")]
    Text(String),
}

impl Id {
    pub const ZERO: Id = Id([0; ID_LEN]);
    pub const MAX: Id = Id([0xff; ID_LEN]);

    pub fn from_slice(bytes: &[u8]) -> Result<Id, IdError> {
        let arr: [u8; ID_LEN] = bytes.try_into().map_err(|_| IdError::Length(bytes.len()))?;
        Ok(Id(arr))
    }

    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Id {
        let mut b = [0u8; ID_LEN];
        rng.fill(&mut b);
        Id(b)
    }

    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// XOR distance: smaller means closer.
    pub fn distance(&self, other: &Id) -> Id {
        let mut out = [0u8; ID_LEN];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        Id(out)
    }

    /// Number of leading bits `self` shares with `other` (160 when equal).
    pub fn common_prefix_len(&self, other: &Id) -> usize {
        self.distance(other).leading_zeros()
    }

    pub fn leading_zeros(&self) -> usize {
        let mut n = 0;
        for byte in self.0 {
            if byte == 0 {
                n += 8;
            } else {
                return n + byte.leading_zeros() as usize;
            }
        }
        n
    }

    /// The bit at `index` (0 = most significant).
    pub fn bit(&self, index: usize) -> bool {
        debug_assert!(index < 160);
        self.0[index / 8] & (0x80 >> (index % 8)) != 0
    }

    /// A random id that shares exactly the first `prefix_len` bits with `self` and differs at
    /// the next one: a target that lands in the bucket of that depth.
    pub fn random_with_prefix<R: Rng + ?Sized>(&self, prefix_len: usize, rng: &mut R) -> Id {
        let mut out = Id::random(rng);
        let prefix_len = prefix_len.min(160);
        for i in 0..prefix_len {
            set_bit(&mut out, i, self.bit(i));
        }
        if prefix_len < 160 {
            set_bit(&mut out, prefix_len, !self.bit(prefix_len));
        }
        out
    }

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(40);
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }

    /// Parses 40 hex digits (either case) or 32 base32 characters (RFC 4648, as magnet links
    /// from some clients carry them).
    pub fn parse_text(s: &str) -> Result<Id, IdError> {
        let bad = || IdError::Text(s.chars().take(80).collect());
        match s.len() {
            40 => {
                let mut out = [0u8; ID_LEN];
                let bytes = s.as_bytes();
                for (i, o) in out.iter_mut().enumerate() {
                    let hi = hex_value(bytes[2 * i]).ok_or_else(bad)?;
                    let lo = hex_value(bytes[2 * i + 1]).ok_or_else(bad)?;
                    *o = (hi << 4) | lo;
                }
                Ok(Id(out))
            }
            32 => {
                let mut acc: u64 = 0;
                let mut bits = 0;
                let mut out = Vec::with_capacity(ID_LEN);
                for c in s.bytes() {
                    let v = base32_value(c).ok_or_else(bad)?;
                    acc = (acc << 5) | v as u64;
                    bits += 5;
                    if bits >= 8 {
                        bits -= 8;
                        out.push((acc >> bits) as u8);
                    }
                }
                Id::from_slice(&out).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

fn set_bit(id: &mut Id, index: usize, value: bool) {
    let mask = 0x80 >> (index % 8);
    if value {
        id.0[index / 8] |= mask;
    } else {
        id.0[index / 8] &= !mask;
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn base32_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", &self.to_hex()[..12])
    }
}

impl FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Id, IdError> {
        Id::parse_text(s)
    }
}

/// Our peer id: the client prefix (Azureus style) and random bytes.
pub fn new_peer_id() -> [u8; 20] {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-KS0001-");
    for b in &mut id[8..] {
        // Printable, as many clients show peer ids in their UIs.
        *b = b'0' + rand::random_range(0..10u8);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn hex_round_trip_and_case() {
        let s = "0123456789abcdefABCDEF0123456789abcdef01";
        let id: Id = s.parse().unwrap();
        assert_eq!(id.to_hex(), s.to_lowercase());
    }

    #[test]
    fn base32_matches_hex() {
        // 20 bytes of 0x00..0x13 in base32 (RFC 4648).
        let hex = "000102030405060708090a0b0c0d0e0f10111213";
        let b32 = "AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT";
        assert_eq!(Id::parse_text(b32).unwrap(), Id::parse_text(hex).unwrap());
    }

    #[test]
    fn rejects_bad_text() {
        for s in ["", "zz", &"g".repeat(40), &"1".repeat(32), &"a".repeat(41)] {
            assert!(Id::parse_text(s).is_err(), "{s}");
        }
    }

    #[test]
    fn distance_and_prefix() {
        let a = Id([0; 20]);
        let mut b = Id([0; 20]);
        b.0[2] = 0x10;
        assert_eq!(a.common_prefix_len(&b), 19);
        assert_eq!(a.common_prefix_len(&a), 160);
        assert_eq!(a.distance(&b), b);
    }

    #[test]
    fn random_with_prefix_lands_in_bucket() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let me = Id::random(&mut rng);
        for depth in [0, 1, 7, 8, 63, 159] {
            let t = me.random_with_prefix(depth, &mut rng);
            assert_eq!(me.common_prefix_len(&t), depth);
        }
    }
}
