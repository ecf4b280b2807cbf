//! BEP 42 (DHT security extension): node ids tied to the node's external IP address through
//! CRC32-C, so that one machine cannot choose ids next to a target at will. Owns the id
//! derivation, the validity check and the list of address ranges the BEP exempts.

use std::net::IpAddr;

use rand::{Rng, RngExt};

use crate::id::{Id, ID_LEN};

/// CRC-32C (Castagnoli), bitwise: it runs once per new contact, so a table is not worth it.
pub fn crc32c(data: &[u8]) -> u32 {
    const POLY: u32 = 0x82F6_3B78; // 0x1EDC6F41 reflected
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (POLY & mask);
        }
    }
    !crc
}

/// The CRC the first 21 bits of an id must match, for the 3-bit `r` kept in the id's last byte.
pub(crate) fn ip_crc(ip: IpAddr, r: u8) -> u32 {
    let r = r & 7;
    match ip {
        IpAddr::V4(v4) => {
            let mut b = v4.octets();
            for (byte, mask) in b.iter_mut().zip([0x03, 0x0f, 0x3f, 0xff]) {
                *byte &= mask;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut b = [0u8; 8];
            for (i, mask) in [0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff].into_iter().enumerate() {
                b[i] = o[i] & mask;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
    }
}

/// A random node id that is valid for `ip` under BEP 42.
pub fn node_id_for_ip<R: Rng + ?Sized>(ip: IpAddr, rng: &mut R) -> Id {
    let mut id = [0u8; ID_LEN];
    rng.fill(&mut id[..]);
    let r: u8 = id[ID_LEN - 1];
    let crc = ip_crc(ip, r);
    id[0] = (crc >> 24) as u8;
    id[1] = (crc >> 16) as u8;
    id[2] = ((crc >> 8) as u8 & 0xf8) | (rng.random::<u8>() & 0x07);
    Id(id)
}

/// Whether `id` is one that a node at `ip` may use. Exempt addresses accept any id.
pub fn is_valid_id(id: &Id, ip: IpAddr) -> bool {
    if is_exempt(ip) {
        return true;
    }
    let crc = ip_crc(ip, id.0[ID_LEN - 1]);
    id.0[0] == (crc >> 24) as u8 && id.0[1] == (crc >> 16) as u8 && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

/// Local, private and loopback addresses are exempt from BEP 42: nobody can verify them and
/// they cannot be used to attack the public DHT.
pub fn is_exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    /// The examples table of BEP 42: (ip, rand byte, expected first three bytes masked).
    const VECTORS: [(&str, u8, [u8; 3]); 5] = [
        ("124.31.75.21", 1, [0x5f, 0xbf, 0xbf]),
        ("21.75.31.124", 86, [0x5a, 0x3c, 0xe9]),
        ("65.23.51.170", 22, [0xa5, 0xd4, 0x32]),
        ("84.124.73.14", 65, [0x1b, 0x03, 0x21]),
        ("43.213.53.83", 90, [0xe5, 0x6f, 0x6c]),
    ];

    #[test]
    fn matches_the_bep_examples() {
        for (ip, rand, prefix) in VECTORS {
            let ip: IpAddr = ip.parse().unwrap();
            let crc = ip_crc(ip, rand);
            assert_eq!([(crc >> 24) as u8, (crc >> 16) as u8], [prefix[0], prefix[1]], "{ip}");
            assert_eq!((crc >> 8) as u8 & 0xf8, prefix[2] & 0xf8, "{ip}");
            let mut id = Id([0x42; 20]);
            id.0[..3].copy_from_slice(&prefix);
            id.0[19] = rand;
            assert!(is_valid_id(&id, ip), "{ip}");
            id.0[1] ^= 0x10;
            assert!(!is_valid_id(&id, ip), "{ip} with a flipped bit");
        }
    }

    #[test]
    fn derived_ids_are_valid_for_their_address_only() {
        let mut rng = StdRng::seed_from_u64(7);
        for ip in ["203.0.113.9", "2001:db8::1", "8.8.4.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            for _ in 0..50 {
                let id = node_id_for_ip(ip, &mut rng);
                assert!(is_valid_id(&id, ip));
            }
        }
        let id = node_id_for_ip("203.0.113.9".parse().unwrap(), &mut rng);
        assert!(!is_valid_id(&id, "198.51.100.77".parse().unwrap()));
    }

    #[test]
    fn local_addresses_are_exempt() {
        for ip in ["127.0.3.1", "10.1.2.3", "192.168.0.1", "172.16.5.5", "169.254.1.1", "::1", "fd00::5", "fe80::1"] {
            assert!(is_exempt(ip.parse().unwrap()), "{ip}");
            assert!(is_valid_id(&Id([0; 20]), ip.parse().unwrap()));
        }
        for ip in ["8.8.8.8", "2001:db8::1", "172.32.0.1"] {
            assert!(!is_exempt(ip.parse().unwrap()), "{ip}");
        }
    }
}
