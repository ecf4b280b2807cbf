use super::*;

fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn block(index: u32, begin: u32) -> BlockRef {
    BlockRef { index, begin, length: 16384 }
}

fn drain(p: &mut PeerState) -> Vec<Message> {
    std::iter::from_fn(|| p.poll_message()).collect()
}

#[test]
fn no_requests_until_unchoked_and_interested() {
    let now = t0();
    let mut p = PeerState::new(now, PeerConfig::default());
    assert_eq!(p.request_room(), 0);
    p.set_interested(now, true);
    assert_eq!(drain(&mut p), vec![Message::Interested]);
    assert_eq!(p.request_room(), 0, "still choked");
    assert_eq!(p.handle_message(now, Message::Unchoke), Ok(Some(PeerEvent::Unchoked)));
    assert_eq!(p.request_room(), PeerConfig::default().min_depth);
    p.set_interested(now, true);
    assert!(drain(&mut p).is_empty(), "no repeated interested");
}

#[test]
fn choke_releases_outstanding_requests() {
    let now = t0();
    let mut p = PeerState::new(now, PeerConfig::default());
    p.set_interested(now, true);
    p.handle_message(now, Message::Unchoke).unwrap();
    p.request(now, block(0, 0));
    p.request(now, block(0, 16384));
    let ev = p.handle_message(now, Message::Choke).unwrap();
    assert_eq!(ev, Some(PeerEvent::Choked { released: vec![block(0, 0), block(0, 16384)] }));
    assert_eq!(p.outstanding(), 0);
}

#[test]
fn blocks_must_have_been_requested() {
    let now = t0();
    let mut p = PeerState::new(now, PeerConfig::default());
    p.set_interested(now, true);
    p.handle_message(now, Message::Unchoke).unwrap();
    p.request(now, block(3, 0));
    let data = vec![7u8; 16384];
    let ev = p.handle_message(now, Message::Piece { index: 3, begin: 0, data: data.clone() }).unwrap();
    assert_eq!(ev, Some(PeerEvent::Block { block: block(3, 0), data: data.clone() }));
    assert_eq!(p.download.total(), 16384);
    let again = p.handle_message(now, Message::Piece { index: 3, begin: 0, data });
    assert_eq!(again, Err(PeerError::UnrequestedBlock(block(3, 0))));
}

#[test]
fn depth_follows_the_measured_rate() {
    let now = t0();
    let mut p = PeerState::new(now, PeerConfig::default());
    p.set_interested(now, true);
    p.handle_message(now, Message::Unchoke).unwrap();
    let mut t = now;
    // 200 blocks a second for five seconds: about 3 s worth (600 blocks) capped at 500.
    for _ in 0..5 {
        for i in 0..200u32 {
            p.request(t, block(i, 0));
            p.handle_message(t, Message::Piece { index: i, begin: 0, data: vec![0; 16384] }).unwrap();
        }
        t += Duration::from_secs(1);
        p.handle_timeout(t).unwrap();
    }
    assert!(p.target_depth() >= 400, "depth {}", p.target_depth());
    // A peer that goes quiet: the estimate decays and so does the depth.
    for _ in 0..30 {
        t += Duration::from_secs(1);
        p.handle_message(t, Message::KeepAlive).unwrap();
        p.handle_timeout(t).unwrap();
    }
    assert_eq!(p.target_depth(), PeerConfig::default().min_depth);
}

#[test]
fn their_requests_are_queued_only_while_unchoked_and_bounded() {
    let now = t0();
    let config = PeerConfig { max_peer_requests: 3, ..PeerConfig::default() };
    let mut p = PeerState::new(now, config);
    assert_eq!(p.handle_message(now, Message::Request(block(0, 0))), Ok(None), "choked: dropped");
    p.set_choking(now, false);
    assert_eq!(drain(&mut p), vec![Message::Unchoke]);
    for i in 0..3 {
        assert_eq!(p.handle_message(now, Message::Request(block(i, 0))), Ok(Some(PeerEvent::Request(block(i, 0)))));
    }
    assert_eq!(p.handle_message(now, Message::Request(block(9, 0))), Err(PeerError::TooManyRequests(3)));
    p.handle_message(now, Message::Cancel(block(1, 0))).unwrap();
    assert_eq!(p.next_owed(), Some(block(0, 0)));
    assert_eq!(p.next_owed(), Some(block(2, 0)));
    assert_eq!(p.next_owed(), None);
    p.handle_message(now, Message::Request(block(5, 0))).unwrap();
    p.set_choking(now, true);
    assert_eq!(p.next_owed(), None, "choking forgets what we owed");
}

#[test]
fn timers_keepalive_idle_and_request_timeouts() {
    let now = t0();
    let config = PeerConfig::default();
    let mut p = PeerState::new(now, config.clone());
    p.set_interested(now, true);
    p.handle_message(now, Message::Unchoke).unwrap();
    p.request(now, block(1, 0));
    drain(&mut p);
    let t = now + config.request_timeout;
    p.handle_message(t, Message::KeepAlive).unwrap();
    assert_eq!(p.handle_timeout(t), Ok(vec![block(1, 0)]));
    let t = now + config.keepalive;
    p.handle_message(t, Message::KeepAlive).unwrap();
    p.handle_timeout(t).unwrap();
    assert_eq!(drain(&mut p), vec![Message::KeepAlive]);
    assert!(p.next_deadline() > t);
    let late = t + config.idle_timeout;
    assert!(matches!(p.handle_timeout(late), Err(PeerError::Idle(_))));
}

#[test]
fn slow_start_grows_the_pipeline_before_the_first_rate_measurement() {
    let now = t0();
    let mut p = PeerState::new(now, PeerConfig::default());
    p.set_interested(now, true);
    p.handle_message(now, Message::Unchoke).unwrap();
    let min = PeerConfig::default().min_depth;
    assert_eq!(p.target_depth(), min);
    for i in 0..40u32 {
        p.request(now, block(i, 0));
        p.handle_message(now, Message::Piece { index: i, begin: 0, data: vec![0; 16384] }).unwrap();
    }
    assert_eq!(p.target_depth(), min + 40, "one more request per block received");
    // Once a rate is measured, the rate decides (here: 40 blocks in 1 s, 3 s worth = 120).
    let t = now + Duration::from_secs(1);
    p.handle_timeout(t).unwrap();
    assert_eq!(p.target_depth(), 120);
}
