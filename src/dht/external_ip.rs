//! Learning our external address from the `ip` field other nodes put in their answers
//! (BEP 42), so that our node id can be derived from it. A single node could lie, and so
//! could one operator with a block of addresses, so votes are counted per network (an IPv4
//! /24, an IPv6 /64) and an address is adopted only once several networks agree on it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::net::addr::{host_key, net_key};

/// Votes needed from distinct voting networks before an address is believed.
pub const MIN_VOTES: usize = 5;
/// Voters remembered per candidate address and candidate addresses remembered; bounds memory.
const MAX_VOTERS: usize = 64;
const MAX_CANDIDATES: usize = 16;

#[derive(Default)]
pub struct ExternalIp {
    votes: HashMap<IpAddr, Vec<u128>>,
    current: Option<IpAddr>,
}

impl ExternalIp {
    /// `voter` says it sees us at `seen`. Returns the new external address when the votes
    /// make a different address the winner.
    pub fn vote(&mut self, voter: SocketAddr, seen: IpAddr) -> Option<IpAddr> {
        // One vote per IPv4 /24 or IPv6 /64 (a host's usual allocation).
        let voter = if voter.is_ipv4() { net_key(voter) } else { host_key(voter) };
        if !self.votes.contains_key(&seen) && self.votes.len() >= MAX_CANDIDATES {
            // Forget the weakest candidate so that a flood of fake addresses cannot pin memory.
            let weakest = self.votes.iter().min_by_key(|(_, v)| v.len()).map(|(ip, _)| *ip)?;
            self.votes.remove(&weakest);
        }
        let voters = self.votes.entry(seen).or_default();
        if voters.contains(&voter) || voters.len() >= MAX_VOTERS {
            return None;
        }
        voters.push(voter);
        let (best, count) = self.votes.iter().map(|(ip, v)| (*ip, v.len())).max_by_key(|(_, n)| *n)?;
        if count >= MIN_VOTES && self.current != Some(best) {
            self.current = Some(best);
            return Some(best);
        }
        None
    }

    pub fn current(&self) -> Option<IpAddr> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn voter(s: &str) -> SocketAddr {
        SocketAddr::new(ip(s), 6881)
    }

    #[test]
    fn needs_distinct_voting_networks() {
        let mut e = ExternalIp::default();
        for _ in 0..20 {
            assert_eq!(e.vote(voter("1.1.1.1"), ip("9.9.9.9")), None);
        }
        // A whole /24 of voters is one vote.
        for i in 2..=254u8 {
            assert_eq!(e.vote(voter(&format!("1.1.1.{i}")), ip("9.9.9.9")), None);
        }
        // So is a whole IPv6 /64.
        for i in 1..=500u16 {
            assert_eq!(e.vote(voter(&format!("2001:db8:5:6::{i:x}")), ip("9.9.9.9")), None);
        }
        // With 1.1.1.0/24 and the /64, that is one network short of believing it.
        for n in 2..MIN_VOTES as u8 - 1 {
            assert_eq!(e.vote(voter(&format!("1.1.{n}.1")), ip("9.9.9.9")), None, "network {n}");
        }
        assert_eq!(e.current(), None);
        assert_eq!(e.vote(voter("2.2.2.2"), ip("9.9.9.9")), Some(ip("9.9.9.9")));
        assert_eq!(e.current(), Some(ip("9.9.9.9")));
    }

    #[test]
    fn memory_is_bounded_under_a_flood() {
        let mut e = ExternalIp::default();
        for i in 0..10_000u32 {
            let seen = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            e.vote(voter("1.1.1.1"), seen);
        }
        assert!(e.votes.len() <= MAX_CANDIDATES);
    }
}
