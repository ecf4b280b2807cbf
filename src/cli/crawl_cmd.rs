//! `kadswarm crawl`: swarm membership from the DHT (BEP 51 sampling, BEP 5 get_peers, BEP 33
//! scrapes, BEP 9 names with `--metadata`) written to JSONL, SQLite or PostgreSQL.
//!
//! One task owns the socket(s), the DHT node and the crawler core (the DHT driver with the
//! crawl plugged in); one thread owns the stores; a progress task shows what the crawl does.
//! The crawl ends after `--duration`, when its `--rounds` are done, or on SIGINT/SIGTERM, and
//! in every case what was reported is committed before the process exits.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cli::common::{init_logging, load_state, random_seed, DhtSockets};
use crate::cli::node_cmd::shutdown_signal;
use crate::cli::{CliError, CrawlArgs};
use crate::crawl::app::{CrawlApp, MetadataOptions, Progress};
use crate::crawl::metadata::FetchLimits;
use crate::crawl::record::RunInfo;
use crate::crawl::sink::{unix_ms, SinkConfig, SinkHandle, SinkSummary};
use crate::crawl::store::{self, CrawlStore};
use crate::crawl::{CrawlConfig, Crawler};
use crate::dht::driver::{Driver, DriverOptions};
use crate::dht::node::Node;

use crate::clock::now;

pub async fn run(args: CrawlArgs, verbose: u8, quiet: bool) -> Result<(), CliError> {
    init_logging(verbose, quiet, "info");
    let config = crawl_config(&args)?;
    let targets = args.out.clone();
    for t in &targets {
        store::Backend::of(t).map_err(CliError::bad_input)?;
    }
    let (id, known_nodes) = load_state(&args.net)?;
    let sockets = DhtSockets::bind(&args.net)?;
    let routers = sockets.routers(&args.net).await?;

    // Opening a store may block (PostgreSQL connects; SQLite may recover a WAL): off the
    // async thread.
    let opened = tokio::task::spawn_blocking(move || open_stores(&targets))
        .await
        .map_err(|e| CliError::failed(anyhow!("opening the stores failed: {e}")))??;
    let (stores, resume) = opened;

    let mut node_config = sockets.config();
    node_config.report_incoming_info_hashes = true;
    let node = Node::new(node_config, id, random_seed(), now());
    let run_info = RunInfo { started_at_ms: unix_ms(), crawler: node.id().to_string(), args: command_line() };
    let sink = SinkHandle::start(stores, &run_info, SinkConfig::default()).map_err(CliError::failed)?;
    let sender = sink.sender().ok_or_else(|| CliError::failed(anyhow!("the store writer did not start")))?;

    let started = now();
    let mut crawler = Crawler::new(config, random_seed(), started);
    crawler.add_info_hashes(&resume);
    crawler.add_contacts(&known_nodes);
    let metadata = args.metadata.then_some(MetadataOptions {
        concurrency: args.metadata_concurrency as usize,
        limits: FetchLimits { max_size: args.metadata_max_bytes, ..FetchLimits::default() },
    });
    let (app, progress) = CrawlApp::new(crawler, sender, started, run_info.started_at_ms, metadata);

    let mut node = node;
    node.set_routers(now(), routers.clone());
    if !known_nodes.is_empty() {
        node.add_known_nodes(now(), &known_nodes);
    }
    tracing::info!(
        addr = %sockets.describe(),
        id = %node.id(),
        routers = routers.len(),
        resumed = resume.len(),
        out = ?args.out,
        "crawling from {}",
        sockets.describe()
    );
    let options = DriverOptions {
        state_path: args.net.state.clone(),
        second_socket: sockets.second.clone(),
        app: Some(Box::new(app)),
        ..Default::default()
    };
    let driver = Driver::new(node, sockets.first.clone(), options);
    let (_commands, command_rx) = mpsc::unbounded_channel();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    // The crawl sees every event inside the driver; nothing else needs them.
    tokio::spawn(async move { while events.recv().await.is_some() {} });

    let stored = sink.stored_counter();
    let reporter = Reporter::new(args.json, quiet);
    let show = tokio::spawn(show_progress(progress.clone(), stored.clone(), reporter.clone(), started));
    let (why_tx, why_rx) = oneshot::channel();
    let ending = until_done(progress.clone(), Duration::from_secs(args.duration));
    let shutdown = async move {
        let why = tokio::select! {
            why = ending => why,
            () = shutdown_signal() => End::Signal,
        };
        let _ = why_tx.send(why);
    };
    let _node = driver.run(command_rx, event_tx, shutdown).await;
    let why = why_rx.await.unwrap_or(End::Signal);
    // The driver held the crawl and with it the last sender: now the writer finishes.
    let finished = tokio::task::spawn_blocking(move || sink.finish())
        .await
        .map_err(|e| CliError::failed(anyhow!("the store writer failed: {e}")))?;
    show.abort();
    let last = progress.borrow().clone();
    match finished {
        Ok(summary) => {
            reporter.done(&last, &summary, why, started.elapsed());
            Ok(())
        }
        Err(e) => Err(CliError::failed(anyhow!("storing the crawl failed: {e}"))),
    }
}

/// Why the crawl ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Duration,
    RoundsDone,
    Signal,
    WriterFailed,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Duration => "duration",
            End::RoundsDone => "rounds done",
            End::Signal => "signal",
            End::WriterFailed => "store failed",
        }
    }
}

/// Completes when the crawl's rounds are done, its writer failed, or `duration` is over.
async fn until_done(mut progress: watch::Receiver<Progress>, duration: Duration) -> End {
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    loop {
        {
            let p = progress.borrow_and_update();
            if p.writer_failed {
                return End::WriterFailed;
            }
            if p.finished {
                return End::RoundsDone;
            }
        }
        tokio::select! {
            () = &mut deadline => return End::Duration,
            changed = progress.changed() => {
                if changed.is_err() {
                    // The crawl is gone (the driver stopped): nothing more will change.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

fn crawl_config(args: &CrawlArgs) -> Result<CrawlConfig, CliError> {
    let mut config = CrawlConfig {
        rate: args.rate,
        burst: args.rate.saturating_mul(2).max(1),
        max_in_flight: args.max_in_flight as usize,
        duration: Some(Duration::from_secs(args.duration)),
        scrape: !args.no_scrape,
        ..CrawlConfig::default()
    };
    match (args.rounds, args.interval) {
        (Some(_), Some(_)) => {
            return Err(CliError::bad_input(anyhow!("--rounds and --interval exclude each other")));
        }
        (Some(n), None) => {
            config.rounds = Some(n);
            config.round_interval = Duration::from_secs(DEFAULT_INTERVAL_SECS);
        }
        (None, Some(secs)) => {
            config.rounds = None;
            config.round_interval = Duration::from_secs(secs);
        }
        (None, None) => {
            config.rounds = None;
            config.round_interval = Duration::from_secs(DEFAULT_INTERVAL_SECS);
        }
    }
    Ok(config)
}

/// Rounds start this often when neither --rounds nor --interval is given.
pub const DEFAULT_INTERVAL_SECS: u64 = 600;
/// Swarms re-checked from an existing store at most.
const RESUME_LIMIT: usize = 1_000_000;

/// The opened stores, and the swarms of the first one to check again.
type Opened = (Vec<Box<dyn CrawlStore>>, Vec<crate::id::InfoHash>);

/// Opens every `--out` target; the first one's swarms are re-checked (resume).
fn open_stores(targets: &[String]) -> Result<Opened, CliError> {
    let mut stores = Vec::with_capacity(targets.len());
    for t in targets {
        stores.push(store::open(t).map_err(CliError::failed)?);
    }
    let resume = match stores.first_mut() {
        Some(first) => first.known_info_hashes(RESUME_LIMIT).map_err(CliError::failed)?,
        None => Vec::new(),
    };
    Ok((stores, resume))
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Progress as the user sees it: a status line on a terminal, JSON lines with --json.
#[derive(Clone)]
struct Reporter {
    bar: Option<ProgressBar>,
    json: bool,
}

impl Reporter {
    fn new(json: bool, quiet: bool) -> Reporter {
        let bar = (!json && !quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        });
        Reporter { bar, json }
    }

    fn tick(&self, p: &Progress, stored: u64, rate: f64) {
        let c = &p.crawl;
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "round {} · nodes {} · info-hashes {} · peers {} · {:.0} q/s · stored {}{}",
                c.round,
                c.nodes_visited,
                c.info_hashes_known,
                c.peers_reported,
                rate,
                stored,
                if p.metadata_fetched > 0 { format!(" · names {}", p.metadata_fetched) } else { String::new() },
            ));
            bar.tick();
        }
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "event": "stats",
                    "round": c.round,
                    "rounds_done": p.rounds_done,
                    "nodes_visited": c.nodes_visited,
                    "nodes_known": c.nodes_known,
                    "info_hashes": c.info_hashes_known,
                    "info_hashes_from_queries": c.info_hashes_from_queries,
                    "swarms_reported": c.swarms_reported,
                    "peers": c.peers_reported,
                    "queries_sent": c.queries_sent,
                    "queries_per_sec": (rate * 10.0).round() / 10.0,
                    "stored": stored,
                    "metadata_fetched": p.metadata_fetched,
                    "metadata_failed": p.metadata_failed,
                })
            );
        }
    }

    fn done(&self, p: &Progress, summary: &SinkSummary, why: End, elapsed: Duration) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let c = &p.crawl;
        if self.json {
            println!(
                "{}",
                serde_json::json!({
                    "event": "done",
                    "reason": why.as_str(),
                    "seconds": elapsed.as_secs_f64(),
                    "rounds_done": p.rounds_done,
                    "nodes_visited": c.nodes_visited,
                    "info_hashes": c.info_hashes_known,
                    "swarms_stored": summary.observations,
                    "peers": c.peers_reported,
                    "queries_sent": c.queries_sent,
                    "metadata_stored": summary.metadata,
                })
            );
        }
        tracing::info!(
            reason = why.as_str(),
            seconds = elapsed.as_secs(),
            rounds_done = p.rounds_done,
            nodes_visited = c.nodes_visited,
            info_hashes = c.info_hashes_known,
            swarms_stored = summary.observations,
            metadata_stored = summary.metadata,
            queries_sent = c.queries_sent,
            "crawl ended"
        );
    }
}

/// Refreshes the progress line (and prints a JSON stats line) every second.
async fn show_progress(
    progress: watch::Receiver<Progress>,
    stored: std::sync::Arc<std::sync::atomic::AtomicU64>,
    reporter: Reporter,
    started: Instant,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(Instant, u64)> = None;
    loop {
        every.tick().await;
        let p = progress.borrow().clone();
        let t = now();
        let sent = p.crawl.queries_sent;
        let rate = match last {
            Some((at, before)) => sent.saturating_sub(before) as f64 / t.duration_since(at).as_secs_f64().max(1e-3),
            None => sent as f64 / t.duration_since(started).as_secs_f64().max(1e-3),
        };
        last = Some((t, sent));
        reporter.tick(&p, stored.load(std::sync::atomic::Ordering::SeqCst), rate);
    }
}
