//! The BEP 10 extension handshake: the bencoded dictionary a peer sends as extended message 0,
//! parsed into the few fields we act on.
//!
//! `m` maps extension names to the ids *the sender* wants those messages sent to it with; we
//! keep the two we speak, BEP 9 `ut_metadata` and BEP 11 `ut_pex`. BEP 10 asks receivers to
//! ignore what they do not understand, so decoding is lenient: unknown keys are skipped and a
//! known key with an unusable value (wrong type, out of range) reads as absent rather than
//! failing the whole handshake, since the other fields may still be good. Only a payload
//! that is not a bencoded dictionary at all is an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bencode::{self, BencodeError, Value};
use crate::bencode_writer::Writer;

use super::metadata::MAX_METADATA_SIZE;

/// Extended message id of the handshake itself (BEP 10).
pub const HANDSHAKE_ID: u8 = 0;
/// Longest client name (`v`) kept, in bytes; it is only shown in logs and statistics.
pub const MAX_CLIENT_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtHandshake {
    /// Id for BEP 9 metadata messages to this peer; `None` if it does not offer them, or
    /// sent 0 to disable them.
    pub ut_metadata: Option<u8>,
    /// Id for BEP 11 peer-exchange messages to this peer; `None` as for `ut_metadata`.
    pub ut_pex: Option<u8>,
    /// Size of the info dictionary (BEP 9). A size of 0 or above [`MAX_METADATA_SIZE`] reads
    /// as `None`: we would refuse to fetch such metadata anyway, and the rest of the
    /// handshake (peer exchange, port) is still worth having.
    pub metadata_size: Option<u64>,
    /// Client name and version (`v`), at most [`MAX_CLIENT_LEN`] bytes, invalid UTF-8 replaced.
    pub client: Option<String>,
    /// The peer's TCP listen port (`p`); port 0 reads as `None`.
    pub listen_port: Option<u16>,
    /// How many outstanding requests the peer queues without dropping (`reqq`); 0 reads as
    /// `None`, since a queue of nothing would stall the download rather than pace it.
    pub reqq: Option<u32>,
    /// Our address as the peer sees it (`yourip`): a vote for our external IP.
    pub your_ip: Option<IpAddr>,
}

/// Why an extension handshake payload could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtError {
    #[error("extension handshake is not bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("extension handshake is a bencoded {0}, not a dictionary")]
    NotADict(&'static str),
}

impl ExtHandshake {
    /// Decodes the payload of extended message 0 (after the extension id byte).
    pub fn decode(payload: &[u8]) -> Result<ExtHandshake, ExtError> {
        let root = bencode::decode(payload)?;
        match root {
            Value::Dict(_) => {}
            Value::Int(_) => return Err(ExtError::NotADict("integer")),
            Value::Bytes(_) => return Err(ExtError::NotADict("string")),
            Value::List(_) => return Err(ExtError::NotADict("list")),
        }
        let int = |key: &[u8]| root.get(key).and_then(Value::as_int);
        let m = root.get(b"m");
        // 0 is BEP 10's "disabled"; anything that does not fit the one-byte id cannot be used.
        let ext_id = |name: &[u8]| {
            m.and_then(|m| m.get(name))
                .and_then(Value::as_int)
                .and_then(|id| u8::try_from(id).ok())
                .filter(|&id| id != 0)
        };
        Ok(ExtHandshake {
            ut_metadata: ext_id(b"ut_metadata"),
            ut_pex: ext_id(b"ut_pex"),
            metadata_size: int(b"metadata_size")
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| (1..=MAX_METADATA_SIZE).contains(n)),
            client: root.get(b"v").and_then(Value::as_bytes).map(client_name),
            listen_port: int(b"p").and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0),
            reqq: int(b"reqq").and_then(|n| u32::try_from(n).ok()).filter(|&n| n != 0),
            your_ip: root.get(b"yourip").and_then(Value::as_bytes).and_then(compact_ip),
        })
    }

    /// Appends the bencoded handshake (canonical: keys sorted) to `out`. `m` is always
    /// present, even if empty, since it is how BEP 10 peers recognise a handshake.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.begin_dict();
        w.key(b"m").begin_dict();
        if let Some(id) = self.ut_metadata {
            w.key(b"ut_metadata").int(id.into());
        }
        if let Some(id) = self.ut_pex {
            w.key(b"ut_pex").int(id.into());
        }
        w.end();
        if let Some(size) = self.metadata_size {
            // Sizes beyond i64 cannot be written in bencode; saturate rather than wrap.
            w.key(b"metadata_size").int(i64::try_from(size).unwrap_or(i64::MAX));
        }
        if let Some(port) = self.listen_port {
            w.key(b"p").int(port.into());
        }
        if let Some(reqq) = self.reqq {
            w.key(b"reqq").int(reqq.into());
        }
        if let Some(client) = &self.client {
            w.key(b"v").bytes(client.as_bytes());
        }
        match self.your_ip {
            Some(IpAddr::V4(ip)) => {
                w.key(b"yourip").bytes(&ip.octets());
            }
            Some(IpAddr::V6(ip)) => {
                w.key(b"yourip").bytes(&ip.octets());
            }
            None => {}
        }
        w.end();
    }
}

/// The first [`MAX_CLIENT_LEN`] bytes of `v` as text. The cut moves back to a character
/// boundary so that a long but valid UTF-8 name does not end in a replacement character.
fn client_name(v: &[u8]) -> String {
    let mut end = v.len().min(MAX_CLIENT_LEN);
    while end > 0 && v.get(end).is_some_and(|&b| b & 0xc0 == 0x80) {
        end -= 1;
    }
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// A 4- or 16-byte compact address (BEP 10 `yourip`), without port.
fn compact_ip(b: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else {
        <[u8; 16]>::try_from(b).ok().map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
    }
}

#[cfg(test)]
mod tests;
