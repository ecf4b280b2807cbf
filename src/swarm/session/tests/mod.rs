//! The torrent core alone: peer messages and disk results in with a virtual `now`, actions
//! out, and assertions on exactly those. No socket, no thread, no clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::*;
use crate::swarm::BLOCK;
use crate::wire::message::{BlockRef, Limits, Message};

mod download;
mod fair;
mod metadata;
mod peers;
mod upload;

/// Two blocks per piece.
const PIECE: usize = 2 * BLOCK as usize;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A single-file torrent of `data` in pieces of [`PIECE`] bytes.
fn metainfo(data: &[u8]) -> Arc<Metainfo> {
    let mut hashes = Vec::new();
    for chunk in data.chunks(PIECE) {
        hashes.extend_from_slice(&Sha1::digest(chunk));
    }
    let mut info = format!("d6:lengthi{}e4:name4:test12:piece lengthi{}e6:pieces{}:", data.len(), PIECE, hashes.len())
        .into_bytes();
    info.extend_from_slice(&hashes);
    info.push(b'e');
    Arc::new(Metainfo::from_info_bytes(info).unwrap())
}

/// A core under test, its clock, and everything it did so far.
struct Harness {
    core: TorrentCore,
    now: Instant,
    meta: Arc<Metainfo>,
    data: Vec<u8>,
}

impl Harness {
    /// A torrent of `pieces` pieces, its metadata not known yet.
    fn new(pieces: usize) -> Harness {
        Harness::with_config(pieces, |_| {})
    }

    fn with_config(pieces: usize, tweak: impl FnOnce(&mut TorrentConfig)) -> Harness {
        let data = payload(pieces * PIECE);
        let meta = metainfo(&data);
        let mut config = TorrentConfig::new(meta.info_hash, "/nonexistent".into(), 6881, false, 50, false);
        tweak(&mut config);
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Harness { core: TorrentCore::new(config, 7), now, meta, data }
    }

    /// The same with the metadata installed and `have` on disk.
    fn installed(pieces: usize, have: &[usize]) -> Harness {
        let mut h = Harness::new(pieces);
        h.install(have);
        h
    }

    fn install(&mut self, have: &[usize]) {
        let mut bits = Bitfield::new(self.meta.info.piece_count());
        for i in have {
            bits.set(*i);
        }
        self.core.handle(self.now, Input::MetadataInstalled { meta: Arc::clone(&self.meta), have: bits });
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, n, 1], 6881))
    }

    fn join(&mut self, n: u8) -> PeerKey {
        self.join_as(n, PeerOrigin::default())
    }

    fn join_as(&mut self, n: u8, origin: PeerOrigin) -> PeerKey {
        let hello = Hello { addr: Harness::addr(n), origin, supports_ext: true, supports_dht: false };
        self.core.connect(self.now, hello).unwrap()
    }

    fn msg(&mut self, key: PeerKey, msg: Message) {
        self.core.handle(self.now, Input::Message { key, msg });
    }

    fn advance(&mut self, by: Duration) {
        // Through every deadline on the way, as a driver's timer would.
        let end = self.now + by;
        for _ in 0..10_000 {
            match self.core.next_deadline() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.core.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
        self.core.handle_timeout(self.now);
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.core.poll_action()).collect()
    }

    /// The actions so far, split: messages to each peer, and the rest.
    fn drain(&mut self) -> Drained {
        let mut d = Drained::default();
        for a in self.actions() {
            match a {
                Action::Send { key, msg } => d.sent.push((key, msg)),
                other => d.other.push(other),
            }
        }
        d
    }

    /// A peer that has every piece and unchokes us.
    fn seeder(&mut self, n: u8) -> PeerKey {
        let key = self.join(n);
        let bits = Bitfield::full(self.meta.info.piece_count());
        self.msg(key, Message::Bitfield(bits.as_bytes().to_vec()));
        self.msg(key, Message::Unchoke);
        key
    }

    /// The block as the torrent has it, or a wrong one.
    fn block(&self, b: BlockRef, good: bool) -> Message {
        let at = b.index as usize * PIECE + b.begin as usize;
        let mut data = self.data[at..at + b.length as usize].to_vec();
        if !good {
            data[0] ^= 0xff;
        }
        Message::Piece { index: b.index, begin: b.begin, data }
    }

    fn block_hash(&self, b: BlockRef, good: bool) -> [u8; 20] {
        match self.block(b, good) {
            Message::Piece { data, .. } => Sha1::digest(&data).into(),
            _ => unreachable!(),
        }
    }
}

#[derive(Default)]
struct Drained {
    sent: Vec<(PeerKey, Message)>,
    other: Vec<Action>,
}

impl Drained {
    fn to(&self, key: PeerKey) -> Vec<&Message> {
        self.sent.iter().filter(|(k, _)| *k == key).map(|(_, m)| m).collect()
    }

    fn requests(&self, key: PeerKey) -> Vec<BlockRef> {
        self.to(key).into_iter().filter_map(|m| if let Message::Request(b) = m { Some(*b) } else { None }).collect()
    }

    fn events(&self) -> Vec<&TorrentEvent> {
        self.other.iter().filter_map(|a| if let Action::Event(e) = a { Some(e) } else { None }).collect()
    }

    fn closed(&self) -> Vec<(PeerKey, &CloseReason)> {
        self.other
            .iter()
            .filter_map(|a| if let Action::Close { key, reason } = a { Some((*key, reason)) } else { None })
            .collect()
    }

    fn hashes(&self) -> Vec<(u32, bool)> {
        self.other
            .iter()
            .filter_map(|a| if let Action::Hash { index, always, .. } = a { Some((*index, *always)) } else { None })
            .collect()
    }

    fn writes(&self) -> usize {
        self.other.iter().filter(|a| matches!(a, Action::Write { .. })).count()
    }

    fn reads(&self) -> Vec<(PeerKey, BlockRef)> {
        self.other
            .iter()
            .filter_map(|a| if let Action::Read { key, block } = a { Some((*key, *block)) } else { None })
            .collect()
    }

    fn limits(&self, key: PeerKey) -> Option<Limits> {
        self.other.iter().rev().find_map(|a| match a {
            Action::Limits { key: k, limits } if *k == key => Some(*limits),
            _ => None,
        })
    }
}
