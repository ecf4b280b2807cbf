//! How many incoming connections may be waiting for their BitTorrent handshake. Until a peer
//! has named the torrent it holds a socket (a file descriptor) and a task for up to the
//! handshake timeout while costing it one TCP connect, so their number is capped in total and
//! per source IP; connections beyond are closed at once. Each admitted connection holds a
//! [`Permit`] until its handshake is over, however that ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Default)]
struct Counts {
    total: usize,
    /// Only IPs with a connection in handshake: bounded by `total`.
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Clone)]
pub struct AcceptGate {
    max_total: usize,
    max_per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One connection in handshake; dropping it frees its place.
pub struct Permit {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl AcceptGate {
    pub fn new(max_total: usize, max_per_ip: usize) -> AcceptGate {
        AcceptGate { max_total, max_per_ip, counts: Arc::default() }
    }

    /// A place for a connection from `ip`, or None when the gate is full for it.
    pub fn try_enter(&self, ip: IpAddr) -> Option<Permit> {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= self.max_total || from_ip >= self.max_per_ip {
            return None;
        }
        c.total += 1;
        c.per_ip.insert(ip, from_ip + 1);
        Some(Permit { ip, counts: Arc::clone(&self.counts) })
    }

    /// Connections in handshake now.
    pub fn in_handshake(&self) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn caps_per_ip_and_in_total_and_frees_on_drop() {
        let gate = AcceptGate::new(5, 2);
        let a: Vec<Permit> = (0..3).filter_map(|_| gate.try_enter(ip(1))).collect();
        assert_eq!(a.len(), 2, "two per IP");
        let b: Vec<Permit> = (2..10).filter_map(|n| gate.try_enter(ip(n))).collect();
        assert_eq!(b.len(), 3, "five in total");
        assert!(gate.try_enter(ip(200)).is_none());
        drop(a);
        assert_eq!(gate.in_handshake(), 3);
        assert!(gate.try_enter(ip(1)).is_some(), "the places came back");
        drop(b);
        assert_eq!(gate.in_handshake(), 0);
        assert!(gate.counts.lock().unwrap().per_ip.is_empty(), "no IP is remembered once it has none");
    }
}
