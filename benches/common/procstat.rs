//! CPU accounting of the benches from Linux's `/proc`: a process's user plus system time (all
//! its threads, also after it exited and before it is reaped), and the busy time of the whole
//! machine. Shared by the `qps`, `download` and `ledbat_netns` benches.

use std::process::Command;

/// Clock ticks per second of /proc's CPU times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The state letter of a process (`R`, `S`, `Z` for exited but not yet reaped, ...) and its
/// user plus system CPU time in seconds. A zombie's times are final: they include every thread.
pub fn state_and_cpu(pid: u32, tick: f64) -> Option<(char, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((state, (user + system) / tick))
}

/// User plus system CPU time of a process, all its threads, in seconds.
pub fn cpu_seconds(pid: u32, tick: f64) -> Option<f64> {
    state_and_cpu(pid, tick).map(|(_, cpu)| cpu)
}

/// Busy time of all CPUs together (everything but idle and iowait), in seconds.
pub fn busy_seconds(tick: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Some(busy / tick)
}
