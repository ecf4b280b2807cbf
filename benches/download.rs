//! Download throughput over loopback, TCP or uTP, from one libtorrent seeder: `kadswarm get`
//! next to a libtorrent leecher and rqbit downloading the same torrent from the same seeder,
//! alternated, several runs each, medians and ratios; CPU time per MiB and peak RSS of each
//! client; then kadswarm seed -> kadswarm get (over uTP: next to the same over TCP) and this
//! machine's SHA-1 speed (the physical limit of a verified download). A measurement, never an
//! assertion.
//!
//!     cargo bench --bench download                     # TCP, 512 MiB, 3 runs each
//!     cargo bench --bench download -- --transport utp  # the same over uTP only
//!     cargo bench --bench download -- --size-mib 128 --runs 1
//!     cargo bench --bench download -- --scenario many-seeders   # from 30 libtorrent seeders
//!     cargo bench --bench download -- --scenario many-leechers  # a seeder to 30 leechers
//!
//! rqbit is used when `rqbit` is on PATH (`cargo install rqbit`); libtorrent when python3 can
//! import it. Every process is killed by PID when its guard drops; only 127.0.8x.1 is used, and
//! 127.0.10.1 to 127.0.49.1 by the many-peer scenarios' libtorrent sessions.

// Benches measure real time.
#![allow(clippy::disallowed_methods)]

// Shared with the other benches; each uses a part of it.
#[allow(dead_code)]
#[path = "download/clients.rs"]
mod clients;
// Shared with the other benches; each uses a part of it.
#[allow(dead_code)]
#[path = "download/procs.rs"]
mod procs;
// Shared with the other benches; each uses a part of it.
#[path = "download/many.rs"]
mod many;
#[allow(dead_code)]
#[path = "common/procstat.rs"]
mod procstat;

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use clients::{Seeder, Transport};
use procs::{free_addr, kadswarm_bin, median, Measured};
use sha1::{Digest, Sha1};

const USAGE: &str = "\
usage: cargo bench --bench download [-- OPTIONS]

  --transport tcp|utp  how every client connects to the seeder (default tcp); with utp the
                       libtorrent seeder and leecher have TCP switched off, rqbit gets
                       --experimental-enable-utp-listen --disable-tcp-connect, kadswarm
                       --transport utp
  --size-mib N         payload size (default 512)
  --runs N             runs of each client, alternated; medians are shown (default 3)
  --clients LIST       comma-separated, from kadswarm,libtorrent,rqbit (default: all found)
  --no-k2k             skip kadswarm seed -> kadswarm get
  --scenario NAME      one-seeder (default): the above; many-seeders: kadswarm get and a
                       libtorrent leecher each download from --peers libtorrent seeders at
                       once; many-leechers: kadswarm seed and a libtorrent seeder each serve
                       --peers libtorrent leechers at once (default size 256 and 64 MiB)
  --peers N            libtorrent sessions of the many-peer scenarios, on 127.0.10.1 upwards
                       (default 30, at most 40)
  --piece-kib N        piece size of the many-peer scenarios' torrents (default 256)
  --lt-unchoke-slots N unchoke_slots_limit of the libtorrent seeder in many-leechers
                       (default 40: all 30 leechers unchoked at once; -1: no limit; 8 is
                       libtorrent's default)
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    OneSeeder,
    ManySeeders,
    ManyLeechers,
}

struct Options {
    size_mib: usize,
    runs: usize,
    transport: Transport,
    clients: Vec<String>,
    k2k: bool,
    scenario: Scenario,
    peers: usize,
    piece_kib: usize,
    lt_unchoke_slots: i64,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut size_mib = None;
    let mut o = Options {
        size_mib: 512,
        runs: 3,
        transport: Transport::Tcp,
        clients: ["kadswarm", "libtorrent", "rqbit"].map(String::from).to_vec(),
        k2k: true,
        scenario: Scenario::OneSeeder,
        peers: 30,
        piece_kib: 256,
        lt_unchoke_slots: 40,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size-mib" => size_mib = Some(args.next().context("--size-mib N")?.parse()?),
            "--runs" => o.runs = args.next().context("--runs N")?.parse::<usize>()?.max(1),
            "--transport" => {
                o.transport = match args.next().as_deref() {
                    Some("tcp") => Transport::Tcp,
                    Some("utp") => Transport::Utp,
                    other => bail!("--transport tcp|utp, not {other:?}"),
                }
            }
            "--clients" => o.clients = args.next().context("--clients LIST")?.split(',').map(String::from).collect(),
            "--no-k2k" => o.k2k = false,
            "--scenario" => {
                o.scenario = match args.next().as_deref() {
                    Some("one-seeder") => Scenario::OneSeeder,
                    Some("many-seeders") => Scenario::ManySeeders,
                    Some("many-leechers") => Scenario::ManyLeechers,
                    other => bail!("--scenario one-seeder|many-seeders|many-leechers, not {other:?}"),
                }
            }
            "--peers" => o.peers = args.next().context("--peers N")?.parse()?,
            "--piece-kib" => o.piece_kib = args.next().context("--piece-kib N")?.parse()?,
            "--lt-unchoke-slots" => o.lt_unchoke_slots = args.next().context("--lt-unchoke-slots N")?.parse()?,
            "--bench" => {}
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    o.size_mib = size_mib.unwrap_or(match o.scenario {
        Scenario::OneSeeder => 512,
        Scenario::ManySeeders => 256,
        Scenario::ManyLeechers => 64,
    });
    if !(1..=many::MAX_PEERS).contains(&o.peers) {
        bail!("--peers must be 1 to {}", many::MAX_PEERS);
    }
    if !o.piece_kib.is_power_of_two() || o.piece_kib < 16 {
        bail!("--piece-kib must be a power of two, at least 16");
    }
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    let bin = kadswarm_bin();
    if !bin.exists() {
        bail!("{} is missing: run `cargo build --release` first", bin.display());
    }
    if !clients::have_python_libtorrent() {
        bail!("python3 cannot import libtorrent: pip install libtorrent==2.1.1");
    }
    // Fail before writing half a GiB when kadswarm cannot do uTP yet.
    if o.k2k || o.clients.iter().any(|c| c == "kadswarm") {
        clients::kadswarm_transport_args(o.transport)?;
    }
    let work = std::env::temp_dir().join(format!("kadswarm-download-bench-{}", std::process::id()));
    let result = match o.scenario {
        Scenario::OneSeeder => bench(&o, &work),
        Scenario::ManySeeders | Scenario::ManyLeechers => bench_many(&o, &work),
    };
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The many-peer scenarios (`benches/download/many.rs`).
fn bench_many(o: &Options, work: &Path) -> anyhow::Result<()> {
    eprintln!("writing a {} MiB payload ...", o.size_mib);
    let payload = procs::make_payload(work, o.size_mib << 20)?;
    let m = many::ManyOptions {
        peers: o.peers,
        size_mib: o.size_mib,
        runs: o.runs,
        transport: o.transport,
        piece_bytes: o.piece_kib << 10,
        lt_unchoke_slots: o.lt_unchoke_slots,
    };
    match o.scenario {
        Scenario::ManySeeders => many::many_seeders(&m, work, &payload),
        _ => many::many_leechers(&m, work, &payload),
    }
}

/// MB/s of SHA-1 on this machine: the payload hashed from memory (read first, not timed) in
/// 1 MiB pieces, each finalized as a piece is, best of three passes. Timing the file reads
/// too, as this did at first, counted page faults and copies as hashing and put the limit
/// about 40% low (656-705 MB/s where the hash alone runs at about 1,150 MB/s).
fn sha1_rate(root: &Path) -> anyhow::Result<f64> {
    let parts = ["part1.bin", "part2.bin"].map(|name| std::fs::read(root.join(name)));
    let parts: Vec<Vec<u8>> = parts.into_iter().collect::<Result<_, _>>()?;
    let total: usize = parts.iter().map(Vec::len).sum();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for data in &parts {
            for piece in data.chunks(1 << 20) {
                std::hint::black_box(Sha1::digest(piece));
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(total as f64 / best / 1e6)
}

type Runner = fn(&str, &Path, &Path, &Seeder, Transport) -> clients::RunResult;

/// The medians of one client's runs.
struct Row {
    mb_s: f64,
    cpu_ms_per_mib: f64,
    seeder_cpu_ms_per_mib: f64,
    rss_mib: f64,
}

fn summarize(size_mib: usize, runs: &[Measured]) -> Row {
    let per_mib = |f: &dyn Fn(&Measured) -> f64| {
        median(&mut runs.iter().map(|m| f(m) * 1e3 / size_mib as f64).collect::<Vec<_>>())
    };
    Row {
        mb_s: median(&mut runs.iter().map(|m| (size_mib << 20) as f64 / m.secs / 1e6).collect::<Vec<_>>()),
        cpu_ms_per_mib: per_mib(&|m| m.cpu_secs),
        seeder_cpu_ms_per_mib: per_mib(&|m| m.seeder_cpu_secs),
        rss_mib: median(&mut runs.iter().map(|m| m.peak_rss_mib).collect::<Vec<_>>()),
    }
}

fn print_row(name: &str, r: &Row) {
    println!(
        "  {name:<24} {:8.1} MB/s   CPU {:6.2} ms/MiB   seeder CPU {:6.2} ms/MiB   peak RSS {:6.1} MiB",
        r.mb_s, r.cpu_ms_per_mib, r.seeder_cpu_ms_per_mib, r.rss_mib
    );
}

fn bench(o: &Options, work: &Path) -> anyhow::Result<()> {
    let t = o.transport;
    let size = o.size_mib << 20;
    eprintln!("writing a {} MiB payload ...", o.size_mib);
    let payload = procs::make_payload(work, size)?;
    let sha = sha1_rate(&payload)?;
    eprintln!("SHA-1 on this machine: {sha:.0} MB/s");

    let mut clients: Vec<(&str, Runner)> = Vec::new();
    for name in &o.clients {
        match name.as_str() {
            "kadswarm" => clients.push(("kadswarm", clients::run_kadswarm)),
            "libtorrent" => clients.push(("libtorrent", clients::run_libtorrent)),
            "rqbit" if clients::have_rqbit() => clients.push(("rqbit", clients::run_rqbit)),
            "rqbit" => eprintln!("rqbit not on PATH: its row is skipped (cargo install rqbit)"),
            other => bail!("unknown client {other} (kadswarm, libtorrent, rqbit)"),
        }
    }
    let seeder = clients::libtorrent_seeder(&payload, t)?;
    let mut measured: Vec<Vec<Measured>> = vec![Vec::new(); clients.len()];
    for run in 0..o.runs {
        for (i, (name, runner)) in clients.iter().enumerate() {
            let out = clients::fresh_dir(work, &format!("out-{name}-{run}"))?;
            let (m, ok) =
                runner(&seeder.magnet, &out, &payload, &seeder, t).with_context(|| format!("{name} run {run}"))?;
            eprintln!(
                "run {run}: {name:<10} {:6.2} s  {:7.1} MB/s  CPU {:5.2} s  seeder CPU {:5.2} s  peak RSS {:6.1} MiB  {}{}",
                m.secs,
                size as f64 / m.secs / 1e6,
                m.cpu_secs,
                m.seeder_cpu_secs,
                m.peak_rss_mib,
                if ok { "data ok" } else { "DATA DIFFERS" },
                flush_note(&m)
            );
            std::fs::remove_dir_all(&out)?;
            measured[i].push(m);
        }
    }
    drop(seeder);
    println!(
        "\n{} MiB from one libtorrent seeder over loopback {}, median of {} runs:",
        o.size_mib,
        t.name().to_uppercase(),
        o.runs
    );
    let rows: Vec<Row> = measured.iter().map(|m| summarize(o.size_mib, m)).collect();
    for ((name, _), row) in clients.iter().zip(&rows) {
        print_row(name, row);
    }
    if let Some(k) = clients.iter().position(|(n, _)| *n == "kadswarm") {
        for (i, (name, _)) in clients.iter().enumerate().filter(|(i, _)| *i != k) {
            println!(
                "  kadswarm / {name}: {:.2} of the rate, {:.2} of the CPU per MiB",
                rows[k].mb_s / rows[i].mb_s,
                rows[k].cpu_ms_per_mib / rows[i].cpu_ms_per_mib
            );
        }
    }
    if o.k2k {
        kadswarm_to_kadswarm(o, work, &payload, sha)?;
    }
    Ok(())
}

/// After a run's figures: how long it then took to make the payload durable (kadswarm).
fn flush_note(m: &Measured) -> String {
    m.flush_secs.map(|f| format!("  (then {f:.2} s flushing to disk before exit)")).unwrap_or_default()
}

/// kadswarm seed -> kadswarm get: how close a verified download comes to SHA-1 speed, and
/// with --transport utp, uTP next to TCP between the same two programs (alternated).
fn kadswarm_to_kadswarm(o: &Options, work: &Path, payload: &Path, sha: f64) -> anyhow::Result<()> {
    let seeder = clients::kadswarm_seeder(payload, free_addr("127.0.84.1")?, None)?;
    let transports: &[Transport] = match o.transport {
        Transport::Tcp => &[Transport::Tcp],
        Transport::Utp => &[Transport::Utp, Transport::Tcp],
    };
    let mut measured: Vec<Vec<Measured>> = vec![Vec::new(); transports.len()];
    for run in 0..o.runs {
        for (i, &t) in transports.iter().enumerate() {
            let out = clients::fresh_dir(work, &format!("out-k2k-{}-{run}", t.name()))?;
            let (m, ok) = clients::run_kadswarm(&seeder.magnet, &out, payload, &seeder, t)
                .with_context(|| format!("k2k {} run {run}", t.name()))?;
            eprintln!(
                "run {run}: kadswarm->kadswarm {} {:6.2} s  {:7.1} MB/s  {}{}",
                t.name(),
                m.secs,
                (o.size_mib << 20) as f64 / m.secs / 1e6,
                if ok { "data ok" } else { "DATA DIFFERS" },
                flush_note(&m)
            );
            std::fs::remove_dir_all(&out)?;
            measured[i].push(m);
        }
    }
    drop(seeder);
    let rows: Vec<Row> = measured.iter().map(|m| summarize(o.size_mib, m)).collect();
    for (t, row) in transports.iter().zip(&rows) {
        print_row(&format!("kadswarm->kadswarm {}", t.name().to_uppercase()), row);
    }
    for (t, row) in transports.iter().zip(&rows) {
        println!(
            "  kadswarm seed -> kadswarm get over {}: {:.2} of SHA-1 speed ({sha:.0} MB/s)",
            t.name().to_uppercase(),
            row.mb_s / sha
        );
    }
    if let [utp, tcp] = rows.as_slice() {
        println!(
            "  kadswarm->kadswarm uTP / TCP: {:.2} of the rate, {:.2} of the CPU per MiB",
            utp.mb_s / tcp.mb_s,
            utp.cpu_ms_per_mib / tcp.cpu_ms_per_mib
        );
    }
    Ok(())
}
