//! The sans-IO core of local service discovery (BEP 14): when to multicast which of our
//! info-hashes, and which peers the announces of others give us. Time comes in as `now`; the
//! driver owns the socket and the clock.
//!
//! Sending: every torrent is announced when it is added, twice more soon after (multicast
//! is unacknowledged, so one lost datagram should not cost five minutes, as libtorrent also
//! repeats), then every [`ANNOUNCE_EVERY`]. Torrents due together share a datagram (up to
//! [`MAX_INFOHASHES`]), and datagrams leave at most one per [`MIN_SEND_GAP`], however many
//! torrents there are. Hearing another client announce one of our torrents brings our own
//! announce of it forward (at most once per [`ANSWER_AFTER`]), so a peer that cannot accept
//! connections still learns where we are.
//!
//! Receiving: only announces from the local network count. Port 6771 takes unicast too, and an
//! announce makes us dial its source, so a datagram whose source lies on none of our
//! interfaces' subnets (the driver passes them in, see [`crate::lsd::subnets`]) is dropped
//! first, before it costs anything. Anyone on the link can still send to the group, so the
//! work a sender can cause is bounded before anything is parsed: a token bucket per source IP
//! (a bounded table) and one for all sources together. Our own datagrams come back through multicast loopback and are
//! recognised by our cookie; announces for torrents we do not have are dropped. The peer's
//! address is the datagram's source IP with the announced `Port`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::id::InfoHash;
use crate::lsd::message::{Announce, Family, MessageError, MAX_INFOHASHES};
use crate::lsd::subnets::{self, Subnet, MAX_SUBNETS};

/// How often each torrent is announced once started (BEP 14 suggests 5 minutes).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Gaps before the repeats of a torrent's first announce.
pub const START_REPEATS: [Duration; 2] = [Duration::from_secs(3), Duration::from_secs(10)];
/// Our datagrams leave at most this often.
pub const MIN_SEND_GAP: Duration = Duration::from_secs(1);
/// An announce we hear for one of our torrents makes us announce it at once, unless we did
/// within this long.
pub const ANSWER_AFTER: Duration = Duration::from_secs(60);

/// Inbound budget of one source IP: a burst, then so many datagrams a second. libtorrent
/// sends each torrent's announce three times within 6 s and spreads torrents at least a
/// second apart, which stays well inside this.
const PER_SENDER: Budget = Budget { burst: 20.0, per_second: 4.0 };
/// Inbound budget of all sources together, which bounds a flood from spoofed addresses.
const ALL_SENDERS: Budget = Budget { burst: 100.0, per_second: 50.0 };
/// Source IPs whose budget is tracked; when full, idle ones make room, else newcomers wait.
const MAX_SENDERS: usize = 256;

#[derive(Clone, Copy)]
struct Budget {
    burst: f64,
    per_second: f64,
}

/// A token bucket.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(budget: Budget, now: Instant) -> Bucket {
        Bucket { tokens: budget.burst, at: now }
    }

    fn refill(&mut self, budget: Budget, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * budget.per_second).min(budget.burst);
        self.at = now;
    }

    fn take(&mut self, budget: Budget, now: Instant) -> bool {
        self.refill(budget, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True once the bucket would be full again: its sender has been quiet long enough that
    /// forgetting it loses nothing.
    fn is_idle(&self, budget: Budget, now: Instant) -> bool {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + secs * budget.per_second >= budget.burst
    }
}

/// Why an incoming datagram gave us no peers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("the source is on none of our interfaces' subnets")]
    OffSubnet,
    #[error("over the inbound rate limit")]
    RateLimited,
    #[error("not an announce: {0}")]
    Malformed(#[from] MessageError),
    #[error("our own announce, looped back")]
    Own,
    #[error("for no torrent of ours")]
    NotOurs,
}

/// What happened so far, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub peers_found: u64,
    pub rate_limited: u64,
    pub malformed: u64,
    /// Datagrams dropped because their source is not on our local network.
    pub off_subnet: u64,
}

struct Entry {
    info_hash: InfoHash,
    /// When this torrent is to be announced next.
    due: Instant,
    /// Announces of it sent so far.
    sent: usize,
    last_sent: Option<Instant>,
}

pub struct Announcer {
    port: u16,
    family: Family,
    cookie: String,
    /// Our own address, if bound to a specific one: an announce from it with our port is us.
    own_ip: Option<IpAddr>,
    torrents: Vec<Entry>,
    /// No datagram leaves before this.
    next_send: Instant,
    senders: HashMap<IpAddr, Bucket>,
    all_senders: Bucket,
    /// Our interfaces' subnets: announces from elsewhere are dropped. Until the driver sets
    /// them, only loopback and IPv6 link-local sources are local.
    local_subnets: Vec<Subnet>,
    stats: Stats,
}

impl Announcer {
    /// `port`: where we accept peer connections. `cookie`: random per process, so that we
    /// recognise our own datagrams. `own_ip`: the address we are bound to, unless unspecified.
    pub fn new(port: u16, family: Family, cookie: u32, own_ip: Option<IpAddr>, now: Instant) -> Announcer {
        Announcer {
            port,
            family,
            cookie: format!("{cookie:x}"),
            own_ip: own_ip.filter(|ip| !ip.is_unspecified()),
            torrents: Vec::new(),
            next_send: now,
            senders: HashMap::new(),
            all_senders: Bucket::full(ALL_SENDERS, now),
            local_subnets: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Replaces the subnets of our interfaces (at most [`MAX_SUBNETS`] are kept): announces
    /// are accepted only from sources on one of them, on loopback, or IPv6 link-local.
    pub fn set_local_subnets(&mut self, mut subnets: Vec<Subnet>) {
        subnets.truncate(MAX_SUBNETS);
        self.local_subnets = subnets;
    }

    /// Starts announcing `info_hash`: at once, then on the schedule. Adding it again is a no-op.
    pub fn add_torrent(&mut self, now: Instant, info_hash: InfoHash) {
        if self.torrents.iter().all(|e| e.info_hash != info_hash) {
            self.torrents.push(Entry { info_hash, due: now, sent: 0, last_sent: None });
        }
    }

    pub fn remove_torrent(&mut self, info_hash: InfoHash) {
        self.torrents.retain(|e| e.info_hash != info_hash);
    }

    /// The datagram to multicast now, if one is due and the rate limit allows it. Call again
    /// after [`Announcer::next_deadline`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if now < self.next_send {
            return None;
        }
        let mut due: Vec<usize> = (0..self.torrents.len()).filter(|&i| self.torrents[i].due <= now).collect();
        if due.is_empty() {
            return None;
        }
        // The longest-waiting first, so that with many torrents none is starved.
        due.sort_by_key(|&i| self.torrents[i].due);
        due.truncate(MAX_INFOHASHES);
        let mut info_hashes = Vec::with_capacity(due.len());
        for i in due {
            let e = &mut self.torrents[i];
            info_hashes.push(e.info_hash);
            e.due = now + START_REPEATS.get(e.sent).copied().unwrap_or(ANNOUNCE_EVERY);
            e.sent += 1;
            e.last_sent = Some(now);
        }
        self.next_send = now + MIN_SEND_GAP;
        self.stats.datagrams_sent += 1;
        let announce = Announce { port: self.port, info_hashes, cookie: Some(self.cookie.clone()) };
        Some(announce.encode(self.family))
    }

    /// When [`Announcer::poll_transmit`] may next have something to send.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.torrents.iter().map(|e| e.due).min().map(|d| d.max(self.next_send))
    }

    /// One datagram from the group: the peers it tells us about, for our torrents only.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Vec<(InfoHash, SocketAddr)>, Ignored> {
        self.stats.datagrams_received += 1;
        // Before the rate limits: a flood from off the link must not use up their budget.
        if !subnets::is_local(from.ip(), &self.local_subnets) {
            self.stats.off_subnet += 1;
            return Err(Ignored::OffSubnet);
        }
        if !self.admit(now, from.ip()) {
            self.stats.rate_limited += 1;
            return Err(Ignored::RateLimited);
        }
        let announce = Announce::parse(datagram).inspect_err(|_| self.stats.malformed += 1)?;
        if announce.cookie.as_deref() == Some(self.cookie.as_str())
            || (Some(from.ip()) == self.own_ip && announce.port == self.port)
        {
            return Err(Ignored::Own);
        }
        let mut peer = from;
        peer.set_port(announce.port);
        let mut found = Vec::new();
        for ih in announce.info_hashes {
            let Some(entry) = self.torrents.iter_mut().find(|e| e.info_hash == ih) else { continue };
            found.push((ih, peer));
            let answered_lately = entry.last_sent.is_some_and(|t| now.saturating_duration_since(t) < ANSWER_AFTER);
            if !answered_lately {
                entry.due = entry.due.min(now);
            }
        }
        if found.is_empty() {
            return Err(Ignored::NotOurs);
        }
        self.stats.peers_found += found.len() as u64;
        Ok(found)
    }

    /// Charges one datagram to its sender's budget, then to everyone's.
    fn admit(&mut self, now: Instant, ip: IpAddr) -> bool {
        if !self.senders.contains_key(&ip) && self.senders.len() >= MAX_SENDERS {
            self.senders.retain(|_, b| !b.is_idle(PER_SENDER, now));
            if self.senders.len() >= MAX_SENDERS {
                return false;
            }
        }
        let bucket = self.senders.entry(ip).or_insert_with(|| Bucket::full(PER_SENDER, now));
        bucket.take(PER_SENDER, now) && self.all_senders.take(ALL_SENDERS, now)
    }
}

#[cfg(test)]
mod tests;
