//! What `get` and `seed` share: the one port for UDP (DHT and uTP) and TCP (peer wire), a DHT
//! node and uTP running on that UDP socket, local service discovery, and the torrent's progress
//! reporting.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::cli::common::{load_state, node_config, random_seed, routers};
use crate::cli::{CliError, NetArgs};
use crate::dht::driver::{Driver, DriverOptions};
use crate::dht::node::Node;
use crate::id::InfoHash;
use crate::lsd::{self, LsdConfig};
use crate::net::rate_limit::RateLimit;
use crate::net::rate_limit::RateLimits;
use crate::net::socket::bind_udp;
use crate::net::udp_endpoint::{self, KrpcLink};
use crate::session::runner::DhtLink;
use crate::session::transport::{Kind, Transport, Transports};
use crate::utp::{MuxConfig, UtpSocket};

pub use crate::clock::now;

/// The process's rate limits (0: none), shared by all its peers over TCP and uTP.
pub fn rate_limits(upload: u64, download: u64) -> RateLimits {
    let t = now();
    RateLimits { upload: RateLimit::new(upload, t), download: RateLimit::new(download, t) }
}

/// Binds UDP and TCP on the same port (CLI contract: one port per process). With port 0 the
/// UDP socket picks one and TCP follows; a few tries cover a port taken on the TCP side.
pub async fn bind_peer_ports(bind: SocketAddr) -> Result<(Arc<UdpSocket>, TcpListener), CliError> {
    let tries = if bind.port() == 0 { 20 } else { 1 };
    let mut last_err = None;
    for _ in 0..tries {
        let udp = bind_udp(bind).map_err(|e| CliError::failed(anyhow::anyhow!("cannot bind UDP {bind}: {e}")))?;
        let local = udp.local_addr().map_err(CliError::failed)?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((Arc::new(udp), tcp)),
            Err(e) => last_err = Some((local, e)),
        }
    }
    match last_err {
        Some((addr, e)) => Err(CliError::failed(anyhow::anyhow!("cannot bind TCP {addr}: {e}"))),
        None => Err(CliError::failed(anyhow::anyhow!("cannot bind TCP on {bind}"))),
    }
}

/// The DHT (unless `no_dht`) and uTP on the UDP socket, and the transports the torrent may
/// use. One owner task serves the socket for both (`net::udp_endpoint`), so uTP works the
/// same with the DHT on or off. uTP exists whatever `transport` says, so that a uTP peer we
/// do not want gets a RESET at once rather than silence; it takes incoming connections only
/// when `transport` allows.
pub async fn start_udp(
    net: &NetArgs,
    socket: Arc<UdpSocket>,
    no_dht: bool,
    transport: Transport,
    stop: &watch::Receiver<bool>,
) -> Result<(Option<DhtLink>, Arc<Transports>), CliError> {
    let config = MuxConfig { accept_incoming: transport.allows(Kind::Utp), ..MuxConfig::default() };
    let local = socket.local_addr().map_err(CliError::failed)?;
    let (utp, port) = UtpSocket::new(local, config);
    let link = udp_endpoint::spawn(socket, Some(port), !no_dht).map_err(CliError::failed)?;
    let dht = match link {
        Some(link) => Some(start_dht(net, link, stop).await?),
        None => None,
    };
    let local_ip = local.ip();
    Ok((dht, Arc::new(Transports::new(transport, Some(utp)).with_local_ip(local_ip))))
}

/// Starts a DHT node on the socket `link` leads to, stopped when `stop` turns true.
pub async fn start_dht(net: &NetArgs, link: KrpcLink, stop: &watch::Receiver<bool>) -> Result<DhtLink, CliError> {
    let (id, known) = load_state(net)?;
    let local = link.local;
    let routers = routers(net, local.is_ipv6()).await?;
    if routers.is_empty() && known.is_empty() {
        tracing::warn!("no DHT router and no saved contacts: only --peer and incoming peers will be used");
    }
    let config = node_config(local);
    let mut node = Node::new(config, id, random_seed(), now());
    node.set_routers(now(), routers);
    if !known.is_empty() {
        node.add_known_nodes(now(), &known);
    }
    let options = DriverOptions { state_path: net.state.clone(), ..Default::default() };
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let mut stop = stop.clone();
    tokio::spawn(Driver::with_link(node, link, options).run(cmd_rx, ev_tx, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok(DhtLink { commands: cmd_tx, events: ev_rx })
}

/// Local service discovery (BEP 14) for `info_hash` on the interface of `local`, unless
/// `no_lsd`. It is a convenience, not a requirement: if the multicast socket cannot be set up
/// (no multicast route, port 6771 held exclusively by another program), say so and go on.
pub fn start_lsd(
    local: SocketAddr,
    info_hash: InfoHash,
    no_lsd: bool,
    stop: &watch::Receiver<bool>,
) -> Option<mpsc::Receiver<(InfoHash, SocketAddr)>> {
    if no_lsd {
        return None;
    }
    let config = LsdConfig { bind_ip: local.ip(), listen_port: local.port(), info_hashes: vec![info_hash] };
    match lsd::start(config, stop.clone()) {
        Ok(rx) => Some(rx),
        Err(e) => {
            tracing::warn!(error = %e, "local service discovery is off");
            None
        }
    }
}
