//! Sockets, name resolution, and the per-source limits applied to what arrives on a socket.

pub mod addr;
pub mod limiter;
pub mod mmsg;
pub mod rate_limit;
pub mod resolve;
pub mod socket;
pub mod token_bucket;
pub mod udp_endpoint;
