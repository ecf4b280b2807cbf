//! The writer against scripted stores: batching, what counts as stored, shutdown and failure.

// The writer is a real thread: these tests wait on it in real time, bounded.
#![allow(clippy::disallowed_methods)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::*;
use crate::crawl::store::Pruned;
use crate::id::{Id, InfoHash};

/// What a scripted store saw; shared with the test.
#[derive(Default, Debug)]
struct Seen {
    batches: Vec<usize>,
    metadata: usize,
    ended: bool,
    closed: bool,
}

struct Scripted {
    seen: Arc<Mutex<Seen>>,
    /// Fails the record call with this index (0-based).
    fail_at: Option<usize>,
}

impl CrawlStore for Scripted {
    fn begin_run(&mut self, _run: &RunInfo) -> Result<RunId, StoreError> {
        Ok(RunId(7))
    }
    fn record(&mut self, run: RunId, batch: &[Observation]) -> Result<(), StoreError> {
        assert_eq!(run, RunId(7));
        let mut seen = self.seen.lock().unwrap();
        if self.fail_at == Some(seen.batches.len()) {
            return Err(StoreError::Invalid { target: "scripted".into(), why: "disk full".into() });
        }
        seen.batches.push(batch.len());
        Ok(())
    }
    fn record_metadata(&mut self, _meta: &Metadata) -> Result<(), StoreError> {
        self.seen.lock().unwrap().metadata += 1;
        Ok(())
    }
    fn end_run(&mut self, _run: RunId, _ended_at_ms: i64) -> Result<(), StoreError> {
        self.seen.lock().unwrap().ended = true;
        Ok(())
    }
    fn known_info_hashes(&mut self, _limit: usize) -> Result<Vec<InfoHash>, StoreError> {
        Ok(Vec::new())
    }
    fn prune(&mut self, _before_ms: i64) -> Result<Pruned, StoreError> {
        Ok(Pruned::default())
    }
    fn close(self: Box<Self>) -> Result<(), StoreError> {
        self.seen.lock().unwrap().closed = true;
        Ok(())
    }
}

fn obs(i: u8) -> Record {
    Record::Observation(Observation {
        info_hash: Id([i; 20]),
        round: 0,
        observed_at_ms: 1,
        peers: vec!["10.0.0.1:1".parse().unwrap()],
        seeds: None,
        leechers: None,
    })
}

fn run_info() -> RunInfo {
    RunInfo { started_at_ms: 1, crawler: "test".into(), args: String::new() }
}

fn send_all(sink: &Sink, records: impl IntoIterator<Item = Record>) {
    for mut r in records {
        let started = Instant::now();
        loop {
            match sink.try_send(r) {
                Ok(()) => break,
                Err(SendError::Full(back)) => {
                    assert!(started.elapsed() < Duration::from_secs(10), "the writer never drained");
                    r = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(SendError::Stopped) => panic!("writer stopped"),
            }
        }
    }
}

#[test]
fn batches_are_committed_to_every_store_and_only_then_count_as_stored() {
    let (a, b) = (Arc::new(Mutex::new(Seen::default())), Arc::new(Mutex::new(Seen::default())));
    let stores: Vec<Box<dyn CrawlStore>> = vec![
        Box::new(Scripted { seen: a.clone(), fail_at: None }),
        Box::new(Scripted { seen: b.clone(), fail_at: None }),
    ];
    let config = SinkConfig { queue: 16, batch: 10, flush_every: Duration::from_secs(60) };
    let sink = SinkHandle::start(stores, &run_info(), config).expect("started");
    let tx = sink.sender().expect("running");
    send_all(&tx, (0..25).map(obs));
    // Two full batches are committed on their own; the last 5 wait for a flush.
    let started = Instant::now();
    while sink.stored() < 20 {
        assert!(started.elapsed() < Duration::from_secs(10), "full batches were not committed");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(sink.stored(), 20, "a partial batch is not stored before its flush");
    // A round's end commits at once, and metadata goes to every store.
    send_all(
        &tx,
        [Record::RoundDone(0), Record::Metadata(Metadata { info_hash: Id([1; 20]), name: "x".into(), size: 1 })],
    );
    drop(tx);
    let summary = sink.finish().expect("clean finish");
    assert_eq!(summary, SinkSummary { observations: 25, metadata: 1, batches: 3 });
    for seen in [a, b] {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.batches, vec![10, 10, 5]);
        assert_eq!(seen.metadata, 1);
        assert!(seen.ended && seen.closed, "{seen:?}");
    }
}

#[test]
fn a_quiet_crawl_is_flushed_on_a_timer() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stores: Vec<Box<dyn CrawlStore>> = vec![Box::new(Scripted { seen: seen.clone(), fail_at: None })];
    let config = SinkConfig { queue: 16, batch: 1000, flush_every: Duration::from_millis(20) };
    let sink = SinkHandle::start(stores, &run_info(), config).expect("started");
    send_all(&sink.sender().expect("running"), (0..3).map(obs));
    let started = Instant::now();
    while sink.stored() < 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "the timer never flushed");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(sink);
    assert!(seen.lock().unwrap().closed, "dropping the handle closes the stores too");
}

#[test]
fn a_store_error_stops_the_writer_and_is_reported() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stores: Vec<Box<dyn CrawlStore>> = vec![Box::new(Scripted { seen: seen.clone(), fail_at: Some(1) })];
    let config = SinkConfig { queue: 4, batch: 2, flush_every: Duration::from_secs(60) };
    let sink = SinkHandle::start(stores, &run_info(), config).expect("started");
    let tx = sink.sender().expect("running");
    let started = Instant::now();
    let mut i = 0u8;
    // Keep sending until the writer's failure shows: bounded by count and time.
    while !sink.failed() {
        assert!(started.elapsed() < Duration::from_secs(10) && i < 200, "the failure never showed");
        let _ = tx.try_send(obs(i));
        i = i.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(sink.stored(), 2, "only the batch before the failure counts as stored");
    let started = Instant::now();
    loop {
        match tx.try_send(obs(0)) {
            Err(SendError::Stopped) => break,
            _ => assert!(started.elapsed() < Duration::from_secs(10), "sends kept succeeding"),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(tx);
    let err = sink.finish().expect_err("the store error comes back");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(!seen.lock().unwrap().closed, "a failed run is not closed as if it were whole");
}
