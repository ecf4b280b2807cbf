//! The subnets of this host's interfaces, which bound where a local service discovery
//! (BEP 14) announce may come from.
//!
//! BEP 14 is for the local network, and a BT-SEARCH makes us dial the address it came from.
//! Port 6771 also takes unicast datagrams, so without a check anyone on the internet who can
//! reach it could make us connect to any address they like; libtorrent likewise drops
//! announces from outside its own subnets. A source is local when it lies on a subnet of one
//! of our interfaces: the directly connected IPv4 routes (no gateway), the IPv6 interface
//! prefixes, IPv6 link-local `fe80::/10`, and loopback (the kernel drops loopback sources that
//! arrive on any other interface, so only this host can send them).
//!
//! The tables are read from `/proc` by pure parsers (no libc interface listing), so they are
//! tested over sample file contents; the driver reads the files and refreshes periodically.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Subnets kept at most: a host has a handful; this only bounds a pathological table.
pub const MAX_SUBNETS: usize = 1024;

/// An address prefix: `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    addr: IpAddr,
    len: u8,
}

impl Subnet {
    /// `addr/len`; the length is capped at the address width, host bits are cleared (so an
    /// interface address and its network compare equal).
    pub fn new(addr: IpAddr, len: u8) -> Subnet {
        match addr {
            IpAddr::V4(a) => {
                let len = len.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Subnet { addr: Ipv4Addr::from_bits(a.to_bits() & mask).into(), len }
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Subnet { addr: Ipv6Addr::from_bits(a.to_bits() & mask).into(), len }
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(net.to_bits().into(), ip.to_bits().into(), 32, self.len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(net.to_bits(), ip.to_bits(), 128, self.len),
            _ => false,
        }
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// An IPv4-mapped IPv6 source (`::ffff:a.b.c.d`, as a dual-stack socket reports it) is the
/// IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the top `len` of `width` bits of `a` and `b` agree (numbers right-aligned in u128).
fn same_prefix(a: u128, b: u128, width: u32, len: u8) -> bool {
    let len = u32::from(len).min(width);
    if len == 0 {
        return true;
    }
    let shift = width - len;
    (a >> shift) == (b >> shift)
}

/// Whether an announce from `ip` is from our local network, given our interfaces' `subnets`.
pub fn is_local(ip: IpAddr, subnets: &[Subnet]) -> bool {
    let ip = canonical(ip);
    let always = match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unicast_link_local(),
    };
    always || subnets.iter().any(|s| s.contains(ip))
}

/// The directly connected IPv4 subnets in the text of `/proc/net/route`: rows whose gateway
/// is 0.0.0.0, excluding a default route (prefix 0), which would make the whole internet
/// local. Addresses and masks are hex of the kernel's bytes, which on a little-endian host
/// read as little-endian numbers: `000200C0` is 192.0.2.0. Malformed rows are skipped.
pub fn parse_proc_route(text: &str) -> Vec<Subnet> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [_, dest, gateway, flags, _, _, _, mask, ..] = cols[..] else { continue };
        let (Some(dest), Some(gateway), Some(flags), Some(mask)) =
            (hex_v4(dest), hex_v4(gateway), hex_u16(flags), hex_v4(mask))
        else {
            continue;
        };
        const RTF_UP: u16 = 0x1;
        const RTF_GATEWAY: u16 = 0x2;
        if flags & RTF_UP == 0 || flags & RTF_GATEWAY != 0 || !gateway.is_unspecified() {
            continue;
        }
        let len = mask.to_bits().leading_ones();
        // A mask with holes is no prefix; skip it rather than guess.
        if len == 0 || mask.to_bits().checked_shl(len).unwrap_or(0) != 0 {
            continue;
        }
        push_capped(&mut out, Subnet::new(dest.into(), len as u8));
    }
    out
}

/// The IPv6 interface prefixes in the text of `/proc/net/if_inet6`: per line the address as
/// 32 hex digits, the interface index, the prefix length in hex, scope, flags, name.
/// Malformed lines are skipped.
pub fn parse_if_inet6(text: &str) -> Vec<Subnet> {
    let mut out = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [addr, _, len, ..] = cols[..] else { continue };
        let (Ok(bits), Ok(len)) = (u128::from_str_radix(addr, 16), u8::from_str_radix(len, 16)) else { continue };
        if addr.len() != 32 || len == 0 || len > 128 {
            continue;
        }
        push_capped(&mut out, Subnet::new(Ipv6Addr::from_bits(bits).into(), len));
    }
    out
}

fn push_capped(out: &mut Vec<Subnet>, subnet: Subnet) {
    if out.len() < MAX_SUBNETS && !out.contains(&subnet) {
        out.push(subnet);
    }
}

/// Eight hex digits of the kernel's bytes in host (little-endian) order.
fn hex_v4(s: &str) -> Option<Ipv4Addr> {
    if s.len() != 8 {
        return None;
    }
    let n = u32::from_str_radix(s, 16).ok()?;
    Some(Ipv4Addr::from(n.to_le_bytes()))
}

fn hex_u16(s: &str) -> Option<u16> {
    u16::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wg0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
eth1\t0000A8C0\t0102000A\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0
bad\tnothex\t00000000\t0001\t0\t0\t0\t00FFFFFF
holes\t000200C0\t00000000\t0001\t0\t0\t0\t00FF00FF\t0\t0\t0
down\t0000330A\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn proc_route_gives_connected_subnets_only() {
        let got = parse_proc_route(ROUTE);
        // 192.0.2.0/24 and 10.0.0.0/8 are on-link; the defaults (via a gateway, or a bare
        // `default dev tun0`), the gatewayed 192.168/16, the hole mask, the down route and the
        // malformed row are not.
        assert_eq!(got, [Subnet::new(ip("192.0.2.0"), 24), Subnet::new(ip("10.0.0.0"), 8)]);
        assert!(is_local(ip("192.0.2.77"), &got));
        assert!(is_local(ip("10.200.1.1"), &got));
        assert!(!is_local(ip("192.0.3.1"), &got));
        assert!(!is_local(ip("192.168.1.1"), &got), "routed through a gateway: not on our link");
        assert!(!is_local(ip("8.8.8.8"), &got));
    }

    const IF_INET6: &str = "\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
20010db8000000010000000000000005 05 30 00 80     eth1
short 05 30 00 80 eth1
20010db8000000010000000000000005 05 zz 00 80     eth1
";

    #[test]
    fn if_inet6_gives_interface_prefixes() {
        let got = parse_if_inet6(IF_INET6);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.contains(&Subnet::new(ip("fd00::"), 64)));
        assert!(got.contains(&Subnet::new(ip("2001:db8:0:1::"), 48)));
        assert!(is_local(ip("fd00::1234"), &got));
        assert!(is_local(ip("2001:db8:0:ffff::1"), &got));
        assert!(!is_local(ip("fd01::1"), &got));
        assert!(!is_local(ip("2001:db8:1::1"), &got));
    }

    #[test]
    fn loopback_link_local_and_mapped_sources() {
        assert!(is_local(ip("127.0.0.1"), &[]));
        assert!(is_local(ip("127.9.8.7"), &[]));
        assert!(is_local(ip("::1"), &[]));
        assert!(is_local(ip("fe80::1"), &[]));
        assert!(!is_local(ip("fec0::1"), &[]), "site-local is not link-local");
        assert!(!is_local(ip("10.0.0.1"), &[]));
        let lan = [Subnet::new(ip("10.205.3.0"), 24)];
        assert!(is_local(ip("::ffff:10.205.3.9"), &lan), "a v4-mapped source is its IPv4 address");
        assert!(!is_local(ip("::ffff:10.205.4.9"), &lan));
        assert!(Subnet::new(ip("0.0.0.0"), 0).contains(ip("1.2.3.4")), "a /0 holds everything");
        assert!(Subnet::new(ip("10.0.0.5"), 40).contains(ip("10.0.0.5")), "the length is capped");
        assert!(!Subnet::new(ip("10.0.0.5"), 32).contains(ip("10.0.0.6")));
    }

    #[test]
    fn the_table_is_capped() {
        let text: String = (0..MAX_SUBNETS as u32 + 50)
            .map(|i| format!("e\t{:08X}\t00000000\t0001\t0\t0\t0\tFFFFFFFF\n", i + 1))
            .collect();
        let got = parse_proc_route(&format!("header\n{text}"));
        assert_eq!(got.len(), MAX_SUBNETS);
    }
}
