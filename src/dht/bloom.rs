//! BEP 33 scrape bloom filters: 2048 bits, k = 2, keyed by SHA-1 of a peer's compact IP
//! address (4 or 16 bytes, no port). A get_peers reply to `scrape: 1` carries one filter of
//! seeds (`BFsd`) and one of the other peers (`BFpe`); the union of the filters of the nodes
//! around a key estimates the swarm's size without anybody listing every peer.

use std::net::{IpAddr, SocketAddr};

use sha1::{Digest, Sha1};

/// Bytes of a BEP 33 filter.
pub const BLOOM_BYTES: usize = 256;
const BITS: u32 = (BLOOM_BYTES * 8) as u32;
/// Hash functions per item (BEP 33).
const K: f64 = 2.0;

#[derive(Clone, PartialEq, Eq)]
pub struct Bloom(pub [u8; BLOOM_BYTES]);

impl Default for Bloom {
    fn default() -> Self {
        Bloom([0; BLOOM_BYTES])
    }
}

impl std::fmt::Debug for Bloom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bloom({} bits set)", self.ones())
    }
}

impl Bloom {
    pub fn from_slice(b: &[u8]) -> Option<Bloom> {
        Some(Bloom(b.try_into().ok()?))
    }

    /// Adds a peer: only its IP counts, so one host behind several ports is one entry.
    pub fn insert_ip(&mut self, ip: IpAddr) {
        let digest = match ip {
            IpAddr::V4(v4) => Sha1::digest(v4.octets()),
            IpAddr::V6(v6) => Sha1::digest(v6.octets()),
        };
        // Two 11-bit indices from the first four bytes, each read little-endian.
        for pair in [[digest[0], digest[1]], [digest[2], digest[3]]] {
            let i = u32::from(u16::from_le_bytes(pair)) % BITS;
            self.0[(i / 8) as usize] |= 1 << (i % 8);
        }
    }

    pub fn insert(&mut self, peer: SocketAddr) {
        self.insert_ip(peer.ip());
    }

    pub fn union(&mut self, other: &Bloom) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }

    pub fn ones(&self) -> u32 {
        self.0.iter().map(|b| b.count_ones()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }

    /// BEP 33's estimate of the items inserted: ln(c/m) / (k ln(1 - 1/m)), c the zero bits.
    /// A full filter (c = 0) is read as c = 1, the largest count it can stand for (~7,600):
    /// a liar sending all ones cannot claim more.
    pub fn estimate(&self) -> u32 {
        let m = f64::from(BITS);
        let zeros = f64::from(BITS - self.ones()).max(1.0);
        let n = (zeros / m).ln() / (K * (1.0 - 1.0 / m).ln());
        n.round().max(0.0) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_track_the_number_of_distinct_ips() {
        for n in [0u32, 1, 10, 100, 500, 1000] {
            let mut b = Bloom::default();
            for i in 0..n {
                b.insert(SocketAddr::from((i.wrapping_mul(2_654_435_761).to_be_bytes(), 6881)));
                // Another port of the same host is the same entry.
                b.insert(SocketAddr::from((i.wrapping_mul(2_654_435_761).to_be_bytes(), 1)));
            }
            let est = b.estimate();
            let err = (f64::from(est) - f64::from(n)).abs();
            assert!(err <= 2.0 + f64::from(n) * 0.1, "{n} inserted, estimated {est}");
        }
    }

    #[test]
    fn union_of_disjoint_filters_counts_both_and_a_full_filter_is_bounded() {
        let (mut a, mut b) = (Bloom::default(), Bloom::default());
        for i in 0..50u32 {
            a.insert_ip(IpAddr::from((i + 1).to_be_bytes()));
            b.insert_ip(IpAddr::from((i + 1000).to_be_bytes()));
        }
        a.union(&b);
        assert!((95..=105).contains(&a.estimate()), "{}", a.estimate());
        let full = Bloom([0xff; BLOOM_BYTES]);
        assert!(full.estimate() < 8000, "{}", full.estimate());
        assert_eq!(Bloom::default().estimate(), 0);
        assert!(Bloom::from_slice(&[0; 255]).is_none());
    }
}
