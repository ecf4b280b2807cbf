//! Downloads and seeding between real processes on loopback: kadswarm with kadswarm, and
//! kadswarm with libtorrent 2.1 in both directions, peers found through a DHT whose only
//! router is a `kadswarm node`; a torrent with `../` paths; an interrupted download resumed.
//! Every payload is compared byte for byte with what was seeded.
//!
//! Each test uses its own block of loopback addresses (127.0.1NN.1), so the tests can run in
//! parallel; every process is killed by PID when its guard drops.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{free_port, ip, libtorrent_available, s, Proc, TempDir};

const MIB: usize = 1 << 20;
/// The longest a whole transfer may take in these tests (loopback moves 64 MiB in seconds).
const TRANSFER_LIMIT: Duration = Duration::from_secs(180);

/// Deterministic incompressible bytes (xorshift), so a payload is cheap to make and recheck.
fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    state |= 1;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A multi-file payload `dir/name/` of about `total` bytes: files of uneven sizes in a
/// subdirectory, so pieces straddle file boundaries.
fn make_payload(dir: &Path, name: &str, total: usize, seed: u64) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let sizes = [total / 2 + 12_345, total / 4 - 999, total / 4 - 11_346, 1, 0];
    let names = ["big.bin", "sub/middle.bin", "sub/small.bin", "one-byte", "empty"];
    for (i, (size, file)) in sizes.iter().zip(names).enumerate() {
        std::fs::write(root.join(file), pseudo_random(*size, seed + i as u64)).unwrap();
    }
    root
}

/// Every file under `a` has an identical twin under `b`, and the other way round.
fn assert_same_tree(a: &Path, b: &Path) {
    fn files(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(root).unwrap().to_path_buf());
                }
            }
        }
        out.sort();
        out
    }
    let (fa, fb) = (files(a), files(b));
    // Zero-length files exist on the seeder's side; BitTorrent clients may not create them.
    let nonempty = |root: &Path, v: &[PathBuf]| -> Vec<PathBuf> {
        v.iter().filter(|p| std::fs::metadata(root.join(p)).map(|m| m.len() > 0).unwrap_or(false)).cloned().collect()
    };
    assert_eq!(nonempty(a, &fa), nonempty(b, &fb), "file lists differ");
    for rel in nonempty(a, &fa) {
        let (x, y) = (std::fs::read(a.join(&rel)).unwrap(), std::fs::read(b.join(&rel)).unwrap());
        assert!(x == y, "{} differs ({} vs {} bytes)", rel.display(), x.len(), y.len());
    }
}

fn addr(n: u8) -> SocketAddr {
    let ip: Ipv4Addr = ip(n);
    SocketAddr::from((ip, free_port(ip)))
}

/// A `kadswarm node` with no router: the DHT of the test, reached through it alone.
fn dht_router(n: u8) -> (Proc, SocketAddr) {
    let a = addr(n);
    let node = Proc::kadswarm("router node", &[s("node"), s("--bind"), a.to_string(), s("--no-bootstrap")]);
    // It binds at once; a short pause spares the first queries a lost race.
    std::thread::sleep(Duration::from_millis(300));
    (node, a)
}

/// `kadswarm seed PATH` through the router; returns the process and the magnet it printed.
fn kadswarm_seed(path: &Path, bind: SocketAddr, router: SocketAddr) -> (Proc, String) {
    let mut seed = Proc::kadswarm(
        "kadswarm seed",
        &[s("seed"), path.display().to_string(), s("--bind"), bind.to_string(), s("--bootstrap"), router.to_string()],
    );
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        if let Some(line) = seed.stdout_lines().first() {
            assert!(line.starts_with("magnet:?xt=urn:btih:"), "first line is not a magnet: {line}");
            return (seed, line.clone());
        }
        seed.assert_running();
        assert!(std::time::Instant::now() < deadline, "no magnet printed\n{}", seed.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kadswarm_get(source: &str, out: &Path, bind: SocketAddr, router: SocketAddr, extra: &[String]) -> Proc {
    let mut args = vec![
        s("get"),
        s(source),
        s("--output"),
        out.display().to_string(),
        s("--bind"),
        bind.to_string(),
        s("--bootstrap"),
        router.to_string(),
        s("--json"),
    ];
    args.extend_from_slice(extra);
    Proc::kadswarm("kadswarm get", &args)
}

/// The `done` event of a `get --json` run.
fn done_event(get: &Proc) -> Option<serde_json::Value> {
    get.events().into_iter().find(|e| e["event"] == "done")
}

#[test]
fn kadswarm_seed_to_kadswarm_get_through_the_dht() {
    let dir = TempDir::new("k2k");
    let payload = make_payload(&dir.0, "payload", 8 * MIB, 1);
    let (_router, router) = dht_router(101);
    let (_seed, magnet) = kadswarm_seed(&payload, addr(102), router);
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&magnet, &out, addr(103), router, &[]);
    let status = get.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", get.dump());
    assert_same_tree(&payload, &out.join("payload"));
    let done = done_event(&get).expect("a done event");
    assert_eq!(done["hash_failures"], 0);
}

#[test]
fn kadswarm_gets_from_a_libtorrent_seeder_found_through_the_dht() {
    if !libtorrent_available("kadswarm_gets_from_a_libtorrent_seeder_found_through_the_dht") {
        return;
    }
    let dir = TempDir::new("lt2k");
    let payload = make_payload(&dir.0, "lt-payload", 64 * MIB, 2);
    let (_router, router) = dht_router(111);
    let mut seeder = Proc::lt_peer(
        "libtorrent seeder",
        &[
            s("--bind"),
            format!("{}:0", ip(112)),
            s("--dht-node"),
            router.to_string(),
            s("--seed"),
            payload.display().to_string(),
        ],
    );
    let magnet =
        seeder.wait_event("torrent event", |e| (e["event"] == "torrent").then(|| s(e["magnet"].as_str().unwrap())));
    seeder.wait_event("seeding status", |e| (e["event"] == "finished").then_some(()));
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&magnet, &out, addr(113), router, &[]);
    let status = get.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", get.dump());
    assert_same_tree(&payload, &out.join("lt-payload"));
}

#[test]
fn a_libtorrent_leecher_downloads_from_kadswarm_seed() {
    if !libtorrent_available("a_libtorrent_leecher_downloads_from_kadswarm_seed") {
        return;
    }
    let dir = TempDir::new("k2lt");
    let payload = make_payload(&dir.0, "k-payload", 64 * MIB, 3);
    let (_router, router) = dht_router(121);
    let (_seed, magnet) = kadswarm_seed(&payload, addr(122), router);
    let out = dir.0.join("lt-out");
    std::fs::create_dir_all(&out).unwrap();
    let mut leecher = Proc::lt_peer(
        "libtorrent leecher",
        &[
            s("--bind"),
            format!("{}:0", ip(123)),
            s("--dht-node"),
            router.to_string(),
            s("--magnet"),
            magnet,
            s("--save"),
            out.display().to_string(),
        ],
    );
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
    let mut seeder = Proc::lt_peer(
        "libtorrent seeder",
        &[
            s("--bind"),
            format!("{}:0", ip(132)),
            s("--dht-node"),
            router.to_string(),
            s("--seed"),
            payload.display().to_string(),
            s("--upload-limit"),
            s(4 * MIB),
        ],
    );
    let magnet =
        seeder.wait_event("torrent event", |e| (e["event"] == "torrent").then(|| s(e["magnet"].as_str().unwrap())));
    seeder.wait_event("seeding status", |e| (e["event"] == "finished").then_some(()));
    let lt_out = dir.0.join("lt-out");
    std::fs::create_dir_all(&lt_out).unwrap();
    let mut lt_leecher = Proc::lt_peer(
        "libtorrent leecher",
        &[
            s("--bind"),
            format!("{}:0", ip(133)),
            s("--dht-node"),
            router.to_string(),
            s("--magnet"),
            magnet.clone(),
            s("--save"),
            lt_out.display().to_string(),
        ],
    );
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&magnet, &out, addr(134), router, &[s("--seed")]);
    get.wait_event_for("done", TRANSFER_LIMIT, |e| (e["event"] == "done").then_some(()));
    lt_leecher.wait_event_for("finished download", TRANSFER_LIMIT, |e| (e["event"] == "finished").then_some(()));
    assert_same_tree(&payload, &out.join("swarm"));
    assert_same_tree(&payload, &lt_out.join("swarm"));
    let uploaded = get
        .wait_event("progress with uploads", |e| e["uploaded"].as_u64().filter(|&u| e["event"] == "progress" && u > 0));
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
    let mut seeder = Proc::lt_peer(
        "libtorrent seeder",
        &[
            s("--bind"),
            format!("{}:0", ip(152)),
            s("--dht-node"),
            router.to_string(),
            s("--seed"),
            payload.display().to_string(),
            s("--upload-limit"),
            s(2 * MIB),
        ],
    );
    let magnet =
        seeder.wait_event("torrent event", |e| (e["event"] == "torrent").then(|| s(e["magnet"].as_str().unwrap())));
    seeder.wait_event("seeding status", |e| (e["event"] == "finished").then_some(()));
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
