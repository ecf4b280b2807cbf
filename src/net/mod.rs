//! Sockets, name resolution, the per-source limits applied to what arrives on a socket, and
//! the byte-rate limits of peer connections.

pub mod addr;
pub mod limiter;
pub mod rate_limit;
pub mod resolve;
pub mod socket;
pub mod token_bucket;
