//! What the networked subcommands share: logging, the UDP socket, routers and state.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::{CliError, NetArgs};
use crate::dht::compact::CompactNode;
use crate::dht::persist::State;
use crate::id::NodeId;
use crate::net::resolve::{resolve_all, DEFAULT_ROUTERS};
use crate::net::socket::bind_udp;

/// Logs to stderr; `RUST_LOG` wins over -v/-q. Colours only on a terminal, and not when
/// `NO_COLOR` is set (<https://no-color.org>): a pipe, a file or the journal gets plain text.
pub fn init_logging(verbose: u8, quiet: bool, default: &str) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => default,
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("kadswarm={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
        .try_init();
}

/// ANSI colours only for a terminal, and only when `NO_COLOR` is unset or empty.
fn colour_logs(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

pub fn bind(addr: SocketAddr) -> Result<Arc<tokio::net::UdpSocket>, CliError> {
    let socket = bind_udp(addr).with_context(|| format!("cannot bind UDP {addr}")).map_err(CliError::failed)?;
    Ok(Arc::new(socket))
}

/// The addresses of `--bind`: one, or an IPv4 and an IPv6 one for a dual-stack node.
/// More than two, or two of one family, is bad input (exit 2).
pub fn bind_addrs(net: &NetArgs) -> Result<(SocketAddr, Option<SocketAddr>), CliError> {
    match net.bind[..] {
        [one] => Ok((one, None)),
        [a, b] if a.is_ipv6() != b.is_ipv6() => Ok((a, Some(b))),
        [a, b] => Err(CliError::bad_input(anyhow::anyhow!(
            "--bind {a} and --bind {b} are of the same address family; a second --bind must be the other one (IPv4 and IPv6)"
        ))),
        _ => Err(CliError::bad_input(anyhow::anyhow!(
            "--bind is given {} times; at most twice (one IPv4 and one IPv6 address)",
            net.bind.len()
        ))),
    }
}

/// The one `--bind` of a subcommand that is not dual-stack (`get`, `seed`: the peer wire and
/// uTP run on one address).
pub fn single_bind(net: &NetArgs, command: &str) -> Result<SocketAddr, CliError> {
    match bind_addrs(net)? {
        (one, None) => Ok(one),
        (_, Some(_)) => Err(CliError::bad_input(anyhow::anyhow!(
            "`{command}` takes one --bind; a second one (dual-stack) is for `node`, `peers` and `crawl`"
        ))),
    }
}

/// The DHT's UDP sockets: the first `--bind`, and the second of a dual-stack node.
pub struct DhtSockets {
    pub first: Arc<tokio::net::UdpSocket>,
    pub local: SocketAddr,
    pub second: Option<Arc<tokio::net::UdpSocket>>,
    pub local2: Option<SocketAddr>,
}

impl DhtSockets {
    pub fn bind(net: &NetArgs) -> Result<DhtSockets, CliError> {
        let (a, b) = bind_addrs(net)?;
        let first = bind(a)?;
        let local = first.local_addr().map_err(CliError::failed)?;
        let second = b.map(bind).transpose()?;
        let local2 = second.as_ref().map(|s| s.local_addr()).transpose().map_err(CliError::failed)?;
        Ok(DhtSockets { first, local, second, local2 })
    }

    /// The node's configuration for these sockets: dual-stack with a second one, each family
    /// judging addresses by the scope of its own bound address.
    pub fn config(&self) -> crate::dht::node::Config {
        use crate::net::addr::Scope;
        let mut config = node_config(self.local);
        if let Some(l2) = self.local2 {
            let (v4, v6) = if l2.is_ipv6() { (self.local, l2) } else { (l2, self.local) };
            config.dual_stack = true;
            config.scope = Scope::of(v4.ip());
            config.scope_v6 = Some(Scope::of(v6.ip()));
        }
        config
    }

    /// The routers of each bound family.
    pub async fn routers(&self, net: &NetArgs) -> Result<Vec<SocketAddr>, CliError> {
        let mut all = routers(net, self.local.is_ipv6()).await?;
        if let Some(l2) = self.local2 {
            all.extend(routers(net, l2.is_ipv6()).await?);
            all.sort();
            all.dedup();
        }
        Ok(all)
    }

    /// "A" or "A and B", for logs.
    pub fn describe(&self) -> String {
        match self.local2 {
            Some(l2) => format!("{} and {l2}", self.local),
            None => self.local.to_string(),
        }
    }
}

/// The routers to join through: --bootstrap, the public ones, or none.
pub async fn routers(net: &NetArgs, family_v6: bool) -> Result<Vec<SocketAddr>, CliError> {
    for entry in &net.bootstrap {
        crate::net::resolve::split_host_port(entry).map_err(CliError::bad_input)?;
    }
    if net.no_bootstrap {
        return Ok(Vec::new());
    }
    let entries: Vec<String> = if net.bootstrap.is_empty() {
        DEFAULT_ROUTERS.iter().map(|s| s.to_string()).collect()
    } else {
        net.bootstrap.clone()
    };
    let resolved = resolve_all(&entries, family_v6).await;
    if resolved.is_empty() {
        tracing::warn!("no bootstrap router could be resolved");
    }
    Ok(resolved)
}

/// The id and nodes remembered in --state, if any.
pub fn load_state(net: &NetArgs) -> Result<(Option<NodeId>, Vec<CompactNode>), CliError> {
    let Some(path) = &net.state else { return Ok((None, Vec::new())) };
    match State::load(path).map_err(CliError::bad_input)? {
        Some(state) => {
            tracing::info!(path = %path.display(), nodes = state.nodes.len(), id = %state.id, "loaded DHT state");
            Ok((Some(state.id), state.nodes))
        }
        None => Ok((None, Vec::new())),
    }
}

/// A seed for the node's RNG: different on every run, from the OS.
pub fn random_seed() -> u64 {
    rand::random()
}

/// What every real node (not a simulation) starts from: secrets from the OS random source,
/// and the address scope of where it is bound.
pub fn node_config(local: std::net::SocketAddr) -> crate::dht::node::Config {
    crate::dht::node::Config {
        secret_seed: Some(secret_seed()),
        scope: crate::net::addr::Scope::of(local.ip()),
        ..crate::dht::node::Config::default()
    }
}

/// 32 bytes from the OS random source, for the node's secrets (write tokens, hash keys).
fn secret_seed() -> [u8; 32] {
    use rand::TryRng;
    let mut seed = [0u8; 32];
    if rand::rngs::SysRng.try_fill_bytes(&mut seed).is_err() {
        // No OS source (a very unusual sandbox): the thread RNG is itself seeded from it.
        seed = rand::random();
    }
    seed
}

#[cfg(test)]
mod tests {
    use super::colour_logs;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(colour_logs(true, Some("".into())), "an empty NO_COLOR does not count (no-color.org)");
        assert!(!colour_logs(true, Some("1".into())));
        assert!(!colour_logs(false, None));
        assert!(!colour_logs(false, Some("1".into())));
    }
}
