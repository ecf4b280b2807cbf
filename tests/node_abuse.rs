//! `kadswarm node` against hostile hosts, as a process on loopback: a flood from one
//! address, a flood from 100,000 addresses, and a million announces from 10,000 addresses.
//! Each test plays the attacker with plain UDP sockets, counts what comes back, and reads
//! the node's own metrics and resident memory while it happens.
//!
//! Every address is on 127.0.0.0/8 (the node on 127.0.12N.1, attackers elsewhere in the
//! /8), every loop is bounded, and every node is killed by PID when its guard drops.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

mod common;

use common::krpc::{Ben, Krpc};
use common::{free_port, ip, Proc, WAIT};

/// Starts a node on 127.0.`n`.1 with its metrics on the same address; returns it, its
/// DHT address and its metrics address once it answers pings.
fn start_node(n: u8, extra: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    let addr = SocketAddr::from((ip(n), free_port(ip(n))));
    let metrics = SocketAddr::from((ip(n), free_port(ip(n))));
    let mut args: Vec<String> =
        ["node", "--bind", &addr.to_string(), "--no-bootstrap", "--metrics", &metrics.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut node = Proc::kadswarm(&format!("node {addr}"), &args);
    let mut probe = Krpc::bind(ip(n.wrapping_add(100)));
    let deadline = Instant::now() + WAIT;
    while probe.query(addr, "ping", vec![], Duration::from_millis(300)).is_none() {
        node.assert_running();
        assert!(Instant::now() < deadline, "node never answered\n{}", node.dump());
    }
    (node, addr, metrics)
}

/// Every sample of the metrics endpoint, as `series{labels}` -> value.
fn scrape(metrics: SocketAddr) -> HashMap<String, f64> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(5)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty() && !l.starts_with("HTTP") && l.contains(' '))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metric(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no {key} in the metrics"))
}

/// The node's resident memory, from /proc.
fn rss_bytes(node: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).expect("read /proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn ping_bytes(tid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Ben::dict(vec![
        ("a", Ben::dict(vec![("id", Ben::bytes(&[0x5a; 20]))])),
        ("q", Ben::bytes(b"ping")),
        ("t", Ben::bytes(&tid.to_be_bytes())),
        ("y", Ben::bytes(b"q")),
    ])
    .encode(&mut out);
    out
}

/// Reads whatever is waiting on `sock` without blocking; returns the number of datagrams.
fn drain(sock: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while sock.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn a_flooder_is_cut_off_a_polite_client_is_not_and_the_metrics_show_it() {
    let (node, addr, metrics) = start_node(121, &[]);
    let before = scrape(metrics);
    let flooder = UdpSocket::bind((Ipv4Addr::new(127, 1, 121, 1), 0)).unwrap();
    flooder.set_nonblocking(true).unwrap();
    let polite = UdpSocket::bind((Ipv4Addr::new(127, 2, 121, 1), 0)).unwrap();
    polite.set_nonblocking(true).unwrap();
    // 500 pings a second (50x the default limit of 10/s) for three seconds, and a polite
    // client at 5 a second alongside.
    let start = Instant::now();
    let (mut flood_sent, mut flood_answers, mut polite_sent, mut polite_answers) = (0u32, 0, 0u32, 0);
    let mut during = None;
    while start.elapsed() < Duration::from_secs(3) {
        let due = (start.elapsed().as_millis() / 2) as u32;
        while flood_sent < due {
            flooder.send_to(&ping_bytes(flood_sent), addr).unwrap();
            flood_sent += 1;
        }
        if polite_sent < (start.elapsed().as_millis() / 200) as u32 {
            polite.send_to(&ping_bytes(polite_sent), addr).unwrap();
            polite_sent += 1;
        }
        flood_answers += drain(&flooder);
        polite_answers += drain(&polite);
        if during.is_none() && start.elapsed() > Duration::from_millis(1500) {
            during = Some(scrape(metrics));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The driver publishes its counters once a second.
    std::thread::sleep(Duration::from_millis(1500));
    flood_answers += drain(&flooder);
    polite_answers += drain(&polite);
    let after = scrape(metrics);
    println!(
        "flooder: {flood_sent} sent, {flood_answers} answered; polite: {polite_sent} sent, {polite_answers} answered"
    );
    // The burst (50) and the rate (10/s) for the little while before the block (and the one
    // ping that confirms a new querier) is all the flooder ever gets.
    assert!(flood_answers <= 50 + 3 * 10 + 2, "the flooder got {flood_answers} answers for {flood_sent} pings");
    // The polite client: every query answered (plus at most one confirming ping).
    assert!(polite_answers >= polite_sent as usize, "polite: {polite_answers} of {polite_sent}");
    let key = "kadswarm_dropped_total{reason=\"rate_limited\"}";
    let blocked = "kadswarm_dropped_total{reason=\"blocked\"}";
    let during = during.expect("scraped during the flood");
    let dropped = |m: &HashMap<String, f64>| metric(m, key) + metric(m, blocked);
    assert!(dropped(&during) > dropped(&before), "drop counters moving during the flood");
    assert!(dropped(&after) >= f64::from(flood_sent) - 90.0, "every excess datagram counted: {after:?}");
    assert!(metric(&after, "kadswarm_rate_limiter_blocks_total") >= 1.0);
    drop(node);
}

#[test]
fn a_spoofed_flood_from_100000_sources_leaves_memory_bounded() {
    let (node, addr, metrics) = start_node(122, &[]);
    let rss_before = rss_bytes(&node);
    let start = Instant::now();
    let mut sent = 0u32;
    // 100,000 source addresses on loopback (127.16.0.0/12), one datagram each: as a spoofer
    // with random sources would look to the node.
    for i in 0..100_000u32 {
        let src = Ipv4Addr::from(0x7f10_0000 + i + 1);
        let Ok(sock) = UdpSocket::bind((src, 0)) else { continue };
        if sock.send_to(&ping_bytes(i), addr).is_ok() {
            sent += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the flood took too long");
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_bytes(&node);
    let m = scrape(metrics);
    let growth = rss_after.saturating_sub(rss_before);
    println!(
        "{sent} spoofed sources: RSS {} -> {} MiB, {} sources tracked, limiter table {} KiB",
        rss_before >> 20,
        rss_after >> 20,
        metric(&m, "kadswarm_rate_limiter_tracked_sources"),
        metric(&m, "kadswarm_rate_limiter_table_bytes") / 1024.0
    );
    assert!(sent >= 90_000);
    assert!(metric(&m, "kadswarm_rate_limiter_tracked_sources") <= 65_536.0);
    // The limiter's table is allocated up front; the routing table and pending pings are
    // capped. 32 MiB leaves room for allocator noise, far from what per-source state costs.
    assert!(growth < 32 << 20, "RSS grew by {} MiB", growth >> 20);
    drop(node);
}

#[test]
fn a_million_announces_from_ten_thousand_addresses_stay_within_the_caps() {
    // The limit is lifted: this test is about the store's caps, not the rate.
    let (node, addr, metrics) = start_node(123, &["--rate-limit", "0"]);
    let start = Instant::now();
    let hosts = 10_000u32;
    let mut socks = Vec::new();
    for h in 0..hosts {
        // 127.32.0.0/12: hosts spread over 40 /24s, 250 hosts each.
        let ip = Ipv4Addr::from(0x7f20_0000 + (h / 250) * 256 + h % 250 + 1);
        let sock = UdpSocket::bind((ip, 0)).expect("bind attacker socket");
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        socks.push(sock);
    }
    // A token for each host (a get_peers answer), then 100 announces each: 1,000,000.
    let mut tokens = Vec::new();
    let mut buf = [0u8; 2048];
    for (h, sock) in socks.iter().enumerate() {
        let mut q = Vec::new();
        Ben::dict(vec![
            ("a", Ben::dict(vec![("id", Ben::bytes(&[0x33; 20])), ("info_hash", Ben::bytes(&[h as u8; 20]))])),
            ("q", Ben::bytes(b"get_peers")),
            ("t", Ben::bytes(b"gp")),
            ("y", Ben::bytes(b"q")),
        ])
        .encode(&mut q);
        sock.send_to(&q, addr).unwrap();
        let token = sock.recv_from(&mut buf).ok().and_then(|(n, _)| {
            let r = Ben::decode(&buf[..n])?;
            r.get("r")?.get("token")?.as_bytes().map(<[u8]>::to_vec)
        });
        tokens.push(token.unwrap_or_default());
        assert!(start.elapsed() < Duration::from_secs(120));
    }
    assert!(tokens.iter().filter(|t| !t.is_empty()).count() >= 9_900, "tokens for nearly every host");
    let mut sent = 0u64;
    for round in 0..100u32 {
        for (h, sock) in socks.iter().enumerate() {
            let mut ih = [0u8; 20];
            ih[..4].copy_from_slice(&(round * 7919 + h as u32 % 977).to_be_bytes());
            let mut q = Vec::new();
            Ben::dict(vec![
                (
                    "a",
                    Ben::dict(vec![
                        ("id", Ben::bytes(&[0x33; 20])),
                        ("info_hash", Ben::bytes(&ih)),
                        ("port", Ben::Int(1024 + round as i64)),
                        ("token", Ben::bytes(&tokens[h])),
                    ]),
                ),
                ("q", Ben::bytes(b"announce_peer")),
                ("t", Ben::bytes(b"ap")),
                ("y", Ben::bytes(b"q")),
            ])
            .encode(&mut q);
            if sock.send_to(&q, addr).is_ok() {
                sent += 1;
            }
        }
        // Let the node keep up; answers are not read (the kernel drops them when full).
        std::thread::sleep(Duration::from_millis(20));
        assert!(start.elapsed() < Duration::from_secs(240), "the announces took too long");
    }
    std::thread::sleep(Duration::from_secs(1));
    let m = scrape(metrics);
    let rss = rss_bytes(&node);
    let peers = metric(&m, "kadswarm_stored_peers");
    let swarms = metric(&m, "kadswarm_stored_info_hashes");
    let refused = metric(&m, "kadswarm_announces_refused_total");
    println!(
        "{sent} announces sent in {:.1} s: {peers} peers in {swarms} swarms stored, {refused} refused, RSS {} MiB",
        start.elapsed().as_secs_f64(),
        rss >> 20
    );
    assert_eq!(sent, 1_000_000);
    // On loopback every socket is a host of its own (test networks share one address), so
    // this load meets the store's global caps: 64 per host would be 640,000 entries, the
    // store holds 200,000 peers and 20,000 swarms at most, and refuses the rest.
    assert!(peers <= 200_000.0, "{peers} peers stored");
    assert!(swarms <= 20_000.0, "{swarms} swarms stored");
    assert!(refused >= 500_000.0, "announces over the caps were refused: {refused}");
    // The stated bound for a full store: 128 MiB, a quarter of the service's 512 MiB.
    assert!(rss < 128 << 20, "RSS {} MiB", rss >> 20);
    drop(node);
}
