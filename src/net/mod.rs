//! Sockets and name resolution: the only networking code outside the tokio drivers.

pub mod resolve;
pub mod socket;
