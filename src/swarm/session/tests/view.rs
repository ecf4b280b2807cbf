//! The peers as a user reads them (`TorrentCore::peer_views`): µTorrent's flag letters for
//! peers driven into known states, their client names and their progress.

use super::*;
use crate::swarm::peer_source::{PeerSource, PeerSources};
use crate::swarm::session::PeerView;
use crate::wire::extended::ExtHandshake;

fn found(source: Option<PeerSource>) -> PeerSources {
    let mut s = PeerSources::default();
    if let Some(source) = source {
        s.insert(source);
    }
    s
}

fn connect(h: &mut Harness, n: u8, origin: PeerOrigin, peer_id: &[u8; 8]) -> PeerKey {
    let mut id = [b'1'; 20];
    id[..8].copy_from_slice(peer_id);
    let hello = Hello { addr: Harness::addr(n), origin, peer_id: id, supports_ext: true, supports_dht: false };
    h.core.connect(h.now, hello).unwrap()
}

fn view(h: &Harness, n: u8) -> PeerView {
    let views = h.core.peer_views(h.now);
    views.into_iter().find(|v| v.addr == Harness::addr(n)).unwrap_or_else(|| panic!("no view of peer {n}"))
}

fn flags(h: &Harness, n: u8) -> String {
    view(h, n).flags.letters()
}

#[test]
fn flags_show_each_peer_s_state() {
    // No regular upload slot: the only way we unchoke anyone is the optimistic unchoke.
    let mut h = Harness::with_config(4, |c| c.choker.slots = 0);
    h.install(&[0]);
    let out = |utp, source| PeerOrigin { outgoing: true, utp, found: found(source) };
    let inc = |utp| PeerOrigin { outgoing: false, utp, found: found(None) };
    // 1: dialled over TCP, found by the DHT, has what we lack but chokes us.
    let a = connect(&mut h, 1, out(false, Some(PeerSource::Dht)), b"-qB4520-");
    h.msg(a, Message::Bitfield(vec![0b1111_0000]));
    // 2: came to us over uTP, has what we lack and unchokes us, then never sends a block.
    let b = connect(&mut h, 2, inc(true), b"-TR3000-");
    h.msg(b, Message::Bitfield(vec![0b0110_0000]));
    h.msg(b, Message::Unchoke);
    // 3: dialled, found by peer exchange, wants our piece: the optimistic unchoke.
    let c = connect(&mut h, 3, out(false, Some(PeerSource::Pex)), b"-LT2090-");
    h.msg(c, Message::Interested);
    // 4: dialled, found by LSD, unchokes us but has nothing we want; names itself.
    let d = connect(&mut h, 4, out(false, Some(PeerSource::Lsd)), b"xxxxxxxx");
    h.msg(d, Message::Unchoke);
    let hs = ExtHandshake { client: Some("Deluge\u{1b}[2J 2.1.1".into()), ..ExtHandshake::default() };
    let mut payload = Vec::new();
    hs.encode(&mut payload);
    h.msg(d, Message::Extended { id: 0, payload });
    // The first choke round (due as soon as the first peer came).
    h.advance(Duration::from_millis(1));
    // 5: came over TCP, wants our piece after the optimistic slot was given: choked.
    let e = connect(&mut h, 5, inc(false), b"-KS0001-");
    h.msg(e, Message::Interested);

    assert_eq!(flags(&h, 1), "d H");
    assert_eq!(flags(&h, 2), "D IP");
    assert_eq!(flags(&h, 3), "UO X");
    assert_eq!(flags(&h, 4), "K L");
    assert_eq!(flags(&h, 5), "u I");

    assert_eq!(view(&h, 1).client.as_deref(), Some("qBittorrent 4.5.2"));
    assert_eq!(view(&h, 2).client.as_deref(), Some("Transmission 3.0"));
    assert_eq!(view(&h, 4).client.as_deref(), Some("Deluge[2J 2.1.1"), "the handshake's name, without the escape");
    assert_eq!(view(&h, 1).pieces, Some((4, 4)));
    assert_eq!(view(&h, 2).pieces, Some((2, 4)));
    assert_eq!(view(&h, 4).pieces, Some((0, 4)));
    assert_eq!(view(&h, 2).progress(), Some(0.5));

    // The optimistic peer loses interest: unchoked by us, not interested, until the next round.
    h.msg(c, Message::NotInterested);
    assert_eq!(flags(&h, 3), "?O X");

    // A minute on, peer 2 still unchokes us and has sent nothing: snubbed. Peer 1 chokes us,
    // so it is not snubbing us (we cannot ask it for anything).
    let snub = h.core.config().choker.snub_after;
    h.advance(snub + Duration::from_secs(1));
    assert_eq!(flags(&h, 2), "DS IP");
    assert_eq!(flags(&h, 1), "d H");
    let _ = (a, e);
}

#[test]
fn views_follow_the_roster() {
    let mut h = Harness::installed(2, &[0, 1]);
    assert!(h.core.peer_views(h.now).is_empty());
    let k = h.join(1);
    h.join(2);
    assert_eq!(h.core.peer_views(h.now).len(), 2);
    h.core.handle(h.now, Input::PeerGone { key: k });
    let views = h.core.peer_views(h.now);
    assert_eq!(views.iter().map(|v| v.addr).collect::<Vec<_>>(), vec![Harness::addr(2)]);
    // No metadata yet: no piece count to show.
    let mut fresh = Harness::new(2);
    fresh.join(1);
    assert_eq!(fresh.core.peer_views(fresh.now)[0].pieces, None);
}
