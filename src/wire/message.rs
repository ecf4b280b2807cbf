//! Peer wire messages (BEP 3 "peer messages", the BEP 5 `port` message and the BEP 10
//! `extended` envelope) and their length-prefixed framing.
//!
//! A frame is a 4-byte big-endian length, then (unless the length is 0, a keep-alive) one id
//! byte and the payload. [`decode_frame`] works on whatever bytes have arrived so far and says
//! "need more" with `Ok(None)`. It judges the length prefix as soon as the id byte is there, so
//! a peer announcing a 4 GiB frame, or a 1 MiB `have`, is refused after 5 bytes instead of
//! being waited for, and nothing is allocated before the whole frame is present.
//!
//! Only the ids above are accepted: we set no other reserved bit in our handshake (no BEP 6
//! fast extension), so any other id is a protocol violation.

use super::handshake::{Handshake, HANDSHAKE_LEN};
use super::WireError;

pub const ID_CHOKE: u8 = 0;
pub const ID_UNCHOKE: u8 = 1;
pub const ID_INTERESTED: u8 = 2;
pub const ID_NOT_INTERESTED: u8 = 3;
pub const ID_HAVE: u8 = 4;
pub const ID_BITFIELD: u8 = 5;
pub const ID_REQUEST: u8 = 6;
pub const ID_PIECE: u8 = 7;
pub const ID_CANCEL: u8 = 8;
/// BEP 5: the sender's DHT port.
pub const ID_PORT: u8 = 9;
/// BEP 10: an extension message; the first payload byte says which.
pub const ID_EXTENDED: u8 = 20;

/// Blocks are 16 KiB by convention; 128 KiB is the most any mainstream client will serve, and
/// a bigger request is a cheap way to make us read and send a lot.
pub const DEFAULT_MAX_BLOCK_LEN: u32 = 128 * 1024;
/// 1 MiB of bitfield is 8 Mi pieces, beyond any real torrent. The exact size is only known
/// once the metadata is, see [`Limits::with_piece_count`].
pub const DEFAULT_MAX_BITFIELD_LEN: u32 = 1024 * 1024;
/// Extension payloads (BEP 9 metadata pieces of 16 KiB, BEP 11 peer lists, the BEP 10
/// handshake) are all far smaller than this.
pub const DEFAULT_MAX_EXTENDED_LEN: u32 = 1024 * 1024;

/// Bytes of a `piece` message before the block: id, index, begin.
const PIECE_HEADER: u32 = 9;
/// Bytes of an `extended` message before its payload: id, extension id.
const EXTENDED_HEADER: u32 = 2;
/// Capacity a [`FrameReader`] keeps between messages; anything bigger was for one large frame
/// and is given back, since a node may hold hundreds of connections.
const KEEP_CAPACITY: usize = 64 * 1024;

/// How large each kind of variable-length message may be. Everything a peer sends is checked
/// against these before memory is set aside for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest block in a `request`, `cancel` or `piece`.
    pub max_block_len: u32,
    /// Largest `bitfield` payload in bytes.
    pub max_bitfield_len: u32,
    /// Largest `extended` payload, not counting the extension id byte.
    pub max_extended_len: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_block_len: DEFAULT_MAX_BLOCK_LEN,
            max_bitfield_len: DEFAULT_MAX_BITFIELD_LEN,
            max_extended_len: DEFAULT_MAX_EXTENDED_LEN,
        }
    }
}

impl Limits {
    /// Tightens the bitfield limit to the `ceil(pieces / 8)` bytes BEP 3 prescribes, once the
    /// piece count is known from the metadata.
    pub fn with_piece_count(self, pieces: u32) -> Limits {
        Limits { max_bitfield_len: pieces.div_ceil(8), ..self }
    }

    /// The largest length prefix any message may carry under these limits.
    pub fn max_frame_len(&self) -> u32 {
        let bitfield = self.max_bitfield_len.saturating_add(1);
        let piece = self.max_block_len.saturating_add(PIECE_HEADER);
        let extended = self.max_extended_len.saturating_add(EXTENDED_HEADER);
        bitfield.max(piece).max(extended).max(13)
    }
}

/// A block of a piece: what `request` asks for and `cancel` withdraws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// Raw bitfield bytes, high bit of the first byte = piece 0. The length is only checked
    /// against [`Limits`]; whether it matches the torrent is the piece picker's business.
    Bitfield(Vec<u8>),
    Request(BlockRef),
    Piece {
        index: u32,
        begin: u32,
        data: Vec<u8>,
    },
    Cancel(BlockRef),
    /// BEP 5: the UDP port of the sender's DHT node.
    Port(u16),
    /// BEP 10: `id` 0 is the extension handshake, others are the ids we assigned in ours.
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
}

impl Message {
    /// The message id byte, `None` for a keep-alive (which has none).
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => ID_CHOKE,
            Message::Unchoke => ID_UNCHOKE,
            Message::Interested => ID_INTERESTED,
            Message::NotInterested => ID_NOT_INTERESTED,
            Message::Have(_) => ID_HAVE,
            Message::Bitfield(_) => ID_BITFIELD,
            Message::Request(_) => ID_REQUEST,
            Message::Piece { .. } => ID_PIECE,
            Message::Cancel(_) => ID_CANCEL,
            Message::Port(_) => ID_PORT,
            Message::Extended { .. } => ID_EXTENDED,
        })
    }

    /// The length prefix this message is sent with (id and payload, not the prefix itself).
    fn body_len(&self) -> usize {
        match self {
            Message::KeepAlive => 0,
            Message::Choke | Message::Unchoke | Message::Interested | Message::NotInterested => 1,
            Message::Have(_) => 5,
            Message::Bitfield(bits) => 1 + bits.len(),
            Message::Request(_) | Message::Cancel(_) => 13,
            Message::Piece { data, .. } => PIECE_HEADER as usize + data.len(),
            Message::Port(_) => 3,
            Message::Extended { payload, .. } => EXTENDED_HEADER as usize + payload.len(),
        }
    }

    /// Bytes [`Message::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        4 + self.body_len()
    }

    /// Appends the framed message to `out`.
    ///
    /// # Panics
    /// If a payload is 4 GiB or longer, which no length prefix can describe. Messages we
    /// build are bounded far below that: a block is at most `max_block_len` (a peer's
    /// request is checked against it in `parse_payload`), a bitfield is one bit per piece
    /// of metadata we hold in memory, and extended payloads are our own small dictionaries
    /// or 16 KiB metadata pieces. No peer byte chooses a length here.
    #[allow(clippy::expect_used, reason = "the length of a frame we build; no peer byte chooses it (see # Panics)")]
    pub fn encode(&self, out: &mut Vec<u8>) {
        let body_len = u32::try_from(self.body_len())
            .expect("messages we encode are far below 4 GiB: blocks <= max_block_len, bitfields 1 bit per piece");
        out.reserve(4 + body_len as usize);
        out.extend_from_slice(&body_len.to_be_bytes());
        let Some(id) = self.id() else { return };
        out.push(id);
        match self {
            Message::KeepAlive | Message::Choke | Message::Unchoke | Message::Interested | Message::NotInterested => {}
            Message::Have(index) => out.extend_from_slice(&index.to_be_bytes()),
            Message::Bitfield(bits) => out.extend_from_slice(bits),
            Message::Request(block) | Message::Cancel(block) => {
                for field in [block.index, block.begin, block.length] {
                    out.extend_from_slice(&field.to_be_bytes());
                }
            }
            Message::Piece { index, begin, data } => {
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&begin.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Port(port) => out.extend_from_slice(&port.to_be_bytes()),
            Message::Extended { id, payload } => {
                out.push(*id);
                out.extend_from_slice(payload);
            }
        }
    }
}

/// Decodes the frame at the start of `buf`: the message and the bytes it took, `Ok(None)` if
/// more bytes are needed, or an error if the frame breaks the protocol or `limits`.
pub fn decode_frame(buf: &[u8], limits: &Limits) -> Result<Option<(Message, usize)>, WireError> {
    let Some(prefix) = buf.first_chunk::<4>() else { return Ok(None) };
    let len = u32::from_be_bytes(*prefix);
    if len == 0 {
        return Ok(Some((Message::KeepAlive, 4)));
    }
    let max = limits.max_frame_len();
    if len > max {
        return Err(WireError::FrameTooLong { len, max });
    }
    let Some(&id) = buf.get(4) else { return Ok(None) };
    check_len(id, len, limits)?;
    let total = 4 + len as usize;
    let Some(payload) = buf.get(5..total) else { return Ok(None) };
    let msg = parse_payload(id, payload, limits)?;
    Ok(Some((msg, total)))
}

/// Checks the length prefix against what message `id` may be, before its payload arrives.
fn check_len(id: u8, len: u32, limits: &Limits) -> Result<(), WireError> {
    let exactly =
        |name, expected| if len == expected { Ok(()) } else { Err(WireError::BadLength { name, len, expected }) };
    // Variable-length messages: at least `min` bytes, and a payload past the header of at
    // most `max`.
    let bounded = |name, min: u32, max: u32| {
        if len < min {
            Err(WireError::TooShort { name, len, min })
        } else if len - min > max {
            Err(WireError::TooLong { name, len: len - min, max })
        } else {
            Ok(())
        }
    };
    match id {
        ID_CHOKE => exactly("choke", 1),
        ID_UNCHOKE => exactly("unchoke", 1),
        ID_INTERESTED => exactly("interested", 1),
        ID_NOT_INTERESTED => exactly("not interested", 1),
        ID_HAVE => exactly("have", 5),
        ID_BITFIELD => bounded("bitfield", 1, limits.max_bitfield_len),
        ID_REQUEST => exactly("request", 13),
        ID_PIECE => bounded("piece", PIECE_HEADER, limits.max_block_len),
        ID_CANCEL => exactly("cancel", 13),
        ID_PORT => exactly("port", 3),
        ID_EXTENDED => bounded("extended", EXTENDED_HEADER, limits.max_extended_len),
        _ => Err(WireError::UnknownId { id, len }),
    }
}

/// Builds the message from a payload whose length [`check_len`] has accepted. That check
/// fixes every offset read here, so the `get`s below always succeed; they are `get`s anyway so
/// that a slip in this file degrades into a wrong value caught by the tests, never a panic on
/// a peer's bytes.
fn parse_payload(id: u8, p: &[u8], limits: &Limits) -> Result<Message, WireError> {
    let u32_at = |at: usize| p.get(at..).and_then(<[u8]>::first_chunk::<4>).map_or(0, |b| u32::from_be_bytes(*b));
    let tail = |at: usize| p.get(at..).unwrap_or_default().to_vec();
    let block = |name| {
        let block = BlockRef { index: u32_at(0), begin: u32_at(4), length: u32_at(8) };
        // Zero-length requests cost the peer nothing to send and us a queue slot each.
        if block.length == 0 || block.length > limits.max_block_len {
            return Err(WireError::BlockLength { name, len: block.length, max: limits.max_block_len });
        }
        Ok(block)
    };
    Ok(match id {
        ID_CHOKE => Message::Choke,
        ID_UNCHOKE => Message::Unchoke,
        ID_INTERESTED => Message::Interested,
        ID_NOT_INTERESTED => Message::NotInterested,
        ID_HAVE => Message::Have(u32_at(0)),
        ID_BITFIELD => Message::Bitfield(p.to_vec()),
        ID_REQUEST => Message::Request(block("request")?),
        ID_CANCEL => Message::Cancel(block("cancel")?),
        ID_PIECE => Message::Piece { index: u32_at(0), begin: u32_at(4), data: tail(8) },
        ID_PORT => Message::Port(p.first_chunk::<2>().map_or(0, |b| u16::from_be_bytes(*b))),
        ID_EXTENDED => Message::Extended { id: p.first().copied().unwrap_or_default(), payload: tail(1) },
        _ => return Err(WireError::UnknownId { id, len: p.len() as u32 + 1 }),
    })
}

/// Collects bytes from a stream and hands out the handshake and messages in them.
///
/// The buffer never holds more than one maximal frame ([`FrameReader::capacity`]): read at
/// most [`FrameReader::room`] bytes, [`push`](FrameReader::push) them, then call
/// [`next_message`](FrameReader::next_message) until it returns `Ok(None)`. When `room()` is 0
/// a complete frame (or an error) is always waiting, so this cannot stall.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out; dropped on the next push so that
    /// draining many small messages copies the remainder once, not once per message.
    consumed: usize,
    limits: Limits,
}

impl FrameReader {
    pub fn new(limits: Limits) -> FrameReader {
        FrameReader { buf: Vec::new(), consumed: 0, limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits for messages not yet decoded, e.g. the bitfield limit once the
    /// metadata says how many pieces there are.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Most bytes the reader will hold: one whole frame of the largest size allowed.
    pub fn capacity(&self) -> usize {
        (4 + self.limits.max_frame_len() as usize).max(HANDSHAKE_LEN)
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// How many more bytes [`push`](FrameReader::push) accepts now.
    pub fn room(&self) -> usize {
        self.capacity().saturating_sub(self.buffered())
    }

    /// Appends bytes read from the peer; refuses (and keeps nothing of) more than `room()`.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        if bytes.len() > self.room() {
            return Err(WireError::BufferFull { buffered: self.buffered(), pushed: bytes.len(), cap: self.capacity() });
        }
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
            if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
                self.buf.shrink_to(KEEP_CAPACITY);
            }
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The peer's handshake, which comes before any message, once all 68 bytes are in.
    pub fn next_handshake(&mut self) -> Result<Option<Handshake>, WireError> {
        let pending = &self.buf[self.consumed..];
        if pending.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let handshake = Handshake::decode(pending)?;
        self.consumed += HANDSHAKE_LEN;
        Ok(Some(handshake))
    }

    /// The next complete message, or `Ok(None)` until more bytes are pushed.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        match decode_frame(&self.buf[self.consumed..], &self.limits)? {
            Some((msg, used)) => {
                self.consumed += used;
                Ok(Some(msg))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
