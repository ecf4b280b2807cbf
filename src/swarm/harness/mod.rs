//! A swarm in virtual time: many production [`TorrentCore`]s wired together by in-memory links
//! with set capacities and latencies, an in-memory disk each, and one event queue as the clock
//! (quinn's `Pair::step` shape, scaled to a swarm). No sockets, no threads, no sleeping: time
//! jumps to the next frame arrival, link, disk or core deadline, so a 51-node download of
//! several minutes runs in a few seconds, and the same seed gives the same run event for event.
//!
//! What is modelled:
//! - Every message a core sends is encoded with the real wire encoder and decoded on arrival
//!   with the real frame decoder and the frame limits the core set (`Action::Limits`), so byte
//!   counts are those of the wire and a malformed frame drops the connection as it would.
//! - Each node has an uplink and a downlink capacity (bytes/s) and each connection a one-way
//!   latency ([`link`]): frames queue per connection at the sender, the uplink serves the
//!   connections round-robin one frame at a time, and the receiver's downlink is one FIFO for
//!   all senders. Messages between two nodes arrive in the order they were sent.
//! - Back-pressure as the real driver reports it: `Input::Written` comes when a frame leaves the
//!   sender's uplink, so the core's queued bytes per peer (its `WRITE_HIGH_WATER`) stand for
//!   what waits in that connection's socket buffer.
//! - A connection joins both cores one round trip after it is dialled (the handshakes); when a
//!   core closes it, the other side learns of it after the last frame in flight to it and at
//!   least one latency later. Refusals (`connect` errors) are honoured.
//! - The disk ([`disk`]) answers writes, reads and hashes (real SHA-1) in order after a set
//!   delay; magnet starts fetch the metadata over BEP 9 and install it after the same delay.
//! - Each node may have a [`Behaviour`] between its core and the harness, for strategic
//!   clients; the default is [`Honest`].
//! - Several nodes may share one uplink and one downlink ([`NodeSpec::shares_link_with`]):
//!   clients on one machine. The shared uplink serves all their connections round-robin as
//!   one node's would, and the downlink is one FIFO for all of them. Nodes of one machine
//!   never connect to each other (such a dial is refused).
//! - A node may show several identities ([`Swarm::dial_as`]): one client under several peer
//!   ids on one IP, a Sybil, holding a connection per identity to the same peer.
//!
//! - A node may leave some time after it completes ([`NodeSpec::leaves_after`]): its core
//!   closes every connection and later dials to or from it are refused.
//!
//! What is not: TCP itself (no slow start, no congestion window, no loss, no retransmission,
//! no per-packet headers: a frame is a frame), fair sharing of a downlink between senders
//! (FIFO instead), NAT, peers found through the DHT, trackers or peer exchange (the scenario
//! dials a fixed set; PEX messages flow and are counted but nobody dials what they teach),
//! disk throughput (a fixed delay per operation) and CPU time.

mod behaviour;
mod clock;
mod disk;
mod events;
pub mod fairplay;
pub mod link;
pub mod scenario;
pub mod strategies;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub use behaviour::{Behaviour, Honest};
pub use link::Capacity;

use crate::id::InfoHash;
use crate::swarm::bitfield::Bitfield;
use crate::swarm::choker::ChokerKind;
use crate::swarm::session::{Input, TorrentConfig, TorrentCore};
use crate::swarm::PeerKey;
use crate::torrent::Metainfo;
use crate::wire::message::Limits;
use clock::Clock;
use disk::MemDisk;
use events::Event;
use link::{Downlink, Uplink};

/// What a node starts with.
pub enum Start {
    /// The whole content (and the metadata): a seeder.
    Seed { meta: Arc<Metainfo>, content: Vec<u8> },
    /// The metadata only, from a .torrent file.
    Metadata(Arc<Metainfo>),
    /// Only the info-hash, from a magnet link: the metadata comes from peers (BEP 9).
    Magnet(InfoHash),
}

/// One node to add to the swarm.
pub struct NodeSpec {
    pub capacity: Capacity,
    pub start: Start,
    /// How long each disk operation takes.
    pub disk_delay: Duration,
    pub max_peers: usize,
    /// How its core shares out its upload (the core's `ChokerConfig::kind`).
    pub choker: ChokerKind,
    pub behaviour: Box<dyn Behaviour>,
    /// Another node (added earlier) whose uplink and downlink this one uses as well, as a
    /// second client on the same machine; `capacity` is then ignored.
    pub shares_link_with: Option<usize>,
    /// It leaves the swarm this long after completing: closes every connection and takes no
    /// new ones (`None`: it stays and seeds).
    pub leaves_after: Option<Duration>,
}

impl NodeSpec {
    /// An honest node with an instant disk and room for 80 peers.
    pub fn new(capacity: Capacity, start: Start) -> NodeSpec {
        NodeSpec {
            capacity,
            start,
            disk_delay: Duration::ZERO,
            max_peers: 80,
            choker: ChokerKind::TitForTat,
            behaviour: Box::new(Honest),
            shares_link_with: None,
            leaves_after: None,
        }
    }
}

/// What the harness saw of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Virtual time from the start of the run to the core's `Complete` event.
    pub completed_at: Option<Duration>,
    /// Wire bytes (frames with their length prefix) that left its uplink / reached its core.
    pub wire_sent: u64,
    pub wire_received: u64,
    /// Block payload bytes of `piece` messages it sent, and that reached a connected peer.
    pub payload_sent: u64,
    pub payload_delivered: u64,
    /// Block payload bytes it sent that were lost to a closed connection.
    pub payload_dropped: u64,
    /// Block payload bytes that reached it but its core did not count as received: blocks
    /// no longer requested (cancelled in endgame, or timed out) when they landed.
    pub payload_discarded: u64,
    /// Connections it closed for a protocol error, or that the other side's frames broke.
    pub protocol_closes: u64,
    /// Connections it refused (`connect` said no) or that the other side refused.
    pub refused: u64,
    pub pieces_failed: u64,
    /// Addresses peer exchange taught it (not dialled, see the module doc).
    pub learned: u64,
    /// The core reported a disk fault or unusable metadata.
    pub failed: bool,
    /// Each piece it verified, with the virtual time since the start (pieces it started
    /// with are not listed).
    pub verified: Vec<(u32, Duration)>,
    /// Block payload that reached it, by sending node (one entry per node it heard from, so
    /// no larger than the swarm): where a node's bytes came from.
    pub payload_from: BTreeMap<usize, u64>,
}

struct Node {
    addr: SocketAddr,
    core: TorrentCore,
    behaviour: Box<dyn Behaviour>,
    /// Index of its access link in `Swarm::links` (shared by the identities of one machine).
    link: usize,
    leaves_after: Option<Duration>,
    /// It has left the swarm (see [`NodeSpec::leaves_after`]).
    gone: bool,
    disk: Option<MemDisk>,
    disk_delay: Duration,
    /// Its connections by the key its core gave them.
    peers: HashMap<PeerKey, usize>,
    /// The earliest timer queued for it, to skip stale ones.
    scheduled: Option<Instant>,
    stats: NodeStats,
}

/// A machine's access link: what the nodes on it send and receive passes here.
struct Link {
    uplink: Uplink,
    downlink: Downlink,
}

/// One end of a connection: the node, the key its core knows the peer by, and the frame
/// limits its core set for what it receives.
struct End {
    node: usize,
    key: PeerKey,
    limits: Limits,
}

struct Conn {
    ends: [End; 2],
    latency: Duration,
    /// When the last frame towards each end lands (index = the receiving end).
    last_arrival: [Option<Instant>; 2],
}

impl Conn {
    fn side_of(&self, node: usize) -> usize {
        usize::from(self.ends[0].node != node)
    }
}

/// The swarm: nodes, connections and the clock. See the module doc.
pub struct Swarm {
    clock: Clock<Event>,
    rng: StdRng,
    nodes: Vec<Node>,
    links: Vec<Link>,
    conns: Vec<Conn>,
    events: u64,
}

impl Swarm {
    /// An empty swarm whose virtual time starts at `epoch`; every random choice (core seeds,
    /// peer ids) comes from `seed`.
    pub fn new(seed: u64, epoch: Instant) -> Swarm {
        Swarm {
            clock: Clock::new(epoch),
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            links: Vec::new(),
            conns: Vec::new(),
            events: 0,
        }
    }

    /// Adds a node at the current virtual time; returns its index.
    pub fn add_node(&mut self, spec: NodeSpec) -> usize {
        let i = self.nodes.len();
        let addr = crate::sim::sim_addr(i + 1);
        let info_hash = match &spec.start {
            Start::Seed { meta, .. } | Start::Metadata(meta) => meta.info_hash,
            Start::Magnet(h) => *h,
        };
        let mut config = TorrentConfig::new(info_hash, PathBuf::new(), addr.port(), false, spec.max_peers, false);
        self.rng.fill(&mut config.peer_id);
        config.choker.kind = spec.choker;
        config.listen_ip = Some(addr.ip());
        let core = TorrentCore::new(config, self.rng.random());
        let now = self.clock.now();
        let link = match spec.shares_link_with.and_then(|o| self.nodes.get(o)) {
            Some(other) => other.link,
            None => {
                let (up, down) = (spec.capacity.up, spec.capacity.down);
                self.links.push(Link { uplink: Uplink::new(up), downlink: Downlink::new(down) });
                self.links.len() - 1
            }
        };
        let (disk, installed) = match spec.start {
            Start::Seed { meta, content } => {
                let (disk, have) = MemDisk::with_content(Arc::clone(&meta), spec.disk_delay, content);
                (Some(disk), Some((meta, have)))
            }
            Start::Metadata(meta) => {
                let have = Bitfield::new(meta.info.piece_count());
                (Some(MemDisk::empty(Arc::clone(&meta), spec.disk_delay)), Some((meta, have)))
            }
            Start::Magnet(_) => (None, None),
        };
        self.nodes.push(Node {
            addr,
            core,
            behaviour: spec.behaviour,
            link,
            leaves_after: spec.leaves_after,
            gone: false,
            disk,
            disk_delay: spec.disk_delay,
            peers: HashMap::new(),
            scheduled: None,
            stats: NodeStats::default(),
        });
        if let Some((meta, have)) = installed {
            self.feed(i, now, Input::MetadataInstalled { meta, have });
        }
        self.after(i);
        i
    }

    /// Node `a` dials node `b` at virtual time `at` (from the start) over a connection of
    /// one-way `latency`; both cores take it one round trip later.
    pub fn dial(&mut self, a: usize, b: usize, at: Duration, latency: Duration) {
        self.dial_as((a, 0), (b, 0), at, latency);
    }

    /// [`Swarm::dial`] between identities: node `a` under its identity `a.1` dials node `b`'s
    /// identity `b.1`. A node with several identities (one Sybil client under several peer
    /// ids, all on one IP) may hold a connection per identity to the same peer; each core
    /// sees the other end under an address of its own (`events::seen_as`).
    pub fn dial_as(&mut self, a: (usize, u16), b: (usize, u16), at: Duration, latency: Duration) {
        let when = self.clock.epoch() + at + 2 * latency;
        let identities = (a.1, b.1);
        self.clock.schedule(when, Event::Dial { a: a.0, b: b.0, identities, latency });
    }

    /// Runs until virtual time `t` (from the start) or until nothing is left to happen.
    pub fn run_until(&mut self, t: Duration) {
        let limit = self.clock.epoch() + t;
        while self.step(limit) {}
        self.clock.advance_to(limit);
    }

    /// Runs until every node has completed, or `limit` of virtual time has passed; true when
    /// all completed.
    pub fn run_until_complete(&mut self, limit: Duration) -> bool {
        let end = self.clock.epoch() + limit;
        while !self.all_complete() {
            if !self.step(end) {
                return false;
            }
        }
        true
    }

    /// Runs on until no block payload is on the links any more (at most `limit` longer), so
    /// that what was uploaded and what arrived can be compared; true when drained.
    pub fn drain(&mut self, limit: Duration) -> bool {
        let end = self.clock.now() + limit;
        while self.payload_in_flight() > 0 {
            if !self.step(end) {
                return false;
            }
        }
        true
    }

    pub fn all_complete(&self) -> bool {
        self.nodes.iter().all(|n| n.core.is_complete())
    }

    /// Block payload sent and neither delivered nor dropped yet.
    pub fn payload_in_flight(&self) -> u64 {
        self.nodes.iter().map(|n| n.stats.payload_sent - n.stats.payload_delivered - n.stats.payload_dropped).sum()
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn core(&self, i: usize) -> &TorrentCore {
        &self.nodes[i].core
    }

    pub fn stats(&self, i: usize) -> &NodeStats {
        &self.nodes[i].stats
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    /// What node `i` has on its disk, once it has the metadata.
    pub fn stored(&self, i: usize) -> Option<&[u8]> {
        self.nodes[i].disk.as_ref().map(MemDisk::bytes)
    }

    /// Bytes queued on node `i`'s uplink, not yet on the air (all of its machine's, when it
    /// shares the link).
    pub fn uplink_queued(&self, i: usize) -> usize {
        self.links[self.nodes[i].link].uplink.queued_bytes()
    }

    /// Whether node `i` has left the swarm.
    pub fn has_left(&self, i: usize) -> bool {
        self.nodes[i].gone
    }

    /// Whether nodes `a` and `b` are identities of one machine (share one link).
    pub fn same_machine(&self, a: usize, b: usize) -> bool {
        self.nodes[a].link == self.nodes[b].link
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn test_epoch() -> Instant {
    // Only an origin: nothing in the harness reads the clock again.
    Instant::now()
}

#[cfg(test)]
mod tests;
