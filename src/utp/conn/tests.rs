//! Behaviour tests of the uTP connection, two of them joined by the virtual-time link of
//! [`crate::utp::conn_pair`]: handshake, transfers under loss, reordering and duplication,
//! sequence wrap-around, closing, resets, timeouts, flow control, fast retransmit and SACK,
//! and hostile packets.

use super::*;
use crate::utp::conn_pair::{pattern, transfer, Link, Pair};
use crate::utp::header::{encode, Header, PacketType};

const MIB: usize = 1 << 20;

fn connected(config: Config, link: Link, seed: u64, seqs: (u16, u16)) -> Pair {
    let mut pair = Pair::new(config, link, seed, seqs);
    let ok = pair.run(10_000, Duration::from_secs(30), |p| {
        p.conns.iter().all(|c| c.as_ref().is_some_and(|c| c.state() == State::Connected))
    });
    assert!(ok, "handshake did not complete");
    pair
}

#[test]
fn handshake_uses_the_bep_ids_and_carries_data_both_ways() {
    let mut pair = connected(Config::default(), Link::default(), 1, (100, 5_000));
    assert_eq!((pair.a().recv_id(), pair.a().send_id()), (7_000, 7_001));
    assert_eq!((pair.b().recv_id(), pair.b().send_id()), (7_001, 7_000));
    assert_eq!(pair.a().write(b"hello"), 5);
    assert_eq!(pair.b().write(b"world!"), 6);
    let mut got = [Vec::new(), Vec::new()];
    let ok = pair.run(1_000, Duration::from_secs(10), |p| {
        let mut buf = [0u8; 64];
        for (conn, got) in p.conns.iter_mut().zip(got.iter_mut()) {
            let n = conn.as_mut().unwrap().read(&mut buf);
            got.extend_from_slice(&buf[..n]);
        }
        got[0] == b"world!" && got[1] == b"hello" && p.a().all_acked() && p.b().all_acked()
    });
    assert!(ok, "{got:?}");
    assert!(pair.a().stats().rtt >= Duration::from_millis(20));
}

#[test]
fn acceptor_answers_a_retransmitted_syn_again() {
    let mut pair = Pair::new(Config::default(), Link::default(), 2, (1, 2));
    // The first STATE from the acceptor is lost.
    let mut dropped = false;
    pair.filter = Some(Box::new(move |from, p| {
        let drop = from == 1 && p.header.kind == PacketType::State && !dropped;
        dropped |= drop;
        drop
    }));
    let ok = pair
        .run(1_000, Duration::from_secs(10), |p| p.conns[0].as_ref().is_some_and(|c| c.state() == State::Connected));
    assert!(ok);
    assert_eq!(pair.a().stats().timeouts, 1);
}

fn check_transfer(link: Link, seed: u64, len: usize, seqs: (u16, u16)) -> (ConnStats, ConnStats) {
    let mut pair = connected(Config::default(), link, seed, seqs);
    let data = pattern(len);
    let got = transfer(&mut pair, 0, &data, 2_000_000, Duration::from_secs(3_600));
    assert_eq!(got.len(), data.len(), "seed {seed}: {:?}", pair.a().stats());
    assert!(got == data, "seed {seed}: bytes differ");
    (pair.a().stats(), pair.b().stats())
}

#[test]
fn lossless_transfer_is_byte_exact() {
    let (a, b) = check_transfer(Link::default(), 3, 4 * MIB, (40_000, 20_000));
    assert_eq!(b.bytes_delivered, 4 * MIB as u64);
    assert_eq!(a.bytes_sent, 4 * MIB as u64);
    assert_eq!(a.retransmits, 0);
    assert_eq!(a.timeouts, 0);
}

#[test]
fn transfers_survive_loss_reordering_and_duplication() {
    for (loss, seed) in [(0.0, 4), (0.02, 5), (0.10, 6)] {
        let link = Link { loss, dup: 0.02, reorder: 0.05, rate: Some(20 << 20), ..Link::default() };
        let (a, _) = check_transfer(link, seed, 3 * MIB, (1, 1));
        println!("loss {loss}: {a:?}");
        if loss > 0.0 {
            assert!(a.fast_retransmits > 0, "{a:?}");
            assert!(a.retransmits >= a.fast_retransmits);
        }
    }
}

#[test]
fn big_packets_from_the_peer_are_accepted() {
    // Peers on loopback send datagrams of tens of KiB; max_payload only limits what we send.
    let big = Config { max_payload: 60_000, ..Config::default() };
    let mut pair = Pair::with_configs([big, Config::default()], Link { loss: 0.02, ..Link::default() }, 19, (9, 9));
    pair.run(1_000, Duration::from_secs(10), |p| p.conns[1].is_some());
    let data = pattern(2 * MIB);
    let got = transfer(&mut pair, 0, &data, 100_000, Duration::from_secs(600));
    assert!(got == data);
    assert!(pair.a().stats().packets_sent < 200);
}

#[test]
fn the_payload_can_grow_mid_connection() {
    let mut pair = connected(Config::default(), Link { loss: 0.02, ..Link::default() }, 23, (500, 600));
    let data = pattern(MIB + 100_000);
    // The first 100 kB go in 1400-byte packets, the rest after the change.
    assert_eq!(pair.a().write(&data[..100_000]), 100_000);
    let mut head = Vec::new();
    let ok = pair.run(100_000, Duration::from_secs(600), |p| {
        let mut buf = [0u8; 4096];
        loop {
            let n = p.b().read(&mut buf);
            head.extend_from_slice(&buf[..n]);
            if n == 0 {
                break;
            }
        }
        head.len() == 100_000 && p.a().all_acked()
    });
    assert!(ok && head[..] == data[..100_000]);
    let small = pair.a().stats();
    pair.a().set_max_payload(30_000);
    let got = transfer(&mut pair, 0, &data[100_000..], 100_000, Duration::from_secs(600));
    assert!(got[..] == data[100_000..]);
    let big = pair.a().stats();
    let per_packet = (big.bytes_sent - small.bytes_sent) / (big.packets_sent - small.packets_sent).max(1);
    assert!(small.bytes_sent / small.packets_sent.max(1) <= 1400);
    assert!(per_packet > 10_000, "{per_packet} bytes a packet after the change");
}

#[test]
fn sequence_numbers_wrap() {
    let link = Link { loss: 0.02, reorder: 0.05, ..Link::default() };
    // A MiB is about 750 packets, so both numbers wrap past 65535.
    check_transfer(link, 7, MIB, (65_500, 65_300));
}

#[test]
fn fin_closes_both_sides_after_all_data() {
    let mut pair = connected(Config::default(), Link::default(), 8, (10, 20));
    let data = pattern(100_000);
    let got = transfer(&mut pair, 0, &data, 100_000, Duration::from_secs(60));
    assert!(got == data);
    assert!(pair.b().at_eof());
    assert_eq!(pair.b().write(b"last words"), 10);
    pair.b().close();
    let mut tail = Vec::new();
    let ok = pair.run(10_000, Duration::from_secs(60), |p| {
        let mut buf = [0u8; 64];
        let n = p.a().read(&mut buf);
        tail.extend_from_slice(&buf[..n]);
        p.conns.iter().all(|c| c.as_ref().unwrap().state() == State::Closed)
    });
    assert!(ok, "a {:?} b {:?}", pair.a().state(), pair.b().state());
    assert_eq!(tail, b"last words");
    for side in 0..2 {
        let c = pair.conns[side].as_mut().unwrap();
        assert_eq!(c.error(), None);
        assert!(c.all_acked() && c.at_eof());
        assert_eq!(c.write(b"x"), 0);
        assert_eq!(c.next_deadline(), None);
    }
}

#[test]
fn reset_closes_the_peer_with_an_error() {
    let mut pair = connected(Config::default(), Link::default(), 9, (10, 20));
    pair.b().reset();
    assert_eq!(pair.b().state(), State::Closed);
    assert_eq!(pair.b().error(), None);
    let ok = pair.run(100, Duration::from_secs(5), |p| p.a().state() == State::Closed);
    assert!(ok);
    assert_eq!(pair.a().error(), Some(ConnError::Reset));
    assert_eq!(pair.a().write(b"x"), 0);
}

#[test]
fn unanswered_syn_times_out_after_three_tries() {
    let mut pair = Pair::new(Config::default(), Link { loss: 1.0, ..Link::default() }, 10, (1, 2));
    let start = pair.now;
    let ok = pair.run(1_000, Duration::from_secs(60), |p| p.a().state() == State::Closed);
    assert!(ok);
    assert_eq!(pair.a().error(), Some(ConnError::TimedOut));
    assert_eq!(pair.sent[0], 3);
    // 1 s, then 2 s, then 4 s.
    assert_eq!(pair.now - start, Duration::from_secs(7));
}

#[test]
fn silent_peer_times_out() {
    let mut pair = connected(Config::default(), Link::default(), 11, (1, 2));
    pair.link.loss = 1.0;
    pair.a().write(&[1; 10_000]);
    let ok = pair.run(10_000, Duration::from_secs(3_600), |p| p.a().state() == State::Closed);
    assert!(ok);
    assert_eq!(pair.a().error(), Some(ConnError::TimedOut));
    assert_eq!(pair.a().stats().timeouts, Config::default().max_retransmits as u64);
}

#[test]
fn zero_window_stalls_the_sender_then_reopens() {
    let small = Config { recv_buffer: 20_000, ..Config::default() };
    let mut pair = Pair::with_configs([Config::default(), small], Link::default(), 12, (1, 2));
    pair.run(1_000, Duration::from_secs(10), |p| p.conns[1].is_some());
    let data = pattern(200_000);
    let mut written = 0;
    // The receiver does not read for a minute: the sender must stall without timing out.
    pair.run(100_000, Duration::from_secs(60), |p| {
        written += p.a().write(&data[written..]);
        false
    });
    assert_eq!(pair.a().state(), State::Connected);
    let stalled = pair.a().stats();
    println!("stalled: {stalled:?}");
    // Probes went out (and were refused), but a live peer with a full buffer is no timeout.
    assert_eq!(stalled.timeouts, 0);
    assert!(stalled.retransmits > 0);
    let buffered = pair.b().stats().bytes_delivered as usize;
    assert!((20_000..=20_000 + 1_400).contains(&buffered), "{buffered}");
    // transfer() writes what is left and reads everything, the bytes buffered while stalled
    // first.
    let got = transfer(&mut pair, 0, &data[written..], 100_000, Duration::from_secs(600));
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    assert_eq!(pair.a().error(), None);
}

#[test]
fn one_lost_packet_is_repaired_by_sack_and_fast_retransmit() {
    let mut pair = connected(Config::default(), Link::default(), 13, (1, 2));
    let mut data_packets = 0;
    pair.filter = Some(Box::new(move |from, p| {
        if from == 0 && p.header.kind == PacketType::Data {
            data_packets += 1;
            return data_packets == 5;
        }
        false
    }));
    let data = pattern(200_000);
    let got = transfer(&mut pair, 0, &data, 100_000, Duration::from_secs(60));
    assert!(got == data);
    let a = pair.a().stats();
    assert!(pair.sacks_sent[1] > 0, "the receiver never sent a SACK");
    assert_eq!((a.fast_retransmits, a.retransmits, a.timeouts), (1, 1, 0), "{a:?}");
}

/// A datagram to `conn` on its receive id, as its peer would send it.
fn hostile(conn: &Connection, kind: PacketType, seq: u16, ack: u16, wnd: u32, payload: &[u8]) -> Vec<u8> {
    let h = Header { kind, conn_id: conn.recv_id(), ts_us: 1, ts_diff_us: 1, wnd, seq, ack };
    let mut out = Vec::new();
    encode(&h, None, payload, &mut out);
    out
}

#[test]
fn hostile_packets_change_nothing_dangerous() {
    let mut pair = connected(Config::default(), Link::default(), 14, (100, 200));
    pair.a().write(&pattern(50_000));
    pair.run(10, Duration::from_millis(5), |_| false);
    let now = pair.now;
    let b_ack = pair.b().recv.ack_nr();
    let a = pair.a();
    let unacked = a.send.packets();
    assert!(unacked > 0);
    let next = a.send.next_seq();
    let peer_seq = a.recv.ack_nr().wrapping_add(1);
    // Acks of packets never sent: the whole packet is ignored.
    for ack in [next, next.wrapping_add(1_000), next.wrapping_add(30_000)] {
        let d = hostile(a, PacketType::State, peer_seq, ack, 1 << 20, b"");
        a.handle_packet(now, &Packet::parse(&d).unwrap());
        assert_eq!(a.send.packets(), unacked);
    }
    // A huge window does not lift the congestion window.
    let d = hostile(a, PacketType::State, peer_seq, a.send.una().wrapping_sub(1), u32::MAX, b"");
    a.handle_packet(now, &Packet::parse(&d).unwrap());
    assert!(a.window() <= a.config.ledbat.max_window);
    // Data far ahead is dropped without buffering; data at the window's edge is held.
    let before = a.recv.window();
    for seq in [peer_seq.wrapping_add(5_000), peer_seq.wrapping_add(40_000)] {
        let d = hostile(a, PacketType::Data, seq, a.send.una().wrapping_sub(1), 1 << 20, &[0; 1000]);
        a.handle_packet(now, &Packet::parse(&d).unwrap());
        assert_eq!(a.recv.window(), before);
    }
    // Wrong connection ids and a SYN are ignored.
    let mut d = hostile(a, PacketType::Reset, 0, 0, 0, b"");
    d[2] ^= 0x55;
    a.handle_packet(now, &Packet::parse(&d).unwrap());
    let d = hostile(a, PacketType::Syn, 0, 0, 0, b"");
    a.handle_packet(now, &Packet::parse(&d).unwrap());
    assert_eq!(a.state(), State::Connected);
    // And the transfer still completes.
    pair.a().close();
    let ok = pair.run(100_000, Duration::from_secs(60), |p| {
        let mut buf = [0u8; 4096];
        while p.b().read(&mut buf) > 0 {}
        p.b().at_eof()
    });
    assert!(ok);
    assert!(pair.b().recv.ack_nr() != b_ack);
}

#[test]
fn writes_coalesce_into_full_packets() {
    let mut pair = connected(Config::default(), Link::default(), 15, (1, 2));
    let now = pair.now;
    let a = pair.a();
    let mut out = Vec::new();
    // The first short write goes out at once: nothing is in flight.
    a.write(b"x");
    assert!(a.poll_transmit(now, &mut out));
    assert_eq!(out.len(), 21);
    // Further small writes wait while it is unacked, until they fill a packet.
    for _ in 0..1399 {
        a.write(b"y");
        out.clear();
        assert!(!a.poll_transmit(now, &mut out));
    }
    a.write(b"z");
    out.clear();
    assert!(a.poll_transmit(now, &mut out));
    assert_eq!(out.len(), 20 + 1400);
    // flush() sends the remainder.
    a.write(b"tail");
    out.clear();
    assert!(!a.poll_transmit(now, &mut out));
    a.flush();
    assert!(a.poll_transmit(now, &mut out));
    assert_eq!(out.len(), 24);
}

#[test]
fn a_batch_of_packets_is_acked_once() {
    let mut pair = connected(Config::default(), Link::default(), 16, (1, 2));
    let now = pair.now;
    let mut datagrams = Vec::new();
    let a = pair.a();
    a.write(&pattern(14_000));
    let mut out = Vec::new();
    while a.poll_transmit(now, &mut out) {
        datagrams.push(std::mem::take(&mut out));
    }
    assert!(datagrams.len() >= 2);
    let b = pair.b();
    for d in &datagrams {
        b.handle_packet(now, &Packet::parse(d).unwrap());
    }
    assert!(b.poll_transmit(now, &mut out));
    out.clear();
    assert!(!b.poll_transmit(now, &mut out));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Random packets, half of them near the live sequence numbers: nothing panics, what goes
    /// out parses, the ack and selective ACK we send claim only packets we were given, and the
    /// bytes in flight keep to the windows.
    #[test]
    fn random_packets_keep_the_ack_and_the_windows_honest(
        packets in proptest::collection::vec(
            (0u8..5, proptest::prelude::any::<bool>(), proptest::prelude::any::<u16>(), proptest::prelude::any::<u16>(),
             proptest::prelude::any::<u32>(), proptest::prelude::any::<u32>(),
             proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..40)),
             proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100), 0u64..2_000),
            1..40)
    ) {
        let mut pair = connected(Config::default(), Link::default(), 17, (65_530, 3));
        pair.a().write(&pattern(20_000));
        pair.run(5, Duration::from_millis(1), |_| false);
        let start = pair.now;
        let a = pair.a();
        let (una, next, peer) = (a.send.una(), a.send.next_seq(), a.recv.ack_nr());
        // Sequence numbers of the DATA and FIN packets given to `a`: all it may ever ack.
        let mut given = std::collections::HashSet::new();
        let mut acked_to = 0u16;
        let max_flight = a.config.ledbat.max_window + a.config.max_payload;
        let mut out = Vec::new();
        for (kind, near, seq, ack, ts, wnd, sack, payload, ms) in packets {
            let kind = [PacketType::Data, PacketType::Fin, PacketType::State, PacketType::Reset, PacketType::Syn][kind as usize];
            // Half of them near the live sequence numbers, where the logic actually runs.
            let (seq, ack) = if near { (peer.wrapping_add(seq % 8), una.wrapping_add(ack % (next.wrapping_sub(una) + 1)).wrapping_sub(1)) } else { (seq, ack) };
            if matches!(kind, PacketType::Data | PacketType::Fin) {
                given.insert(seq);
            }
            let h = Header { kind, conn_id: a.recv_id(), ts_us: ts, ts_diff_us: ts.rotate_left(7), wnd, seq, ack };
            // Any SACK length (libtorrent's are not multiples of 4), so encode it by hand.
            let mut d = Vec::new();
            encode(&h, None, &[], &mut d);
            if let Some(sack) = &sack {
                d[1] = 1;
                d.extend_from_slice(&[0, sack.len() as u8]);
                d.extend_from_slice(sack);
            }
            d.extend_from_slice(&payload);
            let now = start + Duration::from_millis(ms);
            a.handle_packet(now, &Packet::parse(&d).unwrap());
            a.handle_timeout(now);

            // The cumulative ack only moves forward, and only over packets we were given.
            let ack_nr = a.recv.ack_nr();
            let dist = ack_nr.wrapping_sub(peer);
            proptest::prop_assert!(dist >= acked_to, "the ack went back from {acked_to} to {dist} past the start");
            for k in acked_to + 1..=dist {
                proptest::prop_assert!(given.contains(&peer.wrapping_add(k)), "acks {ack_nr}, but {} never came", peer.wrapping_add(k));
            }
            acked_to = dist;

            for _ in 0..2_000 {
                out.clear();
                let (una_before, window) = (a.send.una(), a.window());
                if !a.poll_transmit(now, &mut out) { break; }
                let p = Packet::parse(&out);
                proptest::prop_assert!(p.is_ok());
                let p = p.unwrap();
                let h = p.header;
                if h.kind == PacketType::Reset {
                    continue;
                }
                proptest::prop_assert_eq!(h.ack, a.recv.ack_nr());
                // Bit j of the selective ACK: packet ack + 2 + j is held. Whole 4-byte words, at
                // most 32 bytes, the last word not empty, and never a packet we were not given.
                if let Some(mask) = p.sack {
                    proptest::prop_assert!(mask.len() % 4 == 0 && (4..=32).contains(&mask.len()), "{mask:?}");
                    proptest::prop_assert!(mask[mask.len() - 4..].iter().any(|&b| b != 0), "{mask:?}");
                    for j in 0..mask.len() * 8 {
                        let s = h.ack.wrapping_add(2 + j as u16);
                        proptest::prop_assert!(mask[j / 8] & (1 << (j % 8)) == 0 || given.contains(&s), "SACK of {s}, never given");
                    }
                }
                // Only the oldest unacked packet may go out past the window (everything waits
                // on it); any other leaves at most the window in flight.
                if h.kind == PacketType::Data {
                    proptest::prop_assert!(p.payload.len() <= a.config.max_payload);
                    let i = h.seq.wrapping_sub(una_before);
                    let flight = a.send.flight();
                    proptest::prop_assert!(i == 0 || flight <= window, "packet {i} leaves {flight} in flight, window {window}");
                }
            }
            // And whatever the packets said, the congestion window keeps to its bounds, the
            // flight to the largest window plus that one packet, the packets to their cap.
            let (cwnd, flight) = (a.stats().cwnd, a.send.flight());
            proptest::prop_assert!((a.config.max_payload..=a.config.ledbat.max_window).contains(&cwnd), "cwnd {cwnd}");
            proptest::prop_assert!(flight <= max_flight && flight <= a.send.buffered(), "{flight} in flight");
            proptest::prop_assert!(a.send.packets() <= MAX_INFLIGHT_PACKETS);
            let _ = (a.next_deadline(), a.all_acked(), a.read(&mut [0; 100]));
        }
    }
}

/// Keeps side 0 writing and side 1 reading for `time`; returns the bytes side 1 read.
fn bulk(pair: &mut Pair, time: Duration) -> u64 {
    let chunk = vec![7u8; 64 * 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    pair.run(usize::MAX, time, |p| {
        while p.a().write(&chunk) > 0 {}
        loop {
            let n = p.b().read(&mut buf);
            if n == 0 {
                break;
            }
            read += n as u64;
        }
        false
    });
    read
}

#[test]
fn ledbat_fills_a_bottleneck_and_holds_the_queue_near_target() {
    // 10 Mbit/s, 40 ms round trip, a drop-tail buffer of one second.
    let rate = 10_000_000 / 8;
    let link =
        Link { delay: Duration::from_millis(20), rate: Some(rate), queue: Duration::from_secs(1), ..Link::default() };
    let mut pair = connected(Config::default(), link, 18, (1, 2));
    let warmup = bulk(&mut pair, Duration::from_secs(30));
    println!("warm-up: {warmup} bytes in 30 s, largest queue {:?}", pair.queued[0].2);
    pair.queued = Default::default();
    let secs = 60;
    let read = bulk(&mut pair, Duration::from_secs(secs));
    let (n, total, max) = pair.queued[0];
    let wire = read as f64 * 1420.0 / 1400.0 / secs as f64;
    let mean_queue = total / n.max(1) as u32;
    println!(
        "utilisation {:.1}%, mean queue {mean_queue:?}, max {max:?}, {:?}",
        wire * 100.0 / rate as f64,
        pair.a().stats()
    );
    assert!(wire >= 0.9 * rate as f64);
    assert!(mean_queue <= Duration::from_millis(125));
}

/// Many seeded runs over lossy, duplicating, reordering links: the data arrives, comes back,
/// and both sides close.
#[test]
fn many_seeded_transfers_deliver_and_close() {
    const SEEDS: u64 = 100;
    let links = [(0.1, Some(5 << 20)), (0.03, None), (0.15, Some(1 << 20))];
    // Runs whose connect timed out, per link: nothing else to check in them.
    let mut skipped = [0u32; 3];
    for seed in 100..100 + SEEDS {
        for (link_i, &(loss, rate)) in links.iter().enumerate() {
            let link = Link { loss, dup: 0.05, reorder: 0.1, rate, ..Link::default() };
            let seqs = ((seed * 7919) as u16, (seed * 104_729) as u16);
            let mut pair = Pair::new(Config::default(), link, seed, seqs);
            let data = pattern(300_000);
            let got = transfer(&mut pair, 0, &data, 2_000_000, Duration::from_secs(3_600));
            if pair.a().stats().packets_received == 0 {
                // Three SYNs or their answers lost: the connect gave up, and said so.
                assert_eq!(pair.a().error(), Some(ConnError::TimedOut), "seed {seed} loss {loss}: heard nothing");
                skipped[link_i] += 1;
                continue;
            }
            assert!(
                got == data,
                "seed {seed} loss {loss}: {} of {} {:?} {:?} {:?}",
                got.len(),
                data.len(),
                pair.a().stats(),
                pair.a().state(),
                pair.a().error()
            );
            // And back, then close both.
            assert!(pair.conns[1].is_some(), "seed {seed} loss {loss}: never accepted");
            let back = transfer(&mut pair, 1, &data[..50_000], 2_000_000, Duration::from_secs(3_600));
            let sides = (pair.a().stats(), pair.a().error(), pair.b().stats(), pair.b().error());
            assert!(back == data[..50_000], "seed {seed} loss {loss} back: {} bytes, {sides:?}", back.len());
            let ok = pair.run(1_000_000, Duration::from_secs(3_600), |p| {
                p.conns.iter().all(|c| c.as_ref().unwrap().state() == State::Closed)
            });
            assert!(ok, "seed {seed} loss {loss} close: {:?} {:?}", pair.a().state(), pair.b().state());
        }
    }
    // A connect fails when each of its three tries loses the SYN or the STATE answering it:
    // (1 - (1 - loss)^2)^3 of the runs, 0.7, 0.02 and 2.1 of the 100 for these links. Far more
    // means handshakes are failing, and the runs skipped would hide it.
    println!("connects that timed out, per link: {skipped:?}");
    for (&(loss, _), &n) in links.iter().zip(&skipped) {
        let expected = SEEDS as f64 * (1.0 - (1.0f64 - loss).powi(2)).powi(3);
        assert!(
            f64::from(n) <= 3.0 * expected + 3.0,
            "loss {loss}: {n} of {SEEDS} connects timed out, {expected:.1} expected"
        );
    }
}

/// Random buffer sizes, packet sizes and slow readers, both directions at once: everything is
/// delivered in order and both sides close cleanly.
#[test]
fn random_configs_and_slow_readers_both_ways() {
    use rand::{RngExt, SeedableRng};
    for seed in 0..200u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let cfg = |rng: &mut rand::rngs::StdRng| Config {
            recv_buffer: rng.random_range(3_000..80_000),
            send_buffer: rng.random_range(1_000..200_000),
            max_payload: rng.random_range(100..3_000),
            ..Config::default()
        };
        let configs = [cfg(&mut rng), cfg(&mut rng)];
        let link =
            Link { loss: rng.random_range(0.0..0.1), dup: 0.02, reorder: 0.05, rate: Some(2 << 20), ..Link::default() };
        let mut pair = Pair::with_configs(configs, link, seed, (rng.random(), rng.random()));
        pair.tick = Some(Duration::from_millis(5));
        let data = [pattern(rng.random_range(0..200_000)), pattern(rng.random_range(0..200_000))];
        let mut written = [0usize; 2];
        let mut got = [Vec::new(), Vec::new()];
        let read_max = [rng.random_range(1..5_000usize), rng.random_range(1..5_000usize)];
        let mut buf = vec![0u8; 5_000];
        let ok = pair.run(5_000_000, Duration::from_secs(36_000), |p| {
            for side in 0..2 {
                let Some(c) = p.conns[side].as_mut() else { continue };
                written[side] += c.write(&data[side][written[side]..]);
                if written[side] == data[side].len() {
                    c.close();
                }
                let n = c.read(&mut buf[..read_max[side]]);
                got[side].extend_from_slice(&buf[..n]);
            }
            p.conns
                .iter()
                .all(|c| c.as_ref().is_some_and(|c| c.state() == State::Closed && (c.at_eof() || c.error().is_some())))
        });
        let states: Vec<_> = pair.conns.iter().map(|c| c.as_ref().map(|c| (c.state(), c.error(), c.stats()))).collect();
        assert!(ok, "seed {seed}: {states:?} got {} {}", got[0].len(), got[1].len());
        assert!(
            got[1] == data[0] && got[0] == data[1],
            "seed {seed}: {states:?} got {} {} of {} {}",
            got[0].len(),
            got[1].len(),
            data[1].len(),
            data[0].len()
        );
    }
}
