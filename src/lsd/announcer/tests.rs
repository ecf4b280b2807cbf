//! The announce schedule, the rate limits, and what incoming announces yield.

use super::*;

fn ih(n: u8) -> InfoHash {
    InfoHash::from_slice(&[n; 20]).unwrap()
}

fn announce(port: u16, hashes: &[InfoHash], cookie: &str) -> Vec<u8> {
    Announce { port, info_hashes: hashes.to_vec(), cookie: Some(cookie.into()) }.encode(Family::V4)
}

/// The start of every test's virtual time (any instant will do; only differences matter).
#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

fn from(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 205, 0, last], 6771))
}

/// The local network of these tests: 10.0.0.0/8, where `from` and the floods live.
fn lan() -> Subnet {
    Subnet::new([10, 0, 0, 0].into(), 8)
}

/// An announcer whose host has an interface on [`lan`].
fn lan_announcer(port: u16, family: Family, cookie: u32, own_ip: Option<IpAddr>, now: Instant) -> Announcer {
    let mut a = Announcer::new(port, family, cookie, own_ip, now);
    a.set_local_subnets(vec![lan()]);
    a
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Every datagram sent between `start` and `start + span`, stepping to each deadline.
fn sent_until(a: &mut Announcer, start: Instant, span: Duration) -> Vec<(Duration, Announce)> {
    let mut out = Vec::new();
    let mut now = start;
    for _ in 0..10_000 {
        while let Some(d) = a.poll_transmit(now) {
            out.push((now - start, Announce::parse(&d).unwrap()));
        }
        match a.next_deadline() {
            Some(next) if next <= start + span => now = next.max(now),
            _ => break,
        }
    }
    out
}

#[test]
fn announces_at_start_repeats_then_every_five_minutes() {
    let t0 = start();
    let mut a = lan_announcer(6881, Family::V4, 0xabc, None, t0);
    assert_eq!(a.next_deadline(), None);
    a.add_torrent(t0, ih(1));
    let sent = sent_until(&mut a, t0, secs(11 * 60));
    let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_secs()).collect();
    assert_eq!(times, [0, 3, 13, 313, 613]);
    for (_, m) in &sent {
        assert_eq!((m.port, &m.info_hashes[..], m.cookie.as_deref()), (6881, &[ih(1)][..], Some("abc")));
    }
}

#[test]
fn several_torrents_share_a_datagram_sixteen_at_most() {
    let t0 = start();
    let mut a = lan_announcer(1, Family::V4, 1, None, t0);
    for n in 1..=20 {
        a.add_torrent(t0, ih(n));
    }
    a.add_torrent(t0, ih(1)); // twice: still one entry
    let first = Announce::parse(&a.poll_transmit(t0).unwrap()).unwrap();
    assert_eq!(first.info_hashes, (1..=16).map(ih).collect::<Vec<_>>());
    // The global gap holds the other four back for a second.
    assert_eq!(a.poll_transmit(t0), None);
    assert_eq!(a.next_deadline(), Some(t0 + MIN_SEND_GAP));
    let second = Announce::parse(&a.poll_transmit(t0 + MIN_SEND_GAP).unwrap()).unwrap();
    assert_eq!(second.info_hashes, (17..=20).map(ih).collect::<Vec<_>>());
}

#[test]
fn global_send_rate_is_bounded_however_many_torrents() {
    let t0 = start();
    let mut a = lan_announcer(1, Family::V4, 1, None, t0);
    let all: Vec<InfoHash> = (0..=255u8)
        .map(|n| {
            let mut bytes = [1u8; 20];
            bytes[0] = n;
            InfoHash::from_slice(&bytes).unwrap()
        })
        .collect();
    for h in &all {
        a.add_torrent(t0, *h);
    }
    let sent = sent_until(&mut a, t0, secs(600));
    for pair in sent.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= MIN_SEND_GAP);
    }
    assert!(sent.len() <= 601);
    // Rate-limited, yet nobody is starved: the first 256 / 16 datagrams, one a second, carry
    // every hash exactly once...
    let first_round = all.len().div_ceil(MAX_INFOHASHES);
    let mut firsts: Vec<InfoHash> = sent[..first_round].iter().flat_map(|(_, m)| m.info_hashes.clone()).collect();
    firsts.sort();
    assert_eq!(firsts, all, "each torrent's first announce within {first_round} s");
    assert_eq!(sent[first_round - 1].0, secs(first_round as u64 - 1));
    // ...and in ten minutes each hash goes out at start, twice soon after, and once five
    // minutes on: four times.
    for h in &all {
        let times = sent.iter().filter(|(_, m)| m.info_hashes.contains(h)).count();
        assert_eq!(times, 1 + START_REPEATS.len() + 1, "announces of {h:?}");
    }
}

#[test]
fn removed_torrents_are_no_longer_announced() {
    let t0 = start();
    let mut a = lan_announcer(1, Family::V4, 1, None, t0);
    a.add_torrent(t0, ih(1));
    a.remove_torrent(ih(1));
    assert_eq!(a.poll_transmit(t0), None);
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn peers_for_our_torrents_at_source_ip_and_announced_port() {
    let t0 = start();
    let mut a = lan_announcer(6881, Family::V4, 0x11, None, t0);
    a.add_torrent(t0, ih(1));
    a.add_torrent(t0, ih(2));
    let got = a.handle_datagram(t0, from(7), &announce(51413, &[ih(9), ih(2), ih(1)], "ffff")).unwrap();
    let peer = SocketAddr::from(([10, 205, 0, 7], 51413));
    assert_eq!(got, vec![(ih(2), peer), (ih(1), peer)]);
    assert_eq!(a.stats().peers_found, 2);
}

#[test]
fn own_cookie_unknown_torrents_and_garbage_are_ignored() {
    let t0 = start();
    let mut a = lan_announcer(6881, Family::V4, 0x2476fa45, Some([10, 205, 0, 1].into()), t0);
    a.add_torrent(t0, ih(1));
    let own = a.poll_transmit(t0).unwrap();
    assert_eq!(a.handle_datagram(t0, from(1), &own), Err(Ignored::Own));
    // Our address and port without our cookie (another process of ours? a reflection): us.
    assert_eq!(a.handle_datagram(t0, from(1), &announce(6881, &[ih(1)], "0")), Err(Ignored::Own));
    // Same address, another port: another client on this host.
    assert!(a.handle_datagram(t0, from(1), &announce(6882, &[ih(1)], "0")).is_ok());
    assert_eq!(a.handle_datagram(t0, from(2), &announce(1, &[ih(5)], "x")), Err(Ignored::NotOurs));
    assert!(matches!(a.handle_datagram(t0, from(2), b"hello"), Err(Ignored::Malformed(_))));
    assert_eq!(a.stats().malformed, 1);
}

#[test]
fn hearing_our_torrent_brings_our_announce_forward_once_a_minute() {
    let t0 = start();
    let mut a = lan_announcer(1, Family::V4, 1, None, t0);
    a.add_torrent(t0, ih(1));
    let _ = sent_until(&mut a, t0, secs(20)); // start and its repeats
    let t1 = t0 + secs(100);
    assert!(a.poll_transmit(t1).is_none());
    a.handle_datagram(t1, from(3), &announce(5, &[ih(1)], "x")).unwrap();
    assert!(a.poll_transmit(t1).is_some(), "no answer");
    // Within a minute of that answer, hearing it again does not make us send again.
    let t2 = t1 + secs(30);
    a.handle_datagram(t2, from(4), &announce(5, &[ih(1)], "y")).unwrap();
    assert!(a.poll_transmit(t2).is_none());
    assert_eq!(a.next_deadline(), Some(t1 + ANNOUNCE_EVERY));
}

#[test]
fn one_flooding_sender_is_cut_off_and_others_still_heard() {
    let t0 = start();
    let mut a = lan_announcer(1, Family::V4, 1, None, t0);
    a.add_torrent(t0, ih(1));
    let msg = announce(5, &[ih(1)], "x");
    let accepted = (0..1000).filter(|_| a.handle_datagram(t0, from(9), &msg).is_ok()).count();
    assert_eq!(accepted, PER_SENDER.burst as usize);
    assert!(a.handle_datagram(t0, from(10), &msg).is_ok());
    // It recovers at its own sustained rate.
    let later = t0 + secs(1);
    let accepted = (0..1000).filter(|_| a.handle_datagram(later, from(9), &msg).is_ok()).count();
    assert_eq!(accepted, PER_SENDER.per_second as usize);
}

#[test]
fn spoofed_sources_flood_costs_bounded_work() {
    let t0 = start();
    let mut a = lan_announcer(1, Family::V4, 1, None, t0);
    a.add_torrent(t0, ih(1));
    let msg = announce(5, &[ih(1)], "x");
    let mut accepted = 0;
    for n in 0..100_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 | n);
        if a.handle_datagram(t0, SocketAddr::from((ip, 6771)), &msg).is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, ALL_SENDERS.burst as usize);
    // The table fills to its cap and no further: every tracked sender is still busy.
    assert_eq!(a.senders.len(), MAX_SENDERS);
    assert_eq!(a.stats().rate_limited, 100_000 - accepted as u64);
    // Once the flood has passed, idle entries make room for a newcomer.
    let later = t0 + secs(60);
    assert!(a.handle_datagram(later, from(200), &msg).is_ok());
    assert_eq!(a.senders.len(), 1, "every idle entry was dropped, and the newcomer tracked");
}

#[test]
fn ipv6_source_keeps_its_scope() {
    let t0 = start();
    let mut a = lan_announcer(1, Family::V6, 1, None, t0);
    a.add_torrent(t0, ih(1));
    let src: SocketAddr = "[fe80::1%3]:6771".parse().unwrap();
    let got = a.handle_datagram(t0, src, &announce(4000, &[ih(1)], "x")).unwrap();
    assert_eq!(got[0].1, "[fe80::1%3]:4000".parse::<SocketAddr>().unwrap());
    let sent = a.poll_transmit(t0).unwrap();
    assert!(String::from_utf8(sent).unwrap().contains("Host: [ff15::efc0:988f]:6771\r\n"));
}

/// Issue 12, hole 8: a BT-SEARCH, unicast or not, from a source on none of our subnets would
/// make us dial whatever it names. It is dropped and counted, and costs no rate budget; the
/// same datagram from our subnet, from loopback or from IPv6 link-local is heard.
#[test]
fn announces_from_off_our_subnets_are_dropped() {
    let t0 = start();
    let mut a = Announcer::new(1, Family::V4, 1, None, t0);
    a.set_local_subnets(vec![Subnet::new([192, 0, 2, 0].into(), 24)]);
    a.add_torrent(t0, ih(1));
    let msg = announce(5, &[ih(1)], "x");
    for off in ["198.51.100.7", "192.0.3.1", "10.205.0.3", "::ffff:198.51.100.7", "2001:db8::1"] {
        let src = SocketAddr::new(off.parse().unwrap(), 6771);
        // Far more than every rate budget: none of it may use them up.
        for _ in 0..1000 {
            assert_eq!(a.handle_datagram(t0, src, &msg), Err(Ignored::OffSubnet), "{off}");
        }
    }
    assert_eq!(a.stats().off_subnet, 5000);
    assert_eq!(a.stats().peers_found, 0);
    assert!(a.senders.is_empty(), "off-subnet sources are not tracked");
    for on in ["192.0.2.77", "127.0.0.1", "fe80::9"] {
        let src = SocketAddr::new(on.parse().unwrap(), 6771);
        let got = a.handle_datagram(t0, src, &msg);
        assert_eq!(got, Ok(vec![(ih(1), SocketAddr::new(src.ip(), 5))]), "{on}");
    }
    // A refreshed table moves the boundary.
    a.set_local_subnets(vec![Subnet::new([198, 51, 100, 0].into(), 24)]);
    assert!(a.handle_datagram(t0, "198.51.100.7:6771".parse().unwrap(), &msg).is_ok());
    assert_eq!(a.handle_datagram(t0, "192.0.2.77:6771".parse().unwrap(), &msg), Err(Ignored::OffSubnet));
}
