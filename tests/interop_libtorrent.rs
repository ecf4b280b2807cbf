//! Interoperability with a real BitTorrent DHT implementation: libtorrent 2.x, driven through
//! its python bindings by `tests/interop/lt_node.py`.
//!
//! Every process runs on its own loopback address (127.0.N.1, with N distinct per node and per
//! test, so the tests can run in parallel), never talks to anything outside 127.0.0.0/8, and is
//! killed by PID when its guard drops, also when an assertion fails. Every wait is bounded.
//!
//! libtorrent missing: the tests fail when the `CI` variable is set (CI installs it), and are
//! skipped with a message otherwise.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::krpc::{Ben, Krpc};
use common::{free_port, hex, ip, libtorrent_available, random_id, random_u64, s, Proc, TempDir, WAIT};

// ---------------------------------------------------------------------------------------------
// Bencode and KRPC, written independently of the crate under test

impl Krpc {
    /// Pings `to` until it answers (the process is up), at most `WAIT`.
    fn wait_alive(&mut self, to: SocketAddr, proc: &mut Proc) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.query(to, "ping", vec![], Duration::from_millis(500)).is_some() {
                return;
            }
            proc.assert_running();
        }
        panic!("{to} never answered ping\n{}", proc.dump());
    }

    /// The peers a get_peers answer carries in `values`, as "IP:PORT" strings, and its token.
    fn get_peers(&mut self, to: SocketAddr, info_hash: &[u8; 20]) -> Option<(Vec<String>, Option<Vec<u8>>)> {
        let r = self.query(to, "get_peers", vec![("info_hash", Ben::bytes(info_hash))], Duration::from_secs(2))?;
        let mut peers = Vec::new();
        if let Some(Ben::List(values)) = r.get("values") {
            for v in values.iter().filter_map(Ben::as_bytes).filter(|v| v.len() == 6) {
                let addr = SocketAddrV4::new(Ipv4Addr::new(v[0], v[1], v[2], v[3]), u16::from_be_bytes([v[4], v[5]]));
                peers.push(addr.to_string());
            }
        }
        Some((peers, r.get("token").and_then(Ben::as_bytes).map(<[u8]>::to_vec)))
    }
}

/// Starts `kadswarm node` on a fresh port of `ip` and waits until it answers a ping.
fn start_kadswarm_node(name: &str, ip: Ipv4Addr, extra: &[String], probe: &mut Krpc) -> (Proc, SocketAddr) {
    let addr = SocketAddr::from((ip, free_port(ip)));
    let mut args = vec![s("node"), s("--bind"), addr.to_string()];
    args.extend_from_slice(extra);
    let mut node = Proc::kadswarm(name, &args);
    probe.wait_alive(addr, &mut node);
    (node, addr)
}

/// The peers of `info_hash` that a `{"event":"peers"}` line of lt_node.py lists.
fn peers_of(e: &serde_json::Value, info_hash: &str) -> Vec<String> {
    if e["event"] != "peers" || e["info_hash"] != info_hash {
        return Vec::new();
    }
    e["peers"].as_array().map(|a| a.iter().filter_map(|p| p.as_str().map(s)).collect()).unwrap_or_default()
}

fn write_seed_file(dir: &TempDir, name: &str) -> String {
    let path = dir.0.join(name);
    let mut data = Vec::with_capacity(64 * 1024);
    while data.len() < 64 * 1024 {
        data.extend_from_slice(&random_u64().to_le_bytes());
    }
    std::fs::write(&path, data).expect("write seed file");
    path.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Four libtorrent nodes whose only contact is one `kadswarm node` form a DHT through it: the
/// node a leecher asks about a seeder's info-hash returns the seeder's address, and the
/// libtorrent nodes learn of each other from kadswarm's find_node answers.
#[test]
fn libtorrent_nodes_bootstrap_from_kadswarm_and_find_each_other() {
    if !libtorrent_available("libtorrent_nodes_bootstrap_from_kadswarm_and_find_each_other") {
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new("interop-a");
    let mut probe = Krpc::bind(ip(76));
    let (_kad, kad_addr) = start_kadswarm_node("kadswarm node", ip(71), &[s("--no-bootstrap")], &mut probe);
    let contact = kad_addr.to_string();

    let seed_path = write_seed_file(&dir, "a.bin");
    let mut seeder = Proc::lt_node(
        "lt seeder",
        &[
            s("--bind"),
            format!("{}:0", ip(72)),
            s("--dht-node"),
            contact.clone(),
            s("--seed-file"),
            seed_path,
            s("--duration"),
            s(90),
        ],
    );
    let info_hash =
        seeder.wait_event("torrent event", |e| (e["event"] == "torrent").then(|| s(e["info_hash"].as_str().unwrap())));
    let seeder_port = seeder.wait_ready();
    let seeder_addr = format!("{}:{seeder_port}", ip(72));

    let mut others = Vec::new();
    for n in [74, 75] {
        let mut p = Proc::lt_node(
            &format!("lt node {n}"),
            &[s("--bind"), format!("{}:0", ip(n)), s("--dht-node"), contact.clone(), s("--duration"), s(90)],
        );
        p.wait_ready();
        others.push(p);
    }
    let mut leecher = Proc::lt_node(
        "lt leecher",
        &[
            s("--bind"),
            format!("{}:0", ip(73)),
            s("--dht-node"),
            contact.clone(),
            s("--get-peers"),
            info_hash.clone(),
            s("--duration"),
            s(90),
        ],
    );
    leecher.wait_ready();

    leecher.wait_event("get_peers reply with the seeder", |e| {
        peers_of(e, &info_hash).contains(&seeder_addr).then_some(())
    });
    // kadswarm handed the leecher the other libtorrent nodes: its table holds more than the
    // one contact it was given.
    let nodes = leecher.wait_event("routing table of 3+ nodes", |e| {
        (e["event"] == "dht_nodes" && e["count"].as_u64() >= Some(3)).then(|| e["count"].as_u64().unwrap())
    });
    eprintln!("leecher found {seeder_addr} for {info_hash}; its table has {nodes} nodes; {:?}", started.elapsed());
}

/// The same with `kadswarm node --role bootstrap`, which stores no peers and answers from its
/// pool of verified nodes: the libtorrent nodes, whose only contact is the bootstrap node,
/// are verified by its cookie pings, handed to each other, and find each other's torrents
/// among themselves (the bootstrap node gives no token, so announces go to them).
#[test]
fn libtorrent_nodes_bootstrap_from_a_bootstrap_role_node_and_find_each_others_torrents() {
    if !libtorrent_available("libtorrent_nodes_bootstrap_from_a_bootstrap_role_node_and_find_each_others_torrents") {
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new("interop-boot");
    let mut probe = Krpc::bind(ip(196));
    let (_kad, kad_addr) = start_kadswarm_node(
        "kadswarm bootstrap",
        ip(191),
        &[s("--no-bootstrap"), s("--role"), s("bootstrap")],
        &mut probe,
    );
    let contact = kad_addr.to_string();
    let lt = |name: &str, n: u8, extra: &[String]| {
        let mut args =
            vec![s("--bind"), format!("{}:0", ip(n)), s("--dht-node"), contact.clone(), s("--duration"), s(90)];
        args.extend_from_slice(extra);
        Proc::lt_node(name, &args)
    };
    let seed_path = write_seed_file(&dir, "boot.bin");
    let mut seeder = lt("lt seeder", 192, &[s("--seed-file"), seed_path]);
    let info_hash =
        seeder.wait_event("torrent event", |e| (e["event"] == "torrent").then(|| s(e["info_hash"].as_str().unwrap())));
    let seeder_port = seeder.wait_ready();
    let seeder_addr = format!("{}:{seeder_port}", ip(192));
    let mut others = Vec::new();
    for n in [194, 195] {
        let mut p = lt(&format!("lt node {n}"), n, &[]);
        p.wait_ready();
        others.push(p);
    }
    let mut leecher = lt("lt leecher", 193, &[s("--get-peers"), info_hash.clone()]);
    leecher.wait_ready();
    leecher.wait_event("get_peers reply with the seeder", |e| {
        peers_of(e, &info_hash).contains(&seeder_addr).then_some(())
    });
    let nodes = leecher.wait_event("routing table of 3+ nodes", |e| {
        (e["event"] == "dht_nodes" && e["count"].as_u64() >= Some(3)).then(|| e["count"].as_u64().unwrap())
    });
    // The bootstrap node kept no peers: asked directly, it names none and gives no token.
    let mut hash = [0u8; 20];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&info_hash[2 * i..2 * i + 2], 16).unwrap();
    }
    let (values, token) = probe.get_peers(kad_addr, &hash).expect("the bootstrap node answers get_peers");
    assert!(values.is_empty() && token.is_none(), "a bootstrap node stores no peers: {values:?} {token:?}");
    eprintln!("leecher found {seeder_addr} for {info_hash}; its table has {nodes} nodes; {:?}", started.elapsed());
}

/// `kadswarm peers` finds a libtorrent seeder through a DHT made only of libtorrent nodes.
#[test]
fn kadswarm_peers_finds_seeder_in_libtorrent_dht() {
    if !libtorrent_available("kadswarm_peers_finds_seeder_in_libtorrent_dht") {
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new("interop-b");
    let seed_path = write_seed_file(&dir, "b.bin");

    // The seeder first, then three nodes, each told about all nodes started before it.
    let mut seeder = Proc::lt_node(
        "lt seeder",
        &[s("--bind"), format!("{}:0", ip(81)), s("--seed-file"), seed_path, s("--duration"), s(90)],
    );
    let info_hash =
        seeder.wait_event("torrent event", |e| (e["event"] == "torrent").then(|| s(e["info_hash"].as_str().unwrap())));
    let seeder_addr = format!("{}:{}", ip(81), seeder.wait_ready());
    let mut contacts = vec![seeder_addr.clone()];
    let mut nodes = Vec::new();
    for n in [82, 83, 84] {
        let mut args = vec![s("--bind"), format!("{}:0", ip(n)), s("--duration"), s(90)];
        for c in &contacts {
            args.extend([s("--dht-node"), c.clone()]);
        }
        if n == 84 {
            args.extend([s("--get-peers"), info_hash.clone()]);
        }
        let mut p = Proc::lt_node(&format!("lt node {n}"), &args);
        contacts.push(format!("{}:{}", ip(n), p.wait_ready()));
        nodes.push(p);
    }
    // The swarm is in the DHT once libtorrent itself can find it.
    nodes[2]
        .wait_event("libtorrent finding the seeder", |e| peers_of(e, &info_hash).contains(&seeder_addr).then_some(()));

    // kadswarm may only start from the two nodes that are not the seeder and not the node
    // that just looked the swarm up.
    for json in [false, true] {
        let mut args = vec![s("peers"), info_hash.clone(), s("--bind"), format!("{}:0", ip(85)), s("--timeout"), s(20)];
        args.extend([s("--bootstrap"), contacts[1].clone(), s("--bootstrap"), contacts[2].clone()]);
        if json {
            args.push(s("--json"));
        }
        let mut peers = Proc::kadswarm("kadswarm peers", &args);
        let status = peers.wait_exit(WAIT);
        let out = peers.stdout_lines();
        assert_eq!(status.code(), Some(0), "kadswarm peers (json={json}) failed\n{}", peers.dump());
        let listed: Vec<String> = if json {
            out.iter()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"))
                })
                .map(|v| s(v["peer"].as_str().unwrap_or_else(|| panic!("no \"peer\" in {v}"))))
                .collect()
        } else {
            out.clone()
        };
        assert!(listed.contains(&seeder_addr), "kadswarm peers (json={json}) did not list {seeder_addr}: {out:?}");
        for p in &listed {
            assert!(p.parse::<SocketAddr>().is_ok(), "not IP:PORT: {p:?}");
        }
    }
    eprintln!("kadswarm peers found {seeder_addr} for {info_hash}; {:?}", started.elapsed());
}

/// A `kadswarm node` stores announces (one sent by libtorrent, one sent by hand over KRPC)
/// and hands them out to a libtorrent get_peers lookup whose only contact is that node.
#[test]
fn libtorrent_finds_peers_announced_into_kadswarm() {
    if !libtorrent_available("libtorrent_finds_peers_announced_into_kadswarm") {
        return;
    }
    let started = Instant::now();
    let mut client = Krpc::bind(ip(94));
    let (_kad, kad_addr) = start_kadswarm_node("kadswarm node", ip(91), &[s("--no-bootstrap")], &mut client);
    let contact = kad_addr.to_string();

    // 1. By hand: get_peers for a token, then announce_peer with an explicit port.
    let hand_hash = random_id();
    let hand_port: u16 = 51413;
    let (_, token) = client.get_peers(kad_addr, &hand_hash).expect("kadswarm answers get_peers");
    let token = token.expect("get_peers answer without a token");
    let announce = vec![
        ("implied_port", Ben::Int(0)),
        ("info_hash", Ben::bytes(&hand_hash)),
        ("port", Ben::Int(hand_port.into())),
        ("token", Ben::Bytes(token)),
    ];
    let ok = client.query(kad_addr, "announce_peer", announce, Duration::from_secs(2));
    assert!(ok.is_some_and(|r| r.get("id").is_some()), "announce_peer was not acknowledged");
    let hand_peer = format!("{}:{hand_port}", ip(94));

    // 2. By libtorrent, whose only contact is the kadswarm node.
    let lt_hash = random_id();
    let lt_port: u16 = 6999;
    let lt_peer = format!("{}:{lt_port}", ip(92));
    {
        let mut announcer = Proc::lt_node(
            "lt announcer",
            &[
                s("--bind"),
                format!("{}:0", ip(92)),
                s("--dht-node"),
                contact.clone(),
                s("--announce"),
                hex(&lt_hash),
                s("--announce-port"),
                s(lt_port),
                s("--duration"),
                s(90),
            ],
        );
        announcer.wait_ready();
        let deadline = Instant::now() + WAIT;
        loop {
            if client.get_peers(kad_addr, &lt_hash).is_some_and(|(peers, _)| peers.contains(&lt_peer)) {
                break;
            }
            announcer.assert_running();
            assert!(
                Instant::now() < deadline,
                "kadswarm never stored libtorrent's announce of {lt_peer}\n{}",
                announcer.dump()
            );
            thread::sleep(Duration::from_millis(500));
        }
        // The announcer goes away, so only kadswarm can tell the next node about the peer.
    }

    let mut getter = Proc::lt_node(
        "lt getter",
        &[
            s("--bind"),
            format!("{}:0", ip(93)),
            s("--dht-node"),
            contact,
            s("--get-peers"),
            hex(&hand_hash),
            s("--get-peers"),
            hex(&lt_hash),
            s("--duration"),
            s(90),
        ],
    );
    getter.wait_ready();
    let (hand_hex, lt_hex) = (hex(&hand_hash), hex(&lt_hash));
    getter.wait_event("the hand-announced peer", |e| peers_of(e, &hand_hex).contains(&hand_peer).then_some(()));
    getter.wait_event("the libtorrent-announced peer", |e| peers_of(e, &lt_hex).contains(&lt_peer).then_some(()));
    eprintln!("libtorrent found {hand_peer} and {lt_peer} through kadswarm; {:?}", started.elapsed());
}
