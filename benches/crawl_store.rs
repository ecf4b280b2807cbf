//! Rows per second into the crawl stores, and their bytes on disk per row: JSONL, SQLite, and
//! PostgreSQL when `KADSWARM_TEST_POSTGRES` is set (a URL of a role that may create databases;
//! the bench makes its own database and drops it).
//!
//! A crawl-like load: rounds of `KADSWARM_BENCH_SWARMS` swarms (default 10,000) with 10 peers
//! each, committed one round per batch; from round to round two of each swarm's ten peers
//! change, so the peers table grows slower than the membership rows. `KADSWARM_BENCH_ROUNDS`
//! (default 3) sets the rounds. Run with `cargo bench --bench crawl_store`. A measurement, not
//! a test: nothing here asserts on timing.

// Benches measure real time: reading the clock is their whole job.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use kadswarm::crawl::record::{Observation, RunInfo};
use kadswarm::crawl::store::{self, CrawlStore, PostgresStore};
use kadswarm::id::Id;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn round(r: u32, swarms: u32) -> Vec<Observation> {
    (0..swarms)
        .map(|i| {
            let mut hash = [0u8; 20];
            hash[..4].copy_from_slice(&i.to_be_bytes());
            hash[4] = 0x5a;
            // Peers 0..8 stay; 8 and 9 are new every round.
            let peers = (0..10u32)
                .map(|p| {
                    let x = if p < 8 { p } else { p + 2 * r };
                    let ip = Ipv4Addr::from(0x0a00_0000 | (i << 8) ^ x.wrapping_mul(2_654_435_761));
                    SocketAddr::new(ip.into(), 6881 + (x % 100) as u16)
                })
                .collect();
            Observation {
                info_hash: Id(hash),
                round: r,
                observed_at_ms: 1_700_000_000_000 + i64::from(r) * 600_000,
                peers,
                seeds: Some(i % 50),
                leechers: Some(i % 70),
            }
        })
        .collect()
}

/// Writes every round into `store`; returns seconds spent in `record` (batches only).
fn fill(mut store: Box<dyn CrawlStore>, rounds: &[Vec<Observation>]) -> f64 {
    let run = store
        .begin_run(&RunInfo { started_at_ms: 0, crawler: "bench".into(), args: String::new() })
        .expect("begin_run");
    let mut secs = 0.0;
    for batch in rounds {
        let t = Instant::now();
        store.record(run, batch).expect("record");
        secs += t.elapsed().as_secs_f64();
    }
    store.close().expect("close");
    secs
}

fn report(name: &str, secs: f64, observations: u64, sightings: u64) {
    println!(
        "{name:<10} {:>9.0} observations/s  {:>10.0} peer sightings/s  ({:.2} s for {observations} observations, {sightings} sightings)",
        observations as f64 / secs,
        sightings as f64 / secs,
        secs
    );
}

fn main() {
    let swarms = env_u32("KADSWARM_BENCH_SWARMS", 10_000);
    let n_rounds = env_u32("KADSWARM_BENCH_ROUNDS", 3);
    let rounds: Vec<_> = (0..n_rounds).map(|r| round(r, swarms)).collect();
    let observations = u64::from(swarms) * u64::from(n_rounds);
    let sightings = observations * 10;
    println!("crawl_store: {n_rounds} rounds x {swarms} swarms x 10 peers, one batch per round");

    let dir = std::env::temp_dir().join(format!("kadswarm-bench-crawl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let jsonl = dir.join("c.jsonl");
    let secs = fill(store::open(jsonl.to_str().unwrap()).expect("open JSONL"), &rounds);
    report("JSONL", secs, observations, sightings);
    let bytes = std::fs::metadata(&jsonl).map(|m| m.len()).unwrap_or(0);
    println!("           {bytes} bytes: {:.0} bytes per observation line", bytes as f64 / observations as f64);

    let sqlite = dir.join("c.sqlite");
    let secs = fill(store::open(sqlite.to_str().unwrap()).expect("open SQLite"), &rounds);
    report("SQLite", secs, observations, sightings);
    sqlite_sizes(&sqlite, observations, sightings);

    if let Ok(url) = std::env::var("KADSWARM_TEST_POSTGRES") {
        postgres_bench(&url, &rounds, observations, sightings);
    } else {
        println!("PostgreSQL skipped: KADSWARM_TEST_POSTGRES is not set");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn sqlite_sizes(path: &std::path::Path, observations: u64, sightings: u64) {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "           {bytes} bytes: {:.0} bytes per observation with its 10 peers, {:.1} per peer sighting",
        bytes as f64 / observations as f64,
        bytes as f64 / sightings as f64
    );
    let conn = rusqlite::Connection::open(path).expect("reopen SQLite");
    let counts = store::table_counts(&conn).expect("counts");
    // Per table, where the bundled SQLite has the dbstat table (tables and indexes by name).
    let Ok(mut stmt) = conn.prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC") else {
        return;
    };
    let rows: Vec<(String, i64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|rows| rows.collect()).unwrap_or_default();
    for (name, size) in rows {
        let per = counts.get(name.as_str()).map(|&n| format!(" ({:.1} bytes per row)", size as f64 / n.max(1) as f64));
        println!("             {name:<26} {size:>10} bytes{}", per.unwrap_or_default());
    }
}

fn postgres_bench(url: &str, rounds: &[Vec<Observation>], observations: u64, sightings: u64) {
    let db = format!("kadswarm_bench_{}", std::process::id());
    let mut admin = postgres::Client::connect(url, postgres::NoTls).expect("connect to KADSWARM_TEST_POSTGRES");
    admin.batch_execute(&format!("CREATE DATABASE {db}")).expect("create bench database");
    let (base, _) = url.split_once('?').unwrap_or((url, ""));
    let db_url = format!(
        "{}/{db}",
        &base[..base.rfind('/').filter(|&i| i > base.find("://").unwrap_or(0) + 2).unwrap_or(base.len())]
    );
    let secs = fill(Box::new(PostgresStore::open(&db_url).expect("open PostgreSQL")), rounds);
    report("PostgreSQL", secs, observations, sightings);
    let mut client = postgres::Client::connect(&db_url, postgres::NoTls).expect("reconnect");
    let total: i64 = client.query_one("SELECT pg_database_size(current_database())", &[]).unwrap().get(0);
    println!(
        "           {total} bytes in the database: {:.0} per observation with its 10 peers",
        total as f64 / observations as f64
    );
    for table in ["observation_peers", "peers", "observations", "swarms"] {
        let row = client
            .query_one(&format!("SELECT pg_total_relation_size('{table}'), (SELECT COUNT(*) FROM {table})"), &[])
            .unwrap();
        let (size, n): (i64, i64) = (row.get(0), row.get(1));
        println!(
            "             {table:<26} {size:>10} bytes with indexes ({:.1} bytes per row)",
            size as f64 / n.max(1) as f64
        );
    }
    drop(client);
    let _ = admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"));
}
