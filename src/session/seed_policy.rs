//! When to stop seeding a finished torrent: `--seed-ratio R` (this run uploaded R times the
//! torrent's size) or `--seed-time SECS` (seeded that long), whichever comes first; neither
//! given means until a signal. Sans-IO: the caller passes the clock and the counters.
//!
//! The upload counter counts blocks when they are queued for a peer, not when the peer has them:
//! stopping the moment the ratio is reached would drop what is still queued, and a leecher
//! counting on us for its last pieces would be left without them. So a reached ratio waits for
//! the uploads to go quiet for a tick, at most [`DRAIN`]; a reached time stops at once.

use std::time::{Duration, Instant};

/// Longest wait, once the ratio is reached, for the blocks under way to be sent.
pub const DRAIN: Duration = Duration::from_secs(10);

/// What the user asked for; both `None` seeds until interrupted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SeedPolicy {
    pub ratio: Option<f64>,
    pub time: Option<Duration>,
}

/// Why seeding ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeedStop {
    /// `uploaded` reached the ratio of `size`.
    Ratio { uploaded: u64, size: u64 },
    /// Seeded for the time asked.
    Time(Duration),
}

impl std::fmt::Display for SeedStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedStop::Ratio { uploaded, size } => {
                let ratio = if *size == 0 { 0.0 } else { *uploaded as f64 / *size as f64 };
                write!(f, "seed ratio reached: uploaded {uploaded} bytes, {ratio:.2} times the torrent")
            }
            SeedStop::Time(d) => write!(f, "seed time reached: seeded for {}s", d.as_secs()),
        }
    }
}

impl SeedPolicy {
    /// Whether seeding ends by itself.
    pub fn is_bounded(&self) -> bool {
        self.ratio.is_some() || self.time.is_some()
    }

    /// Whether to stop at `now`, seeding since `since`, having uploaded `uploaded` bytes of a
    /// torrent of `size` bytes in this run.
    pub fn check(&self, since: Instant, now: Instant, uploaded: u64, size: u64) -> Option<SeedStop> {
        if let Some(r) = self.ratio {
            if uploaded as f64 >= r * size as f64 {
                return Some(SeedStop::Ratio { uploaded, size });
            }
        }
        let seeded = now.saturating_duration_since(since);
        self.time.filter(|t| seeded >= *t).map(|_| SeedStop::Time(seeded))
    }
}

/// A [`SeedPolicy`] applied tick by tick, from when seeding began.
#[derive(Debug, Clone)]
pub struct SeedStopper {
    policy: SeedPolicy,
    since: Instant,
    /// The upload counter at the previous tick.
    last_uploaded: u64,
    /// When the ratio was first seen reached.
    ratio_met: Option<Instant>,
}

impl SeedStopper {
    /// Seeding begins at `now` with `uploaded` bytes uploaded so far in this run.
    pub fn new(policy: SeedPolicy, now: Instant, uploaded: u64) -> SeedStopper {
        SeedStopper { policy, since: now, last_uploaded: uploaded, ratio_met: None }
    }

    /// Called about once a second: whether to stop now.
    pub fn on_tick(&mut self, now: Instant, uploaded: u64, size: u64) -> Option<SeedStop> {
        let quiet = uploaded == self.last_uploaded;
        self.last_uploaded = uploaded;
        match self.policy.check(self.since, now, uploaded, size)? {
            stop @ SeedStop::Time(_) => Some(stop),
            stop @ SeedStop::Ratio { .. } => {
                let met = *self.ratio_met.get_or_insert(now);
                (quiet || now.saturating_duration_since(met) >= DRAIN).then_some(stop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::now as t0;

    #[test]
    fn no_policy_seeds_forever() {
        let t = t0();
        let p = SeedPolicy::default();
        assert!(!p.is_bounded());
        assert_eq!(p.check(t, t + Duration::from_secs(1_000_000), u64::MAX, 1), None);
    }

    #[test]
    fn the_ratio_counts_this_runs_upload_against_the_size() {
        let t = t0();
        let p = SeedPolicy { ratio: Some(1.5), time: None };
        assert!(p.is_bounded());
        assert_eq!(p.check(t, t, 1_499, 1_000), None);
        assert_eq!(p.check(t, t, 1_500, 1_000), Some(SeedStop::Ratio { uploaded: 1_500, size: 1_000 }));
        assert!(SeedPolicy { ratio: Some(0.0), time: None }.check(t, t, 0, 1_000).is_some(), "ratio 0 stops at once");
    }

    #[test]
    fn the_time_counts_from_when_seeding_began_and_either_limit_stops() {
        let t = t0();
        let p = SeedPolicy { ratio: Some(2.0), time: Some(Duration::from_secs(60)) };
        let since = t + Duration::from_secs(100);
        assert_eq!(p.check(since, since + Duration::from_secs(59), 0, 1_000), None);
        assert_eq!(
            p.check(since, since + Duration::from_secs(60), 0, 1_000),
            Some(SeedStop::Time(Duration::from_secs(60)))
        );
        assert!(matches!(p.check(since, since, 2_000, 1_000), Some(SeedStop::Ratio { .. })));
    }

    #[test]
    fn a_reached_ratio_waits_for_the_uploads_under_way_but_not_forever() {
        let t = t0();
        let sec = |n: u64| t + Duration::from_secs(n);
        let policy = SeedPolicy { ratio: Some(1.0), time: None };
        let mut s = SeedStopper::new(policy, t, 0);
        assert_eq!(s.on_tick(sec(1), 500, 1_000), None);
        assert_eq!(s.on_tick(sec(2), 1_200, 1_000), None, "reached, but blocks were queued this second");
        assert_eq!(s.on_tick(sec(3), 1_200, 1_000), Some(SeedStop::Ratio { uploaded: 1_200, size: 1_000 }));
        // A peer that keeps taking: stopped after DRAIN all the same.
        let mut s = SeedStopper::new(policy, t, 0);
        let mut stopped = None;
        for n in 1..=30 {
            if let Some(stop) = s.on_tick(sec(n), 1_000 * n, 1_000) {
                stopped = Some((n, stop));
                break;
            }
        }
        assert_eq!(stopped.map(|(n, _)| n), Some(1 + DRAIN.as_secs()));
    }

    #[test]
    fn a_reached_time_stops_at_once_even_while_uploading() {
        let t = t0();
        let policy = SeedPolicy { ratio: None, time: Some(Duration::from_secs(1)) };
        let mut s = SeedStopper::new(policy, t, 100);
        assert_eq!(s.on_tick(t, 200, 1_000), None);
        assert!(matches!(s.on_tick(t + Duration::from_secs(1), 300, 1_000), Some(SeedStop::Time(_))));
    }
}
