//! The byte bucket in virtual time: consumers that move a quantum whenever they may, driven by an
//! event loop that jumps to the next consumer's resume time.

use super::*;

use crate::clock::now as t0;

const MB: u64 = 1_000_000;

/// Consumers moving `quantum` bytes each time they may, from `start` until `end`, all charging
/// through `charge`; returns the bytes each moved. The earliest resume time goes first (ties to
/// the lower index, the least fair order possible for the others).
fn run(
    consumers: usize,
    quantum: u64,
    start: Instant,
    end: Instant,
    mut charge: impl FnMut(Instant, u64) -> Option<Instant>,
) -> Vec<u64> {
    let mut ready = vec![start; consumers];
    let mut moved = vec![0u64; consumers];
    for _ in 0..10_000_000 {
        let (i, &t) = ready.iter().enumerate().min_by_key(|(_, t)| **t).expect("a consumer");
        if t >= end {
            return moved;
        }
        moved[i] += quantum;
        ready[i] = charge(t, quantum).unwrap_or(t);
    }
    panic!("the simulation did not reach its end time");
}

#[test]
fn a_fresh_bucket_lets_the_burst_through_at_once_and_no_more() {
    let t = t0();
    let mut b = ByteBucket::new(MB, 250_000, t);
    assert_eq!(b.available(t), 250_000);
    let mut at_once = 0;
    while b.charge(t, 10_000).is_none() {
        at_once += 10_000;
        assert!(at_once <= 250_000, "more than the burst passed at once");
    }
    // The charge that ran into debt went through too: at most one I/O beyond the burst.
    assert_eq!(at_once, 250_000);
    assert_eq!(b.available(t), 0);
}

#[test]
fn the_steady_rate_is_the_limit() {
    let t = t0();
    let mut b = ByteBucket::new(MB, 100_000, t);
    let moved = run(1, 16_384, t, t + Duration::from_secs(10), |now, n| b.charge(now, n));
    // Ten seconds of the rate plus the burst, within one quantum.
    let expected = 10 * MB + 100_000;
    assert!(moved[0].abs_diff(expected) <= 16_384, "moved {} bytes, expected about {expected}", moved[0]);
}

#[test]
fn an_idle_bucket_refills_to_the_burst_and_no_further() {
    let t = t0();
    let mut b = ByteBucket::new(MB, 200_000, t);
    assert!(b.charge(t, 1_000_000).is_some(), "a megabyte at once is debt");
    assert_eq!(b.available(t + Duration::from_millis(500)), 0, "still paying the debt");
    // The debt (0.8 s of the rate) is paid at 0.8 s; the bucket refills from there.
    assert_eq!(b.available(t + Duration::from_millis(900)), 100_000);
    assert_eq!(b.available(t + Duration::from_millis(1100)), 200_000);
    let later = t + Duration::from_secs(60);
    assert_eq!(b.available(later), 200_000, "a minute idle saves up the burst, not a minute of rate");
    let moved = run(1, 10_000, later, later + Duration::from_secs(1), |now, n| b.charge(now, n));
    assert!(moved[0] <= MB + 200_000 + 10_000, "moved {} in the second after idling", moved[0]);
}

#[test]
fn a_zero_rate_is_unlimited() {
    let t = t0();
    let mut b = ByteBucket::new(0, 0, t);
    assert_eq!(b.available(t), u64::MAX);
    assert!((0..1000).all(|_| b.charge(t, u64::MAX / 2).is_none()));
    let shared = RateLimit::new(0, t);
    assert_eq!(shared.rate(), None);
    assert_eq!(shared.quantum(), None);
    assert_eq!(shared.charge(t, u64::MAX), None);
    assert_eq!(RateLimit::unlimited().charge(t, 1), None);
}

#[test]
fn two_consumers_of_one_shared_limit_get_even_shares_of_its_rate() {
    let t = t0();
    let limit = RateLimit::new(MB, t);
    let quantum = limit.quantum().expect("a limit has a quantum");
    // The burst goes to whoever asks first; the shares that matter are those of the rate.
    assert_eq!(limit.charge(t, default_burst(MB)), None);
    let end = t + Duration::from_secs(20);
    let moved = run(2, quantum, t, end, |now, n| limit.charge(now, n));
    let total: u64 = moved.iter().sum();
    let expected = 20 * MB;
    assert!(total.abs_diff(expected) <= 2 * quantum, "together {total} bytes, expected about {expected}");
    // Ties always go to consumer 0, and still neither gets more than a quantum above half.
    assert!(moved[0].abs_diff(moved[1]) <= quantum, "uneven shares: {moved:?}");
}

#[test]
fn a_clone_of_the_handle_shares_the_same_bucket() {
    let t = t0();
    let a = RateLimit::with_burst(MB, 100_000, t);
    let b = a.clone();
    assert!(a.charge(t, 150_000).is_some(), "the burst is spent");
    let resume = b.charge(t, 10_000).expect("the clone sees the spent bucket");
    assert!(resume >= t + Duration::from_millis(10), "waits for both charges: {:?}", resume - t);
}
