//! Which byte stream carries the peer wire (BEP 3) to a peer: TCP, or uTP (BEP 29) on the UDP
//! port the DHT also uses. `--transport any` dials uTP first and falls back to TCP, as
//! libtorrent does; rather than wait out a silent uTP port (a client with uTP off ignores
//! SYNs), TCP is dialled alongside once uTP has had a head start, and the first to connect
//! wins. A peer that answered over one transport before is dialled over that one first next
//! time. The peer wire itself does not know which one it runs over.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::utp::{UtpSocket, UtpStream};

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

/// How long the first transport tried has to itself before the second is dialled alongside:
/// a SYN's first retransmission timeout, so one lost SYN costs nothing.
pub const HEAD_START: Duration = Duration::from_secs(1);
/// How long a uTP connect may take (the SYN and its retries).
pub const UTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(8);
pub const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
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
    /// The address outgoing TCP connections leave from, when `--bind` named one: peers then
    /// see the address we listen on (what they pass on by peer exchange), not whichever one
    /// the routing table picks.
    local_ip: Option<IpAddr>,
    tcp: AtomicU64,
    utp_count: AtomicU64,
}

impl Transports {
    pub fn new(mode: Transport, utp: Option<UtpSocket>) -> Transports {
        Transports {
            mode,
            utp,
            worked: Mutex::new(HashMap::new()),
            local_ip: None,
            tcp: AtomicU64::new(0),
            utp_count: AtomicU64::new(0),
        }
    }

    /// Outgoing TCP connections leave from `ip` (an unspecified address changes nothing).
    pub fn with_local_ip(mut self, ip: IpAddr) -> Transports {
        self.local_ip = (!ip.is_unspecified()).then_some(ip);
        self
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

    /// Connects to `addr` over `kind`, bounded in time.
    pub async fn connect_over(&self, kind: Kind, addr: SocketAddr) -> std::io::Result<PeerStream> {
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        match kind {
            Kind::Utp => {
                let utp = self.utp.as_ref().ok_or_else(|| std::io::Error::other("uTP is off"))?;
                let stream =
                    tokio::time::timeout(UTP_CONNECT_TIMEOUT, utp.connect(addr)).await.map_err(|_| timed_out())??;
                Ok(PeerStream::Utp(stream))
            }
            Kind::Tcp => {
                let stream = tokio::time::timeout(TCP_CONNECT_TIMEOUT, self.tcp_connect(addr))
                    .await
                    .map_err(|_| timed_out())??;
                let _ = stream.set_nodelay(true);
                Ok(PeerStream::Tcp(stream))
            }
        }
    }

    async fn tcp_connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let Some(ip) = self.local_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) else {
            return TcpStream::connect(addr).await;
        };
        let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.bind(SocketAddr::new(ip, 0))?;
        socket.connect(addr).await
    }

    /// Connects over the first transport of `order`; if it has not connected after
    /// [`HEAD_START`] and a second one is allowed, that one is dialled alongside and the first
    /// to connect wins (the other attempt is dropped, which resets a half-open uTP
    /// connection). None when every attempt failed.
    pub async fn connect(&self, order: &[Kind], addr: SocketAddr) -> Option<(Kind, PeerStream)> {
        let (&first, second) = order.split_first()?;
        let mut a = std::pin::pin!(self.connect_over(first, addr));
        let Some(&second) = second.first() else { return a.await.ok().map(|s| (first, s)) };
        tokio::select! {
            r = &mut a => match r {
                Ok(s) => return Some((first, s)),
                Err(e) => {
                    tracing::debug!(%addr, transport = ?first, error = %e, "connect failed");
                    return self.connect_over(second, addr).await.ok().map(|s| (second, s));
                }
            },
            _ = tokio::time::sleep(HEAD_START) => {}
        }
        let mut b = std::pin::pin!(self.connect_over(second, addr));
        let (mut a_done, mut b_done) = (false, false);
        while !(a_done && b_done) {
            tokio::select! {
                r = &mut a, if !a_done => match r {
                    Ok(s) => return Some((first, s)),
                    Err(_) => a_done = true,
                },
                r = &mut b, if !b_done => match r {
                    Ok(s) => return Some((second, s)),
                    Err(_) => b_done = true,
                },
            }
        }
        None
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

/// A connected stream over either transport.
pub enum PeerStream {
    Tcp(TcpStream),
    Utp(UtpStream),
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

    /// A UDP socket with uTP (taking connections or not) and a TCP listener on one loopback
    /// address. `served`: the socket has its owner task; without one, nobody reads it.
    async fn peer(
        n: u8,
        take_utp: bool,
        listen_tcp: bool,
        served: bool,
    ) -> (SocketAddr, Option<tokio::net::TcpListener>, UtpSocket, std::sync::Arc<tokio::net::UdpSocket>) {
        let udp = std::sync::Arc::new(crate::net::socket::bind_udp(SocketAddr::from(([127, 0, n, 1], 0))).unwrap());
        let addr = udp.local_addr().unwrap();
        let config = crate::utp::MuxConfig { accept_incoming: take_utp, ..Default::default() };
        let (utp, port) = UtpSocket::new(addr, config);
        if served {
            crate::net::udp_endpoint::spawn(std::sync::Arc::clone(&udp), Some(port), false).unwrap();
        }
        let tcp = if listen_tcp { Some(tokio::net::TcpListener::bind(addr).await.unwrap()) } else { None };
        (addr, tcp, utp, udp)
    }

    fn dialler(n: u8) -> Transports {
        let udp = crate::net::socket::bind_udp(SocketAddr::from(([127, 0, n, 1], 0))).unwrap();
        let utp =
            crate::net::udp_endpoint::spawn_utp(std::sync::Arc::new(udp), crate::utp::MuxConfig::default()).unwrap();
        Transports::new(Transport::Any, Some(utp))
    }

    #[tokio::test]
    async fn any_connects_over_utp_when_the_peer_takes_it() {
        let (addr, _tcp, _utp, _udp) = peer(216, true, true, true).await;
        let t = dialler(217);
        let got = t.connect(&t.dial_order(addr), addr).await;
        assert!(matches!(got, Some((Kind::Utp, PeerStream::Utp(_)))));
    }

    #[tokio::test]
    async fn any_reaches_a_peer_whose_utp_port_is_silent_over_tcp() {
        // Nobody reads the UDP socket: SYNs vanish, as with a client that has uTP off.
        let (addr, _tcp, _utp, _udp) = peer(218, true, true, false).await;
        let t = dialler(219);
        let got = tokio::time::timeout(Duration::from_secs(30), t.connect(&t.dial_order(addr), addr)).await.unwrap();
        assert!(matches!(got, Some((Kind::Tcp, PeerStream::Tcp(_)))));
    }

    #[tokio::test]
    async fn a_refused_utp_falls_back_at_once_and_nothing_at_all_is_none() {
        let (addr, tcp, _utp, _udp) = peer(220, false, true, true).await;
        let t = dialler(221);
        // "At once": the RESET answering our SYN ends uTP, and TCP is dialled then, not after
        // the head start. Real time (the sockets are real, so tokio's clock cannot be paused);
        // loopback takes microseconds, half the head start is a wide margin.
        let started = tokio::time::Instant::now();
        let got = t.connect(&t.dial_order(addr), addr).await;
        let took = started.elapsed();
        assert!(matches!(got, Some((Kind::Tcp, PeerStream::Tcp(_)))));
        assert!(took < HEAD_START / 2, "fell back to TCP after {took:?}, the head start is {HEAD_START:?}");
        drop(tcp);
        let got = tokio::time::timeout(Duration::from_secs(30), t.connect(&t.dial_order(addr), addr)).await.unwrap();
        assert!(got.is_none());
    }

    #[tokio::test]
    async fn tcp_dials_leave_from_the_bound_address() {
        let (addr, tcp, _utp, _udp) = peer(222, false, true, false).await;
        let tcp = tcp.unwrap();
        let ours = std::net::IpAddr::from([127, 0, 223, 1]);
        let t = Transports::new(Transport::Tcp, None).with_local_ip(ours);
        let (dialled, accepted) = tokio::join!(t.connect_over(Kind::Tcp, addr), tcp.accept());
        assert!(dialled.is_ok());
        assert_eq!(accepted.unwrap().1.ip(), ours, "the peer sees the address we listen on");
        // An unspecified bind leaves the choice to the kernel.
        let any = Transports::new(Transport::Tcp, None).with_local_ip(std::net::IpAddr::from([0, 0, 0, 0]));
        let (dialled, accepted) = tokio::join!(any.connect_over(Kind::Tcp, addr), tcp.accept());
        assert!(dialled.is_ok());
        assert_eq!(accepted.unwrap().1.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
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
