//! What the process-level tests share: child processes killed by PID when dropped, with
//! their output captured line by line; scratch directories; loopback addresses and ports.
//! Every wait is bounded.

// These helpers drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod crawl_out;
pub mod krpc;
pub mod netns;
pub mod swarm;

pub const KADSWARM: &str = env!("CARGO_BIN_EXE_kadswarm");
pub const LT_NODE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_node.py");
pub const LT_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt_peer.py");
/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Processes

/// How long, after a process exited, its output may take to reach end of file: at once,
/// unless a process it started still holds the pipes.
const OUTPUT_EOF_WAIT: Duration = Duration::from_secs(5);

/// A child process, killed (SIGKILL) and reaped when dropped. Its stdout and stderr are read
/// line by line into memory by two threads; on a failing test the drop prints them.
pub struct Proc {
    pub name: String,
    pub child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Disconnected once both reader threads reached end of file: every line is in.
    output_done: mpsc::Receiver<()>,
}

impl Proc {
    pub fn spawn(name: &str, program: &str, args: &[String]) -> Proc {
        Proc::spawn_env(name, program, args, &[])
    }

    /// [`Proc::spawn`] with environment variables set for the child.
    pub fn spawn_env(name: &str, program: &str, args: &[String], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args).env("RUST_BACKTRACE", "0").envs(env.iter().copied());
        Proc::spawn_command(name, cmd)
    }

    /// Starts `cmd` (its program, arguments and environment as the caller set them) with
    /// stdin closed and stdout and stderr piped.
    pub fn spawn_command(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        let (done, output_done) = mpsc::channel();
        let stdout = collect_lines(child.stdout.take().expect("piped stdout"), done.clone());
        let stderr = collect_lines(child.stderr.take().expect("piped stderr"), done);
        Proc { name: name.to_string(), child, stdout, stderr, output_done }
    }

    pub fn kadswarm(name: &str, args: &[String]) -> Proc {
        Proc::spawn(name, KADSWARM, args)
    }

    pub fn lt_node(name: &str, args: &[String]) -> Proc {
        let mut full = vec![LT_NODE.to_string()];
        full.extend_from_slice(args);
        Proc::spawn(name, "python3", &full)
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The JSON events lt_node.py printed so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout_lines().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Panics (with the process's output) if it has already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited early with {status}\n{}", self.name, self.dump());
        }
    }

    /// Waits until `pick` returns something for one of the events, at most `WAIT`.
    pub fn wait_event<T>(&mut self, what: &str, pick: impl Fn(&serde_json::Value) -> Option<T>) -> T {
        self.wait_event_for(what, WAIT, pick)
    }

    /// Waits until `pick` returns something for one of the JSON lines on stdout, at most `limit`.
    pub fn wait_event_for<T>(
        &mut self,
        what: &str,
        limit: Duration,
        pick: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = self.events().iter().find_map(&pick) {
                return found;
            }
            self.assert_running();
            assert!(Instant::now() < deadline, "{}: no {what} within {limit:?}\n{}", self.name, self.dump());
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The magnet URI a `kadswarm seed` prints as the first line of stdout (CLI contract),
    /// waited for at most `WAIT`.
    pub fn wait_magnet(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.stdout_lines().first() {
                assert!(line.starts_with("magnet:?xt=urn:btih:"), "first line is not a magnet: {line}");
                return line.clone();
            }
            self.assert_running();
            assert!(Instant::now() < deadline, "{}: no magnet printed\n{}", self.name, self.dump());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a line on stderr contains `needle`, at most `WAIT`.
    pub fn wait_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stderr_lines().iter().any(|l| l.contains(needle)) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{}: no `{needle}` on stderr within {WAIT:?}\n{}",
                self.name,
                self.dump()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a TCP connection to `addr` (where the process listens) is accepted, at
    /// most `WAIT`. The probe connection is closed at once, before any handshake.
    pub fn wait_tcp_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{}: nothing listens on {addr} after {WAIT:?}\n{}",
                self.name,
                self.dump()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself, at most `limit` (then fails the test), and
    /// for its reader threads to take in the last lines it wrote.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.wait_output_eof();
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {limit:?}\n{}", self.name, self.dump());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns once both pipes reached end of file (the readers hold every line), or after
    /// `OUTPUT_EOF_WAIT` if something the process started keeps them open.
    fn wait_output_eof(&self) {
        // Nothing is ever sent: the channel disconnects when both readers are gone.
        if self.output_done.recv_timeout(OUTPUT_EOF_WAIT) != Err(RecvTimeoutError::Disconnected) {
            eprintln!("{}: output still open {OUTPUT_EOF_WAIT:?} after it exited", self.name);
        }
    }

    /// Sends SIGTERM and waits (at most 15 s) for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let ok =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill").success();
        assert!(ok, "kill -TERM {} failed", self.child.id());
        self.wait_exit(Duration::from_secs(15))
    }

    /// [`Proc::terminate`], or the exit status if it already ended by itself.
    pub fn terminate_if_running(&mut self) -> std::process::ExitStatus {
        match self.child.try_wait().expect("try_wait") {
            Some(_) => self.wait_exit(Duration::from_secs(1)),
            None => self.terminate(),
        }
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Sends SIGKILL, as a crash or a power cut would stop it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn lt_peer(name: &str, args: &[String]) -> Proc {
        let mut full = vec![LT_PEER.to_string()];
        full.extend_from_slice(args);
        Proc::spawn(name, "python3", &full)
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for `{"event":"ready"}` and returns the UDP port libtorrent listens on.
    pub fn wait_ready(&mut self) -> u16 {
        self.wait_event("ready event", |e| {
            (e["event"] == "ready").then(|| e["dht_port"].as_u64().expect("dht_port") as u16)
        })
    }

    pub fn dump(&self) -> String {
        let tail = |v: &Arc<Mutex<Vec<String>>>| {
            let v = v.lock().unwrap();
            v[v.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- {} stdout (tail) ---\n{}\n--- {} stderr (tail) ---\n{}",
            self.name,
            tail(&self.stdout),
            self.name,
            tail(&self.stderr)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("{}", self.dump());
        }
    }
}

/// Reads `pipe` line by line into the returned list until end of file (or a read error),
/// then drops `done`.
pub fn collect_lines(pipe: impl Read + Send + 'static, done: mpsc::Sender<()>) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            match line {
                Ok(l) => sink.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
        drop(done);
    });
    lines
}

/// A scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("kadswarm-{tag}-{}-{:x}", std::process::id(), random_u64()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// For a test this machine cannot run: prints why, and the caller returns (the test passes).
/// Where the environment variable CI is set it fails the test instead: CI must run every test,
/// and a skip that passes there hides a missing install step.
pub fn skip(test: &str, why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}, and CI is set");
    eprintln!("SKIPPED {test}: {why}");
}

/// True when libtorrent's python bindings can be imported. Without them the test fails under
/// CI and is skipped (with a note) elsewhere.
pub fn libtorrent_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import libtorrent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        skip(test, "python3 cannot import libtorrent (pip install libtorrent)");
    }
    ok
}

// ---------------------------------------------------------------------------------------------
// Addresses and randomness

pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

pub fn random_id() -> [u8; 20] {
    let mut id = [0u8; 20];
    for chunk in id.chunks_mut(8) {
        let r = random_u64().to_be_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    id
}

pub fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, n, 1)
}

/// A port free for both UDP and TCP on `ip` (each node has an address of its own, so nothing
/// else in these tests competes for it).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ip, 0)).expect("bind probe socket");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn s(x: impl ToString) -> String {
    x.to_string()
}
