//! The bottleneck of the LEDBAT bench: two network namespaces, a sender and a receiver, joined
//! by a veth pair with private addresses, and a token-bucket filter (`tc ... tbf`) on the
//! sender's end of the pair, the queue a home router's uplink would hold. Both namespaces use
//! Reno, a loss-based AIMD, for TCP (the host's default, BBR, does not fill queues).
//!
//! Namespaces outlive processes, so they are deleted on every exit path: when the guard drops
//! (errors and panics included), from a signal thread on SIGINT/SIGTERM/SIGHUP, and, for a
//! bench killed outright, by the next run, which sweeps namespaces left by dead bench PIDs.
//! Deleting one first kills, by PID, whatever still runs inside it (`ip netns pids`).

use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context};

pub const SND_IP: &str = "10.77.0.1";
pub const RCV_IP: &str = "10.77.0.2";
/// Every namespace this bench makes is called `PREFIX{snd,rcv}-PID`.
const PREFIX: &str = "ksledbat-";

/// Namespaces of this process, for the signal thread to delete.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The two namespaces; deleted (with everything running in them) when dropped.
pub struct Netns {
    pub snd: String,
    pub rcv: String,
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
    /// Builds the pair: `rate` is the tbf rate (`10mbit`), `burst` and `latency` its bucket
    /// and queue limit (`32kbit`, `1s`).
    pub fn create(rate: &str, burst: &str, latency: &str) -> anyhow::Result<Netns> {
        sweep_stale();
        let pid = std::process::id();
        let ns = Netns { snd: format!("{PREFIX}snd-{pid}"), rcv: format!("{PREFIX}rcv-{pid}") };
        // Registered before they exist, so that a failure half-way still deletes what was made.
        if let Ok(mut live) = LIVE.lock() {
            live.extend([ns.snd.clone(), ns.rcv.clone()]);
        }
        // Interface names are at most 15 bytes; the PID keeps parallel runs apart.
        let (vs, vr) = (format!("kls{pid}"), format!("klr{pid}"));
        run(&["ip", "netns", "add", &ns.snd])?;
        run(&["ip", "netns", "add", &ns.rcv])?;
        // Made inside the sender's namespace with its peer placed in the receiver's: the host's
        // namespace never sees either end.
        run(&["ip", "-n", &ns.snd, "link", "add", &vs, "type", "veth", "peer", "name", &vr, "netns", &ns.rcv])?;
        for (name, dev, ip) in [(&ns.snd, &vs, SND_IP), (&ns.rcv, &vr, RCV_IP)] {
            run(&["ip", "-n", name, "addr", "add", &format!("{ip}/24"), "dev", dev])?;
            run(&["ip", "-n", name, "link", "set", dev, "up"])?;
            run(&["ip", "-n", name, "link", "set", "lo", "up"])?;
            run(&["ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.tcp_congestion_control=reno"])?;
        }
        run(&[
            "ip", "netns", "exec", &ns.snd, "tc", "qdisc", "add", "dev", &vs, "root", "tbf", "rate", rate, "burst",
            burst, "latency", latency,
        ])?;
        Ok(ns)
    }

    /// The prefix that runs a program inside a namespace. `ip netns exec` execs the program in
    /// its own place, so the PID of the spawned child is the program's.
    pub fn exec(name: &str) -> Vec<String> {
        ["ip", "netns", "exec", name].map(String::from).to_vec()
    }

    /// The qdisc line of the sender's side, with its drop and overlimit counters.
    pub fn qdisc_stats(&self) -> String {
        Command::new("ip")
            .args(["netns", "exec", &self.snd, "tc", "-s", "qdisc", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.snd);
        delete(&self.rcv);
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|n| n != &self.snd && n != &self.rcv);
        }
    }
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
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("deleting namespace {name} left by an earlier run");
            delete(name);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: delete this process's namespaces (killing what runs in
/// them), then exit. The guards of the main thread do not run on a signal.
pub fn delete_on_signal() -> anyhow::Result<()> {
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
        eprintln!("ledbat_netns: interrupted; namespaces deleted");
        std::process::exit(130);
    });
    Ok(())
}
