//! The downloaders and seeders of the loopback download bench, each over one transport: the
//! libtorrent script (`tests/interop/lt_peer.py --transport tcp|utp`, the other one switched off),
//! `kadswarm get` / `kadswarm seed` with `--transport`, and rqbit 9 (uTP behind its
//! `--experimental-enable-utp-listen` flag, TCP switched off with `--disable-tcp-connect`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::procs::{
    free_addr, kadswarm_bin, kadswarm_has_transport, measure, same_payload, settled_same_payload, Done, Measured, Proc,
};

const LT_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_peer.py");
/// The longest one download may take before the run is abandoned.
pub const RUN_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Utp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Utp => "utp",
        }
    }
}

/// `--transport X` for kadswarm. A binary from before the uTP driver only speaks TCP and does
/// not know the option: TCP runs then go without it, uTP runs cannot be made.
pub fn kadswarm_transport_args(t: Transport) -> anyhow::Result<Vec<String>> {
    if kadswarm_has_transport() {
        return Ok(vec!["--transport".into(), t.name().into()]);
    }
    match t {
        Transport::Tcp => Ok(Vec::new()),
        Transport::Utp => bail!("{} has no --transport option: build it with the uTP driver", kadswarm_bin().display()),
    }
}

pub fn have_python_libtorrent() -> bool {
    Command::new("python3").args(["-c", "import libtorrent"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

pub fn have_rqbit() -> bool {
    Command::new("rqbit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A seeder: its process, where it listens, and the magnet of what it serves.
pub struct Seeder {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub magnet: String,
}

/// The libtorrent script seeding `payload` on 127.0.81.1, over `t` only; returns once it
/// has checked its files and seeds.
pub fn libtorrent_seeder(payload: &Path, t: Transport) -> anyhow::Result<Seeder> {
    let mut cmd = Command::new("python3");
    cmd.args([LT_PEER, "--transport", t.name(), "--bind", "127.0.81.1:0", "--seed"])
        .arg(payload)
        .args(["--duration", "7200"]);
    let proc = Proc::spawn(&mut cmd)?;
    let wait = Instant::now();
    loop {
        let port = proc.find(|e| (e["event"] == "ready").then(|| e["port"].as_u64()).flatten());
        let magnet = proc.find(|e| (e["event"] == "torrent").then(|| e["magnet"].as_str().map(String::from)).flatten());
        let seeding = proc.find(|e| (e["event"] == "finished").then_some(())).is_some();
        if let (Some(port), Some(magnet), true) = (port, magnet, seeding) {
            let addr = SocketAddr::from(([127, 0, 81, 1], u16::try_from(port)?));
            return Ok(Seeder { proc, addr, magnet });
        }
        if wait.elapsed() > RUN_LIMIT {
            bail!("the libtorrent seeder did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kadswarm seed` of `payload` on `bind` (it serves TCP and uTP on the same port).
pub fn kadswarm_seeder(payload: &Path, bind: SocketAddr, wrap: Option<&[String]>) -> anyhow::Result<Seeder> {
    let mut cmd = wrapped(wrap, &kadswarm_bin());
    cmd.arg("seed").arg(payload).args(["--no-dht", "-q", "--bind", &bind.to_string()]);
    let proc = Proc::spawn(&mut cmd)?;
    let magnet = proc.wait_first_line(RUN_LIMIT)?;
    // The magnet is printed once the torrent is built; give the listeners a moment.
    std::thread::sleep(Duration::from_millis(500));
    Ok(Seeder { proc, addr: bind, magnet })
}

/// `program`, or `wrap[0] wrap[1..] program` (e.g. `ip netns exec NS`): `ip netns exec` execs
/// the program in place, so the PID stays the program's.
pub fn wrapped(wrap: Option<&[String]>, program: &Path) -> Command {
    match wrap {
        Some([first, rest @ ..]) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        _ => Command::new(program),
    }
}

/// The `kadswarm get` command line, for loopback and for the netns bench.
pub fn kadswarm_get_cmd(
    wrap: Option<&[String]>,
    magnet: &str,
    out: &Path,
    bind: SocketAddr,
    seeder: SocketAddr,
    t: Transport,
) -> anyhow::Result<Command> {
    let mut cmd = wrapped(wrap, &kadswarm_bin());
    cmd.args(["get", magnet, "--no-dht", "-q", "--json", "--output"]).arg(out).args([
        "--bind",
        &bind.to_string(),
        "--peer",
        &seeder.to_string(),
    ]);
    cmd.args(kadswarm_transport_args(t)?);
    Ok(cmd)
}

/// What a run cost, and whether `out` then held the payload byte for byte.
pub type RunResult = anyhow::Result<(Measured, bool)>;

/// How long a finished libtorrent leecher's files may take to hold the whole payload.
pub const SETTLE: Duration = Duration::from_secs(10);

pub fn run_kadswarm(magnet: &str, out: &Path, payload: &Path, seeder: &Seeder, t: Transport) -> RunResult {
    let bind = free_addr("127.0.82.1")?;
    let mut p = Proc::spawn(&mut kadswarm_get_cmd(None, magnet, out, bind, seeder.addr, t)?)?;
    let m = measure(&mut p, Done::Exit, seeder.proc.pid(), RUN_LIMIT)?;
    Ok((m, same_payload(out, payload)?))
}

pub fn run_libtorrent(magnet: &str, out: &Path, payload: &Path, seeder: &Seeder, t: Transport) -> RunResult {
    let mut cmd = Command::new("python3");
    cmd.args([LT_PEER, "--transport", t.name(), "--bind", "127.0.83.1:0", "--magnet", magnet, "--save"])
        .arg(out)
        .args(["--peer", &seeder.addr.to_string(), "--duration", "900"]);
    let mut p = Proc::spawn(&mut cmd)?;
    let m = measure(&mut p, Done::FinishedEvent, seeder.proc.pid(), RUN_LIMIT)?;
    // Compared while it still runs: its last blocks may still be on their way to the disk
    // when it says finished, and would be lost if it were killed at once.
    Ok((m, settled_same_payload(out, payload, SETTLE)?))
}

pub fn run_rqbit(magnet: &str, out: &Path, payload: &Path, seeder: &Seeder, t: Transport) -> RunResult {
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
        ]);
    if t == Transport::Utp {
        // rqbit 9 speaks uTP only when asked (the flag covers outgoing connections too); with
        // TCP connects off, every peer connection is uTP.
        cmd.args(["--experimental-enable-utp-listen", "--disable-tcp-connect", "--disable-tcp-listen"]);
    }
    cmd.args(["download", "--exit-on-finish", "--initial-peers", &seeder.addr.to_string(), "-o"]).arg(out).arg(magnet);
    let mut p = Proc::spawn(&mut cmd)?;
    let m = measure(&mut p, Done::Exit, seeder.proc.pid(), RUN_LIMIT)?;
    Ok((m, same_payload(out, payload)?))
}

/// A fresh output directory for one run.
pub fn fresh_dir(work: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let out = work.join(name);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    Ok(out)
}
