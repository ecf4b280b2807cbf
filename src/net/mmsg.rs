//! Batched datagram I/O for the UDP socket that BEP 5 (KRPC) and BEP 29 (uTP) share: on Linux
//! one `recvmmsg` takes up to [`MAX_BATCH`] datagrams and one `sendmmsg` sends as many, so a
//! uTP transfer at hundreds of MB/s pays a system call per batch, not per datagram. Elsewhere
//! the same API falls back to one datagram per call.
//!
//! All `unsafe` of the crate's datagram path is in the `sys` module below; the API is safe:
//! batches own their buffers, and the kernel is only ever told about memory they own.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call at most.
pub const MAX_BATCH: usize = 32;

/// Buffers for up to `slots` received datagrams of up to `slot_size` bytes each.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    got: Vec<(SocketAddr, usize)>,
    truncated: u64,
}

impl RecvBatch {
    /// `slots` is capped at [`MAX_BATCH`]. A datagram longer than `slot_size` is dropped and
    /// counted in [`RecvBatch::truncated`] (a cut-off packet would only be misparsed).
    pub fn new(slots: usize, slot_size: usize) -> RecvBatch {
        let slots = slots.clamp(1, MAX_BATCH);
        RecvBatch { bufs: vec![vec![0; slot_size]; slots], got: Vec::with_capacity(slots), truncated: 0 }
    }

    /// The datagrams of the last receive, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.got.iter().zip(&self.bufs).map(|((from, len), buf)| (*from, &buf[..*len]))
    }

    pub fn len(&self) -> usize {
        self.got.len()
    }

    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// Datagrams dropped so far because they did not fit a slot.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }
}

/// Datagrams to send, in order; buffers are reused from batch to batch.
#[derive(Default)]
pub struct SendBatch {
    slots: Vec<(SocketAddr, Vec<u8>)>,
    /// Slots in use.
    len: usize,
    /// Slots before this one were sent (or failed for good).
    sent: usize,
}

impl SendBatch {
    pub fn new() -> SendBatch {
        SendBatch::default()
    }

    /// Datagrams waiting to go.
    pub fn pending(&self) -> usize {
        self.len - self.sent
    }

    pub fn is_full(&self) -> bool {
        self.len >= MAX_BATCH
    }

    /// Adds a datagram to `to` written by `fill` into a cleared buffer; `fill` returns false
    /// when it had nothing to write, and then nothing is added. Returns what `fill` returned,
    /// or false without calling it when the batch is full.
    pub fn push_with(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> Option<SocketAddr>) -> bool {
        if self.is_full() {
            return false;
        }
        if self.slots.len() == self.len {
            self.slots.push((SocketAddr::from(([0, 0, 0, 0], 0)), Vec::new()));
        }
        let slot = &mut self.slots[self.len];
        slot.1.clear();
        match fill(&mut slot.1) {
            Some(to) => {
                slot.0 = to;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub fn push(&mut self, to: SocketAddr, datagram: &[u8]) -> bool {
        self.push_with(|buf| {
            buf.extend_from_slice(datagram);
            Some(to)
        })
    }

    fn unsent(&self) -> &[(SocketAddr, Vec<u8>)] {
        &self.slots[self.sent..self.len]
    }

    /// `n` more datagrams have left.
    fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.len);
        if self.sent == self.len {
            // Everything went: the next datagram takes the first slot again.
            self.sent = 0;
            self.len = 0;
        }
    }
}

/// Receives what the socket has queued, up to the batch's size, without waiting; `WouldBlock`
/// when nothing is queued (and tokio's readiness is cleared, so `readable()` waits again).
pub fn try_recv(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<usize> {
    batch.got.clear();
    socket.try_io(Interest::READABLE, || sys::recv(socket, batch))?;
    Ok(batch.got.len())
}

/// Sends the batch's waiting datagrams until the socket would block; returns how many left.
/// A datagram the kernel refuses for another reason (no route, a message too long) is
/// dropped, as a lost packet would be: the protocols above retransmit or give up.
pub fn try_send(socket: &UdpSocket, batch: &mut SendBatch) -> io::Result<usize> {
    let mut total = 0;
    // Each round but an interrupted one sends or drops at least one datagram.
    for _ in 0..2 * MAX_BATCH {
        if batch.pending() == 0 {
            break;
        }
        match socket.try_io(Interest::WRITABLE, || sys::send(socket, batch.unsent())) {
            Ok(0) => break,
            Ok(n) => {
                batch.advance(n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return if total > 0 { Ok(total) } else { Err(e) };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // sendmmsg reports the error of the first datagram it could not send.
                tracing::trace!(to = %batch.unsent()[0].0, error = %e, "UDP send failed");
                batch.advance(1);
            }
        }
    }
    Ok(total)
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use socket2::SockAddr;
    use tokio::net::UdpSocket;

    use super::{RecvBatch, MAX_BATCH};

    pub fn recv(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<()> {
        let n = batch.bufs.len().min(MAX_BATCH);
        // SAFETY: all-zero bytes are a valid value of these plain C structs.
        let mut names: [libc::sockaddr_storage; MAX_BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        for i in 0..n {
            iovs[i] = libc::iovec { iov_base: batch.bufs[i].as_mut_ptr().cast(), iov_len: batch.bufs[i].len() };
            msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..n]` point at `names`, `iovs` and the batch's buffers, all alive and
        // exclusively borrowed for the call, with their true lengths; the kernel writes only
        // within them. MSG_DONTWAIT: the socket is tokio's and must never block a worker.
        let got = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        for i in 0..got as usize {
            let hdr = &msgs[i].msg_hdr;
            if hdr.msg_flags & libc::MSG_TRUNC != 0 {
                batch.truncated += 1;
                continue;
            }
            // A source we cannot name (not IPv4 or IPv6) cannot be answered: skip it.
            if let Some(from) = to_socket_addr(&names[i]) {
                batch.got.push((from, msgs[i].msg_len as usize));
                if batch.got.len() - 1 != i {
                    // Keep each datagram in the slot its position in `got` says.
                    let last = batch.got.len() - 1;
                    batch.bufs.swap(last, i);
                }
            }
        }
        Ok(())
    }

    pub fn send(socket: &UdpSocket, datagrams: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
        let n = datagrams.len().min(MAX_BATCH);
        let names: Vec<SockAddr> = datagrams[..n].iter().map(|(to, _)| SockAddr::from(*to)).collect();
        // SAFETY: all-zero bytes are a valid value of these plain C structs.
        let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        for i in 0..n {
            // The kernel only reads through these pointers (sendmmsg), despite the `mut`.
            iovs[i] = libc::iovec { iov_base: datagrams[i].1.as_ptr() as *mut _, iov_len: datagrams[i].1.len() };
            msgs[i].msg_hdr.msg_name = names[i].as_ptr() as *mut _;
            msgs[i].msg_hdr.msg_namelen = names[i].len();
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..n]` point at `names`, `iovs` and the datagrams, alive for the call
        // and read-only for the kernel, with their true lengths.
        let sent =
            unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }

    fn to_socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match name.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in, which it is big
                // and aligned enough for.
                let a = unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let a = unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
            }
            _ => None,
        }
    }
}

/// One datagram per call where there is no recvmmsg/sendmmsg.
#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;
    use std::net::SocketAddr;

    use tokio::net::UdpSocket;

    use super::RecvBatch;

    pub fn recv(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<()> {
        // The portable call cannot tell a truncated datagram from a full one.
        let (n, from) = socket.try_recv_from(&mut batch.bufs[0])?;
        batch.got.push((from, n));
        Ok(())
    }

    pub fn send(socket: &UdpSocket, datagrams: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
        let (to, d) = &datagrams[0];
        socket.try_send_to(d, *to).map(|_| 1)
    }
}

#[cfg(test)]
mod tests;
