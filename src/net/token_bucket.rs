//! A token bucket in thousandths of a token, with time passed in: the budget of things a
//! node does unasked (pings to confirm queriers, cookie pings of the bootstrap role). The
//! per-source limiter keeps its own packed form of the same arithmetic, 48 bytes a source.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: u64,
    /// Most tokens held, in thousandths.
    cap: u64,
    tokens: u64,
    refilled: Instant,
}

impl TokenBucket {
    /// `rate` a second, at most `burst` at once; starts full.
    pub fn new(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        let cap = u64::from(burst) * 1000;
        TokenBucket { rate: u64::from(rate), cap, tokens: cap, refilled: now }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_millis() as u64;
        self.tokens = self.tokens.saturating_add(elapsed.saturating_mul(self.rate)).min(self.cap);
        self.refilled = now;
        if self.tokens < 1000 {
            return false;
        }
        self.tokens -= 1000;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = crate::clock::now();
        let mut b = TokenBucket::new(20, 80, t0);
        assert_eq!((0..200).filter(|_| b.take(t0)).count(), 80);
        let later = t0 + Duration::from_secs(1);
        assert_eq!((0..200).filter(|_| b.take(later)).count(), 20);
        assert_eq!((0..200).filter(|_| b.take(later + Duration::from_secs(60))).count(), 80, "never above the burst");
    }
}
