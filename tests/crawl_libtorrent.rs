//! `kadswarm crawl` over a DHT of real libtorrent 2.1.1 nodes (which answer BEP 51
//! sample_infohashes and BEP 33 scrapes, the latter without values): 30 sessions on loopback
//! in one Python process (`tests/interop/lt_swarm.py`), 20 info-hashes announced by one to
//! three of them. The crawl must find at least 80% of the info-hashes, each with its
//! announcers as peers, within 60 s, and its JSONL and SQLite outputs must agree.

#![allow(clippy::disallowed_methods)] // real processes, real time

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::crawl_out::{jsonl_rounds, jsonl_rounds_so_far, peers_by_swarm, renumber_runs, sqlite_rounds};
use common::{free_port, ip, libtorrent_available, s, Proc, TempDir, WAIT};

const LT_SWARM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_swarm.py");

#[test]
fn crawl_finds_the_torrents_of_a_libtorrent_dht() {
    if !libtorrent_available("crawl_finds_the_torrents_of_a_libtorrent_dht") {
        return;
    }
    let dir = TempDir::new("crawl-lt");
    let lt_args = [
        LT_SWARM.to_string(),
        s("--first"),
        s(60),
        s("--count"),
        s(30),
        s("--torrents"),
        s(20),
        s("--duration"),
        s(150),
    ];
    let mut swarm = Proc::spawn("lt swarm", "python3", &lt_args);
    let nodes: Vec<String> = swarm.wait_event("ready", |e| {
        (e["event"] == "ready")
            .then(|| e["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect())
    });
    let truth: BTreeMap<String, BTreeSet<String>> = swarm.wait_event("torrents", |e| {
        (e["event"] == "torrents").then(|| {
            e["torrents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let ih = t["info_hash"].as_str().unwrap().to_string();
                    let who =
                        t["announcers"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
                    (ih, who)
                })
                .collect()
        })
    });
    // Let the sessions find each other and the announces land before the clock starts.
    swarm.wait_event_for("routing tables of 8+ nodes", WAIT, |e| {
        (e["event"] == "dht_nodes" && e["counts"].as_array().unwrap().iter().all(|c| c.as_u64() >= Some(8)))
            .then_some(())
    });
    let jsonl = dir.0.join("lt.jsonl");
    let sqlite = dir.0.join("lt.sqlite");
    let a = ip(59);
    let mut args = vec![
        s("crawl"),
        s("--bind"),
        format!("{a}:{}", free_port(a)),
        s("--duration"),
        s(60),
        s("--interval"),
        s(8),
        s("--json"),
        s("--out"),
        jsonl.display().to_string(),
        s("--out"),
        sqlite.display().to_string(),
    ];
    for n in nodes.iter().take(3) {
        args.extend([s("--bootstrap"), n.clone()]);
    }
    let started = Instant::now();
    let mut crawl = Proc::kadswarm("crawl", &args);
    // Stop as soon as 80% are in with their announcers (or at the crawl's own 60 s end).
    let wanted = truth.len() * 8 / 10;
    let mut found_with_announcers = 0;
    while started.elapsed() < Duration::from_secs(62) {
        if crawl.child.try_wait().expect("try_wait").is_some() {
            break;
        }
        let found = peers_by_swarm(&jsonl_rounds_so_far(&jsonl));
        found_with_announcers =
            truth.iter().filter(|(ih, who)| found.get(*ih).is_some_and(|got| got.is_superset(who))).count();
        if found_with_announcers >= wanted {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let elapsed = started.elapsed();
    let status = crawl.terminate_if_running();
    assert!(status.success(), "crawl ended badly: {status}\n{}", crawl.dump());
    let rounds = jsonl_rounds(&jsonl);
    let found = peers_by_swarm(&rounds);
    let complete: Vec<&String> = truth
        .iter()
        .filter(|(ih, who)| found.get(*ih).is_some_and(|got| got.is_superset(who)))
        .map(|(ih, _)| ih)
        .collect();
    eprintln!(
        "found {} of {} info-hashes with all their announcers in {elapsed:?} ({} seen at all, {} at the last poll)",
        complete.len(),
        truth.len(),
        truth.keys().filter(|ih| found.contains_key(*ih)).count(),
        found_with_announcers
    );
    assert!(
        complete.len() >= wanted,
        "only {} of {} found with their announcers: {found:?}",
        complete.len(),
        truth.len()
    );
    assert_eq!(renumber_runs(&rounds), renumber_runs(&sqlite_rounds(&sqlite)), "JSONL and SQLite disagree");
    swarm.kill();
}
