//! The pool of a bootstrap node (issue 10 item 6): up to a million DHT nodes that proved their
//! address by answering a ping, handed out by XOR closeness to the target of each find_node or
//! get_peers. Modelled on bootstrap-dht, the software of router.utorrent.com; the lesson of
//! router.bittorrent.com in 2013 is that a router answering from its few routing-table entries
//! floods those nodes, so the answers must be spread over a large pool.
//!
//! Rules of entry (the caller has verified the address): BEP 42 ids for public addresses, one
//! entry per host ([`host_key`]: an IPv4 address, an IPv6 /64), no room made by eviction.
//! Entries not heard from for `max_age` are handed back by [`Pool::sweep`] to be pinged again,
//! and dropped once they stay silent for `grace` more.
//!
//! Layout, chosen for memory (measured in `tests/pool_memory.rs`): one shard per address
//! family, each an array of `2^bits` buckets indexed by the first `bits` bits of the id, each
//! bucket an unsorted vector of 32-byte entries (44 for IPv6) kept at its exact length. The
//! array doubles when buckets average more than [`GROW_AT`] entries. Two consequences:
//! - Closest search is exact and cheap: the buckets that share the first `bits - s` bits with
//!   the target form one aligned run; every id inside it is closer to the target than any id
//!   outside it, so the smallest such run holding k entries holds the k closest.
//! - No index by address is needed for public addresses: a BEP 42 id's first 21 bits are the
//!   CRC of its address and 3 bits of its last byte, so the entry of an address can only be in
//!   one of 8 buckets. Exempt addresses (loopback, private), whose ids are free, are indexed
//!   in a small map.
//!
//! Sans-IO: time comes in as `now`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::dht::bep42;
use crate::dht::compact::CompactNode;
use crate::id::{Id, ID_LEN};
use crate::net::addr::host_key;

/// Buckets are split once they average more than this many entries.
pub const GROW_AT: usize = 16;
const MIN_BITS: u32 = 4;
/// BEP 42 fixes 21 bits of an id; the bucket of a public address is known only up to them.
const MAX_BITS: u32 = 21;
/// Pool clock values start here, so that "seen long ago" (loaded entries) never underflows.
const CLOCK_BASE: u32 = 1 << 24;

/// Tunables of the pool and of the bootstrap role that fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Entries at most, both address families together.
    pub capacity: usize,
    /// An entry not heard from for this long is pinged again ...
    pub max_age: Duration,
    /// ... and dropped when it stays silent this much longer. Every entry is looked at at least
    /// twice within this time.
    pub grace: Duration,
    /// Verification pings to new nodes per second at most (the burst is one second's worth).
    pub verify_pings_per_sec: u32,
    /// How often the secret of the ping cookies changes (the previous one stays valid).
    pub cookie_rotation: Duration,
}

impl Default for PoolConfig {
    /// bootstrap-dht's figures, scaled: a million nodes (about 34 MB), re-verified every two
    /// hours, 2,000 verification pings a second, cookie secrets rotated every 10 minutes.
    fn default() -> Self {
        PoolConfig {
            capacity: 1_000_000,
            max_age: Duration::from_secs(2 * 3600),
            grace: Duration::from_secs(30 * 60),
            verify_pings_per_sec: 2000,
            cookie_rotation: Duration::from_secs(600),
        }
    }
}

/// What [`Pool::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolInsert {
    Added,
    /// The same node again: its age starts over.
    Refreshed,
    /// The host had an entry with another port or id; the new one took its place.
    Replaced {
        old: CompactNode,
    },
    /// A public address with an id BEP 42 does not allow for it.
    InvalidId,
    /// The pool is full; nothing is evicted to make room (an attacker with many addresses
    /// could otherwise push out nodes that keep answering).
    Full,
}

impl PoolInsert {
    pub fn entered(self) -> bool {
        matches!(self, PoolInsert::Added | PoolInsert::Refreshed | PoolInsert::Replaced { .. })
    }
}

/// One node; `N` is 4 (IPv4) or 16 (IPv6). 32 and 44 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry<const N: usize> {
    id: [u8; ID_LEN],
    ip: [u8; N],
    port: u16,
    /// Pool clock (seconds) when it last answered.
    seen: u32,
}

impl<const N: usize> Entry<N> {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(ip_from(&self.ip), self.port)
    }

    fn node(&self) -> CompactNode {
        CompactNode { id: Id(self.id), addr: self.addr() }
    }
}

fn ip_from(bytes: &[u8]) -> IpAddr {
    match <[u8; 4]>::try_from(bytes) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => {
            let mut v6 = [0u8; 16];
            v6.copy_from_slice(bytes);
            IpAddr::V6(Ipv6Addr::from(v6))
        }
    }
}

/// The pool clock now, and the ages (seconds) at which an entry is stale and dead.
#[derive(Clone, Copy)]
struct Ages {
    now: u32,
    stale: u32,
    dead: u32,
}

/// The entries of one address family.
struct Shard<const N: usize> {
    bits: u32,
    buckets: Vec<Vec<Entry<N>>>,
    len: usize,
    /// Next bucket the sweep looks at.
    sweep_at: usize,
}

impl<const N: usize> Shard<N> {
    fn new() -> Self {
        Shard { bits: MIN_BITS, buckets: vec![Vec::new(); 1 << MIN_BITS], len: 0, sweep_at: 0 }
    }

    fn bucket_of(&self, id: &[u8; ID_LEN]) -> usize {
        (u32::from_be_bytes([id[0], id[1], id[2], id[3]]) >> (32 - self.bits)) as usize
    }

    fn push(&mut self, e: Entry<N>) {
        let b = self.bucket_of(&e.id);
        let bucket = &mut self.buckets[b];
        // Exact capacities: a vector's usual doubling would cost a third more memory.
        bucket.reserve_exact(1);
        bucket.push(e);
        self.len += 1;
        if self.len > GROW_AT * self.buckets.len() && self.bits < MAX_BITS {
            self.grow();
        }
    }

    fn remove(&mut self, b: usize, i: usize) -> Entry<N> {
        let bucket = &mut self.buckets[b];
        let e = bucket.swap_remove(i);
        bucket.shrink_to_fit();
        self.len -= 1;
        e
    }

    /// Splits every bucket in two by the next bit of the id.
    fn grow(&mut self) {
        self.bits += 1;
        let shift = 32 - self.bits;
        let old = std::mem::take(&mut self.buckets);
        self.buckets = Vec::with_capacity(old.len() * 2);
        for bucket in old {
            let (high, low): (Vec<_>, Vec<_>) = bucket
                .into_iter()
                .partition(|e| (u32::from_be_bytes([e.id[0], e.id[1], e.id[2], e.id[3]]) >> shift) & 1 == 1);
            let exact = |v: Vec<Entry<N>>| {
                let mut out = Vec::with_capacity(v.len());
                out.extend(v);
                out
            };
            self.buckets.push(exact(low));
            self.buckets.push(exact(high));
        }
        self.sweep_at *= 2;
    }

    fn find(&self, id: &[u8; ID_LEN], addr: SocketAddr) -> Option<(usize, usize)> {
        let b = self.bucket_of(id);
        let i = self.buckets[b].iter().position(|e| e.id == *id && e.addr() == addr)?;
        Some((b, i))
    }

    /// The entry of the host `key` belongs to, among the buckets a BEP 42 id for `ip` can be in.
    fn find_public_host(&self, ip: IpAddr, key: u128) -> Option<(usize, usize)> {
        let mut seen = [usize::MAX; 8];
        for r in 0..8u8 {
            let b = (bep42::ip_crc(ip, r) >> (32 - self.bits)) as usize;
            if seen.contains(&b) {
                continue;
            }
            seen[r as usize] = b;
            if let Some(i) = self.buckets[b].iter().position(|e| host_key(e.addr()) == key) {
                return Some((b, i));
            }
        }
        None
    }

    /// The `k` entries closest to `target`, closest first (all of them when fewer).
    fn closest(&self, target: &Id, k: usize) -> Vec<CompactNode> {
        if k == 0 || self.len == 0 {
            return Vec::new();
        }
        let t = self.bucket_of(&target.0);
        // Widen the run of buckets sharing all but the last `span` bucket bits with the
        // target until it holds k entries: everything outside it is farther than all inside.
        let mut span = 0;
        let mut count = self.buckets[t].len();
        while count < k && span < self.bits {
            let sibling = ((t >> span) ^ 1) << span;
            count += self.buckets[sibling..sibling + (1 << span)].iter().map(Vec::len).sum::<usize>();
            span += 1;
        }
        let lo = (t >> span) << span;
        let mut found: Vec<&Entry<N>> = self.buckets[lo..lo + (1 << span)].iter().flatten().collect();
        let distance = |e: &&Entry<N>| Id(e.id).distance(target);
        if found.len() > k {
            found.select_nth_unstable_by_key(k - 1, distance);
            found.truncate(k);
        }
        found.sort_unstable_by_key(distance);
        found.into_iter().map(Entry::node).collect()
    }

    /// Looks at whole buckets from where the last sweep stopped until `visits` entries were
    /// seen (or all of them): the dead are removed into `dropped`, the stale copied to `stale`.
    fn sweep(&mut self, ages: Ages, visits: usize, stale: &mut Vec<CompactNode>, dropped: &mut Vec<CompactNode>) {
        let mut visited = 0;
        for _ in 0..self.buckets.len() {
            if visited >= visits {
                break;
            }
            let b = self.sweep_at;
            let mut i = 0;
            while let Some(&e) = self.buckets[b].get(i) {
                visited += 1;
                let age = ages.now.saturating_sub(e.seen);
                if age >= ages.dead {
                    self.remove(b, i); // the last entry moves into slot i
                    dropped.push(e.node());
                    continue;
                }
                if age >= ages.stale {
                    stale.push(e.node());
                }
                i += 1;
            }
            self.sweep_at = (b + 1) % self.buckets.len();
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Entry<N>> + '_ {
        self.buckets.iter().flatten()
    }

    fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Vec<Entry<N>>>()
            + self.buckets.iter().map(|b| b.capacity() * std::mem::size_of::<Entry<N>>()).sum::<usize>()
    }
}

/// Verified nodes of both address families. See the module documentation.
pub struct Pool {
    config: PoolConfig,
    origin: Instant,
    v4: Shard<4>,
    v6: Shard<16>,
    /// The id of each entry whose address BEP 42 exempts, by host.
    exempt: HashMap<u128, Id>,
    /// Entries added, replaced or dropped since the pool was made, and at the last save.
    changes: u64,
    saved_changes: u64,
}

/// Where an entry is: family, bucket, index.
#[derive(Clone, Copy)]
enum Slot {
    V4(usize, usize),
    V6(usize, usize),
}

/// IPv4-mapped IPv6 addresses are IPv4 nodes.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

impl Pool {
    pub fn new(config: PoolConfig, now: Instant) -> Pool {
        Pool {
            config,
            origin: now,
            v4: Shard::new(),
            v6: Shard::new(),
            exempt: HashMap::new(),
            changes: 0,
            saved_changes: 0,
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clock(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.origin).as_secs();
        CLOCK_BASE.saturating_add(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    /// Whether exactly this node (id and address) is in the pool.
    pub fn contains(&self, node: &CompactNode) -> bool {
        let addr = canonical(node.addr);
        match addr.ip() {
            IpAddr::V4(_) => self.v4.find(&node.id.0, addr).is_some(),
            IpAddr::V6(_) => self.v6.find(&node.id.0, addr).is_some(),
        }
    }

    /// The entry of the host `addr` belongs to, if any.
    pub fn host_entry(&self, addr: SocketAddr) -> Option<CompactNode> {
        let slot = self.find_host(canonical(addr))?;
        Some(match slot {
            Slot::V4(b, i) => self.v4.buckets[b][i].node(),
            Slot::V6(b, i) => self.v6.buckets[b][i].node(),
        })
    }

    fn find_host(&self, addr: SocketAddr) -> Option<Slot> {
        let key = host_key(addr);
        let ip = addr.ip();
        if bep42::is_exempt(ip) {
            let id = self.exempt.get(&key)?;
            return self.locate(id, addr.is_ipv4(), |a| host_key(a) == key);
        }
        match ip {
            IpAddr::V4(_) => self.v4.find_public_host(ip, key).map(|(b, i)| Slot::V4(b, i)),
            IpAddr::V6(_) => self.v6.find_public_host(ip, key).map(|(b, i)| Slot::V6(b, i)),
        }
    }

    fn locate(&self, id: &Id, v4: bool, matches: impl Fn(SocketAddr) -> bool) -> Option<Slot> {
        if v4 {
            let b = self.v4.bucket_of(&id.0);
            let i = self.v4.buckets[b].iter().position(|e| e.id == id.0 && matches(e.addr()))?;
            Some(Slot::V4(b, i))
        } else {
            let b = self.v6.bucket_of(&id.0);
            let i = self.v6.buckets[b].iter().position(|e| e.id == id.0 && matches(e.addr()))?;
            Some(Slot::V6(b, i))
        }
    }

    fn remove(&mut self, slot: Slot) -> CompactNode {
        let node = match slot {
            Slot::V4(b, i) => self.v4.remove(b, i).node(),
            Slot::V6(b, i) => self.v6.remove(b, i).node(),
        };
        if bep42::is_exempt(node.addr.ip()) {
            self.exempt.remove(&host_key(node.addr));
        }
        self.changes += 1;
        node
    }

    /// Takes in a node whose address answered us just now.
    pub fn insert(&mut self, now: Instant, node: CompactNode) -> PoolInsert {
        let seen = self.clock(now);
        self.insert_seen(node, seen)
    }

    fn insert_seen(&mut self, node: CompactNode, seen: u32) -> PoolInsert {
        let addr = canonical(node.addr);
        let ip = addr.ip();
        if !bep42::is_valid_id(&node.id, ip) {
            return PoolInsert::InvalidId;
        }
        let mut replaced = None;
        if let Some(slot) = self.find_host(addr) {
            let same = |id: [u8; ID_LEN], a: SocketAddr| Id(id) == node.id && a == addr;
            match slot {
                Slot::V4(b, i) if same(self.v4.buckets[b][i].id, self.v4.buckets[b][i].addr()) => {
                    let e = &mut self.v4.buckets[b][i];
                    e.seen = e.seen.max(seen);
                    return PoolInsert::Refreshed;
                }
                Slot::V6(b, i) if same(self.v6.buckets[b][i].id, self.v6.buckets[b][i].addr()) => {
                    let e = &mut self.v6.buckets[b][i];
                    e.seen = e.seen.max(seen);
                    return PoolInsert::Refreshed;
                }
                _ => replaced = Some(self.remove(slot)),
            }
        }
        if replaced.is_none() && self.len() >= self.config.capacity {
            return PoolInsert::Full;
        }
        match ip {
            IpAddr::V4(v4) => self.v4.push(Entry { id: node.id.0, ip: v4.octets(), port: addr.port(), seen }),
            IpAddr::V6(v6) => self.v6.push(Entry { id: node.id.0, ip: v6.octets(), port: addr.port(), seen }),
        }
        if bep42::is_exempt(ip) {
            self.exempt.insert(host_key(addr), node.id);
        }
        self.changes += 1;
        match replaced {
            Some(old) => PoolInsert::Replaced { old },
            None => PoolInsert::Added,
        }
    }

    /// Takes in nodes saved by an earlier run. They are served at once but count as not heard
    /// from for `max_age`, so the sweep pings each of them again before long. Returns how
    /// many entered.
    pub fn load(&mut self, now: Instant, nodes: &[CompactNode]) -> usize {
        let stale = self.clock(now).saturating_sub(self.config.max_age.as_secs().min(CLOCK_BASE as u64) as u32);
        nodes.iter().filter(|n| self.insert_seen(**n, stale).entered()).count()
    }

    /// The `k` nodes of one family (`v6`) closest to `target`, closest first.
    pub fn closest(&self, target: &Id, v6: bool, k: usize) -> Vec<CompactNode> {
        if v6 {
            self.v6.closest(target, k)
        } else {
            self.v4.closest(target, k)
        }
    }

    /// Entries looked at per sweep, called once a second: every entry at least twice per
    /// `grace`, so that none is dropped without having been pinged.
    pub fn sweep_batch(&self) -> usize {
        let period = (self.config.grace.as_secs() / 2).max(1) as usize;
        self.len().div_ceil(period).max(GROW_AT)
    }

    /// Looks at the next [`Pool::sweep_batch`] entries (whole buckets, round robin): drops
    /// those silent for `max_age + grace` and returns those silent for `max_age`, to be
    /// pinged again.
    pub fn sweep(&mut self, now: Instant) -> Vec<CompactNode> {
        let secs = |d: Duration| d.as_secs().min(CLOCK_BASE as u64) as u32;
        let ages = Ages {
            now: self.clock(now),
            stale: secs(self.config.max_age),
            dead: secs(self.config.max_age) + secs(self.config.grace),
        };
        // Each family gets a share of the batch as large as its share of the pool (rounded
        // up, so that a handful of entries of one family is not starved by the other).
        let batch = self.sweep_batch();
        let share = |family_len: usize| (batch * family_len).div_ceil(self.len().max(1));
        let (visits4, visits6) = (share(self.v4.len), share(self.v6.len));
        let (mut stale, mut dropped) = (Vec::new(), Vec::new());
        self.v4.sweep(ages, visits4, &mut stale, &mut dropped);
        self.v6.sweep(ages, visits6, &mut stale, &mut dropped);
        for node in &dropped {
            if bep42::is_exempt(node.addr.ip()) {
                self.exempt.remove(&host_key(node.addr));
            }
        }
        self.changes += dropped.len() as u64;
        stale
    }

    /// Every entry, IPv4 first, in no useful order.
    pub fn iter(&self) -> impl Iterator<Item = CompactNode> + '_ {
        self.v4.iter().map(Entry::node).chain(self.v6.iter().map(Entry::node))
    }

    /// Entries per family: (IPv4, IPv6).
    pub fn family_lens(&self) -> (usize, usize) {
        (self.v4.len, self.v6.len)
    }

    /// Heap bytes of the entries and buckets (the map of exempt addresses not counted).
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }

    /// Whether entries came or went since [`Pool::mark_saved`].
    pub fn unsaved(&self) -> bool {
        self.changes != self.saved_changes
    }

    pub fn mark_saved(&mut self) {
        self.saved_changes = self.changes;
    }
}

#[cfg(test)]
mod tests;
