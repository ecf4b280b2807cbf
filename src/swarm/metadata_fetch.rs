//! Whom to trust while fetching a magnet's info dictionary (BEP 9): the policy around
//! [`MetadataAssembler`], sans-IO (time is the caller's `now`).
//!
//! Nothing a peer says about the metadata can be trusted but the final SHA-1, so:
//! - the `metadata_size` peers announce are votes: we fetch the size most distinct peers
//!   announced, and ask only peers that announced that size (one liar cannot impose its
//!   size on the honest ones, nor make their correctly sized pieces look wrong);
//! - a piece whose length does not fit the size its own sender announced proves that sender
//!   wrong: it alone is blamed, and what it was asked for goes back to the others;
//! - a hash mismatch does not tell which sender lied, so we fetch everything again from ONE
//!   peer: if that fails, that peer lied; if it succeeds, comparing each piece of the failed
//!   round with the good metadata shows exactly who sent a bad one.
//!
//! Verdicts (peers to ban) queue up for the driver, which takes them with
//! [`MetadataFetch::take_banned`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::id::InfoHash;
use crate::swarm::PeerKey;
use crate::wire::metadata::{MetadataAssembler, MetadataError, MAX_METADATA_SIZE, METADATA_PIECE};

/// Metadata pieces one peer is asked for at once.
pub const IN_FLIGHT_PER_PEER: usize = 2;
/// How long a metadata request may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Votes kept at most: one per connected peer, which the session already bounds; this cap
/// only makes the bound local (a vote from beyond it is ignored).
pub const MAX_VOTERS: usize = 4096;

type Digest20 = [u8; 20];

#[derive(Debug, Clone, Copy)]
struct Voter {
    size: u64,
    /// Refused or left a request unanswered: not asked while others can be.
    stalled: bool,
}

/// The metadata fetch of one torrent: votes, requests in flight, and the evidence against
/// each sender.
#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: InfoHash,
    voters: BTreeMap<PeerKey, Voter>,
    /// The size being fetched: the most voted (kept on a tie, so a fetch is not restarted
    /// back and forth).
    plan: Option<u64>,
    assembler: Option<MetadataAssembler>,
    /// Requests in flight: piece → who was asked, and when.
    asked: BTreeMap<u32, (PeerKey, Instant)>,
    /// Pieces received in this round: who sent each, and its SHA-1.
    round: BTreeMap<u32, (PeerKey, Digest20)>,
    /// The pieces of a round whose whole failed the hash, to judge once good metadata is in.
    suspects: Vec<(u32, PeerKey, Digest20)>,
    /// Set after a hash mismatch: from then on one peer at a time fetches everything.
    single_source: bool,
    /// That one peer, once chosen.
    single: Option<PeerKey>,
    /// Peers that already had their single-source turn.
    tried: BTreeSet<PeerKey>,
    banned: Vec<PeerKey>,
    done: bool,
}

impl MetadataFetch {
    pub fn new(info_hash: InfoHash) -> MetadataFetch {
        MetadataFetch {
            info_hash,
            voters: BTreeMap::new(),
            plan: None,
            assembler: None,
            asked: BTreeMap::new(),
            round: BTreeMap::new(),
            suspects: Vec::new(),
            single_source: false,
            single: None,
            tried: BTreeSet::new(),
            banned: Vec::new(),
            done: false,
        }
    }

    /// The size being fetched now, if any peer announced a usable one.
    pub fn planned_size(&self) -> Option<u64> {
        self.plan
    }

    /// Peers proven to have sent bad metadata since the last call.
    pub fn take_banned(&mut self) -> Vec<PeerKey> {
        std::mem::take(&mut self.banned)
    }

    /// `peer` announced `size` (its extension handshake's `metadata_size`).
    pub fn on_size(&mut self, peer: PeerKey, size: u64) -> Result<(), MetadataError> {
        if !(1..=MAX_METADATA_SIZE).contains(&size) {
            return Err(MetadataError::TotalSize(size));
        }
        if self.voters.len() >= MAX_VOTERS && !self.voters.contains_key(&peer) {
            return Ok(());
        }
        self.voters.insert(peer, Voter { size, stalled: false });
        self.replan();
        Ok(())
    }

    /// `peer` disconnected: its vote and its requests go.
    pub fn peer_left(&mut self, peer: PeerKey) {
        self.forget(peer);
    }

    /// The next piece to ask `peer` for, now counted as asked; `None` when it should not be
    /// asked (it voted for another size, waits its single-source turn, or has enough asked).
    pub fn next_request(&mut self, peer: PeerKey, now: Instant) -> Option<u32> {
        if self.done || !self.eligible(peer) {
            return None;
        }
        if self.single_source && self.single != Some(peer) {
            if self.single.is_some() {
                return None;
            }
            // Each candidate in turn; once all had theirs, they may try again (those proven
            // wrong are gone, so this only repeats peers that stalled or left).
            let untried = self.voters.keys().any(|k| self.eligible(*k) && !self.tried.contains(k));
            if untried && self.tried.contains(&peer) {
                return None;
            }
            if !untried {
                self.tried.clear();
            }
            self.single = Some(peer);
            self.tried.insert(peer);
            self.restart_round();
        }
        if self.asked.values().filter(|(k, _)| *k == peer).count() >= IN_FLIGHT_PER_PEER {
            return None;
        }
        let piece = self.assembler.as_mut()?.next_request()?;
        self.asked.insert(piece, (peer, now));
        Some(piece)
    }

    /// `peer` rejected our request for `piece`: someone else gets it, and `peer` is not asked
    /// again while others can be.
    pub fn on_reject(&mut self, peer: PeerKey, piece: u32) {
        if self.asked.get(&piece).is_some_and(|(k, _)| *k == peer) {
            self.asked.remove(&piece);
            if let Some(a) = self.assembler.as_mut() {
                a.on_reject(piece);
            }
            self.stall(peer);
        }
    }

    /// Releases requests older than [`REQUEST_TIMEOUT`]; their peers count as stalled.
    pub fn on_timer(&mut self, now: Instant) {
        let stale: Vec<(u32, PeerKey)> = self
            .asked
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= REQUEST_TIMEOUT)
            .map(|(p, (k, _))| (*p, *k))
            .collect();
        for (piece, peer) in stale {
            self.on_reject(peer, piece);
        }
    }

    /// `peer` sent `piece` of an info dictionary it says is `total_size` bytes. Returns the
    /// verified info dictionary once complete. An error is about this piece or this round;
    /// whom it proves wrong is queued for [`take_banned`](Self::take_banned).
    pub fn on_data(
        &mut self,
        peer: PeerKey,
        piece: u32,
        total_size: u64,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, MetadataError> {
        // Only answers to what we asked this peer in this round count: anything else is late
        // (a timeout, a new plan) or unasked, and proves nothing.
        if self.done || self.asked.get(&piece).is_none_or(|(k, _)| *k != peer) {
            return Ok(None);
        }
        self.asked.remove(&piece);
        let (Some(plan), Some(assembler)) = (self.plan, self.assembler.as_mut()) else { return Ok(None) };
        let expected = piece_len(plan, piece);
        if total_size != plan || data.len() != expected {
            // It announced `plan` (only such peers are asked): the piece contradicts its own
            // claim. Blame it alone; its slots are released for the others.
            assembler.on_reject(piece);
            self.convict(peer);
            return Err(MetadataError::PieceSize { piece, len: data.len(), expected });
        }
        self.round.insert(piece, (peer, sha1(&data)));
        match assembler.on_data(piece, data) {
            Ok(Some(info)) => {
                self.done = true;
                self.asked.clear();
                self.judge_suspects(&info);
                Ok(Some(info))
            }
            Ok(None) => Ok(None),
            Err(e @ MetadataError::HashMismatch { .. }) => {
                if let Some(one) = self.single.filter(|_| self.single_source) {
                    // Every byte came from this one peer, under the size it announced.
                    self.convict(one);
                } else {
                    let round = std::mem::take(&mut self.round);
                    self.suspects.extend(round.into_iter().map(|(p, (k, d))| (p, k, d)));
                    self.single_source = true;
                }
                self.single = None;
                self.restart_round();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Once the metadata is proven good: every sender of a piece that differs from it in the
    /// failed round is proven to have lied.
    fn judge_suspects(&mut self, info: &[u8]) {
        for (piece, peer, digest) in std::mem::take(&mut self.suspects) {
            let start = piece as usize * METADATA_PIECE;
            let good = info.get(start..info.len().min(start + METADATA_PIECE)).unwrap_or_default();
            if sha1(good) != digest && !self.banned.contains(&peer) {
                self.banned.push(peer);
            }
        }
    }

    fn eligible(&self, peer: PeerKey) -> bool {
        self.voters.get(&peer).is_some_and(|v| !v.stalled && Some(v.size) == self.plan)
    }

    fn stall(&mut self, peer: PeerKey) {
        if let Some(v) = self.voters.get_mut(&peer) {
            v.stalled = true;
        }
        if self.single == Some(peer) {
            // A single-source round must be one peer's bytes only: the next one starts over.
            self.single = None;
            self.restart_round();
        }
        self.replan();
    }

    /// `peer` is proven wrong: banned, and everything it had is forgotten.
    fn convict(&mut self, peer: PeerKey) {
        if !self.banned.contains(&peer) {
            self.banned.push(peer);
        }
        // Judged already: the evidence of an earlier round must not ban it twice.
        self.suspects.retain(|(_, k, _)| *k != peer);
        self.forget(peer);
    }

    fn forget(&mut self, peer: PeerKey) {
        self.voters.remove(&peer);
        self.tried.remove(&peer);
        let mine: Vec<u32> = self.asked.iter().filter(|(_, (k, _))| *k == peer).map(|(p, _)| *p).collect();
        for piece in mine {
            self.asked.remove(&piece);
            if let Some(a) = self.assembler.as_mut() {
                a.on_reject(piece);
            }
        }
        if self.single == Some(peer) {
            // Its partial single-source fetch cannot be finished by anyone else.
            self.single = None;
            self.restart_round();
        }
        self.replan();
    }

    /// Picks the size to fetch: the current one unless another has strictly more votes from
    /// peers still worth asking. When every voter stalled, all get another chance.
    fn replan(&mut self) {
        if self.done {
            return;
        }
        if !self.voters.is_empty() && self.voters.values().all(|v| v.stalled) {
            self.voters.values_mut().for_each(|v| v.stalled = false);
        }
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for v in self.voters.values().filter(|v| !v.stalled) {
            *count.entry(v.size).or_default() += 1;
        }
        let current = self.plan.and_then(|p| count.get(&p).copied()).unwrap_or(0);
        // Ties among challengers go to the smallest size (BTreeMap order): deterministic.
        let best = count.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(s, n)| (*s, *n));
        let next = match best {
            Some((size, n)) if n > current => Some(size),
            _ if current > 0 => self.plan,
            _ => None,
        };
        if next != self.plan {
            self.plan = next;
            self.single = None;
            self.restart_round();
        }
    }

    /// Drops every piece received and every request of this round.
    fn restart_round(&mut self) {
        self.asked.clear();
        self.round.clear();
        self.assembler = self.plan.and_then(|size| MetadataAssembler::new(self.info_hash, size).ok());
    }
}

/// Bytes piece `piece` of a `total`-byte info dictionary has.
fn piece_len(total: u64, piece: u32) -> usize {
    let start = u64::from(piece).saturating_mul(METADATA_PIECE as u64);
    total.saturating_sub(start).min(METADATA_PIECE as u64) as usize
}

fn sha1(bytes: &[u8]) -> Digest20 {
    let mut out = [0u8; 20];
    out.copy_from_slice(&Sha1::digest(bytes));
    out
}

#[cfg(test)]
mod tests;
