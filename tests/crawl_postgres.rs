//! Two crawlers write into one PostgreSQL database at once, each also writing its own JSONL
//! file: the database then holds exactly what the two JSONL files say.
//!
//! Needs a server: `KADSWARM_TEST_POSTGRES` is a URL of a role that may create databases
//! (`.ci/run` starts a throwaway cluster and sets it). The test makes its own database and
//! drops it. Without the variable it is skipped with the reason, except under CI.

mod common;
mod crawl_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use common::TempDir;
use crawl_support::{fold_seen, read_jsonl, round, seen_from_jsonl, spans_from_jsonl, SeenRow, SEEN_SQL};
use kadswarm::crawl::record::RunInfo;
use kadswarm::crawl::store::{self, addr_from_bytes, CrawlStore, JsonlStore, PostgresStore};
use kadswarm::id::Id;

const ROUNDS: u32 = 6;
const SWARMS: u32 = 400;
/// Swarms both crawlers see: their rows are upserted by both at once.
const SHARED: u32 = 150;

/// `url` with its database name replaced by `db` (the query string is kept).
fn with_db(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if !query.is_empty() {
        out = format!("{out}?{query}");
    }
    out
}

fn crawl(url: String, jsonl: std::path::PathBuf, crawler: u8, start: Arc<Barrier>) {
    let name = format!("crawler-{crawler}");
    let info = RunInfo { started_at_ms: 1, crawler: name.clone(), args: "test".into() };
    // Both open at once too: the schema is created under an advisory lock.
    start.wait();
    let mut pg = PostgresStore::open(&url).expect("open PostgreSQL store");
    let mut file = JsonlStore::open(&jsonl).expect("open JSONL store");
    let (run_pg, run_file) = (pg.begin_run(&info).unwrap(), file.begin_run(&info).unwrap());
    for r in 0..ROUNDS {
        let batch = round(crawler, r, SWARMS, SHARED, 7, 10_000 * i64::from(r) + i64::from(crawler) * 13);
        pg.record(run_pg, &batch).expect("PostgreSQL batch");
        file.record(run_file, &batch).expect("JSONL batch");
    }
    pg.end_run(run_pg, 99).unwrap();
    Box::new(pg).close().unwrap();
    Box::new(file).close().unwrap();
}

#[test]
fn two_crawlers_at_once_write_what_their_jsonl_says() {
    let Ok(url) = std::env::var("KADSWARM_TEST_POSTGRES") else {
        common::skip(
            "two_crawlers_at_once_write_what_their_jsonl_says",
            "KADSWARM_TEST_POSTGRES is not set (a postgres:// URL; .ci/run starts a server and sets it)",
        );
        return;
    };
    let db = format!("kadswarm_test_{}_{:x}", std::process::id(), common::random_u64() & 0xffff_ffff);
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("connect to KADSWARM_TEST_POSTGRES");
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let db_url = with_db(&url, &db);
    assert!(store::open(&db_url).is_ok(), "{db_url} opens through store::open");

    let dir = TempDir::new("crawl-pg");
    let start = Arc::new(Barrier::new(2));
    let files: Vec<_> = (1..=2u8).map(|c| (c, dir.0.join(format!("c{c}.jsonl")))).collect();
    let threads: Vec<_> = files
        .iter()
        .map(|(c, path)| {
            let (url, path, start, c) = (db_url.clone(), path.clone(), start.clone(), *c);
            std::thread::spawn(move || crawl(url, path, c, start))
        })
        .collect();
    for t in threads {
        t.join().expect("crawler thread");
    }

    let mut client = postgres::Client::connect(&db_url, postgres::NoTls).unwrap();
    let rows: Vec<SeenRow> = client
        .query(SEEN_SQL, &[])
        .unwrap()
        .iter()
        .map(|r| {
            let int = |i: usize| r.get::<_, Option<i32>>(i).map(i64::from);
            (r.get(0), r.get(1), i64::from(r.get::<_, i32>(2)), r.get(3), r.get(4), int(5), int(6), r.get(7), int(8))
        })
        .collect();
    let mut from_pg = fold_seen(rows);
    let mut from_jsonl = Vec::new();
    let mut spans: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut members: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for (c, path) in &files {
        let lines = read_jsonl(path);
        assert_eq!(lines.len() as u32, ROUNDS * SWARMS);
        from_jsonl.extend(seen_from_jsonl(&lines, &format!("crawler-{c}")));
        for (hash, (first, last)) in spans_from_jsonl(&lines) {
            let e = spans.entry(hash).or_insert((first, last));
            *e = (e.0.min(first), e.1.max(last));
        }
        for l in &lines {
            for p in &l.peers {
                let e = members.entry((l.info_hash.clone(), p.clone())).or_insert((l.observed_at, l.observed_at));
                *e = (e.0.min(l.observed_at), e.1.max(l.observed_at));
            }
        }
    }
    from_pg.sort();
    from_jsonl.sort();
    assert_eq!(from_pg.len(), from_jsonl.len());
    assert_eq!(from_pg, from_jsonl, "every observation, with its peers, as the JSONL says");

    // first/last seen per swarm span both crawlers' sightings (shared swarms were upserted by
    // both); one peers row per (swarm, address).
    let pg_spans: BTreeMap<String, (i64, i64)> = client
        .query("SELECT info_hash, first_seen, last_seen FROM swarms", &[])
        .unwrap()
        .iter()
        .map(|r| (Id::from_slice(r.get(0)).unwrap().to_hex(), (r.get(1), r.get(2))))
        .collect();
    assert_eq!((pg_spans.len(), differ(&pg_spans, &spans)), (spans.len(), 0), "swarm first/last seen");
    let pg_members: BTreeMap<(String, String), (i64, i64)> = client
        .query(
            "SELECT s.info_hash, p.ip, p.port, p.first_seen, p.last_seen FROM peers p JOIN swarms s ON s.id = p.swarm",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let addr = addr_from_bytes(r.get(1), r.get::<_, i32>(2) as u16).unwrap().to_string();
            ((Id::from_slice(r.get(0)).unwrap().to_hex(), addr), (r.get(3), r.get(4)))
        })
        .collect();
    assert_eq!((pg_members.len(), differ(&pg_members, &members)), (members.len(), 0), "peer first/last seen");
    let runs: i64 = client.query_one("SELECT COUNT(*) FROM runs WHERE ended_at = 99", &[]).unwrap().get(0);
    assert_eq!(runs, 2);
    drop(client);
    admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
}

/// How many entries of `a` differ from `b` (a count, where a full map diff would flood the log).
fn differ<K: Ord>(a: &BTreeMap<K, (i64, i64)>, b: &BTreeMap<K, (i64, i64)>) -> usize {
    a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).count()
}

#[test]
fn url_database_is_replaced() {
    assert_eq!(with_db("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
    assert_eq!(with_db("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    assert_eq!(with_db("postgresql://h/a?sslmode=disable", "x"), "postgresql://h/x?sslmode=disable");
}
