//! Names and sizes of crawled swarms (`kadswarm crawl --metadata`): the info dictionary fetched
//! from one member over the peer wire by BEP 9 (`ut_metadata`, negotiated through the BEP 10
//! extension handshake), checked against the info-hash, and reduced to what the store keeps.
//!
//! The exchange reuses the sans-IO wire layer ([`FrameReader`], [`MetadataAssembler`]); this
//! file only moves bytes. A member is a stranger, so everything it can make us spend is
//! bounded: the whole exchange has one deadline, the metadata size it announces is capped
//! before anything is set aside for it, frames are limited by the reader, and a member that
//! sends the wrong bytes ends the attempt (the caller may try another member).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::id::InfoHash;
use crate::torrent::metainfo::Info;
use crate::wire::extended::{ExtHandshake, HANDSHAKE_ID};
use crate::wire::handshake::Handshake;
use crate::wire::message::{FrameReader, Limits, Message};
use crate::wire::metadata::{MetadataAssembler, MetadataMessage};
use crate::wire::WireError;

/// The id under which we ask members to send us `ut_metadata` messages.
const OUR_UT_METADATA: u8 = 1;
/// Metadata pieces asked for at once: enough to hide a round trip, few enough that a member
/// answering slowly holds little of ours.
const PIECES_IN_FLIGHT: usize = 4;
/// Messages a member may send that bring the exchange no further (bitfields, haves, PEX, ...)
/// before we give up on it.
const MAX_IDLE_MESSAGES: usize = 256;

/// What a crawl keeps of a torrent's info dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoSummary {
    pub name: String,
    /// Total bytes of the payload.
    pub size: u64,
    pub files: usize,
}

/// How much one fetch may cost.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Largest info dictionary accepted, in bytes (a member announcing more is skipped).
    pub max_size: u64,
    /// The whole exchange, from connect to the last piece.
    pub timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> FetchLimits {
        // Real info dictionaries are a few hundred KiB even with thousands of files.
        FetchLimits { max_size: 4 * 1024 * 1024, timeout: Duration::from_secs(20) }
    }
}

/// Why a member did not give us the metadata.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("gave up after {0:?}")]
    TimedOut(Duration),
    #[error("protocol violation: {0}")]
    Wire(#[from] WireError),
    #[error("the member is in another swarm")]
    OtherSwarm,
    #[error("the member does not offer metadata exchange (BEP 9)")]
    NoMetadataExchange,
    #[error("announced metadata of {size} bytes, over the {max}-byte limit")]
    TooLarge { size: u64, max: u64 },
    #[error("bad metadata: {0}")]
    Metadata(String),
    #[error("the member closed the connection")]
    Closed,
    #[error("the member sent {0} messages without progress")]
    Stalled(usize),
}

/// Connects to `addr` over TCP and fetches the info dictionary of `info_hash`.
pub async fn fetch_info(
    addr: SocketAddr,
    info_hash: InfoHash,
    peer_id: [u8; 20],
    limits: FetchLimits,
) -> Result<InfoSummary, FetchError> {
    let work = async {
        let stream = TcpStream::connect(addr).await?;
        exchange(stream, info_hash, peer_id, limits.max_size).await
    };
    tokio::time::timeout(limits.timeout, work).await.map_err(|_| FetchError::TimedOut(limits.timeout))?
}

/// The BEP 3 + BEP 10 + BEP 9 exchange over any byte stream (a socket, or a test's pipe).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    info_hash: InfoHash,
    peer_id: [u8; 20],
    max_size: u64,
) -> Result<InfoSummary, FetchError> {
    let mut out = Handshake::new(info_hash, peer_id).encode().to_vec();
    let ours = ExtHandshake { ut_metadata: Some(OUR_UT_METADATA), ..ExtHandshake::default() };
    let mut payload = Vec::new();
    ours.encode(&mut payload);
    Message::Extended { id: HANDSHAKE_ID, payload }.encode(&mut out);
    stream.write_all(&out).await?;

    let mut conn = Conn { stream, reader: FrameReader::new(Limits::default()), buf: vec![0u8; 16 * 1024] };
    let theirs = conn.handshake().await?;
    if theirs.info_hash != info_hash {
        return Err(FetchError::OtherSwarm);
    }
    if !theirs.supports_extensions() {
        return Err(FetchError::NoMetadataExchange);
    }
    let (their_id, size) = conn.ext_handshake().await?;
    if size > max_size {
        return Err(FetchError::TooLarge { size, max: max_size });
    }
    let mut assembler = MetadataAssembler::new(info_hash, size).map_err(|e| FetchError::Metadata(e.to_string()))?;
    let mut in_flight = 0;
    let mut idle = 0;
    loop {
        while in_flight < PIECES_IN_FLIGHT {
            let Some(piece) = assembler.next_request() else { break };
            let mut payload = Vec::new();
            MetadataMessage::Request { piece }.encode(&mut payload);
            let mut frame = Vec::new();
            Message::Extended { id: their_id, payload }.encode(&mut frame);
            conn.stream.write_all(&frame).await?;
            in_flight += 1;
        }
        let msg = conn.next_message().await?;
        let Message::Extended { id: OUR_UT_METADATA, payload } = msg else {
            idle += 1;
            if idle > MAX_IDLE_MESSAGES {
                return Err(FetchError::Stalled(idle));
            }
            continue;
        };
        match MetadataMessage::decode(&payload) {
            Ok(MetadataMessage::Data { piece, data, .. }) => {
                in_flight = in_flight.saturating_sub(1);
                let done = assembler.on_data(piece, data).map_err(|e| FetchError::Metadata(e.to_string()))?;
                if let Some(bytes) = done {
                    let info = Info::from_bytes(&bytes).map_err(|e| FetchError::Metadata(e.to_string()))?;
                    return Ok(InfoSummary { name: info.name, size: info.total_length, files: info.files.len() });
                }
            }
            // A member that will not give a piece will not give the metadata: try another.
            Ok(MetadataMessage::Reject { piece }) => {
                return Err(FetchError::Metadata(format!("piece {piece} rejected")));
            }
            // Requests from the member (we have nothing to give) and unknown types are ignored.
            Ok(MetadataMessage::Request { .. }) | Err(_) => {
                idle += 1;
                if idle > MAX_IDLE_MESSAGES {
                    return Err(FetchError::Stalled(idle));
                }
            }
        }
    }
}

struct Conn<S> {
    stream: S,
    reader: FrameReader,
    buf: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Conn<S> {
    async fn fill(&mut self) -> Result<(), FetchError> {
        let want = self.buf.len().min(self.reader.room()).max(1);
        let n = self.stream.read(&mut self.buf[..want]).await?;
        if n == 0 {
            return Err(FetchError::Closed);
        }
        self.reader.push(&self.buf[..n])?;
        Ok(())
    }

    async fn handshake(&mut self) -> Result<Handshake, FetchError> {
        loop {
            if let Some(h) = self.reader.next_handshake()? {
                return Ok(h);
            }
            self.fill().await?;
        }
    }

    async fn next_message(&mut self) -> Result<Message, FetchError> {
        loop {
            if let Some(m) = self.reader.next_message()? {
                return Ok(m);
            }
            self.fill().await?;
        }
    }

    /// Reads up to the member's extension handshake: its `ut_metadata` id and metadata size.
    async fn ext_handshake(&mut self) -> Result<(u8, u64), FetchError> {
        for _ in 0..MAX_IDLE_MESSAGES {
            if let Message::Extended { id: HANDSHAKE_ID, payload } = self.next_message().await? {
                let ext = ExtHandshake::decode(&payload).map_err(|e| FetchError::Metadata(e.to_string()))?;
                let id = ext.ut_metadata.ok_or(FetchError::NoMetadataExchange)?;
                let size = ext.metadata_size.ok_or(FetchError::NoMetadataExchange)?;
                return Ok((id, size));
            }
        }
        Err(FetchError::Stalled(MAX_IDLE_MESSAGES))
    }
}

#[cfg(test)]
mod tests;
