//! The crawl inside the DHT driver's task: the [`Crawler`] core gets the node's events and the
//! node itself after every batch (through [`NodeApp`]); its reports go to the writer thread
//! ([`Sink`]) with wall-clock times, progress goes to a watch channel, and with `--metadata`
//! members of newly seen swarms are asked for names and sizes (BEP 9) by a bounded number of
//! tasks. This is the only crawl code that reads the clock.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use crate::dht::driver::NodeApp;
use crate::dht::node::{Event, Node};
use crate::id::InfoHash;

use super::metadata::{fetch_info, FetchLimits};
use super::record::{Metadata, Observation};
use super::sink::{Record, SendError, Sink};
use super::{CrawlStats, Crawler, Report};

/// Members of one swarm asked for its metadata before giving up on it.
const METADATA_TRIES: usize = 3;
/// Swarms waiting for a metadata fetch at most; more are skipped (and counted).
const METADATA_QUEUE: usize = 10_000;
/// Swarms whose metadata was tried at most: past it, no new fetches (bounded memory).
const METADATA_TRIED: usize = 1_000_000;

/// `--metadata`: how many fetches at once and what each may cost.
#[derive(Debug, Clone, Copy)]
pub struct MetadataOptions {
    pub concurrency: usize,
    pub limits: FetchLimits,
}

/// What the progress line and the `--json` stats events show.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub crawl: CrawlStats,
    /// Rounds completed.
    pub rounds_done: u32,
    pub metadata_fetched: u64,
    pub metadata_failed: u64,
    pub metadata_skipped: u64,
    /// The crawl ended: its rounds are done, or the writer failed.
    pub finished: bool,
    /// The writer stopped on an error: the crawl must end with exit code 1.
    pub writer_failed: bool,
}

/// Unix milliseconds for the core's `Instant`s, fixed once at the start.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    start: Instant,
    start_unix_ms: i64,
}

impl WallClock {
    fn unix_ms(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.start).as_millis();
        self.start_unix_ms.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

struct MetadataFetcher {
    options: MetadataOptions,
    /// `METADATA_QUEUE` and `METADATA_TRIED`, as fields so that tests can reach them.
    queue_cap: usize,
    tried_cap: usize,
    permits: Arc<Semaphore>,
    tried: HashSet<InfoHash>,
    queue: VecDeque<(InfoHash, Vec<SocketAddr>)>,
    done: Arc<std::sync::atomic::AtomicU64>,
    failed: Arc<std::sync::atomic::AtomicU64>,
    skipped: u64,
    peer_id: [u8; 20],
}

pub struct CrawlApp {
    crawler: Crawler,
    sink: Sink,
    /// Records the writer had no room for yet, oldest first. Filled only when the queue is
    /// full, and then the crawler's own report cap stops new work: bounded.
    backlog: VecDeque<Record>,
    clock: WallClock,
    metadata: Option<MetadataFetcher>,
    progress: watch::Sender<Progress>,
    rounds_done: u32,
    last_publish: Option<Instant>,
    finished: bool,
    writer_failed: bool,
}

impl CrawlApp {
    pub fn new(
        crawler: Crawler,
        sink: Sink,
        start: Instant,
        start_unix_ms: i64,
        metadata: Option<MetadataOptions>,
    ) -> (CrawlApp, watch::Receiver<Progress>) {
        let (progress, rx) = watch::channel(Progress::default());
        let metadata = metadata.map(MetadataFetcher::new);
        let app = CrawlApp {
            crawler,
            sink,
            backlog: VecDeque::new(),
            clock: WallClock { start, start_unix_ms },
            metadata,
            progress,
            rounds_done: 0,
            last_publish: None,
            finished: false,
            writer_failed: false,
        };
        (app, rx)
    }

    /// Hands reports to the writer while it has room.
    fn forward_reports(&mut self) {
        loop {
            let record = match self.backlog.pop_front() {
                Some(r) => r,
                None => match self.crawler.poll_report() {
                    Some(report) => self.record_of(report),
                    None => return,
                },
            };
            match self.sink.try_send(record) {
                Ok(()) => {}
                Err(SendError::Full(back)) => {
                    self.backlog.push_front(back);
                    return;
                }
                Err(SendError::Stopped) => {
                    self.writer_failed = true;
                    return;
                }
            }
        }
    }

    fn record_of(&mut self, report: Report) -> Record {
        match report {
            Report::Swarm(s) => {
                if let Some(m) = &mut self.metadata {
                    m.consider(s.info_hash, &s.peers);
                }
                Record::Observation(Observation {
                    info_hash: s.info_hash,
                    round: s.round,
                    observed_at_ms: self.clock.unix_ms(s.at),
                    peers: s.peers,
                    seeds: s.seeds,
                    leechers: s.leechers,
                })
            }
            Report::RoundDone(round) => {
                self.rounds_done = self.rounds_done.max(round + 1);
                tracing::info!(round, "round done");
                Record::RoundDone(round)
            }
        }
    }

    fn publish(&mut self, now: Instant, force: bool) {
        if !force && self.last_publish.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_millis(500)) {
            return;
        }
        self.last_publish = Some(now);
        let (fetched, failed, skipped) = self.metadata.as_ref().map_or((0, 0, 0), |m| {
            use std::sync::atomic::Ordering::Relaxed;
            (m.done.load(Relaxed), m.failed.load(Relaxed), m.skipped)
        });
        self.progress.send_replace(Progress {
            crawl: self.crawler.stats(),
            rounds_done: self.rounds_done,
            metadata_fetched: fetched,
            metadata_failed: failed,
            metadata_skipped: skipped,
            finished: self.finished,
            writer_failed: self.writer_failed,
        });
    }
}

impl NodeApp for CrawlApp {
    fn on_event(&mut self, now: Instant, event: &Event) {
        self.crawler.handle_event(now, event);
    }

    fn step(&mut self, now: Instant, node: &mut Node) {
        if !self.writer_failed {
            self.crawler.step(now, node);
            self.forward_reports();
        }
        if let Some(m) = &mut self.metadata {
            m.start_fetches(&self.sink);
        }
        let finished = self.writer_failed || (self.crawler.is_finished() && self.backlog.is_empty());
        let changed = finished != self.finished;
        self.finished = finished;
        self.publish(now, changed);
    }

    fn next_deadline(&self) -> Instant {
        self.crawler.next_deadline()
    }
}

impl MetadataFetcher {
    fn new(options: MetadataOptions) -> MetadataFetcher {
        MetadataFetcher {
            permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
            options,
            queue_cap: METADATA_QUEUE,
            tried_cap: METADATA_TRIED,
            tried: HashSet::new(),
            queue: VecDeque::new(),
            done: Arc::default(),
            failed: Arc::default(),
            skipped: 0,
            peer_id: crate::id::new_peer_id(),
        }
    }

    fn consider(&mut self, info_hash: InfoHash, peers: &[SocketAddr]) {
        if peers.is_empty() || self.tried.contains(&info_hash) {
            return;
        }
        if self.tried.len() >= self.tried_cap || self.queue.len() >= self.queue_cap {
            self.skipped += 1;
            return;
        }
        self.tried.insert(info_hash);
        let candidates = peers.iter().take(METADATA_TRIES).copied().collect();
        self.queue.push_back((info_hash, candidates));
    }

    /// Starts queued fetches while permits are free; each ends by its deadline.
    fn start_fetches(&mut self, sink: &Sink) {
        while !self.queue.is_empty() {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else { return };
            let Some((info_hash, peers)) = self.queue.pop_front() else { return };
            let (limits, peer_id, sink) = (self.options.limits, self.peer_id, sink.clone());
            let (done, failed) = (self.done.clone(), self.failed.clone());
            tokio::spawn(async move {
                let _permit = permit;
                for peer in peers {
                    match fetch_info(peer, info_hash, peer_id, limits).await {
                        Ok(info) => {
                            tracing::debug!(%info_hash, %peer, name = %info.name, size = info.size, "metadata");
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let record = Record::Metadata(Metadata { info_hash, name: info.name, size: info.size });
                            sink.send_async(record).await;
                            return;
                        }
                        Err(e) => tracing::debug!(%info_hash, %peer, error = %e, "no metadata from this member"),
                    }
                }
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::{MetadataFetcher, MetadataOptions, METADATA_QUEUE, METADATA_TRIED, METADATA_TRIES};
    use crate::crawl::metadata::FetchLimits;
    use crate::id::InfoHash;

    fn fetcher() -> MetadataFetcher {
        MetadataFetcher::new(MetadataOptions { concurrency: 1, limits: FetchLimits::default() })
    }

    fn hash(i: u32) -> InfoHash {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&i.to_be_bytes());
        crate::id::Id(b)
    }

    fn peers(n: u16) -> Vec<SocketAddr> {
        (1..=n).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect()
    }

    /// Nothing takes from the queue here (no fetch is started), as when every permit is busy:
    /// swarms past the cap are skipped and counted, and only `METADATA_TRIES` members of a
    /// swarm are kept whatever the crawl saw.
    #[test]
    fn the_queue_stops_at_its_cap_and_counts_what_it_skips() {
        let mut f = fetcher();
        let swarm = peers(50);
        for i in 0..(METADATA_QUEUE as u32 + 25) {
            f.consider(hash(i), &swarm);
        }
        assert_eq!(f.queue.len(), METADATA_QUEUE);
        assert_eq!(f.skipped, 25);
        assert!(f.queue.iter().all(|(_, p)| p.len() == METADATA_TRIES));
        // A swarm seen again is neither queued twice nor counted as skipped.
        f.consider(hash(0), &swarm);
        assert_eq!((f.queue.len(), f.skipped), (METADATA_QUEUE, 25));
    }

    /// The set of swarms already tried is what stays for the whole crawl; once it is full no new
    /// swarm is taken, even with the queue empty.
    #[test]
    fn the_tried_set_stops_at_its_cap() {
        let mut f = fetcher();
        assert_eq!(f.tried_cap, METADATA_TRIED);
        f.tried_cap = 1000;
        for i in 0..1000 {
            f.consider(hash(i), &peers(1));
            f.queue.clear();
        }
        f.consider(hash(5000), &peers(1));
        assert_eq!((f.tried.len(), f.queue.len(), f.skipped), (1000, 0, 1));
    }
}
