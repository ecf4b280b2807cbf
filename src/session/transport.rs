//! Which byte stream carries the peer wire (BEP 3) to a peer: TCP, or uTP (BEP 29) on the UDP
//! port the DHT also uses. `--transport any` dials uTP first with a short timeout and falls
//! back to TCP, as libtorrent does; a peer that answered over one transport before is dialled
//! over that one first next time, with the other as its fallback. The peer wire itself does
//! not know which one it runs over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::utp::UtpSocket;

/// What `--transport` allows, for dialling and for accepting alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    Tcp,
    Utp,
    #[default]
    Any,
}

impl Transport {
    pub fn allows(self, kind: Kind) -> bool {
        matches!((self, kind), (Transport::Any, _) | (Transport::Tcp, Kind::Tcp) | (Transport::Utp, Kind::Utp))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport `{0}` (expected tcp, utp or any)")]
pub struct TransportParseError(String);

impl FromStr for Transport {
    type Err = TransportParseError;
    fn from_str(s: &str) -> Result<Transport, TransportParseError> {
        match s {
            "tcp" => Ok(Transport::Tcp),
            "utp" => Ok(Transport::Utp),
            "any" => Ok(Transport::Any),
            other => Err(TransportParseError(other.to_string())),
        }
    }
}

/// The transport one connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Tcp,
    Utp,
}

/// How long a uTP connect may take before `any` tries TCP: a SYN and one retry.
pub const UTP_FALLBACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a uTP connect may take when it is the only transport (the SYN and its retries).
pub const UTP_ONLY_TIMEOUT: Duration = Duration::from_secs(8);
/// Addresses whose working transport is remembered at most.
const MEMORY: usize = 4096;

/// Peer connections established over each transport, incoming and outgoing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportCounts {
    pub tcp: u64,
    pub utp: u64,
}

/// The transports a torrent's peers may use, and what it learned about each address.
pub struct Transports {
    pub mode: Transport,
    /// uTP on the process's UDP socket; `None` means TCP only whatever the mode says.
    pub utp: Option<UtpSocket>,
    worked: Mutex<HashMap<SocketAddr, Kind>>,
    tcp: AtomicU64,
    utp_count: AtomicU64,
}

impl Transports {
    pub fn new(mode: Transport, utp: Option<UtpSocket>) -> Transports {
        Transports {
            mode,
            utp,
            worked: Mutex::new(HashMap::new()),
            tcp: AtomicU64::new(0),
            utp_count: AtomicU64::new(0),
        }
    }

    pub fn tcp_only() -> Transports {
        Transports::new(Transport::Tcp, None)
    }

    /// Whether an incoming connection over `kind` is taken.
    pub fn accepts(&self, kind: Kind) -> bool {
        self.mode.allows(kind) && (kind == Kind::Tcp || self.utp.is_some())
    }

    /// The transports to try for `addr`, in order.
    pub fn dial_order(&self, addr: SocketAddr) -> Vec<Kind> {
        let remembered = self.worked.lock().ok().and_then(|m| m.get(&addr).copied());
        dial_order(self.mode, self.utp.is_some(), remembered)
    }

    /// The connect timeout for uTP: short when TCP can take over.
    pub fn utp_timeout(&self, order: &[Kind], kind_index: usize) -> Duration {
        if order.len() > kind_index + 1 {
            UTP_FALLBACK_TIMEOUT
        } else {
            UTP_ONLY_TIMEOUT
        }
    }

    /// A connection over `kind` to `addr` got through the handshake.
    pub fn established(&self, addr: Option<SocketAddr>, kind: Kind) {
        match kind {
            Kind::Tcp => self.tcp.fetch_add(1, Ordering::Relaxed),
            Kind::Utp => self.utp_count.fetch_add(1, Ordering::Relaxed),
        };
        if let (Some(addr), Ok(mut m)) = (addr, self.worked.lock()) {
            if m.len() >= MEMORY && !m.contains_key(&addr) {
                m.clear();
            }
            m.insert(addr, kind);
        }
    }

    pub fn counts(&self) -> TransportCounts {
        TransportCounts { tcp: self.tcp.load(Ordering::Relaxed), utp: self.utp_count.load(Ordering::Relaxed) }
    }
}

/// uTP first (it is what most of a swarm speaks, and it yields to other traffic), unless the
/// peer answered over TCP last time; the other one as the fallback when `any` allows it.
pub fn dial_order(mode: Transport, have_utp: bool, remembered: Option<Kind>) -> Vec<Kind> {
    let mut order = match remembered {
        Some(Kind::Tcp) => vec![Kind::Tcp, Kind::Utp],
        _ => vec![Kind::Utp, Kind::Tcp],
    };
    order.retain(|k| mode.allows(*k) && (*k == Kind::Tcp || have_utp));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_the_three_names() {
        assert_eq!("tcp".parse(), Ok(Transport::Tcp));
        assert_eq!("utp".parse(), Ok(Transport::Utp));
        assert_eq!("any".parse(), Ok(Transport::Any));
        assert!("udp".parse::<Transport>().is_err());
    }

    #[test]
    fn any_tries_utp_then_tcp_unless_tcp_worked_before() {
        assert_eq!(dial_order(Transport::Any, true, None), vec![Kind::Utp, Kind::Tcp]);
        assert_eq!(dial_order(Transport::Any, true, Some(Kind::Utp)), vec![Kind::Utp, Kind::Tcp]);
        assert_eq!(dial_order(Transport::Any, true, Some(Kind::Tcp)), vec![Kind::Tcp, Kind::Utp]);
        assert_eq!(dial_order(Transport::Any, false, None), vec![Kind::Tcp]);
    }

    #[test]
    fn a_single_transport_is_the_only_one_tried() {
        assert_eq!(dial_order(Transport::Tcp, true, Some(Kind::Utp)), vec![Kind::Tcp]);
        assert_eq!(dial_order(Transport::Utp, true, Some(Kind::Tcp)), vec![Kind::Utp]);
        assert_eq!(dial_order(Transport::Utp, false, None), Vec::<Kind>::new());
    }

    #[test]
    fn accepting_follows_the_mode() {
        let t = Transports::tcp_only();
        assert!(t.accepts(Kind::Tcp));
        assert!(!t.accepts(Kind::Utp));
        let u = Transports::new(Transport::Utp, None);
        assert!(!u.accepts(Kind::Tcp));
    }

    #[test]
    fn what_worked_is_remembered_and_counted() {
        let t = Transports::new(Transport::Any, None);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        t.established(Some(a), Kind::Tcp);
        t.established(None, Kind::Utp);
        assert_eq!(t.counts(), TransportCounts { tcp: 1, utp: 1 });
        assert_eq!(t.worked.lock().unwrap().get(&a), Some(&Kind::Tcp));
    }
}
