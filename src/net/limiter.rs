//! Per-source rate limits for what arrives on the UDP socket, checked before a datagram is
//! decoded: a token bucket per source host (see [`host_key`]: an IPv4 address, an IPv6 /64),
//! kept in a fixed-size hashed table so that a flood from millions of spoofed sources costs
//! the same memory as one from a single host.
//!
//! A source over its limit is dropped silently, and one that stays over it is blocked for a
//! while (libtorrent's `dos_blocker` does the same). Blocks are short on purpose: a spoofer
//! can make an innocent address look like a flooder, so a block must not outlive the flood.
//!
//! Sans-IO: time comes in as `now`, the hash key from the caller's RNG.

use std::net::SocketAddr;

use crate::net::addr::host_key;
use std::time::{Duration, Instant};

/// Entries looked at per source: a new source replaces the stalest of its set.
const WAYS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Datagrams per second a source may send on average; 0 turns the limiter off.
    pub rate: u32,
    /// Datagrams a quiet source may send at once.
    pub burst: u32,
    /// Sources tracked at most (rounded up to a power of two); each costs [`Limiter::SLOT_BYTES`].
    pub capacity: usize,
    /// A source is blocked once this many of its datagrams were dropped more recently than the
    /// rate can excuse (the count drains at `rate` per second).
    pub block_after: u32,
    /// How long a block lasts.
    pub block_for: Duration,
}

impl Default for LimiterConfig {
    /// A DHT client asks one node for a handful of things per lookup; 10/s with a burst of 50
    /// leaves a crawler or a busy client room, and caps what a spoofed victim receives from
    /// us at 10 replies a second.
    fn default() -> Self {
        LimiterConfig { rate: 10, burst: 50, capacity: 1 << 16, block_after: 200, block_for: Duration::from_secs(60) }
    }
}

impl LimiterConfig {
    pub fn off() -> Self {
        LimiterConfig { rate: 0, ..Self::default() }
    }

    pub fn is_off(&self) -> bool {
        self.rate == 0
    }
}

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// The source is over its rate: drop this one.
    OverLimit,
    /// The source is blocked: drop everything from it until the block ends.
    Blocked,
}

/// Counters of the limiter, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterStats {
    pub allowed: u64,
    pub over_limit: u64,
    pub blocked_drops: u64,
    /// Times a source was put in the block list.
    pub blocks: u64,
    /// Tracked sources pushed out by newer ones (a sign of many sources, maybe spoofed).
    pub evictions: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// 0 = empty; otherwise the source key with a family tag, so no real key is 0.
    key: u128,
    /// Last time this source was seen, in milliseconds since the limiter's epoch.
    last_ms: u64,
    /// Thousandths of a datagram.
    tokens: u32,
    /// Recent excess datagrams, in thousandths, draining at the rate.
    excess: u32,
    /// Seconds since the epoch until which the source is blocked (0: not blocked).
    blocked_until_s: u32,
}

pub struct Limiter {
    config: LimiterConfig,
    epoch: Instant,
    slots: Vec<Slot>,
    set_mask: usize,
    hash_key: [u64; 2],
    /// Slots in use, kept as they fill (slots are never emptied, only reused).
    tracked: usize,
    stats: LimiterStats,
}

impl Limiter {
    /// Bytes one tracked source costs.
    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

    /// `hash_key` should be secret (random): it decides which sources share a set.
    pub fn new(config: LimiterConfig, now: Instant, hash_key: [u64; 2]) -> Limiter {
        let sets = if config.is_off() { 0 } else { config.capacity.div_ceil(WAYS).max(1).next_power_of_two() };
        Limiter {
            config,
            epoch: now,
            slots: vec![Slot::default(); sets * WAYS],
            set_mask: sets.saturating_sub(1),
            hash_key,
            tracked: 0,
            stats: LimiterStats::default(),
        }
    }

    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    pub fn stats(&self) -> LimiterStats {
        self.stats
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.tracked
    }

    /// Sources blocked at `now`.
    pub fn blocked(&self, now: Instant) -> usize {
        let s = self.secs(now);
        self.slots.iter().filter(|x| x.key != 0 && x.blocked_until_s > s).count()
    }

    /// Bytes of the table: fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * Self::SLOT_BYTES
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn secs(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_secs().min(u32::MAX as u64 - 1) as u32
    }

    /// Charges one datagram from `from` and says whether to handle it.
    pub fn check(&mut self, now: Instant, from: SocketAddr) -> Verdict {
        if self.config.is_off() {
            self.stats.allowed += 1;
            return Verdict::Allow;
        }
        let key = host_key(from);
        let now_ms = self.ms(now);
        let now_s = self.secs(now);
        let slot = self.find_or_claim(key, now_ms);
        let cfg = self.config;
        let s = &mut self.slots[slot];
        if s.blocked_until_s > now_s {
            s.last_ms = now_ms;
            self.stats.blocked_drops += 1;
            return Verdict::Blocked;
        }
        if s.blocked_until_s != 0 {
            // The block is over: start again with a clean slate.
            *s = Slot { key, last_ms: now_ms, tokens: cfg.burst.saturating_mul(1000), ..Slot::default() };
        }
        let elapsed = now_ms.saturating_sub(s.last_ms);
        let refill = elapsed.saturating_mul(cfg.rate as u64).min(u32::MAX as u64) as u32;
        s.tokens = s.tokens.saturating_add(refill).min(cfg.burst.saturating_mul(1000));
        s.excess = s.excess.saturating_sub(refill);
        s.last_ms = now_ms;
        if s.tokens >= 1000 {
            s.tokens -= 1000;
            self.stats.allowed += 1;
            return Verdict::Allow;
        }
        s.excess = s.excess.saturating_add(1000);
        self.stats.over_limit += 1;
        if s.excess >= cfg.block_after.saturating_mul(1000) {
            s.blocked_until_s = now_s.saturating_add(cfg.block_for.as_secs().max(1) as u32);
            s.excess = 0;
            self.stats.blocks += 1;
            tracing::debug!(source = %from.ip(), secs = cfg.block_for.as_secs(), "blocking a flooding source");
        }
        Verdict::OverLimit
    }

    /// The slot of `key`, claiming one (the stalest of its set, blocked ones last) if the
    /// source is new. A new source starts with a full bucket.
    fn find_or_claim(&mut self, key: u128, now_ms: u64) -> usize {
        let base = (self.hash(key) as usize & self.set_mask) * WAYS;
        let set = &self.slots[base..base + WAYS];
        if let Some(i) = set.iter().position(|s| s.key == key) {
            return base + i;
        }
        let now_s = (now_ms / 1000) as u32;
        let victim = (0..WAYS)
            .min_by_key(|&i| {
                let s = &set[i];
                (s.key != 0, s.blocked_until_s > now_s, s.last_ms)
            })
            .unwrap_or(0);
        if set[victim].key != 0 {
            self.stats.evictions += 1;
        } else {
            self.tracked += 1;
        }
        self.slots[base + victim] =
            Slot { key, last_ms: now_ms, tokens: self.config.burst.saturating_mul(1000), ..Slot::default() };
        base + victim
    }

    fn hash(&self, key: u128) -> u64 {
        let lo = (key as u64) ^ self.hash_key[0];
        let hi = ((key >> 64) as u64) ^ self.hash_key[1];
        let mut h = lo.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ hi.rotate_left(29).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        h ^= h >> 31;
        h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        h ^ (h >> 32)
    }
}

#[cfg(test)]
mod tests;
