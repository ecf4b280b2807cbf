//! The many-peer scenarios of the download bench (issue 12): one downloader from N libtorrent
//! seeders at once (`--scenario many-seeders`), and one seeder serving N libtorrent leechers at
//! once (`--scenario many-leechers`), kadswarm next to libtorrent in the same role, alternated.
//!
//! The N libtorrent sessions run in one Python process (`benches/download/lt_many.py`), session
//! i on 127.0.(10 + i).1; the process under test runs alone and only its CPU time is counted.
//! Leechers run without extensions (no peer exchange), so each knows the seeder alone and every
//! byte they get comes from it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::clients::{self, Transport, RUN_LIMIT, SETTLE};
use crate::procs::{self, free_addr, kadswarm_bin, measure, median, Done, Measured, Proc};
use crate::procstat;

const LT_MANY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/download/lt_many.py");
const LT_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_peer.py");
/// Third octet of the first libtorrent session's address: sessions use 127.0.10.1 upwards.
pub const FIRST_NET: u8 = 10;
/// At most this many sessions, so that they stay within 127.0.10.1 .. 127.0.49.1.
pub const MAX_PEERS: usize = 40;

/// What the many-peer scenarios are run with.
pub struct ManyOptions {
    pub peers: usize,
    pub size_mib: usize,
    pub runs: usize,
    pub transport: Transport,
    pub piece_bytes: usize,
    /// `unchoke_slots_limit` of the libtorrent seeder under test (-1: no limit).
    pub lt_unchoke_slots: i64,
}

/// The machine's 1-minute load average, to print next to the figures.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

/// The N libtorrent sessions of one scenario, with the addresses they listen on.
struct Swarm {
    proc: Proc,
    peers: Vec<String>,
}

fn lt_many(o: &ManyOptions, role: &[String]) -> anyhow::Result<Swarm> {
    let mut cmd = Command::new("python3");
    cmd.arg(LT_MANY)
        .args(["--first", &FIRST_NET.to_string(), "--count", &o.peers.to_string()])
        .args(["--transport", o.transport.name()])
        .args(role);
    let proc = Proc::spawn(&mut cmd)?;
    let peers = wait_event(&proc, "ready", |e| {
        e["peers"].as_array().map(|a| a.iter().filter_map(|p| p.as_str().map(String::from)).collect::<Vec<_>>())
    })?;
    Ok(Swarm { proc, peers })
}

/// Waits (at most `RUN_LIMIT`) for the first event named `name` that `pick` maps to something;
/// fails at once on an `error` event or when the process is gone.
fn wait_event<T>(p: &Proc, name: &str, pick: impl Fn(&serde_json::Value) -> Option<T>) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(found) = p.find(|e| if e["event"] == name { pick(e) } else { None }) {
            return Ok(found);
        }
        if let Some(msg) = p.find(|e| (e["event"] == "error").then(|| e["message"].to_string())) {
            bail!("process {} reported an error: {msg}", p.pid());
        }
        if procstat::state_and_cpu(p.pid(), 100.0).is_none_or(|(s, _)| s == 'Z') {
            bail!("process {} exited before its {name} event", p.pid());
        }
        if started.elapsed() > RUN_LIMIT {
            bail!("no {name} event from {} in {RUN_LIMIT:?}", p.pid());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rate(size_mib: usize, m: &Measured) -> f64 {
    (size_mib << 20) as f64 / m.secs / 1e6
}

/// Scenario many-seeders: N libtorrent seeders of one payload; `kadswarm get` and a libtorrent
/// leecher (`lt_peer.py`, its own process) each download its magnet from all N at once, given
/// every address with `--peer`, no DHT, no peer exchange, no LSD.
pub fn many_seeders(o: &ManyOptions, work: &Path, payload: &Path) -> anyhow::Result<()> {
    eprintln!("starting {} libtorrent seeders ...", o.peers);
    let swarm =
        lt_many(o, &[s("--seed"), payload.display().to_string(), s("--piece-size"), o.piece_bytes.to_string()])?;
    let magnet = wait_event(&swarm.proc, "torrent", |e| e["magnet"].as_str().map(String::from))?;
    wait_event(&swarm.proc, "seeding", |_| Some(()))?;
    let load_before = loadavg();
    let names = ["kadswarm", "libtorrent"];
    let mut measured: Vec<Vec<Measured>> = vec![Vec::new(); names.len()];
    for run in 0..o.runs {
        for (i, name) in names.iter().enumerate() {
            let out = clients::fresh_dir(work, &format!("out-many-{name}-{run}"))?;
            let mut p = match i {
                0 => {
                    let mut cmd = Command::new(kadswarm_bin());
                    cmd.args(["get", &magnet, "--no-dht", "--no-pex", "--no-lsd", "-q", "--json", "--output"])
                        .arg(&out)
                        .args(["--bind", &free_addr("127.0.82.1")?.to_string()])
                        .args(clients::kadswarm_transport_args(o.transport)?);
                    for peer in &swarm.peers {
                        cmd.args(["--peer", peer]);
                    }
                    Proc::spawn(&mut cmd)?
                }
                _ => {
                    let mut cmd = Command::new("python3");
                    cmd.args([LT_PEER, "--transport", o.transport.name(), "--bind", "127.0.83.1:0"])
                        .args(["--magnet", &magnet, "--save"])
                        .arg(&out)
                        .args(["--duration", "900"]);
                    for peer in &swarm.peers {
                        cmd.args(["--peer", peer]);
                    }
                    Proc::spawn(&mut cmd)?
                }
            };
            let done = if i == 0 { Done::Exit } else { Done::FinishedEvent };
            let m = measure(&mut p, done, swarm.proc.pid(), RUN_LIMIT).with_context(|| format!("{name} run {run}"))?;
            // Checked before the downloader is killed: libtorrent's last blocks may still be
            // on their way to the disk when it says finished.
            let ok = procs::settled_same_payload(&out, payload, SETTLE)?;
            drop(p);
            eprintln!(
                "run {run}: {name:<10} from {} seeders {:6.2} s  {:7.1} MB/s  CPU {:5.2} s  seeders' CPU {:5.2} s  peak RSS {:6.1} MiB  {}",
                o.peers,
                m.secs,
                rate(o.size_mib, &m),
                m.cpu_secs,
                m.seeder_cpu_secs,
                m.peak_rss_mib,
                if ok { "data ok" } else { "DATA DIFFERS" }
            );
            std::fs::remove_dir_all(&out)?;
            if !ok {
                bail!("{name} run {run}: the download differs from the payload");
            }
            measured[i].push(m);
        }
    }
    drop(swarm);
    println!(
        "\n{} MiB from {} libtorrent seeders at once over loopback {}, median of {} runs (load {} -> {}):",
        o.size_mib,
        o.peers,
        o.transport.name().to_uppercase(),
        o.runs,
        load_before,
        loadavg()
    );
    let rows: Vec<crate::Row> = measured.iter().map(|m| crate::summarize(o.size_mib, m)).collect();
    for (name, row) in names.iter().zip(&rows) {
        crate::print_row(name, row);
    }
    println!(
        "  kadswarm / libtorrent: {:.2} of the rate, {:.2} of the CPU per MiB, {:.2} of the peak RSS",
        rows[0].mb_s / rows[1].mb_s,
        rows[0].cpu_ms_per_mib / rows[1].cpu_ms_per_mib,
        rows[0].rss_mib / rows[1].rss_mib
    );
    Ok(())
}

/// One seeder's run against N leechers.
#[derive(Debug, Clone)]
struct Served {
    /// From the leechers' start (their sessions listening) to the last one finishing.
    secs: f64,
    /// When the first leecher, and the median one, finished.
    first_secs: f64,
    median_secs: f64,
    /// Payload bytes the leechers received, all from the seeder.
    delivered: u64,
    /// The seeder's CPU time over `secs`.
    cpu_secs: f64,
    peak_rss_mib: f64,
    /// The first and the last leecher's files hold the payload.
    data_ok: bool,
}

/// `kadswarm seed` of `payload` on 127.0.84.1, writing its .torrent to `torrent`.
fn kadswarm_seeder(o: &ManyOptions, payload: &Path, torrent: &Path) -> anyhow::Result<(Proc, String)> {
    let bind = free_addr("127.0.84.1")?;
    let mut cmd = Command::new(kadswarm_bin());
    cmd.arg("seed")
        .arg(payload)
        .args(["--no-dht", "--no-pex", "--no-lsd", "-q", "--bind", &bind.to_string()])
        .args(["--piece-length", &o.piece_bytes.to_string(), "--torrent-out"])
        .arg(torrent)
        .args(clients::kadswarm_transport_args(o.transport)?);
    let p = Proc::spawn(&mut cmd)?;
    p.wait_first_line(RUN_LIMIT)?;
    // The magnet is printed once the torrent is built (and written); give the listener a moment.
    std::thread::sleep(Duration::from_millis(500));
    Ok((p, bind.to_string()))
}

/// The libtorrent script seeding `payload` on 127.0.81.1 with `--unchoke-slots`, writing its
/// .torrent to `torrent`; returned once it seeds.
fn libtorrent_seeder(o: &ManyOptions, payload: &Path, torrent: &Path) -> anyhow::Result<(Proc, String)> {
    let mut cmd = Command::new("python3");
    cmd.args([LT_PEER, "--transport", o.transport.name(), "--bind", "127.0.81.1:0", "--seed"])
        .arg(payload)
        .args(["--piece-size", &o.piece_bytes.to_string(), "--unchoke-slots", &o.lt_unchoke_slots.to_string()])
        .arg("--torrent-out")
        .arg(torrent)
        .args(["--duration", "3600"]);
    let p = Proc::spawn(&mut cmd)?;
    let port = wait_event(&p, "ready", |e| e["port"].as_u64())?;
    wait_event(&p, "finished", |_| Some(()))?;
    Ok((p, format!("127.0.81.1:{port}")))
}

/// N libtorrent leechers of `torrent` from `seeder` (pid `seeder_pid`): waits for every one to
/// finish, polling the seeder's CPU time and peak RSS.
fn serve(
    o: &ManyOptions,
    out: &Path,
    payload: &Path,
    torrent: &Path,
    seeder: &Proc,
    addr: &str,
) -> anyhow::Result<Served> {
    let tick = procstat::clock_ticks();
    let leechers = lt_many(
        o,
        &[s("--torrent"), torrent.display().to_string(), s("--save"), out.display().to_string(), s("--peer"), s(addr)],
    )?;
    // Timed from the sessions listening: Python's start-up is nobody's cost.
    let started = Instant::now();
    let cpu_before = procstat::cpu_seconds(seeder.pid(), tick).context("the seeder is gone")?;
    let mut peak_kb = 0u64;
    loop {
        if let Some(kb) = seeder.peak_rss_kb() {
            peak_kb = peak_kb.max(kb);
        }
        let cpu = procstat::cpu_seconds(seeder.pid(), tick);
        let all = leechers.proc.find(|e| {
            (e["event"] == "all_finished")
                .then(|| e["downloaded"].as_array().map(|a| a.iter().filter_map(|b| b.as_u64()).sum::<u64>()))
                .flatten()
        });
        if let Some(delivered) = all {
            let cpu_secs = cpu.context("the seeder is gone")? - cpu_before;
            let mut finish: Vec<f64> = leechers
                .proc
                .json_lines()
                .iter()
                .filter(|(_, e)| e["event"] == "finished")
                .map(|(t, _)| t.saturating_duration_since(started).as_secs_f64())
                .collect();
            if finish.len() != o.peers {
                bail!("{} of {} leechers said finished", finish.len(), o.peers);
            }
            let secs = finish.iter().copied().fold(0.0, f64::max);
            let first_secs = finish.iter().copied().fold(f64::INFINITY, f64::min);
            let median_secs = median(&mut finish);
            // Every leecher passed libtorrent's piece checks; compare two of them byte for
            // byte, while they still run (see `SETTLE`).
            let data_ok = procs::settled_same_payload(&out.join("0"), payload, SETTLE)?
                && procs::settled_same_payload(&out.join((o.peers - 1).to_string()), payload, SETTLE)?;
            let peak_rss_mib = peak_kb as f64 / 1024.0;
            return Ok(Served { secs, first_secs, median_secs, delivered, cpu_secs, peak_rss_mib, data_ok });
        }
        if let Some(msg) = leechers.proc.find(|e| (e["event"] == "error").then(|| e["message"].to_string())) {
            bail!("a leecher reported an error: {msg}");
        }
        if cpu.is_none() || procstat::state_and_cpu(seeder.pid(), tick).is_some_and(|(s, _)| s == 'Z') {
            bail!("the seeder exited");
        }
        if started.elapsed() > RUN_LIMIT {
            bail!("the leechers did not all finish in {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Scenario many-leechers: `kadswarm seed` and a libtorrent seeder (`lt_peer.py`, its own
/// process), in turn, each serve N libtorrent leechers at once; every run starts a fresh seeder.
pub fn many_leechers(o: &ManyOptions, work: &Path, payload: &Path) -> anyhow::Result<()> {
    let names = ["kadswarm", "libtorrent"];
    let load_before = loadavg();
    let mut measured: Vec<Vec<Served>> = vec![Vec::new(); names.len()];
    for run in 0..o.runs {
        for (i, name) in names.iter().enumerate() {
            let torrent: PathBuf = work.join(format!("many-{name}-{run}.torrent"));
            let (seeder, addr) = match i {
                0 => kadswarm_seeder(o, payload, &torrent)?,
                _ => libtorrent_seeder(o, payload, &torrent)?,
            };
            let out = clients::fresh_dir(work, &format!("out-many-{name}-{run}"))?;
            let m = serve(o, &out, payload, &torrent, &seeder, &addr)
                .with_context(|| format!("{name} seeder run {run}"))?;
            drop(seeder);
            let ok = m.data_ok;
            let expected = (o.peers as u64) * ((o.size_mib as u64) << 20);
            eprintln!(
                "run {run}: {name:<10} seeder to {} leechers: last done {:6.2} s (first {:5.2}, median {:5.2})  {:7.1} MB/s  CPU {:5.2} s  peak RSS {:6.1} MiB  {}{}",
                o.peers,
                m.secs,
                m.first_secs,
                m.median_secs,
                m.delivered as f64 / m.secs / 1e6,
                m.cpu_secs,
                m.peak_rss_mib,
                if ok { "data ok" } else { "DATA DIFFERS" },
                if m.delivered == expected { String::new() } else { format!(", {} bytes received", m.delivered) },
            );
            std::fs::remove_dir_all(&out)?;
            let _ = std::fs::remove_file(&torrent);
            if !ok {
                bail!("{name} seeder run {run}: a leecher's files differ from the payload");
            }
            measured[i].push(m);
        }
    }
    println!(
        "\n{} MiB to {} libtorrent leechers at once over loopback {} (libtorrent seeder's unchoke_slots_limit {}), median of {} runs (load {} -> {}):",
        o.size_mib,
        o.peers,
        o.transport.name().to_uppercase(),
        o.lt_unchoke_slots,
        o.runs,
        load_before,
        loadavg()
    );
    struct Row {
        mb_s: f64,
        cpu_ms_per_mib: f64,
        rss_mib: f64,
    }
    let mut rows = Vec::new();
    for (name, runs) in names.iter().zip(&measured) {
        let med = |f: &dyn Fn(&Served) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        let row = Row {
            mb_s: med(&|m| m.delivered as f64 / m.secs / 1e6),
            cpu_ms_per_mib: med(&|m| m.cpu_secs * 1e3 / (m.delivered as f64 / (1 << 20) as f64)),
            rss_mib: med(&|m| m.peak_rss_mib),
        };
        println!(
            "  {name:<11} seeder {:8.1} MB/s aggregate   CPU {:6.2} ms/MiB   peak RSS {:6.1} MiB   leechers done at {:5.2} s first, {:5.2} s median, {:5.2} s last",
            row.mb_s,
            row.cpu_ms_per_mib,
            row.rss_mib,
            med(&|m| m.first_secs),
            med(&|m| m.median_secs),
            med(&|m| m.secs),
        );
        rows.push(row);
    }
    println!(
        "  kadswarm / libtorrent seeder: {:.2} of the aggregate rate, {:.2} of the CPU per MiB, {:.2} of the peak RSS",
        rows[0].mb_s / rows[1].mb_s,
        rows[0].cpu_ms_per_mib / rows[1].cpu_ms_per_mib,
        rows[0].rss_mib / rows[1].rss_mib
    );
    Ok(())
}

fn s(x: impl ToString) -> String {
    x.to_string()
}
