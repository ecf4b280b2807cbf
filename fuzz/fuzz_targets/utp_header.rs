//! Fuzzes the uTP header parser (BEP 29): any datagram must parse or fail, never panic, and a
//! parsed packet must encode back to a packet with the same header, SACK and payload.
#![no_main]

use kadswarm::utp::header::{encode, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(data) {
        let mut out = Vec::new();
        encode(&p.header, p.sack, p.payload, &mut out);
        let again = Packet::parse(&out).expect("our own encoding parses");
        assert_eq!(again.header, p.header);
        assert_eq!(again.sack, p.sack);
        assert_eq!(again.payload, p.payload);
    }
});
