use std::io::Write;

use super::*;
use crate::crawl::store::test_util::{hash, obs, run_info, TempDir};

fn lines(path: &Path) -> Vec<JsonlLine> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn round_trip_line_format() {
    let dir = TempDir::new("jsonl-rt");
    let path = dir.file("c.jsonl");
    let mut store = JsonlStore::open(&path).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    assert_eq!(run, RunId(1));
    store.record(run, &[obs(1, 0, 100, &["1.2.3.4:5", "[::1]:6881"]), obs(2, 0, 100, &[])]).unwrap();
    Box::new(store).close().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["info_hash"], "0101010101010101010101010101010101010101");
    assert_eq!(first["peers"], serde_json::json!(["1.2.3.4:5", "[::1]:6881"]));
    assert_eq!(first["seeds"], 1);
    assert_eq!(first["leechers"], serde_json::Value::Null);
    assert_eq!(first["name"], serde_json::Value::Null);
    assert_eq!((first["round"].as_u64(), first["run"].as_i64()), (Some(0), Some(1)));
    assert_eq!(first["observed_at"], 100);
    assert_eq!(lines(&path).len(), 2);
}

#[test]
fn resume_keeps_first_seen_names_and_numbers_runs_on() {
    let dir = TempDir::new("jsonl-resume");
    let path = dir.file("c.jsonl");
    let mut store = JsonlStore::open(&path).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    store.record_metadata(&Metadata { info_hash: hash(1), name: "debian.iso".into(), size: 7 }).unwrap();
    store.record(run, &[obs(1, 0, 100, &["1.1.1.1:1"])]).unwrap();
    drop(store);

    let mut store = JsonlStore::open(&path).unwrap();
    assert_eq!(store.known_info_hashes(10).unwrap(), vec![hash(1)]);
    let run2 = store.begin_run(&run_info()).unwrap();
    assert_eq!(run2, RunId(2));
    store.record(run2, &[obs(1, 0, 500, &["2.2.2.2:2"]), obs(3, 0, 500, &[])]).unwrap();
    let all = lines(&path);
    assert_eq!(all.len(), 3, "resume adds, never rewrites");
    let again = &all[1];
    assert_eq!((again.first_seen, again.last_seen, again.run), (100, 500, 2));
    assert_eq!((again.name.as_deref(), again.size), (Some("debian.iso"), Some(7)));
    assert_eq!(store.known_info_hashes(1).unwrap().len(), 1);
}

#[test]
fn torn_last_line_is_cut_and_writing_goes_on() {
    let dir = TempDir::new("jsonl-torn");
    let path = dir.file("c.jsonl");
    let mut store = JsonlStore::open(&path).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    store.record(run, &[obs(1, 0, 100, &["1.1.1.1:1"])]).unwrap();
    drop(store);
    let good = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of the next write.
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"info_hash\":\"02").unwrap();

    let mut store = JsonlStore::open(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
    let run = store.begin_run(&run_info()).unwrap();
    store.record(run, &[obs(2, 0, 200, &[])]).unwrap();
    let all = lines(&path);
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].run, 2);
}

#[test]
fn a_bad_line_in_the_middle_is_an_error_naming_it() {
    let dir = TempDir::new("jsonl-corrupt");
    let path = dir.file("c.jsonl");
    std::fs::write(&path, "not json\n{}\n").unwrap();
    let err = JsonlStore::open(&path).err().expect("corrupt file refused");
    let msg = err.to_string();
    assert!(msg.contains("c.jsonl") && msg.contains("line 1"), "{msg}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not json\n{}\n", "nothing cut");
}

#[test]
fn a_failed_batch_leaves_no_partial_lines() {
    let dir = TempDir::new("jsonl-atomic");
    let path = dir.file("c.jsonl");
    let mut store = JsonlStore::open(&path).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    store.record(run, &[obs(1, 0, 100, &[])]).unwrap();
    store.fail_after = Some(300);
    let batch: Vec<_> = (2..10).map(|n| obs(n, 0, 200, &["9.9.9.9:9"])).collect();
    assert!(store.record(run, &batch).is_err());
    assert_eq!(lines(&path).len(), 1, "the failed batch's prefix was cut");
    assert_eq!(store.known_info_hashes(100).unwrap(), vec![hash(1)], "memory not updated either");
    store.record(run, &batch[..1]).unwrap();
    assert_eq!(lines(&path).len(), 2);
}

#[test]
fn swarm_memory_is_capped() {
    let dir = TempDir::new("jsonl-cap");
    let path = dir.file("c.jsonl");
    let mut store = JsonlStore::open_with_cap(&path, 3).unwrap();
    let run = store.begin_run(&run_info()).unwrap();
    let batch: Vec<_> = (1..=10).map(|n| obs(n, 0, i64::from(n), &[])).collect();
    store.record(run, &batch).unwrap();
    assert_eq!(store.swarms.len(), 3);
    assert_eq!(lines(&path).len(), 10, "every line written all the same");
    drop(store);
    let store = JsonlStore::open_with_cap(&path, 2).unwrap();
    assert_eq!(store.swarms.len(), 2, "the cap holds on resume too");
}

#[test]
fn prune_is_unsupported_with_the_path() {
    let dir = TempDir::new("jsonl-prune");
    let mut store = JsonlStore::open(dir.file("c.jsonl")).unwrap();
    let err = store.prune(0).unwrap_err().to_string();
    assert!(err.contains("c.jsonl") && err.contains("not supported"), "{err}");
}
