//! Queries answered per second by `kadswarm node` on one core, under a loopback load of BEP 5
//! ping, find_node and get_peers queries, next to libtorrent's DHT node (its DHT rate limits
//! raised) and next to a one-thread UDP echo program (the ceiling), all under the same
//! generator. See `benches/README.md`.
//!
//! Each server runs as its own process pinned to CPU 0 (`taskset -c 0`); the generator pins
//! itself to the other CPUs. Run with `cargo bench --bench qps [-- OPTIONS]`; `--help` lists the
//! options. A measurement, not a test: nothing here asserts on timing.

// Benches measure real time: reading the clock is their whole job.
#![allow(clippy::disallowed_methods)]

#[path = "qps/load.rs"]
mod load;
#[path = "qps/procs.rs"]
mod procs;
#[path = "common/procstat.rs"]
mod procstat;
#[path = "common/udp_echo.rs"]
mod udp_echo;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kadswarm::dht::krpc::{Body, Message, Method};
use load::{Plan, QueryKind, Tally};
use procs::{ServerProcess, SERVER_CPU};
use procstat::{busy_seconds, cpu_seconds};

const USAGE: &str = "\
usage: cargo bench --bench qps [-- OPTIONS]

  --secs S         measuring window per server, seconds (default 5; env QPS_SECS)
  --warmup S       load before the window opens, seconds (default 1)
  --rounds N       measure every server N times, taking turns; report the median (default 3)
  --sources N      source sockets, on 127.0.60.1.. (default 64, at most 250)
  --inflight N     queries in flight per source (default 8, at most 64)
  --timeout-ms MS  a query unanswered this long is lost and reissued (default 200)
  --threads N      generator threads (default: one per CPU left to the generator, at least 2)
  --servers LIST   comma-separated, from kadswarm,libtorrent,echo (default: all three)
  --fresh-ids      a new random node id on every query (default: one id per source)
  --rate-limit Q   kadswarm's per-source limit, queries/s (default 1000000: the limiter
                   checks and charges every datagram but, with 64 sources, never drops;
                   0 takes it out of the path, to measure what it costs)
  --kadswarm PATH  the kadswarm binary (default: the one cargo built, target/release/kadswarm)
  --python PATH    the Python with libtorrent 2.1 (default python3; env QPS_PYTHON)
  --json           one JSON object on stdout instead of the table
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Kadswarm,
    Libtorrent,
    Echo,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Kadswarm => "kadswarm",
            Server::Libtorrent => "libtorrent",
            Server::Echo => "udp echo",
        }
    }
}

#[derive(Debug)]
pub struct Options {
    secs: f64,
    warmup: f64,
    rounds: usize,
    sources: usize,
    inflight: usize,
    timeout: Duration,
    threads: Option<usize>,
    servers: Vec<Server>,
    fresh_ids: bool,
    rate_limit: u32,
    kadswarm: Option<PathBuf>,
    python: String,
    json: bool,
    /// Positional arguments: cargo's bench-name filter.
    filters: Vec<String>,
}

fn parse_args(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        secs: std::env::var("QPS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0),
        warmup: 1.0,
        rounds: 3,
        sources: 64,
        inflight: 8,
        timeout: Duration::from_millis(200),
        threads: None,
        servers: vec![Server::Kadswarm, Server::Libtorrent, Server::Echo],
        fresh_ids: false,
        rate_limit: 1_000_000,
        kadswarm: None,
        python: std::env::var("QPS_PYTHON").unwrap_or_else(|_| "python3".into()),
        json: false,
        filters: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--secs" => o.secs = value()?.parse().context("--secs")?,
            "--warmup" => o.warmup = value()?.parse().context("--warmup")?,
            "--rounds" => o.rounds = value()?.parse().context("--rounds")?,
            "--sources" => o.sources = value()?.parse().context("--sources")?,
            "--inflight" => o.inflight = value()?.parse().context("--inflight")?,
            "--timeout-ms" => o.timeout = Duration::from_millis(value()?.parse().context("--timeout-ms")?),
            "--threads" => o.threads = Some(value()?.parse().context("--threads")?),
            "--servers" => o.servers = parse_servers(value()?)?,
            "--fresh-ids" => o.fresh_ids = true,
            "--rate-limit" => o.rate_limit = value()?.parse().context("--rate-limit")?,
            "--kadswarm" => o.kadswarm = Some(PathBuf::from(value()?)),
            "--python" => o.python = value()?.clone(),
            "--json" => o.json = true,
            // What cargo passes to every bench binary.
            "--bench" => {}
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s => o.filters.push(s.to_string()),
        }
    }
    if !(0.1..=3600.0).contains(&o.secs) || !(0.0..=600.0).contains(&o.warmup) {
        bail!("--secs must be within 0.1..3600 and --warmup within 0..600");
    }
    if !(1..=100).contains(&o.rounds) {
        bail!("--rounds must be within 1..=100");
    }
    if !(1..=load::MAX_SOURCES).contains(&o.sources) || !(1..=load::MAX_INFLIGHT).contains(&o.inflight) {
        bail!("--sources must be within 1..={} and --inflight within 1..={}", load::MAX_SOURCES, load::MAX_INFLIGHT);
    }
    Ok(o)
}

fn parse_servers(list: &str) -> anyhow::Result<Vec<Server>> {
    list.split(',')
        .map(|s| match s.trim() {
            "kadswarm" => Ok(Server::Kadswarm),
            "libtorrent" | "lt" => Ok(Server::Libtorrent),
            "echo" => Ok(Server::Echo),
            other => bail!("unknown server {other:?} (kadswarm, libtorrent, echo)"),
        })
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, addr] = args.as_slice() {
        if flag == "--echo-server" {
            return match udp_echo::echo_server(addr) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("echo server: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("qps: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // `cargo bench NAME` hands NAME to every bench binary: run only when it names this one.
    if !options.filters.is_empty() && !options.filters.iter().any(|f| "qps".contains(f.as_str())) {
        return ExitCode::SUCCESS;
    }
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qps: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One server's figures over the measuring window.
struct Row {
    server: Server,
    tally: Tally,
    secs: f64,
    /// CPU time of the server and of the generator over the window, in cores.
    server_cores: Option<f64>,
    generator_cores: Option<f64>,
    /// Busy CPU time of the whole machine less the two above: other programs, and interrupt
    /// time the kernel charges to no process.
    other_cores: Option<f64>,
}

impl Row {
    fn qps(&self) -> f64 {
        self.tally.answered as f64 / self.secs
    }
    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.secs
    }
    /// Answers per second of server CPU: what the server would answer with its core to itself.
    fn per_cpu_second(&self) -> Option<f64> {
        self.server_cores.filter(|c| *c > 0.01).map(|c| self.qps() / c)
    }
    fn per_generator_cpu_second(&self) -> Option<f64> {
        self.generator_cores.filter(|c| *c > 0.01).map(|c| self.qps() / c)
    }
    fn mean_rtt_ms(&self) -> f64 {
        self.tally.rtt_us as f64 / self.tally.answered.max(1) as f64 / 1000.0
    }
}

fn run(o: &Options) -> anyhow::Result<()> {
    check_queries()?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pinned = cpus >= 2 && procs::pin_self(&format!("{}-{}", SERVER_CPU + 1, cpus - 1));
    if !pinned {
        eprintln!("qps: warning: servers and generator share the CPUs ({cpus} available); figures are rough");
    }
    let generator_cpus = if pinned { cpus - 1 } else { cpus };
    let threads = o.threads.unwrap_or(generator_cpus.max(2));
    let tick = procstat::clock_ticks();
    eprintln!(
        "qps: {} sources x {} in flight, {} generator thread(s) on {} CPU(s), servers on CPU {}, \
         {:.1}s warm-up + {:.1}s each, {} round(s)",
        o.sources,
        o.inflight,
        threads,
        generator_cpus,
        if pinned { SERVER_CPU.to_string() } else { "any".into() },
        o.warmup,
        o.secs,
        o.rounds,
    );
    let mut servers = o.servers.clone();
    let mut rows: Vec<Row> = Vec::new();
    // Servers take turns round after round, so that a slow spell of the machine does not
    // land on one of them only.
    for round in 1..=o.rounds {
        for server in servers.clone() {
            let process = match procs::start_server(server, o, pinned) {
                Ok(p) => p,
                Err(e) if server == Server::Libtorrent => {
                    eprintln!("qps: libtorrent skipped: {e:#}");
                    servers.retain(|s| *s != server);
                    continue;
                }
                Err(e) => return Err(e.context(format!("starting {}", server.name()))),
            };
            eprintln!("qps: round {round}: {} (pid {}) listens on {}", server.name(), process.child.id(), process.addr);
            rows.push(measure(server, process, o, threads, tick)?);
        }
    }
    report(&rows, &o.servers, o);
    Ok(())
}

/// Drives one server through warm-up and the window, sampling CPU time at both edges.
fn measure(server: Server, mut process: ServerProcess, o: &Options, threads: usize, tick: f64) -> anyhow::Result<Row> {
    let start = Instant::now();
    let warm = start + Duration::from_secs_f64(o.warmup);
    let end = warm + Duration::from_secs_f64(o.secs);
    let plan = Arc::new(Plan {
        server: process.addr,
        sources: o.sources,
        inflight: o.inflight,
        timeout: o.timeout,
        threads,
        fresh_ids: o.fresh_ids,
        echo: server == Server::Echo,
        seed: 1,
        warm,
        end,
    });
    let sockets = load::bind_sources(&plan).context("binding the generator's sockets on 127.0.60.x")?;
    let generator = {
        let plan = plan.clone();
        std::thread::spawn(move || load::run(plan, sockets))
    };
    std::thread::sleep(warm.saturating_duration_since(Instant::now()));
    let pid = process.child.id();
    let before = (cpu_seconds(pid, tick), cpu_seconds(std::process::id(), tick), busy_seconds(tick));
    let window_start = Instant::now();
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let after = (cpu_seconds(pid, tick), cpu_seconds(std::process::id(), tick), busy_seconds(tick));
    let elapsed = window_start.elapsed().as_secs_f64();
    let tally = generator.join().map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    if let Ok(Some(status)) = process.child.try_wait() {
        bail!("{} exited during the run ({status}); its last output:\n{}", server.name(), process.tail());
    }
    let cores = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / elapsed);
    let (server_cores, generator_cores) = (cores(before.0, after.0), cores(before.1, after.1));
    let other_cores = cores(before.2, after.2).zip(server_cores).zip(generator_cores).map(|((all, s), g)| all - s - g);
    Ok(Row { server, tally, secs: o.secs, server_cores, generator_cores, other_cores })
}

/// The round with the median answered/s of each server, in `servers` order.
fn medians<'a>(rows: &'a [Row], servers: &[Server]) -> Vec<(&'a Row, f64, f64)> {
    servers
        .iter()
        .filter_map(|&s| {
            let mut mine: Vec<&Row> = rows.iter().filter(|r| r.server == s).collect();
            mine.sort_by(|a, b| a.qps().total_cmp(&b.qps()));
            let (min, max) = (mine.first()?.qps(), mine.last()?.qps());
            Some((mine[mine.len() / 2], min, max))
        })
        .collect()
}

fn report(rows: &[Row], servers: &[Server], o: &Options) {
    let medians = medians(rows, servers);
    let qps = |s: Server| medians.iter().find(|(r, ..)| r.server == s).map(|(r, ..)| r.qps());
    let ratio = |a: Server, b: Server| Some(qps(a)? / qps(b)?.max(1.0));
    // What the generator drives per second of its own CPU, in the echo run (the cheapest
    // server, so the one where the generator's cost shows most).
    let generator_capacity =
        medians.iter().find(|(r, ..)| r.server == Server::Echo).and_then(|(r, ..)| r.per_generator_cpu_second());
    if o.json {
        let json_row = |r: &Row| {
            serde_json::json!({
                "server": r.server.name(),
                "answered_per_sec": r.qps(),
                "errors_per_sec": r.per_second(r.tally.errors),
                "lost_per_sec": r.per_second(r.tally.timeouts),
                "late": r.tally.late,
                "stray": r.tally.stray,
                "send_blocked": r.tally.send_blocked,
                "io_errors": r.tally.io_errors,
                "mean_rtt_ms": r.mean_rtt_ms(),
                "server_cores": r.server_cores,
                "generator_cores": r.generator_cores,
                "other_cores": r.other_cores,
                "answered_per_server_cpu_sec": r.per_cpu_second(),
            })
        };
        let out = serde_json::json!({
            "secs": o.secs,
            "warmup_secs": o.warmup,
            "rounds": o.rounds,
            "sources": o.sources,
            "inflight_per_source": o.inflight,
            "fresh_ids": o.fresh_ids,
            "kadswarm_rate_limit": o.rate_limit,
            "median": medians.iter().map(|(r, ..)| json_row(r)).collect::<Vec<_>>(),
            "all_rounds": rows.iter().map(json_row).collect::<Vec<_>>(),
            "kadswarm_over_libtorrent": ratio(Server::Kadswarm, Server::Libtorrent),
            "kadswarm_over_echo": ratio(Server::Kadswarm, Server::Echo),
            "generator_queries_per_cpu_sec": generator_capacity,
        });
        println!("{out}");
        return;
    }
    let cores = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{c:.2}"));
    let header = ["answered/s", "lost/s", "errors/s", "rtt ms", "server cores", "gen cores", "other cores"];
    print!("{:<11}", "server");
    for h in header.iter().chain(&["per server-CPU"]) {
        print!(" {h:>14}");
    }
    println!("{}", if o.rounds > 1 { "  answered/s over the rounds" } else { "" });
    for (r, min, max) in &medians {
        let cells = [
            format!("{:.0}", r.qps()),
            format!("{:.0}", r.per_second(r.tally.timeouts)),
            format!("{:.0}", r.per_second(r.tally.errors)),
            format!("{:.2}", r.mean_rtt_ms()),
            cores(r.server_cores),
            cores(r.generator_cores),
            cores(r.other_cores),
            r.per_cpu_second().map_or("-".to_string(), |q| format!("{q:.0}")),
        ];
        print!("{:<11}", r.server.name());
        for c in &cells {
            print!(" {c:>14}");
        }
        println!("{}", if o.rounds > 1 { format!("  {min:.0} .. {max:.0}") } else { String::new() });
    }
    for (a, b, label) in [
        (Server::Kadswarm, Server::Libtorrent, "kadswarm / libtorrent"),
        (Server::Kadswarm, Server::Echo, "kadswarm / udp echo"),
    ] {
        if let Some(x) = ratio(a, b) {
            println!("{label}: {x:.2}");
        }
    }
    if let Some(g) = generator_capacity {
        println!("generator: {g:.0} queries/s per CPU second of its own (from the echo run)");
    }
    let shown = || medians.iter().map(|(r, ..)| *r);
    if shown().any(|r| r.server_cores.is_some_and(|c| c < 0.9)) {
        println!("(a server below 0.9 cores was not saturated: the generator or losses limited it)");
    }
    if shown().any(|r| r.other_cores.is_some_and(|c| c > 0.2)) {
        println!("(other work kept the CPUs busy during a run: its figures are low and noisy)");
    }
}

/// The queries the generator writes by hand must be ones kadswarm itself decodes as meant.
fn check_queries() -> anyhow::Result<()> {
    let mut out = Vec::new();
    for kind in [QueryKind::Ping, QueryKind::FindNode, QueryKind::GetPeers] {
        load::encode_query(&mut out, kind, &[1; 20], &[2; 20], *b"xy");
        let msg =
            Message::decode(&out).map_err(|e| anyhow::anyhow!("generator query {kind:?} does not decode: {e}"))?;
        let ok = match (&msg.body, kind) {
            (Body::Query(q), QueryKind::Ping) => q.method == Method::Ping,
            (Body::Query(q), QueryKind::FindNode) => matches!(q.method, Method::FindNode { .. }),
            (Body::Query(q), QueryKind::GetPeers) => matches!(q.method, Method::GetPeers { .. }),
            _ => false,
        };
        if !ok || msg.tid != b"xy" || load::reply_header(&out) != Some((&b"xy"[..], b'q')) {
            bail!("generator query {kind:?} decodes as {msg:?}");
        }
    }
    Ok(())
}
