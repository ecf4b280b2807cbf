//! Metadata exchange (BEP 9, `ut_metadata`): fetching the info dictionary of a magnet link's
//! torrent from peers in 16 KiB pieces, and serving ours.
//!
//! [`MetadataMessage`] is the wire format: a bencoded dictionary with `msg_type` and `piece`,
//! followed (for `data`) by the raw piece. [`MetadataAssembler`] is the sans-IO download side:
//! it says which piece to ask for next, takes pieces in any order, checks every size, and
//! hands out the info dictionary only once its SHA-1 equals the info-hash, because that hash
//! is the only thing in a magnet link we can trust.

use sha1::{Digest, Sha1};

use crate::bencode::{self, BencodeError, Value};
use crate::bencode_writer::Writer;
use crate::id::{Id, InfoHash, ID_LEN};

/// Size of every metadata piece but the last (BEP 9).
pub const METADATA_PIECE: usize = 16 * 1024;
/// Largest info dictionary we fetch. Real ones are a few hundred KiB even for torrents of
/// many thousands of files; without a cap a peer's `metadata_size` would choose how much
/// memory we set aside.
pub const MAX_METADATA_SIZE: u64 = 16 * 1024 * 1024;

const MSG_REQUEST: i64 = 0;
const MSG_DATA: i64 = 1;
const MSG_REJECT: i64 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMessage {
    Request {
        piece: u32,
    },
    /// `total_size` is the sender's idea of the whole info dictionary's size; the receiver
    /// should check it against the `metadata_size` it planned with.
    Data {
        piece: u32,
        total_size: u64,
        data: Vec<u8>,
    },
    /// The peer does not have (or will not give) that piece.
    Reject {
        piece: u32,
    },
}

/// Errors of metadata messages and of assembling the metadata from pieces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata message is not bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("metadata message does not start with a dictionary")]
    NotADict,
    #[error("metadata message has no integer `{0}`")]
    Missing(&'static str),
    #[error("metadata message field `{field}` is out of range: {value}")]
    OutOfRange { field: &'static str, value: i64 },
    /// BEP 9 says unknown message types MUST be ignored: drop the message, keep the peer.
    #[error("unknown metadata msg_type {0}")]
    UnknownType(i64),
    #[error("metadata data of {0} bytes is longer than a {METADATA_PIECE}-byte piece")]
    DataTooLong(usize),
    #[error("metadata size {0} is not in 1..={MAX_METADATA_SIZE}")]
    TotalSize(u64),
    #[error("metadata piece {piece} does not exist, there are {pieces}")]
    NoSuchPiece { piece: u32, pieces: u32 },
    #[error("metadata piece {piece} has {len} bytes, expected {expected}")]
    PieceSize { piece: u32, len: usize, expected: usize },
    #[error("metadata hashes to {got}, not to the info-hash {expected}")]
    HashMismatch { expected: InfoHash, got: InfoHash },
}

impl MetadataMessage {
    /// The piece the message is about.
    pub fn piece(&self) -> u32 {
        match self {
            MetadataMessage::Request { piece }
            | MetadataMessage::Data { piece, .. }
            | MetadataMessage::Reject { piece } => *piece,
        }
    }

    /// Decodes the payload of a `ut_metadata` extended message (after the extension id byte).
    /// Keys may come in any order; bytes after the dictionary are the piece for `data` and
    /// are ignored otherwise.
    pub fn decode(payload: &[u8]) -> Result<MetadataMessage, MetadataError> {
        let (dict, dict_len) = bencode::decode_prefix(payload)?;
        if !dict.is_dict() {
            return Err(MetadataError::NotADict);
        }
        let int = |field: &'static str| {
            dict.get(field.as_bytes()).and_then(Value::as_int).ok_or(MetadataError::Missing(field))
        };
        let msg_type = int("msg_type")?;
        if !matches!(msg_type, MSG_REQUEST | MSG_DATA | MSG_REJECT) {
            return Err(MetadataError::UnknownType(msg_type));
        }
        let piece = int("piece")?;
        let piece = u32::try_from(piece).map_err(|_| MetadataError::OutOfRange { field: "piece", value: piece })?;
        Ok(match msg_type {
            MSG_REQUEST => MetadataMessage::Request { piece },
            MSG_REJECT => MetadataMessage::Reject { piece },
            _ => {
                let total = int("total_size")?;
                let total_size = u64::try_from(total)
                    .ok()
                    .filter(|t| (1..=MAX_METADATA_SIZE).contains(t))
                    .ok_or(MetadataError::OutOfRange { field: "total_size", value: total })?;
                let data = payload.get(dict_len..).unwrap_or_default();
                if data.len() > METADATA_PIECE {
                    return Err(MetadataError::DataTooLong(data.len()));
                }
                MetadataMessage::Data { piece, total_size, data: data.to_vec() }
            }
        })
    }

    /// Appends the message (dictionary with sorted keys, then the data of a `data` message).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (msg_type, piece) = match self {
            MetadataMessage::Request { piece } => (MSG_REQUEST, piece),
            MetadataMessage::Data { piece, .. } => (MSG_DATA, piece),
            MetadataMessage::Reject { piece } => (MSG_REJECT, piece),
        };
        let mut w = Writer::new(out);
        w.begin_dict();
        w.key(b"msg_type").int(msg_type);
        w.key(b"piece").int((*piece).into());
        if let MetadataMessage::Data { total_size, .. } = self {
            w.key(b"total_size").int(i64::try_from(*total_size).unwrap_or(i64::MAX));
        }
        w.end();
        if let MetadataMessage::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
    }
}

/// Piece `piece` of a serialized info dictionary, for answering a `request`; `None` past the
/// end (answer with `reject`).
pub fn metadata_piece(info_bytes: &[u8], piece: u32) -> Option<&[u8]> {
    let start = (piece as usize).checked_mul(METADATA_PIECE)?;
    if start >= info_bytes.len() {
        return None;
    }
    info_bytes.get(start..info_bytes.len().min(start + METADATA_PIECE))
}

/// Where one piece of the metadata stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Missing,
    Requested,
    Received(Vec<u8>),
}

/// Collects the pieces of one torrent's info dictionary, possibly from several peers.
///
/// Time is the caller's: it decides when a request has waited too long and says so with
/// [`on_timeout`](MetadataAssembler::on_timeout). Memory grows only with pieces actually
/// received, never with the size a peer announced.
#[derive(Debug, Clone)]
pub struct MetadataAssembler {
    info_hash: InfoHash,
    total_size: usize,
    slots: Vec<Slot>,
    done: bool,
}

impl MetadataAssembler {
    /// Starts fetching `total_size` bytes (a peer's `metadata_size`) that must hash to
    /// `info_hash`. Sizes of 0 or above [`MAX_METADATA_SIZE`] are refused.
    pub fn new(info_hash: InfoHash, total_size: u64) -> Result<MetadataAssembler, MetadataError> {
        if !(1..=MAX_METADATA_SIZE).contains(&total_size) {
            return Err(MetadataError::TotalSize(total_size));
        }
        let total_size = total_size as usize;
        let pieces = total_size.div_ceil(METADATA_PIECE);
        Ok(MetadataAssembler { info_hash, total_size, slots: vec![Slot::Missing; pieces], done: false })
    }

    pub fn total_size(&self) -> u64 {
        self.total_size as u64
    }

    pub fn piece_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The lowest piece neither received nor awaiting an answer, now marked as requested.
    /// `None` once every piece is in hand or asked for, or the metadata is complete.
    pub fn next_request(&mut self) -> Option<u32> {
        if self.done {
            return None;
        }
        let index = self.slots.iter().position(|s| *s == Slot::Missing)?;
        self.slots[index] = Slot::Requested;
        Some(index as u32)
    }

    /// The peer rejected our request for `piece`: it may be asked of someone else.
    pub fn on_reject(&mut self, piece: u32) {
        self.release(piece);
    }

    /// The request for `piece` has waited too long: it may be asked again.
    pub fn on_timeout(&mut self, piece: u32) {
        self.release(piece);
    }

    fn release(&mut self, piece: u32) {
        if let Some(slot @ Slot::Requested) = self.slots.get_mut(piece as usize) {
            *slot = Slot::Missing;
        }
    }

    /// Takes the data of `piece` (requested or not: a late answer after a timeout is as good
    /// as any). Returns the whole info dictionary when this was the last piece and the hash
    /// matches, `Ok(None)` while pieces are missing or for a piece already in hand.
    ///
    /// A piece of the wrong size is an error and goes back to being requestable. A hash
    /// mismatch is an error after which every piece must be fetched again: we cannot tell
    /// which piece was bad, only that a sender lied, so the caller should drop the peers
    /// involved.
    pub fn on_data(&mut self, piece: u32, data: Vec<u8>) -> Result<Option<Vec<u8>>, MetadataError> {
        if self.done {
            return Ok(None);
        }
        let pieces = self.piece_count();
        let expected = self.piece_len(piece);
        let Some(slot) = self.slots.get_mut(piece as usize) else {
            return Err(MetadataError::NoSuchPiece { piece, pieces });
        };
        if matches!(slot, Slot::Received(_)) {
            return Ok(None);
        }
        if data.len() != expected {
            *slot = Slot::Missing;
            return Err(MetadataError::PieceSize { piece, len: data.len(), expected });
        }
        *slot = Slot::Received(data);
        if !self.slots.iter().all(|s| matches!(s, Slot::Received(_))) {
            return Ok(None);
        }
        // Taking the pieces out leaves every slot Missing: exactly the reset a mismatch needs.
        let mut info = Vec::with_capacity(self.total_size);
        for slot in &mut self.slots {
            if let Slot::Received(bytes) = std::mem::replace(slot, Slot::Missing) {
                info.extend_from_slice(&bytes);
            }
        }
        let mut got = [0u8; ID_LEN];
        got.copy_from_slice(&Sha1::digest(&info));
        let got = Id(got);
        if got != self.info_hash {
            return Err(MetadataError::HashMismatch { expected: self.info_hash, got });
        }
        self.done = true;
        Ok(Some(info))
    }

    /// Bytes piece `piece` must have: 16 KiB, except the remainder for the last one.
    fn piece_len(&self, piece: u32) -> usize {
        let start = (piece as usize).saturating_mul(METADATA_PIECE);
        self.total_size.saturating_sub(start).min(METADATA_PIECE)
    }
}

#[cfg(test)]
mod tests;
