//! IPv6 (BEP 32) as a user sees it: `kadswarm node` bound twice, to 127.0.N.1 and to [::1]
//! (each node on a port of its own), joins over IPv6, answers `want: ["n4","n6"]` with both
//! `nodes` and `nodes6`, and a dual-stack `kadswarm peers` finds a peer announced over IPv6
//! and one announced over IPv4. Two `--bind`s of one family are bad input.
//!
//! Every process is killed by PID when its guard drops, and every wait is bounded.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::krpc::{Ben, Krpc};
use common::{free_port, ip, random_id, skip, Proc, WAIT};

const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A free UDP port on [::1], or None when this machine has no IPv6 loopback.
fn free_port6() -> Option<u16> {
    let probe = UdpSocket::bind((V6, 0)).ok()?;
    Some(probe.local_addr().ok()?.port())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A dual-stack node: its IPv4 and IPv6 addresses, and its process.
struct DualNode {
    v4: SocketAddr,
    v6: SocketAddr,
    proc: Proc,
}

fn spawn_dual(name: &str, n: u8, bootstrap: &[SocketAddr]) -> Option<DualNode> {
    let v4 = SocketAddr::from((ip(n), free_port(ip(n))));
    let v6 = SocketAddr::new(V6, free_port6()?);
    let mut args = strings(&["node", "--bind", &v4.to_string(), "--bind", &v6.to_string()]);
    if bootstrap.is_empty() {
        args.push("--no-bootstrap".into());
    }
    for b in bootstrap {
        args.extend(["--bootstrap".to_string(), b.to_string()]);
    }
    Some(DualNode { v4, v6, proc: Proc::kadswarm(name, &args) })
}

type Contacts = Vec<(Vec<u8>, SocketAddr)>;

/// Asks `to` (with `want`) until `done` holds for its answer, at most `WAIT`.
fn wait_answer(
    client: &mut Krpc,
    to: SocketAddr,
    want: &[&str],
    proc: &mut Proc,
    done: impl Fn(&Contacts, &Contacts) -> bool,
) -> (Contacts, Contacts) {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((n4, n6)) = client.find_node_want(to, &random_id(), want) {
            if done(&n4, &n6) {
                return (n4, n6);
            }
            last = Some((n4, n6));
        }
        proc.assert_running();
        thread::sleep(Duration::from_millis(300));
    }
    panic!("{to} never gave the expected find_node answer (want {want:?}); last: {last:?}\n{}", proc.dump());
}

fn has(list: &Contacts, addr: SocketAddr) -> Option<&Vec<u8>> {
    list.iter().find(|(_, a)| *a == addr).map(|(id, _)| id)
}

/// get_peers for a token, then announce_peer of `port` for `hash` at `to`.
fn announce(client: &mut Krpc, to: SocketAddr, hash: &[u8; 20], port: i64) {
    let r = client.query(to, "get_peers", vec![("info_hash", Ben::bytes(hash))], Duration::from_secs(2));
    let token = r.and_then(|r| r.get("token").and_then(Ben::as_bytes).map(<[u8]>::to_vec)).expect("a token");
    let args = vec![
        ("implied_port", Ben::Int(0)),
        ("info_hash", Ben::bytes(hash)),
        ("port", Ben::Int(port)),
        ("token", Ben::Bytes(token)),
    ];
    assert!(client.query(to, "announce_peer", args, Duration::from_secs(2)).is_some(), "announce to {to} refused");
}

/// A roots the network (no router); B and C join through A's IPv4 and IPv6 addresses.
/// A then lists both in `nodes` and in `nodes6` (same id in each family) when asked for both,
/// and only its querier's family by default. A peer announced to B over IPv6 and one announced
/// to C over IPv4 are both found by a dual-stack `kadswarm peers` whose routers are A's.
#[test]
fn dual_stack_nodes_join_and_look_up_over_ipv6() {
    let test = "dual_stack_nodes_join_and_look_up_over_ipv6";
    if free_port6().is_none() {
        return skip(test, "cannot bind UDP on [::1] (no IPv6 loopback)");
    }
    let started = Instant::now();
    let mut a = spawn_dual("node A", 121, &[]).expect("[::1] was bindable a moment ago");
    let mut client6 = Krpc::bind_ip(V6);
    client6.wait_id(a.v6, &mut a.proc);
    let routers = [a.v4, a.v6];
    let mut b = spawn_dual("node B", 122, &routers).expect("[::1]");
    let mut c = spawn_dual("node C", 123, &routers).expect("[::1]");

    // Both families of B and C reach A's tables.
    let (n4, n6) = wait_answer(&mut client6, a.v6, &["n4", "n6"], &mut a.proc, |n4, n6| {
        [b.v4, c.v4].iter().all(|x| has(n4, *x).is_some()) && [b.v6, c.v6].iter().all(|x| has(n6, *x).is_some())
    });
    assert!(n4.iter().all(|(_, a)| a.is_ipv4()) && n6.iter().all(|(_, a)| a.is_ipv6()));
    for node in [&b, &c] {
        assert_eq!(has(&n4, node.v4), has(&n6, node.v6), "one node id for both families");
    }
    // No `want`: the querier's family only, from either side.
    let (d4, d6) = client6.find_node_want(a.v6, &random_id(), &[]).expect("A answers");
    assert!(d4.is_empty() && has(&d6, b.v6).is_some(), "default want over IPv6: {d4:?} {d6:?}");
    let mut client4 = Krpc::bind_read_only(ip(124));
    let (d4, d6) = client4.find_node_want(a.v4, &random_id(), &[]).expect("A answers");
    assert!(d6.is_empty() && has(&d4, b.v4).is_some(), "default want over IPv4: {d4:?} {d6:?}");

    // One peer stored over each family, on different nodes.
    let hash = random_id();
    announce(&mut client6, b.v6, &hash, 7006);
    announce(&mut client4, c.v4, &hash, 7004);
    let peer6 = SocketAddr::new(V6, 7006);
    let peer4 = SocketAddr::from((ip(124), 7004));

    let hex: String = hash.iter().map(|x| format!("{x:02x}")).collect();
    let v4_bind = format!("{}:0", ip(125));
    let args = strings(&[
        "peers",
        &hex,
        "--bind",
        &v4_bind,
        "--bind",
        "[::1]:0",
        "--bootstrap",
        &a.v4.to_string(),
        "--bootstrap",
        &a.v6.to_string(),
        "--timeout",
        "30",
    ]);
    let mut peers = Proc::kadswarm("peers (dual-stack)", &args);
    let status = peers.wait_exit(WAIT);
    assert!(status.success(), "peers failed: {status}\n{}", peers.dump());
    let found: Vec<String> = peers.stdout_lines();
    for want in [peer6, peer4] {
        assert!(found.contains(&want.to_string()), "peers did not print {want}: {found:?}\n{}", peers.dump());
    }
    for node in [&mut a, &mut b, &mut c] {
        node.proc.assert_running();
    }
    eprintln!("dual-stack join and lookups in {:?}", started.elapsed());
}

/// A second --bind must be of the other family; `get` and `seed` take one.
#[test]
fn binds_of_one_family_or_too_many_exit_2() {
    let cases: [&[&str]; 4] = [
        &["node", "--bind", "127.0.0.1:0", "--bind", "127.0.0.2:0", "--no-bootstrap"],
        &["node", "--bind", "[::1]:0", "--bind", "[::1]:0", "--no-bootstrap"],
        &["node", "--bind", "127.0.0.1:0", "--bind", "[::1]:0", "--bind", "127.0.0.3:0", "--no-bootstrap"],
        &["peers", "0123456789abcdef0123456789abcdef01234567", "--bind", "127.0.0.1:0", "--bind", "127.0.0.2:0"],
    ];
    for args in cases {
        let mut p = Proc::kadswarm(&args.join(" "), &strings(args));
        let status = p.wait_exit(WAIT);
        assert_eq!(status.code(), Some(2), "{args:?}\n{}", p.dump());
        let err = p.stderr_lines().join("\n");
        assert!(err.contains("--bind") && !err.contains("panicked"), "{args:?}: {err}");
    }
    let dir = common::TempDir::new("ipv6-get");
    let out = dir.0.to_string_lossy().into_owned();
    let args = [
        "get",
        "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567",
        "--output",
        &out,
        "--bind",
        "127.0.0.1:0",
        "--bind",
        "[::1]:0",
        "--no-dht",
    ];
    let mut p = Proc::kadswarm("get with two binds", &strings(&args));
    assert_eq!(p.wait_exit(WAIT).code(), Some(2), "{}", p.dump());
}
