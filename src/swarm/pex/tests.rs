//! PEX sender timing and diffs, receiver rate limit and filters, in virtual time.

use super::*;

fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `n` peers 10.1.x.y:6881, reachable.
fn peers(range: std::ops::Range<usize>) -> Vec<(SocketAddr, PexFlags)> {
    range.map(|i| (SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 6881)), PexFlags::REACHABLE)).collect()
}

fn payload(m: &PexMessage) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

#[test]
fn first_message_soon_after_the_handshake_then_once_a_minute() {
    let t0 = t0();
    let mut s = PexSender::new(t0);
    let current = peers(0..3);
    assert_eq!(s.poll(t0, &current), None, "not at the handshake itself");
    assert_eq!(s.next_deadline(), t0 + FIRST_DELAY);
    assert!(FIRST_DELAY <= Duration::from_secs(2));
    let m = s.poll(t0 + FIRST_DELAY, &current).expect("first message");
    assert_eq!(m.added, current);
    assert!(m.dropped.is_empty());
    // A change right after: held back for the rest of the minute.
    let more = peers(0..4);
    let t1 = t0 + FIRST_DELAY;
    assert_eq!(s.poll(t1 + Duration::from_secs(59), &more), None);
    let m = s.poll(t1 + SEND_INTERVAL, &more).expect("the next minute's diff");
    assert_eq!(m.added, peers(3..4));
    assert_eq!(s.sent(), 2);
}

#[test]
fn nothing_new_sends_nothing_and_keeps_the_slot_open() {
    let t0 = t0();
    let mut s = PexSender::new(t0);
    // Alone with this peer at first: no message, and the first peer that shows up later is
    // told at once rather than a minute later.
    assert_eq!(s.poll(t0 + Duration::from_secs(5), &[]), None);
    let m = s.poll(t0 + Duration::from_secs(9), &peers(0..1)).expect("sent as soon as there is news");
    assert_eq!(m.added.len(), 1);
    // Same list a minute later: nothing to say.
    assert_eq!(s.poll(t0 + Duration::from_secs(200), &peers(0..1)), None);
}

#[test]
fn dropped_names_only_what_was_advertised() {
    let t0 = t0();
    let mut s = PexSender::new(t0);
    let mut t = t0 + FIRST_DELAY;
    s.poll(t, &peers(0..2)).unwrap();
    t += SEND_INTERVAL;
    // Peer 0 left, peer 5 came: 5 added, 0 dropped; peer 9 was never advertised and is not
    // in the list either, so it cannot be dropped.
    let mut now_list = peers(1..2);
    now_list.extend(peers(5..6));
    let m = s.poll(t, &now_list).unwrap();
    assert_eq!(m.added, peers(5..6));
    assert_eq!(m.dropped, vec![peers(0..1)[0].0]);
    t += SEND_INTERVAL;
    let m = s.poll(t, &[]).unwrap();
    assert!(m.added.is_empty());
    let mut dropped = m.dropped.clone();
    dropped.sort();
    assert_eq!(dropped, vec![peers(1..2)[0].0, peers(5..6)[0].0]);
    t += SEND_INTERVAL;
    assert_eq!(s.poll(t, &[]), None, "nothing left to drop");
}

#[test]
fn at_most_fifty_added_and_fifty_dropped_the_rest_next_time() {
    let t0 = t0();
    let mut s = PexSender::new(t0);
    let mut t = t0 + FIRST_DELAY;
    let m = s.poll(t, &peers(0..120)).unwrap();
    assert_eq!(m.added.len(), 50);
    t += SEND_INTERVAL;
    assert_eq!(s.poll(t, &peers(0..120)).unwrap().added.len(), 50);
    t += SEND_INTERVAL;
    assert_eq!(s.poll(t, &peers(0..120)).unwrap().added.len(), 20);
    t += SEND_INTERVAL;
    let m = s.poll(t, &[]).unwrap();
    assert_eq!((m.added.len(), m.dropped.len()), (0, 50));
    let mut left = 70;
    while left > 0 {
        t += SEND_INTERVAL;
        let m = s.poll(t, &[]).unwrap();
        assert!(m.dropped.len() <= 50);
        left -= m.dropped.len();
    }
    t += SEND_INTERVAL;
    assert_eq!(s.poll(t, &[]), None);
}

#[test]
fn a_peer_that_became_a_seed_is_advertised_again_with_its_new_flags() {
    let t0 = t0();
    let mut s = PexSender::new(t0);
    let p = a("10.9.9.9:51413");
    s.poll(t0 + FIRST_DELAY, &[(p, PexFlags::UTP)]).unwrap();
    let m = s.poll(t0 + FIRST_DELAY + SEND_INTERVAL, &[(p, PexFlags::UTP | PexFlags::SEED)]).unwrap();
    assert_eq!(m.added, vec![(p, PexFlags::UTP | PexFlags::SEED)]);
    assert!(m.dropped.is_empty());
}

#[test]
fn receiver_takes_the_first_then_ignores_messages_sooner_than_45s() {
    let t0 = t0();
    let mut r = PexReceiver::new([]);
    let msg = PexMessage { added: peers(0..2), dropped: vec![] };
    assert_eq!(r.handle(t0, &payload(&msg)).unwrap().len(), 2);
    for secs in [1, 10, 44] {
        let got = r.handle(t0 + Duration::from_secs(secs), &payload(&msg));
        assert!(matches!(got, Err(PexIgnored::TooSoon { .. })), "{secs}: {got:?}");
    }
    assert_eq!(r.spam_count(), 3);
    // Measured from the last message taken, so a spammer gets one through per interval and
    // a well-behaved peer's regular minute is never refused.
    assert_eq!(r.handle(t0 + MIN_RECEIVE_INTERVAL, &payload(&msg)).unwrap().len(), 2);
    assert!(r.handle(t0 + MIN_RECEIVE_INTERVAL + Duration::from_secs(1), &payload(&msg)).is_err());
    assert_eq!(r.spam_count(), 4);
}

#[test]
fn receiver_filters_own_address_port_zero_and_undialable() {
    let t0 = t0();
    let own = a("127.0.183.1:7000");
    let mut r = PexReceiver::new([own]);
    r.add_own(a("[::ffff:203.0.113.5]:7000")); // what a peer saw, mapped: stored as IPv4
    let added = vec![
        (own, PexFlags::default()),
        (a("203.0.113.5:7000"), PexFlags::default()),
        (a("10.0.0.1:0"), PexFlags::default()),
        (a("0.0.0.0:6881"), PexFlags::default()),
        (a("[::]:6881"), PexFlags::default()),
        (a("224.0.0.1:6881"), PexFlags::default()),
        (a("[ff02::1]:6881"), PexFlags::default()),
        (a("255.255.255.255:6881"), PexFlags::default()),
        (a("10.0.0.2:6881"), PexFlags::SEED),
        (a("[::ffff:10.0.0.3]:6881"), PexFlags::default()),
        (a("10.0.0.2:6881"), PexFlags::default()), // listed twice
        (a("[2001:db8::1]:6881"), PexFlags::UTP),
    ];
    let got = r.handle(t0, &payload(&PexMessage { added, dropped: vec![a("10.0.0.9:1")] })).unwrap();
    assert_eq!(got, vec![a("10.0.0.2:6881"), a("10.0.0.3:6881"), a("[2001:db8::1]:6881")]);
}

#[test]
fn receiver_considers_at_most_fifty_added_per_message() {
    let t0 = t0();
    let mut r = PexReceiver::new([]);
    // Encoded by hand: our encoder writes whatever it is given, 300 peers here.
    let got = r.handle(t0, &payload(&PexMessage { added: peers(0..300), dropped: vec![] })).unwrap();
    assert_eq!(got.len(), 50);
}

#[test]
fn malformed_messages_are_errors_and_use_up_the_interval() {
    let t0 = t0();
    let mut r = PexReceiver::new([]);
    assert!(matches!(r.handle(t0, b"d5:added5:abcdee"), Err(PexIgnored::Malformed(_))));
    let ok = payload(&PexMessage { added: peers(0..1), dropped: vec![] });
    assert!(matches!(r.handle(t0 + Duration::from_secs(1), &ok), Err(PexIgnored::TooSoon { .. })));
    assert_eq!(r.handle(t0 + Duration::from_secs(46), &ok).unwrap().len(), 1);
}

/// Two cores talking through the codec: what one sends, the other takes, over ten minutes of
/// a swarm that changes every 20 s.
#[test]
fn sender_and_receiver_agree_over_time() {
    let t0 = t0();
    let mut s = PexSender::new(t0);
    let mut r = PexReceiver::new([]);
    let mut taken = 0;
    let mut t = t0;
    for step in 0..30u64 {
        t += Duration::from_secs(20);
        let current = peers(step as usize..step as usize + 5);
        if let Some(m) = s.poll(t, &current) {
            taken += r.handle(t, &payload(&m)).expect("a kadswarm sender never trips the limit").len();
        }
    }
    assert_eq!(r.spam_count(), 0);
    assert!(s.sent() >= 9, "about one a minute: {}", s.sent());
    assert!(taken >= 5);
}
