//! A uTP connection as a tokio byte stream (`AsyncRead + AsyncWrite`), so the peer wire runs
//! over it exactly as over TCP. Reads and writes go straight into the sans-IO connection held
//! by the socket's table (one short lock per call); what they make it send is sent by the
//! socket's owner task. The stream bounds how long a shutdown may wait for the FIN to be
//! acknowledged (BEP 29 has no TIME_WAIT; the connection's own retransmission limit ends it
//! otherwise).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::utp::conn::ConnStats;
use crate::utp::mux::Key;
use crate::utp::socket::Shared;

/// The longest `shutdown` waits for our FIN to be acknowledged.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

pub struct UtpStream {
    shared: Arc<Shared>,
    key: Key,
    shutdown_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpStream").field("peer", &self.key.0).field("recv_id", &self.key.1).finish()
    }
}

impl UtpStream {
    pub(crate) fn new(shared: Arc<Shared>, key: Key) -> UtpStream {
        UtpStream { shared, key, shutdown_timer: None }
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.key.0
    }

    /// The connection's counters (None once it is gone from the table).
    pub fn stats(&self) -> Option<ConnStats> {
        self.shared.call(|mux| mux.conn_stats(self.key))
    }
}

impl AsyncRead for UtpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let key = self.key;
        let dst = buf.initialize_unfilled();
        match self.shared.poll_call(cx, key, false, |mux| mux.read(key, dst)) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for UtpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let key = self.key;
        self.shared.poll_call(cx, key, true, |mux| mux.write(key, data))
    }

    /// Written bytes are in the connection's send buffer, which is what a kernel socket
    /// buffer is to TCP: there is nothing more to push.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let key = self.key;
        if let Poll::Ready(r) = self.shared.poll_call(cx, key, true, |mux| mux.shutdown(key)) {
            return Poll::Ready(r);
        }
        let timer = self.shutdown_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(SHUTDOWN_WAIT)));
        match timer.as_mut().poll(cx) {
            // The FIN stays queued; the connection keeps retrying it after we stop waiting.
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for UtpStream {
    fn drop(&mut self) {
        self.shared.release(self.key);
    }
}
