//! One torrent as a sans-IO core (BEP 3 peer wire, BEP 9 metadata, BEP 10 extensions, BEP 11
//! peer exchange): peer events and disk results come in with `now` ([`TorrentCore::handle`],
//! [`TorrentCore::handle_timeout`]), and what to do goes out through
//! [`TorrentCore::poll_action`] — messages for peers, blocks to write, read and hash, peers to
//! drop, events for the UI. It owns the piece picker, the choker, every peer's protocol state
//! and pieces, smart ban, parole and the metadata fetch (and shows each peer as a user reads
//! it, `view`), so every policy here runs in a unit test without a socket, a thread or a
//! clock. The tokio driver (`session::torrent`) owns the sockets, the disk thread and the
//! timer, and carries the actions out.

mod download;
pub mod fair;
pub mod fault;
pub mod limits;
mod messages;
mod metadata;
mod peer;
pub mod peer_pieces;
pub mod peer_state;
mod pex;
pub mod smart_ban;
mod types;
mod upload;
pub mod view;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use fault::DiskFault;
pub use messages::{OUR_UT_METADATA, OUR_UT_PEX};
pub use types::{
    Action, CloseReason, Counters, DiskOp, Hello, Input, PeerOrigin, Refused, TorrentConfig, TorrentEvent,
};
pub use view::{PeerFlags, PeerView};

use crate::swarm::bitfield::Bitfield;
use crate::swarm::choker::Choker;
use crate::swarm::metadata_fetch::MetadataFetch;
use crate::swarm::{PeerKey, Picker};
use crate::torrent::Metainfo;
use crate::wire::message::Message;
use crate::wire::pex::PexFlags;
use peer::Peer;
use smart_ban::SmartBan;

/// How often every peer's timers run (rates, keep-alives, request timeouts, PEX, metadata
/// requests released by others).
const PEER_TICK: Duration = Duration::from_secs(1);

/// One torrent's decisions. See the module doc.
pub struct TorrentCore {
    config: TorrentConfig,
    meta: Option<Arc<Metainfo>>,
    picker: Option<Picker>,
    /// The metadata fetch (size votes, requests, blame) until the metadata is known.
    metadata: Option<MetadataFetch>,
    /// Metadata was handed to the driver to install: fetch no more.
    installing: bool,
    choker: Choker,
    /// A peer left or lost interest: its upload slot may be free (see `refill_slots`).
    slots_freed: bool,
    /// Ordered, so that what is done per peer comes out in a reproducible order.
    peers: BTreeMap<PeerKey, Peer>,
    next_key: u64,
    banned: HashSet<IpAddr>,
    /// Failed pieces each address sent blocks of.
    strikes: HashMap<IpAddr, u32>,
    /// Addresses proven to have sent a wrong block (smart ban, or a sole-source failure).
    proven: HashSet<IpAddr>,
    counters: Counters,
    complete: bool,
    /// Set once the disk failed: the torrent takes no more blocks and no more peers.
    fault: Option<DiskFault>,
    /// Pieces being hashed now, so a piece is never checked twice at once.
    verifying: HashSet<u32>,
    smart_ban: SmartBan,
    /// Pieces that failed their hash check, with the one peer now allowed to fetch them: a
    /// piece from a single peer that fails again proves that peer sent bad data.
    parole: HashMap<u32, Option<(PeerKey, Instant)>>,
    /// Bytes of verified pieces.
    verified_bytes: u64,
    next_peer_tick: Option<Instant>,
    actions: VecDeque<Action>,
    /// Seeds the picker's randomness once the metadata is known.
    seed: u64,
    /// Bumped whenever the set of peers or of banned addresses changes, so a driver publishes
    /// those sets only when they did.
    roster: u64,
    /// The order of the weighted upload (PropShare, BitTyrant), see [`fair`].
    stride: fair::Stride,
    /// Our upload over all peers, bytes/s, as of the last peer tick: sizes the weighted
    /// upload's budget.
    upload_rate: f64,
}

impl TorrentCore {
    pub fn new(config: TorrentConfig, seed: u64) -> TorrentCore {
        TorrentCore {
            metadata: Some(MetadataFetch::new(config.info_hash)),
            choker: Choker::new(config.choker.clone(), seed),
            slots_freed: false,
            config,
            meta: None,
            picker: None,
            installing: false,
            peers: BTreeMap::new(),
            next_key: 1,
            banned: HashSet::new(),
            strikes: HashMap::new(),
            proven: HashSet::new(),
            counters: Counters::default(),
            complete: false,
            fault: None,
            verifying: HashSet::new(),
            smart_ban: SmartBan::default(),
            parole: HashMap::new(),
            verified_bytes: 0,
            next_peer_tick: None,
            actions: VecDeque::new(),
            seed,
            roster: 0,
            stride: fair::Stride::default(),
            upload_rate: 0.0,
        }
    }

    pub fn config(&self) -> &TorrentConfig {
        &self.config
    }

    /// Takes a peer that got through the handshake, and greets it (extension handshake,
    /// bitfield, DHT port).
    pub fn connect(&mut self, now: Instant, hello: Hello) -> Result<PeerKey, Refused> {
        if self.fault.is_some() {
            return Err(Refused::Stopped);
        }
        if self.banned.contains(&hello.addr.ip()) {
            return Err(Refused::Banned);
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(Refused::Full);
        }
        if self.peers.values().any(|p| p.addr == hello.addr) {
            return Err(Refused::Duplicate);
        }
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let own = self.config.listen_ip.map(|ip| SocketAddr::new(ip, self.config.listen_port));
        self.peers.insert(key, Peer::new(now, &hello, self.config.peer.clone(), own));
        self.roster += 1;
        self.choker.peer_connected_from(now, key, crate::net::addr::host_key(hello.addr));
        self.next_peer_tick.get_or_insert(now + PEER_TICK);
        self.greet(now, key);
        self.pump(now, key);
        Ok(key)
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Message { key, msg } => self.on_message(now, key, msg),
            Input::Written { key, bytes } => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.written += bytes as u64;
                    p.moved_at = now;
                    self.pump(now, key);
                }
            }
            Input::PeerGone { key } => self.forget(key),
            Input::WriteFailed { block, fault } => self.on_write_failed(block, fault),
            Input::BlockRead { key, block, result } => self.on_block_read(now, key, block, result),
            Input::PieceHashed { index, ok, blocks } => self.on_piece_hashed(now, index, ok, &blocks),
            Input::MetadataInstalled { meta, have } => self.on_metadata_installed(now, meta, have),
            Input::InstallFailed => self.installing = false,
        }
        self.refill_slots(now);
    }

    /// A peer left or lost interest since the last call: its upload slot goes to a waiting
    /// peer now (see the choker's module doc).
    /// Also sends every other choke or unchoke the choker decided between rounds (PropShare's
    /// answers and ended trials, `choker::reciprocity`).
    fn refill_slots(&mut self, now: Instant) {
        if std::mem::take(&mut self.slots_freed) {
            self.choker.set_seeding(self.complete);
            // The unchokes are queued for `take_changes` below.
            self.choker.fill_free_slots(now);
        }
        for d in self.choker.take_changes() {
            if let Some(p) = self.peers.get_mut(&d.peer) {
                p.state.set_choking(now, !d.unchoke);
            }
            self.pump(now, d.peer);
        }
    }

    /// Timers: the choker's rounds, and every peer's own timers once a second.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.choker.next_deadline().is_some_and(|t| now >= t) {
            self.choker.set_seeding(self.complete);
            for d in self.choker.tick(now) {
                if let Some(p) = self.peers.get_mut(&d.peer) {
                    p.state.set_choking(now, !d.unchoke);
                }
                self.pump(now, d.peer);
            }
        }
        if self.next_peer_tick.is_some_and(|t| now >= t) {
            self.next_peer_tick = (!self.peers.is_empty()).then_some(now + PEER_TICK);
            if let Some(f) = self.metadata.as_mut() {
                f.on_timer(now);
            }
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                self.peer_timer(now, key);
            }
            self.upload_rate = self.peers.values().map(|p| p.state.upload.per_second()).sum();
        }
        self.refill_slots(now);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.choker.next_deadline(), self.next_peer_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Tells every peer to leave (the session is over).
    pub fn close_all(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.close(key, CloseReason::Closed);
        }
    }

    pub fn metainfo(&self) -> Option<&Arc<Metainfo>> {
        self.meta.as_ref()
    }

    /// Our verified pieces, once the metadata is known.
    pub fn have(&self) -> Option<&Bitfield> {
        self.picker.as_ref().map(Picker::have)
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// (verified bytes, total bytes) once the metadata is known.
    pub fn progress(&self) -> Option<(u64, u64)> {
        self.meta.as_ref().map(|m| (self.verified_bytes, m.info.total_length))
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn fault(&self) -> Option<&DiskFault> {
        self.fault.as_ref()
    }

    /// Changes whenever the connected peers or the banned addresses change.
    pub fn roster_version(&self) -> u64 {
        self.roster
    }

    pub fn banned(&self) -> &HashSet<IpAddr> {
        &self.banned
    }

    pub fn connected(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.peers.values().map(|p| p.addr)
    }

    /// The connected peers peer exchange may tell `exclude` about: those whose listen address
    /// we know, with their flags, in a stable order.
    pub fn pex_view(&self, exclude: PeerKey) -> Vec<(SocketAddr, PexFlags)> {
        let mut view: Vec<(SocketAddr, PexFlags)> = self
            .peers
            .iter()
            .filter(|(k, _)| **k != exclude)
            .filter_map(|(_, p)| Some((p.listen?, p.pex_flags)))
            .collect();
        view.sort();
        view.dedup_by_key(|(a, _)| *a);
        view
    }

    fn emit(&mut self, ev: TorrentEvent) {
        self.actions.push_back(Action::Event(ev));
    }

    /// Drops a peer: its task is told, and everything it held is released now.
    fn close(&mut self, key: PeerKey, reason: CloseReason) {
        if self.peers.contains_key(&key) {
            self.forget(key);
            self.actions.push_back(Action::Close { key, reason });
        }
    }

    fn forget(&mut self, key: PeerKey) {
        if self.peers.remove(&key).is_none() {
            return;
        }
        self.roster += 1;
        self.choker.peer_left(key);
        self.slots_freed = true;
        self.stride.forget(key);
        for owner in self.parole.values_mut() {
            if owner.is_some_and(|(o, _)| o == key) {
                *owner = None;
            }
        }
        if let Some(p) = self.picker.as_mut() {
            p.peer_left(key);
        }
        if let Some(f) = self.metadata.as_mut() {
            f.peer_left(key);
        }
    }

    /// Sends a message to a peer (through its state machine, which keeps its timers).
    fn send(&mut self, now: Instant, key: PeerKey, msg: Message) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.state.send(now, msg);
        }
    }

    /// After any input that concerns a peer: fill its request pipeline, read what we owe it,
    /// and hand what its state machine queued to its task.
    fn pump(&mut self, now: Instant, key: PeerKey) {
        if !self.peers.contains_key(&key) {
            return;
        }
        self.request_blocks(now, key);
        self.serve_owed(now, key);
        self.flush(key);
    }

    fn pump_all(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.pump(now, key);
        }
    }

    /// Moves what the peer's state machine queued into actions, counting the bytes so that
    /// what its socket has not taken yet is known (`Peer::queued`).
    fn flush(&mut self, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        while let Some(msg) = p.state.poll_message() {
            p.sent += msg.encoded_len() as u64;
            self.actions.push_back(Action::Send { key, msg });
        }
    }

    fn update_interest(&mut self, now: Instant, key: PeerKey) {
        if let Some(p) = self.peers.get_mut(&key) {
            let interesting = p.interesting();
            p.state.set_interested(now, interesting);
            self.choker.we_are_interested(key, interesting);
        }
    }

    /// One peer's timers: its state machine's, the choker's snub clock, PEX and metadata.
    fn peer_timer(&mut self, now: Instant, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        let expired = match p.state.handle_timeout(now) {
            Ok(expired) => expired,
            Err(e) => return self.close(key, CloseReason::Protocol(e.to_string())),
        };
        if let Some(picker) = self.picker.as_mut() {
            for b in expired {
                picker.on_request_timeout(key, b);
            }
        }
        self.choker.on_downloaded(key, now, 0);
        // Slots another peer released (rejected, timed out, blamed) are taken up here.
        self.ask_metadata(now, key);
        self.update_interest(now, key);
        self.send_pex(now, key);
        self.pump(now, key);
    }
}

#[cfg(test)]
mod tests;
