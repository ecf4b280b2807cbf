//! BEP 11 peer exchange, one connection's worth, sans-IO (`now` is always passed in).
//!
//! [`PexSender`] decides what we tell one peer and when: a first message soon after the
//! peer's extension handshake (a new swarm spreads in seconds instead of a minute), then at
//! most one a minute, each a diff against what this peer already heard from us: at most 50
//! added and 50 dropped, the rest next time. It only ever names peers the caller says we are
//! connected to, and drops only what it advertised.
//!
//! [`PexReceiver`] decides what of a peer's messages we believe: the first message, then one
//! every [`MIN_RECEIVE_INTERVAL`] at most (earlier ones are counted as spam and not even
//! parsed), at most 50 added peers each, and never our own address, port 0, or an address
//! nobody can dial (unspecified, multicast, broadcast). A spamming peer is *not* disconnected:
//! an ignored message costs us no more than reading the frame, which we do for any message,
//! and the peer may still be the best source of pieces we have; the count is kept for logs.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::wire::pex::{PexError, PexFlags, PexLimits, PexMessage, MAX_ADDED_CONSIDERED, MAX_DROPPED_CONSIDERED};

/// How long after the extension handshake the first message may go out: enough for the
/// peer's own handshake traffic to settle, short enough that a fresh swarm spreads at once.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// Messages to one peer are at least this far apart (BEP 11: no more than once a minute).
pub const SEND_INTERVAL: Duration = Duration::from_secs(60);
/// A message from a peer sooner than this after the last one we took is ignored. Below 60 s,
/// so a sender whose minute timer jitters a little is not punished.
pub const MIN_RECEIVE_INTERVAL: Duration = Duration::from_secs(45);

/// What we have told one peer, and when we may tell it more.
#[derive(Debug, Clone)]
pub struct PexSender {
    /// Peers this connection has heard about from us and not yet heard dropped, with the
    /// flags we gave; a peer whose flags changed (became a seed) is advertised again.
    advertised: BTreeMap<SocketAddr, PexFlags>,
    next_at: Instant,
    sent: u64,
}

impl PexSender {
    /// A sender for a peer whose extension handshake (offering `ut_pex`) arrived at `now`.
    pub fn new(now: Instant) -> PexSender {
        PexSender { advertised: BTreeMap::new(), next_at: now + FIRST_DELAY, sent: 0 }
    }

    /// When the next message may go out; before then [`PexSender::poll`] returns `None`
    /// without looking at `current`, so the caller need not build it.
    pub fn next_deadline(&self) -> Instant {
        self.next_at
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The message due for this peer, given the peers we are connected to now (with their
    /// listen addresses and flags, this peer itself left out). `None` when it is too soon or
    /// there is nothing new; in the second case the next change is sent as soon as it is seen,
    /// since no message went out that the peer could count against us.
    pub fn poll(&mut self, now: Instant, current: &[(SocketAddr, PexFlags)]) -> Option<PexMessage> {
        if now < self.next_at {
            return None;
        }
        let mut now_connected: BTreeMap<SocketAddr, PexFlags> = BTreeMap::new();
        for (addr, flags) in current {
            now_connected.insert(*addr, *flags);
        }
        let added: Vec<(SocketAddr, PexFlags)> = now_connected
            .iter()
            .filter(|(addr, flags)| self.advertised.get(addr) != Some(flags))
            .map(|(a, f)| (*a, *f))
            .take(MAX_ADDED_CONSIDERED)
            .collect();
        let dropped: Vec<SocketAddr> = self
            .advertised
            .keys()
            .filter(|addr| !now_connected.contains_key(addr))
            .copied()
            .take(MAX_DROPPED_CONSIDERED)
            .collect();
        if added.is_empty() && dropped.is_empty() {
            return None;
        }
        for (addr, flags) in &added {
            self.advertised.insert(*addr, *flags);
        }
        for addr in &dropped {
            self.advertised.remove(addr);
        }
        self.next_at = now + SEND_INTERVAL;
        self.sent += 1;
        Some(PexMessage { added, dropped })
    }
}

/// Why a peer's PEX message taught us nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PexIgnored {
    #[error("peer exchange message {since:?} after the previous one (at least {MIN_RECEIVE_INTERVAL:?} expected)")]
    TooSoon { since: Duration },
    #[error("{0}")]
    Malformed(#[from] PexError),
}

/// What we take from one peer's PEX messages.
#[derive(Debug, Clone)]
pub struct PexReceiver {
    limits: PexLimits,
    /// Our own listen addresses: never worth dialling.
    own: Vec<SocketAddr>,
    last_taken: Option<Instant>,
    spam: u64,
}

/// Own addresses remembered at most (the bind address, and what peers say they see).
const MAX_OWN: usize = 8;

impl PexReceiver {
    pub fn new(own: impl IntoIterator<Item = SocketAddr>) -> PexReceiver {
        let mut r = PexReceiver { limits: PexLimits::default(), own: Vec::new(), last_taken: None, spam: 0 };
        for a in own {
            r.add_own(a);
        }
        r
    }

    /// Another address that is us (say, the IP a peer reports seeing with our listen port).
    pub fn add_own(&mut self, addr: SocketAddr) {
        let addr = canonical(addr);
        if !self.own.contains(&addr) && self.own.len() < MAX_OWN {
            self.own.push(addr);
        }
    }

    /// Messages ignored for coming too soon.
    pub fn spam_count(&self) -> u64 {
        self.spam
    }

    /// Handles the payload of a `ut_pex` message that arrived at `now`: the addresses worth
    /// offering to the peer list, or why there are none. Dropped peers are not acted on: the
    /// sender lost them, which says nothing about whether we can reach them.
    pub fn handle(&mut self, now: Instant, payload: &[u8]) -> Result<Vec<SocketAddr>, PexIgnored> {
        if let Some(last) = self.last_taken {
            let since = now.saturating_duration_since(last);
            if since < MIN_RECEIVE_INTERVAL {
                self.spam += 1;
                return Err(PexIgnored::TooSoon { since });
            }
        }
        // A malformed message still counts as one taken: a peer cannot retry at once.
        self.last_taken = Some(now);
        let msg = PexMessage::decode(payload, &self.limits)?;
        let mut out: Vec<SocketAddr> = Vec::with_capacity(msg.added.len());
        for (addr, _) in msg.added {
            let addr = canonical(addr);
            if dialable(&addr) && !self.own.contains(&addr) && !out.contains(&addr) {
                out.push(addr);
            }
        }
        Ok(out)
    }
}

/// An IPv4 peer written as an IPv4-mapped IPv6 address is the IPv4 peer.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether an address could be a peer at all: a port, and a unicast, specified IP.
fn dialable(addr: &SocketAddr) -> bool {
    if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => !ip.is_broadcast(),
        IpAddr::V6(_) => true,
    }
}

#[cfg(test)]
mod tests;
