//! Downloads and seeding over uTP (BEP 29) between real processes on loopback: kadswarm with
//! libtorrent 2.1 in both directions with libtorrent's TCP switched off (so uTP is the only way
//! the bytes can travel), kadswarm with kadswarm over `--transport utp`, `--transport any`
//! falling back to TCP, and the DHT answering on the same UDP port while a uTP transfer runs.
//! Payloads are compared byte for byte; peers are found through a DHT whose only router is a
//! `kadswarm node` (the fallback test names its peer with `--peer` instead, to time the dial).
//!
//! Each test uses its own block of loopback addresses (127.0.2NN.1), so the tests can run in
//! parallel; every process is killed by PID when its guard drops.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::swarm::{
    addr, assert_same_tree, dht_router, done_event, get_args, kadswarm_get, kadswarm_seed, make_payload,
};
use common::swarm::{assert_found_through_dht, dht_only, lt_leecher, lt_seeder, MIB, TRANSFER_LIMIT};
use common::{libtorrent_available, s, Proc, TempDir, WAIT};
use kadswarm::session::transport::HEAD_START;

fn utp_only() -> Vec<String> {
    vec![s("--transport"), s("utp")]
}

/// `extra` and [`dht_only`]: a kadswarm process of a test whose peers come through the DHT.
fn through_dht(extra: &[String]) -> Vec<String> {
    let mut args = dht_only();
    args.extend_from_slice(extra);
    args
}

/// The `done` event of a finished `get --json`, after checking it exited 0.
fn finished(get: &mut Proc) -> serde_json::Value {
    let status = get.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", get.dump());
    done_event(get).unwrap_or_else(|| panic!("no done event\n{}", get.dump()))
}

fn count(done: &serde_json::Value, field: &str) -> u64 {
    done[field].as_u64().unwrap_or_else(|| panic!("no {field} in {done}"))
}

#[test]
fn kadswarm_gets_over_utp_from_a_utp_only_libtorrent_seeder() {
    if !libtorrent_available("kadswarm_gets_over_utp_from_a_utp_only_libtorrent_seeder") {
        return;
    }
    let dir = TempDir::new("utp-lt2k");
    let payload = make_payload(&dir.0, "lt-utp", 64 * MIB, 21);
    let (_router, router) = dht_router(221);
    let (_seeder, magnet) = lt_seeder(222, router, &payload, &utp_only());
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&magnet, &out, addr(223), router, &through_dht(&utp_only()));
    let done = finished(&mut get);
    assert_same_tree(&payload, &out.join("lt-utp"));
    assert_found_through_dht(&done);
    assert_eq!(count(&done, "peers_tcp"), 0, "{done}");
    assert!(count(&done, "peers_utp") >= 1, "{done}");
    assert!(count(&done, "utp_bytes_read") >= 64 * MIB as u64, "{done}");
    eprintln!(
        "libtorrent -> kadswarm over uTP: 64 MiB done {:.1}s after start (DHT lookup included)",
        done["seconds"].as_f64().unwrap_or(0.0)
    );
}

/// A uTP-only libtorrent leecher, held to 4 MiB/s so the transfer lasts, downloads from
/// `kadswarm seed --transport utp`; meanwhile a `kadswarm peers` lookup whose only contact is
/// the seeding process's port succeeds: the DHT answers on the socket uTP is busy on.
#[test]
fn a_utp_only_libtorrent_leecher_downloads_from_kadswarm_seed_while_its_dht_answers() {
    if !libtorrent_available("a_utp_only_libtorrent_leecher_downloads_from_kadswarm_seed_while_its_dht_answers") {
        return;
    }
    let dir = TempDir::new("utp-k2lt");
    let payload = make_payload(&dir.0, "k-utp", 64 * MIB, 22);
    let (_router, router) = dht_router(231);
    let seed_addr = addr(232);
    let (mut seed, magnet) = kadswarm_seed(&payload, seed_addr, router, &utp_only());
    let out = dir.0.join("lt-out");
    let mut extra = utp_only();
    extra.extend([s("--download-limit"), s(4 * MIB)]);
    let mut leecher = lt_leecher(233, router, &magnet, &out, &extra);
    leecher.wait_event_for("bytes over uTP", TRANSFER_LIMIT, |e| {
        (e["event"] == "status" && e["download"].as_u64() > Some(0) && e["utp_peers"].as_u64() >= Some(1)).then_some(())
    });

    let mut peers = Proc::kadswarm(
        "kadswarm peers",
        &[
            s("peers"),
            magnet.clone(),
            s("--bind"),
            addr(234).to_string(),
            s("--bootstrap"),
            seed_addr.to_string(),
            s("--timeout"),
            s(30),
        ],
    );
    let status = peers.wait_exit(WAIT);
    assert!(status.success(), "the lookup through the seeding process failed\n{}", peers.dump());
    assert!(!peers.stdout_lines().is_empty(), "no peer printed\n{}", peers.dump());
    let during = leecher.events().iter().all(|e| e["event"] != "finished");
    assert!(during, "the download ended before the lookup did; the test proves nothing\n{}", leecher.dump());

    leecher.wait_event_for("finished download", TRANSFER_LIMIT, |e| (e["event"] == "finished").then_some(()));
    assert_same_tree(&payload, &out.join("k-utp"));
    seed.assert_running();
}

/// kadswarm to kadswarm with `--transport utp` on both sides; and the seeder, being uTP only,
/// closes an incoming TCP connection at once.
#[test]
fn kadswarm_seed_to_kadswarm_get_over_utp() {
    let dir = TempDir::new("utp-k2k");
    let payload = make_payload(&dir.0, "k2k-utp", 64 * MIB, 23);
    let (_router, router) = dht_router(241);
    let seed_addr = addr(242);
    let (_seed, magnet) = kadswarm_seed(&payload, seed_addr, router, &through_dht(&utp_only()));
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&magnet, &out, addr(243), router, &through_dht(&utp_only()));
    let done = finished(&mut get);
    assert_same_tree(&payload, &out.join("k2k-utp"));
    assert_found_through_dht(&done);
    assert_eq!(count(&done, "peers_tcp"), 0, "{done}");
    assert!(count(&done, "peers_utp") >= 1, "{done}");
    assert!(count(&done, "utp_bytes_read") >= 64 * MIB as u64, "{done}");
    eprintln!(
        "kadswarm -> kadswarm over uTP: 64 MiB done {:.1}s after start (DHT lookup included)",
        done["seconds"].as_f64().unwrap_or(0.0)
    );

    let mut tcp = TcpStream::connect(seed_addr).expect("the TCP port is bound");
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut handshake = vec![19u8];
    handshake.extend_from_slice(b"BitTorrent protocol");
    handshake.extend_from_slice(&[0; 48]);
    let _ = tcp.write_all(&handshake);
    let mut buf = [0u8; 68];
    match tcp.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("a uTP-only seeder answered over TCP: {other:?}"),
    }
}

/// `--transport any` dials uTP first; a seeder that takes only TCP refuses it at once (a uTP
/// RESET), and the getter falls back to TCP at once, not after uTP's head start (1 s) in
/// which TCP would be dialled alongside anyway. The getter is given the seeder by `--peer`,
/// and neither side has DHT, LSD or PEX, so the one connection is the getter's own dial (the
/// seeder cannot have dialled it over TCP); the whole 1 MiB download, metadata included, must
/// be done in half the head start.
#[test]
fn any_falls_back_to_tcp_when_the_peer_refuses_utp() {
    let dir = TempDir::new("utp-fallback");
    let payload = make_payload(&dir.0, "fallback", MIB, 24);
    let seed_addr = addr(252);
    let alone = [s("--no-dht"), s("--no-lsd"), s("--no-pex")];
    let mut args = vec![s("seed"), payload.display().to_string(), s("--bind"), seed_addr.to_string()];
    args.extend(alone.iter().cloned().chain([s("--transport"), s("tcp")]));
    let mut seed = Proc::kadswarm("kadswarm seed", &args);
    let magnet = seed.wait_magnet();
    // Dialled before it listens, the seeder would be refused and backed off from.
    seed.wait_tcp_listening(seed_addr);
    let out = dir.0.join("out");
    let mut args = get_args(&magnet, &out, addr(253));
    args.extend(alone.iter().cloned().chain([s("--transport"), s("any"), s("--peer"), seed_addr.to_string()]));
    let mut get = Proc::kadswarm("kadswarm get", &args);
    let done = finished(&mut get);
    assert_same_tree(&payload, &out.join("fallback"));
    assert_eq!(count(&done, "peers_utp"), 0, "{done}");
    assert_eq!(count(&done, "peers_tcp"), 1, "{done}");
    assert_eq!(done["sources"]["peer"], 1, "{done}");
    assert_eq!(done["sources"]["incoming"], 0, "{done}");
    let seconds = done["seconds"].as_f64().unwrap_or_else(|| panic!("no seconds in {done}"));
    let bound = HEAD_START / 2;
    assert!(
        seconds < bound.as_secs_f64(),
        "the download took {seconds:.3}s, not under {bound:?}: the fallback waited for uTP\n{}",
        get.dump()
    );
    eprintln!("refused uTP, fell back to TCP: 1 MiB done {seconds:.3}s after start");
}

/// With the default transport on both sides, kadswarm peers talk uTP.
#[test]
fn the_default_transport_prefers_utp() {
    let dir = TempDir::new("utp-default");
    let payload = make_payload(&dir.0, "default", 4 * MIB, 25);
    let (_router, router) = dht_router(254);
    let (_seed, magnet) = kadswarm_seed(&payload, addr(255), router, &dht_only());
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&magnet, &out, addr(250), router, &dht_only());
    let done = finished(&mut get);
    assert_same_tree(&payload, &out.join("default"));
    assert_found_through_dht(&done);
    assert!(count(&done, "peers_utp") >= 1, "{done}");
}
