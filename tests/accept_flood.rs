//! Idle TCP connections against `kadswarm seed`: those beyond the cap on connections waiting
//! for their handshake (in total and per IP) are closed at once while a real getter still
//! downloads; and with the seeder out of file descriptors, its accept loop pauses instead of
//! spinning on EMFILE.
//!
//! Everything runs on loopback: the seeders on 127.0.225.1 and 127.0.228.1, the getter on
//! 127.0.226.1, and this test's idle connections from 127.0.227.X and 127.0.229.X.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::swarm::{assert_same_tree, make_payload};
use common::{free_port, ip, s, Proc, TempDir, KADSWARM};

const LIMIT: Duration = Duration::from_secs(90);

fn addr(n: u8) -> SocketAddr {
    let ip: Ipv4Addr = ip(n);
    SocketAddr::from((ip, free_port(ip)))
}

fn seed_args(payload: &Path, bind: SocketAddr) -> Vec<String> {
    let path = payload.display().to_string();
    vec![s("seed"), path, s("--bind"), bind.to_string(), s("--no-dht"), s("--no-lsd"), s("--transport"), s("tcp")]
}

/// A TCP connection to `to` from 127.0.`net`.`host`, that sends nothing.
fn idle(net: u8, host: u8, to: SocketAddr) -> TcpStream {
    let from = SocketAddr::from((Ipv4Addr::new(127, 0, net, host), 0));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&from.into()).unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_nonblocking(true).unwrap();
    stream
}

/// True when the other side has closed `stream` (end of file or a reset).
fn closed(mut stream: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    match stream.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

fn count_closed(streams: &[TcpStream]) -> usize {
    streams.iter().filter(|s| closed(s)).count()
}

#[test]
fn idle_connections_beyond_the_handshake_caps_are_closed_and_a_getter_still_downloads() {
    let dir = TempDir::new("accept-flood");
    let payload = make_payload(&dir.0, "payload", 3 << 20, 225);
    let seed_at = addr(225);
    let mut seed = Proc::kadswarm("kadswarm seed", &seed_args(&payload, seed_at));
    let magnet = seed.wait_magnet();
    seed.wait_tcp_listening(seed_at);

    // One host: four connections may wait for their handshake, the rest are closed at once.
    let one_host: Vec<TcpStream> = (0..20).map(|_| idle(227, 1, seed_at)).collect();
    thread::sleep(Duration::from_millis(700));
    let shut = count_closed(&one_host);
    assert!(shut >= 16, "{shut} of 20 idle connections from one IP were closed\n{}", seed.dump());
    // Many hosts, three each: 64 in total may wait.
    let many: Vec<TcpStream> =
        (2..=41).flat_map(|h| (0..3).map(move |_| (h, seed_at))).map(|(h, to)| idle(227, h, to)).collect();
    thread::sleep(Duration::from_millis(700));
    let shut = count_closed(&many);
    assert!(shut >= 50, "{shut} of 120 idle connections from 40 IPs were closed\n{}", seed.dump());
    drop((one_host, many));

    // While idle connections keep coming from ten hosts (fewer than the cap allows), a getter
    // gets in and downloads everything.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let deadline = Instant::now() + LIMIT;
            let mut open: Vec<TcpStream> = Vec::new();
            let mut made = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                open.retain(|s| !closed(s));
                while open.len() < 40 {
                    open.push(idle(227, 50 + (made % 10) as u8, seed_at));
                    made += 1;
                }
                thread::sleep(Duration::from_millis(50));
            }
            made
        })
    };
    let out = dir.0.join("out");
    let mut args = common::swarm::get_args(&magnet, &out, addr(226));
    args.extend([s("--no-dht"), s("--no-lsd"), s("--transport"), s("tcp"), s("--peer"), seed_at.to_string()]);
    let mut getter = Proc::kadswarm("kadswarm get", &args);
    let status = getter.wait_exit(LIMIT);
    stop.store(true, Ordering::Relaxed);
    let made = flood.join().unwrap();
    assert!(status.success(), "get failed: {status}\n{}\n{}", getter.dump(), seed.dump());
    assert_same_tree(&payload, &out.join("payload"));
    eprintln!("the getter downloaded while {made} idle connections came and went");
    seed.assert_running();
}

/// utime + stime of `pid`, in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_file_descriptors_the_accept_loop_pauses_instead_of_spinning() {
    let dir = TempDir::new("accept-emfile");
    let payload = make_payload(&dir.0, "payload", 256 << 10, 228);
    let seed_at = addr(228);
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=64:64").arg(KADSWARM).args(seed_args(&payload, seed_at));
    let mut seed = Proc::spawn_command("kadswarm seed (64 descriptors)", cmd);
    seed.wait_magnet();
    seed.wait_tcp_listening(seed_at);
    let pid = seed.child.id();
    // Until it is idle (its startup done), at most 10 s.
    for _ in 0..10 {
        let before = cpu_ticks(pid);
        thread::sleep(Duration::from_secs(1));
        if cpu_ticks(pid) - before < 5 {
            break;
        }
    }
    // More connections than it has descriptors, from 40 IPs (so within the per-IP cap): it
    // accepts until EMFILE, the rest wait in the listen queue.
    let _idle: Vec<TcpStream> = (1..=40).flat_map(|h| (0..3).map(move |_| h)).map(|h| idle(229, h, seed_at)).collect();
    thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    let window = Duration::from_secs(3);
    thread::sleep(window);
    let used = cpu_ticks(pid) - before;
    seed.assert_running();
    // 100 ticks a second on Linux: a spinning loop takes about 300 here.
    assert!(used < 30, "the seeder used {used} ticks of CPU in {window:?} out of descriptors\n{}", seed.dump());
}
