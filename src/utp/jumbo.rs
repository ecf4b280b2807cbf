//! A private uTP header extension (BEP 29 extension chain) by which a SYN says "I read
//! datagrams up to N bytes". Loopback's MTU is 64 KiB and big datagrams cost far less CPU per
//! byte, but libtorrent reads datagrams into 1500-byte buffers and takes a longer one for a
//! corrupt packet, so big packets may only go to a peer that asked for them. Every uTP stack
//! skips extensions it does not know (the BEP requires it), so other peers never notice it.
//!
//! The extension is added by the driver to the SYNs it sends to loopback peers, and read from
//! the SYNs it receives; the connection itself never sees it.

/// Our extension's type: clear of SACK (1), the old extension bits (2) and libtorrent's close
/// reason (3).
pub const EXT_JUMBO: u8 = 0x6b;
const HEADER_LEN: usize = crate::utp::header::HEADER_LEN;
/// Extensions walked at most.
const MAX_EXTENSIONS: usize = 8;

/// The datagram size the sender of `datagram` says it reads, if it says so.
pub fn advertised(datagram: &[u8]) -> Option<u16> {
    let mut kind = *datagram.get(1)?;
    let mut at = HEADER_LEN;
    for _ in 0..MAX_EXTENSIONS {
        if kind == 0 {
            return None;
        }
        let next = *datagram.get(at)?;
        let len = *datagram.get(at + 1)? as usize;
        let data = datagram.get(at + 2..at + 2 + len)?;
        if kind == EXT_JUMBO && len == 2 {
            return Some(u16::from_be_bytes([data[0], data[1]]));
        }
        kind = next;
        at += 2 + len;
    }
    None
}

/// Puts the extension first in the chain of an encoded packet.
pub fn add(datagram: &mut Vec<u8>, max_datagram: u16) {
    if datagram.len() < HEADER_LEN {
        return;
    }
    let first = datagram[1];
    datagram[1] = EXT_JUMBO;
    let [hi, lo] = max_datagram.to_be_bytes();
    datagram.splice(HEADER_LEN..HEADER_LEN, [first, 2, hi, lo]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::utp::header::{encode, Header, Packet, PacketType};

    fn packet(sack: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
        let h = Header { kind: PacketType::Syn, conn_id: 7, ts_us: 1, ts_diff_us: 2, wnd: 3, seq: 4, ack: 5 };
        let mut out = Vec::new();
        encode(&h, sack, payload, &mut out);
        out
    }

    #[test]
    fn added_it_is_read_back_and_everything_else_is_unchanged() {
        for sack in [None, Some(&[0xf0u8, 0, 0, 1][..])] {
            let plain = packet(sack, b"data");
            let mut with = plain.clone();
            add(&mut with, 65_000);
            assert_eq!(advertised(&with), Some(65_000));
            assert_eq!(advertised(&plain), None);
            // Our own parser, like every other stack, skips it.
            assert_eq!(Packet::parse(&with).unwrap(), Packet::parse(&plain).unwrap());
        }
    }

    #[test]
    fn truncated_or_odd_chains_say_nothing() {
        let mut with = packet(None, b"");
        add(&mut with, 9000);
        for cut in 0..with.len() {
            assert_eq!(advertised(&with[..cut]), None, "cut at {cut}");
        }
        let mut wrong_len = packet(None, b"");
        wrong_len[1] = EXT_JUMBO;
        wrong_len.extend_from_slice(&[0, 1, 9]);
        assert_eq!(advertised(&wrong_len), None);
        add(&mut Vec::new(), 1);
    }
}
