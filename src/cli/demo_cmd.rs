//! `kadswarm demo`: a whole DHT on loopback, no network needed. A few hundred real nodes, each
//! with its own UDP socket on its own 127.x.y.1 address, join through one another; a seeder
//! announces a swarm and a newcomer finds it through get_peers, with progress on stderr and
//! the results on stdout.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, watch};

use crate::cli::common::{bind, init_logging};
use crate::cli::{CliError, DemoArgs};
use crate::dht::driver::{Command, Driver, DriverOptions, Snapshot};
use crate::dht::node::{Config, Event, Node};
use crate::session::runner::{self, DhtLink, RunOptions};
use crate::session::transport::Transports;
use crate::session::{Torrent, TorrentConfig, TorrentEvent};
use crate::torrent::create;

use crate::clock::now;

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

    // A seeder of a generated payload joins through one of the nodes and announces it.
    let work = std::env::temp_dir().join(format!("kadswarm-demo-{}-{}", std::process::id(), rng.random::<u32>()));
    let result = swarm(args, &mut rng, &mut nodes, &addrs, &work, stop, started).await;
    if args.keep {
        eprintln!("demo: files kept in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

/// The swarm part of the demo: seed a payload, find it through the DHT from a newcomer,
/// download it by magnet, compare.
async fn swarm(
    args: &DemoArgs,
    rng: &mut rand::rngs::StdRng,
    nodes: &mut [Running],
    addrs: &[SocketAddr],
    work: &std::path::Path,
    stop: &watch::Receiver<bool>,
    started: std::time::Instant,
) -> Result<(), CliError> {
    let size = (args.size_mib as usize) << 20;
    let payload = work.join("seeder").join("kadswarm-demo");
    let seed_byte = rng.random::<u64>();
    let dir = payload.clone();
    let meta = tokio::task::spawn_blocking(move || {
        write_payload(&dir, size, seed_byte)?;
        create(&dir, None, &mut |_, _| {}).map_err(anyhow::Error::from)
    })
    .await
    .map_err(CliError::failed)?
    .map_err(CliError::failed)?;
    let magnet = meta.magnet();
    println!("swarm: {magnet}");

    let s = rng.random_range(0..nodes.len());
    let seeder_addr = addrs[s];
    let seeder_dht = DhtLink {
        commands: nodes[s].commands.clone(),
        events: std::mem::replace(&mut nodes[s].events, mpsc::unbounded_channel().1),
    };
    let seeder = start_torrent(meta.info_hash, work.join("seeder"), seeder_addr, seeder_dht, false, stop).await?;
    seeder.0.install_metadata(meta).await.map_err(CliError::failed)?;
    eprintln!("demo: node {s} ({seeder_addr}) seeds {} MiB and announces it to the DHT", args.size_mib);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A newcomer that knows one random node downloads the magnet, peers found through the DHT.
    let entry = addrs[rng.random_range(0..addrs.len())];
    let (newcomer, newcomer_addr) =
        start_node(demo_addr(nodes.len(), args.port), vec![entry], rng.random(), false, stop)?;
    eprintln!("demo: newcomer {newcomer_addr} joins through {entry} and downloads the magnet");
    let link = DhtLink { commands: newcomer.commands, events: newcomer.events };
    let output = work.join("newcomer");
    let (leecher, mut events) = start_torrent(
        crate::magnet::Magnet::parse(&magnet).map_err(CliError::failed)?.info_hash,
        output.clone(),
        newcomer_addr,
        link,
        false,
        stop,
    )
    .await?;
    let download_started = now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(TorrentEvent::Complete) => break,
                Some(TorrentEvent::MetadataReady { name, pieces, .. }) => {
                    eprintln!("demo: metadata of `{name}` ({pieces} pieces) fetched from the swarm (BEP 9)");
                }
                Some(_) => {}
                None => return Err(CliError::failed(anyhow::anyhow!("the download stopped"))),
            },
            _ = tick.tick() => {
                let (done, total) = leecher.progress().unwrap_or((0, 0));
                eprintln!("demo: {:>5.1}s  {} / {} bytes from {} peer(s)", download_started.elapsed().as_secs_f64(), done, total, leecher.peer_count());
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(CliError::failed(anyhow::anyhow!("the download did not finish in 120 s")));
            }
        }
    }
    let secs = download_started.elapsed().as_secs_f64();
    let got = output.join("kadswarm-demo");
    let same = tokio::task::spawn_blocking(move || same_tree(&payload, &got)).await.map_err(CliError::failed)?;
    if !same {
        return Err(CliError::failed(anyhow::anyhow!("the downloaded files differ from the seeded ones")));
    }
    let c = leecher.counters();
    println!("peer: {seeder_addr}");
    println!(
        "downloaded {} MiB by magnet from the seeder found through {} DHT nodes in {secs:.1}s ({:.0} MB/s), {} pieces verified, files identical; {:.1}s in all",
        args.size_mib,
        nodes.len(),
        c.received as f64 / secs / 1e6,
        c.fetched_pieces,
        started.elapsed().as_secs_f64()
    );
    drop(seeder);
    Ok(())
}

/// A torrent with its runner on `addr` (TCP on the same port as the node's UDP socket).
async fn start_torrent(
    info_hash: crate::id::InfoHash,
    output: std::path::PathBuf,
    addr: SocketAddr,
    dht: DhtLink,
    keep_records: bool,
    stop: &watch::Receiver<bool>,
) -> Result<(Arc<Torrent>, mpsc::UnboundedReceiver<TorrentEvent>), CliError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::failed(anyhow::anyhow!("cannot listen on {addr}: {e}")))?;
    let config = TorrentConfig::new(info_hash, output, addr.port(), true, 50, keep_records);
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let torrent = Torrent::new(config, ev_tx, Some(dht.commands.clone()));
    let options = RunOptions {
        manual: Vec::new(),
        magnet_hints: Vec::new(),
        announce_port: addr.port(),
        save_resume: keep_records,
        transports: Arc::new(Transports::tcp_only()),
        lsd: None,
    };
    tokio::spawn(runner::run(Arc::clone(&torrent), listener, Some(dht), options, stop.clone()));
    Ok((torrent, ev_rx))
}

/// Files of a few sizes, so pieces straddle file boundaries.
fn write_payload(dir: &std::path::Path, size: usize, seed: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("more"))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let parts = [("video.bin", size / 2), ("more/audio.bin", size / 3), ("more/notes.txt", size - size / 2 - size / 3)];
    for (name, len) in parts {
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        std::fs::write(dir.join(name), data)?;
    }
    Ok(())
}

fn same_tree(a: &std::path::Path, b: &std::path::Path) -> bool {
    ["video.bin", "more/audio.bin", "more/notes.txt"]
        .iter()
        .all(|f| matches!((std::fs::read(a.join(f)), std::fs::read(b.join(f))), (Ok(x), Ok(y)) if x == y))
}
