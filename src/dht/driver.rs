//! The tokio driver of the DHT core: owns the UDP socket and the clock, feeds datagrams and
//! deadlines into [`Node`], sends what it returns, and persists the routing table. This is the
//! only DHT code that awaits or reads the time. It is also the socket's reader for uTP, which
//! shares the port: uTP datagrams go to the [`UtpSocket`] given in the options.
//!
//! A dual-stack node (BEP 32) has a second socket, of the other address family: the driver
//! reads both in the one task that owns the node, and sends each datagram out of the socket
//! of its destination's family. uTP stays on the first socket only (the session's transports
//! know one `UtpSocket`); the second carries KRPC alone.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::clock::now;
use crate::dht::compact::CompactNode;
use crate::dht::lookup::LookupId;
use crate::dht::node::{Event, Node};
use crate::dht::persist::State;
use crate::dht::pool_file::PoolSaver;
use crate::dht::stats::Stats;
use crate::id::{Id, InfoHash};
use crate::net::limiter::LimiterStats;
use crate::net::socket::{classify, Demux};
use crate::utp::UtpSocket;

/// Datagrams read in one go before timers and commands get a turn.
const RECV_BATCH: usize = 256;

/// What the rest of the program asks of the DHT.
#[derive(Debug)]
pub enum Command {
    FindNode {
        target: Id,
        reply: Option<oneshot::Sender<LookupId>>,
    },
    GetPeers {
        info_hash: InfoHash,
        reply: Option<oneshot::Sender<LookupId>>,
    },
    Announce {
        info_hash: InfoHash,
        port: Option<u16>,
        seed: bool,
        reply: Option<oneshot::Sender<LookupId>>,
    },
    /// A peer told us its DHT port (BEP 5 `port` message).
    Ping {
        addr: SocketAddr,
    },
}

/// Code that runs in the driver's task with the node in hand (the crawler of `kadswarm
/// crawl`): it sees every event before it is forwarded, acts on the node after every batch of
/// input and at its deadline, and so never needs a lock or a channel to reach the node.
pub trait NodeApp: Send {
    fn on_event(&mut self, now: Instant, event: &Event);
    fn step(&mut self, now: Instant, node: &mut Node);
    fn next_deadline(&self) -> Instant;
}

/// A copy of the node's numbers for the metrics endpoint, refreshed every second.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub stats: Stats,
    pub routing_nodes: usize,
    pub buckets: usize,
    pub info_hashes: usize,
    pub stored_peers: usize,
    pub running_lookups: usize,
    pub uptime: Duration,
    pub unknown_datagrams: u64,
    /// Routing-table members per client code of their `v` string.
    pub clients: std::collections::BTreeMap<String, usize>,
    /// The per-source rate limiter: its counters, the sources it tracks and blocks now, and
    /// the bytes of its table.
    pub limiter: LimiterStats,
    pub limiter_tracked: usize,
    pub limiter_blocked: usize,
    pub limiter_bytes: usize,
    /// Nodes in the bootstrap pool (0 in the normal role).
    pub pool_nodes: usize,
    /// What the bootstrap role did (all zero in the normal role).
    pub bootstrap: crate::dht::node::BootstrapStats,
}

pub struct DriverOptions {
    pub state_path: Option<PathBuf>,
    /// The table is saved at most this often, and only when its good nodes changed.
    pub save_interval: Duration,
    pub snapshot: Option<Arc<Mutex<Snapshot>>>,
    /// uTP on the same socket: its datagrams are handed over as they arrive (BEP 29 shares
    /// the DHT's port). Without it they are counted as unknown.
    pub utp: Option<UtpSocket>,
    /// The socket of the other address family on a dual-stack node (the node's
    /// `Config::dual_stack`); KRPC only.
    pub second_socket: Option<Arc<UdpSocket>>,
    /// Runs beside the node in this task; see [`NodeApp`].
    pub app: Option<Box<dyn NodeApp>>,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            state_path: None,
            save_interval: Duration::from_secs(180),
            snapshot: None,
            utp: None,
            second_socket: None,
            app: None,
        }
    }
}

/// Which socket a datagram came in on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    First,
    Second,
}

/// Receives on `socket`, or never when there is none (a select! branch that stays idle).
async fn recv_on(socket: Option<Arc<UdpSocket>>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

pub struct Driver {
    node: Node,
    socket: Arc<UdpSocket>,
    /// Whether the first socket is IPv6: datagrams to the other family use the second.
    first_v6: bool,
    options: DriverOptions,
    last_saved: Vec<CompactNode>,
    started: Instant,
    unknown_datagrams: u64,
    /// uTP datagrams were handed over since the last end of a batch.
    utp_pending: bool,
    /// The bootstrap role's pool, saved beside the state file.
    pool_saver: PoolSaver,
}

impl Driver {
    pub fn new(node: Node, socket: Arc<UdpSocket>, options: DriverOptions) -> Self {
        let first_v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        Driver {
            node,
            socket,
            first_v6,
            options,
            last_saved: Vec::new(),
            started: now(),
            unknown_datagrams: 0,
            utp_pending: false,
            pool_saver: PoolSaver::default(),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Runs until `shutdown` completes, then saves the state and hands the node back.
    /// Events go to `events`; a closed command channel is fine (the node keeps serving).
    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<Event>,
        shutdown: impl Future<Output = ()>,
    ) -> Node {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 65_536];
        let mut buf2 = vec![0u8; if self.options.second_socket.is_some() { 65_536 } else { 0 }];
        let mut commands_open = true;
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_save = now();
        loop {
            self.flush(&events).await;
            if let Some(app) = &mut self.options.app {
                app.step(now(), &mut self.node);
                self.flush(&events).await;
            }
            let mut next = self.node.next_deadline();
            if let Some(app) = &self.options.app {
                next = next.min(app.next_deadline());
            }
            let deadline = tokio::time::Instant::from_std(next);
            let second = self.options.second_socket.clone();
            tokio::select! {
                _ = &mut shutdown => break,
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => commands_open = false,
                },
                r = self.socket.recv_from(&mut buf) => self.batch(Via::First, r, &mut buf),
                r = recv_on(second, &mut buf2) => self.batch(Via::Second, r, &mut buf2),
                _ = tokio::time::sleep_until(deadline) => self.node.handle_timeout(now()),
                _ = housekeeping.tick() => {
                    self.publish_snapshot();
                    if now().duration_since(last_save) >= self.options.save_interval {
                        last_save = now();
                        self.save(false);
                    }
                }
            }
        }
        self.flush(&events).await;
        self.save(true);
        self.node
    }

    /// A datagram arrived on `via`: it and what else that socket has queued are handled.
    fn batch(&mut self, via: Via, first: std::io::Result<(usize, SocketAddr)>, buf: &mut [u8]) {
        match first {
            Ok((n, from)) => self.datagram(via, from, &buf[..n]),
            Err(e) => tracing::debug!(error = %e, "recv_from failed"),
        }
        let socket = match via {
            Via::First => Some(Arc::clone(&self.socket)),
            Via::Second => self.options.second_socket.clone(),
        };
        // Drain what else is queued, so a busy node pays for one wakeup per batch rather
        // than per datagram.
        if let Some(socket) = socket {
            for _ in 0..RECV_BATCH {
                match socket.try_recv_from(buf) {
                    Ok((n, from)) => self.datagram(via, from, &buf[..n]),
                    Err(_) => break,
                }
            }
        }
        self.end_utp_batch();
        let t = now();
        if t >= self.node.next_deadline() {
            self.node.handle_timeout(t);
        }
    }

    fn datagram(&mut self, via: Via, from: SocketAddr, bytes: &[u8]) {
        match classify(bytes) {
            Demux::Dht => self.node.handle_packet(now(), from, bytes),
            Demux::Utp => match self.options.utp.as_ref().filter(|_| via == Via::First) {
                Some(utp) => {
                    utp.handle_datagram(from, bytes);
                    self.utp_pending = true;
                }
                None => self.unknown_datagrams += 1,
            },
            Demux::Unknown => self.unknown_datagrams += 1,
        }
    }

    /// uTP answers a burst of its packets once, after the batch (one ACK for many).
    fn end_utp_batch(&mut self) {
        if std::mem::take(&mut self.utp_pending) {
            if let Some(utp) = &self.options.utp {
                utp.end_batch();
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let t = now();
        let (id, reply) = match cmd {
            Command::Ping { addr } => {
                self.node.ping(t, addr);
                return;
            }
            Command::FindNode { target, reply } => (self.node.find_node(t, target), reply),
            Command::GetPeers { info_hash, reply } => (self.node.get_peers(t, info_hash), reply),
            Command::Announce { info_hash, port, seed, reply } => (self.node.announce(t, info_hash, port, seed), reply),
        };
        if let Some(reply) = reply {
            let _ = reply.send(id);
        }
    }

    async fn flush(&mut self, events: &mpsc::UnboundedSender<Event>) {
        while let Some(t) = self.node.poll_transmit() {
            let socket = match &self.options.second_socket {
                Some(second) if t.to.is_ipv6() != self.first_v6 => second,
                _ => &self.socket,
            };
            match socket.try_send_to(&t.payload, t.to) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Err(e) = socket.send_to(&t.payload, t.to).await {
                        tracing::debug!(to = %t.to, error = %e, "send_to failed");
                    }
                }
                Err(e) => tracing::debug!(to = %t.to, error = %e, "send_to failed"),
            }
        }
        while let Some(ev) = self.node.poll_event() {
            if let Some(app) = &mut self.options.app {
                app.on_event(now(), &ev);
            }
            let _ = events.send(ev);
        }
    }

    fn publish_snapshot(&self) {
        let Some(shared) = &self.options.snapshot else { return };
        let t = now();
        let limiter = self.node.limiter();
        let snap = Snapshot {
            stats: self.node.stats().clone(),
            routing_nodes: self.node.node_count(),
            buckets: self.node.tables().map(|t| t.bucket_count()).sum(),
            info_hashes: self.node.store().info_hash_count(),
            stored_peers: self.node.store().peer_count(),
            running_lookups: self.node.running_lookups(),
            uptime: t.duration_since(self.started),
            unknown_datagrams: self.unknown_datagrams,
            clients: self.clients(),
            limiter: limiter.stats(),
            limiter_tracked: limiter.tracked(),
            limiter_blocked: limiter.blocked(t),
            limiter_bytes: limiter.memory_bytes(),
            pool_nodes: self.node.pool().map_or(0, |p| p.len()),
            bootstrap: self.node.bootstrap_stats().cloned().unwrap_or_default(),
        };
        if let Ok(mut s) = shared.lock() {
            *s = snap;
        }
    }

    /// Routing-table members per client code, over both tables.
    fn clients(&self) -> std::collections::BTreeMap<String, usize> {
        let mut all = std::collections::BTreeMap::new();
        for (client, n) in self.node.tables().flat_map(|t| t.clients()) {
            *all.entry(client).or_default() += n;
        }
        all
    }

    /// Persists the good nodes (of both families) when they changed (or always on shutdown, if we have any).
    fn save(&mut self, shutting_down: bool) {
        let Some(path) = self.options.state_path.clone() else { return };
        self.pool_saver.save(&path, &mut self.node, now(), shutting_down);
        let t = now();
        let mut nodes: Vec<CompactNode> = self.node.tables().flat_map(|table| table.good_nodes(t)).collect();
        nodes.sort_by_key(|n| n.id);
        if nodes == self.last_saved && !shutting_down {
            return;
        }
        if nodes.is_empty() && path.exists() {
            // A node that lost touch (or ran for seconds) must not wipe what an earlier run
            // learned.
            return;
        }
        let state = State { id: self.node.id(), nodes: nodes.clone() };
        match state.save(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), nodes = nodes.len(), "saved DHT state");
                self.last_saved = nodes;
            }
            Err(e) => tracing::warn!(error = %e, "could not save DHT state"),
        }
    }
}
