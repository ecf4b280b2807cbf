//! Measurements taken from outside the endpoints, as an observer at the bottleneck would:
//! the queuing delay sampled at fixed virtual-time steps (bytes queued / rate, read from the
//! link itself), and robust summaries of the samples.

use std::time::{Duration, Instant};

use super::harness::{Sim, SimError};

/// Runs the simulation to `until`, sampling the queuing delay of `link` every `every` and
/// calling `observe` at each sample (for throughput snapshots and the like).
pub fn run_sampled(
    sim: &mut Sim,
    until: Instant,
    every: Duration,
    link: usize,
    samples: &mut Vec<Duration>,
    mut observe: impl FnMut(&Sim),
) -> Result<(), SimError> {
    assert!(every > Duration::ZERO);
    while sim.now() < until {
        let next = (sim.now() + every).min(until);
        sim.run_until(next)?;
        samples.push(sim.link(link).backlog(sim.now()));
        observe(sim);
    }
    Ok(())
}

/// The p-quantile (0..=1) by nearest rank; `None` for no samples.
pub fn quantile(samples: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let idx = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted.get(idx).copied()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Megabits per second for `bytes` over `over`.
pub fn mbps(bytes: u64, over: Duration) -> f64 {
    bytes as f64 * 8.0 / over.as_secs_f64() / 1e6
}
