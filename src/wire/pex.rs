//! The BEP 11 peer-exchange message (`ut_pex`, an extended message of BEP 10): which peers the
//! sender connected to (`added`, with one flags byte each in `added.f`) and which it lost
//! (`dropped`) since its last message, as compact IPv4 (`added`, `dropped`: 6 bytes a peer)
//! and IPv6 (`added6`, `dropped6`: 18 bytes a peer) strings.
//!
//! Any peer can send us one of these, so decoding is defensive: the payload's size is checked
//! before it is parsed, a compact string whose length is not a whole number of entries is an
//! error (a peer that cannot frame addresses cannot be trusted to give right ones), and at
//! most [`MAX_ADDED_CONSIDERED`] added and [`MAX_DROPPED_CONSIDERED`] dropped peers are kept,
//! the rest ignored, so memory stays bounded whatever the list lengths. A flags string
//! shorter than its list reads the missing flags as 0, one that is longer has its excess
//! ignored: both are seen in the wild and neither makes the addresses wrong.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::bencode::{self, BencodeError, Value};
use crate::bencode_writer::Writer;

/// Added peers kept from one message at most (v4 first, then v6); libtorrent sends no more.
pub const MAX_ADDED_CONSIDERED: usize = 50;
/// Dropped peers kept from one message at most.
pub const MAX_DROPPED_CONSIDERED: usize = 50;
/// Largest payload parsed at all. A full message of 50 added and 50 dropped IPv6 peers is
/// under 3 KiB; this leaves room for clients that send longer lists, while a peer cannot make
/// us build a large parse tree.
pub const MAX_PEX_PAYLOAD: usize = 64 * 1024;

const V4_LEN: usize = 6;
const V6_LEN: usize = 18;

/// What the sender of a PEX message knows about one added peer (BEP 11 `added.f`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// The peer prefers encrypted connections.
    pub const ENCRYPTION: PexFlags = PexFlags(0x01);
    /// The peer has every piece.
    pub const SEED: PexFlags = PexFlags(0x02);
    /// The peer speaks uTP (BEP 29).
    pub const UTP: PexFlags = PexFlags(0x04);
    /// The peer supports the holepunch extension (BEP 55).
    pub const HOLEPUNCH: PexFlags = PexFlags(0x08);
    /// The sender could connect to the peer: its address takes incoming connections.
    pub const REACHABLE: PexFlags = PexFlags(0x10);

    pub fn contains(self, other: PexFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for PexFlags {
    type Output = PexFlags;
    fn bitor(self, rhs: PexFlags) -> PexFlags {
        PexFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for PexFlags {
    fn bitor_assign(&mut self, rhs: PexFlags) {
        self.0 |= rhs.0;
    }
}

/// How much of a PEX message is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PexLimits {
    pub max_payload: usize,
    pub max_added: usize,
    pub max_dropped: usize,
}

impl Default for PexLimits {
    fn default() -> PexLimits {
        PexLimits { max_payload: MAX_PEX_PAYLOAD, max_added: MAX_ADDED_CONSIDERED, max_dropped: MAX_DROPPED_CONSIDERED }
    }
}

/// One `ut_pex` message, IPv4 and IPv6 peers together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    pub added: Vec<(SocketAddr, PexFlags)>,
    pub dropped: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PexError {
    #[error("peer exchange payload of {len} bytes is longer than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("peer exchange payload is not bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("peer exchange payload is a bencoded {0}, not a dictionary")]
    NotADict(&'static str),
    #[error("peer exchange `{key}` is not a byte string")]
    NotAString { key: &'static str },
    #[error("peer exchange `{key}` of {len} bytes is not a whole number of {unit}-byte entries")]
    BadCompactLength { key: &'static str, len: usize, unit: usize },
}

impl PexMessage {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty()
    }

    /// Decodes the payload of a `ut_pex` message (after the extension id byte).
    pub fn decode(payload: &[u8], limits: &PexLimits) -> Result<PexMessage, PexError> {
        if payload.len() > limits.max_payload {
            return Err(PexError::TooLong { len: payload.len(), max: limits.max_payload });
        }
        let root = bencode::decode(payload)?;
        match root {
            Value::Dict(_) => {}
            Value::Int(_) => return Err(PexError::NotADict("integer")),
            Value::Bytes(_) => return Err(PexError::NotADict("string")),
            Value::List(_) => return Err(PexError::NotADict("list")),
        }
        let string = |key: &'static str| -> Result<&[u8], PexError> {
            match root.get(key.as_bytes()) {
                None => Ok(&[]),
                Some(Value::Bytes(b)) => Ok(b),
                Some(_) => Err(PexError::NotAString { key }),
            }
        };
        // Every field is checked before any is kept, so a message is taken whole or not at all.
        let added4 = compact(string("added")?, "added", V4_LEN)?;
        let added6 = compact(string("added6")?, "added6", V6_LEN)?;
        let dropped4 = compact(string("dropped")?, "dropped", V4_LEN)?;
        let dropped6 = compact(string("dropped6")?, "dropped6", V6_LEN)?;
        let (flags4, flags6) = (string("added.f")?, string("added6.f")?);

        let flag = |flags: &[u8], i: usize| PexFlags(flags.get(i).copied().unwrap_or(0));
        let added = added4
            .enumerate()
            .map(|(i, a)| (a, flag(flags4, i)))
            .chain(added6.enumerate().map(|(i, a)| (a, flag(flags6, i))))
            .take(limits.max_added)
            .collect();
        let dropped = dropped4.chain(dropped6).take(limits.max_dropped).collect();
        Ok(PexMessage { added, dropped })
    }

    /// Appends the bencoded message (canonical: keys sorted) to `out`. The IPv4 keys are
    /// always written, as BEP 11's example does; the IPv6 ones when there is an IPv6 peer.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let v4 = |a: &SocketAddr| a.is_ipv4();
        let v6 = |a: &SocketAddr| a.is_ipv6();
        let added4: Vec<_> = self.added.iter().filter(|(a, _)| v4(a)).collect();
        let added6: Vec<_> = self.added.iter().filter(|(a, _)| v6(a)).collect();
        let dropped4: Vec<_> = self.dropped.iter().filter(|a| v4(a)).collect();
        let dropped6: Vec<_> = self.dropped.iter().filter(|a| v6(a)).collect();
        let any6 = !added6.is_empty() || !dropped6.is_empty();

        let mut w = Writer::new(out);
        w.begin_dict();
        w.key(b"added").bytes_from_parts(added4.len() * V4_LEN, |o| added4.iter().for_each(|(a, _)| put(o, a)));
        w.key(b"added.f").bytes_from_parts(added4.len(), |o| o.extend(added4.iter().map(|(_, f)| f.0)));
        if any6 {
            w.key(b"added6").bytes_from_parts(added6.len() * V6_LEN, |o| added6.iter().for_each(|(a, _)| put(o, a)));
            w.key(b"added6.f").bytes_from_parts(added6.len(), |o| o.extend(added6.iter().map(|(_, f)| f.0)));
        }
        w.key(b"dropped").bytes_from_parts(dropped4.len() * V4_LEN, |o| dropped4.iter().for_each(|a| put(o, a)));
        if any6 {
            w.key(b"dropped6").bytes_from_parts(dropped6.len() * V6_LEN, |o| dropped6.iter().for_each(|a| put(o, a)));
        }
        w.end();
    }
}

/// The addresses of a compact string of `unit`-byte entries (4 or 16 address bytes, then the
/// port, big-endian), read lazily so that only the entries kept are ever materialised.
fn compact<'a>(
    bytes: &'a [u8],
    key: &'static str,
    unit: usize,
) -> Result<impl Iterator<Item = SocketAddr> + 'a, PexError> {
    if !bytes.len().is_multiple_of(unit) {
        return Err(PexError::BadCompactLength { key, len: bytes.len(), unit });
    }
    Ok(bytes.chunks_exact(unit).map(move |c| {
        let (ip, port) = c.split_at(unit - 2);
        let port = u16::from_be_bytes([port[0], port[1]]);
        let ip = match <[u8; 4]>::try_from(ip) {
            Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            // `unit` is 6 or 18, so the address part is 4 or 16 bytes.
            Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).unwrap_or([0; 16]))),
        };
        SocketAddr::new(ip, port)
    }))
}

fn put(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

#[cfg(test)]
mod tests;
