//! The one UDP socket of a bound address and the demultiplexer of what arrives on it.
//!
//! KRPC (BEP 5) and uTP (BEP 29) share the port, as libtorrent does: a bencoded dictionary
//! starts with `d`, while the first byte of a uTP packet holds its type in the high nibble
//! and version 1 in the low one (0x01, 0x11, 0x21, 0x31, 0x41), so one byte tells them apart.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Who a datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    Dht,
    Utp,
    Unknown,
}

pub fn classify(datagram: &[u8]) -> Demux {
    match datagram.first() {
        Some(b'd') => Demux::Dht,
        Some(&b) if b & 0x0f == 1 && b >> 4 <= 4 => Demux::Utp,
        _ => Demux::Unknown,
    }
}

/// Socket buffers big enough that a burst of queries is not dropped by the kernel before
/// the node reads it.
const BUFFER_BYTES: usize = 4 << 20;

/// Binds the UDP socket of `addr` for tokio, with large buffers.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at its own limits.
    let _ = socket.set_recv_buffer_size(BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_by_first_byte() {
        assert_eq!(classify(b"d1:ad2:id20:"), Demux::Dht);
        for b in [0x01u8, 0x11, 0x21, 0x31, 0x41] {
            assert_eq!(classify(&[b, 0, 0]), Demux::Utp, "{b:#x}");
        }
        for b in [0x00u8, 0x51, 0x02, b'l', b'i'] {
            assert_eq!(classify(&[b]), Demux::Unknown, "{b:#x}");
        }
        assert_eq!(classify(&[]), Demux::Unknown);
    }
}
