//! Runs one torrent: accepts incoming peers on the TCP port and over uTP (BEP 29), dials peers
//! from the torrent's [`PeerList`] (fed by the DHT's get_peers (BEP 5), peer exchange, local
//! service discovery (BEP 14), `--peer`, magnet `x.pe` hints and incoming connections) over
//! the transports `--transport` allows, ticks the choker, announces us, and keeps the resume
//! record fresh. Everything here is plumbing between sockets, timers and the torrent's task;
//! the decisions live in the sans-IO cores (the choker's rounds in the torrent core).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::dht::driver::Command as DhtCommand;
use crate::dht::node::Event as DhtEvent;
use crate::id::InfoHash;
use crate::session::peer::{self, PeerOrigin, PeerTaskError};
use crate::session::peer_list::PeerList;
use crate::session::torrent::{now, Torrent};
use crate::session::transport::{Kind, PeerStream, Transports};
use crate::swarm::peer_source::{PeerSource, PeerSources};
use crate::wire::handshake::Handshake;
use accept_gate::{AcceptGate, Permit};

mod accept_gate;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Dials under way at most: each holds a socket for up to the connect and handshake timeouts,
/// and a list full of dead addresses must not open hundreds at once.
const MAX_HALF_OPEN: usize = 16;
/// Incoming connections waiting for the peer's handshake at most, in total and per IP: each
/// holds a file descriptor and a task for up to CONNECT_TIMEOUT.
const MAX_HANDSHAKING: usize = 64;
const MAX_HANDSHAKING_PER_IP: usize = 4;
/// How long accepting pauses after it failed. The errors that repeat are a shortage (EMFILE,
/// ENFILE, ENOBUFS, ENOMEM) that accepting again at once cannot cure: the connection stays in
/// the kernel's queue and the loop would spin at full CPU until a descriptor is freed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
const ANNOUNCE_EVERY: Duration = Duration::from_secs(15 * 60);
/// The first announces are repeated soon: the first goes out while the routing table may still
/// be filling, and a lookup that timed out on slow contacts stores us nowhere, which would
/// leave the swarm invisible for `ANNOUNCE_EVERY`. Pauses after the first and second announce.
const EARLY_ANNOUNCES: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(60)];
const RESUME_SAVE_EVERY: Duration = Duration::from_secs(10);

/// The DHT as the runner sees it: where to send commands and where its events arrive.
pub struct DhtLink {
    pub commands: mpsc::UnboundedSender<DhtCommand>,
    pub events: mpsc::UnboundedReceiver<DhtEvent>,
}

pub struct RunOptions {
    /// Peers the user named (`--peer`): dialled first, never given up on.
    pub manual: Vec<SocketAddr>,
    /// The magnet link's `x.pe` hints.
    pub magnet_hints: Vec<SocketAddr>,
    /// The TCP port we tell the DHT we listen on.
    pub announce_port: u16,
    /// Keep the resume record in the output directory.
    pub save_resume: bool,
    /// TCP and/or uTP, for dialling and accepting.
    pub transports: Arc<Transports>,
    /// Peers found by local service discovery (BEP 14), unless `--no-lsd`.
    pub lsd: Option<mpsc::Receiver<(InfoHash, SocketAddr)>>,
}

/// What a connection task tells the runner about its address, so the peer list learns what
/// became of each dial and when a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// Our dial got through the handshake.
    Connected,
    /// Our dial did not get through.
    Failed,
    /// The peer answered for another swarm, or was ourselves.
    Unwanted,
    /// A peer connected to us and got through the handshake; `dialable` when its address is
    /// where it listens (uTP), not an ephemeral port (TCP).
    Incoming { dialable: bool },
    /// A connection that got through the handshake ended.
    Ended,
}

type Reports = mpsc::UnboundedSender<(SocketAddr, Report)>;

/// Tells the runner an incoming peer is here, and when dropped (the connection over, however
/// it ended) that it left.
struct IncomingReport {
    reports: Reports,
    addr: SocketAddr,
}

impl IncomingReport {
    fn start(reports: &Reports, addr: SocketAddr, kind: Kind) -> IncomingReport {
        let _ = reports.send((addr, Report::Incoming { dialable: kind == Kind::Utp }));
        IncomingReport { reports: reports.clone(), addr }
    }
}

impl Drop for IncomingReport {
    fn drop(&mut self) {
        let _ = self.reports.send((self.addr, Report::Ended));
    }
}

fn apply(list: &mut PeerList, addr: SocketAddr, report: Report, t: Instant) {
    match report {
        Report::Connected => list.on_connected(addr),
        Report::Failed => list.on_failed(addr, t),
        Report::Unwanted => list.on_unwanted(addr, t),
        Report::Incoming { dialable } => list.add_incoming(addr, t, dialable),
        Report::Ended => list.on_disconnected(addr, t),
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
    let own: Vec<SocketAddr> = listener.local_addr().into_iter().collect();
    let mut list = PeerList::new(own);
    for p in &options.manual {
        list.add(PeerSource::Manual, *p, now());
    }
    for p in &options.magnet_hints {
        list.add(PeerSource::Magnet, *p, now());
    }
    let (reports, mut reported) = mpsc::unbounded_channel();
    let info_hash = torrent.config.info_hash;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_lookup = now();
    let mut next_announce = now();
    let mut announces = 0usize;
    let mut last_resume_save = now();
    let mut saved_pieces = u64::MAX;
    let transports = Arc::clone(&options.transports);
    let utp_acceptor = transports.utp.clone().filter(|_| transports.accepts(Kind::Utp));
    let mut lsd = options.lsd;
    let gate = AcceptGate::new(MAX_HANDSHAKING, MAX_HANDSHAKING_PER_IP);
    let mut accept_after: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    break;
                }
            }
            accepted = async {
                // A deadline, not a sleep per iteration: the other branches must not keep
                // pushing the pause back.
                if let Some(at) = accept_after {
                    tokio::time::sleep_until(at).await;
                }
                listener.accept().await
            } => match accepted {
                Ok((stream, addr)) if transports.accepts(Kind::Tcp) => {
                    accept_after = None;
                    let Some(permit) = gate.try_enter(addr.ip()) else {
                        tracing::debug!(%addr, in_handshake = gate.in_handshake(), "too many connections in handshake: closed");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let transports = Arc::clone(&transports);
                    let found = list.sources(addr);
                    accept(Arc::clone(&torrent), stream, addr, (Kind::Tcp, found), transports, reports.clone(), permit);
                }
                // --transport utp: the connection is closed at once, so the peer tries uTP.
                Ok((_, addr)) => tracing::debug!(%addr, "refused an incoming TCP connection (uTP only)"),
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    accept_after = Some(tokio::time::Instant::now() + ACCEPT_PAUSE);
                }
            },
            accepted = async {
                match &utp_acceptor {
                    Some(utp) => utp.accept().await,
                    None => std::future::pending().await,
                }
            } => match accepted {
                Ok((stream, addr)) => match gate.try_enter(addr.ip()) {
                    Some(permit) => {
                        let transports = Arc::clone(&transports);
                        let found = list.sources(addr);
                        accept(Arc::clone(&torrent), stream, addr, (Kind::Utp, found), transports, reports.clone(), permit)
                    }
                    None => tracing::debug!(%addr, "too many connections in handshake: uTP closed"),
                },
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
                        list.add(PeerSource::Dht, p, now());
                    }
                }
                Some(_) => {}
                None => dht = None,
            },
            Some((addr, report)) = reported.recv() => apply(&mut list, addr, report, now()),
            found = async {
                match lsd.as_mut() {
                    Some(l) => l.recv().await,
                    None => std::future::pending().await,
                }
            } => match found {
                Some((ih, addr)) if ih == info_hash => {
                    list.add(PeerSource::Lsd, addr, now());
                }
                Some(_) => {}
                None => lsd = None,
            },
            _ = tick.tick() => {
                let t = now();
                for (source, addr) in torrent.take_offered() {
                    list.add(source, addr, t);
                }
                // Dials under way count against the peer limit: most of them connect.
                let max = torrent.config.max_peers;
                while torrent.peer_count() + list.dialling() < max && list.dialling() < MAX_HALF_OPEN {
                    let usable = |a: SocketAddr| !torrent.is_banned(a.ip()) && !torrent.is_connected(a);
                    let Some(addr) = list.next(t, usable) else { break };
                    let found = list.sources(addr);
                    dial(Arc::clone(&torrent), addr, found, Arc::clone(&transports), reports.clone());
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
                        next_announce = t + EARLY_ANNOUNCES.get(announces).copied().unwrap_or(ANNOUNCE_EVERY);
                        announces += 1;
                        let seed = torrent.is_complete();
                        let port = Some(options.announce_port);
                        let _ = d.commands.send(DhtCommand::Announce { info_hash, port, seed, reply: None });
                    }
                }
                let fetched = torrent.counters().fetched_pieces;
                if options.save_resume && fetched != saved_pieces && t.saturating_duration_since(last_resume_save) >= RESUME_SAVE_EVERY {
                    last_resume_save = t;
                    saved_pieces = fetched;
                    torrent.save_resume().await;
                }
            }
        }
        // After every change, so that what `get` reports (its done event comes the moment the
        // last piece passes) is never a tick behind.
        torrent.set_peer_sources(list.source_counts());
    }
    torrent.close_all();
    if options.save_resume {
        torrent.save_resume().await;
    }
}

/// `how`: the transport, and the sources that had given `addr` (for the peer's flags; the
/// port of an incoming TCP connection is an ephemeral one, so those usually have none).
fn accept<S>(
    torrent: Arc<Torrent>,
    mut stream: S,
    addr: SocketAddr,
    (kind, found): (Kind, PeerSources),
    transports: Arc<Transports>,
    reports: Reports,
    permit: Permit,
) where
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
        let handshake = peer::handshake(&mut stream, &torrent, Some(theirs)).await;
        // Past the handshake the peer counts against the torrent's peer limit instead.
        drop(permit);
        match handshake {
            Ok(theirs) => {
                let _ended = IncomingReport::start(&reports, addr, kind);
                tracing::debug!(%addr, transport = ?kind, "incoming peer");
                transports.established(None, kind);
                let origin = PeerOrigin { outgoing: false, utp: kind == Kind::Utp, found };
                let _ = peer::run(stream, addr, theirs, torrent, origin).await;
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
/// handshake, the other transport gets one try. What became of it goes back to the runner.
fn dial(torrent: Arc<Torrent>, addr: SocketAddr, found: PeerSources, transports: Arc<Transports>, reports: Reports) {
    tokio::spawn(async move {
        let attempt = dial_and_run(&torrent, (addr, found), &transports, &reports).await;
        let report = match attempt {
            Attempt::Ran => Report::Ended,
            Attempt::Failed => Report::Failed,
            Attempt::Unwanted => Report::Unwanted,
        };
        let _ = reports.send((addr, report));
    });
}

async fn dial_and_run(
    torrent: &Arc<Torrent>,
    (addr, found): (SocketAddr, PeerSources),
    transports: &Transports,
    reports: &Reports,
) -> Attempt {
    let order = transports.dial_order(addr);
    let Some((kind, stream)) = transports.connect(&order, addr).await else {
        tracing::debug!(%addr, "could not connect");
        return Attempt::Failed;
    };
    let attempt = handshake_over(stream, addr, (kind, found), torrent, transports, reports).await;
    if let Attempt::Failed = attempt {
        let Some(&other) = order.iter().find(|k| **k != kind) else { return attempt };
        if let Ok(stream) = transports.connect_over(other, addr).await {
            return handshake_over(stream, addr, (other, found), torrent, transports, reports).await;
        }
    }
    attempt
}

async fn handshake_over(
    stream: PeerStream,
    addr: SocketAddr,
    kind: (Kind, PeerSources),
    torrent: &Arc<Torrent>,
    transports: &Transports,
    reports: &Reports,
) -> Attempt {
    match stream {
        PeerStream::Tcp(s) => handshake_and_run(s, addr, kind, torrent, transports, reports).await,
        PeerStream::Utp(s) => handshake_and_run(s, addr, kind, torrent, transports, reports).await,
    }
}

async fn handshake_and_run<S>(
    mut stream: S,
    addr: SocketAddr,
    (kind, found): (Kind, PeerSources),
    torrent: &Arc<Torrent>,
    transports: &Transports,
    reports: &Reports,
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
    let _ = reports.send((addr, Report::Connected));
    tracing::debug!(%addr, transport = ?kind, "connected to peer");
    transports.established(Some(addr), kind);
    let origin = PeerOrigin { outgoing: true, utp: kind == Kind::Utp, found };
    let _ = peer::run(stream, addr, theirs, Arc::clone(torrent), origin).await;
    Attempt::Ran
}
