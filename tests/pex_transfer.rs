//! Peer exchange (BEP 11) between kadswarm processes, with no DHT and no LSD: a seed S, a
//! peer B that got the payload from S and keeps seeding, and a newcomer C told only about B.
//! With PEX, C learns S's address from B's `ut_pex` message and dials it; with `--no-pex` on
//! C it never does. S runs with `--no-pex` in both, so it cannot learn C from B and dial C
//! itself, which would blur what C learned.
//!
//! Addresses 127.0.18N.1; every process is killed by PID when its guard drops.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::swarm::{addr, assert_same_tree, get_args, isolated_seed_args, make_payload, MIB, TRANSFER_LIMIT};
use common::{s, Proc, TempDir};

/// `kadswarm seed` of `payload` on `bind`, no DHT, LSD or PEX; returns it and its magnet.
fn seed(payload: &Path, bind: SocketAddr) -> (Proc, String) {
    let args = isolated_seed_args(payload, bind);
    let mut seed = Proc::kadswarm("seed S", &args);
    let magnet = seed.wait_magnet();
    (seed, magnet)
}

/// `kadswarm get MAGNET --no-dht --no-lsd --peer PEER --json --seed -v`, plus `extra`.
fn get(name: &str, magnet: &str, out: &Path, bind: SocketAddr, peer: SocketAddr, extra: &[String]) -> Proc {
    let mut args = get_args(magnet, out, bind);
    args.extend([
        s("--no-dht"),
        s("--no-lsd"),
        s("--peer"),
        peer.to_string(),
        // Keeps running after the download, so the test can watch what it does next (and B
        // stays in the swarm for C).
        s("--seed"),
        s("-v"),
    ]);
    args.extend_from_slice(extra);
    Proc::kadswarm(name, &args)
}

fn wait_done(p: &mut Proc) -> serde_json::Value {
    p.wait_event_for("done", TRANSFER_LIMIT, |e| (e["event"] == "done").then(|| e.clone()))
}

/// Whether the process logged dialling `addr` successfully (runner, debug level).
fn dialled(p: &Proc, addr: SocketAddr) -> bool {
    let addr = addr.to_string();
    p.stderr_lines().iter().any(|l| l.contains("connected to peer") && l.contains(&addr))
}

fn most_peers(p: &Proc) -> u64 {
    p.events().iter().filter(|e| e["event"] == "progress").filter_map(|e| e["peers"].as_u64()).max().unwrap_or(0)
}

/// S, and B downloaded from S and seeding; returns (S, B, S's address, B's address, magnet).
fn seed_and_relay(dir: &Path, payload: &Path, base: u8) -> (Proc, Proc, SocketAddr, SocketAddr, String) {
    let s_addr = addr(base);
    let (seed, magnet) = seed(payload, s_addr);
    let b_addr = addr(base + 1);
    let mut b = get("relay B", &magnet, &dir.join("b"), b_addr, s_addr, &[]);
    wait_done(&mut b);
    (seed, b, s_addr, b_addr, magnet)
}

#[test]
fn a_newcomer_learns_the_seed_through_pex_and_completes() {
    let dir = TempDir::new("pex");
    let payload = make_payload(&dir.0, "pexload", 16 * MIB, 11);
    let (_s, _b, s_addr, b_addr, magnet) = seed_and_relay(&dir.0, &payload, 181);
    let out = dir.0.join("c");
    let mut c = get("newcomer C", &magnet, &out, addr(183), b_addr, &[]);
    let done = wait_done(&mut c);
    assert_same_tree(&payload, &out.join("pexload"));
    // C was told of B alone; S can only have come from B's PEX message. B sends its first one
    // about a second after C's extension handshake, so this wait is short.
    let deadline = Instant::now() + common::WAIT;
    while !dialled(&c, s_addr) || most_peers(&c) < 2 {
        c.assert_running();
        assert!(Instant::now() < deadline, "C never dialled S ({s_addr}) learned by PEX\n{}", c.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
    let peers = done["peers_tcp"].as_u64().unwrap_or(0) + done["peers_utp"].as_u64().unwrap_or(0);
    eprintln!("C: {peers} connections at done, up to {} peers at once, dialled S: yes", most_peers(&c));
    assert!(c.stderr_lines().iter().any(|l| l.contains("peer exchange received")), "{}", c.dump());
}

#[test]
fn no_pex_keeps_the_newcomer_to_the_peers_it_was_given() {
    let dir = TempDir::new("nopex");
    let payload = make_payload(&dir.0, "nopexload", 8 * MIB, 12);
    let (_s, _b, s_addr, b_addr, magnet) = seed_and_relay(&dir.0, &payload, 185);
    let out = dir.0.join("c");
    let mut c = get("newcomer C (--no-pex)", &magnet, &out, addr(187), b_addr, &[s("--no-pex")]);
    wait_done(&mut c);
    assert_same_tree(&payload, &out.join("nopexload"));
    // With PEX, B's message would have come a second after the handshake and C would have
    // dialled S at the runner's next tick; give it several times that.
    std::thread::sleep(Duration::from_secs(6));
    c.assert_running();
    assert!(!dialled(&c, s_addr), "C dialled S without PEX\n{}", c.dump());
    assert_eq!(most_peers(&c), 1, "C should know B alone\n{}", c.dump());
    assert!(!c.stderr_lines().iter().any(|l| l.contains("peer exchange")), "{}", c.dump());
}
