//! The BEP 11 part of a peer task: when to send our `ut_pex` message to this peer (the
//! `PexSender` core decides), what to do with its messages (the `PexReceiver` core filters
//! them; what remains goes to the runner's peer list as `PeerSource::Pex`), and what the
//! extension handshake and the peer's pieces tell others about it.

use std::net::SocketAddr;
use std::time::Instant;

use super::Conn;
use crate::session::peer_list::PeerSource;
use crate::session::torrent::now;
use crate::swarm::pex::{PexIgnored, PexSender};
use crate::wire::extended::ExtHandshake;
use crate::wire::message::Message;

impl Conn {
    /// Our PEX message to this peer, when one is due.
    pub(super) fn send_pex(&mut self, t: Instant) {
        let Some((their_id, sender)) = self.remote.pex_out.as_mut() else { return };
        if t < sender.next_deadline() {
            return;
        }
        let view = self.torrent.pex_view(self.remote.key);
        let Some(msg) = sender.poll(t, &view) else { return };
        tracing::debug!(added = msg.added.len(), dropped = msg.dropped.len(), "peer exchange sent");
        let mut payload = Vec::new();
        msg.encode(&mut payload);
        let id = *their_id;
        self.state.send(t, Message::Extended { id, payload });
    }

    /// A `ut_pex` message from the peer: what it teaches goes to the runner's peer list.
    pub(super) fn on_pex(&mut self, payload: &[u8]) {
        match self.remote.pex_in.handle(now(), payload) {
            Ok(addrs) => {
                tracing::debug!(learned = addrs.len(), "peer exchange received");
                self.torrent.offer_peers(PeerSource::Pex, addrs);
            }
            Err(PexIgnored::TooSoon { since }) => {
                self.torrent.lock().counters.pex_spam += 1;
                tracing::debug!(?since, spam = self.remote.pex_in.spam_count(), "peer exchange too soon, ignored");
            }
            // Peer exchange is optional hearsay: a bad message is dropped, the peer kept.
            Err(e @ PexIgnored::Malformed(_)) => tracing::debug!(error = %e, "bad peer exchange message ignored"),
        }
    }

    /// Notes once that the peer has every piece: peer exchange calls it a seed.
    pub(super) fn note_if_seed(&mut self) {
        if !self.remote.seed_noted && self.remote.pieces.as_ref().is_some_and(|p| p.theirs().is_complete()) {
            self.remote.seed_noted = true;
            self.torrent.set_peer_seed(self.remote.key);
        }
    }

    /// The peer-exchange part of an extension handshake (BEP 10 allows it to be sent again,
    /// so a sender already running keeps what it advertised).
    pub(super) fn on_ext_handshake_pex(&mut self, hs: &ExtHandshake) {
        if let Some(port) = hs.listen_port {
            self.torrent.set_peer_listen_port(self.remote.key, port);
        }
        if let Some(ip) = hs.your_ip {
            self.remote.pex_in.add_own(SocketAddr::new(ip, self.torrent.config.listen_port));
        }
        match (self.torrent.config.pex, hs.ut_pex) {
            (true, Some(id)) => match self.remote.pex_out.as_mut() {
                Some((their_id, _)) => *their_id = id,
                None => self.remote.pex_out = Some((id, PexSender::new(now()))),
            },
            // 0 (or no entry) in a later handshake switches PEX off for this peer.
            _ => self.remote.pex_out = None,
        }
    }
}
