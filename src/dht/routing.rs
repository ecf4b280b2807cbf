//! The routing table of BEP 5: k-buckets over the 160-bit id space, where only the bucket that
//! covers our own id splits. It owns node states (good, questionable, bad), the replacement
//! cache of each bucket, the per-IP and per-subnet limits that keep one operator from filling a
//! bucket, and the preference for ids that are valid under BEP 42. It never sends anything: it
//! tells the node which contacts to ping.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::dht::bep42;
use crate::dht::compact::CompactNode;
use crate::id::{Id, NodeId};

/// A node handed out for pinging is not handed out again before this.
const PING_AGAIN_AFTER: Duration = Duration::from_secs(60);
/// Ids have 160 bits, so at most 160 distinct prefix depths plus the one holding our id.
const MAX_BUCKETS: usize = 160;

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Nodes per bucket (BEP 5: 8).
    pub k: usize,
    /// Replacement candidates kept per bucket.
    pub replacements: usize,
    /// Nodes of one /24 (IPv4) or /64 (IPv6) per bucket at most; 0 disables the limit.
    pub max_per_subnet: usize,
    /// At most one node per IP address in the whole table.
    pub one_per_ip: bool,
    /// Refuse public nodes whose id is not valid for their address (BEP 42). When off, such
    /// nodes are accepted but lose their place to verified ones.
    pub enforce_bep42: bool,
    /// How long a node stays good after it last answered (BEP 5: 15 minutes).
    pub good_window: Duration,
    /// Failures in a row that make an answering node bad.
    pub fails_until_bad: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            k: 8,
            replacements: 8,
            max_per_subnet: 2,
            one_per_ip: true,
            enforce_bep42: false,
            good_window: Duration::from_secs(15 * 60),
            fails_until_bad: 2,
        }
    }
}

/// How we heard from a node: it answered one of our queries, or it queried us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    Response,
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    OwnId,
    /// A known id from a different address while the known address still answers.
    AddressMismatch,
    /// Another node already sits in the table with this IP address.
    DuplicateIp,
    /// The bucket already holds its share of this subnet.
    SubnetFull,
    /// The id is not valid for the address under BEP 42, and the table enforces it.
    InvalidId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Added,
    /// A node already in the table (or its replacement cache) was refreshed.
    Updated,
    ReplacedBad {
        evicted: CompactNode,
    },
    /// A node that never answered us gave way to one that did.
    ReplacedUnconfirmed {
        evicted: CompactNode,
    },
    /// A node with an id not valid for its address gave way to a verified one (BEP 42).
    ReplacedUnverified {
        evicted: CompactNode,
    },
    /// The bucket is full: the node waits in the replacement cache, and these questionable
    /// members should be pinged so that a dead one can make room.
    Cached {
        ping: Vec<CompactNode>,
    },
    Rejected(Rejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Answered within the good window (or answered once and queried us recently).
    Good,
    /// Answered once, but not lately: ping before trusting or replacing it.
    Questionable,
    /// Queried us but never answered one of our queries.
    Unconfirmed,
    /// Failed to answer repeatedly (or, never having answered, once).
    Bad,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub node: CompactNode,
    pub last_response: Option<Instant>,
    pub last_query: Option<Instant>,
    pub fails: u32,
    /// The id is valid for the address under BEP 42 (or the address is exempt).
    pub verified: bool,
    /// The `v` the node last sent: its client and version (e.g. `LT` 2.1 for libtorrent).
    pub version: Option<ClientVersion>,
    pinged: Option<Instant>,
}

/// A KRPC `v` string, kept as sent (clients use 4 bytes: two letters and a version number);
/// longer ones are cut so that a hostile node cannot make us store much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientVersion {
    bytes: [u8; 4],
    len: u8,
}

impl ClientVersion {
    pub fn new(v: &[u8]) -> ClientVersion {
        let len = v.len().min(4);
        let mut bytes = [0u8; 4];
        bytes[..len].copy_from_slice(&v[..len]);
        ClientVersion { bytes, len: len as u8 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The client's two-letter code when it is printable (`LT`, `UT`, `TR`, ...), else `??`.
    pub fn client(&self) -> String {
        match self.as_bytes() {
            [a, b, ..] if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
                String::from_utf8_lossy(&[*a, *b]).into_owned()
            }
            _ => "??".to_string(),
        }
    }
}

impl Entry {
    fn new(now: Instant, node: CompactNode, contact: Contact) -> Entry {
        let mut e = Entry {
            node,
            last_response: None,
            last_query: None,
            fails: 0,
            verified: bep42::is_valid_id(&node.id, node.addr.ip()),
            version: None,
            // The node pings a querier as it adds it; do not hand it out for a ping again.
            pinged: (contact == Contact::Query).then_some(now),
        };
        e.touch(now, contact);
        e
    }

    fn touch(&mut self, now: Instant, contact: Contact) {
        match contact {
            Contact::Response => {
                self.last_response = Some(now);
                self.fails = 0;
            }
            Contact::Query => self.last_query = Some(now),
        }
    }

    fn confirmed(&self) -> bool {
        self.last_response.is_some()
    }

    fn is_bad(&self, cfg: &RoutingConfig) -> bool {
        if self.confirmed() {
            self.fails >= cfg.fails_until_bad
        } else {
            self.fails >= 1
        }
    }

    pub fn state(&self, now: Instant, cfg: &RoutingConfig) -> NodeState {
        if self.is_bad(cfg) {
            return NodeState::Bad;
        }
        let Some(answered) = self.last_response else { return NodeState::Unconfirmed };
        let recent = |t: Instant| now.saturating_duration_since(t) < cfg.good_window;
        if self.fails == 0 && (recent(answered) || self.last_query.is_some_and(recent)) {
            NodeState::Good
        } else {
            NodeState::Questionable
        }
    }

    fn last_activity(&self) -> Option<Instant> {
        match (self.last_response, self.last_query) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ordering of replacement candidates: answered, verified, recently heard from.
    fn rank(&self) -> (bool, bool, Option<Instant>) {
        (self.confirmed(), self.verified, self.last_activity())
    }
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    nodes: Vec<Entry>,
    replacements: Vec<Entry>,
    /// When a member of this bucket last answered us or joined; drives bucket refreshes.
    last_active: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: NodeId,
    config: RoutingConfig,
    buckets: Vec<Bucket>,
    /// IP address of every node in a bucket (not the caches), for the one-per-IP rule.
    /// The holder of each address (see [`ip_key`]), for the one-per-IP rule.
    ips: HashMap<SocketAddr, NodeId>,
}

/// What the one-per-IP rule counts as one address: the IP, except on loopback, where a
/// test network runs many nodes on one address (all of IPv6's on [::1]) and the port tells
/// them apart, as the limiter's `host_key` does.
fn ip_key(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_loopback() {
        addr
    } else {
        SocketAddr::new(addr.ip(), 0)
    }
}

/// Whether two addresses share a /24 (IPv4) or /64 (IPv6); on loopback, whether they are
/// the same socket address (see [`ip_key`]).
fn same_subnet(a: SocketAddr, b: SocketAddr) -> bool {
    if a.ip().is_loopback() || b.ip().is_loopback() {
        return a == b;
    }
    match (a.ip(), b.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..8] == b.octets()[..8],
        _ => false,
    }
}

impl RoutingTable {
    pub fn new(own: NodeId, config: RoutingConfig) -> RoutingTable {
        RoutingTable { own, config, buckets: vec![Bucket::default()], ips: HashMap::new() }
    }

    pub fn own_id(&self) -> NodeId {
        self.own
    }

    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// Our id changed (BEP 42): the buckets are rebuilt around the new id, keeping every node
    /// that still fits.
    pub fn set_own_id(&mut self, id: NodeId) {
        let old = std::mem::take(&mut self.buckets);
        self.own = id;
        self.buckets = vec![Bucket::default()];
        self.ips.clear();
        let (mut members, mut cached): (Vec<Entry>, Vec<Entry>) = (Vec::new(), Vec::new());
        for b in old {
            members.extend(b.nodes);
            cached.extend(b.replacements);
        }
        for e in members.into_iter().chain(cached) {
            if e.node.id != id && !e.is_bad(&self.config) {
                self.place_existing(e);
            }
        }
    }

    /// Puts an entry we already trust back into the table, without the admission checks.
    fn place_existing(&mut self, e: Entry) {
        if self.config.one_per_ip && self.ips.contains_key(&ip_key(e.node.addr)) {
            return;
        }
        loop {
            let b = self.bucket_index(&e.node.id);
            let k = self.config.k;
            if self.buckets[b].nodes.len() < k {
                self.ips.insert(ip_key(e.node.addr), e.node.id);
                self.buckets[b].nodes.push(e);
                return;
            }
            if !self.try_split(b) {
                let cap = self.config.replacements;
                let bucket = &mut self.buckets[b];
                if bucket.replacements.len() < cap {
                    bucket.replacements.push(e);
                }
                return;
            }
        }
    }

    fn bucket_index(&self, id: &Id) -> usize {
        self.own.common_prefix_len(id).min(self.buckets.len() - 1)
    }

    /// Splits bucket `b` when it is the one covering our own id and ids have bits left.
    fn try_split(&mut self, b: usize) -> bool {
        let last = self.buckets.len() - 1;
        if b != last || self.buckets.len() >= MAX_BUCKETS {
            return false;
        }
        let own = self.own;
        let depth = last;
        let old = &mut self.buckets[last];
        let deeper = |e: &Entry| own.common_prefix_len(&e.node.id) > depth;
        let (moved, kept): (Vec<Entry>, Vec<Entry>) = old.nodes.drain(..).partition(deeper);
        old.nodes = kept;
        let (moved_r, kept_r): (Vec<Entry>, Vec<Entry>) = old.replacements.drain(..).partition(deeper);
        old.replacements = kept_r;
        let last_active = old.last_active;
        self.buckets.push(Bucket { nodes: moved, replacements: moved_r, last_active });
        // Replacements may now fit where members left room.
        for i in [last, last + 1] {
            let k = self.config.k;
            while self.buckets[i].nodes.len() < k && !self.buckets[i].replacements.is_empty() {
                let Some(pos) = self.best_replacement(i) else { break };
                let e = self.buckets[i].replacements.remove(pos);
                self.ips.insert(ip_key(e.node.addr), e.node.id);
                self.buckets[i].nodes.push(e);
            }
        }
        true
    }

    /// The best candidate of bucket `b`'s cache whose address is not already in the table.
    fn best_replacement(&self, b: usize) -> Option<usize> {
        let one_per_ip = self.config.one_per_ip;
        self.buckets[b]
            .replacements
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.is_bad(&self.config))
            .filter(|(_, e)| !one_per_ip || !self.ips.contains_key(&ip_key(e.node.addr)))
            .max_by_key(|(_, e)| e.rank())
            .map(|(i, _)| i)
    }

    fn forget_ip(&mut self, node: &CompactNode) {
        if self.ips.get(&ip_key(node.addr)) == Some(&node.id) {
            self.ips.remove(&ip_key(node.addr));
        }
    }

    /// Removes the member at `pos` of bucket `b`, returning it.
    fn remove_member(&mut self, b: usize, pos: usize) -> Entry {
        let e = self.buckets[b].nodes.swap_remove(pos);
        self.forget_ip(&e.node);
        e
    }

    fn find_member(&self, id: &Id) -> Option<(usize, usize)> {
        let b = self.bucket_index(id);
        self.buckets[b].nodes.iter().position(|e| e.node.id == *id).map(|pos| (b, pos))
    }

    /// We heard from `node`: refresh it, add it, or keep it as a replacement.
    pub fn heard_from(&mut self, now: Instant, node: CompactNode, contact: Contact) -> InsertOutcome {
        if node.id == self.own {
            return InsertOutcome::Rejected(Rejection::OwnId);
        }
        if let Some((b, pos)) = self.find_member(&node.id) {
            return self.refresh_member(now, b, pos, node, contact);
        }
        let verified = bep42::is_valid_id(&node.id, node.addr.ip());
        if self.config.enforce_bep42 && !verified {
            return InsertOutcome::Rejected(Rejection::InvalidId);
        }
        let b = self.bucket_index(&node.id);
        if let Some(r) = self.buckets[b].replacements.iter_mut().find(|e| e.node.id == node.id) {
            if r.node.addr != node.addr && contact == Contact::Response && !r.confirmed() {
                r.node.addr = node.addr;
            }
            if r.node.addr == node.addr {
                r.touch(now, contact);
            }
            let ping = self.pings_for(now, b);
            return InsertOutcome::Cached { ping };
        }
        if let Err(why) = self.admit_address(node, contact) {
            return InsertOutcome::Rejected(why);
        }
        self.insert_new(now, Entry::new(now, node, contact))
    }

    fn refresh_member(
        &mut self,
        now: Instant,
        b: usize,
        pos: usize,
        node: CompactNode,
        contact: Contact,
    ) -> InsertOutcome {
        let cfg = self.config.clone();
        let e = &self.buckets[b].nodes[pos];
        if e.node.addr != node.addr {
            // The same id at a new address: believe it only when the old address went quiet
            // and the new one answers, else anyone could redirect a good contact.
            let old_gone = matches!(e.state(now, &cfg), NodeState::Bad | NodeState::Unconfirmed);
            let ip_taken = cfg.one_per_ip && self.ips.get(&ip_key(node.addr)).is_some_and(|other| *other != node.id);
            if contact != Contact::Response || !old_gone || ip_taken {
                return InsertOutcome::Rejected(Rejection::AddressMismatch);
            }
            let old = e.node;
            self.forget_ip(&old);
            self.ips.insert(ip_key(node.addr), node.id);
            let e = &mut self.buckets[b].nodes[pos];
            e.node.addr = node.addr;
            e.verified = bep42::is_valid_id(&node.id, node.addr.ip());
            e.fails = 0;
        }
        self.buckets[b].nodes[pos].touch(now, contact);
        if contact == Contact::Response {
            self.buckets[b].last_active = Some(now);
        }
        InsertOutcome::Updated
    }

    /// The one-per-IP and per-subnet rules. A bad node holding the IP gives it up.
    fn admit_address(&mut self, node: CompactNode, contact: Contact) -> Result<(), Rejection> {
        let ip = ip_key(node.addr);
        if self.config.one_per_ip {
            if let Some(holder) = self.ips.get(&ip).copied() {
                let Some((b, pos)) = self.find_member(&holder) else {
                    self.ips.remove(&ip);
                    return Ok(());
                };
                let e = &self.buckets[b].nodes[pos];
                let replaceable = e.is_bad(&self.config) || (!e.confirmed() && contact == Contact::Response);
                if !replaceable {
                    return Err(Rejection::DuplicateIp);
                }
                self.remove_member(b, pos);
            }
        }
        let limit = self.config.max_per_subnet;
        if limit > 0 {
            let b = self.bucket_index(&node.id);
            let same = self.buckets[b].nodes.iter().filter(|e| same_subnet(e.node.addr, node.addr)).count();
            if same >= limit {
                return Err(Rejection::SubnetFull);
            }
        }
        Ok(())
    }

    fn insert_new(&mut self, now: Instant, entry: Entry) -> InsertOutcome {
        loop {
            let b = self.bucket_index(&entry.node.id);
            if self.buckets[b].nodes.len() < self.config.k {
                return self.push_member(now, b, entry, InsertOutcome::Added);
            }
            if self.try_split(b) {
                continue;
            }
            let bucket = &self.buckets[b];
            if let Some(pos) = bucket.nodes.iter().position(|e| e.is_bad(&self.config)) {
                let evicted = self.remove_member(b, pos).node;
                return self.push_member(now, b, entry, InsertOutcome::ReplacedBad { evicted });
            }
            if entry.confirmed() {
                if let Some(pos) = bucket.nodes.iter().position(|e| !e.confirmed()) {
                    let evicted = self.remove_member(b, pos).node;
                    return self.push_member(now, b, entry, InsertOutcome::ReplacedUnconfirmed { evicted });
                }
                if entry.verified {
                    if let Some(pos) = bucket.nodes.iter().position(|e| !e.verified) {
                        let evicted = self.remove_member(b, pos).node;
                        return self.push_member(now, b, entry, InsertOutcome::ReplacedUnverified { evicted });
                    }
                }
            }
            self.cache(b, entry);
            let ping = self.pings_for(now, b);
            return InsertOutcome::Cached { ping };
        }
    }

    fn push_member(&mut self, now: Instant, b: usize, entry: Entry, outcome: InsertOutcome) -> InsertOutcome {
        self.ips.insert(ip_key(entry.node.addr), entry.node.id);
        if entry.confirmed() || self.buckets[b].last_active.is_none() {
            self.buckets[b].last_active = Some(now);
        }
        self.buckets[b].nodes.push(entry);
        outcome
    }

    fn cache(&mut self, b: usize, entry: Entry) {
        let cap = self.config.replacements;
        if cap == 0 {
            return;
        }
        let cache = &mut self.buckets[b].replacements;
        if cache.len() < cap {
            cache.push(entry);
            return;
        }
        // Full: the weakest candidate leaves if the newcomer ranks at least as high, so the
        // cache keeps fresh, answering contacts.
        if let Some((pos, worst)) = cache.iter().enumerate().min_by_key(|(_, e)| e.rank()) {
            if worst.rank() <= entry.rank() {
                cache[pos] = entry;
            }
        }
    }

    /// Questionable members of bucket `b` that have not been handed out for a ping lately.
    fn pings_for(&mut self, now: Instant, b: usize) -> Vec<CompactNode> {
        let cfg = self.config.clone();
        let mut out = Vec::new();
        for e in &mut self.buckets[b].nodes {
            let due = e.pinged.is_none_or(|t| now.saturating_duration_since(t) >= PING_AGAIN_AFTER);
            if due && matches!(e.state(now, &cfg), NodeState::Questionable | NodeState::Unconfirmed) {
                e.pinged = Some(now);
                out.push(e.node);
            }
        }
        out
    }

    /// A query to `id` at `addr` went unanswered. Bad members give way to their best
    /// replacement; members that never answered at all leave at once.
    pub fn failed(&mut self, id: &NodeId, addr: SocketAddr) {
        let b = self.bucket_index(id);
        if let Some(pos) = self.buckets[b].nodes.iter().position(|e| e.node.id == *id && e.node.addr == addr) {
            let e = &mut self.buckets[b].nodes[pos];
            e.fails += 1;
            if !e.is_bad(&self.config) {
                return;
            }
            let never_answered = !e.confirmed();
            let replacement = self.best_replacement(b);
            if replacement.is_some() || never_answered {
                self.remove_member(b, pos);
            }
            if let Some(r) = replacement {
                let e = self.buckets[b].replacements.swap_remove(r);
                self.ips.insert(ip_key(e.node.addr), e.node.id);
                self.buckets[b].nodes.push(e);
            }
        } else if let Some(pos) = self.buckets[b].replacements.iter().position(|e| e.node.id == *id) {
            self.buckets[b].replacements.swap_remove(pos);
        }
    }

    /// The `count` nodes closest to `target`, closest first. Bad nodes are never returned;
    /// nodes that never answered us only when `include_unconfirmed`.
    pub fn closest(&self, target: &Id, count: usize, include_unconfirmed: bool) -> Vec<CompactNode> {
        let usable = |e: &&Entry| !e.is_bad(&self.config) && (include_unconfirmed || e.confirmed());
        let last = self.buckets.len() - 1;
        let home = self.bucket_index(target);
        let mut out: Vec<CompactNode> = Vec::with_capacity(count);
        // Distances from `target` fall in layers: its own bucket holds the closest nodes, the
        // buckets deeper than it come next (all share the same first differing bit), and then
        // each shallower bucket is strictly farther than the one after it.
        //
        // Every get_peers and find_node a node answers runs this (twice on a young table), so
        // each candidate's distance is computed once, as two integers that compare without a
        // memcmp, only the nodes that fit are put in order, and one scratch vector serves all
        // the layers.
        let mut layer: Vec<((u128, u32), CompactNode)> = Vec::new();
        let mut take_layer = |buckets: &mut dyn Iterator<Item = &Bucket>, out: &mut Vec<CompactNode>| {
            layer.clear();
            layer.extend(
                buckets.flat_map(|b| b.nodes.iter().filter(usable).map(|e| (distance_key(&e.node.id, target), e.node))),
            );
            let room = count - out.len();
            if layer.len() > room {
                if room == 0 {
                    return;
                }
                layer.select_nth_unstable_by_key(room - 1, |(d, _)| *d);
                layer.truncate(room);
            }
            layer.sort_unstable_by_key(|(d, _)| *d);
            out.extend(layer.iter().map(|(_, n)| *n));
        };
        take_layer(&mut std::iter::once(&self.buckets[home]), &mut out);
        if out.len() < count && home < last {
            take_layer(&mut self.buckets[home + 1..].iter(), &mut out);
        }
        for b in (0..home).rev() {
            if out.len() >= count {
                break;
            }
            take_layer(&mut std::iter::once(&self.buckets[b]), &mut out);
        }
        out
    }

    /// Whether at least `n` members answered us and are not bad: exactly when
    /// `closest(target, n, false)` hands out `n` nodes. Cheaper than asking it, and it stops
    /// at the `n`th.
    pub fn has_confirmed(&self, n: usize) -> bool {
        n == 0 || self.iter().filter(|e| e.confirmed() && !e.is_bad(&self.config)).nth(n - 1).is_some()
    }

    /// Questionable members (and members that never answered) due for a ping, least
    /// recently heard from first; they are marked so they are not handed out again soon.
    pub fn questionable_to_ping(&mut self, now: Instant, max: usize) -> Vec<CompactNode> {
        let cfg = self.config.clone();
        let mut due: Vec<(Option<Instant>, usize, usize)> = Vec::new();
        for (b, bucket) in self.buckets.iter().enumerate() {
            for (pos, e) in bucket.nodes.iter().enumerate() {
                let not_pinged = e.pinged.is_none_or(|t| now.saturating_duration_since(t) >= PING_AGAIN_AFTER);
                if not_pinged && matches!(e.state(now, &cfg), NodeState::Questionable | NodeState::Unconfirmed) {
                    due.push((e.last_activity(), b, pos));
                }
            }
        }
        due.sort_unstable();
        due.truncate(max);
        due.into_iter()
            .map(|(_, b, pos)| {
                let e = &mut self.buckets[b].nodes[pos];
                e.pinged = Some(now);
                e.node
            })
            .collect()
    }

    /// Random targets inside each bucket that nobody in it answered for `interval`. The buckets
    /// count as refreshed from now on.
    pub fn stale_bucket_targets<R: Rng + ?Sized>(&mut self, now: Instant, interval: Duration, rng: &mut R) -> Vec<Id> {
        let own = self.own;
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            let stale = b.last_active.is_none_or(|t| now.saturating_duration_since(t) >= interval);
            if stale {
                b.last_active = Some(now);
                out.push(own.random_with_prefix(i, rng));
            }
        }
        out
    }

    /// Members in the good state: what is worth saving across restarts.
    pub fn good_nodes(&self, now: Instant) -> Vec<CompactNode> {
        self.iter().filter(|e| e.state(now, &self.config) == NodeState::Good).map(|e| e.node).collect()
    }

    /// Members of all buckets (not the replacement caches).
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// Members that are not bad.
    pub fn len(&self) -> usize {
        self.iter().filter(|e| !e.is_bad(&self.config)).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.find_member(id).is_some()
    }

    /// Remembers the `v` a member sent from its own address.
    pub fn note_version(&mut self, node: &CompactNode, version: &[u8]) {
        if let Some((b, pos)) = self.find_member(&node.id) {
            let e = &mut self.buckets[b].nodes[pos];
            if e.node.addr == node.addr {
                e.version = Some(ClientVersion::new(version));
            }
        }
    }

    /// Members per client code (`LT`, `UT`, ...; `none` for nodes that sent no `v`).
    pub fn clients(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for e in self.iter() {
            let name = e.version.map_or_else(|| "none".to_string(), |v| v.client());
            *out.entry(name).or_insert(0) += 1;
        }
        out
    }

    /// (members, replacement candidates) per bucket, shallowest first.
    pub fn bucket_summary(&self) -> Vec<(usize, usize)> {
        self.buckets.iter().map(|b| (b.nodes.len(), b.replacements.len())).collect()
    }
}

/// The XOR distance of `a` and `b` as (first 128 bits, last 32 bits): compared as a tuple, it
/// orders exactly as `a.distance(b)` does, since both read the bytes big-endian.
fn distance_key(a: &Id, b: &Id) -> (u128, u32) {
    let d = a.distance(b).0;
    let mut hi = [0u8; 16];
    let mut lo = [0u8; 4];
    hi.copy_from_slice(&d[..16]);
    lo.copy_from_slice(&d[16..]);
    (u128::from_be_bytes(hi), u32::from_be_bytes(lo))
}

#[cfg(test)]
mod tests;
