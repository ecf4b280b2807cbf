//! Local service discovery (BEP 14) between real processes on a private Ethernet segment of
//! network namespaces (see `common/netns.rs`), with libtorrent 2.1 on the other side: peers
//! that know nothing of each other — no DHT, no `--peer`, no tracker — find each other by the
//! multicast announces alone and complete a transfer byte for byte.
//!
//! To show which side's LSD did the work, the libtorrent peer is made one-sided: a seeder
//! that never dials (`--no-outgoing`) is only reached if kadswarm heard its announce, and a
//! leecher that accepts nothing (`--no-incoming`) only connects if it heard kadswarm's.
//! A passive listener on a third host (`lsd_listen.py`) records what each process multicasts.
//!
//! Needs root (namespaces), multicast and python3 with libtorrent (the IPv6 test: IPv6 in the
//! namespaces); without them each test prints "SKIPPED <test>: <reason>" and passes, except
//! where the environment variable CI is set: there it fails, as CI must run every test.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::netns::Lan;
use common::swarm::{assert_same_tree, get_args, make_payload, MIB, TRANSFER_LIMIT};
use common::{libtorrent_available, s, skip, Proc, TempDir, KADSWARM};

const LT_LSD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_lsd.py");
const LSD_LISTEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lsd_listen.py");
const LSD_PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lsd_probe.py");
/// Every peer listens on this port, each at the address of its own namespace.
const PORT: u16 = 6881;
/// How long a getter without LSD is watched not finding a seeder it would otherwise find
/// within a second or two.
const SILENT_WAIT: Duration = Duration::from_secs(15);

/// The segment (namespaces named after `tag`), or None (with the reason printed; under CI the
/// test fails instead) where this machine cannot make one.
fn lan(test: &str, tag: &str, subnet: u8, hosts: u8, needs_libtorrent: bool) -> Option<Lan> {
    let lan = match Lan::create(tag, subnet, hosts) {
        Ok(lan) => lan,
        Err(why) => {
            skip(test, &why);
            return None;
        }
    };
    if needs_libtorrent && !libtorrent_available(test) {
        return None;
    }
    Some(lan)
}

fn at(ip: Ipv4Addr) -> String {
    SocketAddr::from((ip, PORT)).to_string()
}

/// The 40-hex info-hash of a magnet URI.
fn info_hash(magnet: &str) -> String {
    let start = magnet.find("btih:").expect("btih in magnet") + 5;
    magnet[start..start + 40].to_lowercase()
}

fn lt_seeder(lan: &Lan, host: usize, payload: &Path) -> (Proc, String) {
    let args =
        [s(LT_LSD), s("--bind"), at(lan.ip(host)), s("--seed"), payload.display().to_string(), s("--no-outgoing")];
    let mut seeder = lan.spawn(host, "libtorrent seeder", "python3", &args);
    let magnet =
        seeder.wait_event("torrent event", |e| (e["event"] == "torrent").then(|| s(e["magnet"].as_str().unwrap())));
    (seeder, magnet)
}

/// The magnet of the torrent libtorrent makes of `payload` (the same info-hash the seeder
/// will have).
fn lt_magnet(payload: &Path) -> String {
    let mut p = Proc::spawn("lt magnet", "python3", &[s(LT_LSD), s("--print-magnet"), payload.display().to_string()]);
    p.wait_event("magnet", |e| (e["event"] == "magnet").then(|| s(e["magnet"].as_str().unwrap())))
}

fn kadswarm_seed(lan: &Lan, host: usize, payload: &Path) -> (Proc, String) {
    kadswarm_seed_on(lan, host, payload, at(lan.ip(host)))
}

fn kadswarm_seed_on(lan: &Lan, host: usize, payload: &Path, bind: String) -> (Proc, String) {
    let args = [s("seed"), payload.display().to_string(), s("--bind"), bind, s("--no-dht")];
    let mut seed = lan.spawn(host, "kadswarm seed", KADSWARM, &args);
    let magnet = seed.wait_magnet();
    (seed, magnet)
}

/// `kadswarm get MAGNET --no-dht --json` with no peer given: only LSD can find anyone.
fn kadswarm_get(lan: &Lan, host: usize, magnet: &str, out: &Path, extra: &[&str]) -> Proc {
    kadswarm_get_on(lan, host, magnet, out, at(lan.ip(host)), extra)
}

fn kadswarm_get_on(lan: &Lan, host: usize, magnet: &str, out: &Path, bind: String, extra: &[&str]) -> Proc {
    let mut args = get_args(magnet, out, bind);
    args.extend(["--no-dht"].iter().chain(extra).map(s));
    lan.spawn(host, "kadswarm get", KADSWARM, &args)
}

fn listener(lan: &Lan, host: usize) -> Proc {
    let args = [s(LSD_LISTEN), s("--interface"), lan.ip(host).to_string(), s("--duration"), s(120)];
    let mut l = lan.spawn(host, "LSD listener", "python3", &args);
    l.wait_event("listener ready", |e| (e["event"] == "ready").then_some(()));
    l
}

/// The BT-SEARCH datagrams the listener heard from `ip`.
fn heard_from(listener: &Proc, ip: Ipv4Addr) -> Vec<serde_json::Value> {
    let from = SocketAddr::from((ip, 6771)).to_string();
    listener.events().into_iter().filter(|e| e["event"] == "datagram" && e["from"] == from.as_str()).collect()
}

fn payload(dir: &TempDir, name: &str, seed: u64) -> PathBuf {
    make_payload(&dir.0, name, MIB, seed)
}

fn wait_done(get: &mut Proc) -> serde_json::Value {
    let done = get.wait_event_for("done event", TRANSFER_LIMIT, |e| (e["event"] == "done").then(|| e.clone()));
    let status = get.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "get exited with {status}\n{}", get.dump());
    done
}

#[test]
fn kadswarm_finds_libtorrent_seeder_by_lsd_alone() {
    let Some(lan) = lan("kadswarm_finds_libtorrent_seeder_by_lsd_alone", "lt-seed", 1, 3, true) else { return };
    let _listen = listener(&lan, 3);
    let dir = TempDir::new("lsd-a");
    let data = payload(&dir, "lsd-a", 141);
    // The magnet is the torrent's, so it can be made before the seeder runs.
    let magnet = lt_magnet(&data);
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&lan, 2, &magnet, &out, &[]);
    get.wait_event("first progress event", |e| (e["event"] == "progress").then_some(()));
    // The seeder never dials, so the getter must hear the announce it makes on starting.
    let (_seeder, lt_magnet) = lt_seeder(&lan, 1, &data);
    assert_eq!(info_hash(&lt_magnet), info_hash(&magnet));
    let done = wait_done(&mut get);
    assert_same_tree(&data, &out.join("lsd-a"));
    assert_eq!(done["sources"]["lsd"], 1, "the seeder came from LSD: {done}");
    assert_eq!(done["sources"]["peer"], 0, "{done}");
    println!("kadswarm fetched from libtorrent by LSD alone: {done}");
}

#[test]
fn libtorrent_finds_kadswarm_seed_by_lsd_alone() {
    let Some(lan) = lan("libtorrent_finds_kadswarm_seed_by_lsd_alone", "kw-seed", 2, 2, true) else { return };
    let dir = TempDir::new("lsd-b");
    let data = payload(&dir, "lsd-b", 142);
    let (_seed, magnet) = kadswarm_seed(&lan, 1, &data);
    let out = dir.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A leecher that accepts no connection: it has to hear our announce and dial us.
    let args = [
        s(LT_LSD),
        s("--bind"),
        at(lan.ip(2)),
        s("--magnet"),
        s(&magnet),
        s("--save"),
        out.display().to_string(),
        s("--no-incoming"),
    ];
    let mut leecher = lan.spawn(2, "libtorrent leecher", "python3", &args);
    let seeder = at(lan.ip(1));
    leecher.wait_event("lsd_peer for the seed", |e| {
        (e["event"] == "lsd_peer" && e["peer"] == seeder.as_str()).then_some(())
    });
    leecher.wait_event_for("finished", TRANSFER_LIMIT, |e| (e["event"] == "finished").then_some(()));
    assert_same_tree(&data, &out.join("lsd-b"));
    println!("libtorrent fetched from kadswarm seed by LSD alone");
}

#[test]
fn two_kadswarm_processes_find_each_other_by_lsd() {
    let Some(lan) = lan("two_kadswarm_processes_find_each_other_by_lsd", "kw-kw", 3, 3, false) else { return };
    let listen = listener(&lan, 3);
    let dir = TempDir::new("lsd-c");
    let data = payload(&dir, "lsd-c", 143);
    let (_seed, magnet) = kadswarm_seed(&lan, 1, &data);
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&lan, 2, &magnet, &out, &[]);
    let done = wait_done(&mut get);
    assert_same_tree(&data, &out.join("lsd-c"));
    // Whoever heard the other first dials: the getter (its list counts the seed under lsd),
    // or the seed, which heard the getter's first announce (the getter counts it incoming).
    let (lsd, incoming) = (done["sources"]["lsd"].as_u64(), done["sources"]["incoming"].as_u64());
    assert!(lsd >= Some(1) || incoming >= Some(1), "neither side found the other by LSD: {done}");
    assert_eq!(done["sources"]["peer"], 0, "{done}");
    // What each multicast, as a third party on the segment saw it.
    let ih = info_hash(&magnet);
    for host in [1, 2] {
        let heard = heard_from(&listen, lan.ip(host));
        assert!(!heard.is_empty(), "nothing heard from host {host}\n{}", listen.dump());
        for d in &heard {
            assert_eq!(d["request"], "BT-SEARCH * HTTP/1.1", "{d}");
            assert_eq!(d["headers"]["host"], "239.192.152.143:6771", "{d}");
            assert_eq!(d["headers"]["port"], PORT.to_string().as_str(), "{d}");
            assert_eq!(d["headers"]["infohash"], serde_json::json!([ih]), "{d}");
            assert!(d["headers"]["cookie"].as_str().is_some_and(|c| !c.is_empty()), "{d}");
        }
    }
    println!("two kadswarm processes found each other by LSD");
}

/// The same over IPv6: the announces go to [ff15::efc0:988f]:6771 and name the peer by its
/// IPv6 source address.
#[test]
fn two_kadswarm_processes_find_each_other_by_lsd_over_ipv6() {
    let Some(lan) = lan("two_kadswarm_processes_find_each_other_by_lsd_over_ipv6", "kw-kw6", 5, 2, false) else {
        return;
    };
    let (Some(ip1), Some(ip2)) = (lan.ip6(1), lan.ip6(2)) else {
        skip("two_kadswarm_processes_find_each_other_by_lsd_over_ipv6", "the namespaces have no IPv6");
        return;
    };
    let dir = TempDir::new("lsd-e");
    let data = payload(&dir, "lsd-e", 145);
    let (_seed, magnet) = kadswarm_seed_on(&lan, 1, &data, SocketAddr::from((ip1, PORT)).to_string());
    let out = dir.0.join("out");
    let mut get = kadswarm_get_on(&lan, 2, &magnet, &out, SocketAddr::from((ip2, PORT)).to_string(), &[]);
    let done = wait_done(&mut get);
    assert_same_tree(&data, &out.join("lsd-e"));
    let (lsd, incoming) = (done["sources"]["lsd"].as_u64(), done["sources"]["incoming"].as_u64());
    assert!(lsd >= Some(1) || incoming >= Some(1), "neither side found the other by LSD: {done}");
    println!("two kadswarm processes found each other by LSD over IPv6: {done}");
}

#[test]
fn getter_with_no_lsd_is_silent_and_finds_nobody() {
    let Some(lan) = lan("getter_with_no_lsd_is_silent_and_finds_nobody", "no-lsd", 4, 3, true) else { return };
    let listen = listener(&lan, 3);
    let dir = TempDir::new("lsd-d");
    let data = payload(&dir, "lsd-d", 144);
    // The same setup as the first test, which completes within seconds: the getter runs
    // when the seeder announces on starting.
    let magnet = lt_magnet(&data);
    let out = dir.0.join("out");
    let mut get = kadswarm_get(&lan, 2, &magnet, &out, &["--no-lsd"]);
    get.wait_event("first progress event", |e| (e["event"] == "progress").then_some(()));
    let (mut seeder, _) = lt_seeder(&lan, 1, &data);
    let until = Instant::now() + SILENT_WAIT;
    while Instant::now() < until {
        get.assert_running();
        seeder.assert_running();
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = get.events();
    assert!(!events.iter().any(|e| e["event"] == "done"), "finished without LSD?\n{}", get.dump());
    assert!(events.iter().all(|e| e["peers"].as_u64().unwrap_or(0) == 0), "found a peer\n{}", get.dump());
    // The listener heard libtorrent announce the hash the getter wants while it ran (so the
    // getter would have too), and nothing from the getter.
    let wanted = serde_json::json!(info_hash(&magnet));
    let lt_heard = heard_from(&listen, lan.ip(1));
    assert!(
        lt_heard.iter().any(|d| d["headers"]["infohash"].as_array().is_some_and(|a| a.contains(&wanted))),
        "listener heard no libtorrent announce of {wanted}\n{}",
        listen.dump()
    );
    assert!(heard_from(&listen, lan.ip(2)).is_empty(), "the --no-lsd getter multicast\n{}", listen.dump());
    println!("a --no-lsd getter stayed silent and found nobody in {SILENT_WAIT:?}");
}

/// Issue 12, hole 8: unicast BT-SEARCH datagrams reach port 6771 from anywhere the network
/// routes, and each makes the getter dial the address it came from. Host 2 sends one from an
/// address on a second subnet (10.206.6.2, routed to host 1 through host 2, so not on host
/// 1's link) and one from its address on the shared subnet; the getter must dial only the
/// second.
#[test]
fn unicast_announce_from_off_the_subnet_is_not_dialed() {
    const TEST: &str = "unicast_announce_from_off_the_subnet_is_not_dialed";
    let Some(lan) = lan(TEST, "offnet", 6, 2, false) else { return };
    let far = Ipv4Addr::new(10, 206, 6, 2);
    let routed = lan
        .ip_cmd(2, &["addr", "add", &format!("{far}/32"), "dev", "eth0"])
        .and_then(|_| lan.ip_cmd(1, &["route", "add", "10.206.6.0/24", "via", &lan.ip(2).to_string()]));
    if let Err(why) = routed {
        skip(TEST, &why);
        return;
    }
    let hash = common::hex(&common::random_id());
    let dir = TempDir::new("lsd-offnet");
    let mut get = kadswarm_get(&lan, 1, &format!("magnet:?xt=urn:btih:{hash}"), &dir.0.join("out"), &[]);
    get.wait_event("first progress event", |e| (e["event"] == "progress").then_some(()));
    let args = [
        s(LSD_PROBE),
        s("--to"),
        lan.ip(1).to_string(),
        s("--infohash"),
        hash,
        s("--source"),
        format!("{far}:7000"),
        s("--source"),
        format!("{}:7001", lan.ip(2)),
    ];
    let mut probe = lan.spawn(2, "LSD probe", "python3", &args);
    probe.wait_event_for("probe finished", Duration::from_secs(40), |e| (e["event"] == "finished").then_some(()));
    let dialed: Vec<String> = probe
        .events()
        .iter()
        .filter(|e| e["event"] == "dialed")
        .map(|e| s(e["source"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        dialed,
        [lan.ip(2).to_string()],
        "only the on-subnet source is dialed\n{}\n{}",
        probe.dump(),
        get.dump()
    );
    get.assert_running();
    println!("an announce from {far} (off the subnet) was ignored, one from {} dialed", lan.ip(2));
}
