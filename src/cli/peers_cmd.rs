//! `kadswarm peers`: one get_peers lookup through the DHT, peers printed as they arrive.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::cli::common::{init_logging, load_state, random_seed, DhtSockets};
use crate::cli::{CliError, PeersArgs};
use crate::dht::driver::{Command, Driver, DriverOptions};
use crate::dht::node::{Config, Event, Node};
use crate::magnet::parse_target;

use crate::clock::now;

/// A lookup that found nothing is tried again after this pause, while time remains.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

pub async fn run(args: PeersArgs, verbose: u8, quiet: bool) -> Result<(), CliError> {
    init_logging(verbose, quiet, "warn");
    let magnet = parse_target(&args.target).map_err(CliError::bad_input)?;
    let info_hash = magnet.info_hash;
    let (id, known) = load_state(&args.net)?;
    let sockets = DhtSockets::bind(&args.net)?;
    let routers = sockets.routers(&args.net).await?;
    if routers.is_empty() && known.is_empty() {
        return Err(CliError::bad_input(anyhow::anyhow!(
            "nothing to join through: give --bootstrap HOST:PORT or a --state file with nodes"
        )));
    }

    // A short-lived lookup is read-only (BEP 43): others should not put it in their tables.
    let config = Config { read_only: true, ..sockets.config() };
    let mut node = Node::new(config, id, random_seed(), now());
    node.set_routers(now(), routers);
    if !known.is_empty() {
        node.add_known_nodes(now(), &known);
    }
    let options = DriverOptions {
        state_path: args.net.state.clone(),
        second_socket: sockets.second.clone(),
        ..Default::default()
    };
    let driver = Driver::new(node, sockets.first.clone(), options);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(driver.run(cmd_rx, event_tx, async {
        let _ = stop_rx.await;
    }));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut found: HashSet<std::net::SocketAddr> = HashSet::new();
    let mut stdout = std::io::stdout().lock();
    let start_lookup = |tx: &mpsc::UnboundedSender<Command>| {
        let _ = tx.send(Command::GetPeers { info_hash, reply: None });
    };
    start_lookup(&cmd_tx);
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let wake = retry_at.unwrap_or(deadline).min(deadline);
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Peers { peers, .. }) => {
                    for p in peers {
                        if found.insert(p) {
                            let line = if args.json {
                                serde_json::json!({"peer": p.to_string(), "info_hash": info_hash.to_hex(), "source": "dht"}).to_string()
                            } else {
                                p.to_string()
                            };
                            let _ = writeln!(stdout, "{line}");
                            let _ = stdout.flush();
                        }
                    }
                }
                Some(Event::LookupDone(summary)) => {
                    tracing::info!(
                        peers = summary.peers, queries = summary.stats.queries,
                        rounds = summary.stats.rounds, elapsed_ms = summary.elapsed.as_millis() as u64,
                        "lookup done"
                    );
                    if !found.is_empty() {
                        break;
                    }
                    retry_at = Some(tokio::time::Instant::now() + RETRY_PAUSE);
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                retry_at = None;
                start_lookup(&cmd_tx);
            }
        }
    }
    let _ = stop_tx.send(());
    let _ = task.await;
    if found.is_empty() {
        return Err(CliError::failed(anyhow::anyhow!(
            "no peers found for {} within {} s",
            info_hash.to_hex(),
            args.timeout
        )));
    }
    Ok(())
}
