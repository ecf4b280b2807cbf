//! One peer connection's task (BEP 3 over any byte stream, BEP 10 extension handshake, BEP 9
//! metadata exchange, BEP 11 peer exchange): it reads frames, feeds them to the peer's state machine, acts on what
//! they mean with the torrent's picker and storage, and writes what is due, all in one
//! `select!` so that a peer that stops reading never blocks us from reading it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::session::fetched_metadata::install_fetched_metadata;
use crate::session::peer_state::{PeerEvent, PeerState};
use crate::session::throttle::Throttle;
pub use crate::session::torrent::PeerOrigin;
use crate::session::torrent::{now, PeerCmd, Torrent};
use crate::swarm::bitfield::Bitfield;
use crate::swarm::pex::{PexReceiver, PexSender};
use crate::swarm::{BlockStatus, PeerKey};
use crate::wire::extended::ExtHandshake;
use crate::wire::handshake::{Handshake, HANDSHAKE_LEN};
use crate::wire::message::{decode_frame, BlockRef, Limits, Message};
use crate::wire::metadata::{metadata_piece, MetadataError, MetadataMessage};

/// Our extended-message id for ut_metadata (BEP 9); the peer's own id comes in its handshake.
const OUR_UT_METADATA: u8 = 1;
/// Our extended-message id for ut_pex (BEP 11), announced only when peer exchange is on.
const OUR_UT_PEX: u8 = 2;
/// Bytes queued for the socket before we stop reading blocks from disk for this peer.
const WRITE_HIGH_WATER: usize = 1 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUEST_LEN: u32 = 128 * 1024;
/// How long one peer may hold a failed piece for itself (see `State::parole`).
const PAROLE_TIME: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PeerTaskError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("peer refused: banned or too many peers")]
    Refused,
    #[error("closed by the session")]
    Closed,
    #[error("peer does not read: {queued} bytes queued for it (cap {cap}) and it asks for more")]
    NotReading { queued: usize, cap: usize },
}

fn protocol(e: impl std::fmt::Display) -> PeerTaskError {
    PeerTaskError::Protocol(e.to_string())
}

/// Sends our handshake and reads theirs (or takes the one a listener already read).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    torrent: &Torrent,
    theirs: Option<Handshake>,
) -> Result<Handshake, PeerTaskError> {
    let ours = Handshake::new(torrent.config.info_hash, torrent.config.peer_id);
    let exchange = async {
        stream.write_all(&ours.encode()).await?;
        let theirs = match theirs {
            Some(h) => h,
            None => read_handshake(stream).await?,
        };
        Ok::<_, PeerTaskError>(theirs)
    };
    let theirs = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| PeerTaskError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out")))??;
    if theirs.info_hash != torrent.config.info_hash {
        return Err(PeerTaskError::Handshake("peer is in another swarm".into()));
    }
    if theirs.peer_id == torrent.config.peer_id {
        return Err(PeerTaskError::Handshake("connected to ourselves".into()));
    }
    Ok(theirs)
}

pub async fn read_handshake<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Handshake, PeerTaskError> {
    let mut buf = [0u8; HANDSHAKE_LEN];
    stream.read_exact(&mut buf).await?;
    Handshake::decode(&buf).map_err(|e| PeerTaskError::Handshake(e.to_string()))
}

/// What this task knows about the remote peer beyond the protocol state.
struct Remote {
    key: PeerKey,
    addr: SocketAddr,
    supports_ext: bool,
    supports_dht: bool,
    /// Their pieces, once we know how many pieces there are.
    pieces: Option<PeerPieces>,
    /// A bitfield or haves that came before the metadata did.
    early_bitfield: Option<Vec<u8>>,
    early_haves: Vec<u32>,
    ut_metadata: Option<u8>,
    /// The peer's id for ut_pex and what we tell it; `None` unless both sides offer PEX.
    pex_out: Option<(u8, PexSender)>,
    /// What we take from its PEX messages (only used when we announced ut_pex).
    pex_in: PexReceiver,
    /// Told the torrent that this peer has every piece (for the PEX seed flag).
    seed_noted: bool,
    /// Its BEP 5 `port` message was acted on: one ping per connection, whatever it sends.
    dht_port_taken: bool,
}

/// Runs a connected, handshaken peer until it leaves, misbehaves or the session closes it.
/// `origin` (dialled or accepted, TCP or uTP) is what peer exchange tells others of it.
pub async fn run<S>(
    stream: S,
    addr: SocketAddr,
    theirs: Handshake,
    torrent: Arc<Torrent>,
    origin: PeerOrigin,
) -> Result<(), PeerTaskError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some((key, cmds)) = torrent.add_peer(addr, origin) else { return Err(PeerTaskError::Refused) };
    let port = torrent.config.listen_port;
    let own = torrent.config.listen_ip.map(|ip| SocketAddr::new(ip, port));
    let span = tracing::debug_span!("peer", %addr);
    let _enter = span.enter();
    let mut conn = Conn {
        torrent: Arc::clone(&torrent),
        state: PeerState::new(now(), torrent.config.peer.clone()),
        remote: Remote {
            key,
            addr,
            supports_ext: theirs.supports_extensions(),
            supports_dht: theirs.supports_dht(),
            pieces: None,
            early_bitfield: None,
            early_haves: Vec::new(),
            ut_metadata: None,
            pex_out: None,
            pex_in: PexReceiver::new(own),
            seed_noted: false,
            dht_port_taken: false,
        },
        wbuf: Vec::new(),
        limits: limits::frame_limits(torrent.metainfo().map(|m| m.info.piece_count())),
    };
    let result = conn.main_loop(stream, cmds).await;
    torrent.remove_peer(key);
    match &result {
        Ok(()) | Err(PeerTaskError::Closed) => tracing::debug!("peer left"),
        Err(e) => tracing::debug!(error = %e, "peer dropped"),
    }
    result
}

struct Conn {
    torrent: Arc<Torrent>,
    state: PeerState,
    remote: Remote,
    /// Encoded bytes waiting for the socket.
    wbuf: Vec<u8>,
    /// What frames the peer may send: the bitfield size is narrowed to the torrent's once the
    /// metadata is known (see `limits::frame_limits`).
    limits: Limits,
}

impl Conn {
    async fn main_loop<S>(&mut self, stream: S, mut cmds: mpsc::UnboundedReceiver<PeerCmd>) -> Result<(), PeerTaskError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        self.greet();
        let mut rbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        let mut written = 0usize;
        // `--upload-limit` / `--download-limit` (see `throttle`): a closed gate leaves its branch
        // off until the wake-up, so a held-back peer is simply not read from or written to.
        let mut throttle = Throttle::new(&self.torrent.config.rate_limits);
        loop {
            self.after_activity()?;
            let t = now();
            let deadline = tokio::time::Instant::from_std(self.state.next_deadline().min(t + Duration::from_secs(1)));
            let pending = &self.wbuf[written..];
            let (may_read, may_write, wake) = (throttle.down.ready(t), throttle.up.ready(t), throttle.wake(t));
            let (read_len, write_len) = (throttle.down.len(chunk.len()), throttle.up.len(pending.len()));
            tokio::select! {
                n = rd.read(&mut chunk[..read_len]), if may_read => {
                    let n = n?;
                    throttle.down.moved(n, now);
                    if n == 0 {
                        return Ok(());
                    }
                    rbuf.extend_from_slice(&chunk[..n]);
                    let mut start = 0;
                    while let Some((msg, used)) = decode_frame(&rbuf[start..], &self.limits).map_err(protocol)? {
                        start += used;
                        self.on_message(msg)?;
                    }
                    rbuf.drain(..start);
                }
                n = wr.write(&pending[..write_len]), if !pending.is_empty() && may_write => {
                    let n = n?;
                    throttle.up.moved(n, now);
                    written += n;
                    if written == self.wbuf.len() {
                        self.wbuf.clear();
                        written = 0;
                    }
                }
                cmd = cmds.recv() => match cmd {
                    Some(PeerCmd::Close) | None => return Err(PeerTaskError::Closed),
                    Some(cmd) => self.on_command(cmd),
                },
                _ = tokio::time::sleep_until(deadline) => self.on_timer()?,
                _ = tokio::time::sleep_until(wake.map_or(deadline, tokio::time::Instant::from_std)), if wake.is_some() => {}
            }
        }
    }

    /// The first messages: extension handshake, bitfield, DHT port.
    fn greet(&mut self) {
        let t = now();
        if self.remote.supports_ext {
            let meta = self.torrent.metainfo();
            let hs = ExtHandshake {
                ut_metadata: Some(OUR_UT_METADATA),
                ut_pex: self.torrent.config.pex.then_some(OUR_UT_PEX),
                metadata_size: meta.as_ref().map(|m| m.info_bytes.len() as u64),
                client: Some(format!("kadswarm {}", env!("CARGO_PKG_VERSION"))),
                listen_port: Some(self.torrent.config.listen_port),
                reqq: Some(self.torrent.config.peer.max_peer_requests as u32),
                your_ip: Some(self.remote.addr.ip()),
            };
            let mut payload = Vec::new();
            hs.encode(&mut payload);
            self.state.send(t, Message::Extended { id: 0, payload });
        }
        self.send_bitfield();
        if let (true, Some(port)) = (self.remote.supports_dht, self.torrent.config.dht_port) {
            self.state.send(t, Message::Port(port));
        }
    }

    fn send_bitfield(&mut self) {
        let bits = {
            let st = self.torrent.lock();
            match &st.picker {
                Some(p) if p.have().count() > 0 => Some(p.have().as_bytes().to_vec()),
                _ => None,
            }
        };
        if let Some(bits) = bits {
            self.state.send(now(), Message::Bitfield(bits));
        }
    }

    fn on_command(&mut self, cmd: PeerCmd) {
        let t = now();
        match cmd {
            PeerCmd::Choke => self.state.set_choking(t, true),
            PeerCmd::Unchoke => self.state.set_choking(t, false),
            PeerCmd::Have(i) => {
                self.state.send(t, Message::Have(i));
                if let Some(pieces) = self.remote.pieces.as_mut() {
                    pieces.our_have(i as usize);
                }
                self.update_interest();
            }
            PeerCmd::Cancel(b) => {
                // The cancel may be stale: the block could have failed its piece's check and
                // been handed to this peer again since. Telling the picker too keeps both in
                // step; a request the picker counts but the peer state forgot would never be
                // re-sent nor time out, and the download would stall on it.
                if self.state.is_outstanding(&b) {
                    self.state.cancel(t, b);
                    if let Some(p) = self.torrent.lock().picker.as_mut() {
                        p.on_rejected(self.remote.key, b);
                    }
                }
            }
            PeerCmd::MetadataReady => {
                self.limits = limits::frame_limits(self.piece_count());
                self.adopt_early_availability();
                self.send_bitfield();
                self.update_interest();
            }
            PeerCmd::Close => {}
        }
    }

    fn on_timer(&mut self) -> Result<(), PeerTaskError> {
        let t = now();
        tracing::trace!(
            choked = self.state.peer_choking,
            interested = self.state.am_interested,
            outstanding = self.state.outstanding(),
            room = self.state.request_room(),
            "peer timer"
        );
        let expired = self.state.handle_timeout(t).map_err(protocol)?;
        let key = self.remote.key;
        let mut st = self.torrent.lock();
        if let Some(p) = st.picker.as_mut() {
            for b in expired {
                p.on_request_timeout(key, b);
            }
        }
        st.choker.on_downloaded(key, t, 0);
        if let Some(f) = st.metadata.as_mut() {
            f.on_timer(t);
        }
        drop(st);
        // Slots another peer released (rejected, timed out, blamed) are taken up here.
        self.ask_metadata();
        self.update_interest();
        self.send_pex(t);
        Ok(())
    }

    fn on_message(&mut self, msg: Message) -> Result<(), PeerTaskError> {
        let t = now();
        let event = match self.state.handle_message(t, msg) {
            Ok(Some(ev)) => ev,
            Ok(None) => return Ok(()),
            // A late block after a cancel or timeout: the data is simply not needed.
            Err(crate::session::peer_state::PeerError::UnrequestedBlock(_)) => return Ok(()),
            Err(e) => return Err(protocol(e)),
        };
        let key = self.remote.key;
        match event {
            PeerEvent::Choked { released } => {
                let mut st = self.torrent.lock();
                if let Some(p) = st.picker.as_mut() {
                    for b in released {
                        p.on_rejected(key, b);
                    }
                }
            }
            PeerEvent::Unchoked => {}
            PeerEvent::Interested(i) => {
                let mut st = self.torrent.lock();
                st.choker.set_interested(key, i);
                if i && st.choker.unchoke_if_slot_free(key, t) {
                    drop(st);
                    self.state.set_choking(t, false);
                }
            }
            PeerEvent::Have(i) => self.on_have(i)?,
            PeerEvent::Bitfield(bits) => self.on_bitfield(bits)?,
            PeerEvent::Block { block, data } => self.on_block(block, data)?,
            PeerEvent::Request(block) => self.check_request(block)?,
            PeerEvent::Cancel(_) => {}
            PeerEvent::DhtPort(port) => {
                if !std::mem::replace(&mut self.remote.dht_port_taken, true) {
                    self.torrent.dht_ping(SocketAddr::new(self.remote.addr.ip(), port));
                }
            }
            PeerEvent::Extended { id, payload } => self.on_extended(id, &payload)?,
        }
        Ok(())
    }

    fn piece_count(&self) -> Option<usize> {
        self.torrent.lock().meta.as_ref().map(|m| m.info.piece_count())
    }

    fn on_have(&mut self, index: u32) -> Result<(), PeerTaskError> {
        let Some(n) = self.piece_count() else {
            if self.remote.early_haves.len() < 100_000 {
                self.remote.early_haves.push(index);
            }
            return Ok(());
        };
        if index as usize >= n {
            return Err(protocol(format!("have {index} of {n} pieces")));
        }
        let Some(pieces) = self.peer_pieces(n) else { return Ok(()) };
        if pieces.their_have(index as usize) {
            if let Some(p) = self.torrent.lock().picker.as_mut() {
                p.peer_has(self.remote.key, index as usize).map_err(protocol)?;
            }
            self.note_if_seed();
        }
        self.update_interest();
        Ok(())
    }

    fn on_bitfield(&mut self, bits: Vec<u8>) -> Result<(), PeerTaskError> {
        let Some(n) = self.piece_count() else {
            self.remote.early_bitfield = Some(bits);
            return Ok(());
        };
        let bf = Bitfield::from_bytes(&bits, n).map_err(protocol)?;
        if let Some(p) = self.torrent.lock().picker.as_mut() {
            p.peer_has_bitfield(self.remote.key, &bf).map_err(protocol)?;
        }
        if let Some(pieces) = self.peer_pieces(n) {
            pieces.set_theirs(bf);
        }
        self.note_if_seed();
        self.update_interest();
        Ok(())
    }

    /// Applies a bitfield and haves received before we knew the piece count.
    fn adopt_early_availability(&mut self) {
        if let Some(bits) = self.remote.early_bitfield.take() {
            if let Err(e) = self.on_bitfield(bits) {
                tracing::debug!(error = %e, "bad early bitfield ignored");
            }
        }
        for i in std::mem::take(&mut self.remote.early_haves) {
            let _ = self.on_have(i);
        }
    }

    /// O(1): `PeerPieces` keeps the count of their pieces we lack.
    fn update_interest(&mut self) {
        let interesting = self.remote.pieces.as_ref().is_some_and(PeerPieces::interesting);
        self.state.set_interested(now(), interesting);
    }

    fn on_block(&mut self, block: BlockRef, data: Vec<u8>) -> Result<(), PeerTaskError> {
        let t = now();
        let key = self.remote.key;
        let mut guard = self.torrent.lock();
        let st = &mut *guard;
        st.counters.received += data.len() as u64;
        st.choker.on_downloaded(key, t, data.len() as u64);
        if st.fault.is_some() {
            // The torrent stopped on a disk fault: nothing more is written, and this peer is
            // told to leave like every other.
            return Err(PeerTaskError::Closed);
        }
        let (Some(picker), Some(storage)) = (st.picker.as_mut(), st.storage.clone()) else { return Ok(()) };
        let outcome = picker.on_block(key, block).map_err(protocol)?;
        if outcome.status == BlockStatus::Duplicate {
            // Never written: a second copy (endgame, a late answer) must not overwrite a block
            // already received, least of all one of a piece that already passed its check.
            return Ok(());
        }
        // Written under the torrent's lock, so that the piece is hashed only once every block
        // of it is on disk. A positioned write of one block lands in the page cache; it costs
        // less than a hop to the blocking pool.
        if let Err(e) = storage.write_block(block.index as usize, u64::from(block.begin), &data) {
            // Our disk's fault, not the peer's: the torrent stops with the error.
            self.torrent.disk_failed(st, &e);
            return Err(PeerTaskError::Closed);
        }
        st.smart_ban.on_block(block, self.remote.addr.ip());
        for (other, b) in outcome.cancels.iter() {
            self.torrent.send_to(st, *other, PeerCmd::Cancel(*b));
        }
        drop(guard);
        if let BlockStatus::PieceComplete(index) = outcome.status {
            self.torrent.verify_later(index as u32);
        }
        Ok(())
    }

    fn check_request(&mut self, block: BlockRef) -> Result<(), PeerTaskError> {
        let st = self.torrent.lock();
        let (Some(meta), Some(picker)) = (&st.meta, &st.picker) else {
            return Err(protocol("request before we have metadata"));
        };
        let index = block.index as usize;
        let valid = index < meta.info.piece_count()
            && block.length > 0
            && block.length <= MAX_REQUEST_LEN
            && u64::from(block.begin) + u64::from(block.length) <= meta.info.piece_len(index);
        if !valid {
            return Err(protocol(format!("bad request {block:?}")));
        }
        if !picker.have().get(index) {
            // Asking for what we never announced: drop it (a race with our own have is
            // impossible since we only announce verified pieces).
            return Err(protocol(format!("request for piece {index} we do not have")));
        }
        Ok(())
    }

    fn on_extended(&mut self, id: u8, payload: &[u8]) -> Result<(), PeerTaskError> {
        if id == 0 {
            let hs = ExtHandshake::decode(payload).map_err(protocol)?;
            self.remote.ut_metadata = hs.ut_metadata.filter(|&i| i != 0);
            if let (Some(_), Some(size)) = (self.remote.ut_metadata, hs.metadata_size) {
                if let Some(Err(e)) = self.torrent.lock().metadata.as_mut().map(|f| f.on_size(self.remote.key, size)) {
                    tracing::debug!(error = %e, "peer announced an unusable metadata size");
                }
            }
            self.on_ext_handshake_pex(&hs);
            self.ask_metadata();
            return Ok(());
        }
        if id == OUR_UT_PEX && self.torrent.config.pex {
            self.on_pex(payload);
            return Ok(());
        }
        if id != OUR_UT_METADATA {
            return Ok(()); // an extension we did not announce support for: ignore it
        }
        let msg = match MetadataMessage::decode(payload) {
            Ok(m) => m,
            // BEP 9: message types we do not know are ignored.
            Err(MetadataError::UnknownType(_)) => return Ok(()),
            Err(e) => return Err(protocol(e)),
        };
        match msg {
            MetadataMessage::Request { piece } => self.serve_metadata(piece)?,
            // Not asked again at once: the next timer tick asks whoever may be asked.
            MetadataMessage::Reject { piece } => {
                if let Some(f) = self.torrent.lock().metadata.as_mut() {
                    f.on_reject(self.remote.key, piece);
                }
            }
            MetadataMessage::Data { piece, total_size, data } => self.on_metadata_piece(piece, total_size, data),
        }
        Ok(())
    }

    /// Answers a `ut_metadata` request, within what this peer may have queued with us (see
    /// `limits::metadata_answer`): a peer streaming requests without reading is refused, then
    /// dropped, rather than given 16 KiB of our memory per request.
    fn serve_metadata(&mut self, piece: u32) -> Result<(), PeerTaskError> {
        let Some(their_id) = self.remote.ut_metadata else { return Ok(()) };
        let queued = self.queued();
        let answer = limits::metadata_answer(queued);
        if answer == limits::MetadataAnswer::Drop {
            return Err(PeerTaskError::NotReading { queued, cap: limits::MAX_QUEUED });
        }
        let meta = self.torrent.metainfo().filter(|_| answer == limits::MetadataAnswer::Serve);
        let reply = match meta.as_ref().and_then(|m| metadata_piece(&m.info_bytes, piece).map(|d| (m, d))) {
            Some((m, data)) => {
                MetadataMessage::Data { piece, total_size: m.info_bytes.len() as u64, data: data.to_vec() }
            }
            None => MetadataMessage::Reject { piece },
        };
        let mut payload = Vec::new();
        reply.encode(&mut payload);
        self.state.send(now(), Message::Extended { id: their_id, payload });
        Ok(())
    }

    /// Asks this peer for metadata pieces while we lack the metadata.
    fn ask_metadata(&mut self) {
        let Some(their_id) = self.remote.ut_metadata else { return };
        let t = now();
        let mut st = self.torrent.lock();
        if st.meta.is_some() {
            return;
        }
        let key = self.remote.key;
        // Bounded: the fetch caps what one peer has in flight.
        while let Some(piece) = st.metadata.as_mut().and_then(|f| f.next_request(key, t)) {
            let mut payload = Vec::new();
            MetadataMessage::Request { piece }.encode(&mut payload);
            self.state.send(t, Message::Extended { id: their_id, payload });
        }
    }

    fn on_metadata_piece(&mut self, piece: u32, total_size: u64, data: Vec<u8>) {
        let mut st = self.torrent.lock();
        let Some(fetch) = st.metadata.as_mut() else { return };
        let result = fetch.on_data(self.remote.key, piece, total_size, data);
        self.torrent.ban_metadata_liars(&mut st);
        drop(st);
        match result {
            Ok(Some(info_bytes)) => install_fetched_metadata(&self.torrent, info_bytes),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "bad metadata from peers"),
        }
        self.ask_metadata();
    }

    /// After any input: fill the request pipeline, serve what we owe, encode what is queued.
    fn after_activity(&mut self) -> Result<(), PeerTaskError> {
        let t = now();
        let room = self.state.request_room();
        if room > 0 {
            if let Some(have) = self.remote.pieces.as_ref().map(PeerPieces::theirs) {
                let blocks = {
                    let mut guard = self.torrent.lock();
                    let st = &mut *guard;
                    let key = self.remote.key;
                    match st.picker.as_mut() {
                        Some(p) => {
                            let mut picked = p.pick(key, have, room);
                            // A piece that failed its hash is fetched again from one peer only,
                            // so that a second failure names the liar (see `State::parole`).
                            // An owner that has not finished it within PAROLE_TIME loses it, so a
                            // stuck owner cannot stall the download.
                            picked.retain(|b| match st.parole.get_mut(&b.index) {
                                None => true,
                                Some(owner)
                                    if owner.is_none_or(|(o, since)| {
                                        o == key || t.saturating_duration_since(since) >= PAROLE_TIME
                                    }) =>
                                {
                                    if owner.is_none_or(|(o, _)| o != key) {
                                        *owner = Some((key, t));
                                    }
                                    true
                                }
                                Some(_) => {
                                    p.on_rejected(key, *b);
                                    false
                                }
                            });
                            picked
                        }
                        None => Vec::new(),
                    }
                };
                for b in blocks {
                    self.state.request(t, b);
                }
            }
        }
        // `queued` counts the blocks just read too: `wbuf` alone would not grow inside this
        // loop, and every owed request would be read from disk at once.
        while self.queued() < WRITE_HIGH_WATER {
            let Some(block) = self.state.next_owed() else { break };
            let storage = self.torrent.lock().storage.clone();
            let Some(storage) = storage else { break };
            let data = storage
                .read_block(block.index as usize, u64::from(block.begin), u64::from(block.length))
                .map_err(protocol)?;
            let mut st = self.torrent.lock();
            st.counters.uploaded += data.len() as u64;
            st.choker.on_uploaded(self.remote.key, t, data.len() as u64);
            drop(st);
            self.state.send_block(t, block, data);
        }
        while let Some(msg) = self.state.poll_message() {
            msg.encode(&mut self.wbuf);
        }
        Ok(())
    }
}

#[path = "peer_pex.rs"]
mod pex;

#[path = "peer_limits.rs"]
mod limits;

#[path = "peer_pieces.rs"]
mod pieces;
use pieces::PeerPieces;

#[cfg(test)]
#[path = "peer_pex_tests.rs"]
mod pex_tests;

#[cfg(test)]
#[path = "peer_port_tests.rs"]
mod port_tests;

#[cfg(test)]
#[path = "peer_serve_tests.rs"]
mod serve_tests;

#[cfg(test)]
#[path = "peer_limits_tests.rs"]
mod limits_tests;
