//! Compact node and peer info (BEP 5 "Contact Encoding", BEP 32 for IPv6): 6/18-byte peers
//! and 26/38-byte nodes, concatenated in the `nodes`, `nodes6` and `values` fields.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::id::{Id, NodeId, ID_LEN};

/// A DHT contact: the node's id and the address it answers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompactNode {
    pub id: NodeId,
    pub addr: SocketAddr,
}

/// A compact field whose length is not a whole number of entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compact {what} field of {len} bytes is not a multiple of {entry}")]
pub struct CompactError {
    pub what: &'static str,
    pub len: usize,
    pub entry: usize,
}

pub const PEER_V4_LEN: usize = 6;
pub const PEER_V6_LEN: usize = 18;
pub const NODE_V4_LEN: usize = ID_LEN + PEER_V4_LEN;
pub const NODE_V6_LEN: usize = ID_LEN + PEER_V6_LEN;

/// Decodes one 6-byte (IPv4) or 18-byte (IPv6) compact peer.
pub fn decode_peer(bytes: &[u8]) -> Option<SocketAddr> {
    match bytes.len() {
        PEER_V4_LEN => {
            let ip = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([bytes[4], bytes[5]])))
        }
        PEER_V6_LEN => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&bytes[..16]);
            let port = u16::from_be_bytes([bytes[16], bytes[17]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => None,
    }
}

/// Appends the compact form of `addr` (6 or 18 bytes).
pub fn encode_peer(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

pub fn peer_bytes(addr: &SocketAddr) -> Vec<u8> {
    let mut v = Vec::with_capacity(PEER_V6_LEN);
    encode_peer(addr, &mut v);
    v
}

/// Decodes a concatenation of 26-byte (`v6 == false`) or 38-byte compact nodes.
pub fn decode_nodes(bytes: &[u8], v6: bool) -> Result<Vec<CompactNode>, CompactError> {
    let entry = if v6 { NODE_V6_LEN } else { NODE_V4_LEN };
    if !bytes.len().is_multiple_of(entry) {
        return Err(CompactError { what: if v6 { "nodes6" } else { "nodes" }, len: bytes.len(), entry });
    }
    Ok(bytes
        .chunks_exact(entry)
        .filter_map(|c| {
            let id = Id::from_slice(&c[..ID_LEN]).ok()?;
            let addr = decode_peer(&c[ID_LEN..])?;
            Some(CompactNode { id, addr })
        })
        .collect())
}

/// Appends the compact form of each node of the given family.
/// The bytes `encode_nodes` writes for `nodes`, whatever their address families.
pub fn encoded_nodes_len(nodes: &[CompactNode]) -> usize {
    nodes.iter().map(|n| ID_LEN + if n.addr.is_ipv4() { PEER_V4_LEN } else { PEER_V6_LEN }).sum()
}

pub fn encode_nodes<'a>(nodes: impl IntoIterator<Item = &'a CompactNode>, out: &mut Vec<u8>) {
    for n in nodes {
        out.extend_from_slice(n.id.as_bytes());
        encode_peer(&n.addr, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_round_trip_v4_v6() {
        for a in ["1.2.3.4:6881", "[2001:db8::1]:51413"] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(decode_peer(&peer_bytes(&addr)), Some(addr));
        }
        assert_eq!(decode_peer(&[1, 2, 3]), None);
    }

    #[test]
    fn nodes_round_trip_and_bad_length() {
        let n = CompactNode { id: Id([9; 20]), addr: "10.0.0.1:1".parse().unwrap() };
        let mut b = Vec::new();
        encode_nodes([&n, &n], &mut b);
        assert_eq!(b.len(), 52);
        assert_eq!(decode_nodes(&b, false).unwrap(), vec![n, n]);
        assert!(decode_nodes(&b[..51], false).is_err());
        let n6 = CompactNode { id: Id([1; 20]), addr: "[::1]:2".parse().unwrap() };
        let mut b6 = Vec::new();
        encode_nodes([&n6], &mut b6);
        assert_eq!(decode_nodes(&b6, true).unwrap(), vec![n6]);
    }
}
