//! `kadswarm crawl` as a user runs it, against a private DHT of `kadswarm node` processes on
//! loopback: what it finds, what it writes (JSONL and SQLite agree), resuming a store, a
//! SIGINT in the middle, names by BEP 9, and bad input.

#![allow(clippy::disallowed_methods)] // real processes, real time

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::crawl_out::{jsonl_rounds, peers_by_swarm, renumber_runs, sqlite_rounds};
use common::krpc::{Ben, Krpc};
use common::{free_port, hex, ip, random_id, s, Proc, TempDir, WAIT};

/// A private DHT: `count` kadswarm nodes on 127.0.(first+i).1, the first one the others'
/// bootstrap contact.
struct Dht {
    nodes: Vec<(Proc, SocketAddr)>,
}

impl Dht {
    fn start(first: u8, count: u8, probe: &mut Krpc) -> Dht {
        let mut nodes: Vec<(Proc, SocketAddr)> = Vec::new();
        for i in 0..count {
            let a = ip(first + i);
            let addr = SocketAddr::from((a, free_port(a)));
            let mut args = vec![s("node"), s("--bind"), addr.to_string()];
            match nodes.first() {
                Some((_, contact)) => args.extend([s("--bootstrap"), contact.to_string()]),
                None => args.push(s("--no-bootstrap")),
            }
            let mut p = Proc::kadswarm(&format!("node {i}"), &args);
            probe.wait_id(addr, &mut p);
            nodes.push((p, addr));
        }
        Dht { nodes }
    }

    fn contacts(&self) -> Vec<String> {
        self.nodes.iter().take(3).flat_map(|(_, a)| [s("--bootstrap"), a.to_string()]).collect()
    }
}

/// Announces `info_hash` from a client on its own address with `port`, into every node (as if
/// each were among the closest): the peer is that address and port.
fn announce_everywhere(dht: &Dht, from: Ipv4Addr, info_hash: &[u8; 20], port: u16) -> String {
    let mut client = Krpc::bind(from);
    for (_, node) in &dht.nodes {
        let r = client
            .query(*node, "get_peers", vec![("info_hash", Ben::bytes(info_hash))], Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{node} did not answer get_peers"));
        let token = r.get("token").and_then(Ben::as_bytes).expect("a token").to_vec();
        let args = vec![
            ("info_hash", Ben::bytes(info_hash)),
            ("port", Ben::Int(i64::from(port))),
            ("token", Ben::bytes(&token)),
        ];
        client.query(*node, "announce_peer", args, Duration::from_secs(2)).expect("announce acknowledged");
    }
    format!("{from}:{port}")
}

/// Swarms announced into the DHT: info-hash hex → peers.
fn populate(dht: &Dht, swarms: usize, first_peer_ip: u8) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    for i in 0..swarms {
        let ih = random_id();
        let mut peers = BTreeSet::new();
        for j in 0..=(i % 3) {
            let from = ip(first_peer_ip + j as u8);
            peers.insert(announce_everywhere(dht, from, &ih, 6000 + i as u16));
        }
        out.push((hex(&ih), peers));
    }
    out
}

fn crawl(name: &str, at: u8, dht: &Dht, extra: &[String]) -> Proc {
    let a = ip(at);
    let mut args = vec![s("crawl"), s("--bind"), format!("{a}:{}", free_port(a)), s("--json")];
    args.extend(dht.contacts());
    args.extend_from_slice(extra);
    Proc::kadswarm(name, &args)
}

fn last_event(p: &Proc, kind: &str) -> serde_json::Value {
    p.events().into_iter().rev().find(|e| e["event"] == kind).unwrap_or_else(|| panic!("no {kind} event\n{}", p.dump()))
}

/// The whole job: every swarm and every announcer found; both outputs hold the same rounds;
/// a second run on the same stores adds a run and keeps the first.
#[test]
fn crawl_finds_every_swarm_and_its_peers_and_both_stores_agree() {
    let started = Instant::now();
    let dir = TempDir::new("crawl-cli");
    let mut probe = Krpc::bind(ip(159));
    let dht = Dht::start(160, 10, &mut probe);
    let truth = populate(&dht, 12, 175);
    let jsonl = dir.0.join("crawl.jsonl");
    let sqlite = dir.0.join("crawl.sqlite");
    let outs = [s("--out"), jsonl.display().to_string(), s("--out"), sqlite.display().to_string()];
    for run in 0..2 {
        let mut extra = vec![s("--duration"), s(60), s("--rounds"), s(1)];
        extra.extend_from_slice(&outs);
        let mut p = crawl(&format!("crawl run {run}"), 158, &dht, &extra);
        let status = p.wait_exit(WAIT + Duration::from_secs(10));
        assert!(status.success(), "crawl failed: {status}\n{}", p.dump());
        let done = last_event(&p, "done");
        assert_eq!(done["reason"], "rounds done", "{done}");
    }
    let from_jsonl = jsonl_rounds(&jsonl);
    let from_sqlite = sqlite_rounds(&sqlite);
    assert_eq!(renumber_runs(&from_jsonl), renumber_runs(&from_sqlite), "JSONL and SQLite disagree");
    let runs: BTreeSet<i64> = from_jsonl.keys().map(|k| k.1).collect();
    assert_eq!(runs.len(), 2, "the second run added its own observations: {runs:?}");
    let found = peers_by_swarm(&from_jsonl);
    for (ih, peers) in &truth {
        let got = found.get(ih).unwrap_or_else(|| panic!("swarm {ih} not found; found {:?}", found.keys()));
        assert!(got.is_superset(peers), "swarm {ih}: announced {peers:?}, crawled {got:?}");
    }
    // The resumed run looked up every swarm of the store again, so each is in both runs.
    for (ih, _) in &truth {
        let seen_in: BTreeSet<i64> = from_jsonl.keys().filter(|k| &k.0 == ih).map(|k| k.1).collect();
        assert_eq!(seen_in.len(), 2, "swarm {ih} is in runs {seen_in:?}");
    }
    eprintln!("12 swarms found in 2 runs, stores agree; {:?}", started.elapsed());
}

/// SIGINT while rounds keep coming: exit 0, and the store opens cleanly and holds at least
/// everything the crawl reported as stored.
#[test]
fn sigint_in_the_middle_keeps_what_was_stored() {
    let dir = TempDir::new("crawl-sigint");
    let mut probe = Krpc::bind(ip(189));
    let dht = Dht::start(190, 8, &mut probe);
    populate(&dht, 6, 200);
    let sqlite = dir.0.join("crawl.sqlite");
    let jsonl = dir.0.join("crawl.jsonl");
    let extra = [
        s("--duration"),
        s(120),
        s("--interval"),
        s(1),
        s("--out"),
        sqlite.display().to_string(),
        s("--out"),
        jsonl.display().to_string(),
    ];
    let mut p = crawl("crawl", 188, &dht, &extra);
    let stored = p.wait_event_for("6 swarms stored", WAIT, |e| {
        (e["event"] == "stats" && e["stored"].as_u64() >= Some(6)).then(|| e["stored"].as_u64().unwrap())
    });
    let kill = std::process::Command::new("kill").args(["-INT", &p.child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let status = p.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "SIGINT is a clean end: {status}\n{}", p.dump());
    assert_eq!(last_event(&p, "done")["reason"], "signal");
    let rows = sqlite_rounds(&sqlite);
    let lines = jsonl_rounds(&jsonl);
    assert!(rows.len() as u64 >= stored, "{} rows, {stored} reported stored", rows.len());
    assert_eq!(renumber_runs(&rows), renumber_runs(&lines), "both stores hold the same rounds");
    let db = rusqlite::Connection::open(&sqlite).expect("open");
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    assert_eq!(check, "ok");
}

/// With --metadata, the name and size of a seeded torrent come from its seeder (BEP 9).
#[test]
fn metadata_names_a_swarm_from_its_seeder() {
    let dir = TempDir::new("crawl-meta");
    let mut probe = Krpc::bind(ip(219));
    let dht = Dht::start(220, 8, &mut probe);
    let payload = dir.0.join("holiday-photos.bin");
    std::fs::write(&payload, vec![42u8; 300_000]).expect("write payload");
    let seed_ip = ip(230);
    let seed_addr = SocketAddr::from((seed_ip, free_port(seed_ip)));
    let mut seed_args = vec![s("seed"), payload.display().to_string(), s("--bind"), seed_addr.to_string()];
    seed_args.extend(dht.contacts());
    seed_args.extend([s("--no-lsd")]);
    let mut seeder = Proc::kadswarm("seeder", &seed_args);
    let magnet = seeder.wait_magnet();
    // The crawler samples each node once unless it shows news: start it only once the seeder's
    // announce is in the DHT (under a loaded CI the crawl sometimes sampled the nodes first and
    // never learned the swarm).
    let nodes: Vec<SocketAddr> = dht.nodes.iter().map(|(_, a)| *a).collect();
    common::swarm::wait_announced(&nodes, &magnet, seed_addr, &mut seeder);
    let jsonl = dir.0.join("crawl.jsonl");
    let extra =
        [s("--duration"), s(50), s("--interval"), s(3), s("--metadata"), s("--out"), jsonl.display().to_string()];
    let mut p = crawl("crawl", 218, &dht, &extra);
    p.wait_event_for("a name fetched", WAIT, |e| {
        (e["event"] == "stats" && e["metadata_fetched"].as_u64() >= Some(1)).then_some(())
    });
    // The name goes out with the swarm's next observation: wait for one more round.
    let deadline = Instant::now() + WAIT;
    let named = loop {
        let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        if let Some(line) = whole.lines().find(|l| l.contains("holiday-photos.bin")) {
            break serde_json::from_str::<serde_json::Value>(line).expect("json line");
        }
        assert!(Instant::now() < deadline, "no named line in {}\n{}", jsonl.display(), p.dump());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(named["size"], 300_000);
    assert!(magnet.contains(named["info_hash"].as_str().unwrap()), "{magnet} vs {named}");
    p.terminate();
}

#[test]
fn bad_input_is_refused_with_exit_2() {
    let cases: [(&[&str], &str); 4] = [
        (&["--duration", "5", "--out", "x.txt"], "not a crawl store"),
        (&["--duration", "5", "--out", "x.jsonl", "--rounds", "1", "--interval", "5"], "cannot be used with"),
        (&["--out", "x.jsonl"], "--duration"),
        (&["--duration", "5"], "--out"),
    ];
    for (args, expect) in cases {
        let mut full = vec![s("crawl"), s("--bind"), s("127.0.217.1:0"), s("--no-bootstrap")];
        full.extend(args.iter().map(|a| a.to_string()));
        let mut p = Proc::kadswarm("crawl", &full);
        let status = p.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{args:?}\n{}", p.dump());
        let err = p.stderr_lines().join("\n");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
