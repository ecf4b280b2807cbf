//! uTP (BEP 29): a reliable, ordered byte stream over UDP whose congestion control, LEDBAT
//! (RFC 6817), yields to other traffic by watching one-way queuing delay. The header codec, the
//! connection and the connection table (`mux`) are sans-IO; the UDP socket the DHT also uses
//! is read and written by its one owner task (`net::udp_endpoint`), which polls the table.

pub mod conn;
#[cfg(test)]
mod conn_pair;
pub mod header;
pub mod jumbo;
pub mod ledbat;
pub mod mux;
mod recv_buffer;
mod send_buffer;
pub mod socket;
pub mod stream;

pub use mux::{MuxConfig, MuxStats};
pub use socket::UtpSocket;
pub use stream::UtpStream;
