//! Where a peer's address came from: the sources a torrent's peer list learns addresses from
//! (DHT get_peers, BEP 5; peer exchange, BEP 11; local service discovery, BEP 14; the user;
//! incoming connections). The runner's peer list ranks candidates by them, and the torrent
//! core shows them as a peer's H, L and X flags, so both layers share this small type.

/// A source of peer addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerSource {
    /// `--peer` on the command line.
    Manual,
    /// A magnet link's `x.pe` hint.
    Magnet,
    /// BEP 14 local service discovery.
    Lsd,
    /// BEP 11 peer exchange from a connected peer.
    Pex,
    /// BEP 5 get_peers answers.
    Dht,
    /// A peer that connected to us.
    Incoming,
}

impl PeerSource {
    pub const ALL: [PeerSource; 6] = [
        PeerSource::Manual,
        PeerSource::Magnet,
        PeerSource::Lsd,
        PeerSource::Pex,
        PeerSource::Dht,
        PeerSource::Incoming,
    ];

    /// The name used in `get --json` events and logs.
    pub fn name(self) -> &'static str {
        match self {
            PeerSource::Manual => "peer",
            PeerSource::Magnet => "magnet",
            PeerSource::Lsd => "lsd",
            PeerSource::Pex => "pex",
            PeerSource::Dht => "dht",
            PeerSource::Incoming => "incoming",
        }
    }

    /// Position in [`PeerSource::ALL`], which is also the order of trust: the user's own word
    /// first, a stranger's get_peers answer last.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The sources that gave one address, a bit per [`PeerSource`]. A connection carries those of
/// its address to the torrent core, which shows them as the peer's H, L and X flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PeerSources(u8);

impl PeerSources {
    pub fn contains(self, s: PeerSource) -> bool {
        self.0 & (1 << s.index()) != 0
    }

    /// Adds `s`; returns whether it was not there yet.
    pub fn insert(&mut self, s: PeerSource) -> bool {
        let new = !self.contains(s);
        self.0 |= 1 << s.index();
        new
    }

    /// In [`PeerSource::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = PeerSource> {
        PeerSource::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The most trusted source that gave the address.
    pub(crate) fn best(self) -> usize {
        self.iter().next().map_or(PeerSource::ALL.len(), PeerSource::index)
    }
}
