//! One connected peer as the torrent core keeps it (BEP 3, BEP 10, BEP 11): its protocol
//! state machine, its pieces, the extension ids it chose, its peer-exchange state, and how
//! many of the bytes we queued for it its socket has taken (for back-pressure).

use std::net::SocketAddr;
use std::time::Instant;

use super::peer_pieces::PeerPieces;
use super::peer_state::{PeerConfig, PeerState};
use super::types::{Hello, PeerOrigin};
use crate::swarm::pex::{PexReceiver, PexSender};
use crate::wire::pex::PexFlags;

/// Haves kept from a peer before we know the piece count; more are dropped (a real peer
/// sends a bitfield instead of thousands of haves).
pub(super) const MAX_EARLY_HAVES: usize = 100_000;

#[derive(Debug)]
pub(super) struct Peer {
    pub addr: SocketAddr,
    pub state: PeerState,
    pub supports_ext: bool,
    pub supports_dht: bool,
    /// Their pieces, once we know how many pieces there are.
    pub pieces: Option<PeerPieces>,
    /// A bitfield or haves that came before the metadata did.
    pub early_bitfield: Option<Vec<u8>>,
    pub early_haves: Vec<u32>,
    /// Their id for ut_metadata (BEP 9).
    pub ut_metadata: Option<u8>,
    /// Their id for ut_pex and what we tell them; `None` unless both sides offer PEX.
    pub pex_out: Option<(u8, PexSender)>,
    /// What we take from their PEX messages.
    pub pex_in: PexReceiver,
    /// Its BEP 5 `port` message was acted on: one ping per connection, whatever it sends.
    pub dht_port_taken: bool,
    /// Where it takes connections, as peer exchange tells others: the address we dialled,
    /// or for an incoming peer its IP with the port of its extension handshake.
    pub listen: Option<SocketAddr>,
    pub pex_flags: PexFlags,
    /// Bytes of messages handed to its task, and of those, bytes its socket took.
    pub sent: u64,
    pub written: u64,
    /// Bytes of blocks being read from disk for it.
    pub reading: u64,
    /// When its socket last took bytes, or we queued bytes for it with nothing waiting: a
    /// weighted upload leaves a peer whose queue has not moved for a while out of its budget.
    pub moved_at: Instant,
}

impl Peer {
    pub fn new(now: Instant, hello: &Hello, config: PeerConfig, own: Option<SocketAddr>) -> Peer {
        let PeerOrigin { outgoing, utp } = hello.origin;
        let mut pex_flags = PexFlags::default();
        if utp {
            pex_flags |= PexFlags::UTP;
        }
        if outgoing {
            pex_flags |= PexFlags::REACHABLE;
        }
        Peer {
            addr: hello.addr,
            state: PeerState::new(now, config),
            supports_ext: hello.supports_ext,
            supports_dht: hello.supports_dht,
            pieces: None,
            early_bitfield: None,
            early_haves: Vec::new(),
            ut_metadata: None,
            pex_out: None,
            pex_in: PexReceiver::new(own),
            dht_port_taken: false,
            listen: outgoing.then_some(hello.addr),
            pex_flags,
            sent: 0,
            written: 0,
            reading: 0,
            moved_at: now,
        }
    }

    /// Bytes we queued for it that its socket has not taken yet.
    pub fn queued(&self) -> usize {
        usize::try_from(self.sent.saturating_sub(self.written)).unwrap_or(usize::MAX)
    }

    /// Bytes queued for it or being read for it.
    pub fn held(&self) -> usize {
        self.queued().saturating_add(usize::try_from(self.reading).unwrap_or(usize::MAX))
    }

    /// They have something we lack (O(1): `PeerPieces` keeps the count).
    pub fn interesting(&self) -> bool {
        self.pieces.as_ref().is_some_and(PeerPieces::interesting)
    }
}
