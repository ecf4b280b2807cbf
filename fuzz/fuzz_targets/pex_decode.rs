//! Fuzzes the BEP 11 peer-exchange decoder, the one extended message any connected peer can
//! send us unasked. Any panic, hang or runaway allocation is a bug.
#![no_main]

use kadswarm::wire::pex::{PexLimits, PexMessage, MAX_ADDED_CONSIDERED, MAX_DROPPED_CONSIDERED};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = PexMessage::decode(data, &PexLimits::default()) {
        assert!(msg.added.len() <= MAX_ADDED_CONSIDERED && msg.dropped.len() <= MAX_DROPPED_CONSIDERED);
        // What we decode we must be able to encode and decode again to the same value.
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        let again = PexMessage::decode(&bytes, &PexLimits::default()).expect("re-encoded message decodes");
        assert_eq!(again, msg);
    }
});
