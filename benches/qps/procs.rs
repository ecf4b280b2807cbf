//! The processes of the qps bench: the servers it measures, each pinned to one CPU and killed
//! by its PID when done. The echo server and CPU accounting live in `benches/common/`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};

use crate::{Options, Server};

/// The CPU every server is pinned to; the generator gets the others.
pub const SERVER_CPU: usize = 0;
/// Longest wait for a server to say where it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of a server's output kept to explain a failure.
const TAIL_LINES: usize = 20;

/// A server process, killed (by its PID) and reaped when dropped, on error paths too.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    pub fn tail(&self) -> String {
        self.tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(server: Server, o: &Options, pinned: bool) -> anyhow::Result<ServerProcess> {
    let (program, args, on_stderr): (PathBuf, Vec<String>, bool) = match server {
        Server::Kadswarm => {
            let bin = kadswarm_binary(o)?;
            let limit = o.rate_limit.to_string();
            let burst = o.rate_limit.max(1).to_string();
            let args =
                ["node", "--bind", "127.0.50.1:0", "--no-bootstrap", "--rate-limit", &limit, "--rate-burst", &burst];
            (bin, args.map(String::from).to_vec(), true)
        }
        Server::Libtorrent => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/lt_dht_server.py");
            // The script exits on its own after this, should the bench die without killing it.
            let lifetime = (o.warmup + o.secs + 60.0).ceil();
            let args = vec![
                script.display().to_string(),
                "--bind".into(),
                "127.0.51.1:0".into(),
                "--duration".into(),
                lifetime.to_string(),
            ];
            (PathBuf::from(&o.python), args, false)
        }
        Server::Echo => {
            let me = std::env::current_exe().context("locating the bench binary")?;
            (me, vec!["--echo-server".into(), "127.0.52.1:0".into()], false)
        }
    };
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(SERVER_CPU.to_string()).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    cmd.args(&args).env("NO_COLOR", "1").stdin(Stdio::null());
    if on_stderr {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = cmd.spawn().with_context(|| format!("running {}", program.display()))?;
    let pipe: Box<dyn Read + Send> = match (child.stdout.take(), child.stderr.take()) {
        (Some(out), _) if !on_stderr => Box::new(out),
        (_, Some(err)) => Box::new(err),
        _ => bail!("no output pipe"),
    };
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let (ready_tx, ready_rx) = mpsc::channel();
    watch_output(pipe, tail.clone(), ready_tx);
    // From here on the guard owns the child: any early return kills it.
    let mut process = ServerProcess { child, addr: SocketAddr::from(([0, 0, 0, 0], 0)), tail };
    match ready_rx.recv_timeout(READY_TIMEOUT) {
        Ok(addr) => process.addr = addr,
        Err(_) => bail!("{} did not report a listening address; its last output:\n{}", server.name(), process.tail()),
    }
    Ok(process)
}

/// Reads a server's output line by line until it closes (when the server exits): the first
/// listening address goes to `ready`, the last lines to `tail`. Draining the pipe keeps a
/// chatty server from blocking on a full one.
fn watch_output(pipe: Box<dyn Read + Send>, tail: Arc<Mutex<VecDeque<String>>>, ready: mpsc::Sender<SocketAddr>) {
    std::thread::spawn(move || {
        let mut ready = Some(ready);
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = listening_addr(&line) {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(addr);
                }
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() >= TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    });
}

/// `... listening on 127.0.50.1:41234 ...` (kadswarm, echo) or `{"event": "ready", "addr": ...}`
/// (the libtorrent script).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        return if v["event"] == "ready" { v["addr"].as_str()?.parse().ok() } else { None };
    }
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr: String = rest.chars().take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c)).collect();
    addr.parse().ok()
}

/// The kadswarm binary: --kadswarm, else the one cargo built next to this bench.
fn kadswarm_binary(o: &Options) -> anyhow::Result<PathBuf> {
    let bin = match (&o.kadswarm, option_env!("CARGO_BIN_EXE_kadswarm")) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join("release/kadswarm")
        }
    };
    if !bin.is_file() {
        bail!("no kadswarm binary at {}: run `cargo build --release` first", bin.display());
    }
    warn_if_stale(&bin);
    Ok(bin)
}

/// A binary older than the sources would measure yesterday's code; say so.
fn warn_if_stale(bin: &Path) {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else { return };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![src];
    let mut newest = SystemTime::UNIX_EPOCH;
    // A few hundred files at most; the cap keeps a strange tree from stalling the bench.
    for _ in 0..1000 {
        let Some(dir) = dirs.pop() else { break };
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(e.path());
            } else if let Ok(m) = meta.modified() {
                newest = newest.max(m);
            }
        }
    }
    if newest > built {
        eprintln!("qps: warning: {} is older than src/; rebuild with `cargo build --release`", bin.display());
    }
}

/// Restricts this process to `cpus` (a taskset list), so that the generator stays off the
/// servers' CPU. Threads started later inherit the mask.
pub fn pin_self(cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
