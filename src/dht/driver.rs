//! The tokio driver of the DHT core (BEP 5): reads the clock, feeds KRPC datagrams and
//! deadlines into [`Node`], hands what it returns to the socket, and persists the routing
//! table. This is the only DHT code that awaits or reads the time. The socket itself belongs
//! to its owner task (`net::udp_endpoint`), which reads it, keeps the KRPC datagrams for this
//! driver and sends what the driver hands back; uTP, which shares the port, is the owner's
//! business, not the DHT's.
//!
//! A dual-stack node (BEP 32) has a second socket, of the other address family: the driver
//! takes KRPC from both in the one task that owns the node, and hands each datagram to the
//! socket of its destination's family.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
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
use crate::net::udp_endpoint::{self, Datagram, KrpcBatch, KrpcLink};

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
            second_socket: None,
            app: None,
        }
    }
}

/// Where the node's datagrams come from and go to: a socket whose owner task the driver
/// starts when it runs (KRPC only), or the link to an owner already serving it (with uTP).
enum Port {
    Socket(Arc<UdpSocket>),
    Link(KrpcLink),
}

impl Port {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Port::Socket(s) => s.local_addr(),
            Port::Link(l) => Ok(l.local),
        }
    }

    fn open(self) -> std::io::Result<KrpcLink> {
        match self {
            Port::Socket(s) => udp_endpoint::spawn_krpc(s),
            Port::Link(l) => Ok(l),
        }
    }
}

/// Receives the next batch on `link`, or never when there is none (a select! branch that
/// stays idle).
async fn recv_on(link: Option<&mut KrpcLink>) -> Option<KrpcBatch> {
    match link {
        Some(l) => l.incoming.recv().await,
        None => std::future::pending().await,
    }
}

pub struct Driver {
    node: Node,
    port: Option<Port>,
    local: std::io::Result<SocketAddr>,
    /// Whether the first socket is IPv6: datagrams to the other family use the second.
    first_v6: bool,
    options: DriverOptions,
    last_saved: Vec<CompactNode>,
    started: Instant,
    /// The sockets' links while running (the second on a dual-stack node).
    links: Vec<KrpcLink>,
    /// The bootstrap role's pool, saved beside the state file.
    pool_saver: PoolSaver,
}

impl Driver {
    /// A node on `socket`, which nothing else reads: the driver starts its owner task.
    pub fn new(node: Node, socket: Arc<UdpSocket>, options: DriverOptions) -> Self {
        Driver::on_port(node, Port::Socket(socket), options)
    }

    /// A node on a socket whose owner task also serves uTP (see `net::udp_endpoint::spawn`).
    pub fn with_link(node: Node, link: KrpcLink, options: DriverOptions) -> Self {
        Driver::on_port(node, Port::Link(link), options)
    }

    fn on_port(node: Node, port: Port, options: DriverOptions) -> Self {
        let local = port.local_addr();
        let first_v6 = local.as_ref().is_ok_and(|a| a.is_ipv6());
        Driver {
            node,
            port: Some(port),
            local,
            first_v6,
            options,
            last_saved: Vec::new(),
            started: now(),
            links: Vec::new(),
            pool_saver: PoolSaver::default(),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.local {
            Ok(a) => Ok(*a),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
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
        let first = self.port.take().map(Port::open);
        let second = self.options.second_socket.take().map(udp_endpoint::spawn_krpc);
        for link in first.into_iter().chain(second) {
            match link {
                Ok(l) => self.links.push(l),
                Err(e) => tracing::warn!(error = %e, "cannot serve KRPC on a socket"),
            }
        }
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
            let (first, second) = match self.links.as_mut_slice() {
                [] => (None, None),
                [a] => (Some(a), None),
                [a, b, ..] => (Some(a), Some(b)),
            };
            tokio::select! {
                _ = &mut shutdown => break,
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => commands_open = false,
                },
                Some(b) = recv_on(first) => self.batch(b),
                Some(b) = recv_on(second) => self.batch(b),
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

    /// KRPC datagrams from a socket's owner task.
    fn batch(&mut self, datagrams: KrpcBatch) {
        let t = now();
        for (from, bytes) in datagrams.iter() {
            self.node.handle_packet(t, from, bytes);
        }
        let t = now();
        if t >= self.node.next_deadline() {
            self.node.handle_timeout(t);
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
        let mut out: [Vec<Datagram>; 2] = [Vec::new(), Vec::new()];
        while let Some(t) = self.node.poll_transmit() {
            // The second socket, when there is one, carries the other family.
            let via = usize::from(self.links.len() > 1 && t.to.is_ipv6() != self.first_v6);
            out[via].push((t.to, t.payload));
        }
        for (link, batch) in self.links.iter().zip(out) {
            // Waiting here is the backpressure of a full socket: the owner drains the channel
            // as the kernel takes datagrams.
            if !batch.is_empty() && link.outgoing.send(batch).await.is_err() {
                tracing::debug!(local = %link.local, "the socket's owner is gone; datagrams dropped");
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
            unknown_datagrams: self.links.iter().map(|l| l.counters.unknown.load(Ordering::Relaxed)).sum(),
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
