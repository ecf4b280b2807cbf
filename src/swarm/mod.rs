//! The swarm side of BEP 3: which pieces we and each peer have ([`bitfield`]), which blocks to
//! request from whom ([`picker`]), and whom we let download from us ([`choker`], BEP 3 "Choking
//! and optimistic unchoking"), and what we tell each peer of the others and believe of what it
//! tells us ([`pex`], BEP 11), and one torrent's core that owns them all with every peer's
//! protocol state ([`session`]). All are sans-IO cores: they take events (and `now` where
//! time matters) and hand back decisions for the peer-wire driver to put on the wire.

pub mod bitfield;
pub mod choker;
pub mod harness;
pub mod metadata_fetch;
pub mod peer_source;
pub mod pex;
pub mod picker;
pub mod session;

pub use bitfield::{Bitfield, BitfieldError};
pub use choker::{ChokeDecision, Choker, ChokerConfig, ChokerKind};
pub use picker::{BlockOutcome, BlockRef, BlockStatus, Picker, PickerConfig, PickerError, BLOCK};

/// A connected peer as the driver names it (a connection counter, say). Small and `Copy` so the
/// picker can remember it per requested block without knowing about addresses or sockets, and
/// ordered so that anything iterated per peer comes out in a reproducible order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);
