//! The tokio side of uTP (BEP 29) on a UDP socket it shares with the DHT: a clonable handle
//! ([`UtpSocket`]) that dials and accepts [`UtpStream`]s, and the port ([`UtpPort`]) through
//! which the socket's one owner task (`net::udp_endpoint`) feeds the connection table its
//! datagrams and deadlines and takes what it has to send. Nothing here touches the socket.
//!
//! The table ([`Mux`]) sits behind a mutex that the streams and the owner take for one short,
//! non-blocking call each (the owner once per batch of datagrams, not per datagram). Waiting
//! streams' wakers live here, beside the table, and are woken after the lock is released; a
//! stream whose call gave the table something to send wakes the owner.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::sync::Notify;

use crate::clock::now;
use crate::net::mmsg::SendBatch;
use crate::utp::mux::{Key, Mux, MuxConfig, MuxStats, Wake};
use crate::utp::stream::UtpStream;

/// The table and the wakers of the streams waiting on it. Wakers are only stored for a call
/// the table told to wait, and dropped with their stream, so they are bounded by the table.
struct Table {
    mux: Mux,
    readers: HashMap<Key, Waker>,
    writers: HashMap<Key, Waker>,
    acceptor: Option<Waker>,
}

impl Table {
    /// Moves the wakers of the streams the table named into `out`.
    fn take_wakers(&mut self, out: &mut Vec<Waker>) {
        while let Some(w) = self.mux.poll_wake() {
            let waker = match w {
                Wake::Read(key) => self.readers.remove(&key),
                Wake::Write(key) => self.writers.remove(&key),
                Wake::Accept => self.acceptor.take(),
            };
            out.extend(waker);
        }
    }
}

pub(crate) struct Shared {
    table: Mutex<Table>,
    /// Wakes the owner task of the socket: datagrams are due.
    owner: Arc<Notify>,
    local: SocketAddr,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The owner task stops serving uTP once the last handle is gone; tell it now.
        self.owner.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half-updated in a way worse
        // than a lost packet; keep serving.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the table for a stream, then wakes the streams and the owner its work
    /// concerns.
    fn with<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        self.run(true, f)
    }

    /// Runs `f` for the owner task, which polls the table next anyway and need not be woken.
    fn for_owner<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        self.run(false, f)
    }

    fn run<T>(&self, wake_owner: bool, f: impl FnOnce(&mut Table) -> T) -> T {
        let mut wakers = Vec::new();
        let mut table = self.lock();
        // Datagrams already due mean the owner was already told (or is sending them now and
        // polls again before it sleeps): telling it once per burst of writes saves a wake-up
        // of the other task for every write.
        let told = table.mux.has_transmit();
        let out = f(&mut table);
        table.take_wakers(&mut wakers);
        let transmit = wake_owner && !told && table.mux.has_transmit();
        drop(table);
        if transmit {
            self.owner.notify_one();
        }
        for w in wakers {
            w.wake();
        }
        out
    }

    /// A stream call: `Some` is its answer, `None` stores the waker under `key` (among the
    /// writers' or the readers') and is `Pending`.
    pub(crate) fn poll_call<T>(
        &self,
        cx: &mut Context<'_>,
        key: Key,
        writer: bool,
        call: impl FnOnce(&mut Mux) -> Option<T>,
    ) -> Poll<T> {
        self.with(|table| match call(&mut table.mux) {
            Some(v) => Poll::Ready(v),
            None => {
                let map = if writer { &mut table.writers } else { &mut table.readers };
                map.insert(key, cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// A call with an answer at once (stats, release).
    pub(crate) fn call<T>(&self, f: impl FnOnce(&mut Mux) -> T) -> T {
        self.with(|table| f(&mut table.mux))
    }

    /// The stream of `key` is gone: its wakers go too.
    pub(crate) fn release(&self, key: Key) {
        self.with(|table| {
            table.readers.remove(&key);
            table.writers.remove(&key);
            table.mux.release(now(), key);
        });
    }
}

/// A handle on the uTP side of a UDP socket; clones share it. The owner task stops serving
/// uTP once every handle and stream is dropped.
#[derive(Clone)]
pub struct UtpSocket {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UtpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpSocket").field("local", &self.shared.local).finish()
    }
}

impl UtpSocket {
    /// uTP for the socket bound to `local`, and the port its owner task serves it through
    /// (`net::udp_endpoint::spawn`). Without an owner nothing is sent or received.
    pub fn new(local: SocketAddr, config: MuxConfig) -> (UtpSocket, UtpPort) {
        let owner = Arc::new(Notify::new());
        let table = Table {
            mux: Mux::new(config, rand::random()),
            readers: HashMap::new(),
            writers: HashMap::new(),
            acceptor: None,
        };
        let shared = Arc::new(Shared { table: Mutex::new(table), owner: Arc::clone(&owner), local });
        let port = UtpPort { shared: Arc::downgrade(&shared), owner };
        (UtpSocket { shared }, port)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.local)
    }

    /// Opens a connection to `peer`; fails when it refuses (RESET) or does not answer the
    /// SYN and its retries (a few seconds; wrap it in a timeout for less).
    pub async fn connect(&self, peer: SocketAddr) -> io::Result<UtpStream> {
        let key = self.shared.call(|mux| mux.connect(now(), peer))?;
        // The stream exists before the handshake ends, so a cancelled connect (a timeout
        // around it) drops it, and dropping it resets the half-open connection.
        let stream = UtpStream::new(Arc::clone(&self.shared), key);
        poll_fn(|cx| self.shared.poll_call(cx, key, true, |mux| mux.connected(key))).await?;
        Ok(stream)
    }

    /// The next incoming connection and its address.
    pub async fn accept(&self) -> io::Result<(UtpStream, SocketAddr)> {
        let key = poll_fn(|cx| {
            self.shared.with(|table| match table.mux.accept() {
                Some(key) => Poll::Ready(key),
                None => {
                    table.acceptor = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await;
        Ok((UtpStream::new(Arc::clone(&self.shared), key), key.0))
    }

    pub fn stats(&self) -> MuxStats {
        self.shared.lock().mux.stats()
    }
}

/// What the socket's owner task holds of uTP: it feeds datagrams and deadlines in and takes
/// datagrams out. It holds the table weakly, so the last [`UtpSocket`] or stream dropped ends
/// uTP on the socket (every call then answers `None` or does nothing).
pub struct UtpPort {
    shared: Weak<Shared>,
    owner: Arc<Notify>,
}

impl UtpPort {
    /// Whether any handle or stream is left.
    pub fn alive(&self) -> bool {
        self.shared.strong_count() > 0
    }

    /// Completes when a stream gave the table something to send (or the last handle went).
    pub async fn notified(&self) {
        self.owner.notified().await
    }

    /// A batch of uTP datagrams, under one lock.
    pub fn handle_datagrams<'a>(&self, now: Instant, datagrams: impl Iterator<Item = (SocketAddr, &'a [u8])>) {
        let Some(s) = self.shared.upgrade() else { return };
        s.for_owner(|table| {
            for (from, d) in datagrams {
                table.mux.handle_datagram(now, from, d);
            }
        });
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&self, now: Instant) {
        if let Some(s) = self.shared.upgrade() {
            s.for_owner(|table| table.mux.handle_timeout(now));
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.shared.upgrade()?.lock().mux.next_deadline()
    }

    /// Fills `batch` with what the table has to send, until it is full; true when the
    /// table may have more.
    pub fn fill(&self, now: Instant, batch: &mut SendBatch) -> bool {
        let Some(s) = self.shared.upgrade() else { return false };
        s.for_owner(|table| {
            // Bounded by the batch's size.
            while batch.push_with(|buf| table.mux.poll_transmit(now, buf)) {}
            batch.is_full() && table.mux.has_transmit()
        })
    }
}

#[cfg(test)]
mod tests;
