//! Caps on what one peer can make us hold, as plain functions the core consults: how large a
//! frame it may announce (narrowed to the torrent's piece count once known, BEP 3 `bitfield`),
//! how far ahead of its socket we read blocks for it, and how its `ut_metadata` requests
//! (BEP 9) are answered when it does not read what we already owe it.

use crate::wire::message::Limits;
use crate::wire::metadata::MAX_METADATA_SIZE;

/// Bytes queued for a peer (sent to its task, not yet taken by its socket, or being read
/// from disk for it) before we stop reading blocks from disk for it.
pub const WRITE_HIGH_WATER: usize = 1 << 20;

/// Pieces any torrent we could learn from peers may have: its info dictionary lists 20 bytes of
/// hash per piece and is at most [`MAX_METADATA_SIZE`]. Before the metadata arrives, a
/// bitfield longer than this many bits is a lie, and refusing it at its length prefix keeps a
/// peer from parking a megabyte with us (in the read buffer, then as its early bitfield).
pub const MAX_PIECES_BEFORE_METADATA: u32 = (MAX_METADATA_SIZE / 20) as u32;

/// Bytes queued for a peer past which a `ut_metadata` request costs it its connection: it
/// asks for more while not reading the megabyte already waiting. The slack above the high
/// water mark is what the `reject`s sent in the meantime may take (a few thousand), so a
/// peer that merely reads slowly is refused politely long before it is dropped.
pub const MAX_QUEUED: usize = WRITE_HIGH_WATER + 256 * 1024;

/// Addresses the ban bookkeeping remembers at most, per table (strikes, proven, banned). Each
/// entry costs an attacker a connection from a new address and a block of bad data (16 KiB or
/// more) and us about 50 bytes; the cap keeps an attacker with a whole IPv6 prefix from growing
/// the tables, and the scans over them, without end.
pub const MAX_OFFENDERS: usize = 4096;

/// Frame limits for a peer of a torrent with `pieces` pieces, or of one whose metadata we do
/// not know yet.
pub fn frame_limits(pieces: Option<usize>) -> Limits {
    let pieces = pieces.map_or(MAX_PIECES_BEFORE_METADATA, |n| u32::try_from(n).unwrap_or(u32::MAX));
    Limits::default().with_piece_count(pieces)
}

/// How to answer a `ut_metadata` request, given the bytes already queued for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataAnswer {
    /// Send the piece (16 KiB).
    Serve,
    /// BEP 9 `reject`: what we owe it is enough for now; it may ask again later.
    Reject,
    /// It keeps asking and never reads: drop it before its replies grow our memory.
    Drop,
}

pub fn metadata_answer(queued: usize) -> MetadataAnswer {
    if queued < WRITE_HIGH_WATER {
        MetadataAnswer::Serve
    } else if queued < MAX_QUEUED {
        MetadataAnswer::Reject
    } else {
        MetadataAnswer::Drop
    }
}
