//! The BEP 3 `bitfield` message body: one bit per piece, the high bit of the first byte is piece
//! 0, and the spare bits that pad the last byte must be zero. Peers send it once after the
//! handshake; we keep one per peer and one for ourselves.

use thiserror::Error;

/// Why a peer's `bitfield` message was refused. Either one means the peer disagrees with us about
/// the torrent, so the driver should drop the connection rather than guess.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BitfieldError {
    #[error("bitfield of {got} bytes for {pieces} pieces, expected {expected} bytes")]
    WrongLength { got: usize, expected: usize, pieces: usize },
    #[error("spare bits set in the last byte {byte:#04x} of a bitfield of {pieces} pieces")]
    SpareBitsSet { byte: u8, pieces: usize },
}

/// A set of piece indices in `0..len`, stored exactly as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: usize,
    /// Kept up to date on every change: availability bookkeeping and "are we done" ask for it
    /// constantly, and counting 100k bits each time would dominate.
    count: usize,
}

impl Bitfield {
    /// No piece set.
    pub fn new(len: usize) -> Self {
        Bitfield { bytes: vec![0; len.div_ceil(8)], len, count: 0 }
    }

    /// Every piece set: a seed's bitfield.
    pub fn full(len: usize) -> Self {
        let mut b = Bitfield { bytes: vec![0xff; len.div_ceil(8)], len, count: len };
        // The padding must stay zero, or `as_bytes` would send something a strict peer rejects.
        let spare = b.bytes.len() * 8 - len;
        if let Some(last) = b.bytes.last_mut() {
            *last &= 0xffu8 << spare;
        }
        b
    }

    /// Parses a `bitfield` message body for a torrent of `len` pieces.
    pub fn from_bytes(bytes: &[u8], len: usize) -> Result<Self, BitfieldError> {
        let expected = len.div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength { got: bytes.len(), expected, pieces: len });
        }
        let spare = expected * 8 - len;
        if let Some(&last) = bytes.last() {
            // BEP 3: "Clients should drop the connection if they receive bitfields that are not of
            // the correct size, or if the bitfield has any of the spare bits set."
            if spare > 0 && last & ((1u8 << spare) - 1) != 0 {
                return Err(BitfieldError::SpareBitsSet { byte: last, pieces: len });
            }
        }
        let count = bytes.iter().map(|b| b.count_ones() as usize).sum();
        Ok(Bitfield { bytes: bytes.to_vec(), len, count })
    }

    /// Whether piece `i` is set; false for any index out of range, so peer-supplied indices
    /// can be asked about without checking first.
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bytes[i / 8] & mask(i) != 0
    }

    /// Sets piece `i`; returns whether it was newly set. Out of range is ignored (returns false).
    pub fn set(&mut self, i: usize) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bytes[i / 8] |= mask(i);
        self.count += 1;
        true
    }

    /// Clears piece `i`; returns whether it was set. Out of range is ignored (returns false).
    pub fn clear(&mut self, i: usize) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bytes[i / 8] &= !mask(i);
        self.count -= 1;
        true
    }

    /// Pieces set.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Every piece set (trivially true for an empty torrent).
    pub fn is_complete(&self) -> bool {
        self.count == self.len
    }

    /// Pieces in the torrent, set or not.
    pub fn len(&self) -> usize {
        self.len
    }

    /// A bitfield for a torrent of no pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The wire form, ready to be the body of a `bitfield` message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Set indices in ascending order. Skips whole zero bytes, which matters for the picker
    /// walking a new peer's mostly empty bitfield.
    pub fn iter_set(&self) -> impl Iterator<Item = usize> + '_ {
        self.bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(|(at, &b)| (0..8).filter(move |k| b & (0x80 >> k) != 0).map(move |k| at * 8 + k))
    }
}

fn mask(i: usize) -> u8 {
    0x80 >> (i % 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_bit_first_round_trip() {
        let b = Bitfield::from_bytes(&[0b1000_0001, 0b0100_0000], 10).unwrap();
        assert!(b.get(0) && b.get(7) && b.get(9));
        assert!(!b.get(1) && !b.get(8));
        assert_eq!(b.count(), 3);
        assert_eq!(b.iter_set().collect::<Vec<_>>(), vec![0, 7, 9]);
        assert_eq!(b.as_bytes(), &[0b1000_0001, 0b0100_0000]);
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn wrong_length_is_refused() {
        assert_eq!(
            Bitfield::from_bytes(&[0, 0, 0], 10),
            Err(BitfieldError::WrongLength { got: 3, expected: 2, pieces: 10 })
        );
        assert!(Bitfield::from_bytes(&[0], 10).is_err());
        assert!(Bitfield::from_bytes(&[], 0).unwrap().is_empty());
    }

    #[test]
    fn spare_bits_are_refused() {
        // 10 pieces: the low 6 bits of byte 1 are padding.
        assert_eq!(
            Bitfield::from_bytes(&[0, 0b0000_0001], 10),
            Err(BitfieldError::SpareBitsSet { byte: 1, pieces: 10 })
        );
        assert!(Bitfield::from_bytes(&[0, 0b1100_0000], 10).is_ok());
        // A multiple of 8 has no padding to check.
        assert!(Bitfield::from_bytes(&[0xff], 8).unwrap().is_complete());
    }

    #[test]
    fn out_of_range_is_false_and_ignored() {
        let mut b = Bitfield::new(10);
        assert!(!b.get(10) && !b.get(usize::MAX));
        assert!(!b.set(10));
        assert!(!b.set(16));
        assert!(!b.clear(99));
        assert_eq!(b.count(), 0);
        assert_eq!(b.as_bytes(), &[0, 0]);
    }

    #[test]
    fn set_and_clear_keep_the_count() {
        let mut b = Bitfield::new(3);
        assert!(b.set(1));
        assert!(!b.set(1), "setting twice must not count twice");
        assert!(b.set(0) && b.set(2));
        assert_eq!(b.count(), 3);
        assert!(b.is_complete());
        assert!(b.clear(0));
        assert!(!b.clear(0));
        assert_eq!(b.count(), 2);
        assert!(!b.is_complete());
    }

    #[test]
    fn full_leaves_spare_bits_clear() {
        let b = Bitfield::full(10);
        assert_eq!(b.as_bytes(), &[0xff, 0b1100_0000]);
        assert_eq!(b.count(), 10);
        assert!(b.is_complete());
        assert_eq!(Bitfield::from_bytes(b.as_bytes(), 10).unwrap(), b);
    }
}
