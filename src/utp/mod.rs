//! uTP (BEP 29): a reliable, ordered byte stream over UDP whose congestion control, LEDBAT
//! (RFC 6817), yields to other traffic by watching one-way queuing delay. The header codec and
//! the connection are sans-IO; the socket driver multiplexes connections on the one UDP socket
//! that the DHT also uses.

pub mod conn;
#[cfg(test)]
mod conn_pair;
pub mod header;
pub mod ledbat;
pub mod mux;
mod recv_buffer;
mod send_buffer;
pub mod socket;
pub mod stream;

pub use mux::{MuxConfig, MuxStats};
pub use socket::UtpSocket;
pub use stream::UtpStream;
