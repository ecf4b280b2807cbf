//! One peer connection's task (BEP 3 framing over any byte stream): it reads bytes, cuts them
//! into messages and hands each to the torrent task, and writes what the torrent task sends
//! it, all in one `select!` so that a peer that stops reading never blocks us from reading
//! it. Every decision (what to answer, what to request, when to drop it) is the torrent
//! core's; this task only moves bytes and reports how many its socket took.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::net::rate_limit::RateLimits;
use crate::session::throttle::Throttle;
pub use crate::session::torrent::PeerOrigin;
use crate::session::torrent::{now, FromPeer, PeerCmd, Torrent};
use crate::swarm::session::{CloseReason, Hello, Input};
use crate::swarm::PeerKey;
use crate::wire::handshake::{Handshake, HANDSHAKE_LEN};
use crate::wire::message::{decode_frame, Limits};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Commands taken from the torrent task before writing: several small messages (and the
/// blocks of a busy upload) go out in one write.
const CMD_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PeerTaskError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("peer refused: {0}")]
    Refused(crate::swarm::session::Refused),
    #[error("closed by the session")]
    Closed,
    #[error("peer does not read: {queued} bytes queued for it (cap {cap}) and it asks for more")]
    NotReading { queued: usize, cap: usize },
}

impl From<CloseReason> for PeerTaskError {
    fn from(reason: CloseReason) -> Self {
        match reason {
            CloseReason::Closed => PeerTaskError::Closed,
            CloseReason::Protocol(e) => PeerTaskError::Protocol(e),
            CloseReason::NotReading { queued, cap } => PeerTaskError::NotReading { queued, cap },
        }
    }
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
    let hello = Hello {
        addr,
        origin,
        peer_id: theirs.peer_id,
        supports_ext: theirs.supports_extensions(),
        supports_dht: theirs.supports_dht(),
    };
    let (key, limits, cmds) = torrent.join(hello).await.map_err(PeerTaskError::Refused)?;
    let span = tracing::debug_span!("peer", %addr);
    let conn = Conn { key, to_torrent: torrent.peers.clone(), limits, rate_limits: torrent.config.rate_limits.clone() };
    let result = conn.main_loop(stream, cmds).instrument(span.clone()).await;
    // Whatever ended it, the core forgets the peer (a no-op if the core dropped it).
    let _ = torrent.peers.send(FromPeer::Input(Input::PeerGone { key })).await;
    let _enter = span.enter();
    match &result {
        Ok(()) | Err(PeerTaskError::Closed) => tracing::debug!("peer left"),
        Err(e) => tracing::debug!(error = %e, "peer dropped"),
    }
    result
}

struct Conn {
    key: PeerKey,
    to_torrent: mpsc::Sender<FromPeer>,
    /// What frames the peer may send; the torrent narrows them once the piece count is known.
    limits: Limits,
    /// `--upload-limit` / `--download-limit`, shared with every other connection.
    rate_limits: RateLimits,
}

impl Conn {
    async fn main_loop<S>(&self, stream: S, mut cmds: mpsc::UnboundedReceiver<PeerCmd>) -> Result<(), PeerTaskError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut limits = self.limits;
        let (mut rd, mut wr) = tokio::io::split(stream);
        // Bytes read but not yet decoded: at most one partial frame (decode_frame refuses a
        // length over the limits) plus one read. Reads go straight into its spare capacity.
        let mut rbuf: Vec<u8> = Vec::with_capacity(2 * READ_CHUNK);
        // Encoded bytes waiting for the socket.
        let mut wbuf = WriteBuf::default();
        let mut batch = Vec::with_capacity(CMD_BATCH);
        // `--upload-limit` / `--download-limit` (see `throttle`): a closed gate leaves its branch
        // off until the wake-up, so a held-back peer is simply not read from or written to.
        let mut throttle = Throttle::new(&self.rate_limits);
        loop {
            let pending = wbuf.pending();
            let t = now();
            let (may_read, may_write, wake) = (throttle.down.ready(t), throttle.up.ready(t), throttle.wake(t));
            let (read_len, write_len) = (throttle.down.len(READ_CHUNK), throttle.up.len(pending.len()));
            rbuf.reserve(read_len);
            tokio::select! {
                n = read_into(&mut rd, &mut rbuf, read_len), if may_read => {
                    let n = n?;
                    throttle.down.moved(n, now);
                    if n == 0 {
                        return Ok(());
                    }
                    let mut start = 0;
                    while let Some((msg, used)) =
                        decode_frame(&rbuf[start..], &limits).map_err(|e| PeerTaskError::Protocol(e.to_string()))?
                    {
                        start += used;
                        self.report(Input::Message { key: self.key, msg }).await?;
                    }
                    rbuf.drain(..start);
                }
                n = wr.write(&pending[..write_len]), if !pending.is_empty() && may_write => {
                    let n = n?;
                    throttle.up.moved(n, now);
                    wbuf.advance(n);
                    self.report(Input::Written { key: self.key, bytes: n }).await?;
                }
                n = cmds.recv_many(&mut batch, CMD_BATCH) => {
                    if n == 0 {
                        return Err(PeerTaskError::Closed);
                    }
                    for cmd in batch.drain(..) {
                        match cmd {
                            PeerCmd::Send(msg) => msg.encode(wbuf.tail()),
                            PeerCmd::Limits(l) => limits = l,
                            PeerCmd::Close(reason) => return Err(reason.into()),
                        }
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake.unwrap_or(t))), if wake.is_some() => {}
            }
        }
    }

    /// Hands an input to the torrent task, waiting while its queue is full.
    async fn report(&self, input: Input) -> Result<(), PeerTaskError> {
        self.to_torrent.send(FromPeer::Input(input)).await.map_err(|_| PeerTaskError::Closed)
    }
}

/// Reads at most `max` bytes onto the end of `buf`, into its spare capacity: no bounce
/// buffer to copy from, and no zeroing of the space first.
async fn read_into<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    rd.read_buf(&mut buf.limit(max)).await
}

/// Encoded bytes waiting for the socket. The written prefix is dropped once it is as long as
/// what still waits, so the buffer stays within twice the unwritten bytes (which the core caps
/// at `WRITE_HIGH_WATER` plus a block) even for a peer that reads slowly but never catches
/// up; clearing it only when fully written let it grow by everything ever sent to such a peer.
#[derive(Debug, Default)]
struct WriteBuf {
    buf: Vec<u8>,
    written: usize,
}

impl WriteBuf {
    fn pending(&self) -> &[u8] {
        &self.buf[self.written..]
    }

    /// Where new messages are encoded.
    fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// `n` more bytes were taken by the socket.
    fn advance(&mut self, n: usize) {
        self.written += n;
        if self.written == self.buf.len() {
            self.buf.clear();
            self.written = 0;
        } else if self.written >= self.buf.len() - self.written {
            self.buf.drain(..self.written);
            self.written = 0;
        }
    }
}

#[cfg(test)]
mod tests;
