//! Downloads and seeding between real processes on loopback: kadswarm with kadswarm, and
//! kadswarm with libtorrent 2.1 in both directions, peers found through a DHT whose only
//! router is a `kadswarm node`; a torrent with `../` paths; an interrupted download resumed;
//! the peer sources `get --json` reports, and a dead `--peer` that is neither fatal nor hammered.
//! Every payload is compared byte for byte with what was seeded.
//!
//! Each test uses its own block of loopback addresses (127.0.1NN.1, 127.0.19N.1), so the tests
//! can run in parallel; every process is killed by PID when its guard drops.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::swarm::{addr, assert_same_tree, dht_router, done_event, kadswarm_get, kadswarm_seed, make_payload};
use common::swarm::{assert_found_through_dht, dht_only, lt_leecher, lt_seeder, source_count, MIB, TRANSFER_LIMIT};
use common::{free_port, ip, libtorrent_available, s, Proc, TempDir};

/// LSD and PEX off on both sides and no `--peer`: the getter has only the DHT to find the
/// seeder through, and its done event says that is where the seeder came from.
#[test]
fn kadswarm_seed_to_kadswarm_get_through_the_dht() {
    let dir = TempDir::new("k2k");
    let payload = make_payload(&dir.0, "payload", 8 * MIB, 1);
    let (_router, router) = dht_router(101);
    let (_seed, magnet) = kadswarm_seed(&payload, addr(102), router, &dht_only());
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&magnet, &out, addr(103), router, &dht_only());
    let status = get.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", get.dump());
    assert_same_tree(&payload, &out.join("payload"));
    let done = done_event(&get).expect("a done event");
    assert_eq!(done["hash_failures"], 0);
    assert_found_through_dht(&done);
}

/// The libtorrent peers run without LSD; the getter has no LSD or PEX either.
#[test]
fn kadswarm_gets_from_a_libtorrent_seeder_found_through_the_dht() {
    if !libtorrent_available("kadswarm_gets_from_a_libtorrent_seeder_found_through_the_dht") {
        return;
    }
    let dir = TempDir::new("lt2k");
    let payload = make_payload(&dir.0, "lt-payload", 64 * MIB, 2);
    let (_router, router) = dht_router(111);
    let (_seeder, magnet) = lt_seeder(112, router, &payload, &[]);
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&magnet, &out, addr(113), router, &dht_only());
    let status = get.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", get.dump());
    assert_same_tree(&payload, &out.join("lt-payload"));
    assert_found_through_dht(&done_event(&get).expect("a done event"));
}

#[test]
fn a_libtorrent_leecher_downloads_from_kadswarm_seed() {
    if !libtorrent_available("a_libtorrent_leecher_downloads_from_kadswarm_seed") {
        return;
    }
    let dir = TempDir::new("k2lt");
    let payload = make_payload(&dir.0, "k-payload", 64 * MIB, 3);
    let (_router, router) = dht_router(121);
    let (_seed, magnet) = kadswarm_seed(&payload, addr(122), router, &[]);
    let out = dir.0.join("lt-out");
    let mut leecher = lt_leecher(123, router, &magnet, &out, &[]);
    leecher.wait_event_for("finished download", TRANSFER_LIMIT, |e| (e["event"] == "finished").then_some(()));
    assert_same_tree(&payload, &out.join("k-payload"));
}

/// One libtorrent seeder held to 4 MiB/s, a libtorrent leecher and a kadswarm leecher: the
/// leechers trade, so kadswarm uploads to the other leecher while it downloads.
#[test]
fn three_way_swarm_kadswarm_also_uploads() {
    if !libtorrent_available("three_way_swarm_kadswarm_also_uploads") {
        return;
    }
    let dir = TempDir::new("3way");
    let payload = make_payload(&dir.0, "swarm", 32 * MIB, 4);
    let (_router, router) = dht_router(131);
    let (_seeder, magnet) = lt_seeder(132, router, &payload, &[s("--upload-limit"), s(4 * MIB)]);
    let lt_out = dir.0.join("lt-out");
    let mut lt_leecher = lt_leecher(133, router, &magnet, &lt_out, &[]);
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&magnet, &out, addr(134), router, &[s("--seed")]);
    get.wait_event_for("done", TRANSFER_LIMIT, |e| (e["event"] == "done").then_some(()));
    lt_leecher.wait_event_for("finished download", TRANSFER_LIMIT, |e| (e["event"] == "finished").then_some(()));
    assert_same_tree(&payload, &out.join("swarm"));
    assert_same_tree(&payload, &lt_out.join("swarm"));
    // At least one whole block went to the other leecher (a sliver would not be a trade),
    // and never more than one copy of the payload: the only other leecher needs one.
    let uploaded = get.wait_event("progress with uploads", |e| {
        e["uploaded"].as_u64().filter(|&u| e["event"] == "progress" && u >= 16 * 1024)
    });
    assert!(uploaded <= 32 * MIB as u64, "kadswarm uploaded {uploaded} bytes, more than the payload to one peer");
    eprintln!("kadswarm uploaded {uploaded} bytes to the other leecher");
}

/// A .torrent whose file path climbs out of the output directory is refused with exit 2,
/// and nothing is written anywhere.
#[test]
fn a_torrent_with_dot_dot_paths_is_rejected() {
    let dir = TempDir::new("evil");
    let mut info = Vec::new();
    // d4:filesld6:lengthi5e4:pathl2:..4:evilee e4:name4:good12:piece lengthi16384e6:pieces20:...e
    info.extend_from_slice(
        b"d5:filesld6:lengthi5e4:pathl2:..8:evil.txteee4:name4:good12:piece lengthi16384e6:pieces20:",
    );
    info.extend_from_slice(&[7u8; 20]);
    info.extend_from_slice(b"e");
    let mut torrent = b"d4:info".to_vec();
    torrent.extend_from_slice(&info);
    torrent.extend_from_slice(b"e");
    let file = dir.0.join("evil.torrent");
    std::fs::write(&file, &torrent).unwrap();
    let out = dir.0.join("inner").join("out");
    let mut get = Proc::kadswarm(
        "kadswarm get",
        &[
            s("get"),
            file.display().to_string(),
            s("--output"),
            out.display().to_string(),
            s("--bind"),
            addr(141).to_string(),
            s("--no-dht"),
        ],
    );
    let status = get.wait_exit(common::WAIT);
    assert_eq!(status.code(), Some(2), "{}", get.dump());
    let err = get.stderr_lines().join("\n");
    assert!(err.contains(".."), "the error names the bad component: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!dir.0.join("inner").join("evil.txt").exists());
    assert!(!out.exists(), "nothing created for a refused torrent");
}

/// A download killed half way and started again finishes, fetching only what it lacked.
#[test]
fn an_interrupted_download_resumes() {
    if !libtorrent_available("an_interrupted_download_resumes") {
        return;
    }
    let dir = TempDir::new("resume");
    let payload = make_payload(&dir.0, "resumable", 24 * MIB, 5);
    let (_router, router) = dht_router(151);
    // A seeder held to 2 MiB/s gives the test seconds to stop the download half way.
    let (_seeder, magnet) = lt_seeder(152, router, &payload, &[s("--upload-limit"), s(2 * MIB)]);
    let out = dir.0.join("out");
    let mut first = kadswarm_get(&magnet, &out, addr(153), router, &[]);
    let total = first.wait_event_for("metadata", TRANSFER_LIMIT, |e| {
        (e["event"] == "metadata").then(|| e["total_length"].as_u64().unwrap())
    });
    first.wait_event_for("half the payload", TRANSFER_LIMIT, |e| {
        e["downloaded"].as_u64().filter(|&d| e["event"] == "progress" && d >= total / 2)
    });
    // Pull the plug: no clean shutdown, no final resume record. What was written is on disk
    // (the page cache survives the process), and the second run must find it by hashing.
    first.kill();

    let mut second = kadswarm_get(&magnet, &out, addr(154), router, &[]);
    let status = second.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "second run failed: {status}\n{}", second.dump());
    assert_same_tree(&payload, &out.join("resumable"));
    let checked = second.events().into_iter().find(|e| e["event"] == "checked");
    let checked = checked.unwrap_or_else(|| panic!("no checked event\n{}", second.dump()));
    let (have, pieces) = (checked["have_pieces"].as_u64().unwrap(), checked["pieces"].as_u64().unwrap());
    let fetched = done_event(&second).expect("done event")["fetched_pieces"].as_u64().unwrap();
    eprintln!("resume: {have} of {pieces} pieces were on disk; the second run fetched {fetched}");
    assert!(have > 0 && have < pieces, "some but not all pieces survived the kill: {have}/{pieces}");
    assert_eq!(have + fetched, pieces, "the second run fetched exactly the missing pieces");
}

/// `--peer` and a magnet's `x.pe` hint show up as their own sources in the done event, and
/// the DHT (switched off) as none.
#[test]
fn get_reports_where_its_peers_came_from() {
    let dir = TempDir::new("sources");
    let payload = make_payload(&dir.0, "sourced", 4 * MIB, 6);
    let (_router, router) = dht_router(190);
    let seed_addr = addr(191);
    let (_seed, magnet) = kadswarm_seed(&payload, seed_addr, router, &[]);

    let out = dir.0.join("by-peer");
    let no_dht = [s("--no-dht"), s("--no-lsd")];
    let mut extra = no_dht.to_vec();
    extra.extend([s("--peer"), seed_addr.to_string()]);
    let mut get = kadswarm_get(&magnet, &out, addr(192), router, &extra);
    let status = get.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", get.dump());
    assert_same_tree(&payload, &out.join("sourced"));
    let done = done_event(&get).expect("a done event");
    assert_eq!(source_count(&done, "peer"), 1, "{done}");
    assert_eq!(source_count(&done, "dht"), 0, "{done}");
    assert_eq!(source_count(&done, "magnet"), 0, "{done}");
    assert!(done["known_peers"].as_u64() >= Some(1), "{done}");
    let progress = get.events().into_iter().find(|e| e["event"] == "progress").expect("a progress event");
    for key in ["peer", "magnet", "lsd", "pex", "dht", "incoming"] {
        source_count(&progress, key);
    }

    let hinted = format!("{magnet}&x.pe={seed_addr}");
    let out = dir.0.join("by-hint");
    let mut get = kadswarm_get(&hinted, &out, addr(193), router, &no_dht);
    let status = get.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", get.dump());
    assert_same_tree(&payload, &out.join("sourced"));
    let done = done_event(&get).expect("a done event");
    assert!(source_count(&done, "magnet") >= 1, "{done}");
    assert_eq!(source_count(&done, "peer"), 0, "{done}");
}

/// Counts TCP connections to a listener that closes each at once (a peer that never
/// handshakes), until `stop`; bounded by `limit` whatever happens.
fn counting_listener(bind: SocketAddr, stop: Arc<AtomicBool>, limit: Duration) -> Arc<AtomicUsize> {
    let listener = TcpListener::bind(bind).expect("bind the counting listener");
    listener.set_nonblocking(true).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((conn, _)) => {
                    counted.fetch_add(1, Ordering::Relaxed);
                    drop(conn);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    count
}

/// Two bad `--peer`s (nothing listening; a listener that hangs up at once) beside a good one:
/// the download completes, and over 15 s the bad one is dialled no more than its backoff
/// allows (the first failure earns 30 s).
#[test]
fn a_dead_peer_neither_stops_the_download_nor_is_hammered() {
    let dir = TempDir::new("deadpeer");
    let payload = make_payload(&dir.0, "despite", 4 * MIB, 7);
    let (_router, router) = dht_router(194);
    let seed_addr = addr(195);
    let (_seed, magnet) = kadswarm_seed(&payload, seed_addr, router, &[]);
    let dead = SocketAddr::from((ip(197), 9));
    let hangup = SocketAddr::from((ip(196), free_port(ip(196))));
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = counting_listener(hangup, Arc::clone(&stop), Duration::from_secs(120));

    let started = Instant::now();
    let out = dir.0.join("out");
    let mut extra = vec![s("--no-dht"), s("--no-lsd"), s("--seed")];
    for p in [dead, hangup, seed_addr] {
        extra.extend([s("--peer"), p.to_string()]);
    }
    let mut get = kadswarm_get(&magnet, &out, addr(198), router, &extra);
    let done = get.wait_event_for("done", TRANSFER_LIMIT, |e| (e["event"] == "done").then(|| e.clone()));
    assert_eq!(source_count(&done, "peer"), 3, "{done}");
    // `--seed` keeps the getter running, and dialling, for the rest of the window.
    let window = Duration::from_secs(15);
    std::thread::sleep(window.saturating_sub(started.elapsed()));
    get.assert_running();
    let n = attempts.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    get.kill();
    assert_same_tree(&payload, &out.join("despite"));
    eprintln!("the hang-up peer was dialled {n} times in {:.1}s", started.elapsed().as_secs_f64());
    assert!((1..=2).contains(&n), "{n} connection attempts in 15 s\n{}", get.dump());
}
