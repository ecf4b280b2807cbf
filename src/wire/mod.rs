//! The peer wire protocol over TCP: the handshake and length-prefixed messages of BEP 3 (with
//! the BEP 5 `port` message), the extension protocol of BEP 10, peer exchange (BEP 11) and the
//! metadata exchange of BEP 9 that turns a magnet link's info-hash into the info dictionary.
//! `client_name` reads which program a peer runs from its handshakes (BEP 10 `v`, BEP 20).
//!
//! Everything here is sans-IO: functions take bytes and return typed values (or the reverse),
//! so the same code runs behind a real socket, in the simulator and under proptest. Every
//! length a peer sends is checked against a limit before anything is allocated for it.

pub mod client_name;
pub mod extended;
pub mod handshake;
pub mod message;
pub mod metadata;
pub mod pex;

use handshake::HANDSHAKE_LEN;

/// Why bytes from a peer are not a valid handshake or message frame. Every variant means the
/// peer broke the protocol (or is hostile): the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("a handshake is {HANDSHAKE_LEN} bytes, got {0}")]
    ShortHandshake(usize),
    #[error("not a BitTorrent handshake: protocol string length {len}, text {text:?}")]
    BadProtocol { len: u8, text: String },
    #[error("frame of {len} bytes is longer than any message allowed ({max})")]
    FrameTooLong { len: u32, max: u32 },
    #[error("unknown message id {id} (frame of {len} bytes)")]
    UnknownId { id: u8, len: u32 },
    #[error("{name} message of {len} bytes, expected exactly {expected}")]
    BadLength { name: &'static str, len: u32, expected: u32 },
    #[error("{name} message of {len} bytes is shorter than its {min}-byte header")]
    TooShort { name: &'static str, len: u32, min: u32 },
    /// `len` and `max` count the payload after the message's fixed header.
    #[error("{name} payload of {len} bytes is longer than the limit of {max}")]
    TooLong { name: &'static str, len: u32, max: u32 },
    #[error("{name} of a {len}-byte block, allowed 1..={max}")]
    BlockLength { name: &'static str, len: u32, max: u32 },
    #[error("read buffer full: {buffered} bytes buffered + {pushed} new > capacity {cap}")]
    BufferFull { buffered: usize, pushed: usize, cap: usize },
}

/// Checks `bytes` with bendy's strict decoder, which refuses unsorted or duplicate keys and
/// trailing bytes: our writer's output must be canonical bencode by a second opinion.
#[cfg(test)]
pub(crate) fn strict_bencode_check(bytes: &[u8]) -> Result<(), String> {
    use bendy::decoding::{Decoder, Error, Object};
    fn visit(object: Object) -> Result<(), Error> {
        match object {
            Object::Dict(mut dict) => {
                while let Some((_, value)) = dict.next_pair()? {
                    visit(value)?;
                }
            }
            Object::List(mut list) => {
                while let Some(item) = list.next_object()? {
                    visit(item)?;
                }
            }
            Object::Bytes(_) | Object::Integer(_) => {}
        }
        Ok(())
    }
    let mut decoder = Decoder::new(bytes);
    match decoder.next_object() {
        Ok(Some(object)) => visit(object).map_err(|e| format!("not canonical: {e:?}"))?,
        Ok(None) => return Err("no bencode value at all".into()),
        Err(e) => return Err(format!("not canonical: {e:?}")),
    }
    let rest = matches!(decoder.next_object(), Ok(None));
    if !rest {
        return Err("bytes after the value".into());
    }
    Ok(())
}

/// [`strict_bencode_check`] as an assertion.
#[cfg(test)]
fn assert_canonical_bencode(bytes: &[u8]) {
    if let Err(e) = strict_bencode_check(bytes) {
        panic!("{e} in {:?}", String::from_utf8_lossy(bytes));
    }
}
