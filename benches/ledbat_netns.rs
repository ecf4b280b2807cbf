//! LEDBAT (RFC 6817, as BEP 29 uses it) on a real bottleneck: `kadswarm seed` in one network
//! namespace serves `kadswarm get` in another through veth pairs and a token-bucket filter,
//! `tc ... tbf rate 10mbit burst 32kbit latency 1s` (a 1 s drop-tail queue), on the data's way:
//! in a bridging "router" namespace between them, or with `--direct` on the sender's own veth
//! end (see `ledbat_netns/netns.rs` for why the two differ for TCP). A small-packet UDP
//! ping-pong crosses the same queue every 10 ms; its round trip minus the idle round trip is
//! the queuing delay the transfer adds for everyone else on the link.
//!
//! Phases: uTP alone, TCP alone (kadswarm over TCP, Reno), a bulk Reno TCP flow alone, and
//! uTP started next to that running TCP flow. It prints the throughput (Mbit/s, fraction of the
//! link) and added delay (median, p95) of each as a table. A measurement, never an assertion;
//! needs root, `ip netns` and `tc`, and says so and exits 0 without them.
//!
//!     cargo bench --bench ledbat_netns
//!     cargo bench --bench ledbat_netns -- --size-mib 16 --phases utp,mixed
//!
//! Every process runs inside a namespace and is killed by PID when its guard drops; the
//! namespaces are deleted on every exit path (see `ledbat_netns/netns.rs`).

// Benches measure real time.
#![allow(clippy::disallowed_methods)]

// Shared with the other benches; each uses a part of it.
#[allow(dead_code)]
#[path = "download/clients.rs"]
mod clients;
#[path = "ledbat_netns/netns.rs"]
mod netns;
#[path = "ledbat_netns/probe.rs"]
mod probe;
// Shared with the other benches; each uses a part of it.
#[allow(dead_code)]
#[path = "download/procs.rs"]
mod procs;
// Shared with the other benches; each uses a part of it.
#[allow(dead_code)]
#[path = "common/procstat.rs"]
mod procstat;
#[path = "common/udp_echo.rs"]
mod udp_echo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clients::{Seeder, Transport};
use netns::{Layout, Netns, RCV_IP, SND_IP};
use procs::Proc;

const USAGE: &str = "\
usage: cargo bench --bench ledbat_netns [-- OPTIONS]      (as root)

  --size-mib N       payload of the uTP-alone and TCP-alone phases (default 32: ~27 s at 10 Mbit/s)
  --secs S           length of the measured window of the mixed and bulk-TCP phases (default 30)
  --warmup S         seconds after the first byte that are left out of every window (default 3)
  --interval-ms MS   probe interval (default 10)
  --phases LIST      comma-separated, from utp,tcp,mixed (default all three; mixed includes the
                     bulk-TCP-alone row)
  --direct           the tbf on the sender's own veth end instead of a bridging router
                     namespace (TCP then self-limits its queue through TSQ, see netns.rs)
";

const LINK_MBIT: f64 = 10.0;
const ECHO_PORT: u16 = 7777;
const SINK_PORT: u16 = 5001;
/// The most any helper process lives, should the bench die without killing it.
const HELPER_LIFETIME: Duration = Duration::from_secs(1800);
/// How long the bulk TCP flow runs alone before uTP joins it, and how much of that is its
/// slow start, left out of its row.
const TCP_LEAD: Duration = Duration::from_secs(20);
const TCP_SLOW_START: Duration = Duration::from_secs(5);

struct Options {
    size_mib: usize,
    secs: f64,
    warmup: f64,
    interval_ms: u64,
    phases: Vec<String>,
    layout: Layout,
}

fn parse_args(args: &[String]) -> anyhow::Result<Options> {
    let mut o =
        Options { size_mib: 32, secs: 30.0, warmup: 3.0, interval_ms: 10, phases: vec![], layout: Layout::Router };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--size-mib" => o.size_mib = value()?.parse()?,
            "--secs" => o.secs = value()?.parse()?,
            "--warmup" => o.warmup = value()?.parse()?,
            "--interval-ms" => o.interval_ms = value()?.parse::<u64>()?.max(1),
            "--phases" => o.phases = value()?.split(',').map(String::from).collect(),
            "--direct" => o.layout = Layout::Direct,
            "--bench" => {}
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if o.phases.is_empty() {
        o.phases = ["utp", "tcp", "mixed"].map(String::from).to_vec();
    }
    Ok(o)
}

/// The helper programs: this binary re-run inside a namespace.
fn helper_mode(args: &[String]) -> Option<anyhow::Result<()>> {
    let addr = |i: usize| -> anyhow::Result<SocketAddr> { Ok(args.get(i).context("address")?.parse()?) };
    let secs =
        |i: usize| -> anyhow::Result<Duration> { Ok(Duration::from_secs(args.get(i).context("seconds")?.parse()?)) };
    Some(match args.first()?.as_str() {
        "--udp-echo" => args.get(1).context("--udp-echo ADDR").and_then(|a| udp_echo::echo_server(a)),
        "--probe" => {
            (|| probe::probe(addr(1)?, Duration::from_millis(args.get(2).context("ms")?.parse()?), secs(3)?))()
        }
        "--tcp-sink" => (|| probe::tcp_sink(addr(1)?, secs(2)?))(),
        "--tcp-source" => (|| probe::tcp_source(addr(1)?, secs(2)?))(),
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(result) = helper_mode(&args) {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ledbat_netns helper: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if let Some(why) = netns::unavailable() {
        println!("ledbat_netns: skipped: {why}");
        return ExitCode::SUCCESS;
    }
    let result = parse_args(&args).and_then(|o| {
        let work = std::env::temp_dir().join(format!("kadswarm-ledbat-bench-{}", std::process::id()));
        let r = bench(&o, &work);
        let _ = std::fs::remove_dir_all(&work);
        r
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ledbat_netns: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One row of the table.
struct Row {
    phase: String,
    /// Length of the window the rates are taken over.
    secs: f64,
    utp_mbit: Option<f64>,
    tcp_mbit: Option<f64>,
    /// Everything the tbf let through (headers, probes and acks of other flows included).
    wire_mbit: Option<f64>,
    /// Probe round trips minus the idle one, ms.
    added_ms: Vec<f64>,
    probes_lost: f64,
}

/// A counter over time: (when it was read, its value).
type Samples = Vec<(Instant, f64)>;

/// The tbf's byte counter, read four times a second by a thread until dropped.
struct WireSampler {
    samples: Arc<Mutex<Samples>>,
    stop: Arc<AtomicBool>,
}

impl WireSampler {
    fn start(shaper: String) -> WireSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < HELPER_LIFETIME {
                if let (Some(bytes), Ok(mut v)) = (netns::tbf_sent_bytes(&shaper), sink.lock()) {
                    v.push((Instant::now(), bytes as f64));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        WireSampler { samples, stop }
    }

    fn samples(&self) -> Samples {
        self.samples.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for WireSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Everything the phases share. Fields drop in order: the processes before the namespaces
/// they run in.
struct Bench {
    me: PathBuf,
    _echo: Proc,
    probe: Proc,
    wire: WireSampler,
    idle_rtt_ms: f64,
    seeder: Seeder,
    payload: PathBuf,
    work: PathBuf,
    interval: Duration,
    warmup: Duration,
    ns: Netns,
}

fn bench(o: &Options, work: &Path) -> anyhow::Result<()> {
    netns::delete_on_signal(work.to_path_buf())?;
    let utp_ok = procs::kadswarm_has_transport();
    if !utp_ok {
        eprintln!("ledbat_netns: {} has no --transport yet: the uTP rows are skipped", procs::kadswarm_bin().display());
    }
    let payload = procs::make_payload(work, o.size_mib << 20)?;
    // Declared before the processes, so that on an early return it drops after them.
    let ns = Netns::create(o.layout, "10mbit", "32kbit", "1s")?;
    let me = std::env::current_exe()?;
    let (snd, rcv) = (Netns::exec(&ns.snd), Netns::exec(&ns.rcv));
    let echo_addr = format!("{RCV_IP}:{ECHO_PORT}");
    let echo = Proc::spawn(clients::wrapped(Some(&rcv), &me).args(["--udp-echo", &echo_addr]))?;
    echo.wait_first_line(Duration::from_secs(10))?;
    let interval = Duration::from_millis(o.interval_ms);
    let probe = Proc::spawn(clients::wrapped(Some(&snd), &me).args([
        "--probe",
        &echo_addr,
        &o.interval_ms.to_string(),
        &HELPER_LIFETIME.as_secs().to_string(),
    ]))?;
    let idle_from = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let mut idle: Vec<f64> = rtts_ms(&probe, idle_from, Instant::now());
    if idle.is_empty() {
        bail!("no probe came back over the idle link");
    }
    let idle_rtt_ms = probe::quantile(&mut idle, 0.5);
    let seeder = clients::kadswarm_seeder(&payload, format!("{SND_IP}:6881").parse()?, Some(&snd))?;
    let wire = WireSampler::start(ns.shaper().to_string());
    let b = Bench {
        me,
        _echo: echo,
        probe,
        wire,
        idle_rtt_ms,
        seeder,
        payload,
        work: work.to_path_buf(),
        interval,
        warmup: Duration::from_secs_f64(o.warmup),
        ns,
    };
    let mut rows = Vec::new();
    for phase in &o.phases {
        match phase.as_str() {
            "utp" if !utp_ok => {}
            "utp" => rows.push(b.download("uTP alone", Transport::Utp)?),
            "tcp" => rows.push(b.download("TCP alone (kadswarm, Reno)", Transport::Tcp)?),
            "mixed" => rows.extend(b.mixed(Duration::from_secs_f64(o.secs), utp_ok)?),
            other => bail!("unknown phase {other} (utp, tcp, mixed)"),
        }
        eprintln!("  tbf: {}", b.ns.qdisc_stats());
    }
    print_table(&b, &rows);
    Ok(())
}

/// Probe round trips (ms) that came back between `from` and `to`.
fn rtts_ms(probe: &Proc, from: Instant, to: Instant) -> Vec<f64> {
    probe
        .json_lines()
        .into_iter()
        .filter(|(t, _)| *t >= from && *t <= to)
        .filter_map(|(_, v)| v["rtt_us"].as_f64())
        .map(|us| us / 1e3)
        .collect()
}

/// A counter that `pick` reads from a process's JSON lines.
fn counter(p: &Proc, pick: impl Fn(&serde_json::Value) -> Option<f64>) -> Samples {
    p.json_lines().into_iter().filter_map(|(t, v)| Some((t, pick(&v)?))).collect()
}

/// Mbit/s of a byte counter between its first and last sample inside [from, to].
fn rate_mbit(samples: &[(Instant, f64)], from: Instant, to: Instant) -> Option<f64> {
    let mut inside = samples.iter().filter(|(t, _)| *t >= from && *t <= to);
    let (t0, b0) = inside.next()?;
    let (t1, b1) = inside.next_back()?;
    let secs = t1.duration_since(*t0).as_secs_f64();
    (secs > 0.5).then(|| (b1 - b0) * 8.0 / secs / 1e6)
}

/// Verified bytes of a `kadswarm get --json` progress line (0 before the metadata is in).
fn downloaded(v: &serde_json::Value) -> Option<f64> {
    (v["event"] == "progress").then(|| v["downloaded"].as_f64().unwrap_or(0.0))
}

fn sink_bytes(v: &serde_json::Value) -> Option<f64> {
    v["bytes"].as_f64()
}

impl Bench {
    fn get(&self, name: &str, t: Transport) -> anyhow::Result<(Proc, PathBuf)> {
        let out = clients::fresh_dir(&self.work, name)?;
        let rcv = Netns::exec(&self.ns.rcv);
        let bind: SocketAddr = format!("{RCV_IP}:6882").parse()?;
        let mut cmd = clients::kadswarm_get_cmd(Some(&rcv), &self.seeder.magnet, &out, bind, self.seeder.addr, t)?;
        Ok((Proc::spawn(&mut cmd)?, out))
    }

    /// A row: rates measured by the caller over `rates` (a window), the wire rate over the
    /// same window, and the probes over `delays` (the window less its warm-up).
    fn row(
        &self,
        phase: &str,
        rates: (Instant, Instant),
        delays: (Instant, Instant),
        utp: Option<f64>,
        tcp: Option<f64>,
    ) -> Row {
        let rtts = rtts_ms(&self.probe, delays.0, delays.1);
        let expected = delays.1.duration_since(delays.0).as_secs_f64() / self.interval.as_secs_f64();
        Row {
            phase: phase.into(),
            secs: rates.1.duration_since(rates.0).as_secs_f64(),
            utp_mbit: utp,
            tcp_mbit: tcp,
            wire_mbit: rate_mbit(&self.wire.samples(), rates.0, rates.1),
            added_ms: rtts.iter().map(|r| (r - self.idle_rtt_ms).max(0.0)).collect(),
            probes_lost: if expected > 0.0 { (1.0 - rtts.len() as f64 / expected).max(0.0) } else { 0.0 },
        }
    }

    /// One whole download over `t`, alone on the link. The rate runs from the first verified
    /// byte to the end (ramp-up included: the download's own average); the delays leave out
    /// the first `warmup` of it.
    fn download(&self, phase: &str, t: Transport) -> anyhow::Result<Row> {
        eprintln!("phase: {phase} ...");
        let (mut get, out) = self.get(&format!("out-{}", t.name()), t)?;
        let started = Instant::now();
        // Allow a quarter of the link's rate and a minute of slack.
        let limit = Duration::from_secs_f64(self.payload_bytes()? as f64 * 8.0 / (LINK_MBIT * 1e6 / 4.0) + 60.0);
        let status = loop {
            if let Some(s) = get.child.try_wait()? {
                break s;
            }
            if started.elapsed() > limit {
                bail!("{phase}: the download did not finish in {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let end = Instant::now();
        if !status.success() {
            bail!("{phase}: kadswarm get exited with {status}");
        }
        if !procs::same_payload(&out, &self.payload)? {
            bail!("{phase}: the downloaded data differs from the payload");
        }
        let progress = counter(&get, downloaded);
        let first = progress.iter().find(|(_, d)| *d > 0.0).map(|(t, _)| *t).unwrap_or(started);
        let done =
            get.find(|v| (v["event"] == "done").then_some(())).and(progress.last().map(|(t, _)| *t)).unwrap_or(end);
        let mbit = rate_mbit(&progress, first, done);
        let (utp, tcp) = if t == Transport::Utp { (mbit, None) } else { (None, mbit) };
        Ok(self.row(phase, (first, done), (first + self.warmup, done), utp, tcp))
    }

    /// A bulk Reno TCP flow alone for TCP_LEAD, then uTP joins it for `secs` (the download is
    /// cut off at the end of the window if it has not finished).
    fn mixed(&self, secs: Duration, with_utp: bool) -> anyhow::Result<Vec<Row>> {
        eprintln!("phase: bulk TCP alone, then uTP next to it ...");
        let (snd, rcv) = (Netns::exec(&self.ns.snd), Netns::exec(&self.ns.rcv));
        let sink_addr = format!("{RCV_IP}:{SINK_PORT}");
        let life = HELPER_LIFETIME.as_secs().to_string();
        let sink = Proc::spawn(clients::wrapped(Some(&rcv), &self.me).args(["--tcp-sink", &sink_addr, &life]))?;
        sink.wait_first_line(Duration::from_secs(10))?;
        let tcp_started = Instant::now();
        let _source = Proc::spawn(clients::wrapped(Some(&snd), &self.me).args(["--tcp-source", &sink_addr, &life]))?;
        std::thread::sleep(TCP_LEAD);
        // Slow start overshoots the queue and spends seconds in recovery: left out.
        let lead = (tcp_started + TCP_SLOW_START, Instant::now());
        let tcp_alone = rate_mbit(&counter(&sink, sink_bytes), lead.0, lead.1);
        let mut rows = vec![self.row("bulk TCP alone (Reno)", lead, lead, None, tcp_alone)];
        if !with_utp {
            return Ok(rows);
        }
        let (mut get, _out) = self.get("out-mixed", Transport::Utp)?;
        let from = Instant::now() + self.warmup;
        let until = from + secs;
        while Instant::now() < until && get.child.try_wait()?.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let to = Instant::now().min(until);
        let utp = rate_mbit(&counter(&get, downloaded), from, to);
        let tcp = rate_mbit(&counter(&sink, sink_bytes), from, to);
        rows.push(self.row("uTP next to bulk TCP", (from, to), (from, to), utp, tcp));
        Ok(rows)
    }

    fn payload_bytes(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for name in ["part1.bin", "part2.bin"] {
            total += std::fs::metadata(self.payload.join(name))?.len();
        }
        Ok(total)
    }
}

fn print_table(b: &Bench, rows: &[Row]) {
    let cell = |v: Option<f64>| v.map(|x| format!("{x:6.2}")).unwrap_or_else(|| "     -".into());
    let place = if b.ns.rtr.is_some() { "in a router namespace" } else { "on the sender's veth" };
    println!(
        "\nLEDBAT bench: {LINK_MBIT} Mbit/s tbf bottleneck {place} (32 kbit burst, 1 s queue), idle probe RTT {:.3} ms",
        b.idle_rtt_ms
    );
    println!("  phase                        secs  uTP Mbit/s  TCP Mbit/s  wire Mbit/s  goodput/link  added delay ms: median    p95  probes lost");
    for r in rows {
        let goodput = r.utp_mbit.unwrap_or(0.0) + r.tcp_mbit.unwrap_or(0.0);
        let mut d = r.added_ms.clone();
        println!(
            "  {:<27} {:5.1}      {}      {}       {}          {:4.2}                 {:7.1} {:6.1}  {:10.1}%",
            r.phase,
            r.secs,
            cell(r.utp_mbit),
            cell(r.tcp_mbit),
            cell(r.wire_mbit),
            goodput / LINK_MBIT,
            probe::quantile(&mut d, 0.5),
            probe::quantile(&mut d, 0.95),
            r.probes_lost * 100.0
        );
    }
    for r in rows {
        if let (Some(u), Some(t)) = (r.utp_mbit, r.tcp_mbit) {
            println!("  {}: uTP has {:.2} of the goodput (uTP / TCP = {:.2})", r.phase, u / (u + t), u / t);
        }
    }
}
