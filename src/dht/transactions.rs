//! Outstanding KRPC queries (BEP 5 "transaction ID"): short ids, per-query deadlines, and
//! matching of answers by id *and* sender address, so a node cannot answer a query that was
//! sent to somebody else.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::dht::lookup::LookupId;
use crate::dht::node::QueryId;
use crate::id::{InfoHash, NodeId};

/// What a query was for, so that its answer (or silence) reaches the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A maintenance ping; `retried` is set after the one retry we allow.
    Ping { retried: bool },
    /// One step of an iterative lookup.
    Lookup(LookupId),
    /// announce_peer to a node that gave us a token.
    Announce { info_hash: InfoHash },
    /// A query the node's user sent itself (`Node::query`), answered by an event.
    Direct(QueryId),
}

#[derive(Debug, Clone)]
pub struct Pending {
    pub addr: SocketAddr,
    /// The id we expect to answer, when we know it (not for bootstrap routers).
    pub node_id: Option<NodeId>,
    pub purpose: Purpose,
    pub sent_at: Instant,
    pub short_deadline: Option<Instant>,
    pub deadline: Instant,
}

/// What a deadline means when it passes.
#[derive(Debug, Clone)]
pub enum Expiry {
    /// The short timeout of a lookup query: the slot is freed, the answer is still welcome.
    Short { tid: u16, addr: SocketAddr, purpose: Purpose },
    /// The query is given up.
    Full(Box<(u16, Pending)>),
}

pub struct Transactions {
    next: u16,
    pending: HashMap<u16, Pending>,
    /// (when, tid, is_short): ordered so the earliest deadline is first.
    deadlines: BTreeSet<(Instant, u16, bool)>,
    /// Queries outstanding per destination IP, so that a ping is not sent where one waits.
    per_ip: HashMap<IpAddr, u16>,
    timeout: Duration,
    short_timeout: Duration,
}

impl Transactions {
    pub fn new(first_tid: u16, timeout: Duration, short_timeout: Duration) -> Self {
        Transactions {
            next: first_tid,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            per_ip: HashMap::new(),
            timeout,
            short_timeout,
        }
    }

    /// Registers a query and returns its transaction id, or `None` when all 65536 ids are in
    /// use (the caller drops the query; this bounds memory under any load).
    pub fn start(&mut self, now: Instant, addr: SocketAddr, node_id: Option<NodeId>, purpose: Purpose) -> Option<u16> {
        if self.pending.len() >= u16::MAX as usize {
            return None;
        }
        let mut tid = self.next;
        while self.pending.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next = tid.wrapping_add(1);
        let short_deadline = match purpose {
            Purpose::Lookup(_) => Some(now + self.short_timeout),
            _ => None,
        };
        let deadline = now + self.timeout;
        if let Some(s) = short_deadline {
            self.deadlines.insert((s, tid, true));
        }
        self.deadlines.insert((deadline, tid, false));
        self.pending.insert(tid, Pending { addr, node_id, purpose, sent_at: now, short_deadline, deadline });
        *self.per_ip.entry(addr.ip()).or_default() += 1;
        Some(tid)
    }

    /// Takes the pending query answered by `tid` from `from`; `None` if there is none or the
    /// answer came from another address.
    pub fn finish(&mut self, tid: &[u8], from: SocketAddr) -> Option<Pending> {
        let tid = parse_tid(tid)?;
        let p = self.pending.get(&tid)?;
        if p.addr != from {
            return None;
        }
        let p = self.pending.remove(&tid)?;
        self.forget_ip(p.addr.ip());
        if let Some(s) = p.short_deadline {
            self.deadlines.remove(&(s, tid, true));
        }
        self.deadlines.remove(&(p.deadline, tid, false));
        Some(p)
    }

    /// Removes and returns the next deadline that has passed at `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Expiry> {
        let &(when, tid, short) = self.deadlines.first()?;
        if when > now {
            return None;
        }
        self.deadlines.pop_first();
        if short {
            let p = self.pending.get(&tid)?;
            return Some(Expiry::Short { tid, addr: p.addr, purpose: p.purpose.clone() });
        }
        let p = self.pending.remove(&tid)?;
        self.forget_ip(p.addr.ip());
        Some(Expiry::Full(Box::new((tid, p))))
    }

    fn forget_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Queries outstanding to `ip`.
    pub fn pending_to(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0) as usize
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(when, _, _)| *when)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

pub fn tid_bytes(tid: u16) -> [u8; 2] {
    tid.to_be_bytes()
}

fn parse_tid(tid: &[u8]) -> Option<u16> {
    let arr: [u8; 2] = tid.try_into().ok()?;
    Some(u16::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        crate::clock::now()
    }

    #[test]
    fn answer_must_come_from_the_queried_address() {
        let now = t0();
        let mut t = Transactions::new(7, Duration::from_secs(5), Duration::from_secs(1));
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let tid = t.start(now, a, None, Purpose::Ping { retried: false }).unwrap();
        assert!(t.finish(&tid_bytes(tid), "10.0.0.2:1".parse().unwrap()).is_none());
        assert!(t.finish(&[0, 1, 2], a).is_none());
        assert_eq!(t.pending_to(a.ip()), 1);
        assert!(t.finish(&tid_bytes(tid), a).is_some());
        assert!(t.finish(&tid_bytes(tid), a).is_none(), "answered twice");
        assert_eq!(t.pending_to(a.ip()), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn short_then_full_timeout_for_lookups_only() {
        let now = t0();
        let mut t = Transactions::new(0, Duration::from_secs(5), Duration::from_secs(1));
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        t.start(now, a, None, Purpose::Lookup(LookupId(3))).unwrap();
        t.start(now, a, None, Purpose::Ping { retried: false }).unwrap();
        assert!(t.pop_expired(now + Duration::from_millis(999)).is_none());
        let later = now + Duration::from_secs(1);
        assert!(matches!(t.pop_expired(later), Some(Expiry::Short { tid: 0, .. })));
        assert!(t.pop_expired(later).is_none());
        let end = now + Duration::from_secs(5);
        assert!(matches!(t.pop_expired(end), Some(Expiry::Full(_))));
        assert_eq!(t.pending_to(a.ip()), 1);
        assert!(matches!(t.pop_expired(end), Some(Expiry::Full(_))));
        assert!(t.is_empty());
        assert_eq!(t.pending_to(a.ip()), 0);
    }

    #[test]
    fn ids_skip_ones_in_use_and_wrap() {
        let now = t0();
        let mut t = Transactions::new(u16::MAX, Duration::from_secs(5), Duration::from_secs(1));
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let first = t.start(now, a, None, Purpose::Ping { retried: false }).unwrap();
        let second = t.start(now, a, None, Purpose::Ping { retried: false }).unwrap();
        assert_eq!((first, second), (u16::MAX, 0));
    }
}
