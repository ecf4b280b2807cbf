//! The peer store behind announce_peer and get_peers (BEP 5) and sample_infohashes (BEP 51):
//! write tokens bound to the querier's IP and a rotating secret, announced peers with expiry,
//! and hard caps so that the memory a node spends on strangers stays bounded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt};
use sha1::{Digest, Sha1};

use crate::id::InfoHash;

/// Bytes of a write token: enough that guessing one is hopeless, short on the wire.
const TOKEN_LEN: usize = 8;
/// How often expired peers are swept out.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Distinct info-hashes stored at most; the one with the fewest peers makes room.
    pub max_info_hashes: usize,
    /// Peers per info-hash at most; the stalest one makes room for a newcomer.
    pub max_peers_per_hash: usize,
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
    fn default() -> Self {
        StoreConfig {
            max_info_hashes: 5000,
            max_peers_per_hash: 1000,
            peer_ttl: Duration::from_secs(30 * 60),
            secret_rotation: Duration::from_secs(5 * 60),
            max_values: 100,
            max_samples: 20,
            sample_interval: Duration::from_secs(6 * 3600),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PeerEntry {
    announced: Instant,
    seed: bool,
}

#[derive(Debug, Default)]
struct Swarm {
    peers: HashMap<SocketAddr, PeerEntry>,
    /// Where this swarm's key sits in `PeerStore::keys`, for O(1) random sampling.
    slot: usize,
}

pub struct PeerStore {
    config: StoreConfig,
    secret: [u8; 16],
    previous_secret: [u8; 16],
    next_rotation: Instant,
    next_sweep: Instant,
    swarms: HashMap<InfoHash, Swarm>,
    keys: Vec<InfoHash>,
    peers: usize,
}

impl PeerStore {
    pub fn new<R: Rng + ?Sized>(config: StoreConfig, now: Instant, rng: &mut R) -> PeerStore {
        let secret: [u8; 16] = rng.random();
        PeerStore {
            next_rotation: now + config.secret_rotation,
            next_sweep: now + SWEEP_INTERVAL,
            config,
            secret,
            previous_secret: secret,
            swarms: HashMap::new(),
            keys: Vec::new(),
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

    /// Stores (or refreshes) `peer` for `info_hash`. False when the store declined it.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, peer: SocketAddr, seed: bool) -> bool {
        if self.config.max_info_hashes == 0 || self.config.max_peers_per_hash == 0 {
            return false;
        }
        if !self.swarms.contains_key(&info_hash) {
            if self.swarms.len() >= self.config.max_info_hashes {
                self.evict_smallest_swarm();
            }
            let slot = self.keys.len();
            self.keys.push(info_hash);
            self.swarms.insert(info_hash, Swarm { peers: HashMap::new(), slot });
        }
        let Some(swarm) = self.swarms.get_mut(&info_hash) else { return false };
        let entry = PeerEntry { announced: now, seed };
        if let Some(existing) = swarm.peers.get_mut(&peer) {
            *existing = entry;
            return true;
        }
        if swarm.peers.len() >= self.config.max_peers_per_hash {
            // The peer that announced longest ago makes room: it is the likeliest to be gone.
            let victim = swarm.peers.iter().min_by_key(|(_, e)| e.announced).map(|(a, _)| *a);
            if let Some(victim) = victim {
                swarm.peers.remove(&victim);
                self.peers -= 1;
            }
        }
        swarm.peers.insert(peer, entry);
        self.peers += 1;
        true
    }

    fn evict_smallest_swarm(&mut self) {
        let victim = self.swarms.iter().min_by_key(|(_, s)| s.peers.len()).map(|(k, _)| *k);
        if let Some(k) = victim {
            self.remove_swarm(&k);
        }
    }

    fn remove_swarm(&mut self, key: &InfoHash) {
        let Some(swarm) = self.swarms.remove(key) else { return };
        self.peers -= swarm.peers.len();
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
        let mut live: Vec<SocketAddr> = swarm
            .peers
            .iter()
            .filter(|(a, e)| a.is_ipv6() == v6 && now.saturating_duration_since(e.announced) < self.config.peer_ttl)
            .map(|(a, _)| *a)
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
        self.swarms.get(info_hash)?.peers.get(peer).map(|e| e.seed)
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
        let ttl = self.config.peer_ttl;
        let mut removed = 0;
        let mut empty = Vec::new();
        for (key, swarm) in self.swarms.iter_mut() {
            let before = swarm.peers.len();
            swarm.peers.retain(|_, e| now.saturating_duration_since(e.announced) < ttl);
            removed += before - swarm.peers.len();
            if swarm.peers.is_empty() {
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

    pub fn sample_interval(&self) -> Duration {
        self.config.sample_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use rand::{rngs::StdRng, SeedableRng};

    fn t0() -> Instant {
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    fn peer(i: u32) -> SocketAddr {
        SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 6881))
    }

    fn ih(i: u8) -> InfoHash {
        Id([i; 20])
    }

    #[test]
    fn tokens_are_bound_to_ip_and_last_two_rotations() {
        let mut rng = StdRng::seed_from_u64(1);
        let now = t0();
        let cfg = StoreConfig::default();
        let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let tok = s.token_for(a);
        assert!(s.token_valid(a, &tok));
        assert!(!s.token_valid(b, &tok), "a token is no good from another address");
        assert!(!s.token_valid(a, &tok[..4]));
        s.tick(now + cfg.secret_rotation, &mut rng);
        assert!(s.token_valid(a, &tok), "still valid one rotation later");
        s.tick(now + cfg.secret_rotation * 2, &mut rng);
        assert!(!s.token_valid(a, &tok), "expired after two rotations");
    }

    #[test]
    fn peers_expire_after_their_ttl() {
        let mut rng = StdRng::seed_from_u64(2);
        let now = t0();
        let cfg = StoreConfig::default();
        let mut s = PeerStore::new(cfg.clone(), now, &mut rng);
        assert!(s.announce(now, ih(1), peer(1), false));
        assert!(s.announce(now + Duration::from_secs(600), ih(1), peer(2), true));
        assert_eq!(s.peer_count(), 2);
        let later = now + cfg.peer_ttl + Duration::from_secs(1);
        assert_eq!(s.get_peers(later, &ih(1), false, &mut rng), vec![peer(2)], "expired peers are not handed out");
        s.tick(later + SWEEP_INTERVAL, &mut rng);
        assert_eq!(s.peer_count(), 1);
        assert_eq!(s.is_seed(&ih(1), &peer(2)), Some(true));
        s.tick(later + cfg.peer_ttl + SWEEP_INTERVAL * 2, &mut rng);
        assert_eq!((s.peer_count(), s.info_hash_count()), (0, 0), "empty swarms are dropped");
    }

    /// The peers stored for `h`, sorted.
    fn stored(s: &PeerStore, h: InfoHash) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = s.swarms.get(&h).map(|w| w.peers.keys().copied().collect()).unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn memory_is_capped() {
        let mut rng = StdRng::seed_from_u64(3);
        let now = t0();
        let cfg = StoreConfig { max_info_hashes: 10, max_peers_per_hash: 20, ..StoreConfig::default() };
        let mut s = PeerStore::new(cfg, now, &mut rng);
        let at = |secs: u64| now + Duration::from_secs(secs);

        // One swarm over-filled: 25 peers, one a second. The cap keeps the 20 latest.
        for i in 0..25u32 {
            assert!(s.announce(at(i.into()), ih(0), peer(i), false));
        }
        assert_eq!(stored(&s, ih(0)), (5..25).map(peer).collect::<Vec<_>>(), "the five oldest made room");
        assert_eq!(s.peer_count(), 20);
        // A re-announce refreshes a peer instead of adding one: the stalest is now peer 6.
        assert!(s.announce(at(30), ih(0), peer(5), false));
        assert!(s.announce(at(31), ih(0), peer(100), false));
        let mut expect: Vec<SocketAddr> = (5..25).filter(|&i| i != 6).chain([100]).map(peer).collect();
        expect.sort();
        assert_eq!(stored(&s, ih(0)), expect);
        assert_eq!(s.peer_count(), 20);

        // Nine more swarms of distinct sizes fill the store; ih(4), in the middle, is the smallest.
        let size = |k: u8| if k == 4 { 1 } else { u32::from(k) + 2 };
        for k in 1..=9u8 {
            for j in 0..size(k) {
                assert!(s.announce(at(40), ih(k), peer(1000 + 100 * u32::from(k) + j), false));
            }
        }
        let others: u32 = (1..=9).filter(|&k| k != 4).map(size).sum();
        assert_eq!((s.info_hash_count(), s.peer_count()), (10, 20 + others as usize + 1));
        // A tenth-plus-one swarm: the smallest one makes room, whatever its age or place.
        assert!(s.announce(at(50), ih(50), peer(5000), false));
        assert_eq!(s.info_hash_count(), 10);
        assert!(!s.swarms.contains_key(&ih(4)), "the smallest swarm was evicted");
        for k in (0..=9u8).filter(|&k| k != 4).chain([50]) {
            assert!(s.swarms.contains_key(&ih(k)), "swarm {k} kept");
        }
        assert_eq!(s.peer_count(), 20 + others as usize + 1);
        assert_eq!(stored(&s, ih(0)).len(), 20, "the big swarm kept all its peers");
        // Now the newcomer, with one peer, is the smallest and gives way to the next one.
        assert!(s.announce(at(51), ih(51), peer(5001), false));
        assert!(!s.swarms.contains_key(&ih(50)) && s.swarms.contains_key(&ih(51)));
        assert_eq!(s.info_hash_count(), 10);

        let counted: usize = s.swarms.values().map(|w| w.peers.len()).sum();
        assert_eq!(counted, s.peer_count());
        assert_eq!(s.keys.len(), s.swarms.len());
        for (k, w) in &s.swarms {
            assert_eq!(s.keys[w.slot], *k, "slots stay consistent after evictions");
        }
    }

    #[test]
    fn answers_are_a_random_packet_sized_subset_of_the_right_family() {
        let mut rng = StdRng::seed_from_u64(4);
        let now = t0();
        let mut s = PeerStore::new(StoreConfig::default(), now, &mut rng);
        for i in 0..500 {
            s.announce(now, ih(1), peer(i), false);
        }
        let v6: SocketAddr = "[2001:db8::1]:6881".parse().unwrap();
        s.announce(now, ih(1), v6, false);
        let a = s.get_peers(now, &ih(1), false, &mut rng);
        let b = s.get_peers(now, &ih(1), false, &mut rng);
        assert_eq!(a.len(), 100);
        assert!(a.iter().all(|p| p.is_ipv4()));
        assert_ne!(a, b, "different random subsets");
        assert_eq!(s.get_peers(now, &ih(1), true, &mut rng), vec![v6]);
        assert!(s.get_peers(now, &ih(2), false, &mut rng).is_empty());
    }

    #[test]
    fn samples_are_distinct_and_count_everything() {
        let mut rng = StdRng::seed_from_u64(5);
        let now = t0();
        let mut s = PeerStore::new(StoreConfig::default(), now, &mut rng);
        assert_eq!(s.sample(&mut rng), (Vec::new(), 0));
        for i in 0..30u8 {
            s.announce(now, ih(i), peer(i.into()), false);
        }
        let (samples, num) = s.sample(&mut rng);
        assert_eq!(num, 30);
        assert_eq!(samples.len(), 20);
        let unique: std::collections::HashSet<_> = samples.iter().collect();
        assert_eq!(unique.len(), 20);
    }
}
