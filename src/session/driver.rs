//! The torrent task: the one owner of a torrent's [`TorrentCore`]. It feeds the core what peer
//! tasks, the disk thread, the handle and the clock report, carries out the core's actions
//! (messages to peer tasks, blocks to the disk thread, events to the UI), and publishes a
//! snapshot for the runner and the CLI after every change. Peer tasks only frame bytes; the
//! disk thread (`session::disk`) does every blocking payload operation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::dht::driver::Command as DhtCommand;
use crate::session::disk::{self, DiskCmd, DiskTx};
use crate::session::torrent::{now, open_storage, Command, FromPeer, PeerCmd, Snapshot, TorrentError};
use crate::storage::Storage;
use crate::swarm::bitfield::Bitfield;
use crate::swarm::session::{limits, Action, Input, TorrentConfig, TorrentCore, TorrentEvent};
use crate::swarm::PeerKey;
use crate::torrent::Metainfo;

/// How often the peers' views are rebuilt while someone watches them (besides whenever a peer
/// comes or goes): a display refreshes about this often, and the data path is not slowed.
const PEER_VIEWS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Peer messages (or disk results) taken in one go before the actions are carried out:
/// amortises the snapshot and the wake-ups of peer tasks and of the disk thread.
const BATCH: usize = 64;

pub(crate) struct Links {
    pub from_peers: mpsc::Receiver<FromPeer>,
    pub from_handle: mpsc::UnboundedReceiver<Command>,
    pub snapshot: watch::Sender<Snapshot>,
    pub offered: mpsc::Sender<std::net::SocketAddr>,
    pub events: mpsc::UnboundedSender<TorrentEvent>,
    pub dht: Option<mpsc::UnboundedSender<DhtCommand>>,
}

type Installed = (Result<(Arc<Storage>, Bitfield), TorrentError>, Arc<Metainfo>, Option<InstallReply>);
type InstallReply = oneshot::Sender<Result<(), TorrentError>>;

struct Driver {
    config: TorrentConfig,
    core: TorrentCore,
    links: Links,
    peers: HashMap<PeerKey, mpsc::UnboundedSender<PeerCmd>>,
    disk: Option<DiskTx>,
    disk_results: mpsc::UnboundedSender<Input>,
    installed: mpsc::UnboundedSender<Installed>,
    /// Replies to send once the core has taken the metadata in and the snapshot shows it.
    install_replies: Vec<InstallReply>,
    roster: Option<u64>,
    /// When the peers' views are next rebuilt; `None` while nobody watches them.
    views_due: Option<std::time::Instant>,
}

pub(crate) async fn run(config: TorrentConfig, links: Links) {
    let (disk_results, mut from_disk) = mpsc::unbounded_channel();
    let (installed, mut installs) = mpsc::unbounded_channel();
    let mut d = Driver {
        core: TorrentCore::new(config.clone(), rand::random()),
        config,
        links,
        peers: HashMap::new(),
        disk: None,
        disk_results,
        installed,
        install_replies: Vec::new(),
        roster: None,
        views_due: None,
    };
    let mut inputs = Vec::with_capacity(BATCH);
    let mut results = Vec::with_capacity(BATCH);
    loop {
        let deadline = d.core.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            n = from_disk.recv_many(&mut results, BATCH) => {
                let t = now();
                for input in results.drain(..n) {
                    d.core.handle(t, input);
                }
            }
            n = d.links.from_peers.recv_many(&mut inputs, BATCH) => {
                if n == 0 {
                    break;
                }
                let t = now();
                for msg in inputs.drain(..) {
                    d.on_peer(t, msg);
                }
            }
            cmd = d.links.from_handle.recv() => match cmd {
                Some(cmd) => d.command(cmd),
                None => break,
            },
            Some(done) = installs.recv() => d.installed(done),
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                d.core.handle_timeout(now());
            }
        }
        d.publish();
        d.carry_out().await;
    }
    d.core.close_all();
    d.carry_out().await;
}

impl Driver {
    fn on_peer(&mut self, t: std::time::Instant, msg: FromPeer) {
        match msg {
            FromPeer::Input(input) => {
                if let Input::PeerGone { key } = &input {
                    self.peers.remove(key);
                }
                self.core.handle(t, input);
            }
            FromPeer::Join { hello, reply } => {
                let joined = self.core.connect(t, hello).map(|key| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    self.peers.insert(key, tx);
                    let limits = limits::frame_limits(self.core.metainfo().map(|m| m.info.piece_count()));
                    (key, limits, rx)
                });
                if let Ok((key, _, _)) = &joined {
                    tracing::trace!(?key, "peer joined");
                }
                if let Err(Ok((key, _, _))) = reply.send(joined) {
                    // The task gave up waiting: it is gone.
                    self.peers.remove(&key);
                    self.core.handle(t, Input::PeerGone { key });
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Install { meta, reply } => self.install(Arc::new(*meta), reply),
            Command::SaveResume { reply } => {
                let (Some(disk), Some(have)) = (self.disk.clone(), self.core.have()) else {
                    let _ = reply.send(());
                    return;
                };
                let have: Vec<bool> = (0..have.len()).map(|i| have.get(i)).collect();
                let faulted = self.core.fault().is_some();
                // Awaited by the caller, not here: the task goes on while the disk saves.
                tokio::spawn(async move {
                    let _ = disk.send(DiskCmd::SaveResume { have, faulted, reply }).await;
                });
            }
            Command::CloseAll => self.core.close_all(),
            Command::WatchPeers(on) => {
                self.views_due = on.then(now);
                if !on {
                    self.links.snapshot.send_modify(|s| s.peers = Arc::default());
                }
            }
        }
    }

    /// Opens the storage off the async workers; the result comes back to [`Self::installed`].
    fn install(&mut self, meta: Arc<Metainfo>, reply: Option<InstallReply>) {
        if self.core.metainfo().is_some() {
            if let Some(r) = reply {
                let _ = r.send(Ok(()));
            }
            return;
        }
        let config = self.config.clone();
        let done = self.installed.clone();
        tokio::task::spawn_blocking(move || {
            let opened = open_storage(&config, &meta);
            let _ = done.send((opened, meta, reply));
        });
    }

    fn installed(&mut self, (opened, meta, reply): Installed) {
        let fetched = reply.is_none();
        match opened {
            Ok((storage, have)) if self.core.metainfo().is_none() => {
                let hex = meta.info_hash.to_hex();
                match disk::start(Arc::clone(&storage), self.config.output.clone(), hex, self.disk_results.clone()) {
                    Ok(tx) => self.disk = Some(tx),
                    Err(e) => {
                        self.fail_install(
                            reply,
                            TorrentError::Storage(crate::storage::StorageError::Io {
                                op: "start disk thread",
                                path: self.config.output.clone(),
                                source: e,
                            }),
                        );
                        return;
                    }
                }
                #[cfg(test)]
                self.links.snapshot.send_modify(|s| s.storage = Some(Arc::clone(&storage)));
                self.core.handle(now(), Input::MetadataInstalled { meta, have });
                self.install_replies.extend(reply);
            }
            Ok(_) => {
                if let Some(r) = reply {
                    let _ = r.send(Ok(()));
                }
            }
            Err(TorrentError::BadMetadata(reason)) if fetched => {
                tracing::error!(%reason, "the metadata hashes right but is not a usable torrent");
                let _ = self.links.events.send(TorrentEvent::MetadataUnusable(reason));
                self.core.handle(now(), Input::InstallFailed);
            }
            Err(e) => self.fail_install(reply, e),
        }
    }

    fn fail_install(&mut self, reply: Option<InstallReply>, e: TorrentError) {
        match reply {
            Some(r) => {
                let _ = r.send(Err(e));
            }
            None => tracing::error!(error = %e, "cannot use the metadata"),
        }
        self.core.handle(now(), Input::InstallFailed);
    }

    /// Parses metadata fetched from peers; one that hashes right but does not parse can never
    /// be bettered (the hash pins these bytes), so the torrent reports it as unusable.
    fn fetched(&mut self, info_bytes: Vec<u8>) {
        match Metainfo::from_info_bytes(info_bytes) {
            Ok(meta) => self.install(Arc::new(meta), None),
            Err(e) => {
                tracing::error!(error = %e, "the metadata hashes right but does not parse");
                let _ = self.links.events.send(TorrentEvent::MetadataUnusable(e.to_string()));
                self.core.handle(now(), Input::InstallFailed);
            }
        }
    }

    /// Publishes what the UI and the runner read; the address sets only when they changed.
    fn publish(&mut self) {
        let core = &self.core;
        let roster = core.roster_version();
        let rebuild = self.roster != Some(roster);
        self.roster = Some(roster);
        let t = now();
        let views = match self.views_due {
            Some(due) if rebuild || t >= due => {
                self.views_due = Some(t + PEER_VIEWS_EVERY);
                Some(Arc::new(core.peer_views(t)))
            }
            _ => None,
        };
        self.links.snapshot.send_modify(|s| {
            if s.meta.is_none() {
                s.meta = core.metainfo().cloned();
            }
            s.progress = core.progress();
            s.counters = core.counters().clone();
            s.complete = core.is_complete();
            s.peer_count = core.peer_count();
            if s.fault.is_none() {
                s.fault = core.fault().cloned();
            }
            if rebuild {
                s.banned = Arc::new(core.banned().clone());
                s.connected = Arc::new(core.connected().collect::<HashSet<_>>());
            }
            if let Some(v) = views {
                s.peers = v;
            }
        });
        for r in self.install_replies.drain(..) {
            let _ = r.send(Ok(()));
        }
    }

    /// Carries out the core's actions in order. Only the disk queue can make this wait.
    async fn carry_out(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Send { key, msg } => self.tell_peer(key, PeerCmd::Send(msg)),
                Action::Limits { key, limits } => self.tell_peer(key, PeerCmd::Limits(limits)),
                Action::Close { key, reason } => {
                    self.tell_peer(key, PeerCmd::Close(reason));
                    self.peers.remove(&key);
                }
                Action::Disk(op) => self.queue_disk(DiskCmd::Op(op)).await,
                Action::Install { info_bytes } => self.fetched(info_bytes),
                Action::DhtPing { addr } => {
                    if let Some(dht) = &self.links.dht {
                        let _ = dht.send(DhtCommand::Ping { addr });
                    }
                }
                Action::Learned { addrs } => {
                    for a in addrs {
                        // Full: the runner has not drained the last ones; these are dropped.
                        let _ = self.links.offered.try_send(a);
                    }
                }
                Action::Event(ev) => {
                    let _ = self.links.events.send(ev);
                }
            }
        }
    }

    fn tell_peer(&self, key: PeerKey, cmd: PeerCmd) {
        if let Some(tx) = self.peers.get(&key) {
            let _ = tx.send(cmd);
        }
    }

    async fn queue_disk(&mut self, cmd: DiskCmd) {
        if let Some(disk) = &self.disk {
            if disk.send(cmd).await.is_err() {
                tracing::error!("the disk thread is gone");
                self.disk = None;
            }
        }
    }
}
