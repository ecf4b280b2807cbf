//! The vocabulary between the torrent core and its driver (BEP 3 peer wire, BEP 9 metadata,
//! BEP 11 peer exchange): what happens (`Input`), what the core wants done (`Action`), what it
//! tells whoever runs the torrent (`TorrentEvent`), and its settings. Plain data, no I/O.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use super::fault::DiskFault;
use crate::id::InfoHash;
use crate::swarm::bitfield::Bitfield;
use crate::swarm::choker::ChokerConfig;
use crate::swarm::peer_source::PeerSources;
use crate::swarm::PeerKey;
use crate::torrent::Metainfo;
use crate::wire::message::{BlockRef, Limits, Message};

use super::peer_state::PeerConfig;

#[derive(Debug, Clone)]
pub struct TorrentConfig {
    pub info_hash: InfoHash,
    /// Files are written under this directory, and nowhere else.
    pub output: PathBuf,
    pub peer_id: [u8; 20],
    /// Our TCP port, told to peers in the extension handshake.
    pub listen_port: u16,
    /// Our DHT port, sent to peers that support the DHT (BEP 5 `port`).
    pub dht_port: Option<u16>,
    pub max_peers: usize,
    pub choker: ChokerConfig,
    pub peer: PeerConfig,
    /// Pieces failing their hash check that a peer may take part in before it is banned.
    pub ban_after_failures: u32,
    /// Keep the metadata and the resume record under `output/.kadswarm/` (downloads do;
    /// seeding someone's existing files does not write next to them).
    pub keep_records: bool,
    /// BEP 11 peer exchange with peers that offer it (`--no-pex` turns it off).
    pub pex: bool,
    /// The IP we listen on when it is a specific one (not 0.0.0.0 / ::): with `listen_port`,
    /// an address of ours that peer exchange must never hand to the dialer.
    pub listen_ip: Option<IpAddr>,
    /// `--upload-limit` and `--download-limit`: shared with every other torrent of the
    /// process. The core never reads it; the peer tasks apply it to their sockets.
    pub rate_limits: crate::net::rate_limit::RateLimits,
}

impl TorrentConfig {
    /// A torrent listening on `port` (also its DHT port when `dht`), with a fresh peer id and
    /// the default choker, pipeline and ban settings.
    pub fn new(
        info_hash: InfoHash,
        output: PathBuf,
        port: u16,
        dht: bool,
        max_peers: usize,
        keep_records: bool,
    ) -> Self {
        TorrentConfig {
            info_hash,
            output,
            peer_id: crate::id::new_peer_id(),
            listen_port: port,
            dht_port: dht.then_some(port),
            max_peers,
            choker: ChokerConfig::default(),
            peer: PeerConfig::default(),
            ban_after_failures: 2,
            keep_records,
            pex: true,
            listen_ip: None,
            rate_limits: Default::default(),
        }
    }
}

/// What a torrent reports to whoever runs it (progress display, the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentEvent {
    MetadataReady {
        name: String,
        total_length: u64,
        pieces: usize,
    },
    /// Existing data checked at start: how many pieces were already there.
    Checked {
        have: usize,
        pieces: usize,
    },
    PieceVerified(u32),
    PieceFailed(u32),
    PeerBanned(IpAddr),
    Complete,
    /// The disk refused our data: the torrent has stopped (see [`super::fault`]).
    Failed(DiskFault),
    /// The metadata hashes to the info-hash but is not a usable torrent: nothing more can be
    /// done for this magnet, the reason is for the user.
    MetadataUnusable(String),
}

/// How a peer connection came about: what peer exchange can tell others about it, and what
/// the peer flags show (`view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerOrigin {
    /// We dialled it: its address takes connections.
    pub outgoing: bool,
    /// The connection runs over uTP (BEP 29), so the peer speaks it.
    pub utp: bool,
    /// Who had told us of its address when it connected (DHT, PEX, LSD, ...).
    pub found: PeerSources,
}

/// A connection that got through the BitTorrent handshake and asks to join the torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub addr: SocketAddr,
    pub origin: PeerOrigin,
    /// The peer id of its handshake (BEP 20 names the client in it).
    pub peer_id: [u8; 20],
    /// Its handshake's reserved bits: BEP 10 extensions, BEP 5 DHT.
    pub supports_ext: bool,
    pub supports_dht: bool,
}

/// Why a peer was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("banned")]
    Banned,
    #[error("enough peers")]
    Full,
    #[error("already connected")]
    Duplicate,
    #[error("the torrent stopped on a disk fault")]
    Stopped,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Payload bytes received in blocks (including duplicates and failed pieces).
    pub received: u64,
    pub uploaded: u64,
    /// Pieces verified during this run (not found on disk at start).
    pub fetched_pieces: u64,
    pub hash_failures: u64,
    /// Peer-exchange messages ignored for coming too soon after the peer's previous one.
    pub pex_spam: u64,
}

/// Something that happened, for the core to act on.
#[derive(Debug)]
pub enum Input {
    /// A decoded frame from a peer.
    Message { key: PeerKey, msg: Message },
    /// The peer's task handed `bytes` of what we sent it to the socket.
    Written { key: PeerKey, bytes: usize },
    /// The connection ended (its task is gone).
    PeerGone { key: PeerKey },
    /// The disk refused a block: the torrent stops.
    WriteFailed { block: BlockRef, fault: DiskFault },
    /// A block read for `key` (see [`DiskOp::Read`]).
    BlockRead { key: PeerKey, block: BlockRef, result: Result<Vec<u8>, String> },
    /// A piece was hashed (see [`Action::Hash`]); `blocks` holds the SHA-1 of the blocks asked
    /// for, when the piece failed or they were wanted anyway.
    PieceHashed { index: u32, ok: bool, blocks: Vec<(BlockRef, [u8; 20])> },
    /// The storage is open and checked: the torrent has its metadata, and `have` on disk.
    MetadataInstalled { meta: Arc<Metainfo>, have: Bitfield },
    /// Installing the fetched metadata failed (reported by the driver): nothing to wait for.
    InstallFailed,
}

/// Why the core drops a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Banned, or the torrent stopped or is shutting down.
    Closed,
    /// It broke the protocol.
    Protocol(String),
    /// It asks for more while not reading what we already queued for it.
    NotReading { queued: usize, cap: usize },
}

/// What the core asks of the disk. The driver's disk thread and the harness's in-memory disk
/// both take exactly this.
#[derive(Debug)]
pub enum DiskOp {
    /// Write a received block.
    Write { block: BlockRef, data: Vec<u8> },
    /// Read a block a peer asked for; answer with [`Input::BlockRead`].
    Read { key: PeerKey, block: BlockRef },
    /// Hash a piece whose blocks were all written (after them, in order); answer with
    /// [`Input::PieceHashed`]. `blocks` are hashed one by one if the piece fails, or
    /// whatever the outcome when `always` (smart ban has evidence to compare with).
    Hash { index: u32, blocks: Vec<BlockRef>, always: bool },
}

/// What the core wants done; the driver carries these out in order.
#[derive(Debug)]
pub enum Action {
    /// Put a message on the wire to a peer.
    Send {
        key: PeerKey,
        msg: Message,
    },
    /// What frames the peer may send from now on (narrowed once the piece count is known).
    Limits {
        key: PeerKey,
        limits: Limits,
    },
    /// Drop the connection; the core has already forgotten the peer.
    Close {
        key: PeerKey,
        reason: CloseReason,
    },
    /// Disk work, carried out in the order given (a hash comes after its piece's writes).
    Disk(DiskOp),
    /// Metadata assembled from peers that hashes to the info-hash: parse it, open the
    /// storage, answer with [`Input::MetadataInstalled`] or [`Input::InstallFailed`].
    Install {
        info_bytes: Vec<u8>,
    },
    /// Ping a peer's DHT node (its BEP 5 `port` message).
    DhtPing {
        addr: SocketAddr,
    },
    /// Addresses peer exchange taught us, for the peer list.
    Learned {
        addrs: Vec<SocketAddr>,
    },
    Event(TorrentEvent),
}
