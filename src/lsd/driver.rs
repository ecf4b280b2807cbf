//! The multicast socket of local service discovery (BEP 14) and the tokio task that feeds the
//! [`Announcer`] with datagrams and the clock.
//!
//! The socket is set up as libtorrent 2.1 sets up its own (src/lsd.cpp), so that both coexist
//! on one machine and hear each other: bound to the wildcard address on port 6771 with
//! SO_REUSEADDR (on Linux that alone lets any number of UDP sockets share the port, and every
//! one of them receives each multicast datagram), the group joined on the interface of our
//! `--bind` address, that interface chosen for sending (IP_MULTICAST_IF), and multicast
//! loopback on, so that clients on the same host hear each other. Unlike libtorrent (TTL 32)
//! we send with a TTL of 1: the service is local, and libtorrent drops announces from outside
//! its own subnet anyway. A wildcard `--bind` leaves the choice of interface to the kernel
//! (the one of the default route).
//!
//! Announces are accepted only from our interfaces' subnets (see [`crate::lsd::subnets`]):
//! the task reads them from `/proc/net/route` and `/proc/net/if_inet6` at start and every
//! [`SUBNETS_EVERY`], so an address that comes or goes (DHCP, a VPN) is seen within that.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::id::InfoHash;
use crate::lsd::announcer::{Announcer, Ignored};
use crate::lsd::message::{Family, GROUP_V4, GROUP_V6, LSD_PORT, MAX_MESSAGE};
use crate::lsd::subnets::{self, Subnet};

/// Peers found and not yet taken by the runner; more are dropped (they come again in five
/// minutes, and the runner drains this continuously).
const PEER_QUEUE: usize = 256;
/// Multicast hops: the local link only.
const TTL: u32 = 1;
/// How often the subnets of our interfaces are read again.
const SUBNETS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

use crate::clock::now;

/// What to announce, and where.
#[derive(Debug, Clone)]
pub struct LsdConfig {
    /// The address we are bound to (`--bind`): its interface carries the multicast. An IPv6
    /// address selects the IPv6 group.
    pub bind_ip: IpAddr,
    /// Where we accept peer connections (TCP and uTP).
    pub listen_port: u16,
    pub info_hashes: Vec<InfoHash>,
}

#[derive(Debug, thiserror::Error)]
pub enum LsdError {
    #[error("cannot set up the LSD socket on port {LSD_PORT}: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot join the LSD group {group} on {interface}: {source}")]
    Join {
        group: IpAddr,
        interface: IpAddr,
        #[source]
        source: io::Error,
    },
}

/// Opens the socket and starts announcing `config.info_hashes` until `stop` turns true (or
/// the receiver is dropped). Must be called within a tokio runtime. Peers found arrive on the
/// returned channel as `(info-hash, address to dial)`.
pub fn start(
    config: LsdConfig,
    stop: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<(InfoHash, SocketAddr)>, LsdError> {
    let (socket, family) = open(config.bind_ip)?;
    let group = match family {
        Family::V4 => SocketAddr::from((GROUP_V4, LSD_PORT)),
        Family::V6 => SocketAddr::from((GROUP_V6, LSD_PORT)),
    };
    let t = now();
    let cookie = rand::random::<u32>() & 0x7fff_ffff;
    let mut announcer = Announcer::new(config.listen_port, family, cookie, Some(config.bind_ip), t);
    for ih in &config.info_hashes {
        announcer.add_torrent(t, *ih);
    }
    tracing::info!(interface = %config.bind_ip, %group, cookie = announcer.cookie(), "local service discovery started");
    let (tx, rx) = mpsc::channel(PEER_QUEUE);
    tokio::spawn(run(socket, group, announcer, tx, stop));
    Ok(rx)
}

fn open(bind_ip: IpAddr) -> Result<(UdpSocket, Family), LsdError> {
    let socket_err = LsdError::Socket;
    let (socket, family) = match bind_ip {
        IpAddr::V4(ip) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(socket_err)?;
            s.set_reuse_address(true).map_err(socket_err)?;
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, LSD_PORT)).into()).map_err(socket_err)?;
            s.join_multicast_v4(&GROUP_V4, &ip).map_err(|source| LsdError::Join {
                group: GROUP_V4.into(),
                interface: bind_ip,
                source,
            })?;
            s.set_multicast_ttl_v4(TTL).map_err(socket_err)?;
            s.set_multicast_loop_v4(true).map_err(socket_err)?;
            if !ip.is_unspecified() {
                s.set_multicast_if_v4(&ip).map_err(socket_err)?;
            }
            (s, Family::V4)
        }
        IpAddr::V6(_) => {
            // An interface index cannot be had from an address without listing interfaces:
            // index 0 lets the kernel choose, as for a wildcard IPv4 bind.
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).map_err(socket_err)?;
            s.set_only_v6(true).map_err(socket_err)?;
            s.set_reuse_address(true).map_err(socket_err)?;
            s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, LSD_PORT)).into()).map_err(socket_err)?;
            s.join_multicast_v6(&GROUP_V6, 0).map_err(|source| LsdError::Join {
                group: GROUP_V6.into(),
                interface: bind_ip,
                source,
            })?;
            s.set_multicast_hops_v6(TTL).map_err(socket_err)?;
            s.set_multicast_loop_v6(true).map_err(socket_err)?;
            (s, Family::V6)
        }
    };
    socket.set_nonblocking(true).map_err(socket_err)?;
    let socket = UdpSocket::from_std(socket.into()).map_err(socket_err)?;
    Ok((socket, family))
}

async fn run(
    socket: UdpSocket,
    group: SocketAddr,
    mut announcer: Announcer,
    peers: mpsc::Sender<(InfoHash, SocketAddr)>,
    mut stop: watch::Receiver<bool>,
) {
    // One byte more than a message may have, so that a longer one shows as too long.
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let mut send_failed = false;
    let mut subnets_failed = false;
    let mut refresh = tokio::time::interval(SUBNETS_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        let t = now();
        while let Some(datagram) = announcer.poll_transmit(t) {
            match socket.send_to(&datagram, group).await {
                Ok(_) => tracing::debug!(%group, bytes = datagram.len(), "LSD announce sent"),
                // Unreachable networks come and go (a laptop off its LAN): keep trying on the
                // schedule, and say so once.
                Err(e) if !send_failed => {
                    send_failed = true;
                    tracing::warn!(%group, error = %e, "cannot send LSD announces");
                }
                Err(e) => tracing::debug!(%group, error = %e, "LSD announce not sent"),
            }
        }
        let wake = announcer.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = &mut stopped => break,
            _ = peers.closed() => break,
            // The first tick is at once, so the table is known before most announces arrive.
            _ = refresh.tick() => match local_subnets().await {
                Ok(table) => {
                    tracing::debug!(subnets = ?table.iter().map(ToString::to_string).collect::<Vec<_>>(), "LSD accepts announces from");
                    announcer.set_local_subnets(table);
                }
                // Without the table only loopback and link-local sources are heard: failing
                // closed, since an announce makes us dial its source.
                Err(e) if !subnets_failed => {
                    subnets_failed = true;
                    tracing::warn!(error = %e, "cannot read the local subnets; LSD hears loopback and link-local only");
                }
                Err(e) => tracing::debug!(error = %e, "cannot read the local subnets"),
            },
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => match announcer.handle_datagram(now(), from, &buf[..n]) {
                    Ok(found) => {
                        for (info_hash, addr) in found {
                            tracing::debug!(%info_hash, %addr, "peer found by local service discovery");
                            let _ = peers.try_send((info_hash, addr));
                        }
                    }
                    Err(Ignored::Own | Ignored::NotOurs) => {}
                    Err(Ignored::OffSubnet) => tracing::debug!(%from, "LSD announce from off our subnets dropped"),
                    Err(e) => tracing::debug!(%from, reason = %e, "LSD datagram ignored"),
                },
                Err(e) => {
                    // ICMP errors surface here on some systems; they say nothing about the
                    // socket's health, but do not spin on a persistent one.
                    tracing::debug!(error = %e, "LSD receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
    tracing::debug!(stats = ?announcer.stats(), "local service discovery stopped");
}

/// The subnets of this host's interfaces, from `/proc` (through tokio's blocking pool, as
/// all file reads). An IPv6-less kernel has no `if_inet6`: that alone is no error.
async fn local_subnets() -> io::Result<Vec<Subnet>> {
    let mut table = subnets::parse_proc_route(&tokio::fs::read_to_string("/proc/net/route").await?);
    match tokio::fs::read_to_string("/proc/net/if_inet6").await {
        Ok(text) => table.extend(subnets::parse_if_inet6(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two announcers on one host share port 6771 (SO_REUSEADDR), hear each other through
    /// multicast loopback on `lo`, and ignore themselves. Where the host refuses the socket
    /// itself (no multicast on `lo` at all), the test says so and passes; once both sockets
    /// are up, the announces must arrive.
    #[tokio::test]
    async fn two_instances_on_loopback_find_each_other() {
        let ih = InfoHash::from_slice(&[0x5a; 20]).unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let a = start(
            LsdConfig { bind_ip: [127, 0, 0, 1].into(), listen_port: 40001, info_hashes: vec![ih] },
            stop.clone(),
        );
        let b = start(LsdConfig { bind_ip: [127, 0, 0, 1].into(), listen_port: 40002, info_hashes: vec![ih] }, stop);
        let (mut a, mut b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                eprintln!("skipped: no LSD socket on this host: {:?} {:?}", a.err(), b.err());
                return;
            }
        };
        let wait = std::time::Duration::from_secs(10);
        let got_a = tokio::time::timeout(wait, a.recv()).await;
        let got_b = tokio::time::timeout(wait, b.recv()).await;
        let (Ok(Some(got_a)), Ok(Some(got_b))) = (got_a, got_b) else {
            panic!("announces did not arrive within {wait:?}");
        };
        assert_eq!(got_a, (ih, SocketAddr::from(([127, 0, 0, 1], 40002))));
        assert_eq!(got_b, (ih, SocketAddr::from(([127, 0, 0, 1], 40001))));
    }
}
