//! The bottleneck of the LEDBAT bench: a sender and a receiver network namespace with private
//! addresses on one /24, and a token-bucket filter (`tc ... tbf`) in the data's way, the queue
//! a home router's uplink would hold. Two layouts:
//!
//! - `Router` (the default): a third namespace between them bridges two veth pairs and holds
//!   the tbf on its port towards the receiver, as a router would. Every flow, TCP or UDP, meets
//!   the same drop-tail queue.
//! - `Direct`: one veth pair, the tbf on the sender's own end. A locally sent TCP flow then
//!   never fills that queue: TCP small queues (TSQ) lets a socket keep only about two segments
//!   in its host's qdisc, so TCP sees ~100 ms of queue and no loss while UDP sees all of it.
//!
//! Both namespaces use Reno, a loss-based AIMD, for TCP (the host's default, BBR, does not fill
//! queues, and is what the namespaces would inherit).
//!
//! Namespaces outlive processes, so they are deleted on every exit path: when the guard drops
//! (errors and panics included), from a signal thread on SIGINT/SIGTERM/SIGHUP, and, for a
//! bench killed outright, by the next run, which sweeps namespaces left by dead bench PIDs.
//! Deleting one first kills, by PID, whatever still runs inside it (`ip netns pids`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context};

pub const SND_IP: &str = "10.77.0.1";
pub const RCV_IP: &str = "10.77.0.2";
/// Every namespace this bench makes is called `PREFIX{snd,rcv}-PID`.
const PREFIX: &str = "ksledbat-";

/// Namespaces of this process, for the signal thread to delete.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// A scratch directory the signal thread removes too.
static SCRATCH: Mutex<Option<PathBuf>> = Mutex::new(None);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Router,
    Direct,
}

/// The namespaces; deleted (with everything running in them) when dropped.
pub struct Netns {
    pub snd: String,
    pub rcv: String,
    /// The bridge between them, in the `Router` layout.
    pub rtr: Option<String>,
    /// The namespace whose qdisc holds the tbf.
    shaper: String,
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Why this machine cannot run the bench, if it cannot: not root, or no `ip netns`.
pub fn unavailable() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false);
    if !root {
        return Some("needs root (network namespaces and tc)".into());
    }
    if run(&["ip", "netns", "list"]).is_err() {
        return Some("`ip netns` is unavailable (iproute2 without netns support?)".into());
    }
    if run(&["tc", "-V"]).is_err() {
        return Some("`tc` is missing (iproute2)".into());
    }
    None
}

impl Netns {
    /// Builds the namespaces: `rate` is the tbf rate (`10mbit`), `burst` and `latency` its
    /// bucket and queue limit (`32kbit`, `1s`).
    pub fn create(layout: Layout, rate: &str, burst: &str, latency: &str) -> anyhow::Result<Netns> {
        sweep_stale();
        let pid = std::process::id();
        let name = |role: &str| format!("{PREFIX}{role}-{pid}");
        let rtr = (layout == Layout::Router).then(|| name("rtr"));
        let shaper = rtr.clone().unwrap_or_else(|| name("snd"));
        let ns = Netns { snd: name("snd"), rcv: name("rcv"), rtr, shaper };
        // Registered before they exist, so that a failure half-way still deletes what was made.
        if let Ok(mut live) = LIVE.lock() {
            live.extend([ns.snd.clone(), ns.rcv.clone()]);
            live.extend(ns.rtr.clone());
        }
        for n in [&ns.snd, &ns.rcv].into_iter().chain(&ns.rtr) {
            run(&["ip", "netns", "add", n])?;
            run(&["ip", "-n", n, "link", "set", "lo", "up"])?;
        }
        // Interface names are at most 15 bytes; the PID keeps parallel runs apart. Each pair is
        // made inside one namespace with its peer placed in the other: the host's namespace
        // never sees either end.
        let (vs, vr) = (format!("kls{pid}"), format!("klr{pid}"));
        let shaped = match &ns.rtr {
            None => {
                veth(&ns.snd, &vs, &ns.rcv, &vr)?;
                vs.clone()
            }
            Some(rtr) => {
                let (bs, br) = (format!("kbs{pid}"), format!("kbr{pid}"));
                veth(&ns.snd, &vs, rtr, &bs)?;
                veth(&ns.rcv, &vr, rtr, &br)?;
                run(&["ip", "-n", rtr, "link", "add", "br0", "type", "bridge"])?;
                for port in [&bs, &br] {
                    run(&["ip", "-n", rtr, "link", "set", port, "master", "br0"])?;
                    run(&["ip", "-n", rtr, "link", "set", port, "up"])?;
                }
                run(&["ip", "-n", rtr, "link", "set", "br0", "up"])?;
                br
            }
        };
        for (n, dev, ip) in [(&ns.snd, &vs, SND_IP), (&ns.rcv, &vr, RCV_IP)] {
            run(&["ip", "-n", n, "addr", "add", &format!("{ip}/24"), "dev", dev])?;
            run(&["ip", "-n", n, "link", "set", dev, "up"])?;
            run(&["ip", "netns", "exec", n, "sysctl", "-q", "-w", "net.ipv4.tcp_congestion_control=reno"])?;
        }
        run(&[
            "ip", "netns", "exec", &ns.shaper, "tc", "qdisc", "add", "dev", &shaped, "root", "tbf", "rate", rate,
            "burst", burst, "latency", latency,
        ])?;
        Ok(ns)
    }

    /// The prefix that runs a program inside a namespace. `ip netns exec` execs the program in
    /// its own place, so the PID of the spawned child is the program's.
    pub fn exec(name: &str) -> Vec<String> {
        ["ip", "netns", "exec", name].map(String::from).to_vec()
    }

    /// The namespace whose qdisc holds the tbf.
    pub fn shaper(&self) -> &str {
        &self.shaper
    }

    /// The tbf's counters (bytes sent, drops, backlog) on one line.
    pub fn qdisc_stats(&self) -> String {
        let out = Command::new("ip").args(["netns", "exec", &self.shaper, "tc", "-s", "qdisc", "show"]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let tbf = text.split("qdisc ").find(|q| q.starts_with("tbf")).unwrap_or("");
        tbf.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Bytes the tbf in namespace `shaper` has let through so far (headers included).
pub fn tbf_sent_bytes(shaper: &str) -> Option<u64> {
    let out = Command::new("ip").args(["netns", "exec", shaper, "tc", "-s", "qdisc", "show"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tbf = text.split("qdisc ").find(|q| q.starts_with("tbf"))?;
    let words: Vec<&str> = tbf.split_whitespace().collect();
    words.iter().position(|w| *w == "Sent").and_then(|i| words.get(i + 1)?.parse().ok())
}

impl Drop for Netns {
    fn drop(&mut self) {
        let names: Vec<&String> = [&self.snd, &self.rcv].into_iter().chain(&self.rtr).collect();
        for n in &names {
            delete(n);
        }
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|n| !names.contains(&n));
        }
    }
}

/// A veth pair from `dev_a` in namespace `a` to `dev_b` in namespace `b`.
fn veth(a: &str, dev_a: &str, b: &str, dev_b: &str) -> anyhow::Result<()> {
    run(&["ip", "-n", a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", b])
}

/// Kills, by PID, every process left in the namespace, then deletes it (its veth end with it).
fn delete(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).stderr(Stdio::null()).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|p| p.parse::<u32>().is_ok()) {
            let _ = Command::new("kill").args(["-KILL", pid]).stderr(Stdio::null()).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
}

/// Deletes namespaces of earlier runs whose bench process is gone (killed with SIGKILL, say).
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').nth(1)) else { continue };
        if !alive(pid) {
            eprintln!("deleting namespace {name} left by an earlier run");
            delete(name);
        }
    }
}

/// True while process `pid` runs (a zombie, which its reaper may take a while to collect, is
/// dead).
fn alive(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// On SIGINT, SIGTERM or SIGHUP: delete this process's namespaces (killing what runs in
/// them) and `scratch`, then exit. The guards of the main thread do not run on a signal.
pub fn delete_on_signal(scratch: PathBuf) -> anyhow::Result<()> {
    if let Ok(mut s) = SCRATCH.lock() {
        *s = Some(scratch);
    }
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    // Registered here, before the bench starts anything, so no signal goes unhandled.
    let mut signals = rt.block_on(async {
        Ok::<_, std::io::Error>([
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ])
    })?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let [a, b, c] = &mut signals;
            tokio::select! {
                _ = a.recv() => {}
                _ = b.recv() => {}
                _ = c.recv() => {}
            }
        });
        let names = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
        for name in names {
            delete(&name);
        }
        if let Some(dir) = SCRATCH.lock().ok().and_then(|s| s.clone()) {
            let _ = std::fs::remove_dir_all(dir);
        }
        eprintln!("ledbat_netns: interrupted; namespaces deleted");
        std::process::exit(130);
    });
    Ok(())
}
