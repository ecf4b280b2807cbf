//! The one owner of a bound UDP socket: KRPC (BEP 5) and uTP (BEP 29) share the port, and one
//! task reads it, tells the two apart by their first byte ([`classify`]), feeds each side,
//! and sends what both have for the wire. Nothing else reads the socket or sends on it.
//!
//! - uTP is served through its [`UtpPort`]: a batch of its datagrams under one lock, then its
//!   answers polled out (`poll_transmit`), its timers run at its `next_deadline`, and a stream
//!   that wrote wakes this task.
//! - The DHT gets KRPC datagrams over a bounded channel (a full channel drops the batch and
//!   counts it: a node that cannot keep up must not queue without bound) and hands its
//!   datagrams back over another, which this task drains into the socket. Its per-source
//!   rate limiter and abuse accounting run where they always did, in the node. A received
//!   batch crosses as one [`KrpcBatch`]: all its bytes in one buffer, so the hop costs two
//!   allocations per batch, not one per datagram.
//!
//! Datagrams move in batches both ways ([`super::mmsg`]: recvmmsg/sendmmsg on Linux), so a
//! busy socket costs a system call per batch rather than per datagram.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::clock::now;
use crate::net::mmsg::{self, RecvBatch, SendBatch, MAX_BATCH};
use crate::net::socket::{classify, Demux};
use crate::utp::socket::UtpPort;
use crate::utp::{MuxConfig, UtpSocket};

/// One datagram: its peer (source or destination) and its bytes.
pub type Datagram = (SocketAddr, Vec<u8>);

/// Batches of KRPC datagrams waiting for the DHT at most; more are dropped and counted.
pub const KRPC_QUEUE: usize = 64;

/// The KRPC datagrams of one receive call, on their way to the DHT: their bytes back to back
/// in one buffer and, per datagram, its source and where its bytes end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KrpcBatch {
    bytes: Vec<u8>,
    ends: Vec<(SocketAddr, usize)>,
}

impl KrpcBatch {
    /// An empty batch with room for `datagrams` datagrams of `bytes` bytes in all.
    pub fn with_capacity(datagrams: usize, bytes: usize) -> KrpcBatch {
        KrpcBatch { bytes: Vec::with_capacity(bytes), ends: Vec::with_capacity(datagrams) }
    }

    pub fn push(&mut self, from: SocketAddr, datagram: &[u8]) {
        self.bytes.extend_from_slice(datagram);
        self.ends.push((from, self.bytes.len()));
    }

    /// The datagrams in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|(_, end)| *end));
        self.ends.iter().zip(starts).map(|((from, end), start)| (*from, &self.bytes[start..*end]))
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// Receive calls in one go before the task sends, runs timers and listens to the DHT.
const RECV_ROUNDS: usize = 8;
/// Send batches in one go before the task reads again.
const SEND_ROUNDS: usize = 16;
/// The task looks at least this often whether anyone still uses the socket.
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// Receive slots hold the biggest UDP datagram: a jumbo uTP packet on loopback is ~32 KiB.
const SLOT_BYTES: usize = 65_536;

/// What the owner counted, readable from any task.
#[derive(Debug, Default)]
pub struct EndpointCounters {
    /// Datagrams that are neither KRPC nor uTP, or for a side this socket does not serve.
    pub unknown: AtomicU64,
    /// KRPC datagrams dropped because the DHT's queue was full.
    pub krpc_dropped: AtomicU64,
    /// Datagrams bigger than a receive slot, dropped.
    pub truncated: AtomicU64,
    /// System calls that received and datagrams received, for the batching ratio.
    pub recv_calls: AtomicU64,
    pub received: AtomicU64,
    pub send_calls: AtomicU64,
    pub sent: AtomicU64,
}

/// The DHT's end of a socket: KRPC datagrams in, datagrams to send out.
pub struct KrpcLink {
    pub local: SocketAddr,
    pub incoming: mpsc::Receiver<KrpcBatch>,
    pub outgoing: mpsc::Sender<Vec<Datagram>>,
    pub counters: Arc<EndpointCounters>,
}

/// The owner task's end of the KRPC channels.
struct KrpcSide {
    to_dht: mpsc::Sender<KrpcBatch>,
    from_dht: mpsc::Receiver<Vec<Datagram>>,
    /// The DHT dropped its sender: nothing more will come from it.
    from_closed: bool,
}

/// Starts the owner task of `socket`, serving uTP through `utp` and, with `krpc`, the DHT
/// through the link returned. The task ends when neither is used any more.
pub fn spawn(socket: Arc<UdpSocket>, utp: Option<UtpPort>, krpc: bool) -> io::Result<Option<KrpcLink>> {
    let local = socket.local_addr()?;
    let counters = Arc::new(EndpointCounters::default());
    let (link, side) = if krpc {
        let (to_dht, incoming) = mpsc::channel(KRPC_QUEUE);
        let (outgoing, from_dht) = mpsc::channel(KRPC_QUEUE);
        let link = KrpcLink { local, incoming, outgoing, counters: Arc::clone(&counters) };
        (Some(link), Some(KrpcSide { to_dht, from_dht, from_closed: false }))
    } else {
        (None, None)
    };
    let owner = Owner {
        socket,
        utp,
        krpc: side,
        counters,
        recv: RecvBatch::new(MAX_BATCH, SLOT_BYTES),
        send: SendBatch::new(),
        krpc_out: VecDeque::new(),
        reported_truncated: 0,
    };
    tokio::spawn(owner.run());
    Ok(link)
}

/// uTP alone on `socket` (no DHT): its owner task is started, and KRPC datagrams are counted
/// as unknown.
pub fn spawn_utp(socket: Arc<UdpSocket>, config: MuxConfig) -> io::Result<UtpSocket> {
    let (utp, port) = UtpSocket::new(socket.local_addr()?, config);
    spawn(socket, Some(port), false)?;
    Ok(utp)
}

/// KRPC alone on `socket` (the second socket of a dual-stack node, a DHT without uTP).
pub fn spawn_krpc(socket: Arc<UdpSocket>) -> io::Result<KrpcLink> {
    spawn(socket, None, true)?.ok_or_else(|| io::Error::other("no KRPC link"))
}

struct Owner {
    socket: Arc<UdpSocket>,
    utp: Option<UtpPort>,
    krpc: Option<KrpcSide>,
    counters: Arc<EndpointCounters>,
    recv: RecvBatch,
    send: SendBatch,
    /// KRPC datagrams taken from the DHT and not yet in a send batch (one channel batch).
    krpc_out: VecDeque<Datagram>,
    reported_truncated: u64,
}

impl Owner {
    fn alive(&self) -> bool {
        let utp = self.utp.as_ref().is_some_and(|u| u.alive());
        let krpc = self.krpc.as_ref().is_some_and(|k| !k.from_closed || !k.to_dht.is_closed());
        utp || krpc || !self.krpc_out.is_empty()
    }

    async fn run(mut self) {
        loop {
            let tx = self.transmit();
            let (blocked, more) = (tx == Tx::Blocked, tx == Tx::More);
            if !self.alive() {
                break;
            }
            if self.utp.as_ref().is_some_and(|u| !u.alive()) {
                self.utp = None;
            }
            let t = now();
            let deadline =
                self.utp.as_ref().and_then(|u| u.next_deadline()).map_or(t + IDLE_WAKE, |d| d.min(t + IDLE_WAKE));
            let take_krpc = self.krpc_out.is_empty() && self.krpc.as_ref().is_some_and(|k| !k.from_closed);
            tokio::select! {
                r = self.socket.readable() => match r {
                    Ok(()) => self.receive(),
                    Err(e) => tracing::debug!(error = %e, "UDP socket not readable"),
                },
                _ = notified(self.utp.as_ref()) => {}
                batch = from_dht(self.krpc.as_mut()), if take_krpc => match batch {
                    Some(b) => self.krpc_out.extend(b),
                    None => {
                        if let Some(k) = &mut self.krpc {
                            k.from_closed = true;
                        }
                    }
                },
                _ = self.socket.writable(), if blocked => {}
                // More to send than one turn takes: let other tasks run, then go on.
                _ = tokio::task::yield_now(), if more => {}
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
            }
            self.timers(now());
        }
        tracing::debug!(local = ?self.socket.local_addr().ok(), "UDP socket owner done");
    }

    /// Runs uTP's timers when they are due.
    fn timers(&mut self, t: Instant) {
        if let Some(utp) = &self.utp {
            if utp.next_deadline().is_some_and(|d| d <= t) {
                utp.handle_timeout(t);
            }
        }
    }

    /// Reads what the socket has queued (a bounded number of batches) and hands it out.
    fn receive(&mut self) {
        for _ in 0..RECV_ROUNDS {
            match mmsg::try_recv(&self.socket, &mut self.recv) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // An ICMP error queued on the socket (port unreachable after a send to a
                    // closed port) surfaces here; the next read goes on.
                    tracing::trace!(error = %e, "UDP receive failed");
                    continue;
                }
            }
            let t = now();
            self.counters.recv_calls.fetch_add(1, Ordering::Relaxed);
            self.counters.received.fetch_add(self.recv.len() as u64, Ordering::Relaxed);
            let mut krpc = KrpcBatch::default();
            if self.krpc.is_some() {
                // Sized up front: one allocation for the bytes, one for the sources.
                let dht = self.recv.iter().filter(|(_, d)| classify(d) == Demux::Dht);
                let (n, bytes) = dht.fold((0, 0), |(n, b), (_, d)| (n + 1, b + d.len()));
                krpc = KrpcBatch::with_capacity(n, bytes);
            }
            let mut unknown = 0;
            for (from, d) in self.recv.iter() {
                match classify(d) {
                    Demux::Dht if self.krpc.is_some() => krpc.push(from, d),
                    Demux::Utp if self.utp.is_some() => {}
                    _ => unknown += 1,
                }
            }
            if let Some(utp) = &self.utp {
                utp.handle_datagrams(t, self.recv.iter().filter(|(_, d)| classify(d) == Demux::Utp));
            }
            if unknown > 0 {
                self.counters.unknown.fetch_add(unknown, Ordering::Relaxed);
            }
            if !krpc.is_empty() {
                self.hand_to_dht(krpc);
            }
            if self.recv.len() < MAX_BATCH {
                // The queue is empty: save a system call that would only say so.
                break;
            }
        }
        let truncated = self.recv.truncated();
        if truncated > self.reported_truncated {
            self.counters.truncated.fetch_add(truncated - self.reported_truncated, Ordering::Relaxed);
            self.reported_truncated = truncated;
        }
    }

    fn hand_to_dht(&mut self, batch: KrpcBatch) {
        let Some(k) = &self.krpc else { return };
        let n = batch.len() as u64;
        match k.to_dht.try_send(batch) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.krpc_dropped.fetch_add(n, Ordering::Relaxed);
            }
            // The DHT is gone: its datagrams are nobody's.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.unknown.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Sends what the DHT and uTP have, a bounded number of batches.
    fn transmit(&mut self) -> Tx {
        let t = now();
        let mut more = false;
        for _ in 0..SEND_ROUNDS {
            if self.send.pending() == 0 {
                // KRPC first: a few small datagrams that must not wait behind a transfer.
                while !self.send.is_full() {
                    let Some((to, d)) = self.krpc_out.pop_front() else { break };
                    self.send.push(to, &d);
                }
                more = !self.krpc_out.is_empty();
                if let Some(utp) = &self.utp {
                    more |= utp.fill(t, &mut self.send);
                }
            }
            if self.send.pending() == 0 {
                return Tx::Done;
            }
            match mmsg::try_send(&self.socket, &mut self.send) {
                Ok(n) => {
                    self.counters.send_calls.fetch_add(1, Ordering::Relaxed);
                    self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Tx::Blocked,
                Err(e) => tracing::trace!(error = %e, "UDP send failed"),
            }
            if self.send.pending() > 0 {
                return Tx::Blocked;
            }
        }
        if more {
            Tx::More
        } else {
            Tx::Done
        }
    }
}

/// How a round of sending ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    /// Nothing is left to send.
    Done,
    /// The socket is full; datagrams wait for it.
    Blocked,
    /// The round's share is sent and more is due.
    More,
}

/// Completes when uTP wants the owner, or never without uTP.
async fn notified(utp: Option<&UtpPort>) {
    match utp {
        Some(u) => u.notified().await,
        None => std::future::pending().await,
    }
}

async fn from_dht(krpc: Option<&mut KrpcSide>) -> Option<Vec<Datagram>> {
    match krpc {
        Some(k) => k.from_dht.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
