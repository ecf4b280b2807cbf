//! One torrent's shared state in a session: its metadata (assembled from peers for a magnet,
//! BEP 9), storage, piece picker, choker and the peers connected to it, behind one lock that
//! peer tasks hold only briefly. Hash checks run on the blocking pool; a peer whose data
//! keeps failing them is banned.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sha1::{Digest, Sha1};
use tokio::sync::mpsc;

use crate::dht::driver::Command as DhtCommand;
use crate::id::InfoHash;
use crate::session::peer_list::{PeerSource, SourceCounts};
use crate::session::peer_state::PeerConfig;
use crate::session::smart_ban::SmartBan;
use crate::storage::{resume, Layout, Storage};
use crate::swarm::bitfield::Bitfield;
use crate::swarm::choker::{Choker, ChokerConfig};
use crate::swarm::metadata_fetch::MetadataFetch;
use crate::swarm::{PeerKey, Picker};
use crate::torrent::Metainfo;
use crate::wire::message::BlockRef;
use crate::wire::pex::PexFlags;

#[path = "fault.rs"]
pub mod fault;
pub use fault::DiskFault;

#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

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
    /// `--upload-limit` and `--download-limit`: shared with every other torrent of the process.
    pub rate_limits: crate::session::throttle::RateLimits,
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
            peer_id: crate::session::new_peer_id(),
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
    /// The disk refused our data: the torrent has stopped (see [`fault`]).
    Failed(DiskFault),
    /// The metadata hashes to the info-hash but is not a usable torrent: nothing more can be
    /// done for this magnet, the reason is for the user.
    MetadataUnusable(String),
}

/// A command from the torrent to one peer task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCmd {
    Choke,
    Unchoke,
    Have(u32),
    Cancel(BlockRef),
    /// The metadata became known: send a bitfield, decide interest.
    MetadataReady,
    /// Leave: banned, or the session is over.
    Close,
}

struct PeerLink {
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<PeerCmd>,
    /// Where the peer takes connections, as peer exchange tells others: the address we
    /// dialled, or for an incoming peer its IP with the port of its extension handshake;
    /// `None` while unknown (such a peer is not advertised).
    listen: Option<SocketAddr>,
    /// What peer exchange says of it (seed, uTP, reachable).
    pex_flags: PexFlags,
}

/// How a peer connection came about, which is what peer exchange can tell others about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerOrigin {
    /// We dialled it: its address takes connections.
    pub outgoing: bool,
    /// The connection runs over uTP (BEP 29), so the peer speaks it.
    pub utp: bool,
}

#[derive(Debug, Clone, Default)]
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

pub(crate) struct State {
    pub meta: Option<Arc<Metainfo>>,
    pub storage: Option<Arc<Storage>>,
    pub picker: Option<Picker>,
    /// The metadata fetch (size votes, requests, blame) until the metadata is known.
    pub metadata: Option<MetadataFetch>,
    pub choker: Choker,
    peers: HashMap<PeerKey, PeerLink>,
    next_key: u64,
    banned: HashSet<IpAddr>,
    /// Failed pieces each address sent blocks of.
    strikes: HashMap<IpAddr, u32>,
    /// Addresses proven to have sent a wrong block (smart ban, or a sole-source failure).
    proven: HashSet<IpAddr>,
    pub counters: Counters,
    pub complete: bool,
    /// Set once the disk failed: the torrent takes no more blocks and no more peers.
    pub fault: Option<DiskFault>,
    /// Pieces being hashed now, so a piece is never checked twice at once.
    verifying: HashSet<u32>,
    pub smart_ban: SmartBan,
    /// Pieces that failed their hash check, with the one peer now allowed to fetch them: a
    /// piece from a single peer that fails again proves that peer sent bad data.
    pub parole: HashMap<u32, Option<(PeerKey, Instant)>>,
    /// Addresses peer tasks learned (peer exchange) and the runner has not yet taken into its
    /// peer list; bounded by [`MAX_OFFERED`].
    offered: Vec<(PeerSource, SocketAddr)>,
    /// What the runner's peer list holds, by source, for whoever reports progress.
    peer_sources: SourceCounts,
}

/// Learned addresses waiting for the runner at most; more are dropped until it drains them.
const MAX_OFFERED: usize = 1000;

pub struct Torrent {
    pub config: TorrentConfig,
    state: Mutex<State>,
    events: mpsc::UnboundedSender<TorrentEvent>,
    dht: Option<mpsc::UnboundedSender<DhtCommand>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    #[error("metadata does not describe a usable torrent: {0}")]
    BadMetadata(String),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

impl Torrent {
    pub fn new(
        config: TorrentConfig,
        events: mpsc::UnboundedSender<TorrentEvent>,
        dht: Option<mpsc::UnboundedSender<DhtCommand>>,
    ) -> Arc<Torrent> {
        let seed = rand::random();
        let state = State {
            meta: None,
            storage: None,
            picker: None,
            metadata: Some(MetadataFetch::new(config.info_hash)),
            choker: Choker::new(config.choker.clone(), seed),
            peers: HashMap::new(),
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
            offered: Vec::new(),
            peer_sources: SourceCounts::default(),
        };
        Arc::new(Torrent { config, state: Mutex::new(state), events, dht })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A peer task that panicked while holding the lock must not take the session down:
        // the state is plain data and stays consistent between statements.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn emit(&self, ev: TorrentEvent) {
        let _ = self.events.send(ev);
    }

    pub fn metainfo(&self) -> Option<Arc<Metainfo>> {
        self.lock().meta.clone()
    }

    pub fn is_complete(&self) -> bool {
        self.lock().complete
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// (verified bytes, total bytes) once the metadata is known.
    pub fn progress(&self) -> Option<(u64, u64)> {
        let st = self.lock();
        let meta = st.meta.as_ref()?;
        let picker = st.picker.as_ref()?;
        let have = picker.have();
        let done: u64 = have.iter_set().map(|i| meta.info.piece_len(i)).sum();
        Some((done, meta.info.total_length))
    }

    pub fn peer_count(&self) -> usize {
        self.lock().peers.len()
    }

    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.lock().banned.contains(&ip)
    }

    pub fn is_connected(&self, addr: SocketAddr) -> bool {
        self.lock().peers.values().any(|p| p.addr == addr)
    }

    /// Hands addresses learned from `source` to the runner's peer list (it drains them every
    /// tick). Beyond [`MAX_OFFERED`] waiting, the rest are dropped: a flood cannot grow memory.
    pub fn offer_peers(&self, source: PeerSource, addrs: impl IntoIterator<Item = SocketAddr>) {
        let mut st = self.lock();
        let room = MAX_OFFERED.saturating_sub(st.offered.len());
        st.offered.extend(addrs.into_iter().take(room).map(|a| (source, a)));
    }

    /// The addresses offered since the last call.
    pub fn take_offered(&self) -> Vec<(PeerSource, SocketAddr)> {
        std::mem::take(&mut self.lock().offered)
    }

    /// How many addresses each source gave, as the runner last published them.
    pub fn peer_sources(&self) -> SourceCounts {
        self.lock().peer_sources
    }

    pub(crate) fn set_peer_sources(&self, counts: SourceCounts) {
        self.lock().peer_sources = counts;
    }

    pub fn dht_ping(&self, addr: SocketAddr) {
        if let Some(dht) = &self.dht {
            let _ = dht.send(DhtCommand::Ping { addr });
        }
    }

    /// Registers a connected peer; `None` when it is banned, we have enough peers, or the
    /// torrent stopped on a disk fault.
    pub(crate) fn add_peer(
        &self,
        addr: SocketAddr,
        origin: PeerOrigin,
    ) -> Option<(PeerKey, mpsc::UnboundedReceiver<PeerCmd>)> {
        let mut st = self.lock();
        if st.banned.contains(&addr.ip()) || st.peers.len() >= self.config.max_peers || st.fault.is_some() {
            return None;
        }
        if st.peers.values().any(|p| p.addr == addr) {
            return None;
        }
        let key = PeerKey(st.next_key);
        st.next_key += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pex_flags = PexFlags::default();
        if origin.utp {
            pex_flags |= PexFlags::UTP;
        }
        if origin.outgoing {
            pex_flags |= PexFlags::REACHABLE;
        }
        let listen = origin.outgoing.then_some(addr);
        st.peers.insert(key, PeerLink { addr, tx, listen, pex_flags });
        st.choker.peer_connected(now(), key);
        Some((key, rx))
    }

    /// An incoming peer told its listen port (extension handshake `p`): with the IP it came
    /// from, that is where others can reach it. A dialled peer keeps the address we dialled.
    pub(crate) fn set_peer_listen_port(&self, key: PeerKey, port: u16) {
        if let Some(link) = self.lock().peers.get_mut(&key) {
            if link.listen.is_none() {
                link.listen = Some(SocketAddr::new(link.addr.ip(), port));
            }
        }
    }

    /// The peer has every piece.
    pub(crate) fn set_peer_seed(&self, key: PeerKey) {
        if let Some(link) = self.lock().peers.get_mut(&key) {
            link.pex_flags |= PexFlags::SEED;
        }
    }

    /// The connected peers peer exchange may tell `exclude` about: those whose listen address
    /// we know, with their flags, in a stable order.
    pub fn pex_view(&self, exclude: PeerKey) -> Vec<(SocketAddr, PexFlags)> {
        let st = self.lock();
        let mut view: Vec<(SocketAddr, PexFlags)> = st
            .peers
            .iter()
            .filter(|(k, _)| **k != exclude)
            .filter_map(|(_, p)| Some((p.listen?, p.pex_flags)))
            .collect();
        view.sort();
        view.dedup_by_key(|(a, _)| *a);
        view
    }

    pub(crate) fn remove_peer(&self, key: PeerKey) {
        let mut guard = self.lock();
        let st = &mut *guard;
        st.peers.remove(&key);
        st.choker.peer_left(key);
        for owner in st.parole.values_mut() {
            if owner.is_some_and(|(o, _)| o == key) {
                *owner = None;
            }
        }
        if let Some(p) = st.picker.as_mut() {
            p.peer_left(key);
        }
        if let Some(f) = st.metadata.as_mut() {
            f.peer_left(key);
        }
    }

    pub(crate) fn send_to(&self, st: &State, key: PeerKey, cmd: PeerCmd) {
        if let Some(p) = st.peers.get(&key) {
            let _ = p.tx.send(cmd);
        }
    }

    fn broadcast(st: &State, cmd: PeerCmd) {
        for p in st.peers.values() {
            let _ = p.tx.send(cmd.clone());
        }
    }

    /// Tells every peer task to leave.
    pub fn close_all(&self) {
        Self::broadcast(&self.lock(), PeerCmd::Close);
    }

    /// Runs the choker's round if due, telling peers of the changes.
    pub fn choke_round(&self) {
        let mut st = self.lock();
        let seeding = st.complete;
        st.choker.set_seeding(seeding);
        for d in st.choker.tick(now()) {
            self.send_to(&st, d.peer, if d.unchoke { PeerCmd::Unchoke } else { PeerCmd::Choke });
        }
    }

    /// Installs known metadata (a .torrent, or one assembled from peers), opens the storage
    /// and checks what is already on disk. Blocking: call from the blocking pool.
    pub fn install_metadata(&self, meta: Metainfo) -> Result<(), TorrentError> {
        if meta.info_hash != self.config.info_hash {
            return Err(TorrentError::BadMetadata("info-hash differs from the one asked for".into()));
        }
        if self.lock().meta.is_some() {
            return Ok(());
        }
        let info = &meta.info;
        let layout = Layout {
            piece_length: info.piece_length,
            total_length: info.total_length,
            files: info.files.iter().map(|f| (f.path.clone(), f.length)).collect(),
            piece_hashes: info.pieces.clone(),
            pad: info.files.iter().map(|f| f.pad).collect(),
        };
        let storage = Storage::open(&self.config.output, layout)?;
        let hex = meta.info_hash.to_hex();
        let record = if self.config.keep_records {
            let path = resume::resume_path(&self.config.output, &hex)?;
            resume::ResumeRecord::load(&path).unwrap_or(None)
        } else {
            None
        };
        let verified = resume::verified_pieces(&storage, &hex, record.as_ref(), &mut |_, _| {})?;
        let mut have = Bitfield::new(info.piece_count());
        for (i, ok) in verified.iter().enumerate() {
            if *ok {
                have.set(i);
            }
        }
        let have_count = have.count();
        let pieces = info.piece_count();
        let picker = Picker::new(pieces, info.piece_length as u32, info.total_length, &have, rand::random())
            .map_err(|e| TorrentError::BadMetadata(e.to_string()))?;
        let complete = picker.is_complete();
        // Keep the info dictionary next to the data, so a re-run of a magnet starts at once.
        if self.config.keep_records {
            let _ = save_metadata(&self.config.output, &meta);
        }
        let event =
            TorrentEvent::MetadataReady { name: meta.info.name.clone(), total_length: meta.info.total_length, pieces };
        let mut st = self.lock();
        st.meta = Some(Arc::new(meta));
        st.storage = Some(Arc::new(storage));
        st.picker = Some(picker);
        st.metadata = None;
        st.complete = complete;
        Self::broadcast(&st, PeerCmd::MetadataReady);
        drop(st);
        self.emit(event);
        self.emit(TorrentEvent::Checked { have: have_count, pieces });
        if complete {
            self.emit(TorrentEvent::Complete);
        }
        Ok(())
    }

    /// A piece got all its blocks: hash it off the async threads and act on the result.
    pub fn verify_later(self: &Arc<Self>, index: u32) {
        let storage = {
            let mut st = self.lock();
            if !st.verifying.insert(index) {
                return;
            }
            st.storage.clone()
        };
        let Some(storage) = storage else { return };
        let torrent = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let ok = storage.verify_piece(index as usize).unwrap_or(false);
            let block_hash = |b: BlockRef| {
                let data = storage.read_block(b.index as usize, u64::from(b.begin), u64::from(b.length)).ok()?;
                Some(<[u8; 20]>::from(Sha1::digest(&data)))
            };
            let sources = torrent.lock().smart_ban.take_sources(index);
            let senders: HashSet<IpAddr> = sources.iter().map(|(_, ip)| *ip).collect();
            let involved: Vec<IpAddr> = if ok { Vec::new() } else { senders.iter().copied().collect() };
            let guilty = if ok {
                torrent.lock().smart_ban.on_verified(index, block_hash)
            } else if senders.len() == 1 && torrent.lock().parole.contains_key(&index) {
                // Fetched again from this peer alone, and wrong again.
                senders.into_iter().collect()
            } else {
                // Hashed now, before the picker hands the blocks out again and new data
                // overwrites the evidence.
                let evidence = sources.iter().filter_map(|(b, ip)| Some((*b, *ip, block_hash(*b)?))).collect();
                torrent.lock().smart_ban.record_failure(index, evidence);
                Vec::new()
            };
            torrent.piece_checked(index, ok, guilty, involved);
        });
    }

    /// Acts on a hash check. `guilty` are the addresses smart-ban proved sent bad blocks.
    fn piece_checked(&self, index: u32, ok: bool, guilty: Vec<IpAddr>, involved: Vec<IpAddr>) {
        let mut st = self.lock();
        st.verifying.remove(&index);
        let Some(picker) = st.picker.as_mut() else { return };
        picker.on_piece_verified(index as usize, ok);
        let now_complete = picker.is_complete();
        if ok {
            st.parole.remove(&index);
        } else {
            st.parole.insert(index, None);
        }
        let banned = self.strike(&mut st, guilty, involved);
        let mut newly_complete = false;
        if ok {
            st.counters.fetched_pieces += 1;
            Self::broadcast(&st, PeerCmd::Have(index));
            newly_complete = now_complete && !st.complete;
            st.complete = now_complete;
        } else {
            st.counters.hash_failures += 1;
        }
        drop(st);
        for ip in banned {
            tracing::warn!(%ip, "banning a peer that sent blocks which failed the hash check");
            self.emit(TorrentEvent::PeerBanned(ip));
        }
        self.emit(if ok { TorrentEvent::PieceVerified(index) } else { TorrentEvent::PieceFailed(index) });
        if newly_complete {
            self.emit(TorrentEvent::Complete);
        }
    }

    /// Bookkeeping of bad data: `involved` sent blocks of a piece that just failed, `guilty`
    /// were proven to have sent a wrong block. A peer is banned once it is proven guilty and
    /// took part in `ban_after_failures` failed pieces: repeated failures, and evidence that
    /// they were its fault rather than a neighbour's. Returns the addresses banned now.
    fn strike(&self, st: &mut State, guilty: Vec<IpAddr>, involved: Vec<IpAddr>) -> Vec<IpAddr> {
        for ip in &involved {
            *st.strikes.entry(*ip).or_insert(0) += 1;
        }
        st.proven.extend(guilty);
        let mut banned = Vec::new();
        for ip in st.proven.iter() {
            let failures = st.strikes.get(ip).copied().unwrap_or(0);
            if failures >= self.config.ban_after_failures && !st.banned.contains(ip) {
                banned.push(*ip);
            }
        }
        st.banned.extend(banned.iter().copied());
        for ip in &banned {
            for p in st.peers.values().filter(|p| p.addr.ip() == *ip) {
                let _ = p.tx.send(PeerCmd::Close);
            }
        }
        banned
    }

    /// Bans the peers the metadata fetch proved to have sent bad metadata (and only them).
    pub(crate) fn ban_metadata_liars(&self, st: &mut State) {
        let liars = st.metadata.as_mut().map(|f| f.take_banned()).unwrap_or_default();
        for key in liars {
            if let Some(addr) = st.peers.get(&key).map(|p| p.addr) {
                if st.banned.insert(addr.ip()) {
                    tracing::warn!(ip = %addr.ip(), "banning a peer that sent bad metadata");
                    self.emit(TorrentEvent::PeerBanned(addr.ip()));
                }
                self.send_to(st, key, PeerCmd::Close);
            }
        }
    }

    /// Saves the resume record (which pieces are verified) next to the data.
    pub fn save_resume(&self) {
        let (storage, have, hex, faulted) = {
            let st = self.lock();
            let (Some(storage), Some(picker), Some(meta)) = (&st.storage, &st.picker, &st.meta) else { return };
            (Arc::clone(storage), picker.have().clone(), meta.info_hash.to_hex(), st.fault.is_some())
        };
        // After a disk fault the same disk most likely refuses the record too; that fault is
        // reported already, and without a record a re-run hashes what is there and loses
        // no verified piece, so this is no news worth a warning.
        let level_warn = !faulted;
        if let Err(e) = storage.flush() {
            if level_warn {
                tracing::warn!(error = %e, "could not flush the payload to disk");
            } else {
                tracing::info!(error = %e, "could not flush the payload to disk");
            }
        }
        let flags: Vec<bool> = (0..have.len()).map(|i| have.get(i)).collect();
        let saved = resume::ResumeRecord::capture(&storage, &hex, &flags)
            .and_then(|record| record.save(&resume::resume_path(&self.config.output, &hex)?));
        if let Err(e) = saved {
            if level_warn {
                tracing::warn!(error = %e, "could not save the resume record");
            } else {
                tracing::info!(error = %e, "could not save the resume record");
            }
        }
    }
}

/// Where a torrent's info dictionary is kept under the output directory.
pub fn metadata_path(output: &std::path::Path, info_hash: &InfoHash) -> PathBuf {
    output.join(".kadswarm").join(format!("{}.torrent", info_hash.to_hex()))
}

fn save_metadata(output: &std::path::Path, meta: &Metainfo) -> std::io::Result<()> {
    let path = metadata_path(output, &meta.info_hash);
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, meta.to_bytes())?;
    std::fs::rename(tmp, path)
}
