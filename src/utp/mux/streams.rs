//! The stream side of the connection table: starting and accepting connections (BEP 29
//! handshake), and the reads, writes, shutdowns and drops of [`super::super::stream`]'s
//! `UtpStream`, each turned into calls on its sans-IO connection plus a registered waker.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Instant;

use rand::RngExt;

use super::{conn_error, gone, Entry, Holder, Key, Mux, Transmit};
use crate::utp::conn::{ConnError, Connection, State};

impl Mux {
    /// Starts an outgoing connection; the caller waits in [`Mux::poll_connected`].
    pub fn connect(&mut self, now: Instant, peer: SocketAddr, tx: &impl Transmit) -> io::Result<Key> {
        if self.conns.len() >= self.config.max_connections {
            return Err(io::Error::other("too many uTP connections"));
        }
        // A receive id nobody at that address uses; the table is far from 65,536 entries, so
        // a few tries are plenty.
        let key = (0..64)
            .map(|_| (peer, self.rng.random::<u16>()))
            .find(|k| !self.conns.contains_key(k))
            .ok_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free uTP connection id"))?;
        let seq = self.rng.random::<u16>();
        let conn = Connection::connect(now, self.config_for(None), key.1, seq);
        self.conns.insert(key, Entry::new(conn, Holder::Stream));
        self.stats.connected += 1;
        self.flush(now, key, tx);
        Ok(key)
    }

    pub fn poll_connected(&mut self, key: Key, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(entry) = self.conns.get_mut(&key) else { return Poll::Ready(Err(gone())) };
        match entry.conn.state() {
            State::SynSent => {
                entry.write_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            State::Closed => Poll::Ready(Err(match entry.conn.error() {
                Some(ConnError::Reset) => io::Error::new(io::ErrorKind::ConnectionRefused, "uTP connection refused"),
                Some(e) => conn_error(e),
                None => gone(),
            })),
            State::SynRecv | State::Connected => Poll::Ready(Ok(())),
        }
    }

    /// The next incoming connection, handed to a stream.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Key> {
        while let Some(key) = self.backlog.pop_front() {
            if let Some(entry) = self.conns.get_mut(&key) {
                entry.holder = Holder::Stream;
                return Poll::Ready(key);
            }
        }
        self.accept_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub fn poll_read(
        &mut self,
        now: Instant,
        key: Key,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        tx: &impl Transmit,
    ) -> Poll<io::Result<usize>> {
        let Some(entry) = self.conns.get_mut(&key) else { return Poll::Ready(Err(gone())) };
        let n = entry.conn.read(buf);
        if n > 0 {
            self.stats.bytes_read += n as u64;
            // Reading opened the receive window: the peer may be waiting to hear of it.
            self.flush(now, key, tx);
            return Poll::Ready(Ok(n));
        }
        if entry.conn.at_eof() {
            return Poll::Ready(Ok(0));
        }
        if let Some(e) = entry.conn.error() {
            return Poll::Ready(Err(conn_error(e)));
        }
        if entry.conn.state() == State::Closed {
            return Poll::Ready(Ok(0));
        }
        entry.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub fn poll_write(
        &mut self,
        now: Instant,
        key: Key,
        cx: &mut Context<'_>,
        data: &[u8],
        tx: &impl Transmit,
    ) -> Poll<io::Result<usize>> {
        let Some(entry) = self.conns.get_mut(&key) else { return Poll::Ready(Err(gone())) };
        if let Some(e) = entry.conn.error() {
            return Poll::Ready(Err(conn_error(e)));
        }
        if entry.conn.state() == State::Closed || entry.fin_queued {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "uTP connection is closed")));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = entry.conn.write(data);
        if n == 0 {
            entry.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        self.stats.bytes_written += n as u64;
        self.flush(now, key, tx);
        Poll::Ready(Ok(n))
    }

    /// Queues our FIN (once) and is ready when it was acked or the connection ended.
    pub fn poll_shutdown(
        &mut self,
        now: Instant,
        key: Key,
        cx: &mut Context<'_>,
        tx: &impl Transmit,
    ) -> Poll<io::Result<()>> {
        let Some(entry) = self.conns.get_mut(&key) else { return Poll::Ready(Ok(())) };
        if !entry.fin_queued && entry.conn.state() != State::Closed {
            entry.fin_queued = true;
            entry.conn.close();
            self.flush(now, key, tx);
        }
        let Some(entry) = self.conns.get_mut(&key) else { return Poll::Ready(Ok(())) };
        // Once the peer acked our FIN the close has succeeded, whatever comes after: a peer
        // that has already forgotten the connection answers our late window update with a
        // RESET, and that must not turn a clean close into an error.
        if entry.conn.all_acked() {
            return Poll::Ready(Ok(()));
        }
        if entry.conn.state() == State::Closed {
            return Poll::Ready(match entry.conn.error() {
                Some(e) => Err(conn_error(e)),
                None => Ok(()),
            });
        }
        entry.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The stream was dropped: a connection still being set up is reset, an established one
    /// closes gracefully in the background (bounded by `linger`).
    pub fn release(&mut self, now: Instant, key: Key, tx: &impl Transmit) {
        let Some(entry) = self.conns.get_mut(&key) else { return };
        entry.holder = Holder::Dropped(now);
        entry.read_waker = None;
        entry.write_waker = None;
        match entry.conn.state() {
            State::SynSent => {
                entry.conn.reset();
                self.flush(now, key, tx);
                self.remove(now, key, tx);
                return;
            }
            State::Closed => {}
            State::SynRecv | State::Connected => {
                if !entry.fin_queued {
                    entry.fin_queued = true;
                    entry.conn.close();
                }
            }
        }
        self.flush(now, key, tx);
    }
}
