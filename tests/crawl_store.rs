//! The crawl store as the crawler sees it: JSONL and SQLite hold the same content for the same
//! crawl, and a crawl killed by SIGINT mid-write leaves a store that opens cleanly and holds
//! every round reported stored.

mod common;
mod crawl_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::TempDir;
use crawl_support::{fold_seen, read_jsonl, round, seen_from_jsonl, spans_from_jsonl, SeenRow, SEEN_SQL};
use kadswarm::crawl::record::{Metadata, RunInfo};
use kadswarm::crawl::store::{self, SqliteStore};
use kadswarm::id::Id;
use rusqlite::Connection;

fn run_info(crawler: &str) -> RunInfo {
    RunInfo { started_at_ms: 1, crawler: crawler.into(), args: "test".into() }
}

fn sqlite_seen(conn: &Connection) -> Vec<crawl_support::Seen> {
    let mut stmt = conn.prepare(SEEN_SQL).unwrap();
    let rows: Vec<SeenRow> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    fold_seen(rows)
}

#[test]
fn jsonl_and_sqlite_hold_the_same_crawl() {
    let dir = TempDir::new("crawl-same");
    let jsonl_path = dir.0.join("c.jsonl");
    let sqlite_path = dir.0.join("c.sqlite");
    // Two runs against the same targets: the second resumes both stores.
    for run_no in 0..2 {
        let mut stores =
            [store::open(jsonl_path.to_str().unwrap()).unwrap(), store::open(sqlite_path.to_str().unwrap()).unwrap()];
        for s in stores.iter_mut() {
            let run = s.begin_run(&run_info("c")).unwrap();
            s.record_metadata(&Metadata { info_hash: crawl_support::swarm(1, 3, 0), name: "n".into(), size: 9 })
                .unwrap();
            for r in 0..3 {
                s.record(run, &round(1, r, 40, 0, 6, 1_000 * i64::from(run_no * 3 + r))).unwrap();
            }
            s.end_run(run, 99).unwrap();
        }
        for s in stores {
            s.close().unwrap();
        }
    }
    let lines = read_jsonl(&jsonl_path);
    assert_eq!(lines.len(), 2 * 3 * 40);
    let mut from_jsonl = seen_from_jsonl(&lines, "c");
    let conn = Connection::open(&sqlite_path).unwrap();
    let mut from_sqlite = sqlite_seen(&conn);
    from_jsonl.sort();
    from_sqlite.sort();
    assert_eq!(from_jsonl, from_sqlite);

    let mut spans = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT info_hash, first_seen, last_seen, name, size FROM swarms").unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let hash = Id::from_slice(&r.get::<_, Vec<u8>>(0).unwrap()).unwrap().to_hex();
        spans.insert(hash.clone(), (r.get(1).unwrap(), r.get(2).unwrap()));
        if let Some(name) = r.get::<_, Option<String>>(3).unwrap() {
            names.insert(hash, (name, r.get::<_, i64>(4).unwrap() as u64));
        }
    }
    assert_eq!(spans, spans_from_jsonl(&lines));
    let jsonl_names: BTreeMap<_, _> =
        lines.iter().filter_map(|l| Some((l.info_hash.clone(), (l.name.clone()?, l.size?)))).collect();
    assert_eq!(names, jsonl_names);
}

/// Rows per round in the SIGINT test: a few MB per round, so the signal lands mid-write.
const SIGINT_SWARMS: u32 = 3_000;

/// Not a test on its own: the child the SIGINT test starts and interrupts. It crawls into both
/// stores and prints "stored R" once round R is stored in both.
#[test]
fn sigint_child() {
    let Ok(dir) = std::env::var("KADSWARM_SIGINT_CHILD") else { return };
    let dir = std::path::PathBuf::from(dir);
    let mut jsonl = store::open(dir.join("c.jsonl").to_str().unwrap()).unwrap();
    let mut sqlite = store::open(dir.join("c.sqlite").to_str().unwrap()).unwrap();
    let (rj, rs) = (jsonl.begin_run(&run_info("c")).unwrap(), sqlite.begin_run(&run_info("c")).unwrap());
    let mut out = std::io::stdout();
    // Bounded: the parent interrupts long before this ends.
    for r in 0..2_000 {
        let batch = round(1, r, SIGINT_SWARMS, 0, 8, i64::from(r));
        sqlite.record(rs, &batch).unwrap();
        jsonl.record(rj, &batch).unwrap();
        writeln!(out, "stored {r}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigint_mid_crawl_keeps_every_stored_round() {
    let dir = TempDir::new("crawl-sigint");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["sigint_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("KADSWARM_SIGINT_CHILD", &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stored = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while stored.len() < 4 {
        let line = lines.next().expect("child stopped early").unwrap();
        if let Some(r) = line.strip_prefix("stored ") {
            stored.push(r.parse::<u32>().unwrap());
        }
    }
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    // Rounds stored between our read and the signal count too.
    for line in lines.map_while(Result::ok) {
        if let Some(r) = line.strip_prefix("stored ") {
            stored.push(r.parse().unwrap());
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was interrupted, not finished: {status:?}");
    let last = *stored.last().unwrap();

    // SQLite: opens cleanly, passes its integrity check, holds every stored round whole and
    // no partial round (a batch is one transaction).
    drop(SqliteStore::open(dir.0.join("c.sqlite")).unwrap());
    let conn = Connection::open(dir.0.join("c.sqlite")).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let mut stmt = conn.prepare("SELECT round, COUNT(*) FROM observations GROUP BY round").unwrap();
    let per_round: BTreeMap<u32, i64> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    for r in 0..=last {
        assert_eq!(per_round.get(&r), Some(&i64::from(SIGINT_SWARMS)), "round {r} of {per_round:?}");
    }
    assert!(per_round.values().all(|&n| n == i64::from(SIGINT_SWARMS)), "no partial round: {per_round:?}");

    // JSONL: opens cleanly (a torn tail is cut), holds every stored round whole.
    drop(store::open(dir.0.join("c.jsonl").to_str().unwrap()).unwrap());
    let mut per_round: BTreeMap<u32, i64> = BTreeMap::new();
    for l in read_jsonl(&dir.0.join("c.jsonl")) {
        *per_round.entry(l.round).or_default() += 1;
    }
    for r in 0..=last {
        assert_eq!(per_round.get(&r), Some(&i64::from(SIGINT_SWARMS)), "round {r}");
    }
}
