//! `kadswarm node`: a long-lived DHT node, usable as a bootstrap router.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::cli::common::{init_logging, load_state, random_seed, DhtSockets};
use crate::cli::{CliError, NodeArgs};
use crate::dht::driver::{Driver, DriverOptions, Snapshot};
use crate::dht::node::{Config, Event, Node, Role};
use crate::dht::pool::PoolConfig;
use crate::dht::pool_file;
use crate::net::limiter::LimiterConfig;

use crate::clock::now;

pub async fn run(args: NodeArgs, verbose: u8, quiet: bool) -> Result<(), CliError> {
    init_logging(verbose, quiet, "info");
    let (id, known) = load_state(&args.net)?;
    let sockets = DhtSockets::bind(&args.net)?;
    let routers = sockets.routers(&args.net).await?;

    let limits = LimiterConfig { rate: args.rate_limit, burst: args.rate_burst, ..LimiterConfig::default() };
    let role = Role::from(args.role);
    let pool = PoolConfig { capacity: args.pool_size as usize, ..PoolConfig::default() };
    let config = Config { limits, role, pool, ..sockets.config() };
    let mut node = Node::new(config, id, random_seed(), now());
    let listening = sockets.describe();
    tracing::info!(
        addr = %listening,
        id = %node.id(),
        routers = routers.len(),
        rate_limit = limits.rate,
        rate_burst = limits.burst,
        ?role,
        "listening on {listening}"
    );
    if role == Role::Bootstrap {
        load_pool(&args, &mut node)?;
    }
    node.set_routers(now(), routers);
    if !known.is_empty() {
        node.add_known_nodes(now(), &known);
    }

    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::failed(anyhow::anyhow!("cannot bind metrics address {addr}: {e}")))?;
        tracing::info!(%addr, "serving Prometheus metrics at http://{addr}/metrics");
        tokio::spawn(crate::metrics::serve(listener, snapshot.clone()));
    }

    let options = DriverOptions {
        state_path: args.net.state.clone(),
        snapshot: Some(snapshot),
        second_socket: sockets.second.clone(),
        ..Default::default()
    };
    let driver = Driver::new(node, sockets.first.clone(), options);
    let (_commands, command_rx) = mpsc::unbounded_channel();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                Event::ExternalAddress(ip) => tracing::info!(%ip, "external address"),
                Event::IdChanged(id) => tracing::info!(%id, "node id changed (BEP 42)"),
                _ => {}
            }
        }
    });
    let node = driver.run(command_rx, event_tx, shutdown_signal()).await;
    tracing::info!(nodes = node.node_count(), "stopped");
    Ok(())
}

/// Fills the bootstrap pool from `--state FILE`'s `FILE.pool`, if there is one.
fn load_pool(args: &NodeArgs, node: &mut Node) -> Result<(), CliError> {
    let Some(state) = &args.net.state else {
        tracing::info!(capacity = args.pool_size, "bootstrap role: pool starts empty (no --state)");
        return Ok(());
    };
    let path = pool_file::path_for(state);
    let saved = pool_file::load(&path, args.pool_size as usize).map_err(CliError::bad_input)?.unwrap_or_default();
    let entered = node.load_pool(now(), &saved);
    tracing::info!(path = %path.display(), saved = saved.len(), entered, capacity = args.pool_size, "bootstrap role: pool loaded");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
