//! Peer exchange (BEP 11, `ut_pex`) against libtorrent 2.1.1, driven through its python
//! bindings by `tests/interop/lt_pex.py`, in both directions:
//! - kadswarm learns a peer from libtorrent's ut_pex messages and downloads from it;
//! - libtorrent learns a peer from kadswarm's ut_pex messages and connects to it.
//!
//! No process in these tests has a DHT, LSD or a tracker: each is told about one peer at most
//! (`--peer`, `connect_peer`), so any other connection it makes came from peer exchange.
//! Every process runs on its own loopback address (127.0.200.1–127.0.219.1 belong to this
//! file), is killed by PID when its guard drops, and every wait is bounded.
//!
//! libtorrent facts these tests lean on (src/ut_pex.cpp): a connection's first ut_pex message
//! goes out within a few seconds of the extension handshake once the torrent has two peers;
//! it lists the peers libtorrent dialled and those that dialled it and sent their listen port;
//! two libtorrent seeds hang up on each other, so a peer that must stay connected to advertise
//! another is kept a leecher with a tiny download limit.
//!
//! libtorrent missing: the tests fail when `CI` is set, and are skipped with a message otherwise.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::swarm::{addr, assert_same_tree, done_event, get_args, make_payload, MIB, TRANSFER_LIMIT};
use common::{ip, libtorrent_available, s, Proc, TempDir, WAIT};

const LT_PEX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_pex.py");

/// What a throttled libtorrent peer may move per second, each way: relaying a payload of
/// megabytes through it takes many minutes, far beyond any wait of these tests.
const TRICKLE: &str = "20000";

// ---------------------------------------------------------------------------------------------
// libtorrent peers

/// `lt_pex.py` on 127.0.`n`.1 with `args`; returns it and its listen address once it listens.
fn lt_pex(name: &str, n: u8, args: &[String]) -> (Proc, SocketAddr) {
    let mut full = vec![s(LT_PEX), s("--bind"), format!("{}:0", ip(n)), s("--transport"), s("any")];
    full.extend_from_slice(args);
    let mut p = Proc::spawn(name, "python3", &full);
    let port = p.wait_event("ready event", |e| (e["event"] == "ready").then(|| e["port"].as_u64().unwrap() as u16));
    (p, SocketAddr::from((ip(n), port)))
}

/// A libtorrent seeder of `payload` that ignores ut_pex (so no one reaches it but those told
/// its address); returns it, its address and its magnet once it seeds.
fn lt_seeder(n: u8, payload: &Path, transport: &str) -> (Proc, SocketAddr, String) {
    let args = [s("--seed"), payload.display().to_string(), s("--no-pex"), s("--transport"), s(transport)];
    let (mut p, at) = lt_pex("libtorrent seeder S", n, &args);
    let magnet = p.wait_event("torrent event", |e| (e["event"] == "torrent").then(|| s(e["magnet"].as_str().unwrap())));
    p.wait_event("seeding", |e| (e["event"] == "finished").then_some(()));
    (p, at, magnet)
}

/// A libtorrent leecher of `magnet` into `out` (created here) that knows only `peer`.
fn lt_leecher(name: &str, n: u8, magnet: &str, out: &Path, peer: SocketAddr, extra: &[String]) -> (Proc, SocketAddr) {
    std::fs::create_dir_all(out).unwrap();
    let mut args =
        vec![s("--magnet"), s(magnet), s("--save"), out.display().to_string(), s("--peer"), peer.to_string()];
    args.extend_from_slice(extra);
    lt_pex(name, n, &args)
}

/// The connected peers of a `{"event":"peers"}` line (nothing for other events).
fn peers(e: &serde_json::Value) -> Vec<serde_json::Value> {
    if e["event"] != "peers" {
        return Vec::new();
    }
    e["peers"].as_array().cloned().unwrap_or_default()
}

fn peer_addr(p: &serde_json::Value) -> Option<SocketAddr> {
    p["addr"].as_str()?.parse().ok()
}

/// Whether any `peers` event so far shows a peer whose IP is not `ip`.
fn saw_peer_not_from(proc: &Proc, ip: IpAddr) -> Option<SocketAddr> {
    proc.events().iter().flat_map(peers).filter_map(|p| peer_addr(&p)).find(|a| a.ip() != ip)
}

/// The last `status` event's `field`.
fn last_status(proc: &Proc, field: &str) -> u64 {
    proc.events().iter().rev().find(|e| e["event"] == "status").and_then(|e| e[field].as_u64()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// kadswarm

fn kadswarm_get(magnet: &str, out: &Path, bind: SocketAddr, peer: SocketAddr, extra: &[&str]) -> Proc {
    let mut args = get_args(magnet, out, bind);
    args.extend([
        s("--no-dht"),
        s("--no-lsd"),
        s("--peer"),
        peer.to_string(),
        // Debug logs: a failure's dump then shows what kadswarm heard and dialled.
        s("-v"),
    ]);
    args.extend(extra.iter().map(s));
    Proc::kadswarm("kadswarm get", &args)
}

/// S (seeder, ignores PEX) and A (a trickling leecher connected to S, holding the metadata);
/// what the kadswarm-learns-from-libtorrent tests start from.
struct SeederAndRelay {
    seeder: Proc,
    seeder_at: SocketAddr,
    relay: Proc,
    relay_at: SocketAddr,
    magnet: String,
}

/// `transport`: what the libtorrent peers dial and accept (tcp, utp or any).
fn seeder_and_relay(dir: &TempDir, n_seeder: u8, n_relay: u8, transport: &str) -> (SeederAndRelay, PathBuf) {
    let payload = make_payload(&dir.0, "payload", 16 * MIB, u64::from(n_seeder));
    let (seeder, seeder_at, magnet) = lt_seeder(n_seeder, &payload, transport);
    let (mut relay, relay_at) = lt_leecher(
        "libtorrent relay A",
        n_relay,
        &magnet,
        &dir.0.join("relay"),
        seeder_at,
        &[s("--upload-limit"), s(TRICKLE), s("--download-limit"), s(TRICKLE), s("--transport"), s(transport)],
    );
    // A has the metadata (so it can hand it on) and is connected to S (so it lists S).
    relay.wait_event("the relay connected to S", |e| {
        peers(e).iter().any(|p| peer_addr(p) == Some(seeder_at)).then_some(())
    });
    relay.wait_event("the relay's metadata", |e| {
        (e["event"] == "status" && e["state"] != "downloading_metadata" && e["state"] != "checking_files").then_some(())
    });
    (SeederAndRelay { seeder, seeder_at, relay, relay_at, magnet }, payload)
}

// ---------------------------------------------------------------------------------------------
// Tests

/// libtorrent A, leeching from seeder S and uploading at a trickle, tells kadswarm about S
/// over ut_pex; kadswarm, told only about A, connects to S and downloads the whole payload.
/// Everyone with both transports: kadswarm dials uTP first, libtorrent takes it.
#[test]
fn kadswarm_learns_a_seeder_from_libtorrent_pex() {
    if !libtorrent_available("kadswarm_learns_a_seeder_from_libtorrent_pex") {
        return;
    }
    learn_seeder_from_libtorrent_pex("pexlt-1", [200, 201, 202], "any");
}

/// The same over TCP alone (kadswarm's TCP connections leave from its `--bind` address, so S
/// sees it there, as over uTP).
#[test]
fn kadswarm_learns_a_seeder_from_libtorrent_pex_over_tcp() {
    if !libtorrent_available("kadswarm_learns_a_seeder_from_libtorrent_pex_over_tcp") {
        return;
    }
    learn_seeder_from_libtorrent_pex("pexlt-4", [209, 210, 211], "tcp");
}

/// S on 127.0.`n[0]`.1, A on `n[1]`, kadswarm on `n[2]`.
fn learn_seeder_from_libtorrent_pex(tag: &str, n: [u8; 3], transport: &str) {
    let dir = TempDir::new(tag);
    let (mut sr, payload) = seeder_and_relay(&dir, n[0], n[1], transport);
    let out = dir.0.join("out");
    let started = Instant::now();
    let mut get = kadswarm_get(&sr.magnet, &out, addr(n[2]), sr.relay_at, &["--transport", transport]);

    // S has no DHT and ignores PEX, and only A was given its address: any other peer of S is
    // kadswarm, which can only have heard of S from A's ut_pex message.
    let deadline = Instant::now() + WAIT;
    let kadswarm_at_s = loop {
        if let Some(a) = saw_peer_not_from(&sr.seeder, sr.relay_at.ip()) {
            break a;
        }
        sr.seeder.assert_running();
        assert!(Instant::now() < deadline, "kadswarm never connected to S within {WAIT:?}\n{}", get.dump());
        thread::sleep(Duration::from_millis(100));
    };
    let learned = started.elapsed();
    assert_eq!(kadswarm_at_s.ip(), addr(n[2]).ip(), "the peer S saw is kadswarm, from its bound address");

    let status = get.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "kadswarm get failed: {status}\n{}", get.dump());
    let done = done_event(&get).unwrap_or_else(|| panic!("no done event\n{}", get.dump()));
    assert_same_tree(&payload, &out.join("payload"));
    // A trickles at 20 kB/s: the payload came from S.
    let relayed = last_status(&sr.relay, "upload");
    assert!(relayed < (4 * MIB) as u64, "A uploaded {relayed} bytes: the payload did not come from S");
    // kadswarm's own account: S came from peer exchange.
    assert!(done["sources"]["pex"].as_u64() >= Some(1), "done event counts no PEX peer: {done}");
    eprintln!(
        "[{transport}] kadswarm connected to S ({} {kadswarm_at_s} at S) {learned:?} after starting; done in \
         {:?}; A uploaded {relayed} bytes; done event {done}",
        sr.seeder_at,
        started.elapsed()
    );
}

/// The same swarm, but `get --no-pex`: kadswarm connects to A, never to S.
#[test]
fn kadswarm_without_pex_does_not_learn_the_seeder() {
    if !libtorrent_available("kadswarm_without_pex_does_not_learn_the_seeder") {
        return;
    }
    let dir = TempDir::new("pexlt-2");
    let (mut sr, _payload) = seeder_and_relay(&dir, 203, 204, "any");
    let mut get = kadswarm_get(&sr.magnet, &dir.0.join("out"), addr(205), sr.relay_at, &["--no-pex"]);

    // kadswarm reached A (A's peers: S and someone else)...
    let seeder_ip = sr.seeder_at.ip();
    let deadline = Instant::now() + WAIT;
    while saw_peer_not_from(&sr.relay, seeder_ip).is_none() {
        sr.relay.assert_running();
        get.assert_running();
        assert!(Instant::now() < deadline, "kadswarm never connected to A\n{}", get.dump());
        thread::sleep(Duration::from_millis(100));
    }
    // ...and in the time that, with PEX, takes it to S several times over, never gets to S.
    let quiet = Duration::from_secs(20);
    let until = Instant::now() + quiet;
    while Instant::now() < until {
        if let Some(a) = saw_peer_not_from(&sr.seeder, sr.relay_at.ip()) {
            panic!("kadswarm --no-pex connected to S (as {a})\n{}", get.dump());
        }
        get.assert_running();
        thread::sleep(Duration::from_millis(200));
    }
    assert!(done_event(&get).is_none(), "kadswarm finished through a 20 kB/s relay?\n{}", get.dump());
    eprintln!("kadswarm --no-pex stayed away from S for {quiet:?} while connected to A");
}

/// `kadswarm seed` K with libtorrent leecher P connected to it; libtorrent leecher L, told
/// only about K, learns P from K's ut_pex message and connects to it. Everyone with both
/// transports.
#[test]
fn libtorrent_learns_a_peer_from_kadswarm_pex() {
    if !libtorrent_available("libtorrent_learns_a_peer_from_kadswarm_pex") {
        return;
    }
    learn_peer_from_kadswarm_pex("pexlt-3", [206, 207, 208], "any");
}

/// The same over TCP alone.
#[test]
fn libtorrent_learns_a_peer_from_kadswarm_pex_over_tcp() {
    if !libtorrent_available("libtorrent_learns_a_peer_from_kadswarm_pex_over_tcp") {
        return;
    }
    learn_peer_from_kadswarm_pex("pexlt-5", [212, 213, 214], "tcp");
}

/// K on 127.0.`n[0]`.1, P on `n[1]`, L on `n[2]`.
fn learn_peer_from_kadswarm_pex(tag: &str, n: [u8; 3], transport: &str) {
    let dir = TempDir::new(tag);
    let payload = make_payload(&dir.0, "payload", 8 * MIB, u64::from(n[0]));
    let k_at = addr(n[0]);
    let mut k = Proc::kadswarm(
        "kadswarm seed K",
        &[
            s("seed"),
            payload.display().to_string(),
            s("--bind"),
            k_at.to_string(),
            s("--no-dht"),
            s("--no-lsd"),
            s("--transport"),
            s(transport),
        ],
    );
    let magnet = k.wait_magnet();

    // P ignores PEX itself (so it never dials L: L's only way to P is K's message) and stays a
    // leecher, connected to K, for the whole test.
    let (mut p, p_at) = lt_leecher(
        "libtorrent P",
        n[1],
        &magnet,
        &dir.0.join("p"),
        k_at,
        &[s("--no-pex"), s("--download-limit"), s(TRICKLE), s("--transport"), s(transport)],
    );
    // Bytes from K: the handshakes, extension handshakes included, are behind it.
    p.wait_event("P downloading from K", |e| {
        (e["event"] == "status" && e["download"].as_u64() > Some(0)).then_some(())
    });

    let started = Instant::now();
    let (mut l, _) = lt_leecher(
        "libtorrent L",
        n[2],
        &magnet,
        &dir.0.join("l"),
        k_at,
        &[s("--download-limit"), s(TRICKLE), s("--transport"), s(transport)],
    );
    let via_pex = l.wait_event("P among L's peers, from PEX", |e| {
        peers(e).into_iter().find(|q| peer_addr(q) == Some(p_at) && q["pex"] == true)
    });
    let learned = started.elapsed();
    k.assert_running();
    p.assert_running();
    eprintln!("[{transport}] libtorrent L connected to P {p_at} learned from kadswarm's PEX {learned:?} after starting: {via_pex}");
}
