//! Ping cookies: transaction ids that prove an address answers, with no state kept per ping
//! (bootstrap-dht's scheme, like TCP SYN cookies). The id of a verification ping to an
//! address is the first 4 bytes of SHA-1(secret || IP || port); a response carrying it from
//! that same address proves the address is real, since only its owner saw the ping. Spoofed
//! queries therefore make us send pings but can plant nothing, and cost no memory.
//!
//! The secret changes every `period`; the previous one stays valid so that a ping sent just
//! before a change can still be answered. Our other transaction ids are 2 bytes long
//! ([`crate::dht::transactions`]), so a 4-byte id is always a cookie.
//!
//! Sans-IO: time comes in as `now`, secrets from the caller's RNG.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt};
use sha1::{Digest, Sha1};

/// Length of a cookie transaction id.
pub const COOKIE_LEN: usize = 4;

pub struct Cookies {
    current: [u8; 20],
    previous: [u8; 20],
    period: Duration,
    next_rotation: Instant,
}

impl Cookies {
    pub fn new<R: Rng + ?Sized>(now: Instant, period: Duration, rng: &mut R) -> Cookies {
        let mut c = Cookies { current: [0; 20], previous: [0; 20], period, next_rotation: now + period };
        rng.fill(&mut c.current[..]);
        rng.fill(&mut c.previous[..]);
        c
    }

    /// The transaction id of a verification ping to `addr`.
    pub fn tid(&self, addr: SocketAddr) -> [u8; COOKIE_LEN] {
        cookie(&self.current, addr)
    }

    /// Whether `tid` is the cookie of `addr` under the current or the previous secret.
    pub fn verify(&self, addr: SocketAddr, tid: &[u8]) -> bool {
        tid.len() == COOKIE_LEN && (tid == cookie(&self.current, addr) || tid == cookie(&self.previous, addr))
    }

    /// Changes the secret when its time has come; after two periods without a call, both
    /// secrets are replaced.
    pub fn rotate_if_due<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        if now < self.next_rotation {
            return;
        }
        self.previous = self.current;
        rng.fill(&mut self.current[..]);
        if now >= self.next_rotation + self.period {
            rng.fill(&mut self.previous[..]);
        }
        self.next_rotation = now + self.period;
    }

    pub fn next_rotation(&self) -> Instant {
        self.next_rotation
    }
}

fn cookie(secret: &[u8; 20], addr: SocketAddr) -> [u8; COOKIE_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match addr.ip() {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    h.update(addr.port().to_be_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn t0() -> Instant {
        crate::clock::now()
    }

    const PERIOD: Duration = Duration::from_secs(600);

    #[test]
    fn a_cookie_is_valid_for_its_address_only() {
        let now = t0();
        let c = Cookies::new(now, PERIOD, &mut StdRng::seed_from_u64(1));
        let a: SocketAddr = "203.0.113.9:6881".parse().unwrap();
        let tid = c.tid(a);
        assert!(c.verify(a, &tid));
        for other in ["203.0.113.9:6882", "203.0.113.10:6881", "[::ffff:203.0.113.9]:6881"] {
            assert!(!c.verify(other.parse().unwrap(), &tid), "{other}");
        }
        assert!(!c.verify(a, &tid[..3]));
        let mut forged = tid;
        forged[3] ^= 1;
        assert!(!c.verify(a, &forged));
        // Another node's secret makes other cookies.
        let other = Cookies::new(now, PERIOD, &mut StdRng::seed_from_u64(2));
        assert_ne!(other.tid(a), tid);
    }

    #[test]
    fn the_previous_secret_is_accepted_for_one_period() {
        let now = t0();
        let mut rng = StdRng::seed_from_u64(3);
        let mut c = Cookies::new(now, PERIOD, &mut rng);
        let a: SocketAddr = "198.51.100.1:1".parse().unwrap();
        let first = c.tid(a);
        c.rotate_if_due(now + PERIOD - Duration::from_secs(1), &mut rng);
        assert_eq!(c.tid(a), first, "rotated early");
        c.rotate_if_due(now + PERIOD, &mut rng);
        assert_ne!(c.tid(a), first);
        assert!(c.verify(a, &first), "a ping sent just before the change must still count");
        c.rotate_if_due(now + 2 * PERIOD, &mut rng);
        assert!(!c.verify(a, &first), "a cookie two secrets old is refused");
    }

    #[test]
    fn a_long_silence_replaces_both_secrets() {
        let now = t0();
        let mut rng = StdRng::seed_from_u64(4);
        let mut c = Cookies::new(now, PERIOD, &mut rng);
        let a: SocketAddr = "198.51.100.1:1".parse().unwrap();
        let first = c.tid(a);
        c.rotate_if_due(now + 3 * PERIOD, &mut rng);
        assert!(!c.verify(a, &first));
        assert_eq!(c.next_rotation(), now + 4 * PERIOD);
    }
}
