//! Fuzzes the edge of the DHT: bencode and KRPC decoding, and a node core fed the datagram.
//! Any panic, hang or runaway allocation is a bug.
#![no_main]

use std::time::Instant;

use kadswarm::dht::krpc::Message;
use kadswarm::dht::node::{Config, Node};
use kadswarm::net::limiter::LimiterConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        // What we decode we must be able to encode and decode again to the same value.
        let again = Message::decode(&msg.encode()).expect("re-encoded message decodes");
        assert_eq!(again, msg);
    }
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    // A small limiter table: the default one (65,536 sources, 3 MiB zeroed) would make every
    // run allocate it and cut the fuzzer's speed a hundredfold. The limiter's logic is the
    // same at any size.
    let limits = LimiterConfig { capacity: 64, ..LimiterConfig::default() };
    let mut node = Node::new(Config { limits, ..Config::default() }, None, 1, now);
    node.handle_packet(now, "10.0.0.1:6881".parse().unwrap(), data);
    while node.poll_transmit().is_some() {}
});
