//! `--choker` on `kadswarm get` and `kadswarm seed` between real processes on loopback, the
//! peer named with `--peer` (no DHT, no LSD): a PropShare seeder and a PropShare getter move a
//! payload byte for byte (the getter's upload path runs weighted while it leeches), and a value
//! that is not a choker exits 2 with clap's message naming it.
//!
//! Each test uses its own block of loopback addresses (127.0.16N.1); every process is killed by
//! PID when its guard drops.

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use common::swarm::{addr, assert_same_tree, done_event, get_args, make_payload, MIB, TRANSFER_LIMIT};
use common::{s, Proc, TempDir, WAIT};

#[test]
fn propshare_seed_to_propshare_get_is_byte_exact() {
    let dir = TempDir::new("choker-ps");
    let payload = make_payload(&dir.0, "fair", 8 * MIB, 161);
    let seed_at = addr(161);
    let seed_args = vec![
        s("seed"),
        payload.display().to_string(),
        s("--bind"),
        seed_at.to_string(),
        s("--no-dht"),
        s("--no-lsd"),
        s("--transport"),
        s("tcp"),
        s("--choker"),
        s("propshare"),
    ];
    let mut seed = Proc::kadswarm("kadswarm seed", &seed_args);
    let magnet = seed.wait_magnet();
    seed.wait_tcp_listening(seed_at);
    let out = dir.0.join("out");
    let mut args = get_args(&magnet, &out, addr(162));
    args.extend([s("--no-dht"), s("--no-lsd"), s("--transport"), s("tcp"), s("--peer"), seed_at.to_string()]);
    args.extend([s("--choker"), s("propshare")]);
    let mut get = Proc::kadswarm("kadswarm get", &args);
    let status = get.wait_exit(TRANSFER_LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", get.dump());
    assert_same_tree(&payload, &out.join("fair"));
    let done = done_event(&get).unwrap_or_else(|| panic!("no done event\n{}", get.dump()));
    assert_eq!(done["hash_failures"], 0, "{done}");
}

#[test]
fn a_choker_that_does_not_exist_exits_2() {
    let dir = TempDir::new("choker-bad");
    let out = dir.0.join("out").display().to_string();
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let bind = addr(163).to_string();
    let get = vec![s("get"), s(hash), s("--output"), out, s("--bind"), bind.clone(), s("--choker"), s("bogus")];
    let seed = vec![s("seed"), dir.0.display().to_string(), s("--bind"), bind, s("--choker"), s("bogus")];
    for args in [get, seed] {
        let mut p = Proc::kadswarm("kadswarm", &args);
        let status = p.wait_exit(WAIT);
        let err = p.stderr_lines().join("\n");
        assert_eq!(status.code(), Some(2), "{args:?}\n{err}");
        assert!(err.contains("'bogus'") && err.contains("--choker"), "{args:?}\n{err}");
        assert!(err.contains("tit-for-tat") && err.contains("propshare"), "the choices are listed: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
