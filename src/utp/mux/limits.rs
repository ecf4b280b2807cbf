//! Who may hold how much of the connection table. A SYN costs its sender one datagram, may come
//! from a spoofed address, and makes us keep a connection (and later its buffers), so incoming
//! connections are capped three ways: per source host in total, per source host while still
//! half-open (SYN received, nothing after it), and all together below the table's size, so
//! that a flood of SYNs never takes the slots our own dials need.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use super::{Entry, Key, MuxConfig};
use crate::utp::conn::State;

/// The host behind an address: an IPv4 address, or the /64 of an IPv6 one (a single host is
/// routinely handed a whole /64, so its addresses say nothing about how many hosts there are).
pub(super) fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Why a SYN was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Incoming connections fill their share of the table (the rest is kept for dials).
    Full,
    /// This host holds its share of connections.
    Source,
    /// This host has its share of connections that never got past the SYN.
    HalfOpen,
}

/// The incoming connections, counted and indexed by source host. Only the table's own inserts
/// and removals change it, so its size is bounded by the table's.
#[derive(Default)]
pub(super) struct Limits {
    incoming: usize,
    by_source: HashMap<IpAddr, Vec<Key>>,
}

impl Limits {
    /// May a SYN from `ip` make a connection? `conns` is the table (for the states of this
    /// host's connections: at most `max_per_ip` of them are looked at).
    pub fn admit(&self, ip: IpAddr, conns: &HashMap<Key, Entry>, config: &MuxConfig) -> Result<(), Refusal> {
        let share = config.max_connections.saturating_sub(config.reserved_for_dials);
        if self.incoming >= share || conns.len() >= config.max_connections {
            return Err(Refusal::Full);
        }
        let Some(keys) = self.by_source.get(&source(ip)) else { return Ok(()) };
        if keys.len() >= config.max_per_ip {
            return Err(Refusal::Source);
        }
        let half_open = keys.iter().filter(|k| conns.get(k).is_some_and(|e| e.conn.state() == State::SynRecv)).count();
        if half_open >= config.max_half_open_per_ip {
            return Err(Refusal::HalfOpen);
        }
        Ok(())
    }

    pub fn added_incoming(&mut self, key: Key) {
        self.incoming += 1;
        self.by_source.entry(source(key.0.ip())).or_default().push(key);
    }

    /// A connection left the table; only incoming ones were counted.
    pub fn removed(&mut self, key: Key) {
        let src = source(key.0.ip());
        let Some(keys) = self.by_source.get_mut(&src) else { return };
        let Some(i) = keys.iter().position(|k| *k == key) else { return };
        keys.swap_remove(i);
        self.incoming -= 1;
        if keys.is_empty() {
            self.by_source.remove(&src);
        }
    }

    /// Incoming connections in the table.
    pub fn incoming(&self) -> usize {
        self.incoming
    }
}
