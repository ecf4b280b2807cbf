//! The processes of the download benches (`download`, `ledbat_netns`): a child killed by its
//! PID and reaped when its guard drops, its stdout lines kept with their arrival times, its
//! CPU time and peak memory read from `/proc`; waiting for a download to end; and the
//! pseudo-random payload the seeders serve.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::procstat;

/// How often a running download is looked at (exit, peak RSS, CPU time).
const POLL: Duration = Duration::from_millis(20);

/// A stdout line and when the bench read it.
pub type Line = (Instant, String);

/// A child killed (by its PID) and reaped when dropped, on error paths too; its stdout lines
/// collected by a thread. Its stderr is dropped unless `BENCH_STDERR=1` is set.
pub struct Proc {
    pub child: Child,
    lines: Arc<Mutex<Vec<Line>>>,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Proc> {
        let stderr = if std::env::var_os("BENCH_STDERR").is_some() { Stdio::inherit() } else { Stdio::null() };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("running {:?}", cmd.get_program()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let out = child.stdout.take().context("piped stdout")?;
        // Reading until the pipe closes also keeps a chatty child from blocking on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut v) = sink.lock() {
                    v.push((Instant::now(), line));
                }
            }
        });
        Ok(Proc { child, lines })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first stdout line `pick` maps to something.
    pub fn find<T>(&self, pick: impl Fn(&serde_json::Value) -> Option<T>) -> Option<T> {
        let lines = self.lines.lock().ok()?;
        lines.iter().filter_map(|(_, l)| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|v| pick(&v))
    }

    /// Every stdout line that parses as JSON, with its arrival time.
    pub fn json_lines(&self) -> Vec<(Instant, serde_json::Value)> {
        let Ok(lines) = self.lines.lock() else { return Vec::new() };
        lines.iter().filter_map(|(t, l)| Some((*t, serde_json::from_str(l).ok()?))).collect()
    }

    pub fn first_line(&self) -> Option<String> {
        self.lines.lock().ok()?.first().map(|(_, l)| l.clone())
    }

    /// Waits up to `limit` for the first stdout line.
    pub fn wait_first_line(&self, limit: Duration) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            if let Some(l) = self.first_line() {
                return Ok(l);
            }
            if started.elapsed() > limit {
                bail!("{:?} printed nothing in {limit:?}", self.pid());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Peak resident memory so far (kB).
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one download cost: wall time from process start until the download was complete,
/// peak RSS, CPU time of the downloader and of the seeder.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub secs: f64,
    pub peak_rss_mib: f64,
    pub cpu_secs: f64,
    pub seeder_cpu_secs: f64,
    /// A process that reports its download complete with `{"event":"done"}` and then exits
    /// (kadswarm get): the seconds from that report to its exit, which it spends making the
    /// payload durable (fdatasync) before recording the pieces verified. `secs` and
    /// `cpu_secs` end at the report, as libtorrent's end at its `finished` alert; rqbit calls
    /// no fsync at all, so the kernel's writeback of its payload is never charged to it.
    pub flush_secs: Option<f64>,
}

/// How a download says it is done.
pub enum Done {
    /// The process exits (kadswarm get, rqbit download --exit-on-finish).
    Exit,
    /// The process prints `{"event":"finished"}` and keeps running (the libtorrent script).
    FinishedEvent,
}

/// Waits until `p` is done, at most `limit`. The downloader's CPU time is read when it is
/// done: for an exiting process, from its zombie before it is reaped, so it is final.
pub fn measure(p: &mut Proc, done: Done, seeder_pid: u32, limit: Duration) -> anyhow::Result<Measured> {
    let tick = procstat::clock_ticks();
    let seeder_before = procstat::cpu_seconds(seeder_pid, tick).unwrap_or(0.0);
    let started = Instant::now();
    let mut peak = 0u64;
    let mut cpu = 0.0;
    // (when, CPU seconds so far): one sample per poll, to read the CPU at a `done` report.
    let mut cpu_samples: Vec<(Instant, f64)> = Vec::new();
    loop {
        if let Some(kb) = p.peak_rss_kb() {
            peak = peak.max(kb);
        }
        let state = procstat::state_and_cpu(p.pid(), tick);
        if let Some((_, c)) = state {
            cpu = c;
            cpu_samples.push((Instant::now(), c));
        }
        let finished = match done {
            Done::Exit => matches!(state, Some(('Z', _)) | None),
            Done::FinishedEvent => p.find(|e| (e["event"] == "finished").then_some(())).is_some(),
        };
        if finished {
            let mut secs = started.elapsed().as_secs_f64();
            let mut flush_secs = None;
            if let Done::Exit = done {
                let status = p.child.wait()?;
                if !status.success() {
                    bail!("the downloader exited with {status}");
                }
                let reported = p.json_lines().into_iter().find(|(_, e)| e["event"] == "done");
                if let Some((at, _)) = reported {
                    // The CPU of the flush (the kernel writes the payload back in the caller's
                    // context) is left out as its time is: the first sample taken after the
                    // report, at most one poll late.
                    if let Some((_, c)) = cpu_samples.iter().find(|(t, _)| *t >= at) {
                        cpu = *c;
                    }
                    let at = at.saturating_duration_since(started).as_secs_f64().min(secs);
                    flush_secs = Some(secs - at);
                    secs = at;
                }
            }
            let seeder_cpu_secs = procstat::cpu_seconds(seeder_pid, tick).unwrap_or(0.0) - seeder_before;
            let peak_rss_mib = peak as f64 / 1024.0;
            return Ok(Measured { secs, peak_rss_mib, cpu_secs: cpu, seeder_cpu_secs, flush_secs });
        }
        if started.elapsed() > limit {
            bail!("download did not finish in {limit:?}");
        }
        std::thread::sleep(POLL);
    }
}

pub fn kadswarm_bin() -> PathBuf {
    option_env!("CARGO_BIN_EXE_kadswarm")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/kadswarm"))
}

/// True when this kadswarm binary knows `--transport` (the uTP driver is built in).
pub fn kadswarm_has_transport() -> bool {
    Command::new(kadswarm_bin())
        .args(["get", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--transport"))
}

pub fn free_addr(ip: &str) -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind((ip, 0))?;
    Ok(probe.local_addr()?)
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Two files of pseudo-random bytes (incompressible, so no layer can cheat), written once.
pub fn make_payload(dir: &Path, size: usize) -> anyhow::Result<PathBuf> {
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

/// [`same_payload`], asked again every 200 ms for up to `limit` while it is false: libtorrent
/// reports a torrent finished once every piece has passed its hash check, which it may run on
/// blocks still queued for the disk, so its files can lag the `finished` event by a moment
/// (and a leecher killed at once would lose that tail).
pub fn settled_same_payload(out: &Path, payload: &Path, limit: Duration) -> anyhow::Result<bool> {
    let started = Instant::now();
    loop {
        if same_payload(out, payload).unwrap_or(false) {
            return Ok(true);
        }
        if started.elapsed() > limit {
            return same_payload(out, payload);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True when `out` holds the payload byte for byte.
pub fn same_payload(out: &Path, payload: &Path) -> anyhow::Result<bool> {
    for name in ["part1.bin", "part2.bin"] {
        let got = std::fs::read(out.join("bench-payload").join(name)).with_context(|| format!("reading {name}"))?;
        if got != std::fs::read(payload.join(name))? {
            return Ok(false);
        }
    }
    Ok(true)
}
