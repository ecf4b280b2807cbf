//! The per-peer state machine of the peer wire protocol (BEP 3), sans-IO: who chokes whom,
//! who is interested, which of our block requests are outstanding and since when, which of
//! theirs we still owe, and the timers of a connection (keep-alive, silent peers, request
//! timeouts). The session feeds it messages and `now`, and sends what `poll_message` yields.
//!
//! The request pipeline adapts to the peer: we keep about `queue_time` worth of the peer's
//! measured rate in flight (libtorrent's request_queue_time idea), so a fast peer on a
//! long-delay path is not starved by a fixed depth and a slow one is not flooded.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wire::message::{BlockRef, Message};

#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Requests kept in flight at least, and at most.
    pub min_depth: usize,
    pub max_depth: usize,
    /// Seconds of the peer's measured rate kept in flight.
    pub queue_time: Duration,
    /// A request unanswered this long is given up (and may go to another peer).
    pub request_timeout: Duration,
    /// A peer that sends nothing at all for this long is dropped.
    pub idle_timeout: Duration,
    /// We send a keep-alive when we have been silent this long.
    pub keepalive: Duration,
    /// Requests from the peer we queue at most; more is a protocol violation.
    pub max_peer_requests: usize,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            min_depth: 4,
            max_depth: 500,
            queue_time: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(150),
            keepalive: Duration::from_secs(90),
            max_peer_requests: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("peer sent nothing for {0:?}")]
    Idle(Duration),
    #[error("peer queued more than {0} requests")]
    TooManyRequests(usize),
    #[error("peer sent a block we never asked for: {0:?}")]
    UnrequestedBlock(BlockRef),
}

/// What a message from the peer means for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// They choked us: every outstanding request is void (BEP 3) and is handed back.
    Choked {
        released: Vec<BlockRef>,
    },
    Unchoked,
    Interested(bool),
    Have(u32),
    Bitfield(Vec<u8>),
    /// A block we asked for arrived.
    Block {
        block: BlockRef,
        data: Vec<u8>,
    },
    /// They ask us for a block (the session checks it and answers when unchoked).
    Request(BlockRef),
    Cancel(BlockRef),
    /// Their DHT port (BEP 5).
    DhtPort(u16),
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
}

/// Exponentially weighted byte rate, updated once a second by `handle_timeout`.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    window_bytes: u64,
    per_second: f64,
    total: u64,
}

impl Rate {
    pub fn add(&mut self, bytes: u64) {
        self.window_bytes += bytes;
        self.total += bytes;
    }

    /// Folds the bytes of the last `elapsed` into the average (weight ~ a 5 s memory).
    fn roll(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let sample = self.window_bytes as f64 / secs;
        let alpha = (secs / 5.0).min(1.0);
        self.per_second =
            if self.per_second == 0.0 { sample } else { self.per_second + alpha * (sample - self.per_second) };
        self.window_bytes = 0;
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

#[derive(Debug)]
pub struct PeerState {
    config: PeerConfig,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    /// Our requests in flight, oldest first.
    outstanding: VecDeque<(BlockRef, Instant)>,
    /// Their requests we have not served yet.
    owed: VecDeque<BlockRef>,
    out: VecDeque<Message>,
    last_received: Instant,
    last_sent: Instant,
    last_roll: Instant,
    /// Until the first rate measurement, the pipeline grows by one request per block received
    /// (TCP-like slow start), so a fast peer is not held at `min_depth` for a whole second.
    slow_start: Option<usize>,
    pub download: Rate,
    pub upload: Rate,
}

impl PeerState {
    pub fn new(now: Instant, config: PeerConfig) -> PeerState {
        PeerState {
            slow_start: Some(config.min_depth),
            config,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            outstanding: VecDeque::new(),
            owed: VecDeque::new(),
            out: VecDeque::new(),
            last_received: now,
            last_sent: now,
            last_roll: now,
            download: Rate::default(),
            upload: Rate::default(),
        }
    }

    /// A message from the peer.
    pub fn handle_message(&mut self, now: Instant, msg: Message) -> Result<Option<PeerEvent>, PeerError> {
        self.last_received = now;
        Ok(Some(match msg {
            Message::KeepAlive => return Ok(None),
            Message::Choke => {
                self.peer_choking = true;
                PeerEvent::Choked { released: self.outstanding.drain(..).map(|(b, _)| b).collect() }
            }
            Message::Unchoke => {
                self.peer_choking = false;
                PeerEvent::Unchoked
            }
            Message::Interested => {
                self.peer_interested = true;
                PeerEvent::Interested(true)
            }
            Message::NotInterested => {
                self.peer_interested = false;
                PeerEvent::Interested(false)
            }
            Message::Have(i) => PeerEvent::Have(i),
            Message::Bitfield(bits) => PeerEvent::Bitfield(bits),
            Message::Request(block) => {
                if self.am_choking {
                    // Requests while choked are dropped, as BEP 3 allows; counting them
                    // against the peer would punish a harmless race with our choke.
                    return Ok(None);
                }
                if self.owed.len() >= self.config.max_peer_requests {
                    return Err(PeerError::TooManyRequests(self.config.max_peer_requests));
                }
                self.owed.push_back(block);
                PeerEvent::Request(block)
            }
            Message::Cancel(block) => {
                self.owed.retain(|b| *b != block);
                PeerEvent::Cancel(block)
            }
            Message::Piece { index, begin, data } => {
                let block = BlockRef { index, begin, length: data.len() as u32 };
                let Some(pos) = self.outstanding.iter().position(|(b, _)| *b == block) else {
                    // A block that arrives after we cancelled or timed it out is normal in
                    // endgame; anything else is not, but neither is worth a disconnect.
                    return Err(PeerError::UnrequestedBlock(block));
                };
                self.outstanding.remove(pos);
                self.download.add(u64::from(block.length));
                if let Some(depth) = self.slow_start.as_mut() {
                    *depth = (*depth + 1).min(self.config.max_depth);
                }
                PeerEvent::Block { block, data }
            }
            Message::Port(p) => PeerEvent::DhtPort(p),
            Message::Extended { id, payload } => PeerEvent::Extended { id, payload },
        }))
    }

    /// Whether `block` was requested from this peer and is still awaited.
    pub fn is_outstanding(&self, block: &BlockRef) -> bool {
        self.outstanding.iter().any(|(b, _)| b == block)
    }

    /// How many more requests the pipeline has room for right now.
    pub fn request_room(&self) -> usize {
        if self.peer_choking || !self.am_interested {
            return 0;
        }
        self.target_depth().saturating_sub(self.outstanding.len())
    }

    /// Requests to keep in flight: the measured rate times `queue_time`, in blocks.
    pub fn target_depth(&self) -> usize {
        let blocks = self.download.per_second() * self.config.queue_time.as_secs_f64() / 16384.0;
        (blocks as usize).max(self.slow_start.unwrap_or(0)).clamp(self.config.min_depth, self.config.max_depth)
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    pub fn request(&mut self, now: Instant, block: BlockRef) {
        self.outstanding.push_back((block, now));
        self.send(now, Message::Request(block));
    }

    /// Withdraws a request (endgame duplicates, or a piece that got done elsewhere).
    pub fn cancel(&mut self, now: Instant, block: BlockRef) {
        if let Some(pos) = self.outstanding.iter().position(|(b, _)| *b == block) {
            self.outstanding.remove(pos);
            self.send(now, Message::Cancel(block));
        }
    }

    pub fn set_interested(&mut self, now: Instant, interested: bool) {
        if self.am_interested != interested {
            self.am_interested = interested;
            self.send(now, if interested { Message::Interested } else { Message::NotInterested });
        }
    }

    pub fn set_choking(&mut self, now: Instant, choking: bool) {
        if self.am_choking != choking {
            self.am_choking = choking;
            if choking {
                // BEP 3: choking discards the peer's pending requests.
                self.owed.clear();
            }
            self.send(now, if choking { Message::Choke } else { Message::Unchoke });
        }
    }

    /// The next request of theirs to serve, if we still owe it.
    pub fn next_owed(&mut self) -> Option<BlockRef> {
        if self.am_choking {
            return None;
        }
        self.owed.pop_front()
    }

    /// Whether we owe them a block we may send now (they are unchoked and asked).
    pub fn has_owed(&self) -> bool {
        !self.am_choking && !self.owed.is_empty()
    }

    /// Sends a block we read for them (the session checked it was owed).
    pub fn send_block(&mut self, now: Instant, block: BlockRef, data: Vec<u8>) {
        self.upload.add(data.len() as u64);
        self.send(now, Message::Piece { index: block.index, begin: block.begin, data });
    }

    pub fn send(&mut self, now: Instant, msg: Message) {
        self.last_sent = now;
        self.out.push_back(msg);
    }

    pub fn poll_message(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    /// Timers: rates, keep-alives, silent peers and requests that took too long (returned so
    /// the picker can hand them to someone else).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<Vec<BlockRef>, PeerError> {
        let idle = now.saturating_duration_since(self.last_received);
        if idle >= self.config.idle_timeout {
            return Err(PeerError::Idle(idle));
        }
        let since_roll = now.saturating_duration_since(self.last_roll);
        if since_roll >= Duration::from_secs(1) {
            self.download.roll(since_roll);
            self.upload.roll(since_roll);
            if self.download.per_second() > 0.0 {
                self.slow_start = None;
            }
            self.last_roll = now;
        }
        if now.saturating_duration_since(self.last_sent) >= self.config.keepalive {
            self.send(now, Message::KeepAlive);
        }
        let mut expired = Vec::new();
        while let Some((block, at)) = self.outstanding.front() {
            if now.saturating_duration_since(*at) < self.config.request_timeout {
                break;
            }
            expired.push(*block);
            self.outstanding.pop_front();
        }
        Ok(expired)
    }

    pub fn next_deadline(&self) -> Instant {
        let mut t = (self.last_received + self.config.idle_timeout)
            .min(self.last_sent + self.config.keepalive)
            .min(self.last_roll + Duration::from_secs(1));
        if let Some((_, at)) = self.outstanding.front() {
            t = t.min(*at + self.config.request_timeout);
        }
        t
    }
}

#[cfg(test)]
mod tests;
