//! The handle to one running torrent (BEP 3, BEP 9): what the runner, the CLI and the peer
//! tasks hold. Decisions are made by the sans-IO [`TorrentCore`](crate::swarm::session) inside
//! the torrent's own task (`session::driver`); this handle only sends that task messages and
//! reads the snapshot it publishes (progress, counters, peers) — no lock on any data path.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use crate::dht::driver::Command as DhtCommand;
use crate::session::peer_list::SourceCounts;
use crate::storage::{resume, Layout, Storage};
use crate::swarm::bitfield::Bitfield;
use crate::swarm::peer_source::PeerSource;
use crate::swarm::session::{CloseReason, Hello, Input, Refused};
use crate::swarm::{PeerKey, Picker};
use crate::torrent::Metainfo;
use crate::wire::message::{Limits, Message};

pub use crate::swarm::session::{Counters, DiskFault, PeerOrigin, PeerView, TorrentConfig, TorrentEvent};

pub(crate) use crate::clock::now;

/// Messages from peer tasks waiting for the torrent task at most: a peer task whose message
/// does not fit waits, and stops reading its socket meanwhile.
/// At most 128 blocks of at most 128 KiB (the frame limit) wait here: 16 MiB in the worst case,
/// 2 MiB with the 16 KiB blocks every client sends.
pub(crate) const INPUT_QUEUE: usize = 128;
/// Learned addresses waiting for the runner at most; more are dropped until it drains them.
pub(crate) const MAX_OFFERED: usize = 1000;

/// A command from the torrent task to one peer task.
#[derive(Debug)]
pub enum PeerCmd {
    Send(Message),
    Limits(Limits),
    Close(CloseReason),
}

/// What a peer task joining the torrent gets: its key, the frame limits to start with, and
/// the commands the torrent will send it.
pub(crate) type Joined = (PeerKey, Limits, mpsc::UnboundedReceiver<PeerCmd>);

/// What peer tasks send the torrent task.
#[derive(Debug)]
pub(crate) enum FromPeer {
    Join { hello: Hello, reply: oneshot::Sender<Result<Joined, Refused>> },
    Input(Input),
}

/// What the runner and the CLI ask of the torrent task.
#[derive(Debug)]
pub(crate) enum Command {
    Install {
        meta: Box<Metainfo>,
        reply: Option<oneshot::Sender<Result<(), TorrentError>>>,
    },
    SaveResume {
        reply: oneshot::Sender<()>,
    },
    CloseAll,
    /// Publish the peers' views in the snapshot (about once a second), or stop.
    WatchPeers(bool),
}

/// What the torrent task publishes after every change, for whoever reports or dials.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub meta: Option<Arc<Metainfo>>,
    pub progress: Option<(u64, u64)>,
    pub counters: Counters,
    pub complete: bool,
    pub peer_count: usize,
    pub fault: Option<DiskFault>,
    pub banned: Arc<HashSet<IpAddr>>,
    pub connected: Arc<HashSet<SocketAddr>>,
    /// Every connected peer as a user reads it, refreshed about once a second and whenever a
    /// peer comes or goes, while someone asked for it ([`Torrent::watch_peers`]); else empty.
    pub peers: Arc<Vec<PeerView>>,
    #[cfg(test)]
    pub storage: Option<Arc<Storage>>,
}

pub struct Torrent {
    pub config: TorrentConfig,
    pub(crate) peers: mpsc::Sender<FromPeer>,
    commands: mpsc::UnboundedSender<Command>,
    snapshot: watch::Receiver<Snapshot>,
    /// Addresses peer exchange taught the torrent task, until the runner takes them.
    offered: Mutex<mpsc::Receiver<SocketAddr>>,
    peer_sources: watch::Sender<SourceCounts>,
}

#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    #[error("metadata does not describe a usable torrent: {0}")]
    BadMetadata(String),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("the torrent task is gone")]
    Gone,
}

impl Torrent {
    /// Starts the torrent's task (call inside a tokio runtime); it runs until every handle
    /// and peer task is gone.
    pub fn new(
        config: TorrentConfig,
        events: mpsc::UnboundedSender<TorrentEvent>,
        dht: Option<mpsc::UnboundedSender<DhtCommand>>,
    ) -> Arc<Torrent> {
        let (peers, from_peers) = mpsc::channel(INPUT_QUEUE);
        let (commands, from_handle) = mpsc::unbounded_channel();
        let (snapshot_tx, snapshot) = watch::channel(Snapshot::default());
        let (offered_tx, offered) = mpsc::channel(MAX_OFFERED);
        let links = crate::session::driver::Links {
            from_peers,
            from_handle,
            snapshot: snapshot_tx,
            offered: offered_tx,
            events,
            dht,
        };
        tokio::spawn(crate::session::driver::run(config.clone(), links));
        let (peer_sources, _) = watch::channel(SourceCounts::default());
        Arc::new(Torrent { config, peers, commands, snapshot, offered: Mutex::new(offered), peer_sources })
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    pub fn metainfo(&self) -> Option<Arc<Metainfo>> {
        self.snapshot.borrow().meta.clone()
    }

    pub fn is_complete(&self) -> bool {
        self.snapshot.borrow().complete
    }

    pub fn counters(&self) -> Counters {
        self.snapshot.borrow().counters.clone()
    }

    /// (verified bytes, total bytes) once the metadata is known.
    pub fn progress(&self) -> Option<(u64, u64)> {
        self.snapshot.borrow().progress
    }

    pub fn peer_count(&self) -> usize {
        self.snapshot.borrow().peer_count
    }

    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.snapshot.borrow().banned.contains(&ip)
    }

    pub fn is_connected(&self, addr: SocketAddr) -> bool {
        self.snapshot.borrow().connected.contains(&addr)
    }

    /// The disk fault that stopped the torrent, if one did.
    pub fn fault(&self) -> Option<DiskFault> {
        self.snapshot.borrow().fault.clone()
    }

    /// The addresses peer exchange taught us since the last call (at most [`MAX_OFFERED`]
    /// wait; the rest were dropped, so a flood cannot grow memory).
    pub fn take_offered(&self) -> Vec<(PeerSource, SocketAddr)> {
        let mut rx = self.offered.lock().unwrap_or_else(|e| e.into_inner());
        std::iter::from_fn(|| rx.try_recv().ok()).map(|a| (PeerSource::Pex, a)).collect()
    }

    /// How many addresses each source gave, as the runner last published them.
    pub fn peer_sources(&self) -> SourceCounts {
        *self.peer_sources.borrow()
    }

    pub(crate) fn set_peer_sources(&self, counts: SourceCounts) {
        self.peer_sources.send_if_modified(|c| std::mem::replace(c, counts) != counts);
    }

    /// Registers a connected peer; refused when it is banned, we have enough peers, or the
    /// torrent stopped on a disk fault.
    pub(crate) async fn join(&self, hello: Hello) -> Result<Joined, Refused> {
        let (reply, answer) = oneshot::channel();
        self.peers.send(FromPeer::Join { hello, reply }).await.map_err(|_| Refused::Stopped)?;
        answer.await.map_err(|_| Refused::Stopped)?
    }

    /// The connected peers as a user reads them (flags, client, rates, progress), as last
    /// published; empty unless [`Torrent::watch_peers`] turned them on.
    pub fn peer_views(&self) -> Arc<Vec<PeerView>> {
        Arc::clone(&self.snapshot.borrow().peers)
    }

    /// Turns the publishing of [`Torrent::peer_views`] on or off. Off by default: nobody pays
    /// for views nobody reads.
    pub fn watch_peers(&self, on: bool) {
        let _ = self.commands.send(Command::WatchPeers(on));
    }

    /// Tells every peer task to leave.
    pub fn close_all(&self) {
        let _ = self.commands.send(Command::CloseAll);
    }

    /// Installs known metadata (a .torrent, or one assembled from peers): opens the storage
    /// and checks what is already on disk, off the async workers, then hands it to the core.
    pub async fn install_metadata(&self, meta: Metainfo) -> Result<(), TorrentError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Install { meta: Box::new(meta), reply: Some(reply) })
            .map_err(|_| TorrentError::Gone)?;
        answer.await.map_err(|_| TorrentError::Gone)?
    }

    /// Saves the resume record (which pieces are verified) next to the data, on the disk
    /// thread.
    pub async fn save_resume(&self) {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::SaveResume { reply }).is_ok() {
            let _ = answer.await;
        }
    }
}

/// Opens the storage of `meta` below `config.output` and finds which pieces are there
/// (trusting the resume record where it holds). Blocking.
pub(crate) fn open_storage(config: &TorrentConfig, meta: &Metainfo) -> Result<(Arc<Storage>, Bitfield), TorrentError> {
    if meta.info_hash != config.info_hash {
        return Err(TorrentError::BadMetadata("info-hash differs from the one asked for".into()));
    }
    let info = &meta.info;
    // The geometry is checked before anything is created on disk.
    let empty = Bitfield::new(info.piece_count());
    Picker::new(info.piece_count(), info.piece_length as u32, info.total_length, &empty, 0)
        .map_err(|e| TorrentError::BadMetadata(e.to_string()))?;
    let layout = Layout {
        piece_length: info.piece_length,
        total_length: info.total_length,
        files: info.files.iter().map(|f| (f.path.clone(), f.length)).collect(),
        piece_hashes: info.pieces.clone(),
        pad: info.files.iter().map(|f| f.pad).collect(),
    };
    let storage = Storage::open(&config.output, layout)?;
    let hex = meta.info_hash.to_hex();
    let record = if config.keep_records {
        let path = resume::resume_path(&config.output, &hex)?;
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
    // Keep the info dictionary next to the data, so a re-run of a magnet starts at once.
    if config.keep_records {
        let _ = save_metadata(&config.output, meta);
    }
    Ok((Arc::new(storage), have))
}

/// Where a torrent's info dictionary is kept under the output directory.
pub fn metadata_path(output: &std::path::Path, info_hash: &crate::id::InfoHash) -> PathBuf {
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
    crate::storage::durable::write_atomic(&path, &meta.to_bytes())?;
    Ok(())
}
