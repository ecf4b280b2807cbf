//! `kadswarm seed PATH`: make a v1 torrent of a file or directory, print its magnet URI as the
//! first line of stdout, announce it to the DHT and on the local network (BEP 14) and serve it
//! until SIGINT/SIGTERM, `--seed-time` or `--seed-ratio`, at most `--upload-limit` bytes a second.
//! With `--json`, progress events follow the magnet line; with `--peers`, the connected peers
//! (`peer_table`).

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, watch};

use crate::cli::common::init_logging;
use crate::cli::node_cmd::shutdown_signal;
use crate::cli::peer_table::PeerDisplay;
use crate::cli::swarm_common::{bind_peer_ports, now, rate_limits, start_lsd, start_udp};
use crate::cli::{CliError, SeedArgs};
use crate::session::runner::{self, RunOptions};
use crate::session::seed_policy::{SeedPolicy, SeedStopper};
use crate::session::{Torrent, TorrentConfig};
use crate::torrent::create;

pub async fn run(args: SeedArgs, verbose: u8, quiet: bool) -> Result<(), CliError> {
    init_logging(verbose, quiet, "warn");
    let path = std::fs::canonicalize(&args.path)
        .map_err(|e| CliError::bad_input(anyhow::anyhow!("{}: {e}", args.path.display())))?;
    let root = path.parent().map(|p| p.to_path_buf()).unwrap_or_else(|| path.clone());

    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("hashing [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let hashing_bar = bar.clone();
    let piece_length = args.piece_length;
    let target = path.clone();
    let meta = tokio::task::spawn_blocking(move || {
        create(&target, piece_length, &mut |done, total| {
            if let Some(bar) = &hashing_bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        })
    })
    .await
    .map_err(CliError::failed)?
    .map_err(|e| CliError::bad_input(anyhow::anyhow!("{}: {e}", args.path.display())))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(out) = &args.torrent_out {
        crate::storage::durable::write_atomic(out, &meta.to_bytes())
            .map_err(|e| CliError::failed(anyhow::anyhow!("cannot write {}: {e}", out.display())))?;
    }
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", meta.magnet());
        let _ = stdout.flush();
    }

    let (udp, tcp) = bind_peer_ports(crate::cli::common::single_bind(&args.net, "seed")?).await?;
    let local = tcp.local_addr().map_err(CliError::failed)?;
    tracing::info!(%local, info_hash = %meta.info_hash, "listening on {local}");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (dht, transports) =
        start_udp(&args.net, udp, args.discovery.no_dht, args.discovery.transport.into(), &stop_rx).await?;
    let mut config =
        TorrentConfig::new(meta.info_hash, root, local.port(), dht.is_some(), args.max_peers as usize, false);
    config.pex = !args.discovery.no_pex;
    config.listen_ip = Some(local.ip()).filter(|ip| !ip.is_unspecified());
    config.rate_limits = rate_limits(args.upload.upload_limit, 0);
    config.choker.kind = args.choker.choker.into();
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let torrent = Torrent::new(config, ev_tx, dht.as_ref().map(|d| d.commands.clone()));
    torrent.install_metadata(meta).await.map_err(CliError::failed)?;
    if !torrent.is_complete() {
        return Err(CliError::failed(anyhow::anyhow!("{} changed while it was being hashed", path.display())));
    }
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    torrent.watch_peers(args.peers);
    let mut status = Status::new(&args, quiet);
    let options = RunOptions {
        manual: args.peer.clone(),
        magnet_hints: Vec::new(),
        announce_port: local.port(),
        save_resume: false,
        transports: Arc::clone(&transports),
        lsd: start_lsd(local, torrent.config.info_hash, args.discovery.no_lsd, &stop_rx),
    };
    let runner = tokio::spawn(runner::run(Arc::clone(&torrent), tcp, dht, options, stop_rx));
    let policy = SeedPolicy { ratio: args.seed_ratio, time: args.seed_time.map(std::time::Duration::from_secs) };
    let size = torrent.progress().map_or(0, |(_, total)| total);
    let mut stopper = SeedStopper::new(policy, now(), 0);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tick.tick() => {
                status.tick(&torrent);
                if let Some(stop) = stopper.on_tick(now(), torrent.counters().uploaded, size) {
                    tracing::info!("{stop}; stopping");
                    break;
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = runner.await;
    let c = torrent.counters();
    let peers = transports.counts();
    tracing::info!(uploaded = c.uploaded, peers_tcp = peers.tcp, peers_utp = peers.utp, "stopped seeding");
    Ok(())
}

/// What a seeder shows while it serves: with `--json` a progress event a second, with
/// `--peers` the peers (on a terminal under a status line of its own).
struct Status {
    json: bool,
    bar: Option<ProgressBar>,
    peers: Option<PeerDisplay>,
    last_uploaded: u64,
    last_at: std::time::Instant,
}

impl Status {
    fn new(args: &SeedArgs, quiet: bool) -> Status {
        let terminal = !args.json && !quiet && std::io::stderr().is_terminal();
        let (bar, peers) = match (args.peers, terminal) {
            (true, true) => {
                let multi = MultiProgress::new();
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} seeding [{elapsed_precise}] {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                (Some(bar), Some(PeerDisplay::new(false, Some(&multi), now())))
            }
            (true, false) => (None, Some(PeerDisplay::new(args.json, None, now()))),
            (false, _) => (None, None),
        };
        Status { json: args.json, bar, peers, last_uploaded: 0, last_at: now() }
    }

    fn tick(&mut self, torrent: &crate::session::Torrent) {
        let t = now();
        if let Some(display) = self.peers.as_mut() {
            display.tick(t, &torrent.peer_views());
        }
        let uploaded = torrent.counters().uploaded;
        let secs = t.saturating_duration_since(self.last_at).as_secs_f64().max(1e-3);
        let rate = (uploaded.saturating_sub(self.last_uploaded) as f64 / secs) as u64;
        (self.last_uploaded, self.last_at) = (uploaded, t);
        let peers = torrent.peer_count();
        if let Some(bar) = &self.bar {
            bar.set_message(format!("↑ {}/s, {} uploaded, {peers} peers", HumanBytes(rate), HumanBytes(uploaded)));
            bar.tick();
        }
        if self.json {
            let limit = torrent.config.rate_limits.upload.rate();
            let line = serde_json::json!({
                "event": "progress", "uploaded": uploaded, "upload_rate": rate, "peers": peers, "upload_limit": limit,
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
