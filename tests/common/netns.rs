//! A private Ethernet segment for process tests that need real multicast (LSD, BEP 14): one
//! network namespace per host, each with a veth pair into a hub namespace that bridges them,
//! addresses `10.205.<subnet>.<n>/24`, `lo` up. Nothing reaches the machine's own networks.
//!
//! Namespaces outlive processes, so [`Lan`] deletes them when dropped (a failed assertion
//! included), after killing by PID whatever still runs inside (`ip netns pids`); a test binary
//! killed outright leaves them behind, and the next run sweeps those whose PID is gone.
//! Needs root and `ip netns`; [`Lan::create`] says why it cannot, and tests then skip (and fail
//! where CI is set).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use super::Proc;

/// Every namespace made here is called `PREFIX<pid>-<tag>-<host or hub>`.
const PREFIX: &str = "kslsd-";

/// One host of the segment.
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
    /// `fd05:205:<subnet>::<i>`, where the kernel allows IPv6 in the namespace.
    pub ip6: Option<Ipv6Addr>,
}

/// The segment; deleted with everything in it when dropped.
pub struct Lan {
    pub hosts: Vec<Host>,
    hub: String,
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Lan {
    /// `hosts` namespaces on one bridge, host `i` (from 1) at `10.205.<subnet>.<i>`. `tag` keeps
    /// the segments of tests running in parallel apart. Err: why it cannot be built here.
    pub fn create(tag: &str, subnet: u8, hosts: u8) -> Result<Lan, String> {
        if !is_root() {
            return Err("needs root for network namespaces".into());
        }
        sweep_stale();
        let pid = std::process::id();
        let hub = format!("{PREFIX}{pid}-{tag}-hub");
        // From here on the guard exists, so a failure half-way deletes what was made.
        let mut lan = Lan { hosts: Vec::new(), hub: hub.clone() };
        run(&["ip", "netns", "add", &hub])?;
        run(&["ip", "-n", &hub, "link", "set", "lo", "up"])?;
        // No IGMP snooping: without a querier on the segment the bridge would otherwise decide
        // on its own which ports get the group's traffic.
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        for i in 1..=hosts {
            let ns = format!("{PREFIX}{pid}-{tag}-{i}");
            let ip = Ipv4Addr::new(10, 205, subnet, i);
            lan.hosts.push(Host { ns: ns.clone(), ip, ip6: None });
            run(&["ip", "netns", "add", &ns])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            // Made inside the host with its peer placed in the hub: the machine's own
            // namespace never sees either end, so the names cannot clash with anything.
            let port = format!("p{i}");
            run(&["ip", "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &hub])?;
            run(&["ip", "-n", &hub, "link", "set", &port, "master", "br0"])?;
            run(&["ip", "-n", &hub, "link", "set", &port, "up"])?;
            run(&["ip", "-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            // Best effort: a kernel with IPv6 off still runs the IPv4 tests. `nodad` makes the
            // address usable at once instead of after duplicate detection.
            let ip6 = Ipv6Addr::new(0xfd05, 0x205, subnet.into(), 0, 0, 0, 0, i.into());
            let cidr = format!("{ip6}/64");
            if run(&["ip", "-n", &ns, "addr", "add", &cidr, "dev", "eth0", "nodad"]).is_ok() {
                if let Some(h) = lan.hosts.last_mut() {
                    h.ip6 = Some(ip6);
                }
            }
            let link = run(&["ip", "-n", &ns, "link", "show", "eth0"])?;
            if !link.contains("MULTICAST") {
                return Err(format!("eth0 in {ns} is not multicast-capable: {}", link.trim()));
            }
        }
        Ok(lan)
    }

    /// A process run inside host `i`'s namespace. `ip netns exec` execs the program in its own
    /// place, so the PID [`Proc`] kills is the program's.
    pub fn spawn(&self, i: usize, name: &str, program: &str, args: &[String]) -> Proc {
        let mut full: Vec<String> = ["netns", "exec", &self.hosts[i - 1].ns, program].map(String::from).to_vec();
        full.extend_from_slice(args);
        Proc::spawn(name, "ip", &full)
    }

    /// `ip -n <host i's namespace> ARGS`: an extra address or route on one host.
    pub fn ip_cmd(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["ip", "-n", self.hosts[i - 1].ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.hosts[i - 1].ip
    }

    /// Host `i`'s IPv6 address, if it has one.
    pub fn ip6(&self, i: usize) -> Option<Ipv6Addr> {
        self.hosts[i - 1].ip6
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in &self.hosts {
            delete(&h.ns);
        }
        delete(&self.hub);
    }
}

/// Kills, by PID, every process left in the namespace, then deletes it (its veth with it).
fn delete(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).stderr(Stdio::null()).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|p| p.parse::<u32>().is_ok()) {
            let _ = Command::new("kill").args(["-KILL", pid]).stderr(Stdio::null()).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
}

/// Deletes namespaces left by earlier test runs whose process is gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete(name);
        }
    }
}
