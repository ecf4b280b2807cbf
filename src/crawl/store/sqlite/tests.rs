use super::*;
use crate::crawl::store::test_util::{hash, obs, run_info, TempDir};

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn round_trip_swarms_peers_observations_membership() {
    let dir = TempDir::new("sqlite-rt");
    let mut store = SqliteStore::open(dir.file("c.sqlite")).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    store.record(run, &[obs(1, 0, 100, &["1.1.1.1:1", "[::1]:2"]), obs(2, 0, 100, &[])]).unwrap();
    store.record(run, &[obs(1, 1, 200, &["1.1.1.1:1", "3.3.3.3:3"])]).unwrap();
    store.end_run(run, 300).unwrap();
    let c = store.connection();
    let counts = table_counts(c).unwrap();
    assert_eq!(counts["runs"], 1);
    assert_eq!(counts["swarms"], 2);
    assert_eq!(counts["peers"], 3);
    assert_eq!(counts["observations"], 3);
    assert_eq!(counts["observation_peers"], 4);
    let (first, last, n, seeds): (i64, i64, i64, Option<i64>) = c
        .query_row(
            "SELECT first_seen, last_seen, last_peers, last_seeds FROM swarms WHERE info_hash = ?1",
            [hash(1).as_bytes().as_slice()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((first, last, n, seeds), (100, 200, 2, Some(1)));
    let spans: Vec<(Vec<u8>, i64, i64, i64)> = c
        .prepare("SELECT ip, port, first_seen, last_seen FROM peers ORDER BY port")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(spans[0], (vec![1, 1, 1, 1], 1, 100, 200));
    assert_eq!(spans[1].0.len(), 16, "IPv6 stored as 16 bytes");
    assert_eq!(count(c, "SELECT ended_at FROM runs"), 300);
}

#[test]
fn resume_adds_observations_and_keeps_first_seen() {
    let dir = TempDir::new("sqlite-resume");
    let path = dir.file("c.sqlite");
    let mut store = SqliteStore::open(&path).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    store.record(run, &[obs(1, 0, 100, &["1.1.1.1:1"])]).unwrap();
    Box::new(store).close().unwrap();

    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.known_info_hashes(10).unwrap(), vec![hash(1)]);
    let run2 = store.begin_run(&run_info()).unwrap();
    assert_ne!(run, run2);
    // Out of order, as from several crawlers' clocks: each upsert must keep the earliest
    // first_seen, the latest last_seen, and the counts of the latest sighting.
    let batch =
        [obs(1, 0, 50, &["2.2.2.2:2"]), obs(1, 1, 500, &["1.1.1.1:1"]), obs(1, 2, 300, &["1.1.1.1:1", "4.4.4.4:4"])];
    store.record(run2, &batch).unwrap();
    let c = store.connection();
    assert_eq!(count(c, "SELECT COUNT(*) FROM observations"), 4);
    assert_eq!(count(c, "SELECT first_seen FROM swarms"), 50);
    assert_eq!(count(c, "SELECT last_seen FROM swarms"), 500);
    assert_eq!(count(c, "SELECT last_peers FROM swarms"), 1, "counts from the latest sighting");
    assert_eq!(count(c, "SELECT first_seen FROM peers WHERE port = 1"), 100);
    assert_eq!(count(c, "SELECT last_seen FROM peers WHERE port = 1"), 500);
}

#[test]
fn a_failing_batch_leaves_no_partial_rows() {
    let dir = TempDir::new("sqlite-atomic");
    let mut store = SqliteStore::open(dir.file("c.sqlite")).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    store.record(run, &[obs(1, 0, 100, &["1.1.1.1:1"])]).unwrap();
    // Make the last observation of the next batch fail, after the others were written.
    store
        .connection()
        .execute_batch(
            "CREATE TRIGGER fail_round BEFORE INSERT ON observations WHEN NEW.round = 999
             BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
        .unwrap();
    let batch = [obs(1, 1, 200, &["2.2.2.2:2"]), obs(5, 1, 200, &["5.5.5.5:5"]), obs(6, 999, 200, &[])];
    let err = store.record(run, &batch).unwrap_err().to_string();
    assert!(err.contains("c.sqlite") && err.contains("injected"), "{err}");
    let counts = table_counts(store.connection()).unwrap();
    assert_eq!((counts["swarms"], counts["peers"], counts["observations"]), (1, 1, 1));
    assert_eq!(counts["observation_peers"], 1);
    assert_eq!(count(store.connection(), "SELECT last_seen FROM swarms"), 100);
    store.record(run, &batch[..2]).unwrap();
    assert_eq!(table_counts(store.connection()).unwrap()["observations"], 3);
}

#[test]
fn metadata_before_and_after_observations() {
    let dir = TempDir::new("sqlite-meta");
    let mut store = SqliteStore::open(dir.file("c.sqlite")).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    store.record_metadata(&Metadata { info_hash: hash(1), name: "a".into(), size: 10 }).unwrap();
    assert!(store.known_info_hashes(10).unwrap().is_empty(), "metadata alone is no sighting");
    store.record(run, &[obs(1, 0, 100, &[]), obs(2, 0, 100, &[])]).unwrap();
    store.record_metadata(&Metadata { info_hash: hash(2), name: "b".into(), size: 20 }).unwrap();
    let c = store.connection();
    let rows: Vec<(String, i64, i64, i64)> = c
        .prepare("SELECT name, size, first_seen, last_seen FROM swarms ORDER BY name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(rows, vec![("a".into(), 10, 100, 100), ("b".into(), 20, 100, 100)]);
}

#[test]
fn prune_removes_old_rows_only() {
    let dir = TempDir::new("sqlite-prune");
    let mut store = SqliteStore::open(dir.file("c.sqlite")).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    store.record(run, &[obs(1, 0, 100, &["1.1.1.1:1"]), obs(2, 0, 100, &["2.2.2.2:2"])]).unwrap();
    store.record(run, &[obs(1, 1, 900, &["3.3.3.3:3"])]).unwrap();
    let pruned = store.prune(500).unwrap();
    assert_eq!(pruned, Pruned { observations: 2, peers: 2, swarms: 1 });
    let counts = table_counts(store.connection()).unwrap();
    assert_eq!((counts["swarms"], counts["peers"], counts["observations"], counts["observation_peers"]), (1, 1, 1, 1));
}

#[test]
fn the_wal_is_truncated_periodically_and_at_close() {
    let dir = TempDir::new("sqlite-wal");
    let path = dir.file("c.sqlite");
    let wal = dir.file("c.sqlite-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let mut store = SqliteStore::open(&path).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    let batch: Vec<_> = (0..50u8).map(|n| obs(n, 0, 100, &["1.1.1.1:1", "2.2.2.2:2"])).collect();
    for _ in 1..CHECKPOINT_EVERY {
        store.record(run, &batch).unwrap();
    }
    assert!(wal_len() > 0, "the batches went to the WAL");
    // SQLite's own close would checkpoint too; a long crawl needs it while running.
    store.record(run, &batch).unwrap();
    assert_eq!(wal_len(), 0, "WAL checkpointed and truncated every CHECKPOINT_EVERY batches");
    store.record(run, &batch).unwrap();
    Box::new(store).close().unwrap();
    assert_eq!(wal_len(), 0, "and at close");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TempDir::new("sqlite-version");
    let path = dir.file("c.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    let err = SqliteStore::open(&path).err().expect("refused").to_string();
    assert!(err.contains("99") && err.contains("c.sqlite"), "{err}");
}
