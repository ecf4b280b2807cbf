use super::*;

use crate::clock::now as t0;

fn v4(a: u8, b: u8, c: u8, d: u8) -> SocketAddr {
    SocketAddr::from(([a, b, c, d], 6881))
}

fn cfg(rate: u32, burst: u32) -> LimiterConfig {
    LimiterConfig { rate, burst, capacity: 1024, block_after: 1000, block_for: Duration::from_secs(60) }
}

#[test]
fn a_quiet_source_gets_its_burst_then_the_rate() {
    let now = t0();
    let mut l = Limiter::new(cfg(10, 20), now, [1, 2]);
    let src = v4(1, 2, 3, 4);
    let allowed = (0..100).filter(|_| l.check(now, src) == Verdict::Allow).count();
    assert_eq!(allowed, 20, "the burst, all at once");
    // Over 10 seconds at 100/s: exactly the rate gets through.
    let mut allowed = 0;
    for i in 1..=1000u64 {
        if l.check(now + Duration::from_millis(i * 10), src) == Verdict::Allow {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 100);
    assert_eq!(l.stats().allowed, 120);
    assert_eq!(l.stats().over_limit, 980);
}

#[test]
fn sources_have_their_own_buckets() {
    let now = t0();
    let mut l = Limiter::new(cfg(1, 3), now, [7, 7]);
    for _ in 0..10 {
        l.check(now, v4(1, 1, 1, 1));
    }
    assert_eq!(l.check(now, v4(1, 1, 1, 1)), Verdict::OverLimit);
    assert_eq!(l.check(now, v4(1, 1, 1, 2)), Verdict::Allow, "a neighbour is not punished");
    assert_eq!(l.tracked(), 2);
}

#[test]
fn an_ipv6_slash_64_is_one_source_but_loopback_ports_are_not() {
    let now = t0();
    let mut l = Limiter::new(cfg(1, 5), now, [3, 4]);
    let allowed = (0..50u16)
        .filter(|i| {
            let a: SocketAddr = format!("[2001:db8:1:2::{i:x}]:6881").parse().unwrap();
            l.check(now, a) == Verdict::Allow
        })
        .count();
    assert_eq!(allowed, 5, "fifty addresses of one /64 share one bucket");
    let other: SocketAddr = "[2001:db8:1:3::1]:6881".parse().unwrap();
    assert_eq!(l.check(now, other), Verdict::Allow);
    let allowed = (0..50u16)
        .filter(|i| l.check(now, SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 7000 + i))) == Verdict::Allow)
        .count();
    assert_eq!(allowed, 50, "nodes on [::1] are told apart by port");
    let mapped: SocketAddr = "[::ffff:1.2.3.4]:1".parse().unwrap();
    assert_eq!(host_key(mapped), host_key(v4(1, 2, 3, 4)));
}

#[test]
fn a_source_that_stays_over_is_blocked_then_forgiven() {
    let now = t0();
    let mut l = Limiter::new(
        LimiterConfig { rate: 10, burst: 10, capacity: 64, block_after: 50, block_for: Duration::from_secs(30) },
        now,
        [9, 9],
    );
    let src = v4(5, 5, 5, 5);
    // 500/s for one second: 50x the rate.
    let mut verdicts = Vec::new();
    for i in 0..500u64 {
        verdicts.push(l.check(now + Duration::from_millis(i * 2), src));
    }
    let first_block = verdicts.iter().position(|v| *v == Verdict::Blocked).expect("blocked");
    assert!(first_block < 100, "blocked after about 50 excess datagrams, at {first_block}");
    assert!(verdicts[first_block..].iter().all(|v| *v == Verdict::Blocked), "nothing gets through a block");
    assert_eq!(l.stats().blocks, 1);
    assert_eq!(l.blocked(now + Duration::from_secs(1)), 1);
    // Still blocked 29 s later, even though it went quiet.
    assert_eq!(l.check(now + Duration::from_secs(29), src), Verdict::Blocked);
    // Forgiven after the block, with a full burst.
    let later = now + Duration::from_secs(32);
    let allowed = (0..20).filter(|_| l.check(later, src) == Verdict::Allow).count();
    assert_eq!(allowed, 10);
}

#[test]
fn a_source_just_under_the_rate_is_never_blocked() {
    let now = t0();
    let mut l = Limiter::new(
        LimiterConfig { rate: 10, burst: 10, capacity: 64, block_after: 20, block_for: Duration::from_secs(30) },
        now,
        [9, 9],
    );
    let src = v4(5, 5, 5, 6);
    for i in 0..10_000u64 {
        // 9.5 per second for about 17 minutes.
        assert_eq!(l.check(now + Duration::from_micros(i * 105_264), src), Verdict::Allow, "datagram {i}");
    }
    assert_eq!(l.stats().blocks, 0);
}

#[test]
fn a_spoofed_flood_of_random_sources_costs_fixed_memory() {
    let now = t0();
    let mut l = Limiter::new(cfg(10, 20), now, [11, 13]);
    let bytes = l.memory_bytes();
    assert_eq!(bytes, 1024 * Limiter::SLOT_BYTES);
    let mut x: u32 = 0x1234_5678;
    for i in 0..100_000u64 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let [a, b, c, d] = x.to_be_bytes();
        // Every spoofed source is new, so each gets its burst: nothing is dropped...
        assert_eq!(l.check(now + Duration::from_micros(i), v4(a, b, c, d)), Verdict::Allow);
    }
    // ...but the table never grows.
    assert_eq!(l.memory_bytes(), bytes);
    assert_eq!(l.tracked(), 1024);
    assert!(l.stats().evictions >= 100_000 - 1024);
}

#[test]
fn a_blocked_flooder_is_not_pushed_out_by_a_spoofed_flood() {
    let now = t0();
    let mut l = Limiter::new(
        LimiterConfig { rate: 1, burst: 1, capacity: 256, block_after: 5, block_for: Duration::from_secs(60) },
        now,
        [5, 6],
    );
    let flooder = v4(9, 9, 9, 9);
    for _ in 0..20 {
        l.check(now, flooder);
    }
    assert_eq!(l.check(now, flooder), Verdict::Blocked);
    for i in 0..10_000u32 {
        let [a, b, c, d] = (0x0b00_0000 + i).to_be_bytes();
        l.check(now + Duration::from_millis(1), v4(a, b, c, d));
    }
    assert_eq!(l.check(now + Duration::from_secs(2), flooder), Verdict::Blocked);
}

#[test]
fn rate_zero_turns_it_off() {
    let now = t0();
    let mut l = Limiter::new(LimiterConfig::off(), now, [0, 0]);
    assert_eq!(l.memory_bytes(), 0);
    assert!((0..100_000).all(|_| l.check(now, v4(1, 1, 1, 1)) == Verdict::Allow));
}

#[test]
fn a_slot_is_small() {
    let l = Limiter::new(cfg(1, 1), t0(), [0, 0]);
    let per_source = l.memory_bytes() / 1024;
    assert!(per_source <= 48, "{per_source} bytes per tracked source");
}
