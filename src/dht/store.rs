//! The peer store behind announce_peer and get_peers (BEP 5), sample_infohashes (BEP 51) and
//! scrapes (BEP 33):
//! write tokens bound to the querier's IP and a rotating secret, announced peers with expiry,
//! and hard caps so that the memory a node spends on strangers stays bounded.
//!
//! One host must not be able to own it. An announce stores (source IP, any port), so the
//! caps are counted per host (an IPv4 address, an IPv6 /64) and per network (IPv4 /24, IPv6
//! /48): a few entries per host in a swarm, where a further port replaces that host's
//! stalest entry; a few hosts' worth per network in a swarm; and a budget per host and per
//! network across all swarms. When the store is full it refuses newcomers (and withholds
//! write tokens, so announces go to the neighbouring nodes) rather than evicting live swarms.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt};
use sha1::{Digest, Sha1};

use crate::dht::bloom::Bloom;
use crate::id::InfoHash;
use crate::net::addr::{host_key, net_key, KeyCounts};

/// Bytes of a write token: enough that guessing one is hopeless, short on the wire.
const TOKEN_LEN: usize = 8;
/// How often expired peers are swept out.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Bytes one stored peer costs, all in (its entry, its share of the swarm's map and of the
/// per-host and per-network counts): `tests/store_memory.rs` measures about 314 on a full
/// default store. The metrics multiply the peer count by it for an estimate of the store's
/// memory, without walking the store.
pub const BYTES_PER_PEER_ESTIMATE: usize = 320;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Distinct info-hashes stored at most; beyond it new swarms are refused.
    pub max_info_hashes: usize,
    /// Peers per info-hash at most; beyond it newcomers are refused until entries expire.
    pub max_peers_per_hash: usize,
    /// Peers stored at most, over all swarms.
    pub max_peers: usize,
    /// Entries one host (IPv4 address, IPv6 /64) may hold in one swarm; another port from it
    /// replaces its stalest entry there.
    pub max_per_host_per_swarm: usize,
    /// Entries one network (IPv4 /24, IPv6 /48) may hold in one swarm.
    pub max_per_net_per_swarm: usize,
    /// Entries one host may hold over all swarms.
    pub max_per_host: usize,
    /// Entries one network may hold over all swarms.
    pub max_per_net: usize,
    /// An announced peer is forgotten this long after its last announce (BEP 5: 30 minutes).
    pub peer_ttl: Duration,
    /// The token secret changes this often; a token stays valid for two periods.
    pub secret_rotation: Duration,
    /// Peers returned in one get_peers answer, for IPv4; IPv6 answers carry a third as many
    /// so both stay within one unfragmented datagram.
    pub max_values: usize,
    /// Info-hashes in one sample_infohashes answer (BEP 51 allows what fits a packet).
    pub max_samples: usize,
    /// The `interval` of sample_infohashes answers: how long a crawler should wait.
    pub sample_interval: Duration,
}

impl Default for StoreConfig {
    /// 200,000 peers at about 320 bytes each (entries, per-host and per-network counts;
    /// measured by `tests/store_memory.rs`) is about 60 MiB: well inside the 512 MiB the
    /// service unit allows.
    fn default() -> Self {
        StoreConfig {
            max_info_hashes: 20_000,
            max_peers_per_hash: 1000,
            max_peers: 200_000,
            max_per_host_per_swarm: 4,
            max_per_net_per_swarm: 16,
            max_per_host: 64,
            max_per_net: 256,
            peer_ttl: Duration::from_secs(30 * 60),
            secret_rotation: Duration::from_secs(5 * 60),
            max_values: 100,
            max_samples: 20,
            sample_interval: Duration::from_secs(6 * 3600),
        }
    }
}

/// What became of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// A new entry.
    Stored,
    /// The same address announced again: its time was renewed.
    Refreshed,
    /// The host was at its cap in this swarm: its stalest entry gave way to this one.
    ReplacedOwn,
    /// Not stored: which cap said no.
    Refused(Refusal),
}

impl Announced {
    pub fn stored(self) -> bool {
        !matches!(self, Announced::Refused(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Disabled,
    StoreFull,
    SwarmFull,
    HostCap,
    NetCap,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: u16,
    seed: bool,
    /// Seconds since the store's epoch: 4 bytes instead of an `Instant`'s 16.
    announced: u32,
}

#[derive(Debug, Default)]
struct Swarm {
    peers: HashMap<IpAddr, Vec<Entry>>,
    /// Entries per host key and per network key in this swarm.
    counts: KeyCounts,
    len: usize,
    /// Where this swarm's key sits in `PeerStore::keys`, for O(1) random sampling.
    slot: usize,
}

pub struct PeerStore {
    config: StoreConfig,
    epoch: Instant,
    secret: [u8; 16],
    previous_secret: [u8; 16],
    next_rotation: Instant,
    next_sweep: Instant,
    swarms: HashMap<InfoHash, Swarm>,
    keys: Vec<InfoHash>,
    /// Entries per host key and per network key over all swarms.
    counts: KeyCounts,
    peers: usize,
}

impl PeerStore {
    pub fn new<R: Rng + ?Sized>(config: StoreConfig, now: Instant, rng: &mut R) -> PeerStore {
        let secret: [u8; 16] = rng.random();
        PeerStore {
            next_rotation: now + config.secret_rotation,
            next_sweep: now + SWEEP_INTERVAL,
            epoch: now,
            config,
            secret,
            previous_secret: secret,
            swarms: HashMap::new(),
            keys: Vec::new(),
            counts: KeyCounts::default(),
            peers: 0,
        }
    }

    fn token_with(secret: &[u8; 16], ip: IpAddr) -> Vec<u8> {
        let mut h = Sha1::new();
        h.update(secret);
        match ip {
            IpAddr::V4(v4) => h.update(v4.octets()),
            IpAddr::V6(v6) => h.update(v6.octets()),
        }
        h.finalize()[..TOKEN_LEN].to_vec()
    }

    /// The token we hand out with get_peers answers to a querier at `ip`.
    pub fn token_for(&self, ip: IpAddr) -> Vec<u8> {
        Self::token_with(&self.secret, ip)
    }

    /// Whether `token` was handed to `ip` within the last two secret periods.
    pub fn token_valid(&self, ip: IpAddr, token: &[u8]) -> bool {
        token.len() == TOKEN_LEN
            && (Self::token_with(&self.secret, ip) == token || Self::token_with(&self.previous_secret, ip) == token)
    }

    /// Whether an announce for `info_hash` could be stored at all: when not, get_peers
    /// answers carry no token, so the querier announces to other nodes instead.
    pub fn has_room_for(&self, info_hash: &InfoHash) -> bool {
        if self.config.max_info_hashes == 0
            || self.config.max_peers_per_hash == 0
            || self.peers >= self.config.max_peers
        {
            return false;
        }
        match self.swarms.get(info_hash) {
            Some(s) => s.len < self.config.max_peers_per_hash,
            None => self.swarms.len() < self.config.max_info_hashes,
        }
    }

    fn secs(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_secs().min(u32::MAX as u64) as u32
    }

    fn is_live(&self, now_s: u32, e: &Entry) -> bool {
        (now_s.saturating_sub(e.announced) as u64) < self.config.peer_ttl.as_secs()
    }

    /// Stores (or refreshes) `peer` for `info_hash`, within the caps.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, peer: SocketAddr, seed: bool) -> Announced {
        let cfg = &self.config;
        if cfg.max_info_hashes == 0 || cfg.max_peers_per_hash == 0 || cfg.max_per_host_per_swarm == 0 {
            return Announced::Refused(Refusal::Disabled);
        }
        let now_s = self.secs(now);
        let (host, net) = (host_key(peer), net_key(peer));
        let fresh = Entry { port: peer.port(), seed, announced: now_s };
        if let Some(swarm) = self.swarms.get_mut(&info_hash) {
            if let Some(list) = swarm.peers.get_mut(&peer.ip()) {
                if let Some(e) = list.iter_mut().find(|e| e.port == peer.port()) {
                    *e = fresh;
                    return Announced::Refreshed;
                }
            }
            if swarm.counts.get(host) >= cfg.max_per_host_per_swarm {
                // The host is at its cap here: another port of it replaces its own stalest
                // entry (a client that restarted on a new port), never somebody else's.
                return Self::replace_own(swarm, peer, host, fresh);
            }
        }
        if self.peers >= cfg.max_peers {
            return Announced::Refused(Refusal::StoreFull);
        }
        if self.counts.get(host) >= cfg.max_per_host {
            return Announced::Refused(Refusal::HostCap);
        }
        if self.counts.get(net) >= cfg.max_per_net {
            return Announced::Refused(Refusal::NetCap);
        }
        if !self.swarms.contains_key(&info_hash) {
            if self.swarms.len() >= cfg.max_info_hashes {
                return Announced::Refused(Refusal::StoreFull);
            }
            let slot = self.keys.len();
            self.keys.push(info_hash);
            self.swarms.insert(info_hash, Swarm { slot, ..Swarm::default() });
        }
        let Some(swarm) = self.swarms.get_mut(&info_hash) else { return Announced::Refused(Refusal::Disabled) };
        if swarm.len >= cfg.max_peers_per_hash {
            return Announced::Refused(Refusal::SwarmFull);
        }
        if swarm.counts.get(net) >= cfg.max_per_net_per_swarm {
            return Announced::Refused(Refusal::NetCap);
        }
        swarm.peers.entry(peer.ip()).or_default().push(fresh);
        swarm.len += 1;
        swarm.counts.add(host);
        swarm.counts.add(net);
        self.counts.add(host);
        self.counts.add(net);
        self.peers += 1;
        Announced::Stored
    }

    fn replace_own(swarm: &mut Swarm, peer: SocketAddr, host: u128, fresh: Entry) -> Announced {
        // The host's entries may sit under several addresses (an IPv6 /64).
        let stalest = swarm
            .peers
            .iter()
            .filter(|(ip, _)| host_key(SocketAddr::new(**ip, peer.port())) == host)
            .flat_map(|(ip, list)| list.iter().enumerate().map(move |(i, e)| (e.announced, *ip, i)))
            .min_by_key(|(t, _, _)| *t);
        let Some((_, ip, i)) = stalest else { return Announced::Refused(Refusal::HostCap) };
        if ip == peer.ip() {
            if let Some(list) = swarm.peers.get_mut(&ip) {
                list[i] = fresh;
            }
        } else {
            if let Some(list) = swarm.peers.get_mut(&ip) {
                list.swap_remove(i);
                if list.is_empty() {
                    swarm.peers.remove(&ip);
                }
            }
            swarm.peers.entry(peer.ip()).or_default().push(fresh);
        }
        Announced::ReplacedOwn
    }

    fn remove_swarm(&mut self, key: &InfoHash) {
        let Some(swarm) = self.swarms.remove(key) else { return };
        for (ip, list) in &swarm.peers {
            for e in list {
                let a = SocketAddr::new(*ip, e.port);
                self.counts.remove(host_key(a));
                self.counts.remove(net_key(a));
            }
        }
        self.peers -= swarm.len;
        self.keys.swap_remove(swarm.slot);
        if let Some(moved) = self.keys.get(swarm.slot).copied() {
            if let Some(s) = self.swarms.get_mut(&moved) {
                s.slot = swarm.slot;
            }
        }
    }

    /// Up to a packet's worth of live peers of `info_hash` in the querier's family, at random.
    pub fn get_peers<R: Rng + ?Sized>(
        &self,
        now: Instant,
        info_hash: &InfoHash,
        v6: bool,
        rng: &mut R,
    ) -> Vec<SocketAddr> {
        let Some(swarm) = self.swarms.get(info_hash) else { return Vec::new() };
        let limit = if v6 { self.config.max_values / 3 } else { self.config.max_values };
        let now_s = self.secs(now);
        let mut live: Vec<SocketAddr> = swarm
            .peers
            .iter()
            .filter(|(ip, _)| ip.is_ipv6() == v6)
            .flat_map(|(ip, list)| {
                list.iter().filter(|e| self.is_live(now_s, e)).map(move |e| SocketAddr::new(*ip, e.port))
            })
            .collect();
        // A partial Fisher-Yates shuffle: only the first `limit` places are drawn.
        let take = limit.min(live.len());
        for i in 0..take {
            let j = rng.random_range(i..live.len());
            live.swap(i, j);
        }
        live.truncate(take);
        live
    }

    /// Whether `peer` announced itself as a seed for `info_hash` (BEP 33 bookkeeping).
    pub fn is_seed(&self, info_hash: &InfoHash, peer: &SocketAddr) -> Option<bool> {
        let list = self.swarms.get(info_hash)?.peers.get(&peer.ip())?;
        list.iter().find(|e| e.port == peer.port()).map(|e| e.seed)
    }

    /// BEP 33 filters of the live peers of `info_hash`: (seeds, others); `None` when we hold
    /// none. The work is bounded by the swarm cap.
    pub fn scrape(&self, now: Instant, info_hash: &InfoHash) -> Option<(Bloom, Bloom)> {
        let swarm = self.swarms.get(info_hash)?;
        let now_s = self.secs(now);
        let (mut seeds, mut peers) = (Bloom::default(), Bloom::default());
        for (ip, list) in &swarm.peers {
            for e in list.iter().filter(|e| self.is_live(now_s, e)) {
                if e.seed {
                    seeds.insert_ip(*ip)
                } else {
                    peers.insert_ip(*ip)
                }
            }
        }
        Some((seeds, peers))
    }

    /// A random sample of stored info-hashes and how many there are (BEP 51).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> (Vec<InfoHash>, usize) {
        let n = self.keys.len();
        let take = self.config.max_samples.min(n);
        let picked = rand::seq::index::sample(rng, n, take);
        (picked.into_iter().map(|i| self.keys[i]).collect(), n)
    }

    /// Rotates the token secret and sweeps expired peers when their time has come.
    pub fn tick<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        if now >= self.next_rotation {
            self.previous_secret = self.secret;
            self.secret = rng.random();
            self.next_rotation = now + self.config.secret_rotation;
        }
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + SWEEP_INTERVAL;
        }
    }

    fn sweep(&mut self, now: Instant) {
        let now_s = self.secs(now);
        let ttl = self.config.peer_ttl.as_secs();
        let live = |e: &Entry| (now_s.saturating_sub(e.announced) as u64) < ttl;
        let mut removed = 0;
        let mut empty = Vec::new();
        for (key, swarm) in self.swarms.iter_mut() {
            swarm.peers.retain(|ip, list| {
                list.retain(|e| {
                    if live(e) {
                        return true;
                    }
                    let a = SocketAddr::new(*ip, e.port);
                    for k in [host_key(a), net_key(a)] {
                        swarm.counts.remove(k);
                        self.counts.remove(k);
                    }
                    swarm.len -= 1;
                    removed += 1;
                    false
                });
                !list.is_empty()
            });
            if swarm.len == 0 {
                empty.push(*key);
            }
        }
        self.peers -= removed;
        for key in empty {
            self.remove_swarm(&key);
        }
    }

    pub fn next_deadline(&self) -> Instant {
        self.next_rotation.min(self.next_sweep)
    }

    pub fn info_hash_count(&self) -> usize {
        self.swarms.len()
    }

    pub fn peer_count(&self) -> usize {
        self.peers
    }

    /// Entries `addr`'s host holds over all swarms.
    pub fn host_entries(&self, addr: SocketAddr) -> usize {
        self.counts.get(host_key(addr))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn sample_interval(&self) -> Duration {
        self.config.sample_interval
    }
}

#[cfg(test)]
mod tests;
