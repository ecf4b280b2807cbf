//! The peer registry: who is taken, the choker's decisions on the wire, silent peers, the
//! DHT port, and what peer exchange may say of each peer.

use super::*;
use crate::wire::extended::ExtHandshake;
use crate::wire::pex::PexFlags;

#[test]
fn peers_are_refused_when_full_duplicate_or_banned() {
    let mut h = Harness::with_config(1, |c| c.max_peers = 2);
    h.join(1);
    let dup = Hello {
        addr: Harness::addr(1),
        origin: PeerOrigin::default(),
        peer_id: [0; 20],
        supports_ext: false,
        supports_dht: false,
    };
    assert_eq!(h.core.connect(h.now, dup), Err(Refused::Duplicate));
    h.join(2);
    let third = Hello { addr: Harness::addr(3), ..dup };
    assert_eq!(h.core.connect(h.now, third), Err(Refused::Full));
    assert_eq!(h.core.peer_count(), 2);
}

#[test]
fn interested_peers_get_free_slots_at_once_and_the_rest_wait_for_a_round() {
    let mut h = Harness::installed(2, &[0, 1]);
    let keys: Vec<PeerKey> = (1..=6).map(|n| h.join(n)).collect();
    h.drain();
    for k in &keys {
        h.msg(*k, Message::Interested);
    }
    let d = h.drain();
    let unchoked: Vec<PeerKey> = keys.iter().copied().filter(|k| d.to(*k).contains(&&Message::Unchoke)).collect();
    assert_eq!(unchoked, keys[..4].to_vec(), "the four regular slots");
    // The core runs the choker's rounds itself: the optimistic unchoke goes to one of the two.
    h.advance(h.core.config().choker.interval);
    let d = h.drain();
    let now_unchoked: Vec<PeerKey> =
        keys[4..].iter().copied().filter(|k| d.to(*k).contains(&&Message::Unchoke)).collect();
    assert_eq!(now_unchoked.len(), 1, "one optimistic unchoke: {:?}", d.sent);
}

#[test]
fn a_silent_peer_is_dropped_after_the_idle_timeout() {
    let mut h = Harness::installed(1, &[]);
    let a = h.join(1);
    h.drain();
    let idle = h.core.config().peer.idle_timeout;
    h.advance(idle - Duration::from_secs(2));
    assert!(h.drain().closed().is_empty());
    h.advance(Duration::from_secs(3));
    assert!(matches!(h.drain().closed()[..], [(k, CloseReason::Protocol(_))] if k == a));
    assert_eq!(h.core.peer_count(), 0);
}

#[test]
fn a_stream_of_port_messages_is_one_ping() {
    let mut h = Harness::new(1);
    let a = h.join(1);
    for i in 0..1000 {
        h.msg(a, Message::Port(7000 + i));
    }
    let pings: Vec<SocketAddr> = h
        .drain()
        .other
        .iter()
        .filter_map(|a| if let Action::DhtPing { addr } = a { Some(*addr) } else { None })
        .collect();
    assert_eq!(pings, vec![SocketAddr::new(Harness::addr(1).ip(), 7000)]);
}

#[test]
fn pex_view_names_peers_by_listen_address_with_their_flags() {
    let mut h = Harness::installed(2, &[]);
    let dialled = Harness::addr(1);
    let a = h.join_as(1, PeerOrigin { outgoing: true, utp: false, ..Default::default() });
    let b = h.join_as(2, PeerOrigin { outgoing: false, utp: true, ..Default::default() });
    // An incoming peer is unknown until its handshake gives a port.
    assert_eq!(h.core.pex_view(b), vec![(dialled, PexFlags::REACHABLE)]);
    assert_eq!(h.core.pex_view(a), vec![]);
    let hs = ExtHandshake { listen_port: Some(6999), ..ExtHandshake::default() };
    let mut payload = Vec::new();
    hs.encode(&mut payload);
    h.msg(b, Message::Extended { id: 0, payload: payload.clone() });
    h.msg(b, Message::Bitfield(vec![0b1100_0000]));
    let b_listen = SocketAddr::new(Harness::addr(2).ip(), 6999);
    assert_eq!(h.core.pex_view(a), vec![(b_listen, PexFlags::UTP | PexFlags::SEED)]);
    // A dialled peer keeps the address we reached it at.
    let hs = ExtHandshake { listen_port: Some(1), ..ExtHandshake::default() };
    let mut payload = Vec::new();
    hs.encode(&mut payload);
    h.msg(a, Message::Extended { id: 0, payload });
    assert_eq!(h.core.pex_view(b), vec![(dialled, PexFlags::REACHABLE)]);
    h.core.handle(h.now, Input::PeerGone { key: a });
    assert_eq!(h.core.pex_view(b), vec![]);
}
