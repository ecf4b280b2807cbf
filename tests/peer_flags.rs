//! `--peers` between real processes on loopback: a `kadswarm seed --json --peers` and a
//! `kadswarm get --json --peers` that finds it through a DHT whose only router is a
//! `kadswarm node`. Each side's peers events must show the other as µTorrent would: the getter
//! downloads from the seeder it dialled after the DHT named it (`D`, `H`, no `I`), the seeder
//! uploads to a peer that came to it (`U`, `I`), both name the other's client from its
//! extension handshake ("kadswarm VERSION"), and `P` matches the transport.
//!
//! Addresses 127.0.146.1 to 127.0.148.1; every process is killed by PID when its guard drops.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use common::swarm::{addr, dht_only, dht_router, kadswarm_get, kadswarm_seed, make_payload, MIB};
use common::{s, TempDir};

/// The peer at `addr` in a peers event, if it lists one whose address satisfies `pick`.
fn peer_in(event: &serde_json::Value, pick: impl Fn(std::net::SocketAddr) -> bool) -> Option<serde_json::Value> {
    if event["event"] != "peers" {
        return None;
    }
    event["peers"]
        .as_array()?
        .iter()
        .find(|p| p["addr"].as_str().and_then(|a| a.parse().ok()).is_some_and(&pick))
        .cloned()
}

/// The letters before the space (transfer state) and after it (connection), µTorrent style.
fn groups(flags: &str) -> (String, String) {
    match flags.split_once(' ') {
        Some((state, conn)) => (state.to_string(), conn.to_string()),
        // One group alone: the connection letters are upper case I, H, L, X, P.
        None if flags.chars().all(|c| "IHLXP".contains(c)) => (String::new(), flags.to_string()),
        None => (flags.to_string(), String::new()),
    }
}

fn assert_transport_letter(peer: &serde_json::Value, conn: &str) {
    let utp = peer["transport"] == "utp";
    assert_eq!(conn.contains('P'), utp, "P must match the transport: {peer}");
}

#[test]
fn get_and_seed_show_each_other_with_utorrent_flags() {
    let dir = TempDir::new("peer-flags");
    // 8 MiB at 500 kB/s: the download lasts long enough for several peers events.
    let payload = make_payload(&dir.0, "payload", 8 * MIB, 146);
    let (_router, router) = dht_router(146);
    let seed_addr = addr(147);
    let mut seed_extra = dht_only();
    seed_extra.extend([s("--json"), s("--peers")]);
    let (mut seed, magnet) = kadswarm_seed(&payload, seed_addr, router, &seed_extra);
    let out = dir.0.join("out");
    let get_addr = addr(148);
    let mut get_extra = dht_only();
    get_extra.extend([s("--peers"), s("--download-limit"), s("500k")]);
    let mut get = kadswarm_get(&magnet, &out, get_addr, router, &get_extra);

    let version = env!("CARGO_PKG_VERSION");
    let want_client = format!("kadswarm {version}");

    // The getter's view of the seeder: downloading from it, found by the DHT, dialled by us.
    let seeder = get.wait_event("a peers event with the seeder downloading", |e| {
        peer_in(e, |a| a == seed_addr).filter(|p| groups(p["flags"].as_str().unwrap_or("")).0.contains('D'))
    });
    let (_, conn) = groups(seeder["flags"].as_str().unwrap());
    assert!(conn.contains('H'), "the seeder came from the DHT: {seeder}");
    assert!(!conn.contains('I'), "we dialled the seeder: {seeder}");
    assert_transport_letter(&seeder, &conn);
    assert_eq!(seeder["client"], want_client.as_str(), "{seeder}");
    assert_eq!(seeder["incoming"], false);
    assert!(seeder["total_pieces"].as_u64().is_some_and(|n| n > 0), "{seeder}");
    assert_eq!(seeder["pieces"], seeder["total_pieces"], "the seeder has every piece: {seeder}");

    // The seeder's view of the getter: it came to us, and we upload to it.
    let getter = seed.wait_event("a peers event with the getter uploaded to, incoming", |e| {
        peer_in(e, |a| a.ip() == get_addr.ip()).filter(|p| {
            let (state, conn) = groups(p["flags"].as_str().unwrap_or(""));
            state.contains('U') && conn.contains('I')
        })
    });
    let (_, conn) = groups(getter["flags"].as_str().unwrap());
    assert_transport_letter(&getter, &conn);
    assert_eq!(getter["client"], want_client.as_str(), "{getter}");
    assert_eq!(getter["incoming"], true);
    // The seeder also prints its progress as JSON after the magnet line.
    assert!(seed.events().iter().any(|e| e["event"] == "progress" && e["uploaded"].is_u64()));
    get.terminate_if_running();
    seed.terminate();
}
