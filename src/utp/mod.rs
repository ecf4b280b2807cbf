//! uTP (BEP 29): a reliable, ordered byte stream over UDP whose congestion control, LEDBAT
//! (RFC 6817), yields to other traffic by watching one-way queuing delay. The header codec and
//! the connection are sans-IO; the socket driver multiplexes connections on the one UDP socket
//! that the DHT also uses.

// TEMPORARY until utp-core is merged: a stand-in with the pinned API.
#[path = "stub_conn.rs"]
pub mod conn;
pub mod header;
pub mod ledbat {
    pub use super::conn::LedbatConfig;
}
pub mod mux;
pub mod socket;
pub mod stream;

pub use mux::{MuxConfig, MuxStats};
pub use socket::UtpSocket;
pub use stream::UtpStream;
