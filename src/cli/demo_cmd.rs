//! `kadswarm demo`: a whole DHT on loopback, no network needed. A few hundred real nodes, each
//! with its own UDP socket on its own 127.x.y.1 address, join through one another; a seeder
//! announces a swarm and a newcomer finds it through get_peers, with progress on stderr and
//! the results on stdout.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cli::common::{bind, init_logging};
use crate::cli::{CliError, DemoArgs};
use crate::dht::driver::{Command, Driver, DriverOptions, Snapshot};
use crate::dht::node::{Config, Event, Node};
use crate::id::Id;
use crate::magnet::Magnet;

#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// The loopback address of demo node `i`: each in its own /24, like strangers on the Internet.
fn demo_addr(i: usize, port: u16) -> SocketAddr {
    let ip = Ipv4Addr::new(127, 100 + (i / 250) as u8, (i % 250) as u8 + 1, 1);
    SocketAddr::new(IpAddr::V4(ip), port)
}

struct Running {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    snapshot: Arc<Mutex<Snapshot>>,
}

fn start_node(
    addr: SocketAddr,
    routers: Vec<SocketAddr>,
    seed: u64,
    read_only: bool,
    stop: &watch::Receiver<bool>,
) -> Result<(Running, SocketAddr), CliError> {
    let socket = bind(addr)?;
    let local = socket.local_addr().map_err(CliError::failed)?;
    let config = Config { read_only, derive_id_from_ip: false, ..Config::default() };
    let mut node = Node::new(config, None, seed, now());
    node.set_routers(now(), routers);
    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    let options = DriverOptions { snapshot: Some(snapshot.clone()), ..Default::default() };
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let mut stop = stop.clone();
    tokio::spawn(Driver::new(node, socket, options).run(cmd_rx, ev_tx, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok((Running { commands: cmd_tx, events: ev_rx, snapshot }, local))
}

pub async fn run(args: DemoArgs, verbose: u8, quiet: bool) -> Result<(), CliError> {
    init_logging(verbose, quiet, "warn");
    let (stop_tx, stop_rx) = watch::channel(false);
    let result = demo(&args, &stop_rx).await;
    let _ = stop_tx.send(true);
    // Give the drivers a moment to finish their last writes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    result
}

async fn demo(args: &DemoArgs, stop: &watch::Receiver<bool>) -> Result<(), CliError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let started = now();
    eprintln!("demo: starting {} DHT nodes on 127.100.0.0/14 ...", args.nodes);
    let mut nodes: Vec<Running> = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let count = args.nodes as usize;
    for i in 0..count {
        // Each node joins through up to three nodes started before it.
        let routers: Vec<SocketAddr> = if addrs.is_empty() {
            Vec::new()
        } else {
            (0..3).map(|_| addrs[rng.random_range(0..addrs.len())]).collect()
        };
        let (running, local) = start_node(demo_addr(i, args.port), routers, rng.random(), false, stop)?;
        nodes.push(running);
        addrs.push(local);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the tables fill: wait until the mean table holds a full bucket's worth.
    let settle_until = now() + Duration::from_secs(args.settle);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sizes: Vec<usize> = nodes.iter().map(|n| n.snapshot.lock().map(|s| s.routing_nodes).unwrap_or(0)).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
        let empty = sizes.iter().filter(|&&s| s == 0).count();
        eprintln!(
            "demo: {:>5.1}s  mean routing table {mean:.1} nodes, {empty} nodes still empty",
            started.elapsed().as_secs_f64()
        );
        if (mean >= 20.0 && empty == 0) || now() >= settle_until {
            break;
        }
    }

    // A seeder announces a swarm.
    let info_hash = Id::random(&mut rng);
    let seeder = rng.random_range(0..nodes.len());
    let seeder_peer = SocketAddr::new(addrs[seeder].ip(), args.port.max(1) + 1000);
    println!("swarm: {}", Magnet::uri(&info_hash, Some("kadswarm demo")));
    eprintln!("demo: node {} ({}) announces the swarm as peer {seeder_peer}", seeder, addrs[seeder]);
    let (tx, rx) = oneshot::channel();
    let _ = nodes[seeder].commands.send(Command::Announce {
        info_hash,
        port: Some(seeder_peer.port()),
        seed: true,
        reply: Some(tx),
    });
    let announce_id = rx.await.map_err(|_| CliError::failed(anyhow::anyhow!("seeder node stopped")))?;
    let announced = wait_done(&mut nodes[seeder].events, announce_id).await?;
    eprintln!(
        "demo: announce reached {} of the closest nodes ({} queries, {} round trips)",
        announced.0.announced_to, announced.0.stats.queries, announced.0.stats.rounds
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A newcomer that knows one random node finds the swarm through the DHT.
    let entry = addrs[rng.random_range(0..addrs.len())];
    let (mut newcomer, newcomer_addr) = start_node(demo_addr(count, args.port), vec![entry], rng.random(), true, stop)?;
    eprintln!("demo: newcomer {newcomer_addr} joins through {entry} and looks the swarm up");
    let lookup_started = now();
    let (tx, rx) = oneshot::channel();
    let _ = newcomer.commands.send(Command::GetPeers { info_hash, reply: Some(tx) });
    let lookup = rx.await.map_err(|_| CliError::failed(anyhow::anyhow!("newcomer node stopped")))?;
    let (summary, peers) = wait_done(&mut newcomer.events, lookup).await?;
    for p in &peers {
        println!("peer: {p}");
    }
    eprintln!(
        "demo: lookup took {} ms, {} queries, {} round trips, {} peer(s) found",
        lookup_started.elapsed().as_millis(),
        summary.stats.queries,
        summary.stats.rounds,
        peers.len()
    );
    if !peers.contains(&seeder_peer) {
        return Err(CliError::failed(anyhow::anyhow!("the newcomer did not find the seeder {seeder_peer}")));
    }
    println!(
        "found the seeder {seeder_peer} through {} DHT nodes in {:.1}s",
        args.nodes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits (bounded) for the end of `lookup`, collecting the peers it reported.
async fn wait_done(
    events: &mut mpsc::UnboundedReceiver<Event>,
    lookup: crate::dht::lookup::LookupId,
) -> Result<(crate::dht::node::LookupSummary, Vec<SocketAddr>), CliError> {
    let mut peers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Peers { lookup: l, peers: p, .. })) if l == lookup => peers.extend(p),
            Ok(Some(Event::LookupDone(s))) if s.id == lookup => return Ok((s, peers)),
            Ok(Some(_)) => {}
            Ok(None) => return Err(CliError::failed(anyhow::anyhow!("node stopped during a lookup"))),
            Err(_) => return Err(CliError::failed(anyhow::anyhow!("lookup did not finish in 90 s"))),
        }
    }
}
