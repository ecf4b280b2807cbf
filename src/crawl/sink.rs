//! The crawl's writer: one thread owns every store of the run (`--out` may be given several
//! times) and commits what the crawler reports in batches, so that the DHT task never waits
//! on a disk or a database.
//!
//! A batch is committed to every store before any of it counts as stored: [`SinkHandle::stored`]
//! is what a progress line or a `--json` event may call "stored", and it only moves after each
//! store said its transaction is durable. On a clean stop (the last sender dropped: the end of
//! `--duration`, SIGINT, SIGTERM) everything received is committed, the runs are closed and
//! the stores checkpointed. A store error ends the thread with that error; the crawl notices
//! that its sends fail and stops.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::record::{Metadata, Observation, RunId, RunInfo};
use super::store::{CrawlStore, StoreError};

/// What the writer is handed.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    Observation(Observation),
    Metadata(Metadata),
    /// A round ended: commit now, so the round is whole in the store as soon as possible.
    RoundDone(u32),
}

/// When a batch is committed.
#[derive(Debug, Clone, Copy)]
pub struct SinkConfig {
    /// Records waiting in the channel at most; a full channel pushes back on the crawler.
    pub queue: usize,
    /// Observations per transaction at most.
    pub batch: usize,
    /// A batch waits at most this long.
    pub flush_every: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig { queue: 4096, batch: 1000, flush_every: Duration::from_secs(1) }
    }
}

/// What a finished writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkSummary {
    pub observations: u64,
    pub metadata: u64,
    pub batches: u64,
}

/// The crawl's end of the writer: owns the thread, tells what is stored, and finishes it.
pub struct SinkHandle {
    tx: Option<SyncSender<Record>>,
    stored: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<SinkSummary, StoreError>>>,
}

/// A sending end of the writer's queue, for the crawl task and the metadata fetches. The
/// writer finishes once the handle and every `Sink` are gone.
#[derive(Clone)]
pub struct Sink {
    tx: SyncSender<Record>,
}

/// Why a record could not be handed over.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The queue is full: try again later (the record is given back).
    Full(Record),
    /// The writer stopped (a store failed): the crawl must end.
    Stopped,
}

impl Sink {
    /// Hands a record over without waiting.
    pub fn try_send(&self, record: Record) -> Result<(), SendError> {
        match self.tx.try_send(record) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(r)) => Err(SendError::Full(r)),
            Err(TrySendError::Disconnected(_)) => Err(SendError::Stopped),
        }
    }

    /// Hands a record over from an async task, waiting (without blocking the thread) while
    /// the queue is full; a stopped writer drops it.
    pub async fn send_async(&self, mut record: Record) {
        loop {
            match self.try_send(record) {
                Ok(()) | Err(SendError::Stopped) => return,
                Err(SendError::Full(back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

impl SinkHandle {
    /// Begins a run in every store and starts the writer thread.
    pub fn start(
        mut stores: Vec<Box<dyn CrawlStore>>,
        run: &RunInfo,
        config: SinkConfig,
    ) -> Result<SinkHandle, StoreError> {
        let mut runs = Vec::with_capacity(stores.len());
        for store in &mut stores {
            runs.push(store.begin_run(run)?);
        }
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        let stored = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let writer = Writer { stores, runs, config, stored: stored.clone(), summary: SinkSummary::default() };
        let flag = failed.clone();
        let thread = std::thread::Builder::new()
            .name("crawl-writer".into())
            .spawn(move || {
                let result = writer.run(rx);
                if result.is_err() {
                    flag.store(true, Ordering::SeqCst);
                }
                result
            })
            .map_err(|e| StoreError::Io { target: "crawl writer thread".into(), source: e })?;
        Ok(SinkHandle { tx: Some(tx), stored, failed, thread: Some(thread) })
    }

    /// A sending end for the crawl.
    pub fn sender(&self) -> Option<Sink> {
        self.tx.clone().map(|tx| Sink { tx })
    }

    /// Observations committed to every store so far.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::SeqCst)
    }

    /// The writer stopped on a store error.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// A counter that follows [`SinkHandle::stored`], for a progress task.
    pub fn stored_counter(&self) -> Arc<AtomicU64> {
        self.stored.clone()
    }

    /// Commits what is queued, ends the runs, closes the stores and waits for the thread.
    /// Every [`Sink`] must be dropped first, or this waits for them.
    pub fn finish(mut self) -> Result<SinkSummary, StoreError> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(StoreError::Io {
                target: "crawl writer thread".into(),
                source: std::io::Error::other("the writer thread panicked"),
            }),
            None => Ok(SinkSummary::default()),
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    stores: Vec<Box<dyn CrawlStore>>,
    runs: Vec<RunId>,
    config: SinkConfig,
    stored: Arc<AtomicU64>,
    summary: SinkSummary,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Record>) -> Result<SinkSummary, StoreError> {
        let mut batch: Vec<Observation> = Vec::with_capacity(self.config.batch);
        loop {
            match rx.recv_timeout(self.config.flush_every) {
                Ok(Record::Observation(o)) => {
                    batch.push(o);
                    if batch.len() >= self.config.batch {
                        self.commit(&mut batch)?;
                    }
                }
                Ok(Record::Metadata(m)) => {
                    // The swarm's row may still be in the batch: commit it first.
                    self.commit(&mut batch)?;
                    for store in &mut self.stores {
                        store.record_metadata(&m)?;
                    }
                    self.summary.metadata += 1;
                }
                Ok(Record::RoundDone(_)) => self.commit(&mut batch)?,
                Err(RecvTimeoutError::Timeout) => self.commit(&mut batch)?,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.commit(&mut batch)?;
        let ended = unix_ms();
        for (store, run) in self.stores.iter_mut().zip(&self.runs) {
            store.end_run(*run, ended)?;
        }
        for store in self.stores {
            store.close()?;
        }
        Ok(self.summary)
    }

    fn commit(&mut self, batch: &mut Vec<Observation>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        for (store, run) in self.stores.iter_mut().zip(&self.runs) {
            store.record(*run, batch)?;
        }
        self.summary.observations += batch.len() as u64;
        self.summary.batches += 1;
        self.stored.fetch_add(batch.len() as u64, Ordering::SeqCst);
        batch.clear();
        Ok(())
    }
}

/// Wall-clock time in unix milliseconds: the writer stamps when a run ended.
#[allow(clippy::disallowed_methods)]
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
