//! What a user sees of each connected peer (the "Peers" tab of µTorrent and qBittorrent): its
//! address, client, rates, how much of the torrent it has, and µTorrent's flag letters, all
//! read from the core's own state. Built on request (`TorrentCore::peer_views`, about once a
//! second by the driver), never on the data path; at most `max_peers` entries.
//!
//! The letters, as µTorrent's FAQ defines them (qBittorrent computes the same ones):
//! - `D` we are interested and they unchoke us (we download from them); `d` we are interested
//!   but they choke us.
//! - `U` they are interested and we unchoke them (we upload to them); `u` they are interested
//!   but we choke them.
//! - `K` they unchoke us but we are not interested; `?` we unchoke them but they are not
//!   interested.
//! - `O` they hold our optimistic unchoke.
//! - `S` snubbed: we are interested, they unchoke us, and no block came from them for the
//!   choker's snub time (60 s by default), so the choker gives them no regular slot.
//! - `I` they connected to us. `P` the connection runs over uTP (BEP 29).
//! - `H`, `L`, `X`: the DHT (BEP 5), local service discovery (BEP 14) or peer exchange (BEP 11)
//!   had told us of their address when the connection was made (several may be set).
//! - `E` (encrypted) is never set: kadswarm has no Message Stream Encryption.
//!
//! They are written in two groups like µTorrent's column, the transfer state then the
//! connection: `D U` letters, a space, `I` and the others (`"D IHP"`, `"u X"`, `"K"`).

use std::net::SocketAddr;
use std::time::Instant;

use super::TorrentCore;
use crate::swarm::peer_source::{PeerSource, PeerSources};

/// The state behind one peer's flag letters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerFlags {
    /// We want pieces they have.
    pub am_interested: bool,
    /// They do not serve our requests.
    pub peer_choking: bool,
    /// They want pieces we have.
    pub peer_interested: bool,
    /// We do not serve their requests.
    pub am_choking: bool,
    pub optimistic: bool,
    pub snubbed: bool,
    pub incoming: bool,
    pub utp: bool,
    pub found: PeerSources,
}

impl PeerFlags {
    /// µTorrent's letters for this state (see the module doc).
    pub fn letters(&self) -> String {
        let mut state = String::new();
        if self.am_interested {
            state.push(if self.peer_choking { 'd' } else { 'D' });
        }
        if self.peer_interested {
            state.push(if self.am_choking { 'u' } else { 'U' });
        }
        if !self.am_interested && !self.peer_choking {
            state.push('K');
        }
        if !self.peer_interested && !self.am_choking {
            state.push('?');
        }
        if self.optimistic {
            state.push('O');
        }
        if self.snubbed {
            state.push('S');
        }
        let mut conn = String::new();
        if self.incoming {
            conn.push('I');
        }
        for (source, letter) in [(PeerSource::Dht, 'H'), (PeerSource::Lsd, 'L'), (PeerSource::Pex, 'X')] {
            if self.found.contains(source) {
                conn.push(letter);
            }
        }
        if self.utp {
            conn.push('P');
        }
        match (state.is_empty(), conn.is_empty()) {
            (false, false) => format!("{state} {conn}"),
            (true, _) => conn,
            (false, true) => state,
        }
    }
}

/// One connected peer as a user reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub addr: SocketAddr,
    pub flags: PeerFlags,
    /// Its program and version, printable and capped (`wire::client_name`).
    pub client: Option<String>,
    /// Payload bytes a second from and to it (averaged over a few seconds).
    pub down_rate: u64,
    pub up_rate: u64,
    /// Payload bytes from and to it over the connection.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Pieces it has, of how many, once the metadata is known.
    pub pieces: Option<(usize, usize)>,
}

impl PeerView {
    /// Its share of the torrent, 0 to 1, once the metadata is known.
    pub fn progress(&self) -> Option<f64> {
        self.pieces.map(|(have, total)| if total == 0 { 1.0 } else { have as f64 / total as f64 })
    }
}

impl TorrentCore {
    /// Every connected peer as a user reads it, in peer order. O(peers); meant for a display
    /// refreshed about once a second, not for every message.
    pub fn peer_views(&self, now: Instant) -> Vec<PeerView> {
        let total = self.meta.as_ref().map(|m| m.info.piece_count());
        let optimistic = self.choker.optimistic();
        self.peers
            .iter()
            .map(|(&key, p)| {
                let s = &p.state;
                let flags = PeerFlags {
                    am_interested: s.am_interested,
                    peer_choking: s.peer_choking,
                    peer_interested: s.peer_interested,
                    am_choking: s.am_choking,
                    optimistic: optimistic == Some(key) && !s.am_choking,
                    snubbed: s.am_interested && !s.peer_choking && self.choker.is_snubbed(key, now),
                    incoming: !p.origin.outgoing,
                    utp: p.origin.utp,
                    found: p.origin.found,
                };
                let have = p.pieces.as_ref().map_or(0, |x| x.theirs().count());
                PeerView {
                    addr: p.addr,
                    flags,
                    client: p.client.clone(),
                    down_rate: s.download.per_second() as u64,
                    up_rate: s.upload.per_second() as u64,
                    downloaded: s.download.total(),
                    uploaded: s.upload.total(),
                    pieces: total.map(|t| (have, t)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: impl FnOnce(&mut PeerFlags)) -> String {
        // A fresh connection: both sides choke, nobody is interested.
        let mut s = PeerFlags { peer_choking: true, am_choking: true, ..PeerFlags::default() };
        f(&mut s);
        s.letters()
    }

    #[test]
    fn letters_follow_utorrent() {
        assert_eq!(flags(|_| {}), "");
        assert_eq!(flags(|f| f.am_interested = true), "d");
        assert_eq!(flags(|f| (f.am_interested, f.peer_choking) = (true, false)), "D");
        assert_eq!(flags(|f| f.peer_interested = true), "u");
        assert_eq!(flags(|f| (f.peer_interested, f.am_choking) = (true, false)), "U");
        assert_eq!(flags(|f| f.peer_choking = false), "K");
        assert_eq!(flags(|f| f.am_choking = false), "?");
        assert_eq!(flags(|f| (f.peer_interested, f.am_choking, f.optimistic) = (true, false, true)), "UO");
        let mut all = PeerSources::default();
        for s in [PeerSource::Dht, PeerSource::Lsd, PeerSource::Pex, PeerSource::Manual] {
            all.insert(s);
        }
        assert_eq!(flags(|f| (f.incoming, f.utp, f.found) = (true, true, all)), "IHLXP");
        assert_eq!(
            flags(|f| (f.am_interested, f.peer_choking, f.snubbed, f.incoming) = (true, false, true, true)),
            "DS I"
        );
    }
}
