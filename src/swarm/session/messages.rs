//! What the core makes of each peer-wire message (BEP 3): choke and interest, `have` and
//! `bitfield` (kept aside until the piece count is known), blocks, requests, the DHT port
//! (BEP 5), and extended messages (BEP 10) for the metadata and PEX parts.

use std::net::SocketAddr;
use std::time::Instant;

use super::peer::MAX_EARLY_HAVES;
use super::peer_pieces::PeerPieces;
use super::peer_state::{PeerError, PeerEvent};
use super::{Action, CloseReason, TorrentCore};
use crate::swarm::bitfield::Bitfield;
use crate::swarm::PeerKey;
use crate::wire::extended::ExtHandshake;
use crate::wire::message::Message;

/// Our extended-message id for ut_metadata (BEP 9); the peer's own id comes in its handshake.
pub const OUR_UT_METADATA: u8 = 1;
/// Our extended-message id for ut_pex (BEP 11), announced only when peer exchange is on.
pub const OUR_UT_PEX: u8 = 2;

impl TorrentCore {
    /// The first messages to a new peer: extension handshake, bitfield, DHT port.
    pub(super) fn greet(&mut self, now: Instant, key: PeerKey) {
        let Some(p) = self.peers.get(&key) else { return };
        let (ext, dht, addr) = (p.supports_ext, p.supports_dht, p.addr);
        if ext {
            let hs = ExtHandshake {
                ut_metadata: Some(OUR_UT_METADATA),
                ut_pex: self.config.pex.then_some(OUR_UT_PEX),
                metadata_size: self.meta.as_ref().map(|m| m.info_bytes.len() as u64),
                client: Some(format!("kadswarm {}", env!("CARGO_PKG_VERSION"))),
                listen_port: Some(self.config.listen_port),
                reqq: Some(self.config.peer.max_peer_requests as u32),
                your_ip: Some(addr.ip()),
            };
            let mut payload = Vec::new();
            hs.encode(&mut payload);
            self.send(now, key, Message::Extended { id: 0, payload });
        }
        self.send_bitfield(now, key);
        if let (true, Some(port)) = (dht, self.config.dht_port) {
            self.send(now, key, Message::Port(port));
        }
    }

    pub(super) fn send_bitfield(&mut self, now: Instant, key: PeerKey) {
        let bits = match self.picker.as_ref() {
            Some(p) if p.have().count() > 0 => p.have().as_bytes().to_vec(),
            _ => return,
        };
        self.send(now, key, Message::Bitfield(bits));
    }

    pub(super) fn on_message(&mut self, now: Instant, key: PeerKey, msg: Message) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        let event = match p.state.handle_message(now, msg) {
            Ok(Some(ev)) => ev,
            Ok(None) => return self.pump(now, key),
            // A late block after a cancel or timeout: the data is simply not needed.
            Err(PeerError::UnrequestedBlock(_)) => return,
            Err(e) => return self.close(key, CloseReason::Protocol(e.to_string())),
        };
        let result = match event {
            PeerEvent::Choked { released } => {
                self.choker.peer_unchoked_us(key, false);
                if let Some(picker) = self.picker.as_mut() {
                    for b in released {
                        picker.on_rejected(key, b);
                    }
                }
                Ok(())
            }
            PeerEvent::Unchoked => {
                self.choker.peer_unchoked_us(key, true);
                Ok(())
            }
            PeerEvent::Cancel(_) => Ok(()),
            PeerEvent::Interested(i) => {
                self.choker.set_interested(key, i);
                self.slots_freed |= !i;
                if i && self.choker.unchoke_if_slot_free(key, now) {
                    if let Some(p) = self.peers.get_mut(&key) {
                        p.state.set_choking(now, false);
                    }
                }
                Ok(())
            }
            PeerEvent::Have(i) => self.on_have(now, key, i),
            PeerEvent::Bitfield(bits) => self.on_bitfield(now, key, bits),
            PeerEvent::Block { block, data } => self.on_block(now, key, block, data),
            PeerEvent::Request(block) => self.check_request(block),
            PeerEvent::DhtPort(port) => {
                if let Some(p) = self.peers.get_mut(&key) {
                    if !std::mem::replace(&mut p.dht_port_taken, true) {
                        let addr = SocketAddr::new(p.addr.ip(), port);
                        self.actions.push_back(Action::DhtPing { addr });
                    }
                }
                Ok(())
            }
            PeerEvent::Extended { id, payload } => self.on_extended(now, key, id, &payload),
        };
        match result {
            Ok(()) => self.pump(now, key),
            Err(reason) => self.close(key, reason),
        }
    }

    fn piece_count(&self) -> Option<usize> {
        self.meta.as_ref().map(|m| m.info.piece_count())
    }

    /// The peer's pieces, starting from none (and from our pieces as the picker has them now)
    /// the first time; `None` while there is no picker.
    fn peer_pieces(&mut self, key: PeerKey) -> Option<&mut PeerPieces> {
        let ours = self.picker.as_ref()?.have();
        let p = self.peers.get_mut(&key)?;
        Some(p.pieces.get_or_insert_with(|| PeerPieces::new(ours.clone())))
    }

    pub(super) fn on_have(&mut self, now: Instant, key: PeerKey, index: u32) -> Result<(), CloseReason> {
        let Some(n) = self.piece_count() else {
            if let Some(p) = self.peers.get_mut(&key) {
                if p.early_haves.len() < MAX_EARLY_HAVES {
                    p.early_haves.push(index);
                }
            }
            return Ok(());
        };
        if index as usize >= n {
            return Err(CloseReason::Protocol(format!("have {index} of {n} pieces")));
        }
        let Some(pieces) = self.peer_pieces(key) else { return Ok(()) };
        if pieces.their_have(index as usize) {
            self.choker.on_have(key);
            self.choker.on_have_piece(key, index);
            if let Some(picker) = self.picker.as_mut() {
                picker.peer_has(key, index as usize).map_err(protocol)?;
            }
            self.note_if_seed(key);
        }
        self.update_interest(now, key);
        Ok(())
    }

    pub(super) fn on_bitfield(&mut self, now: Instant, key: PeerKey, bits: Vec<u8>) -> Result<(), CloseReason> {
        let Some(n) = self.piece_count() else {
            if let Some(p) = self.peers.get_mut(&key) {
                // Bounded by the frame limits before the metadata (`limits::frame_limits`).
                p.early_bitfield = Some(bits);
            }
            return Ok(());
        };
        let bf = Bitfield::from_bytes(&bits, n).map_err(protocol)?;
        if let Some(picker) = self.picker.as_mut() {
            picker.peer_has_bitfield(key, &bf).map_err(protocol)?;
        }
        if let Some(pieces) = self.peer_pieces(key) {
            pieces.set_theirs(bf);
        }
        self.note_if_seed(key);
        self.update_interest(now, key);
        Ok(())
    }

    /// Applies a bitfield and haves received before we knew the piece count.
    pub(super) fn adopt_early_availability(&mut self, now: Instant, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        let bits = p.early_bitfield.take();
        let haves = std::mem::take(&mut p.early_haves);
        if let Some(bits) = bits {
            if let Err(e) = self.on_bitfield(now, key, bits) {
                tracing::debug!(error = ?e, "bad early bitfield ignored");
            }
        }
        for i in haves {
            let _ = self.on_have(now, key, i);
        }
    }

    fn on_extended(&mut self, now: Instant, key: PeerKey, id: u8, payload: &[u8]) -> Result<(), CloseReason> {
        if id == 0 {
            let hs = ExtHandshake::decode(payload).map_err(protocol)?;
            self.on_ext_handshake(now, key, &hs);
            return Ok(());
        }
        if id == OUR_UT_PEX && self.config.pex {
            self.on_pex(now, key, payload);
            return Ok(());
        }
        if id != OUR_UT_METADATA {
            return Ok(()); // an extension we did not announce support for: ignore it
        }
        self.on_ut_metadata(now, key, payload)
    }
}

pub(super) fn protocol(e: impl std::fmt::Display) -> CloseReason {
    CloseReason::Protocol(e.to_string())
}
