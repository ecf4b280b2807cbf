//! Resolving `HOST:PORT` bootstrap addresses with hickory-resolver. A name that does not
//! resolve is a warning, not an error: the other routers may still work.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;

/// The public routers used when no `--bootstrap` is given.
pub const DEFAULT_ROUTERS: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not HOST:PORT (a port from 1 to 65535 is required)")]
pub struct BadHostPort(pub String);

/// Splits `HOST:PORT` (or `[v6]:PORT`) without resolving anything.
pub fn split_host_port(s: &str) -> Result<(String, u16), BadHostPort> {
    let bad = || BadHostPort(s.to_owned());
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return if addr.port() == 0 { Err(bad()) } else { Ok((addr.ip().to_string(), addr.port())) };
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(':') || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Resolves each entry; failures are logged and skipped.
pub async fn resolve_all(entries: &[String], family_v6: bool) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    let mut resolver: Option<Option<TokioResolver>> = None;
    for entry in entries {
        let Ok((host, port)) = split_host_port(entry) else {
            tracing::warn!(entry, "ignoring bootstrap entry that is not HOST:PORT");
            continue;
        };
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            out.push(SocketAddr::new(ip, port));
            continue;
        }
        let r = resolver.get_or_insert_with(|| match TokioResolver::builder_tokio() {
            Ok(b) => b.build().map_err(|e| tracing::warn!(error = %e, "no DNS resolver")).ok(),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver configuration");
                None
            }
        });
        let Some(r) = r.as_ref() else { continue };
        match tokio::time::timeout(Duration::from_secs(5), r.lookup_ip(host.as_str())).await {
            Ok(Ok(ips)) => {
                let found: Vec<SocketAddr> =
                    ips.iter().filter(|ip| ip.is_ipv6() == family_v6).map(|ip| SocketAddr::new(ip, port)).collect();
                if found.is_empty() {
                    tracing::warn!(host, "bootstrap host has no address of our family");
                }
                out.extend(found);
            }
            Ok(Err(e)) => tracing::warn!(host, error = %e, "cannot resolve bootstrap host"),
            Err(_) => tracing::warn!(host, "resolving bootstrap host timed out"),
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_rejects() {
        assert_eq!(split_host_port("router.bittorrent.com:6881").unwrap(), ("router.bittorrent.com".into(), 6881));
        assert_eq!(split_host_port("[::1]:7").unwrap(), ("::1".into(), 7));
        for bad in ["nohost", "host:", ":80", "host:0", "host:70000", "a b:1", "1.2.3.4:0"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn literal_addresses_need_no_dns() {
        let got = resolve_all(&["127.0.0.1:5".into(), "bad".into()], false).await;
        assert_eq!(got, vec!["127.0.0.1:5".parse().unwrap()]);
    }
}
