//! `kadswarm node --role bootstrap` as an operator runs it: ordinary nodes join through it and
//! end up in its pool (read back from the pool file it saves beside `--state` on SIGTERM, in
//! the documented 26-bytes-a-node form), a `kadswarm peers` lookup finds a swarm through it,
//! it hands out no tokens, and a restart reloads the pool.
//!
//! Every process runs on a loopback address of its own (127.0.23N.1), is killed by PID when
//! its guard drops, and every wait is bounded.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;

use common::krpc::{compact_v4, Ben, Krpc};
use common::{free_port, hex, ip, random_id, Proc, TempDir};

const NORMAL_NODES: u8 = 4;

fn node_args(bind: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["node".to_string(), "--bind".to_string(), bind.to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// The IPv4 nodes of a pool file, read independently of the crate: `KSPOOL\0\x01`, a 4-byte
/// count, 26-byte compact nodes, a 4-byte count of IPv6 nodes.
fn read_pool(path: &std::path::Path) -> Vec<(Vec<u8>, SocketAddr)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("no pool file {path:?}: {e}"));
    assert_eq!(&bytes[..8], b"KSPOOL\x00\x01", "pool file header");
    let n4 = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let end4 = 12 + n4 * 26;
    let n6 = u32::from_be_bytes(bytes[end4..end4 + 4].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), end4 + 4 + n6 * 38, "pool file length");
    bytes[12..end4].chunks_exact(26).map(compact_v4).collect()
}

/// A log line without its terminal colours.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn nodes_joining_through_a_bootstrap_node_fill_its_pool_and_lookups_work_through_it() {
    let started = Instant::now();
    let dir = TempDir::new("cli-bootstrap");
    let state = dir.0.join("boot.state");
    let state_arg = state.to_string_lossy().into_owned();
    let boot_addr = SocketAddr::from((ip(231), free_port(ip(231))));
    let boot_str = boot_addr.to_string();
    let mut client = Krpc::bind_read_only(ip(232));
    let boot_args = node_args(boot_addr, &["--role", "bootstrap", "--no-bootstrap", "--state", &state_arg]);

    let mut boot = Proc::kadswarm("bootstrap node", &boot_args);
    client.wait_id(boot_addr, &mut boot);

    let mut nodes = Vec::new();
    for i in 0..NORMAL_NODES {
        let addr = SocketAddr::from((ip(233 + i), free_port(ip(233 + i))));
        let mut p = Proc::kadswarm(&format!("node {i}"), &node_args(addr, &["--bootstrap", &boot_str]));
        let id = client.wait_id(addr, &mut p);
        nodes.push((p, addr, id));
    }
    // Each joined through the bootstrap node (which answered its cookie ping right away).
    for (_, addr, id) in &nodes {
        client.wait_listed(boot_addr, id, *addr, &mut boot);
    }

    // The bootstrap node stores no peers: no token for get_peers.
    let hash = random_id();
    let r = client.query(boot_addr, "get_peers", vec![("info_hash", Ben::bytes(&hash))], Duration::from_secs(2));
    let r = r.expect("the bootstrap node answers get_peers");
    assert!(r.get("token").is_none() && r.get("values").is_none(), "{r:?}");
    assert!(r.get("nodes").is_some(), "get_peers answered without nodes: {r:?}");

    // A peer announced to an ordinary node is found by a lookup whose only contact is the
    // bootstrap node.
    let (_, holder, _) = &nodes[0];
    let r = client.query(*holder, "get_peers", vec![("info_hash", Ben::bytes(&hash))], Duration::from_secs(2));
    let token = r.and_then(|r| r.get("token").and_then(Ben::as_bytes).map(<[u8]>::to_vec)).expect("a token");
    let announce = vec![
        ("implied_port", Ben::Int(0)),
        ("info_hash", Ben::bytes(&hash)),
        ("port", Ben::Int(51413)),
        ("token", Ben::Bytes(token)),
    ];
    assert!(client.query(*holder, "announce_peer", announce, Duration::from_secs(2)).is_some());
    let peers_bind = format!("{}:0", ip(237));
    let peers_args: Vec<String> =
        ["peers", &hex(&hash), "--bind", &peers_bind, "--bootstrap", &boot_str, "--timeout", "10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut peers = Proc::kadswarm("peers", &peers_args);
    let status = peers.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "peers exited with {status}\n{}", peers.dump());
    let expected = format!("{}:51413", ip(232));
    assert!(peers.stdout_lines().contains(&expected), "peers did not print {expected}\n{}", peers.dump());

    // SIGTERM: the pool is saved beside the state file, every joined node in it.
    let status = boot.terminate();
    assert!(status.success(), "bootstrap node exited with {status}\n{}", boot.dump());
    let pool = read_pool(&dir.0.join("boot.state.pool"));
    for (_, addr, id) in &nodes {
        assert!(pool.iter().any(|(i, a)| a == addr && i == id), "{addr} not in the saved pool {pool:?}");
    }
    assert!(boot.stderr_lines().iter().any(|l| l.contains("saved bootstrap pool")), "{}", boot.dump());
    drop(boot);

    // A restart serves from the saved pool at once.
    let mut again = Proc::kadswarm("bootstrap node (restarted)", &boot_args);
    client.wait_id(boot_addr, &mut again);
    let loaded = format!("entered={}", pool.len());
    let lines: Vec<String> = again.stderr_lines().iter().map(|l| plain(l)).collect();
    assert!(lines.iter().any(|l| l.contains("pool loaded") && l.contains(&loaded)), "{}", again.dump());
    eprintln!("bootstrap role ok in {:?}, {} nodes pooled", started.elapsed(), pool.len());
}
