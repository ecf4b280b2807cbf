//! The metadata side of the torrent (BEP 9 over BEP 10): the extension handshake's size vote,
//! asking peers for pieces of the info dictionary while we lack it, serving it once we have
//! it (within what the peer may have queued with us, see `limits::metadata_answer`), banning
//! the peers the fetch proves lied, and taking the metadata in once installed.

use std::sync::Arc;
use std::time::Instant;

use super::limits::{self, MetadataAnswer};
use super::messages::protocol;
use super::{Action, CloseReason, TorrentCore, TorrentEvent};
use crate::swarm::bitfield::Bitfield;
use crate::swarm::{PeerKey, Picker};
use crate::torrent::Metainfo;
use crate::wire::extended::ExtHandshake;
use crate::wire::message::Message;
use crate::wire::metadata::{metadata_piece, MetadataError, MetadataMessage};

impl TorrentCore {
    pub(super) fn on_ext_handshake(&mut self, now: Instant, key: PeerKey, hs: &ExtHandshake) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        p.ut_metadata = hs.ut_metadata.filter(|&i| i != 0);
        if let Some(name) = hs.client.as_deref().and_then(crate::wire::client_name::sanitise) {
            p.client = Some(name);
        }
        if let (Some(_), Some(size)) = (p.ut_metadata, hs.metadata_size) {
            if let Some(Err(e)) = self.metadata.as_mut().map(|f| f.on_size(key, size)) {
                tracing::debug!(error = %e, "peer announced an unusable metadata size");
            }
        }
        self.on_ext_handshake_pex(now, key, hs);
        self.ask_metadata(now, key);
    }

    pub(super) fn on_ut_metadata(&mut self, now: Instant, key: PeerKey, payload: &[u8]) -> Result<(), CloseReason> {
        let msg = match MetadataMessage::decode(payload) {
            Ok(m) => m,
            // BEP 9: message types we do not know are ignored.
            Err(MetadataError::UnknownType(_)) => return Ok(()),
            Err(e) => return Err(protocol(e)),
        };
        match msg {
            MetadataMessage::Request { piece } => self.serve_metadata(now, key, piece)?,
            // Not asked again at once: the next timer tick asks whoever may be asked.
            MetadataMessage::Reject { piece } => {
                if let Some(f) = self.metadata.as_mut() {
                    f.on_reject(key, piece);
                }
            }
            MetadataMessage::Data { piece, total_size, data } => {
                self.on_metadata_piece(now, key, piece, total_size, data)
            }
        }
        Ok(())
    }

    /// Answers a `ut_metadata` request, within what this peer may have queued with us: a peer
    /// streaming requests without reading is refused, then dropped, rather than given 16 KiB
    /// of our memory per request.
    fn serve_metadata(&mut self, now: Instant, key: PeerKey, piece: u32) -> Result<(), CloseReason> {
        self.flush(key);
        let Some(p) = self.peers.get(&key) else { return Ok(()) };
        let Some(their_id) = p.ut_metadata else { return Ok(()) };
        let queued = p.queued();
        let answer = limits::metadata_answer(queued);
        if answer == MetadataAnswer::Drop {
            return Err(CloseReason::NotReading { queued, cap: limits::MAX_QUEUED });
        }
        let meta = self.meta.as_ref().filter(|_| answer == MetadataAnswer::Serve);
        let reply = match meta.and_then(|m| metadata_piece(&m.info_bytes, piece).map(|d| (m, d))) {
            Some((m, data)) => {
                MetadataMessage::Data { piece, total_size: m.info_bytes.len() as u64, data: data.to_vec() }
            }
            None => MetadataMessage::Reject { piece },
        };
        let mut payload = Vec::new();
        reply.encode(&mut payload);
        self.send(now, key, Message::Extended { id: their_id, payload });
        // Counted at once: the next request in the same read must see this reply queued.
        self.flush(key);
        Ok(())
    }

    /// Asks this peer for metadata pieces while we lack the metadata.
    pub(super) fn ask_metadata(&mut self, now: Instant, key: PeerKey) {
        if self.meta.is_some() || self.installing {
            return;
        }
        let Some(their_id) = self.peers.get(&key).and_then(|p| p.ut_metadata) else { return };
        // Bounded: the fetch caps what one peer has in flight.
        while let Some(piece) = self.metadata.as_mut().and_then(|f| f.next_request(key, now)) {
            let mut payload = Vec::new();
            MetadataMessage::Request { piece }.encode(&mut payload);
            self.send(now, key, Message::Extended { id: their_id, payload });
        }
    }

    fn on_metadata_piece(&mut self, now: Instant, key: PeerKey, piece: u32, total_size: u64, data: Vec<u8>) {
        let Some(fetch) = self.metadata.as_mut() else { return };
        let result = fetch.on_data(key, piece, total_size, data);
        self.ban_metadata_liars();
        match result {
            Ok(Some(info_bytes)) => {
                self.installing = true;
                self.actions.push_back(Action::Install { info_bytes });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "bad metadata from peers"),
        }
        self.ask_metadata(now, key);
    }

    /// Bans the peers the metadata fetch proved to have sent bad metadata (and only them).
    fn ban_metadata_liars(&mut self) {
        let liars = self.metadata.as_mut().map(|f| f.take_banned()).unwrap_or_default();
        for key in liars {
            let Some(ip) = self.peers.get(&key).map(|p| p.addr.ip()) else { continue };
            if self.banned.len() < super::limits::MAX_OFFENDERS && self.banned.insert(ip) {
                self.roster += 1;
                tracing::warn!(%ip, "banning a peer that sent bad metadata");
                self.emit(TorrentEvent::PeerBanned(ip));
            }
            self.close(key, CloseReason::Closed);
        }
    }

    /// The storage is open: the picker starts from what is on disk, and every peer learns
    /// what we have and may now send a bitfield of the torrent's own size.
    pub(super) fn on_metadata_installed(&mut self, now: Instant, meta: Arc<Metainfo>, have: Bitfield) {
        if self.meta.is_some() || meta.info_hash != self.config.info_hash {
            return;
        }
        self.installing = false;
        let info = &meta.info;
        let pieces = info.piece_count();
        let picker = match Picker::new(pieces, info.piece_length as u32, info.total_length, &have, self.seed) {
            Ok(p) => p,
            Err(e) => return self.emit(TorrentEvent::MetadataUnusable(e.to_string())),
        };
        let have_count = have.count();
        self.choker.set_piece_length(info.piece_length);
        self.choker.set_piece_count(pieces);
        self.verified_bytes = have.iter_set().map(|i| info.piece_len(i)).sum();
        self.complete = picker.is_complete();
        self.emit(TorrentEvent::MetadataReady { name: info.name.clone(), total_length: info.total_length, pieces });
        self.picker = Some(picker);
        self.metadata = None;
        self.meta = Some(meta);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let limits = limits::frame_limits(Some(pieces));
            self.actions.push_back(Action::Limits { key, limits });
            self.adopt_early_availability(now, key);
            self.send_bitfield(now, key);
            self.update_interest(now, key);
            self.pump(now, key);
        }
        self.emit(TorrentEvent::Checked { have: have_count, pieces });
        if self.complete {
            self.emit(TorrentEvent::Complete);
        }
    }
}
