//! Runs one torrent: accepts incoming peers on the TCP port and over uTP (BEP 29), dials peers
//! found through the DHT (get_peers, BEP 5), `--peer` and magnet `x.pe` hints over the
//! transports `--transport` allows, ticks the choker, announces us, and keeps the resume
//! record fresh. Everything here is plumbing between sockets, timers
//! and the torrent's state; the decisions live in the sans-IO cores.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::dht::driver::Command as DhtCommand;
use crate::dht::node::Event as DhtEvent;
use crate::id::InfoHash;
use crate::session::peer::{self, PeerTaskError};
use crate::session::torrent::{now, Torrent};
use crate::session::transport::{Kind, PeerStream, Transports};
use crate::wire::handshake::Handshake;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer address is not dialled again sooner than this after a failed or ended connection.
const REDIAL_AFTER: Duration = Duration::from_secs(30);
/// Peer addresses remembered at most, so a flood of get_peers answers stays bounded.
const MAX_CANDIDATES: usize = 2000;
const ANNOUNCE_EVERY: Duration = Duration::from_secs(15 * 60);
const RESUME_SAVE_EVERY: Duration = Duration::from_secs(10);

/// The DHT as the runner sees it: where to send commands and where its events arrive.
pub struct DhtLink {
    pub commands: mpsc::UnboundedSender<DhtCommand>,
    pub events: mpsc::UnboundedReceiver<DhtEvent>,
}

pub struct RunOptions {
    /// Peers to dial at once (`--peer`, magnet `x.pe`).
    pub peers: Vec<SocketAddr>,
    /// The TCP port we tell the DHT we listen on.
    pub announce_port: u16,
    /// Keep the resume record in the output directory.
    pub save_resume: bool,
    /// TCP and/or uTP, for dialling and accepting.
    pub transports: Arc<Transports>,
    /// Peers found by local service discovery (BEP 14), unless `--no-lsd`.
    pub lsd: Option<mpsc::Receiver<(InfoHash, SocketAddr)>>,
}

/// Candidate peers and when each was last dialled.
#[derive(Default)]
struct Dialer {
    queue: VecDeque<SocketAddr>,
    queued: HashSet<SocketAddr>,
    last_dial: HashMap<SocketAddr, Instant>,
}

impl Dialer {
    fn offer(&mut self, addr: SocketAddr) {
        if addr.port() == 0 || self.queued.len() >= MAX_CANDIDATES || !self.queued.insert(addr) {
            return;
        }
        self.queue.push_back(addr);
    }

    /// The next address worth dialling now, rotating through the candidates.
    fn next(&mut self, t: Instant, torrent: &Torrent) -> Option<SocketAddr> {
        for _ in 0..self.queue.len() {
            let addr = self.queue.pop_front()?;
            self.queue.push_back(addr);
            let recent = self.last_dial.get(&addr).is_some_and(|at| t.saturating_duration_since(*at) < REDIAL_AFTER);
            if recent || torrent.is_banned(addr.ip()) || torrent.is_connected(addr) {
                continue;
            }
            self.last_dial.insert(addr, t);
            return Some(addr);
        }
        None
    }
}

/// Runs until `stop` turns true. Returns when every task it started has been told to stop.
pub async fn run(
    torrent: Arc<Torrent>,
    listener: TcpListener,
    mut dht: Option<DhtLink>,
    options: RunOptions,
    mut stop: watch::Receiver<bool>,
) {
    let mut dialer = Dialer::default();
    for p in &options.peers {
        dialer.offer(*p);
    }
    let info_hash = torrent.config.info_hash;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_lookup = now();
    let mut next_announce = now();
    let mut last_resume_save = now();
    let mut saved_pieces = u64::MAX;
    let transports = Arc::clone(&options.transports);
    let utp_acceptor = transports.utp.clone().filter(|_| transports.accepts(Kind::Utp));
    let mut lsd = options.lsd;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) if transports.accepts(Kind::Tcp) => {
                    let _ = stream.set_nodelay(true);
                    accept(Arc::clone(&torrent), stream, addr, Kind::Tcp, Arc::clone(&transports));
                }
                // --transport utp: the connection is closed at once, so the peer tries uTP.
                Ok((_, addr)) => tracing::debug!(%addr, "refused an incoming TCP connection (uTP only)"),
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            },
            accepted = async {
                match &utp_acceptor {
                    Some(utp) => utp.accept().await,
                    None => std::future::pending().await,
                }
            } => match accepted {
                Ok((stream, addr)) => accept(Arc::clone(&torrent), stream, addr, Kind::Utp, Arc::clone(&transports)),
                Err(e) => tracing::debug!(error = %e, "uTP accept failed"),
            },
            ev = async {
                match dht.as_mut() {
                    Some(d) => d.events.recv().await,
                    None => std::future::pending().await,
                }
            } => match ev {
                Some(DhtEvent::Peers { info_hash: ih, peers, .. }) if ih == info_hash => {
                    for p in peers {
                        dialer.offer(p);
                    }
                }
                Some(_) => {}
                None => dht = None,
            },
            found = async {
                match lsd.as_mut() {
                    Some(l) => l.recv().await,
                    None => std::future::pending().await,
                }
            } => match found {
                Some((ih, addr)) if ih == info_hash => dialer.offer(addr),
                Some(_) => {}
                None => lsd = None,
            },
            _ = tick.tick() => {
                let t = now();
                torrent.choke_round();
                for (_source, addr) in torrent.take_offered() {
                    dialer.offer(addr);
                }
                while torrent.peer_count() < torrent.config.max_peers {
                    let Some(addr) = dialer.next(t, &torrent) else { break };
                    dial(Arc::clone(&torrent), addr, Arc::clone(&transports));
                }
                if let Some(d) = &dht {
                    if t >= next_lookup {
                        // Look again soon while the swarm is thin, rarely once it is not.
                        let pause = match torrent.peer_count() {
                            0 => 5,
                            1..8 => 20,
                            _ => 300,
                        };
                        next_lookup = t + Duration::from_secs(pause);
                        let _ = d.commands.send(DhtCommand::GetPeers { info_hash, reply: None });
                    }
                    if t >= next_announce && torrent.metainfo().is_some() {
                        next_announce = t + ANNOUNCE_EVERY;
                        let seed = torrent.is_complete();
                        let port = Some(options.announce_port);
                        let _ = d.commands.send(DhtCommand::Announce { info_hash, port, seed, reply: None });
                    }
                }
                let fetched = torrent.counters().fetched_pieces;
                if options.save_resume && fetched != saved_pieces && t.saturating_duration_since(last_resume_save) >= RESUME_SAVE_EVERY {
                    last_resume_save = t;
                    saved_pieces = fetched;
                    let tor = Arc::clone(&torrent);
                    let _ = tokio::task::spawn_blocking(move || tor.save_resume()).await;
                }
            }
        }
    }
    torrent.close_all();
    if options.save_resume {
        let tor = Arc::clone(&torrent);
        let _ = tokio::task::spawn_blocking(move || tor.save_resume()).await;
    }
}

fn accept<S>(torrent: Arc<Torrent>, mut stream: S, addr: SocketAddr, kind: Kind, transports: Arc<Transports>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if torrent.is_banned(addr.ip()) {
        return;
    }
    tokio::spawn(async move {
        let theirs = match tokio::time::timeout(CONNECT_TIMEOUT, peer::read_handshake(&mut stream)).await {
            Ok(Ok(h)) => h,
            _ => return,
        };
        match peer::handshake(&mut stream, &torrent, Some(theirs)).await {
            Ok(theirs) => {
                tracing::debug!(%addr, transport = ?kind, "incoming peer");
                transports.established(None, kind);
                let _ = peer::run(stream, addr, theirs, torrent).await;
            }
            Err(e) => tracing::debug!(%addr, error = %e, "incoming handshake failed"),
        }
    });
}

/// What became of one attempt to reach a peer over one transport.
enum Attempt {
    /// Connected and handshaken; the peer ran until it ended.
    Ran,
    /// The transport did not get us through (refused, timed out, reset): try the next one.
    Failed,
    /// The peer is there but not for us (another swarm, ourselves): stop.
    Unwanted,
}

/// Dials `addr` over the transports allowed; if the stream that connected breaks during the
/// handshake, the other transport gets one try.
fn dial(torrent: Arc<Torrent>, addr: SocketAddr, transports: Arc<Transports>) {
    tokio::spawn(async move {
        let order = transports.dial_order(addr);
        let Some((kind, stream)) = transports.connect(&order, addr).await else {
            tracing::debug!(%addr, "could not connect");
            return;
        };
        if let Attempt::Failed = handshake_over(stream, addr, kind, &torrent, &transports).await {
            let Some(&other) = order.iter().find(|k| **k != kind) else { return };
            if let Ok(stream) = transports.connect_over(other, addr).await {
                handshake_over(stream, addr, other, &torrent, &transports).await;
            }
        }
    });
}

async fn handshake_over(
    stream: PeerStream,
    addr: SocketAddr,
    kind: Kind,
    torrent: &Arc<Torrent>,
    transports: &Transports,
) -> Attempt {
    match stream {
        PeerStream::Tcp(s) => handshake_and_run(s, addr, kind, torrent, transports).await,
        PeerStream::Utp(s) => handshake_and_run(s, addr, kind, torrent, transports).await,
    }
}

async fn handshake_and_run<S>(
    mut stream: S,
    addr: SocketAddr,
    kind: Kind,
    torrent: &Arc<Torrent>,
    transports: &Transports,
) -> Attempt
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let theirs: Handshake = match peer::handshake(&mut stream, torrent, None).await {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(%addr, transport = ?kind, error = %e, "handshake failed");
            // A stream that broke or went silent may work over the other transport; a peer
            // that answered for another swarm will not.
            return match e {
                PeerTaskError::Io(_) => Attempt::Failed,
                _ => Attempt::Unwanted,
            };
        }
    };
    tracing::debug!(%addr, transport = ?kind, "connected to peer");
    transports.established(Some(addr), kind);
    let _ = peer::run(stream, addr, theirs, Arc::clone(torrent)).await;
    Attempt::Ran
}
