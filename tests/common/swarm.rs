//! Swarms of real processes for the transfer tests (TCP and uTP): payloads, a DHT router,
//! `kadswarm seed` and `kadswarm get` with the options the tests need, and byte-for-byte
//! comparison of what arrived.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::krpc::Ben;
use super::{free_port, ip, random_id, s, Proc, KADSWARM, WAIT};

pub const MIB: usize = 1 << 20;
/// The longest a whole transfer may take in these tests (loopback moves 64 MiB in seconds).
pub const TRANSFER_LIMIT: Duration = Duration::from_secs(180);

/// Deterministic incompressible bytes (xorshift), so a payload is cheap to make and recheck.
pub fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
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
pub fn make_payload(dir: &Path, name: &str, total: usize, seed: u64) -> PathBuf {
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
pub fn assert_same_tree(a: &Path, b: &Path) {
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

pub fn addr(n: u8) -> SocketAddr {
    let ip: Ipv4Addr = ip(n);
    SocketAddr::from((ip, free_port(ip)))
}

/// A `kadswarm node` with no router: the DHT of the test, reached through it alone. Returned
/// once its socket is bound (it logs `listening on ADDR` after binding; queries sent from then
/// on wait in the socket's buffer), so the first queries cannot be lost.
pub fn dht_router(n: u8) -> (Proc, SocketAddr) {
    let a = addr(n);
    let args = [s("node"), s("--bind"), a.to_string(), s("--no-bootstrap")];
    // Its default log level prints the listen line; a RUST_LOG of the caller must not hide it.
    let mut node = Proc::spawn_env("router node", KADSWARM, &args, &[("RUST_LOG", "kadswarm=info,warn")]);
    node.wait_stderr(&format!("listening on {a}"));
    (node, a)
}

/// `kadswarm seed PATH` through the router; returns the process and the magnet it printed,
/// once the router hands the seeder out for its info-hash: its announce is in, so a getter's
/// first DHT lookup finds it (rather than the one its lookup timer allows 5 s later).
pub fn kadswarm_seed(path: &Path, bind: SocketAddr, router: SocketAddr, extra: &[String]) -> (Proc, String) {
    let mut args = vec![
        s("seed"),
        path.display().to_string(),
        s("--bind"),
        bind.to_string(),
        s("--bootstrap"),
        router.to_string(),
    ];
    args.extend_from_slice(extra);
    let mut seed = Proc::kadswarm("kadswarm seed", &args);
    let magnet = seed.wait_magnet();
    wait_announced(&[router], &magnet, bind, &mut seed);
    (seed, magnet)
}

/// Asks `routers` for the peers of `magnet`'s info-hash until one of them lists `seeder`, at
/// most `WAIT`. The queries say they come from a read-only node (BEP 43), so no router adds
/// this probe to its table and hands it out to the test's processes as a contact.
pub fn wait_announced(routers: &[SocketAddr], magnet: &str, seeder: SocketAddr, proc: &mut Proc) {
    let hex = magnet.split("btih:").nth(1).map(|h| &h[..40]).expect("a hex info-hash in the magnet");
    let info_hash: Vec<u8> = (0..20).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    let Some(first) = routers.first() else { return };
    let sock = UdpSocket::bind((first.ip(), 0)).expect("bind the get_peers probe");
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let query = Ben::dict(vec![
        ("a", Ben::dict(vec![("id", Ben::bytes(&random_id())), ("info_hash", Ben::bytes(&info_hash))])),
        ("q", Ben::bytes(b"get_peers")),
        ("ro", Ben::Int(1)),
        ("t", Ben::bytes(b"sw")),
        ("y", Ben::bytes(b"q")),
    ]);
    let mut out = Vec::new();
    query.encode(&mut out);
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    loop {
        for router in routers {
            sock.send_to(&out, router).expect("send get_peers");
        }
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let values = Ben::decode(&buf[..n])
                .filter(|_| routers.contains(&from))
                .and_then(|m| m.get("r")?.get("values").cloned());
            if let Some(Ben::List(values)) = values {
                let listed = values.iter().filter_map(Ben::as_bytes).filter(|v| v.len() == 6).any(|v| {
                    SocketAddr::from((Ipv4Addr::new(v[0], v[1], v[2], v[3]), u16::from_be_bytes([v[4], v[5]])))
                        == seeder
                });
                if listed {
                    return;
                }
            }
        }
        proc.assert_running();
        assert!(Instant::now() < deadline, "no router listed the seeder {seeder}\n{}", proc.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `get SOURCE --output DIR --bind ADDR --json`: what every test's `kadswarm get` starts with.
pub fn get_args(source: &str, out: &Path, bind: impl ToString) -> Vec<String> {
    vec![s("get"), s(source), s("--output"), out.display().to_string(), s("--bind"), bind.to_string(), s("--json")]
}

/// `kadswarm seed PAYLOAD --bind BIND` with neither DHT, LSD nor PEX: a seeder that only the
/// peers told its address find.
pub fn isolated_seed_args(payload: &Path, bind: impl ToString) -> Vec<String> {
    let payload = payload.display().to_string();
    vec![s("seed"), payload, s("--bind"), bind.to_string(), s("--no-dht"), s("--no-lsd"), s("--no-pex")]
}

pub fn kadswarm_get(source: &str, out: &Path, bind: SocketAddr, router: SocketAddr, extra: &[String]) -> Proc {
    let mut args = get_args(source, out, bind);
    args.extend([s("--bootstrap"), router.to_string()]);
    args.extend_from_slice(extra);
    Proc::kadswarm("kadswarm get", &args)
}

/// The `done` event of a `get --json` run.
pub fn done_event(get: &Proc) -> Option<serde_json::Value> {
    get.events().into_iter().find(|e| e["event"] == "done")
}

/// For a kadswarm process in a test that claims its peers came through the DHT: local service
/// discovery and peer exchange off (loopback carries LSD's multicast, so with it on two
/// kadswarm processes find each other without the DHT).
pub fn dht_only() -> Vec<String> {
    vec![s("--no-lsd"), s("--no-pex")]
}

/// The count of `source` in the `sources` object of a `get --json` event.
pub fn source_count(event: &serde_json::Value, source: &str) -> u64 {
    event["sources"][source].as_u64().unwrap_or_else(|| panic!("no sources.{source} in {event}"))
}

/// The getter's done event counts at least one address the DHT gave it. (A `get` announces
/// itself only once it has the metadata, so with no LSD, PEX or `--peer` its first peer can
/// only have come from its own DHT lookup.)
pub fn assert_found_through_dht(done: &serde_json::Value) {
    assert!(source_count(done, "dht") >= 1, "no peer came from the DHT: {done}");
}

/// A libtorrent seeder of `payload` on 127.0.`n`.1, its DHT joined through `router`; returns
/// it and its magnet once it seeds. `extra`: more lt_peer.py options.
pub fn lt_seeder(n: u8, router: SocketAddr, payload: &Path, extra: &[String]) -> (Proc, String) {
    let mut args = vec![
        s("--bind"),
        format!("{}:0", ip(n)),
        s("--dht-node"),
        router.to_string(),
        s("--seed"),
        payload.display().to_string(),
    ];
    args.extend_from_slice(extra);
    let mut seeder = Proc::lt_peer("libtorrent seeder", &args);
    let magnet =
        seeder.wait_event("torrent event", |e| (e["event"] == "torrent").then(|| s(e["magnet"].as_str().unwrap())));
    seeder.wait_event("seeding status", |e| (e["event"] == "finished").then_some(()));
    (seeder, magnet)
}

/// A libtorrent leecher of `magnet` on 127.0.`n`.1 saving into `out` (created here).
pub fn lt_leecher(n: u8, router: SocketAddr, magnet: &str, out: &Path, extra: &[String]) -> Proc {
    std::fs::create_dir_all(out).unwrap();
    let mut args = vec![
        s("--bind"),
        format!("{}:0", ip(n)),
        s("--dht-node"),
        router.to_string(),
        s("--magnet"),
        s(magnet),
        s("--save"),
        out.display().to_string(),
    ];
    args.extend_from_slice(extra);
    Proc::lt_peer("libtorrent leecher", &args)
}
