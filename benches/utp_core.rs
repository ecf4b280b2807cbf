//! CPU cost of the sans-IO uTP connection alone: two `Connection`s hand datagrams to each other
//! in memory (no sockets, no loss), one writing, one reading, and the wall time per MiB is
//! reported. This is the ceiling the socket driver works under. Run with
//! `cargo bench --bench utp_core [-- MIB [PAYLOAD]]` (defaults: 512 MiB, 1400-byte packets).
//! A measurement, not a test: nothing here asserts on timing.

// Benches measure real time: reading the clock is their whole job.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use kadswarm::utp::conn::{Config, Connection};
use kadswarm::utp::header::Packet;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let mib: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(512);
    let payload: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1400);
    let total = mib << 20;
    let config = Config { max_payload: payload, ..Config::default() };

    let start = Instant::now();
    // Virtual time advances a little per round so the RTT estimate stays sane.
    let mut now = start;
    let mut a = Connection::connect(now, config.clone(), 1, 100);
    let mut out = Vec::with_capacity(65_536);
    assert!(a.poll_transmit(now, &mut out));
    let mut b = Connection::accept(now, config, &Packet::parse(&out).expect("a SYN"), 200);

    let chunk = vec![0x5au8; 256 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut written, mut read, mut datagrams, mut rounds) = (0usize, 0usize, 0u64, 0u64);
    let mut a_to_b: Vec<Vec<u8>> = Vec::new();
    let mut b_to_a: Vec<Vec<u8>> = Vec::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    while read < total && rounds < 100_000_000 {
        rounds += 1;
        now += Duration::from_micros(20);
        while written < total {
            let n = a.write(&chunk[..chunk.len().min(total - written)]);
            if n == 0 {
                break;
            }
            written += n;
        }
        for (conn, queue) in [(&mut a, &mut a_to_b), (&mut b, &mut b_to_a)] {
            conn.handle_timeout(now);
            loop {
                let mut d = spare.pop().unwrap_or_default();
                d.clear();
                if !conn.poll_transmit(now, &mut d) {
                    spare.push(d);
                    break;
                }
                queue.push(d);
            }
        }
        datagrams += (a_to_b.len() + b_to_a.len()) as u64;
        for d in a_to_b.drain(..) {
            b.handle_packet(now, &Packet::parse(&d).expect("valid"));
            spare.push(d);
        }
        for d in b_to_a.drain(..) {
            a.handle_packet(now, &Packet::parse(&d).expect("valid"));
            spare.push(d);
        }
        loop {
            let n = b.read(&mut buf);
            if n == 0 {
                break;
            }
            read += n;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = a.stats();
    println!(
        "utp core: {} MiB in {:.2} s = {:.0} MiB/s ({:.2} ms CPU per MiB), payload {payload}, {datagrams} datagrams, {rounds} rounds, cwnd {} B, retransmits {}",
        read >> 20,
        secs,
        (read >> 20) as f64 / secs,
        secs * 1000.0 / (read >> 20).max(1) as f64,
        stats.cwnd,
        stats.retransmits,
    );
}
