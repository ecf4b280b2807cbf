//! The sans-IO DHT node (BEP 5, with BEP 42/43/51 parts): packets and ticks in, packets,
//! deadlines and events out.
//!
//! It never reads the clock nor touches a socket: the driver (or a simulator) calls
//! `handle_packet(now, from, bytes)` and `handle_timeout(now)`, drains `poll_transmit` and
//! `poll_event`, and sleeps until `next_deadline`. All randomness comes from the seeded RNG it
//! is given, so a network of thousands of nodes runs deterministically in virtual time.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::dht::bep42;
use crate::dht::compact::CompactNode;
use crate::dht::external_ip::ExternalIp;
use crate::dht::krpc::{Body, Message, Method, Query, Response, Want};
use crate::dht::lookup::{Lookup, LookupConfig, LookupId, LookupKind, LookupStats, ScrapeEstimate, ShortTimeout};
use crate::dht::pool::PoolConfig;
use crate::dht::routing::{Contact, InsertOutcome, RoutingConfig, RoutingTable};
use crate::dht::stats::Stats;
use crate::dht::store::{PeerStore, StoreConfig};
use crate::dht::transactions::{tid_bytes, Expiry, Purpose, Transactions};
use crate::id::{Id, InfoHash, NodeId};
use crate::net::addr::Scope;
use crate::net::limiter::{Limiter, LimiterConfig, Verdict};
use crate::net::token_bucket::TokenBucket;

mod answer;
mod bootstrap;
mod query;

pub use bootstrap::BootstrapStats;
pub use query::{GetPeersOptions, QueryFailure, QueryId};

/// What a node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// An ordinary DHT node: answers from its routing table and stores announced peers.
    #[default]
    Normal,
    /// A router for joining clients: answers from a large pool of verified nodes (see
    /// `node/bootstrap.rs`) and stores no peers.
    Bootstrap,
}

/// Tunables of a node. `Default` is what a production node uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub routing: RoutingConfig,
    pub store: StoreConfig,
    pub lookup: LookupConfig,
    /// A query unanswered for this long has failed.
    pub query_timeout: Duration,
    /// After this a lookup query stops holding its slot and is retried once.
    pub short_timeout: Duration,
    /// A lookup still running after this is ended with what it has.
    pub lookup_time_limit: Duration,
    /// How often the table is looked after (pings, refreshes, bootstrap retries).
    pub maintenance_interval: Duration,
    /// Buckets unchanged for this long are refreshed with a lookup (BEP 5: 15 minutes).
    pub bucket_refresh: Duration,
    /// Longest wait between bootstrap attempts while the table stays near empty.
    pub bootstrap_backoff_max: Duration,
    /// BEP 43: do not ask to be put in routing tables and do not answer queries.
    pub read_only: bool,
    /// Our client version, sent as `v`.
    pub version: Option<Vec<u8>>,
    /// BEP 42: re-derive our id from the external address other nodes report.
    pub derive_id_from_ip: bool,
    /// Maintenance lookups (refresh, bootstrap) running at once at most.
    pub max_maintenance_lookups: usize,
    /// Per-source limits, applied to every datagram before it is decoded.
    pub limits: LimiterConfig,
    /// Seed of the secrets (write-token keys, the limiter's hash key). Production passes 32
    /// bytes from the OS random source; `None` derives them from the node's seed, so that a
    /// simulation stays deterministic.
    pub secret_seed: Option<[u8; 32]>,
    /// Where we are bound: node and peer addresses from remotes outside it are dropped
    /// (loopback and private addresses when we are public).
    pub scope: Scope,
    /// The scope of a dual-stack node's IPv6 address, for IPv6 addresses (a node may be public
    /// in one family and on a LAN in the other); `None`: `scope` serves both.
    pub scope_v6: Option<Scope>,
    /// Pings we send unasked for (to confirm a new querier, or to a peer's `port` message)
    /// per second at most, with a burst of four times as many.
    pub unsolicited_pings_per_sec: u32,
    /// An ordinary node, or a router answering from a pool (`kadswarm node --role`).
    pub role: Role,
    /// The pool of the bootstrap role.
    pub pool: PoolConfig,
    /// Report the info-hashes of get_peers and announce_peer queries that reach us as
    /// `Event::InfoHashSeen` (a crawler); off, a node queues nothing for them.
    pub report_incoming_info_hashes: bool,
    /// `InfoHashSeen` events queued at most; more are counted and dropped.
    pub max_info_hash_events: usize,
    /// Bound to an IPv4 and an IPv6 address at once (BEP 32): IPv6 contacts get a routing
    /// table of their own, and lookups run in each family. A single-stack node (the default)
    /// keeps its one table for whatever family it is bound to.
    pub dual_stack: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            routing: RoutingConfig::default(),
            store: StoreConfig::default(),
            lookup: LookupConfig::default(),
            query_timeout: Duration::from_secs(5),
            short_timeout: Duration::from_secs(1),
            lookup_time_limit: Duration::from_secs(60),
            maintenance_interval: Duration::from_secs(5),
            bucket_refresh: Duration::from_secs(15 * 60),
            bootstrap_backoff_max: Duration::from_secs(60),
            read_only: false,
            version: Some(b"KS\x00\x01".to_vec()),
            derive_id_from_ip: true,
            max_maintenance_lookups: 3,
            limits: LimiterConfig::default(),
            secret_seed: None,
            scope: Scope::Any,
            scope_v6: None,
            unsolicited_pings_per_sec: 20,
            role: Role::Normal,
            pool: PoolConfig::default(),
            report_incoming_info_hashes: false,
            max_info_hash_events: 4096,
            dual_stack: false,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// What a lookup ended with.
#[derive(Debug, Clone)]
pub struct LookupSummary {
    pub id: LookupId,
    pub kind: LookupKind,
    pub target: Id,
    /// The k closest nodes that answered, closest first.
    pub closest: Vec<CompactNode>,
    pub peers: usize,
    pub stats: LookupStats,
    pub elapsed: Duration,
    /// announce_peer queries sent (Announce lookups).
    pub announced_to: usize,
    /// BEP 33 estimates of a scraping get_peers lookup, when any close node sent filters.
    pub scrape: Option<ScrapeEstimate>,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Peers a get_peers lookup found, each reported once.
    Peers {
        lookup: LookupId,
        info_hash: InfoHash,
        peers: Vec<SocketAddr>,
    },
    LookupDone(LookupSummary),
    /// Enough nodes agree on the address they see us at (BEP 42).
    ExternalAddress(IpAddr),
    /// Our node id changed to one valid for our external address (BEP 42).
    IdChanged(NodeId),
    /// The answer to a direct `query`.
    QueryAnswered {
        id: QueryId,
        from: SocketAddr,
        response: Box<Response>,
    },
    /// A direct `query` timed out or was answered with an error.
    QueryFailed {
        id: QueryId,
        addr: SocketAddr,
        failure: QueryFailure,
    },
    /// A get_peers (`announced: false`) or validly tokened announce_peer query for
    /// `info_hash` reached us; only with `Config::report_incoming_info_hashes`.
    InfoHashSeen {
        info_hash: InfoHash,
        from: SocketAddr,
        announced: bool,
    },
}

/// Which routing table an address belongs to. A single-stack node has only `Main`, whatever
/// its family; a dual-stack node keeps IPv4 contacts in `Main` and IPv6 ones in `V6`.
///
/// A lookup runs in one table's family: BEP 32 keeps the two DHTs apart (a node answers with
/// the contacts of the querier's family), so a lookup that mixed them would compare distances
/// across two networks and could end at k nodes of one family only, announcing to none of the
/// other. A user lookup on a dual-stack node is therefore two lookups under one [`LookupId`],
/// keyed by `(id, table)`: responses and timeouts find theirs by the family of the address,
/// their peers are reported under the one id, and one merged `LookupDone` ends both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    Main,
    V6,
}

/// Why a lookup was started: maintenance lookups produce no events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    User,
    Maintenance,
}

pub struct Node {
    config: Config,
    rng: StdRng,
    /// A separate generator for secrets, so that a guessable simulation seed never makes
    /// guessable tokens.
    secrets: StdRng,
    limiter: Limiter,
    /// Unsolicited pings we may send.
    pings: TokenBucket,
    /// The IPv4 table of a dual-stack node, or the only table of a single-stack one.
    table: RoutingTable,
    /// The IPv6 table of a dual-stack node (same caps as the other).
    table6: Option<RoutingTable>,
    store: PeerStore,
    txs: Transactions,
    lookups: HashMap<(LookupId, Table), (Lookup, Origin)>,
    /// The summary of a dual-stack user lookup whose first family is done, waiting for the
    /// other (at most one per running lookup).
    half_done: HashMap<LookupId, LookupSummary>,
    next_lookup: u64,
    routers: Vec<SocketAddr>,
    bootstrap_attempts: u32,
    next_bootstrap: Instant,
    next_maintenance: Instant,
    external: ExternalIp,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    /// The state of the bootstrap role; `None` in the normal role.
    bootstrap: Option<Box<bootstrap::Bootstrap>>,
    direct: query::Direct,
}

impl Node {
    /// A node with the given id (a random one when `None`), its RNG seeded with `seed`.
    pub fn new(config: Config, id: Option<NodeId>, seed: u64, now: Instant) -> Node {
        let mut rng = StdRng::seed_from_u64(seed);
        let id = id.unwrap_or_else(|| Id::random(&mut rng));
        let mut secrets = match config.secret_seed {
            Some(s) => StdRng::from_seed(s),
            None => StdRng::seed_from_u64(rng.random()),
        };
        let store = PeerStore::new(config.store.clone(), now, &mut secrets);
        let limiter = Limiter::new(config.limits, now, secrets.random());
        let first_tid = rng.random::<u16>();
        let bootstrap = (config.role == Role::Bootstrap)
            .then(|| Box::new(bootstrap::Bootstrap::new(config.pool, now, &mut secrets)));
        Node {
            secrets,
            limiter,
            pings: TokenBucket::new(config.unsolicited_pings_per_sec, config.unsolicited_pings_per_sec * 4, now),
            table: RoutingTable::new(id, config.routing.clone()),
            table6: config.dual_stack.then(|| RoutingTable::new(id, config.routing.clone())),
            txs: Transactions::new(first_tid, config.query_timeout, config.short_timeout),
            store,
            rng,
            lookups: HashMap::new(),
            half_done: HashMap::new(),
            next_lookup: 1,
            routers: Vec::new(),
            bootstrap_attempts: 0,
            next_bootstrap: now,
            next_maintenance: now,
            external: ExternalIp::default(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            bootstrap,
            direct: query::Direct::default(),
            config,
        }
    }

    pub fn id(&self) -> NodeId {
        self.table.own_id()
    }

    /// The IPv4 table of a dual-stack node, or the only table of a single-stack one.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The IPv6 table of a dual-stack node.
    pub fn table6(&self) -> Option<&RoutingTable> {
        self.table6.as_ref()
    }

    /// Every routing table: one, or two on a dual-stack node.
    pub fn tables(&self) -> impl Iterator<Item = &RoutingTable> {
        std::iter::once(&self.table).chain(self.table6.as_ref())
    }

    /// Nodes in all routing tables.
    pub fn node_count(&self) -> usize {
        self.tables().map(RoutingTable::len).sum()
    }

    fn table_keys(&self) -> impl Iterator<Item = Table> {
        std::iter::once(Table::Main).chain(self.table6.is_some().then_some(Table::V6))
    }

    /// The table a contact at `addr` belongs to.
    fn table_key(&self, addr: SocketAddr) -> Table {
        if self.table6.is_some() && addr.is_ipv6() {
            Table::V6
        } else {
            Table::Main
        }
    }

    /// The scope that judges addresses of `addr`'s family.
    fn scope_for(&self, addr: SocketAddr) -> Scope {
        self.family_scope(addr.is_ipv6())
    }

    fn family_scope(&self, v6: bool) -> Scope {
        match self.config.scope_v6 {
            Some(s6) if v6 => s6,
            _ => self.config.scope,
        }
    }

    /// The table holding contacts of one family (on a single-stack node, the only one).
    fn family_table(&self, v6: bool) -> &RoutingTable {
        self.table_of(if v6 { Table::V6 } else { Table::Main })
    }

    fn table_of(&self, t: Table) -> &RoutingTable {
        match (t, &self.table6) {
            (Table::V6, Some(t6)) => t6,
            _ => &self.table,
        }
    }

    fn table_of_mut(&mut self, t: Table) -> &mut RoutingTable {
        match (t, &mut self.table6) {
            (Table::V6, Some(t6)) => t6,
            _ => &mut self.table,
        }
    }

    fn table_for(&mut self, addr: SocketAddr) -> &mut RoutingTable {
        self.table_of_mut(self.table_key(addr))
    }

    pub fn store(&self) -> &PeerStore {
        &self.store
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    pub fn external_ip(&self) -> Option<IpAddr> {
        self.external.current()
    }

    /// Routers to join through (their ids are unknown); used while the table is near empty.
    pub fn set_routers(&mut self, now: Instant, routers: Vec<SocketAddr>) {
        self.routers = routers;
        self.bootstrap_attempts = 0;
        self.next_bootstrap = now;
        self.next_maintenance = now;
    }

    /// Nodes remembered from an earlier run: asked to confirm they are still there, and used
    /// as the starting points of the join lookup.
    pub fn add_known_nodes(&mut self, now: Instant, nodes: &[CompactNode]) {
        for n in nodes {
            self.send_query(now, n.addr, Some(n.id), Method::Ping, Purpose::Ping { retried: false });
        }
        let id = self.id();
        let lookup = self.start_lookup(now, LookupKind::FindNode, id, Origin::Maintenance, None);
        for t in self.table_keys().collect::<Vec<_>>() {
            let family: Vec<CompactNode> = nodes.iter().filter(|n| self.table_key(n.addr) == t).copied().collect();
            if let Some((l, _)) = self.lookups.get_mut(&(lookup, t)) {
                l.add_nodes(&family, 0);
            }
            self.drive_lookup(now, (lookup, t));
        }
    }

    /// Pings a node whose id we do not know (a peer's BEP 5 `port` message): if it answers,
    /// it joins the table like any other responder.
    pub fn ping(&mut self, now: Instant, addr: SocketAddr) {
        self.unsolicited_ping(now, addr, None);
    }

    /// A ping nobody asked us for: only to a plausible address, never where a query already
    /// waits for an answer, and within a global budget, so that neither a stream of `port`
    /// messages nor a crowd of new queriers can fill the transaction table or aim our pings.
    fn unsolicited_ping(&mut self, now: Instant, addr: SocketAddr, node_id: Option<NodeId>) {
        if !self.scope_for(addr).admits(addr) || self.txs.pending_to(addr.ip()) > 0 {
            self.stats.pings_suppressed += 1;
            return;
        }
        if !self.pings.take(now) {
            self.stats.pings_suppressed += 1;
            return;
        }
        self.send_query(now, addr, node_id, Method::Ping, Purpose::Ping { retried: true });
    }

    pub fn find_node(&mut self, now: Instant, target: Id) -> LookupId {
        self.start_user_lookup(now, LookupKind::FindNode, target, false)
    }

    pub fn get_peers(&mut self, now: Instant, info_hash: InfoHash) -> LookupId {
        self.start_user_lookup(now, LookupKind::GetPeers, info_hash, false)
    }

    /// get_peers, then announce_peer to the k closest nodes. `port: None` = implied port.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, port: Option<u16>, seed: bool) -> LookupId {
        self.start_user_lookup(now, LookupKind::Announce { port, seed }, info_hash, false)
    }

    /// Stops a lookup (in every family) without a `LookupDone` event.
    pub fn cancel_lookup(&mut self, id: LookupId) {
        self.lookups.remove(&(id, Table::Main));
        self.lookups.remove(&(id, Table::V6));
        self.half_done.remove(&id);
    }

    pub fn running_lookups(&self) -> usize {
        self.lookups.len()
    }

    fn start_user_lookup(&mut self, now: Instant, kind: LookupKind, target: Id, scrape: bool) -> LookupId {
        let id = self.start_lookup(now, kind, target, Origin::User, None);
        for t in self.table_keys().collect::<Vec<_>>() {
            if let Some((l, _)) = self.lookups.get_mut(&(id, t)) {
                l.scrape = scrape && kind == LookupKind::GetPeers;
            }
            if kind != LookupKind::FindNode {
                // Peers announced to us count too: we are part of the DHT we search.
                let local = self.store.get_peers(now, &target, t == Table::V6, &mut self.rng);
                if let Some((l, _)) = self.lookups.get_mut(&(id, t)) {
                    let fresh = l.on_local_peers(&local);
                    if !fresh.is_empty() {
                        self.events.push_back(Event::Peers { lookup: id, info_hash: target, peers: fresh });
                    }
                }
            }
            self.drive_lookup(now, (id, t));
        }
        id
    }

    /// Starts a lookup in the family of `only`, or in every family of the node.
    fn start_lookup(
        &mut self,
        now: Instant,
        kind: LookupKind,
        target: Id,
        origin: Origin,
        only: Option<Table>,
    ) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let keys: Vec<Table> = self.table_keys().filter(|t| only.is_none_or(|o| o == *t)).collect();
        for t in keys {
            let mut lookup = Lookup::new(id, kind, target, self.id(), self.config.lookup, now);
            let _span = lookup.span.clone().entered();
            let table = self.table_of(t);
            let seeds = table.closest(&target, self.config.lookup.k * 2, true);
            lookup.add_nodes(&seeds, 0);
            if table.len() < self.config.lookup.k {
                for r in self.routers.iter().filter(|r| self.table_key(**r) == t) {
                    lookup.add_router(*r);
                }
            }
            self.stats.lookups_started += 1;
            tracing::debug!(table = ?t, seeds = seeds.len(), ?origin, "lookup started");
            self.lookups.insert((id, t), (lookup, origin));
        }
        id
    }

    /// Sends what the lookup wants sent and ends it when it is done.
    fn drive_lookup(&mut self, now: Instant, id: (LookupId, Table)) {
        let Some((lookup, _)) = self.lookups.get_mut(&id) else { return };
        let _span = lookup.span.clone().entered();
        let mut to_send = Vec::new();
        while let Some(q) = lookup.next_query() {
            to_send.push((q, lookup.scrape));
        }
        // BEP 33 follow-ups: a plain get_peers for the values a scrape answer left out.
        while let Some(q) = lookup.next_followup() {
            to_send.push((q, false));
        }
        let (kind, target) = (lookup.kind, lookup.target);
        for ((node_id, addr), scrape) in to_send {
            let method = lookup_method(kind, target, scrape);
            self.send_query(now, addr, node_id, method, Purpose::Lookup(id.0));
        }
        let done = self.lookups.get(&id).is_some_and(|(l, _)| {
            l.is_done() || now.saturating_duration_since(l.started) >= self.config.lookup_time_limit
        });
        if done {
            self.finish_lookup(now, id);
        }
    }

    fn finish_lookup(&mut self, now: Instant, key: (LookupId, Table)) {
        let Some((lookup, origin)) = self.lookups.remove(&key) else { return };
        let _span = lookup.span.clone().entered();
        let id = key.0;
        self.stats.lookups_done += 1;
        let closest = lookup.closest();
        tracing::debug!(closest = closest.len(), peers = lookup.peers().len(), stats = ?lookup.stats(),
            elapsed = ?now.saturating_duration_since(lookup.started), "lookup done");
        let mut announced_to = 0;
        if let LookupKind::Announce { port, seed } = lookup.kind {
            for (node, token) in &closest {
                let Some(token) = token.clone() else { continue };
                let method = Method::AnnouncePeer {
                    info_hash: lookup.target,
                    port: port.unwrap_or(0),
                    implied_port: port.is_none(),
                    token,
                    seed,
                };
                self.send_query(now, node.addr, Some(node.id), method, Purpose::Announce { info_hash: lookup.target });
                announced_to += 1;
            }
        }
        if origin == Origin::User {
            let mut summary = LookupSummary {
                id,
                kind: lookup.kind,
                target: lookup.target,
                closest: closest.into_iter().map(|(n, _)| n).collect(),
                peers: lookup.peers().len(),
                stats: lookup.stats(),
                elapsed: now.saturating_duration_since(lookup.started),
                announced_to,
                scrape: lookup.scrape_estimate(),
            };
            let other = match key.1 {
                Table::Main => Table::V6,
                Table::V6 => Table::Main,
            };
            if self.lookups.contains_key(&(id, other)) {
                // The other family is still looking: one event when both are done.
                self.half_done.insert(id, summary);
                return;
            }
            if let Some(first) = self.half_done.remove(&id) {
                summary = merge_summaries(first, summary);
            }
            self.events.push_back(Event::LookupDone(summary));
        }
    }

    fn send_query(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        node_id: Option<NodeId>,
        method: Method,
        purpose: Purpose,
    ) -> bool {
        let Some(tid) = self.txs.start(now, addr, node_id, purpose) else {
            self.stats.queries_dropped += 1;
            return false;
        };
        let msg = Message {
            tid: tid_bytes(tid).to_vec(),
            version: self.config.version.clone(),
            ip: None,
            read_only: self.config.read_only,
            body: Body::Query(Query { id: self.id(), method, want: Want::default() }),
        };
        self.stats.queries_out += 1;
        self.send(addr, msg.encode());
        true
    }

    fn send(&mut self, to: SocketAddr, payload: Vec<u8>) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += payload.len() as u64;
        self.outbox.push_back(Transmit { to, payload });
    }

    /// A datagram arrived from `from`.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        if from.port() == 0 {
            self.stats.malformed_dropped += 1;
            return;
        }
        // Before decoding: a flood must cost as little as possible, and an over-limit source
        // gets nothing back (no answer, no error, no ping), so we cannot be used to reflect
        // traffic at a spoofed victim beyond its small allowance.
        match self.limiter.check(now, from) {
            Verdict::Allow => {}
            Verdict::OverLimit => {
                self.stats.rate_limited += 1;
                return;
            }
            Verdict::Blocked => {
                self.stats.blocked_drops += 1;
                return;
            }
        }
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(failure) => {
                self.answer_malformed(from, failure);
                return;
            }
        };
        match msg.body {
            Body::Query(q) => {
                let sender = CompactNode { id: q.id, addr: from };
                if !msg.read_only {
                    self.note_querier(now, sender);
                }
                self.answer_query(now, from, msg.tid, q);
                if let Some(v) = &msg.version {
                    self.table_for(from).note_version(&sender, v);
                }
            }
            Body::Response(r) => {
                if self.pool_response(now, from, &msg.tid, msg.read_only, &r) {
                    return;
                }
                let sender = CompactNode { id: r.id, addr: from };
                self.handle_response(now, from, msg.tid, msg.ip, msg.read_only, r);
                if let Some(v) = &msg.version {
                    self.table_for(from).note_version(&sender, v);
                }
            }
            Body::Error(e) => {
                self.stats.errors_in += 1;
                tracing::debug!(%from, code = e.code, message = %e.message, "KRPC error");
                match self.txs.finish(&msg.tid, from).map(|p| p.purpose) {
                    Some(Purpose::Lookup(id)) => {
                        let key = (id, self.table_key(from));
                        if let Some((l, _)) = self.lookups.get_mut(&key) {
                            l.on_error(from);
                        }
                        self.drive_lookup(now, key);
                    }
                    Some(Purpose::Direct(id)) => self.direct_failed(id, from, QueryFailure::Error(e.code)),
                    _ => {}
                }
            }
        }
    }

    /// A node that queries us may join the table unconfirmed; we ping it to confirm it.
    fn note_querier(&mut self, now: Instant, node: CompactNode) {
        let cookie_pinged = self.pool_verify(now, node);
        let table = self.table_for(node.addr);
        if table.contains(&node.id) {
            table.heard_from(now, node, Contact::Query);
            return;
        }
        let outcome = table.heard_from(now, node, Contact::Query);
        if !cookie_pinged && matches!(outcome, InsertOutcome::Added | InsertOutcome::ReplacedBad { .. }) {
            self.unsolicited_ping(now, node.addr, Some(node.id));
        }
        self.ping_list(now, outcome);
    }

    fn ping_list(&mut self, now: Instant, outcome: InsertOutcome) {
        if let InsertOutcome::Cached { ping } = outcome {
            for n in ping {
                self.send_query(now, n.addr, Some(n.id), Method::Ping, Purpose::Ping { retried: false });
            }
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Vec<u8>,
        seen_as: Option<SocketAddr>,
        read_only: bool,
        r: crate::dht::krpc::Response,
    ) {
        let Some(pending) = self.txs.finish(&tid, from) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        self.stats.responses_in += 1;
        let id_matches = pending.node_id.is_none_or(|expected| expected == r.id);
        if id_matches && !read_only && r.id != self.id() {
            let outcome = self.table_for(from).heard_from(now, CompactNode { id: r.id, addr: from }, Contact::Response);
            self.ping_list(now, outcome);
        }
        // One id serves both families, and BEP 42 can tie it to one address only: the votes
        // of the main family decide.
        if let Some(seen) = seen_as.filter(|_| self.table_key(from) == Table::Main) {
            self.vote_external_ip(from, seen.ip());
        }
        match pending.purpose {
            Purpose::Lookup(id) => {
                let id = (id, self.table_key(from));
                // Addresses outside our scope (loopback or private ones from the Internet,
                // multicast, port 0) are lies or leaks: never queried, never dialled.
                let (scope4, scope6) = (self.family_scope(false), self.family_scope(true));
                let admits = |a: SocketAddr| if a.is_ipv6() { scope6 } else { scope4 }.admits(a);
                let Some((lookup, _)) = self.lookups.get_mut(&id) else { return };
                let info_hash = lookup.target;
                let family = if from.is_ipv4() { &r.nodes } else { &r.nodes6 };
                let nodes: Vec<CompactNode> = family.iter().filter(|n| admits(n.addr)).copied().collect();
                let values: Vec<SocketAddr> = r.values.iter().filter(|a| admits(**a)).copied().collect();
                self.stats.implausible_dropped += (family.len() - nodes.len() + r.values.len() - values.len()) as u64;
                let fresh = lookup.on_response(from, r.id, &nodes, &values, r.token);
                lookup.on_scrape(from, r.bf_seeds.as_deref(), r.bf_peers.as_deref(), !r.values.is_empty());
                let wants_peers = lookup.kind != LookupKind::FindNode;
                if wants_peers && !fresh.is_empty() {
                    self.events.push_back(Event::Peers { lookup: id.0, info_hash, peers: fresh });
                }
                self.drive_lookup(now, id);
            }
            Purpose::Ping { .. } => {}
            Purpose::Announce { .. } => self.stats.announces_acked += 1,
            Purpose::Direct(id) => self.direct_answered(id, from, r),
        }
    }

    fn vote_external_ip(&mut self, voter: SocketAddr, seen: IpAddr) {
        let Some(ip) = self.external.vote(voter, seen) else { return };
        self.events.push_back(Event::ExternalAddress(ip));
        if self.config.derive_id_from_ip && !bep42::is_exempt(ip) && !bep42::is_valid_id(&self.id(), ip) {
            let new_id = bep42::node_id_for_ip(ip, &mut self.rng);
            tracing::info!(%ip, id = %new_id, "external address learned; switching to a BEP 42 node id");
            self.table.set_own_id(new_id);
            if let Some(t6) = &mut self.table6 {
                t6.set_own_id(new_id);
            }
            self.events.push_back(Event::IdChanged(new_id));
        }
    }

    /// Time has passed: expire queries, look after the table and the store.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(expiry) = self.txs.pop_expired(now) {
            match expiry {
                Expiry::Short { addr, purpose: Purpose::Lookup(id), .. } => {
                    let id = (id, self.table_key(addr));
                    let Some((lookup, _)) = self.lookups.get_mut(&id) else { continue };
                    if let ShortTimeout::Retry { id: node_id, addr } = lookup.on_short_timeout(addr) {
                        let method = lookup_method(lookup.kind, lookup.target, lookup.scrape);
                        self.stats.retries += 1;
                        self.send_query(now, addr, node_id, method, Purpose::Lookup(id.0));
                    }
                    self.drive_lookup(now, id);
                }
                Expiry::Short { .. } => {}
                Expiry::Full(boxed) => {
                    let (_, p) = *boxed;
                    self.stats.timeouts += 1;
                    if let Some(node_id) = p.node_id {
                        self.table_for(p.addr).failed(&node_id, p.addr);
                    }
                    match p.purpose {
                        Purpose::Lookup(id) => {
                            let id = (id, self.table_key(p.addr));
                            if let Some((l, _)) = self.lookups.get_mut(&id) {
                                l.on_timeout(p.addr);
                            }
                            self.drive_lookup(now, id);
                        }
                        Purpose::Ping { retried: false } => {
                            self.stats.retries += 1;
                            self.send_query(now, p.addr, p.node_id, Method::Ping, Purpose::Ping { retried: true });
                        }
                        Purpose::Direct(id) => self.direct_failed(id, p.addr, QueryFailure::Timeout),
                        Purpose::Ping { retried: true } | Purpose::Announce { .. } => {}
                    }
                }
            }
        }
        let expired: Vec<(LookupId, Table)> = self
            .lookups
            .iter()
            .filter(|(_, (l, _))| now.saturating_duration_since(l.started) >= self.config.lookup_time_limit)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.finish_lookup(now, id);
        }
        if now >= self.next_maintenance {
            self.maintain(now);
            self.next_maintenance = now + self.config.maintenance_interval;
        }
        self.store.tick(now, &mut self.secrets);
        self.pool_tick(now);
    }

    fn maintenance_lookups(&self) -> usize {
        self.lookups.values().filter(|(_, o)| *o == Origin::Maintenance).count()
    }

    fn maintain(&mut self, now: Instant) {
        let k = self.config.lookup.k;
        // Each family joins through its own routers while its table is near empty.
        let starving: Vec<Table> = self
            .table_keys()
            .filter(|t| self.table_of(*t).len() < k && self.routers.iter().any(|r| self.table_key(*r) == *t))
            .collect();
        if !starving.is_empty() && now >= self.next_bootstrap && self.maintenance_lookups() == 0 {
            // Back off while nobody answers, so an unreachable router is not hammered.
            let backoff =
                Duration::from_secs(1u64 << self.bootstrap_attempts.min(6)).min(self.config.bootstrap_backoff_max);
            self.bootstrap_attempts += 1;
            self.next_bootstrap = now + backoff;
            tracing::debug!(attempt = self.bootstrap_attempts, "bootstrapping from routers");
            let id = self.id();
            for t in starving {
                let l = self.start_lookup(now, LookupKind::FindNode, id, Origin::Maintenance, Some(t));
                self.drive_lookup(now, (l, t));
            }
        } else if self.tables().all(|t| t.len() >= k) {
            self.bootstrap_attempts = 0;
        }
        for t in self.table_keys().collect::<Vec<_>>() {
            for n in self.table_of_mut(t).questionable_to_ping(now, 8) {
                self.send_query(now, n.addr, Some(n.id), Method::Ping, Purpose::Ping { retried: false });
            }
            if self.table_of(t).is_empty() {
                continue;
            }
            let interval = self.config.bucket_refresh;
            // Split borrows: the table and the RNG are different fields.
            let table = match (t, &mut self.table6) {
                (Table::V6, Some(t6)) => t6,
                _ => &mut self.table,
            };
            let targets = table.stale_bucket_targets(now, interval, &mut self.rng);
            for target in targets {
                if self.maintenance_lookups() >= self.config.max_maintenance_lookups {
                    break;
                }
                let l = self.start_lookup(now, LookupKind::FindNode, target, Origin::Maintenance, Some(t));
                self.drive_lookup(now, (l, t));
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        self.event_polled(&event);
        Some(event)
    }

    /// When `handle_timeout` should next be called.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.next_maintenance.min(self.store.next_deadline());
        for t in [self.txs.next_deadline(), self.pool_deadline()].into_iter().flatten() {
            next = next.min(t);
        }
        for (l, _) in self.lookups.values() {
            next = next.min(l.started + self.config.lookup_time_limit);
        }
        next
    }
}

/// One summary of a lookup that ran in both families.
fn merge_summaries(a: LookupSummary, b: LookupSummary) -> LookupSummary {
    let mut closest = a.closest;
    closest.extend(b.closest);
    closest.sort_by_key(|n| n.id.distance(&a.target));
    LookupSummary {
        closest,
        peers: a.peers + b.peers,
        stats: LookupStats {
            queries: a.stats.queries + b.stats.queries,
            responses: a.stats.responses + b.stats.responses,
            timeouts: a.stats.timeouts + b.stats.timeouts,
            rounds: a.stats.rounds.max(b.stats.rounds),
        },
        elapsed: a.elapsed.max(b.elapsed),
        announced_to: a.announced_to + b.announced_to,
        ..a
    }
}

fn lookup_method(kind: LookupKind, target: Id, scrape: bool) -> Method {
    match kind {
        LookupKind::FindNode => Method::FindNode { target },
        LookupKind::GetPeers | LookupKind::Announce { .. } => {
            Method::GetPeers { info_hash: target, noseed: false, scrape }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ipv6_tests;

#[cfg(test)]
mod abuse_tests;

#[cfg(test)]
mod bootstrap_tests;
