//! The command line of `kadswarm node` and `kadswarm peers` as a user sees it: the `--state`
//! round trip (a restarted node keeps its id and rejoins through the contacts it saved, with
//! no router at all), exit codes, and error output without panics.
//!
//! Every process runs on a loopback address of its own (127.0.10N.1), is killed by PID when
//! its guard drops (also when an assertion fails), and every wait is bounded.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::krpc::{Ben, Krpc};
use common::{free_port, ip, Proc, TempDir, KADSWARM, WAIT};

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

fn run(args: &[&str]) -> Proc {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut p = Proc::kadswarm(&format!("kadswarm {}", args.join(" ")), &args);
    p.wait_exit(WAIT);
    p
}

fn exit_code(p: &mut Proc) -> Option<i32> {
    p.child.try_wait().expect("try_wait").expect("exited").code()
}

/// Asserts the process neither panicked nor printed a backtrace.
fn assert_no_panic(p: &Proc) {
    let err = p.stderr_lines().join("\n");
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace", "thread 'main'"] {
        assert!(!err.contains(bad), "{}: stderr has {bad:?}:\n{err}", p.name);
    }
}

fn node_args(bind: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["node".to_string(), "--bind".to_string(), bind.to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

// ---------------------------------------------------------------------------------------------
// Tests

/// B joins A and saves its state on SIGTERM. Then A is replaced by a fresh node (empty table,
/// new id) on the same address, and B restarts from its state file with no router at all.
/// B must come back with the same id and contact the saved address on its own: the fresh A
/// can only learn of B that way.
#[test]
fn state_file_round_trip_rejoins_saved_contacts() {
    let started = Instant::now();
    let dir = TempDir::new("cli-state");
    let state = dir.0.join("b.state");
    let state_arg = state.to_string_lossy().into_owned();
    let mut client = Krpc::bind(ip(103));
    let a_addr = SocketAddr::from((ip(101), free_port(ip(101))));
    let b_addr = SocketAddr::from((ip(102), free_port(ip(102))));
    let a_str = a_addr.to_string();

    // First life: A alone, B bootstraps from A and keeps a state file.
    let mut a = Proc::kadswarm("node A", &node_args(a_addr, &["--no-bootstrap"]));
    let a_id = client.wait_id(a_addr, &mut a);
    let mut b = Proc::kadswarm("node B", &node_args(b_addr, &["--bootstrap", &a_str, "--state", &state_arg]));
    let b_id = client.wait_id(b_addr, &mut b);
    let listed = client.wait_listed(a_addr, &b_id, b_addr, &mut a);
    assert_eq!(listed, b_id, "A lists B's address with another id");
    let status = b.terminate();
    assert!(status.success(), "node B exited with {status} on SIGTERM\n{}", b.dump());
    let saved = std::fs::metadata(&state)
        .unwrap_or_else(|e| panic!("no state file {state:?} after SIGTERM: {e}\n{}", b.dump()));
    assert!(saved.len() > 0, "state file {state:?} is empty");
    drop(b);

    let status = a.terminate();
    assert!(status.success(), "node A exited with {status} on SIGTERM\n{}", a.dump());
    drop(a);

    // Second life: a fresh A on the same address; B from its state, told of no one.
    let mut a2 = Proc::kadswarm("node A (fresh)", &node_args(a_addr, &["--no-bootstrap"]));
    let a2_id = client.wait_id(a_addr, &mut a2);
    assert_ne!(a2_id, a_id, "a node without --state should pick a new id");
    let fresh = client.find_node(a_addr, &b_id);
    assert!(!fresh.iter().any(|(_, addr)| *addr == b_addr), "fresh A already lists B: {fresh:?}");
    let mut b2 = Proc::kadswarm("node B (from state)", &node_args(b_addr, &["--no-bootstrap", "--state", &state_arg]));
    let b2_id = client.wait_id(b_addr, &mut b2);
    assert_eq!(b2_id, b_id, "B did not keep its id across the restart");
    // B answers with the contact it saved ...
    client.wait_listed(b_addr, &a_id, a_addr, &mut b2);
    // ... and has been in touch with it: the fresh A has B in its table.
    let listed = client.wait_listed(a_addr, &b_id, b_addr, &mut a2);
    assert_eq!(listed, b_id, "fresh A lists B's address with another id");
    eprintln!("state round trip ok in {:?}", started.elapsed());
}

/// A malformed info-hash is bad input: exit 2, a one-line error, no panic.
#[test]
fn peers_rejects_bad_info_hash() {
    let bind = format!("{}:0", ip(104));
    let silent = UdpSocket::bind((ip(104), 0)).expect("bind silent socket");
    let silent = silent.local_addr().unwrap().to_string();
    for bad in [
        "xyz",
        "",
        "0123456789abcdef0123456789abcdef0123456",   // 39 hex digits
        "0123456789abcdef0123456789abcdef012345678", // 41
        "0123456789abcdef0123456789abcdef0123456g",
        "magnet:?xt=urn:btih:0123",
        "magnet:?dn=nothing",
    ] {
        let mut p = run(&["peers", bad, "--bind", &bind, "--bootstrap", &silent, "--timeout", "2"]);
        assert_eq!(exit_code(&mut p), Some(2), "peers {bad:?}\n{}", p.dump());
        assert_no_panic(&p);
        let lines: Vec<String> = p.stderr_lines().into_iter().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "peers {bad:?}: expected a one-line error, got {lines:?}");
        assert!(p.stdout_text().is_empty(), "peers {bad:?} printed on stdout: {}", p.stdout_text());
    }
}

/// An unusable --bind is bad input (exit 2, no panic) for both subcommands.
#[test]
fn bad_bind_exits_2() {
    for bind in ["nonsense", "127.0.0.1:99999", "999.0.0.1:6881"] {
        let mut p = run(&["node", "--bind", bind, "--no-bootstrap"]);
        assert_eq!(exit_code(&mut p), Some(2), "node --bind {bind:?}\n{}", p.dump());
        assert_no_panic(&p);
        assert!(!p.stderr_lines().is_empty(), "node --bind {bind:?}: no error message");

        let mut p = run(&["peers", HASH, "--bind", bind, "--bootstrap", "127.0.0.1:9", "--timeout", "2"]);
        assert_eq!(exit_code(&mut p), Some(2), "peers --bind {bind:?}\n{}", p.dump());
        assert_no_panic(&p);
    }
}

/// A lookup whose only bootstrap contact never answers ends with exit 1 shortly after the
/// timeout, having printed no peer.
#[test]
fn peers_without_answers_exits_1() {
    let silent = UdpSocket::bind((ip(105), 0)).expect("bind silent socket");
    let silent_addr = silent.local_addr().unwrap().to_string();
    let bind = format!("{}:0", ip(106));
    let started = Instant::now();
    let mut p = run(&["peers", HASH, "--bind", &bind, "--bootstrap", &silent_addr, "--timeout", "2"]);
    let took = started.elapsed();
    assert_eq!(exit_code(&mut p), Some(1), "\n{}", p.dump());
    assert_no_panic(&p);
    assert!(p.stdout_text().trim().is_empty(), "printed peers: {}", p.stdout_text());
    assert!(took < Duration::from_secs(15), "--timeout 2 took {took:?}");
    // the lookup did try the contact
    let mut buf = [0u8; 2048];
    silent.set_nonblocking(true).unwrap();
    let got = silent.recv_from(&mut buf).map(|(n, _)| Ben::decode(&buf[..n]));
    let query = got.ok().flatten();
    assert!(
        query.as_ref().and_then(|q| q.get("y")).and_then(Ben::as_bytes) == Some(b"q"),
        "the bootstrap contact never received a KRPC query: {query:?}"
    );
}

#[test]
fn help_exits_0() {
    for sub in ["node", "peers", "get", "seed", "demo"] {
        let mut p = run(&[sub, "--help"]);
        assert_eq!(exit_code(&mut p), Some(0), "{sub} --help\n{}", p.dump());
        let expect = if sub == "demo" { "--nodes" } else { "--bind" };
        assert!(p.stdout_text().contains(expect), "{sub} --help does not mention {expect}:\n{}", p.stdout_text());
    }
}

/// The README's first command, smaller: a DHT on loopback, a seeder, a magnet download found
/// through the DHT, files compared.
#[test]
fn demo_downloads_a_swarm_found_through_the_dht() {
    let mut p = run(&["demo", "--nodes", "60", "--size-mib", "4", "--settle", "15"]);
    assert_eq!(exit_code(&mut p), Some(0), "{}", p.dump());
    let out = p.stdout_text();
    assert!(out.starts_with("swarm: magnet:?xt=urn:btih:"), "{out}");
    assert!(out.contains("files identical"), "{out}");
    assert_no_panic(&p);
}

#[test]
fn get_rejects_bad_sources_with_exit_2() {
    let dir = TempDir::new("badsrc");
    let junk = dir.0.join("junk.torrent");
    std::fs::write(&junk, b"d4:infoi3ee").unwrap();
    let out = dir.0.join("out").display().to_string();
    for source in ["magnet:?dn=no-hash", "not-a-thing", junk.to_str().unwrap()] {
        let mut p = run(&["get", source, "--output", &out, "--no-dht", "--bind", "127.0.109.1:0"]);
        assert_eq!(exit_code(&mut p), Some(2), "{source}\n{}", p.dump());
        assert_eq!(p.stderr_lines().len(), 1, "one line on stderr for {source}: {:?}", p.stderr_lines());
        assert_no_panic(&p);
    }
    let mut p = run(&["seed", "/nonexistent/path/kadswarm", "--no-dht", "--bind", "127.0.109.1:0"]);
    assert_eq!(exit_code(&mut p), Some(2), "{}", p.dump());
}

/// Issue 12, hole 8: a .torrent whose files `README` and `Readme` would be one file on a
/// case-insensitive disk is bad input, refused with its reason before anything is written.
#[test]
fn get_rejects_a_torrent_with_case_clashing_paths_with_exit_2() {
    let dir = TempDir::new("caseclash");
    let torrent = dir.0.join("clash.torrent");
    let info = &b"d5:filesld6:lengthi1e4:pathl6:READMEeed6:lengthi1e4:pathl6:Readmeeee\
                  4:name1:d12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe"[..];
    std::fs::write(&torrent, [&b"d4:info"[..], info, b"e"].concat()).unwrap();
    let out = dir.0.join("out");
    let args =
        ["get", torrent.to_str().unwrap(), "--output", out.to_str().unwrap(), "--no-dht", "--bind", "127.0.109.1:0"];
    let mut p = run(&args);
    assert_eq!(exit_code(&mut p), Some(2), "{}", p.dump());
    let errors = p.stderr_lines();
    assert_eq!(errors.len(), 1, "one line on stderr: {errors:?}");
    assert!(errors[0].contains("differ only in case"), "the reason is named: {}", errors[0]);
    assert!(!out.join("d").exists(), "nothing written");
    assert_no_panic(&p);
}

/// Logs written to a pipe (as to a file or the journal) carry no ANSI colour codes, even
/// with NO_COLOR unset: colours are for a terminal only.
#[test]
fn piped_logs_have_no_colour_codes() {
    let addr = SocketAddr::from((ip(110), free_port(ip(110))));
    let mut cmd = Command::new(KADSWARM);
    cmd.args(node_args(addr, &["--no-bootstrap", "-v"])).env_remove("NO_COLOR").env_remove("RUST_LOG");
    let mut node = Proc::spawn_command("node (piped logs)", cmd);
    // A ping answered means the node is up and has logged its start.
    Krpc::bind(ip(110)).wait_id(addr, &mut node);
    thread::sleep(Duration::from_millis(1500));
    node.assert_running();
    node.kill();
    let lines = node.stderr_lines();
    assert!(lines.iter().any(|l| l.contains("listening on")), "no start line logged\n{}", node.dump());
    for line in &lines {
        assert!(!line.contains("\x1b["), "ANSI escape in a piped log line: {line:?}");
    }
}

/// GET `path` over plain HTTP/1.0 (at most 5 s): the whole answer, head and body.
fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to metrics");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).expect("send request");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read answer");
    out
}

/// `kadswarm node --metrics`: the pings we send show up in the per-type reply counters (the
/// driver publishes once a second), with the series operators rely on; other paths are 404.
#[test]
fn node_serves_its_counters_on_metrics() {
    let addr = SocketAddr::from((ip(111), free_port(ip(111))));
    let metrics = SocketAddr::from((ip(111), free_port(ip(111))));
    let mut node =
        Proc::kadswarm("node (metrics)", &node_args(addr, &["--no-bootstrap", "--metrics", &metrics.to_string()]));
    let mut client = Krpc::bind(ip(112));
    client.wait_id(addr, &mut node);
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let answer = http_get(metrics, "/metrics");
        assert!(answer.starts_with("HTTP/1.0 200 OK"), "{answer}");
        let pings = answer
            .lines()
            .find_map(|l| l.strip_prefix("kadswarm_replies_sent_total{type=\"ping\"} "))
            .and_then(|v| v.parse::<f64>().ok());
        if pings.is_some_and(|n| n >= 1.0) {
            break answer;
        }
        node.assert_running();
        assert!(Instant::now() < deadline, "no ping reply counted within {WAIT:?}:\n{answer}");
        thread::sleep(Duration::from_millis(300));
    };
    for series in [
        "kadswarm_routing_table_nodes ",
        "kadswarm_queries_received_total ",
        "kadswarm_malformed_dropped_total ",
        "kadswarm_query_timeouts_total ",
        "kadswarm_stored_peers ",
        "kadswarm_dropped_total{reason=\"rate_limited\"} ",
        "kadswarm_rate_limiter_table_bytes ",
        "kadswarm_reply_bytes_sent_total{type=\"ping\"} ",
        "kadswarm_dht_pool_nodes 0",
    ] {
        assert!(body.lines().any(|l| l.starts_with(series)), "no {series:?} in\n{body}");
    }
    assert!(http_get(metrics, "/").starts_with("HTTP/1.0 404"), "GET / is not 404");
}
