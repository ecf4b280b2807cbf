//! The tokio driver of uTP (BEP 29) on the process's one UDP socket: a clonable handle over
//! the connection table ([`Mux`]) and the socket the DHT also uses. Whoever reads the socket
//! hands uTP datagrams to [`UtpSocket::handle_datagram`] (the DHT driver, or with the DHT off
//! the reader task of [`UtpSocket::spawn_reader`]); two tasks of its own run the connections'
//! timers and send what the kernel could not take at once. This and `stream.rs` are the only
//! uTP code that awaits or reads the clock.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::clock::now;
use crate::net::socket::{classify, Demux};
use crate::utp::mux::{Mux, MuxConfig, MuxStats};
use crate::utp::stream::UtpStream;

/// The timer task wakes at least this often, so it notices the last handle going away.
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// Datagrams the reader task takes in one go before answering them.
const RECV_BATCH: usize = 64;

pub(crate) struct Shared {
    mux: Mutex<Mux>,
    pub(crate) socket: Arc<UdpSocket>,
    timer: Arc<Notify>,
    sender: Arc<Notify>,
}

impl Shared {
    /// Runs `f` on the table, then wakes the tasks its work concerns.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Mux, Instant, &UdpSocket) -> T) -> T {
        let mut mux = self.lock();
        let out = f(&mut mux, now(), &self.socket);
        let signals = mux.take_signals();
        drop(mux);
        if signals.timer {
            self.timer.notify_one();
        }
        if signals.sender {
            self.sender.notify_one();
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, Mux> {
        // A panic while holding the lock cannot leave the table half-updated in a way worse
        // than a lost packet; keep serving.
        self.mux.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A handle on the uTP side of a UDP socket; clones share it. The tasks it starts end once
/// every handle and stream is dropped.
#[derive(Clone)]
pub struct UtpSocket {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UtpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpSocket").field("local", &self.shared.socket.local_addr().ok()).finish()
    }
}

impl UtpSocket {
    /// uTP on `socket`. Must be called inside a tokio runtime (it spawns its tasks).
    pub fn new(socket: Arc<UdpSocket>, config: MuxConfig) -> UtpSocket {
        let (timer, sender) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let shared = Arc::new(Shared {
            mux: Mutex::new(Mux::new(config, rand::random())),
            socket,
            timer: Arc::clone(&timer),
            sender: Arc::clone(&sender),
        });
        // The tasks hold the table weakly, so dropping the last handle ends them.
        tokio::spawn(timer_task(Arc::downgrade(&shared), timer));
        tokio::spawn(sender_task(Arc::downgrade(&shared), sender));
        UtpSocket { shared }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// A datagram that arrived on the socket (the caller has classified it as uTP; anything
    /// else is counted and dropped). Answers wait for [`UtpSocket::end_batch`].
    pub fn handle_datagram(&self, from: SocketAddr, bytes: &[u8]) {
        self.shared.with(|mux, t, socket| mux.handle_datagram(t, from, bytes, socket));
    }

    /// Sends the answers to the datagrams handled since the last call: one ACK for a burst.
    pub fn end_batch(&self) {
        self.shared.with(|mux, t, socket| mux.flush_dirty(t, socket));
    }

    /// Reads the socket itself, for a process without a DHT: uTP datagrams are handled, the
    /// rest dropped. Ends when every handle is gone.
    pub fn spawn_reader(&self) {
        tokio::spawn(reader_task(Arc::downgrade(&self.shared), Arc::clone(&self.shared.socket)));
    }

    /// Opens a connection to `peer`; fails when it refuses (RESET) or does not answer the
    /// SYN and its retries (a few seconds; wrap it in a timeout for less).
    pub async fn connect(&self, peer: SocketAddr) -> io::Result<UtpStream> {
        let key = self.shared.with(|mux, t, socket| mux.connect(t, peer, socket))?;
        // The stream exists before the handshake ends, so a cancelled connect (a timeout
        // around it) drops it, and dropping it resets the half-open connection.
        let stream = UtpStream::new(Arc::clone(&self.shared), key);
        poll_fn(|cx| self.shared.with(|mux, _, _| mux.poll_connected(key, cx))).await?;
        Ok(stream)
    }

    /// The next incoming connection and its address.
    pub async fn accept(&self) -> io::Result<(UtpStream, SocketAddr)> {
        let key = poll_fn(|cx| self.shared.with(|mux, _, _| mux.poll_accept(cx))).await;
        Ok((UtpStream::new(Arc::clone(&self.shared), key), key.0))
    }

    pub fn stats(&self) -> MuxStats {
        self.shared.lock().stats()
    }
}

/// Sleeps until the earliest deadline of any connection (or until one moves earlier) and runs
/// the timers that are due.
async fn timer_task(shared: Weak<Shared>, notify: Arc<Notify>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let deadline = s.lock().next_deadline();
        drop(s);
        let wake = deadline.unwrap_or_else(|| now() + IDLE_WAKE).min(now() + IDLE_WAKE);
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            _ = notify.notified() => {}
        }
        let Some(s) = shared.upgrade() else { return };
        s.with(|mux, t, socket| mux.handle_timeouts(t, socket));
    }
}

/// Sends the datagrams that met a full socket, waiting for it to become writable.
async fn sender_task(shared: Weak<Shared>, notify: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(IDLE_WAKE) => {}
        }
        // Bounded: each pass sends or waits for writability, and the queue is bounded.
        loop {
            let Some(s) = shared.upgrade() else { return };
            if s.with(|mux, _, socket| mux.drain_queue(socket)) {
                // Connections that held packets back while the queue was full go now.
                s.with(|mux, t, socket| mux.flush_all(t, socket));
                if s.with(|mux, _, socket| mux.drain_queue(socket)) {
                    break;
                }
            }
            let socket = Arc::clone(&s.socket);
            drop(s);
            if tokio::time::timeout(IDLE_WAKE, socket.writable()).await.is_err() {
                // Still not writable after a second: check the handles are still there.
                continue;
            }
        }
    }
}

/// The socket's reader when no DHT driver reads it.
async fn reader_task(shared: Weak<Shared>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let first = match tokio::time::timeout(IDLE_WAKE, socket.recv_from(&mut buf)).await {
            Ok(Ok(got)) => Some(got),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "uTP reader: recv_from failed");
                None
            }
            Err(_) => None,
        };
        let Some(s) = shared.upgrade() else { return };
        let Some((n, from)) = first else { continue };
        feed(&s, from, &buf[..n]);
        for _ in 0..RECV_BATCH {
            match socket.try_recv_from(&mut buf) {
                Ok((n, from)) => feed(&s, from, &buf[..n]),
                Err(_) => break,
            }
        }
        s.with(|mux, t, sock| mux.flush_dirty(t, sock));
    }
}

fn feed(shared: &Shared, from: SocketAddr, datagram: &[u8]) {
    // KRPC and anything else: nobody here speaks it.
    if classify(datagram) == Demux::Utp {
        shared.with(|mux, t, socket| mux.handle_datagram(t, from, datagram, socket));
    }
}

#[cfg(test)]
mod tests;
