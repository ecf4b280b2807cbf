//! `kadswarm get SOURCE --output DIR`: download a magnet link or a .torrent, verified piece by
//! piece, with a progress bar on a terminal or JSON progress events with `--json`. A re-run
//! on the same DIR resumes: pieces already there and verified are not fetched again.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, watch};

use crate::cli::common::init_logging;
use crate::cli::node_cmd::shutdown_signal;
use crate::cli::peer_table::PeerDisplay;
use crate::cli::swarm_common::{bind_peer_ports, now, rate_limits, start_lsd, start_udp};
use crate::cli::{CliError, GetArgs};
use crate::magnet::Magnet;
use crate::session::peer_list::SourceCounts;
use crate::session::runner::{self, RunOptions};
use crate::session::seed_policy::{SeedPolicy, SeedStopper};
use crate::session::torrent::metadata_path;
use crate::session::{Torrent, TorrentConfig, TorrentEvent};
use crate::torrent::Metainfo;

/// What the user asked to download.
enum Source {
    Magnet(Magnet),
    Torrent(Box<Metainfo>),
}

/// Torrent files larger than this are refused before reading (real ones are kilobytes to a
/// few megabytes).
const MAX_TORRENT_FILE: u64 = 64 << 20;

fn parse_source(text: &str) -> Result<Source, CliError> {
    if text.starts_with("magnet:") {
        return Magnet::parse(text).map(Source::Magnet).map_err(CliError::bad_input);
    }
    let path = Path::new(text);
    if path.exists() {
        let len = std::fs::metadata(path).map_err(|e| CliError::bad_input(anyhow::anyhow!("{text}: {e}")))?.len();
        if len > MAX_TORRENT_FILE {
            return Err(CliError::bad_input(anyhow::anyhow!("{text}: {len} bytes is too big for a .torrent file")));
        }
        let bytes = std::fs::read(path).map_err(|e| CliError::bad_input(anyhow::anyhow!("{text}: {e}")))?;
        let meta = Metainfo::from_bytes(&bytes).map_err(|e| CliError::bad_input(anyhow::anyhow!("{text}: {e}")))?;
        return Ok(Source::Torrent(Box::new(meta)));
    }
    // A bare info-hash is a magnet without extras.
    crate::magnet::parse_target(text).map(Source::Magnet).map_err(|_| {
        CliError::bad_input(anyhow::anyhow!(
            "`{text}` is neither a magnet URI, an info-hash nor an existing .torrent file"
        ))
    })
}

/// Progress as the user sees it: a bar on a terminal, JSON lines with --json, else log lines;
/// with --peers, the peers too (`peer_table`).
pub struct Reporter {
    bar: Option<ProgressBar>,
    peers: Option<PeerDisplay>,
    json: bool,
    last_bytes: u64,
    last_uploaded: u64,
    last_at: std::time::Instant,
}

impl Reporter {
    pub fn new(json: bool, quiet: bool, peers: bool) -> Reporter {
        let bar = (!json && !quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message("finding peers");
            bar
        });
        // The peer table goes under the bar: both are drawn by one MultiProgress.
        let (bar, peers) = match (bar, peers) {
            (Some(bar), true) => {
                let multi = MultiProgress::new();
                let bar = multi.add(bar);
                (Some(bar), Some(PeerDisplay::new(json, Some(&multi), now())))
            }
            (bar, peers) => (bar, peers.then(|| PeerDisplay::new(json, None, now()))),
        };
        Reporter { bar, peers, json, last_bytes: 0, last_uploaded: 0, last_at: now() }
    }

    pub fn json_line(&self, value: serde_json::Value) {
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
    }

    pub fn event(&mut self, ev: &TorrentEvent) {
        match ev {
            TorrentEvent::MetadataReady { name, total_length, pieces } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*total_length);
                    bar.set_message(name.clone());
                }
                tracing::info!(%name, total_length, pieces, "metadata ready");
                self.json_line(serde_json::json!({"event": "metadata", "name": name, "total_length": total_length, "pieces": pieces}));
            }
            TorrentEvent::Checked { have, pieces } => {
                tracing::info!(have, pieces, "checked existing data");
                self.json_line(serde_json::json!({"event": "checked", "have_pieces": have, "pieces": pieces}));
            }
            TorrentEvent::PieceFailed(i) => {
                tracing::warn!(piece = i, "piece failed its hash check; fetching it again");
                self.json_line(serde_json::json!({"event": "hash_failed", "piece": i}));
            }
            TorrentEvent::PeerBanned(ip) => {
                self.json_line(serde_json::json!({"event": "banned", "ip": ip.to_string()}));
            }
            TorrentEvent::Failed(fault) => {
                self.json_line(serde_json::json!({"event": "error", "message": fault.to_string()}));
            }
            TorrentEvent::PieceVerified(_) | TorrentEvent::Complete | TorrentEvent::MetadataUnusable(_) => {}
        }
    }

    pub fn tick(&mut self, torrent: &Torrent) {
        if let Some(display) = self.peers.as_mut() {
            display.tick(now(), &torrent.peer_views());
        }
        let peers = torrent.peer_count();
        let sources = torrent.peer_sources();
        let Some((done, total)) = torrent.progress() else {
            if let Some(bar) = &self.bar {
                bar.set_message(format!("fetching metadata from {}", peers_text(peers, &sources)));
                bar.tick();
            }
            self.json_line(serde_json::json!({
                "event": "progress", "metadata": false, "peers": peers,
                "sources": sources_json(&sources), "known_peers": sources.known,
            }));
            return;
        };
        let t = now();
        let secs = t.saturating_duration_since(self.last_at).as_secs_f64().max(1e-3);
        let uploaded = torrent.counters().uploaded;
        let rate = done.saturating_sub(self.last_bytes) as f64 / secs;
        let up_rate = uploaded.saturating_sub(self.last_uploaded) as f64 / secs;
        self.last_bytes = done;
        self.last_uploaded = uploaded;
        self.last_at = t;
        let limits = &torrent.config.rate_limits;
        let (down_limit, up_limit) = (limits.download.rate(), limits.upload.rate());
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            let rates = rates_text(rate as u64, down_limit, up_rate as u64, up_limit);
            bar.set_message(format!("{rates} {}", peers_text(peers, &sources)));
        } else if !self.json {
            tracing::info!(
                done,
                total,
                peers,
                rate = rate as u64,
                upload_rate = up_rate as u64,
                download_limit = down_limit,
                upload_limit = up_limit,
                "progress"
            );
        }
        self.json_line(serde_json::json!({
            "event": "progress", "downloaded": done, "total": total, "rate": rate as u64, "peers": peers,
            "uploaded": uploaded, "upload_rate": up_rate as u64, "download_limit": down_limit,
            "upload_limit": up_limit, "sources": sources_json(&sources), "known_peers": sources.known,
        }));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message("done");
        }
    }
}

/// `{"peer": n, "magnet": n, "lsd": n, "pex": n, "dht": n, "incoming": n}`: addresses in the
/// peer list by the source that gave them (one given by two sources counts for both).
pub fn sources_json(sources: &SourceCounts) -> serde_json::Value {
    sources.iter().map(|(s, n)| (s.name().to_string(), serde_json::Value::from(n))).collect()
}

/// "↓ 1.0 MiB/s (limit 1.0 MiB/s) ↑ 12.0 KiB/s": the rates, each with its limit if there is one.
fn rates_text(down: u64, down_limit: Option<u64>, up: u64, up_limit: Option<u64>) -> String {
    let one = |arrow: &str, rate: u64, limit: Option<u64>| match limit {
        Some(l) => format!("{arrow} {}/s (limit {}/s)", HumanBytes(rate), HumanBytes(l)),
        None => format!("{arrow} {}/s", HumanBytes(rate)),
    };
    format!("{} {}", one("↓", down, down_limit), one("↑", up, up_limit))
}

/// "12 peers (dht 30, pex 4)": connected peers, and the sources that gave any addresses.
fn peers_text(peers: usize, sources: &SourceCounts) -> String {
    let known: Vec<String> = sources.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{} {n}", s.name())).collect();
    if known.is_empty() {
        format!("{peers} peers")
    } else {
        format!("{peers} peers ({})", known.join(", "))
    }
}

pub async fn run(args: GetArgs, verbose: u8, quiet: bool) -> Result<(), CliError> {
    init_logging(verbose, quiet, "warn");
    let source = parse_source(&args.source)?;
    let (info_hash, hint_peers, meta) = match source {
        Source::Magnet(m) => (m.info_hash, m.peers, None),
        Source::Torrent(meta) => (meta.info_hash, Vec::new(), Some(*meta)),
    };
    std::fs::create_dir_all(&args.output)
        .map_err(|e| CliError::failed(anyhow::anyhow!("cannot create {}: {e}", args.output.display())))?;
    // A magnet fetched before: its metadata was kept next to the data.
    let meta = match meta {
        Some(m) => Some(m),
        None => std::fs::read(metadata_path(&args.output, &info_hash))
            .ok()
            .and_then(|b| Metainfo::from_bytes(&b).ok())
            .filter(|m| m.info_hash == info_hash),
    };

    let (udp, tcp) = bind_peer_ports(crate::cli::common::single_bind(&args.net, "get")?).await?;
    let local = tcp.local_addr().map_err(CliError::failed)?;
    tracing::info!(%local, %info_hash, "listening on {local}");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (dht, transports) =
        start_udp(&args.net, udp, args.discovery.no_dht, args.discovery.transport.into(), &stop_rx).await?;
    let dht_cmds = dht.as_ref().map(|d| d.commands.clone());
    let mut config =
        TorrentConfig::new(info_hash, args.output.clone(), local.port(), dht.is_some(), args.max_peers as usize, true);
    config.pex = !args.discovery.no_pex;
    config.listen_ip = Some(local.ip()).filter(|ip| !ip.is_unspecified());
    config.rate_limits = rate_limits(args.upload.upload_limit, args.download_limit);
    config.choker.kind = args.choker.choker.into();
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let torrent = Torrent::new(config, ev_tx, dht_cmds);
    torrent.watch_peers(args.peers);
    if let Some(meta) = meta {
        torrent.install_metadata(meta).await.map_err(CliError::failed)?;
    }
    let options = RunOptions {
        manual: args.peer.clone(),
        magnet_hints: hint_peers,
        announce_port: local.port(),
        save_resume: true,
        transports: Arc::clone(&transports),
        lsd: start_lsd(local, info_hash, args.discovery.no_lsd, &stop_rx),
    };
    let runner = tokio::spawn(runner::run(Arc::clone(&torrent), tcp, dht, options, stop_rx.clone()));

    let mut reporter = Reporter::new(args.json, quiet, args.peers);
    let started = now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut interrupted = false;
    let mut fault = None;
    // Metadata that hashes right but is no torrent: no peer can send other bytes for this
    // magnet, so waiting would be forever.
    let mut unusable = None;
    // Completion arrives as an event, also when the data was complete on disk already.
    let mut done = false;
    let policy = SeedPolicy { ratio: args.seed_ratio, time: args.seed_time.map(Duration::from_secs) };
    // From when seeding began (the download completed, with --seed).
    let mut stopper: Option<SeedStopper> = None;
    while !done || args.seed {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(TorrentEvent::Complete) => {
                    done = true;
                    reporter.tick(&torrent);
                    let c = torrent.counters();
                    let peers = transports.counts();
                    let utp = transports.utp.as_ref().map(|u| u.stats()).unwrap_or_default();
                    let sources = torrent.peer_sources();
                    reporter.json_line(serde_json::json!({
                        "event": "done", "fetched_pieces": c.fetched_pieces, "received": c.received,
                        "hash_failures": c.hash_failures, "seconds": started.elapsed().as_secs_f64(),
                        "peers_tcp": peers.tcp, "peers_utp": peers.utp, "utp_bytes_read": utp.bytes_read,
                        "sources": sources_json(&sources), "known_peers": sources.known,
                    }));
                    reporter.finish();
                    if args.seed {
                        stopper = Some(SeedStopper::new(policy, now(), c.uploaded));
                        if policy.is_bounded() {
                            tracing::info!(ratio = policy.ratio, seconds = args.seed_time, "download complete; seeding");
                        } else {
                            tracing::info!("download complete; seeding until interrupted");
                        }
                    }
                }
                Some(TorrentEvent::Failed(f)) => {
                    reporter.event(&TorrentEvent::Failed(f.clone()));
                    fault = Some(f);
                    break;
                }
                Some(TorrentEvent::MetadataUnusable(reason)) => {
                    unusable = Some(reason);
                    break;
                }
                Some(ev) => reporter.event(&ev),
                None => break,
            },
            _ = tick.tick() => {
                reporter.tick(&torrent);
                let size = torrent.progress().map_or(0, |(_, total)| total);
                let uploaded = torrent.counters().uploaded;
                if let Some(stop) = stopper.as_mut().and_then(|s| s.on_tick(now(), uploaded, size)) {
                    tracing::info!("{stop}; stopping");
                    reporter.json_line(serde_json::json!({"event": "seeding_stopped", "reason": stop.to_string()}));
                    break;
                }
            }
            _ = &mut signal => {
                interrupted = !done;
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = runner.await;
    // After the runner stopped: the peers are gone and the verified pieces are recorded.
    if let Some(fault) = fault {
        return Err(CliError::failed(fault));
    }
    if let Some(reason) = unusable {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "the metadata for this magnet hashes right but is not a usable torrent: {reason}"
        )));
    }
    if interrupted {
        return Err(CliError::failed(anyhow::anyhow!("interrupted before the download finished; run again to resume")));
    }
    if let Some(meta) = torrent.metainfo() {
        if !args.json {
            eprintln!("kadswarm: {} complete in {}", meta.info.name, args.output.display());
        }
    }
    Ok(())
}
