//! The stream side of the connection table: starting and accepting connections (BEP 29
//! handshake), and the reads, writes, shutdowns and drops of [`super::super::stream`]'s
//! `UtpStream`, each turned into calls on its sans-IO connection. A call that cannot finish
//! yet returns `None` and notes the wait; [`Mux::poll_wake`] names the stream when it may go
//! on. What a call makes the connection send leaves through [`Mux::poll_transmit`].

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use rand::RngExt;

use super::{conn_error, gone, Entry, Holder, Key, Mux};
use crate::utp::conn::{ConnError, Connection, State};

impl Mux {
    /// Starts an outgoing connection; the caller waits in [`Mux::connected`].
    pub fn connect(&mut self, now: Instant, peer: SocketAddr) -> io::Result<Key> {
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
        self.mark_dirty(key);
        Ok(key)
    }

    /// Whether the handshake of `key` ended: `None` while it goes on (a [`super::Wake::Write`]
    /// says when to ask again).
    pub fn connected(&mut self, key: Key) -> Option<io::Result<()>> {
        let Some(entry) = self.conns.get_mut(&key) else { return Some(Err(gone())) };
        match entry.conn.state() {
            State::SynSent => {
                entry.want_write = true;
                None
            }
            State::Closed => Some(Err(match entry.conn.error() {
                Some(ConnError::Reset) => io::Error::new(io::ErrorKind::ConnectionRefused, "uTP connection refused"),
                Some(e) => conn_error(e),
                None => gone(),
            })),
            State::SynRecv | State::Connected => Some(Ok(())),
        }
    }

    /// The next incoming connection, handed to a stream; `None` waits for a
    /// [`super::Wake::Accept`].
    pub fn accept(&mut self) -> Option<Key> {
        while let Some(key) = self.backlog.pop_front() {
            if let Some(entry) = self.conns.get_mut(&key) {
                entry.holder = Holder::Stream;
                return Some(key);
            }
        }
        self.want_accept = true;
        None
    }

    /// Reads into `buf`: `Some(Ok(0))` at the end of the stream, `None` when nothing is there
    /// yet (a [`super::Wake::Read`] follows).
    pub fn read(&mut self, key: Key, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let Some(entry) = self.conns.get_mut(&key) else { return Some(Err(gone())) };
        let n = entry.conn.read(buf);
        if n > 0 {
            self.stats.bytes_read += n as u64;
            // Reading opened the receive window: the peer may be waiting to hear of it.
            self.mark_dirty(key);
            return Some(Ok(n));
        }
        if entry.conn.at_eof() {
            return Some(Ok(0));
        }
        if let Some(e) = entry.conn.error() {
            return Some(Err(conn_error(e)));
        }
        if entry.conn.state() == State::Closed {
            return Some(Ok(0));
        }
        entry.want_read = true;
        None
    }

    /// Takes what fits of `data` into the send buffer; `None` when nothing fits (a
    /// [`super::Wake::Write`] follows).
    pub fn write(&mut self, key: Key, data: &[u8]) -> Option<io::Result<usize>> {
        let Some(entry) = self.conns.get_mut(&key) else { return Some(Err(gone())) };
        if let Some(e) = entry.conn.error() {
            return Some(Err(conn_error(e)));
        }
        if entry.conn.state() == State::Closed || entry.fin_queued {
            return Some(Err(io::Error::new(io::ErrorKind::BrokenPipe, "uTP connection is closed")));
        }
        if data.is_empty() {
            return Some(Ok(0));
        }
        let n = entry.conn.write(data);
        if n == 0 {
            entry.want_write = true;
            return None;
        }
        self.stats.bytes_written += n as u64;
        self.mark_dirty(key);
        Some(Ok(n))
    }

    /// Queues our FIN (once); done when it was acked or the connection ended, `None` before.
    pub fn shutdown(&mut self, key: Key) -> Option<io::Result<()>> {
        let Some(entry) = self.conns.get_mut(&key) else { return Some(Ok(())) };
        if !entry.fin_queued && entry.conn.state() != State::Closed {
            entry.fin_queued = true;
            entry.conn.close();
            self.mark_dirty(key);
        }
        let entry = self.conns.get_mut(&key)?;
        // Once the peer acked our FIN the close has succeeded, whatever comes after: a peer
        // that has already forgotten the connection answers our late window update with a
        // RESET, and that must not turn a clean close into an error.
        if entry.conn.all_acked() {
            return Some(Ok(()));
        }
        if entry.conn.state() == State::Closed {
            return Some(match entry.conn.error() {
                Some(e) => Err(conn_error(e)),
                None => Ok(()),
            });
        }
        entry.want_write = true;
        None
    }

    /// The stream was dropped: a connection still being set up is reset, an established one
    /// closes gracefully in the background (bounded by `linger`).
    pub fn release(&mut self, now: Instant, key: Key) {
        let Some(entry) = self.conns.get_mut(&key) else { return };
        entry.holder = Holder::Dropped(now);
        entry.want_read = false;
        entry.want_write = false;
        match entry.conn.state() {
            State::SynSent => {
                // `remove` sends the RESET of a connection that is not closed yet.
                self.remove(now, key);
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
        self.mark_dirty(key);
    }
}
