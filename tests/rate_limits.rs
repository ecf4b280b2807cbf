//! `--upload-limit`, `--download-limit`, `--seed-ratio` and `--seed-time` between real
//! processes on loopback, peers named with `--peer` (no DHT, no LSD): a limited 4 MiB transfer
//! over TCP and over uTP takes at least most of size / limit (a lower bound the limit implies;
//! unlimited, loopback moves it in well under a second), a `get --seed` stops by itself when its
//! seed time or ratio is reached, and bad values exit 2.
//!
//! Each test uses its own block of loopback addresses (127.0.6N.1); every process is killed by
//! PID when its guard drops.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::swarm::{addr, assert_same_tree, done_event, get_args, make_payload, MIB, TRANSFER_LIMIT};
use common::{s, Proc, TempDir, WAIT};

const SIZE: usize = 4 * MIB;
/// `1M` on the command line.
const LIMIT: f64 = 1_000_000.0;
/// How long a seeding `get` may take to stop once its time or ratio is reached (a tick, and
/// at most the 10 s a reached ratio waits for queued blocks to go out).
const SEEDING_ENDS: Duration = Duration::from_secs(30);

/// `kadswarm seed` of `payload` on `bind` with `extra` options, once it takes TCP connections.
fn seeder(payload: &Path, bind: SocketAddr, extra: &[String]) -> (Proc, String) {
    let mut args = vec![s("seed"), payload.display().to_string(), s("--bind"), bind.to_string()];
    args.extend([s("--no-dht"), s("--no-lsd")]);
    args.extend_from_slice(extra);
    let mut seed = Proc::kadswarm("kadswarm seed", &args);
    let magnet = seed.wait_magnet();
    seed.wait_tcp_listening(bind);
    (seed, magnet)
}

/// `kadswarm get --json` of `magnet` from `peer` alone.
fn getter(magnet: &str, out: &Path, bind: SocketAddr, peer: SocketAddr, extra: &[String]) -> Proc {
    let mut args = get_args(magnet, out, bind);
    args.extend([s("--no-dht"), s("--no-lsd"), s("--peer"), peer.to_string()]);
    args.extend_from_slice(extra);
    Proc::kadswarm("kadswarm get", &args)
}

/// A 4 MiB transfer with `seed_extra` on the seeder and `get_extra` on the getter over
/// `transport`: checks the payload and the transport used, returns the getter's run time and
/// its progress events.
fn limited_transfer(
    tag: &str,
    net: u8,
    transport: &str,
    seed_extra: &[String],
    get_extra: &[String],
) -> (Duration, Vec<serde_json::Value>) {
    let dir = TempDir::new(tag);
    let payload = make_payload(&dir.0, "limited", SIZE, u64::from(net));
    let seed_at = addr(net);
    let mut seed_args = vec![s("--transport"), s(transport)];
    seed_args.extend_from_slice(seed_extra);
    let (_seed, magnet) = seeder(&payload, seed_at, &seed_args);
    let out = dir.0.join("out");
    let mut get_args = vec![s("--transport"), s(transport)];
    get_args.extend_from_slice(get_extra);
    let started = Instant::now();
    let mut get = getter(&magnet, &out, addr(net + 1), seed_at, &get_args);
    let status = get.wait_exit(TRANSFER_LIMIT);
    let took = started.elapsed();
    assert!(status.success(), "get failed: {status}\n{}", get.dump());
    assert_same_tree(&payload, &out.join("limited"));
    let done = done_event(&get).unwrap_or_else(|| panic!("no done event\n{}", get.dump()));
    let field = if transport == "utp" { "peers_utp" } else { "peers_tcp" };
    assert!(done[field].as_u64().unwrap_or(0) >= 1, "not over {transport}: {done}");
    let progress = get.events().into_iter().filter(|e| e["event"] == "progress").collect();
    eprintln!("{tag}: 4 MiB over {transport} in {took:?}");
    (took, progress)
}

/// The least time 4 MiB may take at 1 MB/s: 70 % of size / limit leaves room for the burst
/// (a quarter second) and timing noise, and is still seconds above an unlimited transfer.
fn assert_held_to_the_limit(took: Duration) {
    let floor = Duration::from_secs_f64(0.7 * SIZE as f64 / LIMIT);
    assert!(took >= floor, "4 MiB at 1 MB/s took {took:?}, less than {floor:?}: the limit was not kept");
}

fn upload_limited(tag: &str, net: u8, transport: &str) {
    let (took, progress) = limited_transfer(tag, net, transport, &[s("--upload-limit"), s("1M")], &[]);
    assert_held_to_the_limit(took);
    assert!(progress.iter().all(|e| e["download_limit"].is_null()), "the getter has no limit");
}

fn download_limited(tag: &str, net: u8, transport: &str) {
    let limits = [s("--download-limit"), s("1M"), s("--upload-limit"), s("2MiB")];
    let (took, progress) = limited_transfer(tag, net, transport, &[], &limits);
    assert_held_to_the_limit(took);
    // The progress events say what the limits are.
    let last = progress.iter().rev().find(|e| e["total"].is_u64()).expect("a progress event with the metadata");
    assert_eq!(last["download_limit"], 1_000_000, "{last}");
    assert_eq!(last["upload_limit"], 2 * MIB, "{last}");
}

#[test]
fn a_seeder_upload_limit_holds_over_tcp() {
    upload_limited("ul-tcp", 61, "tcp");
}

#[test]
fn a_seeder_upload_limit_holds_over_utp() {
    upload_limited("ul-utp", 62, "utp");
}

#[test]
fn a_getter_download_limit_holds_over_tcp() {
    download_limited("dl-tcp", 63, "tcp");
}

#[test]
fn a_getter_download_limit_holds_over_utp() {
    download_limited("dl-utp", 64, "utp");
}

/// The resume record a finished `get` leaves in its output directory.
fn has_resume_record(out: &Path) -> bool {
    std::fs::read_dir(out.join(".kadswarm"))
        .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "resume")))
        .unwrap_or(false)
}

#[test]
fn get_seed_with_a_seed_time_exits_by_itself() {
    let dir = TempDir::new("seed-time");
    let payload = make_payload(&dir.0, "timed", MIB, 65);
    let seed_at = addr(65);
    let (_seed, magnet) = seeder(&payload, seed_at, &[]);
    let out = dir.0.join("out");
    let extra = [s("--seed"), s("--seed-time"), s("1")];
    let mut get = getter(&magnet, &out, addr(66), seed_at, &extra);
    get.wait_event_for("done", TRANSFER_LIMIT, |e| (e["event"] == "done").then_some(()));
    let status = get.wait_exit(SEEDING_ENDS);
    assert!(status.success(), "get --seed --seed-time 1 failed: {status}\n{}", get.dump());
    assert_same_tree(&payload, &out.join("timed"));
    let stopped = get.events().into_iter().find(|e| e["event"] == "seeding_stopped");
    let reason = stopped.unwrap_or_else(|| panic!("no seeding_stopped event\n{}", get.dump()))["reason"].to_string();
    assert!(reason.contains("seed time"), "{reason}");
    assert!(has_resume_record(&out), "no resume record in {}", out.display());
}

/// The first getter seeds with ratio 1; once the original seeder is gone, a second getter can
/// only take the file from it, and when it has taken all of it the first one stops by itself.
#[test]
fn get_seed_with_ratio_one_exits_after_a_second_getter_took_the_whole_file() {
    let dir = TempDir::new("seed-ratio");
    let payload = make_payload(&dir.0, "shared", SIZE, 67);
    let seed_at = addr(67);
    let (mut seed, magnet) = seeder(&payload, seed_at, &[]);
    let first_at = addr(68);
    let out1 = dir.0.join("out1");
    let mut first = getter(&magnet, &out1, first_at, seed_at, &[s("--seed"), s("--seed-ratio"), s("1")]);
    first.wait_event_for("done", TRANSFER_LIMIT, |e| (e["event"] == "done").then_some(()));
    assert!(seed.terminate().success());
    // Nobody took anything from it yet: it must still be seeding.
    std::thread::sleep(Duration::from_secs(2));
    first.assert_running();
    let out2 = dir.0.join("out2");
    let mut second = getter(&magnet, &out2, addr(69), first_at, &[]);
    let status = second.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "the second get failed: {status}\n{}", second.dump());
    assert_same_tree(&payload, &out2.join("shared"));
    let status = first.wait_exit(SEEDING_ENDS);
    assert!(status.success(), "the seeding get failed: {status}\n{}", first.dump());
    let stopped = first.events().into_iter().find(|e| e["event"] == "seeding_stopped");
    let reason = stopped.unwrap_or_else(|| panic!("no seeding_stopped event\n{}", first.dump()))["reason"].to_string();
    assert!(reason.contains("seed ratio"), "{reason}");
    assert!(has_resume_record(&out1));
}

/// A value clap refuses: exit 2, the offending value named, no panic.
fn assert_refused(args: &[&str], named: &str) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut p = Proc::kadswarm("kadswarm", &args);
    let status = p.wait_exit(WAIT);
    let err = p.stderr_lines().join("\n");
    assert_eq!(status.code(), Some(2), "{args:?}\n{err}");
    assert!(err.contains(named), "{args:?}: the error does not name `{named}`:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_limits_and_seed_options_exit_2() {
    let dir = TempDir::new("bad-limits");
    let out = dir.0.join("out").display().to_string();
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let get = |extra: &[&str]| {
        let mut v = vec!["get", hash, "--output", out.as_str(), "--bind", "127.0.69.1:0", "--no-dht"];
        v.extend_from_slice(extra);
        v.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, named: &str| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&refs, named);
    };
    run(get(&["--upload-limit", "fast"]), "fast");
    run(get(&["--download-limit", "-5"]), "-5");
    run(get(&["--download-limit", "1.5"]), "1.5");
    run(get(&["--download-limit", "3X"]), "3X");
    run(get(&["--seed", "--seed-ratio", "-1"]), "-1");
    run(get(&["--seed", "--seed-time", "soon"]), "soon");
    // The seed options mean nothing without --seed.
    run(get(&["--seed-ratio", "1"]), "--seed");
    run(get(&["--seed-time", "5"]), "--seed");
    let path = dir.0.display().to_string();
    run(vec![s("seed"), path.clone(), s("--upload-limit"), s("lots")], "lots");
    run(vec![s("seed"), path, s("--seed-ratio"), s("inf")], "inf");
    assert!(!Path::new(&out).exists(), "nothing is created for refused options");
}

#[test]
fn seed_with_a_seed_time_exits_by_itself() {
    let dir = TempDir::new("seed-cmd-time");
    let payload = make_payload(&dir.0, "brief", MIB, 60);
    let bind = addr(60);
    let (mut seed, _magnet) = seeder(&payload, bind, &[s("--seed-time"), s("1")]);
    let status = seed.wait_exit(SEEDING_ENDS);
    assert!(status.success(), "seed --seed-time 1 failed: {status}\n{}", seed.dump());
}
