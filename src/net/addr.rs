//! What an address says about who is behind it: the host and network it belongs to (for
//! per-host and per-network caps), and whether it can be a real peer at all as seen from
//! where we are bound.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The host an address belongs to, as a number: an IPv4 address, an IPv6 /64 (a host is
/// usually given a whole /64, so counting single addresses would give it 2^64 budgets), or
/// for loopback the whole socket address (test networks run many nodes on one loopback
/// address). IPv4-mapped IPv6 addresses count as IPv4.
pub fn host_key(addr: SocketAddr) -> u128 {
    match canonical(addr.ip()) {
        IpAddr::V4(v4) if v4.is_loopback() => (5u128 << 120) | ((u32::from(v4) as u128) << 16) | addr.port() as u128,
        IpAddr::V4(v4) => (1u128 << 120) | u32::from(v4) as u128,
        IpAddr::V6(v6) if v6.is_loopback() => (5u128 << 120) | addr.port() as u128,
        IpAddr::V6(v6) => (2u128 << 120) | (u128::from(v6) >> 64),
    }
}

/// The network an address belongs to: an IPv4 /24 or an IPv6 /48 (loopback: its host).
pub fn net_key(addr: SocketAddr) -> u128 {
    match canonical(addr.ip()) {
        IpAddr::V4(v4) if v4.is_loopback() => (6u128 << 120) | (host_key(addr) & ((1u128 << 64) - 1)),
        IpAddr::V4(v4) => (3u128 << 120) | (u32::from(v4) >> 8) as u128,
        IpAddr::V6(v6) if v6.is_loopback() => (6u128 << 120) | addr.port() as u128,
        IpAddr::V6(v6) => (4u128 << 120) | (u128::from(v6) >> 80),
    }
}

/// How many entries each host or network key holds: the caps of the peer store and of a
/// lookup's candidates are counted here. A key that drops to zero is removed, so the map
/// never holds more keys than the entries it counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCounts(HashMap<u128, u32>);

impl KeyCounts {
    pub fn get(&self, key: u128) -> usize {
        self.0.get(&key).copied().unwrap_or(0) as usize
    }

    pub fn add(&mut self, key: u128) {
        *self.0.entry(key).or_default() += 1;
    }

    pub fn remove(&mut self, key: u128) {
        if let Some(c) = self.0.get_mut(&key) {
            *c -= 1;
            if *c == 0 {
                self.0.remove(&key);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u128, usize)> + '_ {
        self.0.iter().map(|(k, c)| (*k, *c as usize))
    }
}

/// Whether a key from [`host_key`] or [`net_key`] is a host's (rather than a network's).
pub fn is_host_key(key: u128) -> bool {
    matches!(key >> 120, 1 | 2 | 5)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where we are bound, which decides what addresses others may sensibly hand us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// No opinion (simulations, tests): only addresses that are never a peer are refused.
    #[default]
    Any,
    /// Bound to loopback: a test network on this machine.
    Loopback,
    /// Bound to a private, link-local or unique-local address: a LAN.
    Private,
    /// Bound to a public or unspecified address: the Internet, where loopback and private
    /// addresses from remote nodes are lies or leaks, and dialling them probes the local net.
    Public,
}

impl Scope {
    pub fn of(bind: IpAddr) -> Scope {
        match class(canonical(bind)) {
            Class::Loopback => Scope::Loopback,
            Class::Private => Scope::Private,
            Class::Public | Class::Never => Scope::Public,
        }
    }

    /// Whether a node or peer address handed to us by a remote is worth contacting.
    pub fn admits(self, addr: SocketAddr) -> bool {
        if addr.port() == 0 {
            return false;
        }
        match (class(canonical(addr.ip())), self) {
            (Class::Never, _) => false,
            (_, Scope::Any | Scope::Loopback) => true,
            (Class::Loopback, _) => false,
            (Class::Private, Scope::Private) => true,
            (Class::Private, _) => false,
            (Class::Public, _) => true,
        }
    }
}

enum Class {
    Never,
    Loopback,
    Private,
    Public,
}

fn class(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => class4(v4),
        IpAddr::V6(v6) => class6(v6),
    }
}

fn class4(ip: Ipv4Addr) -> Class {
    let o = ip.octets();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || o[0] == 0 || o[0] >= 240 {
        Class::Never
    } else if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_private() || ip.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        // RFC 1918, 169.254/16 and the carrier-grade NAT range 100.64/10.
        Class::Private
    } else {
        Class::Public
    }
}

fn class6(ip: Ipv6Addr) -> Class {
    let first = ip.segments()[0];
    if ip.is_unspecified() || ip.is_multicast() {
        Class::Never
    } else if ip.is_loopback() {
        Class::Loopback
    } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
        // Unique-local fc00::/7 and link-local fe80::/10.
        Class::Private
    } else {
        Class::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_public_node_admits_only_public_addresses() {
        let s = Scope::of("0.0.0.0".parse().unwrap());
        assert_eq!(s, Scope::Public);
        assert!(s.admits(a("8.8.8.8:6881")));
        assert!(s.admits(a("[2001:4860::8888]:6881")));
        for bad in [
            "127.0.0.1:6881",
            "10.1.2.3:6881",
            "192.168.1.1:6881",
            "172.16.0.1:6881",
            "100.64.0.1:6881",
            "169.254.1.1:6881",
            "224.0.0.1:6881",
            "255.255.255.255:6881",
            "0.0.0.0:6881",
            "8.8.8.8:0",
            "[::1]:6881",
            "[fd00::1]:6881",
            "[fe80::1]:6881",
            "[ff02::1]:6881",
            "[::ffff:10.0.0.1]:6881",
        ] {
            assert!(!s.admits(a(bad)), "{bad}");
        }
    }

    #[test]
    fn a_lan_node_admits_private_and_public_but_not_loopback() {
        let s = Scope::of("10.205.0.2".parse().unwrap());
        assert_eq!(s, Scope::Private);
        assert!(s.admits(a("10.205.0.3:6881")) && s.admits(a("[fd00::2]:1")) && s.admits(a("1.1.1.1:1")));
        assert!(!s.admits(a("127.0.0.1:6881")) && !s.admits(a("224.0.0.1:1")));
    }

    #[test]
    fn loopback_and_any_refuse_only_the_impossible() {
        for s in [Scope::of("127.0.3.1".parse().unwrap()), Scope::Any] {
            assert!(s.admits(a("127.0.0.1:1")) && s.admits(a("10.0.0.1:1")) && s.admits(a("9.9.9.9:1")));
            assert!(!s.admits(a("0.0.0.0:1")) && !s.admits(a("9.9.9.9:0")) && !s.admits(a("239.1.1.1:1")));
        }
    }

    #[test]
    fn counts_forget_a_key_that_drops_to_zero() {
        let mut c = KeyCounts::default();
        c.add(7);
        c.add(7);
        c.remove(7);
        assert_eq!(c.get(7), 1);
        c.remove(7);
        c.remove(7);
        assert!(c.is_empty(), "no key is kept at zero, and removing an absent one is harmless");
    }

    #[test]
    fn keys_group_hosts_and_networks() {
        assert_eq!(host_key(a("1.2.3.4:1")), host_key(a("1.2.3.4:2")));
        assert_ne!(host_key(a("1.2.3.4:1")), host_key(a("1.2.3.5:1")));
        assert_eq!(net_key(a("1.2.3.4:1")), net_key(a("1.2.3.200:9")));
        assert_eq!(host_key(a("[2001:db8:0:1::1]:1")), host_key(a("[2001:db8:0:1::ffff]:1")));
        assert_ne!(host_key(a("[2001:db8:0:1::1]:1")), host_key(a("[2001:db8:0:2::1]:1")));
        assert_eq!(net_key(a("[2001:db8:0:1::1]:1")), net_key(a("[2001:db8:0:2::1]:1")));
        assert_ne!(host_key(a("127.0.0.1:1")), host_key(a("127.0.0.1:2")), "loopback nodes differ by port");
        assert_ne!(host_key(a("[::1]:1")), host_key(a("[::1]:2")));
        assert_eq!(host_key(a("[::ffff:1.2.3.4]:1")), host_key(a("1.2.3.4:1")));
        assert!(is_host_key(host_key(a("1.2.3.4:1"))) && !is_host_key(net_key(a("1.2.3.4:1"))));
    }
}
