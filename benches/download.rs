//! Download throughput over loopback TCP from one libtorrent seeder: `kadswarm get` next to a
//! libtorrent leecher and rqbit downloading the same torrent from the same seeder, alternated,
//! several runs each, medians and ratios; peak RSS of each client; and kadswarm seed ->
//! kadswarm get next to this machine's SHA-1 speed (the physical limit of a verified
//! download). A measurement, never an assertion.
//!
//!     cargo bench --bench download                     # 512 MiB, 3 runs each
//!     cargo bench --bench download -- --size-mib 128 --runs 1
//!
//! rqbit is used when `rqbit` is on PATH (`cargo install rqbit`); libtorrent when python3 can
//! import it. Every process is killed by PID when its guard drops; only 127.0.8x.1 is used.

// Benches measure real time.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha1::{Digest, Sha1};

const LT_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_peer.py");
/// The longest one download may take before the run is abandoned.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// A child killed and reaped when dropped; its stdout lines collected by a thread.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> anyhow::Result<Proc> {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let out = child.stdout.take().context("piped stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut v) = sink.lock() {
                    v.push(line);
                }
            }
        });
        Ok(Proc { child, lines })
    }

    fn find(&self, pick: impl Fn(&serde_json::Value) -> Option<String>) -> Option<String> {
        let lines = self.lines.lock().ok()?;
        lines.iter().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|v| pick(&v))
    }

    /// Peak resident memory so far, from /proc (kB).
    fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Options {
    size_mib: usize,
    runs: usize,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options { size_mib: 512, runs: 3 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size-mib" => o.size_mib = args.next().context("--size-mib N")?.parse()?,
            "--runs" => o.runs = args.next().context("--runs N")?.parse()?,
            "--bench" => {}
            "--help" | "-h" => {
                println!("download bench: --size-mib N (default 512), --runs N (default 3)");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

fn kadswarm_bin() -> PathBuf {
    option_env!("CARGO_BIN_EXE_kadswarm")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/kadswarm"))
}

fn free_addr(ip: &str) -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind((ip, 0))?;
    Ok(probe.local_addr()?)
}

fn have_python_libtorrent() -> bool {
    Command::new("python3").args(["-c", "import libtorrent"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn have_rqbit() -> bool {
    Command::new("rqbit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two files of pseudo-random bytes, written once.
fn make_payload(dir: &Path, size: usize) -> anyhow::Result<PathBuf> {
    let root = dir.join("bench-payload");
    std::fs::create_dir_all(&root)?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for (name, len) in [("part1.bin", size / 2), ("part2.bin", size - size / 2)] {
        let mut f = std::io::BufWriter::new(std::fs::File::create(root.join(name))?);
        let mut left = len;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            for chunk in buf.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
            let n = left.min(buf.len());
            f.write_all(&buf[..n])?;
            left -= n;
        }
    }
    Ok(root)
}

/// MB/s of SHA-1 over `bytes` of data on this machine (the payload, from the page cache).
fn sha1_rate(root: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut total = 0u64;
    for name in ["part1.bin", "part2.bin"] {
        let data = std::fs::read(root.join(name))?;
        let mut h = Sha1::new();
        for piece in data.chunks(1 << 20) {
            h.update(piece);
        }
        std::hint::black_box(h.finalize());
        total += data.len() as u64;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// Waits until `done` says the download finished; returns seconds and peak RSS (MiB).
fn measure(mut p: Proc, done: impl Fn(&mut Proc) -> bool) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut peak = 0u64;
    loop {
        if let Some(kb) = p.peak_rss_kb() {
            peak = peak.max(kb);
        }
        if done(&mut p) {
            return Ok((started.elapsed().as_secs_f64(), peak as f64 / 1024.0));
        }
        if started.elapsed() > RUN_LIMIT {
            bail!("download did not finish in {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_kadswarm(magnet: &str, out: &Path, seeder: SocketAddr) -> anyhow::Result<(f64, f64)> {
    let bind = free_addr("127.0.82.1")?;
    let mut cmd = Command::new(kadswarm_bin());
    // The rows compare TCP downloads: without this, uTP would be tried first (and waited for).
    cmd.args(["get", magnet, "--no-dht", "-q", "--transport", "tcp", "--output"]).arg(out).args([
        "--bind",
        &bind.to_string(),
        "--peer",
        &seeder.to_string(),
    ]);
    let p = Proc::spawn(&mut cmd)?;
    measure(p, |p| matches!(p.child.try_wait(), Ok(Some(_))))
}

fn run_libtorrent(magnet: &str, out: &Path, seeder: SocketAddr) -> anyhow::Result<(f64, f64)> {
    let mut cmd = Command::new("python3");
    cmd.args([LT_PEER, "--bind", "127.0.83.1:0", "--magnet", magnet, "--save"]).arg(out).args([
        "--peer",
        &seeder.to_string(),
        "--duration",
        "900",
    ]);
    let p = Proc::spawn(&mut cmd)?;
    measure(p, |p| p.find(|e| (e["event"] == "finished").then(String::new)).is_some())
}

fn run_rqbit(magnet: &str, out: &Path, seeder: SocketAddr) -> anyhow::Result<(f64, f64)> {
    let mut cmd = Command::new("rqbit");
    cmd.env("RUST_LOG", "error")
        // Nothing but the seeder: no DHT, trackers, LSD multicast or UPnP leave loopback.
        .args([
            "--disable-dht",
            "--disable-dht-persistence",
            "--disable-trackers",
            "--disable-lsd",
            "--disable-upnp-port-forward",
            "--listen-ip",
            "127.0.85.1",
            "download",
            "--exit-on-finish",
            "--initial-peers",
            &seeder.to_string(),
            "-o",
        ])
        .arg(out)
        .arg(magnet);
    let p = Proc::spawn(&mut cmd)?;
    measure(p, |p| matches!(p.child.try_wait(), Ok(Some(_))))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    let bin = kadswarm_bin();
    if !bin.exists() {
        bail!("{} is missing: run `cargo build --release` first", bin.display());
    }
    if !have_python_libtorrent() {
        bail!("python3 cannot import libtorrent: pip install libtorrent==2.1.1");
    }
    let work = std::env::temp_dir().join(format!("kadswarm-download-bench-{}", std::process::id()));
    let result = bench(&o, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(o: &Options, work: &Path) -> anyhow::Result<()> {
    let size = o.size_mib << 20;
    eprintln!("writing a {} MiB payload ...", o.size_mib);
    let payload = make_payload(work, size)?;
    let sha = sha1_rate(&payload)?;
    eprintln!("SHA-1 on this machine: {sha:.0} MB/s");

    let mut seed_cmd = Command::new("python3");
    seed_cmd.args([LT_PEER, "--bind", "127.0.81.1:0", "--seed"]).arg(&payload).args(["--duration", "3600"]);
    let seeder = Proc::spawn(&mut seed_cmd)?;
    let wait = Instant::now();
    let (port, magnet) = loop {
        let port = seeder.find(|e| (e["event"] == "ready").then(|| e["port"].to_string()));
        let magnet = seeder.find(|e| (e["event"] == "torrent").then(|| e["magnet"].as_str().unwrap_or("").to_string()));
        let seeding = seeder.find(|e| (e["event"] == "finished").then(String::new)).is_some();
        if let (Some(p), Some(m), true) = (port, magnet, seeding) {
            break (p.parse::<u16>()?, m);
        }
        if wait.elapsed() > RUN_LIMIT {
            bail!("the libtorrent seeder did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seeder_addr: SocketAddr = format!("127.0.81.1:{port}").parse()?;

    type Runner = fn(&str, &Path, SocketAddr) -> anyhow::Result<(f64, f64)>;
    let mut clients: Vec<(&str, Runner)> = vec![("kadswarm", run_kadswarm), ("libtorrent", run_libtorrent)];
    if have_rqbit() {
        clients.push(("rqbit", run_rqbit));
    } else {
        eprintln!("rqbit not on PATH: its row is skipped (cargo install rqbit)");
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    for run in 0..o.runs {
        for (i, (name, runner)) in clients.iter().enumerate() {
            let out = work.join(format!("out-{name}-{run}"));
            std::fs::create_dir_all(&out)?;
            let (secs, peak) = runner(&magnet, &out, seeder_addr).with_context(|| format!("{name} run {run}"))?;
            let ok = std::fs::read(out.join("bench-payload/part2.bin"))? == std::fs::read(payload.join("part2.bin"))?;
            eprintln!(
                "run {run}: {name:<10} {secs:6.2} s  {:7.1} MB/s  peak RSS {peak:6.1} MiB  {}",
                size as f64 / secs / 1e6,
                if ok { "data ok" } else { "DATA DIFFERS" }
            );
            std::fs::remove_dir_all(&out)?;
            times[i].push(secs);
            rss[i].push(peak);
        }
    }
    println!("\n{} MiB from one libtorrent seeder over loopback, median of {} runs:", o.size_mib, o.runs);
    let rates: Vec<f64> = times.iter_mut().map(|t| size as f64 / median(t) / 1e6).collect();
    for (i, (name, _)) in clients.iter().enumerate() {
        println!("  {name:<10} {:7.1} MB/s   peak RSS {:6.1} MiB", rates[i], median(&mut rss[i]));
    }
    for (i, (name, _)) in clients.iter().enumerate().skip(1) {
        println!("  kadswarm / {name}: {:.2}", rates[0] / rates[i]);
    }
    drop(seeder);

    // kadswarm seed -> kadswarm get: how close a verified download comes to SHA-1 speed.
    let seed_addr = free_addr("127.0.84.1")?;
    let mut cmd = Command::new(kadswarm_bin());
    cmd.arg("seed").arg(&payload).args(["--no-dht", "-q", "--transport", "tcp", "--bind", &seed_addr.to_string()]);
    let kseed = Proc::spawn(&mut cmd)?;
    let wait = Instant::now();
    let magnet = loop {
        if let Some(m) = kseed.lines.lock().ok().and_then(|l| l.first().cloned()) {
            break m;
        }
        if wait.elapsed() > RUN_LIMIT {
            bail!("kadswarm seed printed no magnet");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut k2k = Vec::new();
    for run in 0..o.runs {
        let out = work.join(format!("out-k2k-{run}"));
        std::fs::create_dir_all(&out)?;
        let (secs, _) = run_kadswarm(&magnet, &out, seed_addr)?;
        std::fs::remove_dir_all(&out)?;
        k2k.push(size as f64 / secs / 1e6);
    }
    let k2k = median(&mut k2k);
    println!("  kadswarm seed -> kadswarm get: {k2k:.1} MB/s = {:.2} of SHA-1 speed ({sha:.0} MB/s)", k2k / sha);
    drop(kseed);
    Ok(())
}
