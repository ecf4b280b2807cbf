//! The metadata side: fetching the info dictionary from peers (BEP 9), banning the peer whose
//! piece contradicts its own size, taking the metadata in (frame limits narrowed, early
//! availability adopted), and the cap on replies to a peer that does not read.

use super::*;
use crate::swarm::session::limits::{frame_limits, MAX_QUEUED};
use crate::swarm::session::peer::MAX_EARLY_HAVES;
use crate::wire::extended::ExtHandshake;
use crate::wire::metadata::MetadataMessage;

const THEIR_UT_METADATA: u8 = 3;

fn ext_handshake(h: &mut Harness, key: PeerKey, size: Option<u64>) {
    let hs = ExtHandshake { ut_metadata: Some(THEIR_UT_METADATA), metadata_size: size, ..ExtHandshake::default() };
    let mut payload = Vec::new();
    hs.encode(&mut payload);
    h.msg(key, Message::Extended { id: 0, payload });
}

fn metadata_requests(d: &Drained, key: PeerKey) -> Vec<u32> {
    d.to(key)
        .into_iter()
        .filter_map(|m| match m {
            Message::Extended { id: THEIR_UT_METADATA, payload } => match MetadataMessage::decode(payload) {
                Ok(MetadataMessage::Request { piece }) => Some(piece),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn metadata_data(h: &mut Harness, key: PeerKey, piece: u32, total_size: u64, data: Vec<u8>) {
    let mut payload = Vec::new();
    MetadataMessage::Data { piece, total_size, data }.encode(&mut payload);
    h.msg(key, Message::Extended { id: OUR_UT_METADATA, payload });
}

#[test]
fn the_metadata_is_fetched_from_a_peer_and_handed_over_to_install() {
    let mut h = Harness::new(4);
    let a = h.join(1);
    let size = h.meta.info_bytes.len() as u64;
    ext_handshake(&mut h, a, Some(size));
    let d = h.drain();
    assert_eq!(metadata_requests(&d, a), vec![0]);
    let info = h.meta.info_bytes.clone();
    metadata_data(&mut h, a, 0, size, info.clone());
    let d = h.drain();
    match &d.other[..] {
        [Action::Install { info_bytes }] => assert_eq!(*info_bytes, info),
        other => panic!("expected the metadata to install, got {other:?}"),
    }
    // Installing: nobody is asked again.
    h.advance(Duration::from_secs(20));
    assert!(metadata_requests(&h.drain(), a).is_empty());
}

#[test]
fn a_piece_contradicting_its_senders_size_bans_that_sender_alone() {
    let mut h = Harness::new(4);
    let liar = h.join(1);
    let honest = h.join(2);
    let size = h.meta.info_bytes.len() as u64;
    ext_handshake(&mut h, liar, Some(size));
    ext_handshake(&mut h, honest, Some(size));
    let d = h.drain();
    assert_eq!(metadata_requests(&d, liar), vec![0], "the first voter is asked first");
    metadata_data(&mut h, liar, 0, size, vec![0; 10]);
    let d = h.drain();
    assert!(d.events().contains(&&TorrentEvent::PeerBanned(Harness::addr(1).ip())));
    assert_eq!(d.closed(), vec![(liar, &CloseReason::Closed)]);
    assert!(!h.core.banned().contains(&Harness::addr(2).ip()));
    // Its request goes to the honest peer (at once or at the next tick).
    h.advance(Duration::from_secs(1));
    assert_eq!(metadata_requests(&d, honest).len() + metadata_requests(&h.drain(), honest).len(), 1);
}

#[test]
fn installing_narrows_the_frame_limits_and_adopts_early_availability() {
    let mut h = Harness::new(4);
    let a = h.join(1);
    h.msg(a, Message::Bitfield(vec![0b1000_0000]));
    h.msg(a, Message::Have(2));
    h.msg(a, Message::Have(3));
    h.drain();
    h.install(&[0]);
    let d = h.drain();
    assert_eq!(d.limits(a), Some(frame_limits(Some(4))));
    assert_eq!(frame_limits(Some(4)).max_bitfield_len, 1);
    assert!(d.to(a).contains(&&Message::Bitfield(vec![0b1000_0000])), "our bitfield, now that we know");
    assert!(d.to(a).contains(&&Message::Interested), "its pieces 2 and 3 are of interest");
    let events = d.events();
    assert!(matches!(events[0], TorrentEvent::MetadataReady { pieces: 4, .. }));
    assert_eq!(events[1], &TorrentEvent::Checked { have: 1, pieces: 4 });
    // Now a have past the last piece is a lie.
    h.msg(a, Message::Have(4));
    assert!(matches!(h.drain().closed()[..], [(k, CloseReason::Protocol(_))] if k == a));
}

#[test]
fn haves_before_the_metadata_are_capped() {
    let mut h = Harness::new(4);
    let a = h.join(1);
    for i in 0..(MAX_EARLY_HAVES + 10) as u32 {
        h.msg(a, Message::Have(i));
    }
    assert_eq!(h.core.peers[&a].early_haves.len(), MAX_EARLY_HAVES);
}

#[test]
fn metadata_requests_from_a_peer_that_never_reads_are_refused_then_dropped() {
    let mut h = Harness::installed(4, &[0, 1, 2, 3]);
    let a = h.join(1);
    ext_handshake(&mut h, a, None);
    h.drain();
    let mut request = Vec::new();
    MetadataMessage::Request { piece: 0 }.encode(&mut request);
    let (mut served, mut rejected) = (0, 0);
    for _ in 0..100_000 {
        h.msg(a, Message::Extended { id: OUR_UT_METADATA, payload: request.clone() });
        let d = h.drain();
        if let Some((_, reason)) = d.closed().first() {
            match reason {
                CloseReason::NotReading { queued, cap } => {
                    assert_eq!(*cap, MAX_QUEUED);
                    assert!(*queued < MAX_QUEUED + 64, "{queued} bytes queued");
                }
                other => panic!("expected NotReading, got {other:?}"),
            }
            assert!(served > 0 && rejected > 0, "served {served}, rejected {rejected}");
            return;
        }
        for m in d.to(a) {
            if let Message::Extended { payload, .. } = m {
                match MetadataMessage::decode(payload) {
                    Ok(MetadataMessage::Data { .. }) => served += 1,
                    Ok(MetadataMessage::Reject { .. }) => rejected += 1,
                    _ => {}
                }
            }
        }
    }
    panic!("the peer was never dropped");
}
