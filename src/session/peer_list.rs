//! Where a torrent's candidate peers came from. Every source (DHT get_peers, BEP 11 peer
//! exchange, BEP 14 local service discovery, `--peer`, magnet `x.pe` hints and incoming
//! connections) feeds the one list the runner dials from.

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
}
