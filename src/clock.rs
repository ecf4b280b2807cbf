//! The process's one reading of the monotonic clock. Protocol cores take `now` as a parameter
//! (so they run in virtual time in `sim.rs` and the tests); the drivers that feed them read the
//! time here, which keeps the `disallowed_methods` exception for `Instant::now` in one place.

use std::time::Instant;

/// The current instant, for drivers to pass into the cores.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}
