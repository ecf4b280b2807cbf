//! The BEP 11 part of the core: when to send our `ut_pex` message to a peer (the `PexSender`
//! core decides), what to do with its messages (the `PexReceiver` core filters them; what
//! remains goes to the runner's peer list), and what the extension handshake and the peer's
//! pieces tell others about it.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Action, TorrentCore};
use crate::swarm::pex::{PexIgnored, PexSender};
use crate::swarm::PeerKey;
use crate::wire::extended::ExtHandshake;
use crate::wire::message::Message;
use crate::wire::pex::PexFlags;

impl TorrentCore {
    /// Our PEX message to this peer, when one is due.
    pub(super) fn send_pex(&mut self, now: Instant, key: PeerKey) {
        let due = self.peers.get(&key).and_then(|p| p.pex_out.as_ref()).is_some_and(|(_, s)| now >= s.next_deadline());
        if !due {
            return;
        }
        let view = self.pex_view(key);
        let Some((their_id, sender)) = self.peers.get_mut(&key).and_then(|p| p.pex_out.as_mut()) else { return };
        let Some(msg) = sender.poll(now, &view) else { return };
        tracing::debug!(added = msg.added.len(), dropped = msg.dropped.len(), "peer exchange sent");
        let mut payload = Vec::new();
        msg.encode(&mut payload);
        let id = *their_id;
        self.send(now, key, Message::Extended { id, payload });
    }

    /// A `ut_pex` message from the peer: what it teaches goes to the runner's peer list.
    pub(super) fn on_pex(&mut self, now: Instant, key: PeerKey, payload: &[u8]) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        match p.pex_in.handle(now, payload) {
            Ok(addrs) => {
                tracing::debug!(learned = addrs.len(), "peer exchange received");
                if !addrs.is_empty() {
                    self.actions.push_back(Action::Learned { addrs });
                }
            }
            Err(PexIgnored::TooSoon { since }) => {
                self.counters.pex_spam += 1;
                tracing::debug!(?since, spam = p.pex_in.spam_count(), "peer exchange too soon, ignored");
            }
            // Peer exchange is optional hearsay: a bad message is dropped, the peer kept.
            Err(e @ PexIgnored::Malformed(_)) => tracing::debug!(error = %e, "bad peer exchange message ignored"),
        }
    }

    /// Notes that the peer has every piece: peer exchange calls it a seed.
    pub(super) fn note_if_seed(&mut self, key: PeerKey) {
        if let Some(p) = self.peers.get_mut(&key) {
            if p.pieces.as_ref().is_some_and(|x| x.theirs().is_complete()) {
                p.pex_flags |= PexFlags::SEED;
            }
        }
    }

    /// The peer-exchange part of an extension handshake (BEP 10 allows it to be sent again,
    /// so a sender already running keeps what it advertised).
    pub(super) fn on_ext_handshake_pex(&mut self, now: Instant, key: PeerKey, hs: &ExtHandshake) {
        let (pex, listen_port) = (self.config.pex, self.config.listen_port);
        let Some(p) = self.peers.get_mut(&key) else { return };
        // An incoming peer told its listen port: with the IP it came from, that is where
        // others can reach it. A dialled peer keeps the address we dialled.
        if let (Some(port), None) = (hs.listen_port, p.listen) {
            p.listen = Some(SocketAddr::new(p.addr.ip(), port));
        }
        if let Some(ip) = hs.your_ip {
            p.pex_in.add_own(SocketAddr::new(ip, listen_port));
        }
        match (pex, hs.ut_pex) {
            (true, Some(id)) => match p.pex_out.as_mut() {
                Some((their_id, _)) => *their_id = id,
                None => p.pex_out = Some((id, PexSender::new(now))),
            },
            // 0 (or no entry) in a later handshake switches PEX off for this peer.
            _ => p.pex_out = None,
        }
    }
}
