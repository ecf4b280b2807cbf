//! The batch API on loopback sockets (127.0.230.1 and 127.0.231.1): many datagrams in one
//! call with their contents and sources exact, a datagram too big for its slot dropped and
//! counted, a send batch that leaves whole.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::net::socket::bind_udp;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

fn on(n: u8) -> UdpSocket {
    bind_udp(SocketAddr::from((Ipv4Addr::new(127, 0, n, 1), 0))).expect("bind loopback")
}

/// Receives until `want` datagrams arrived, at most `calls` receive calls; returns them and
/// the number of calls it took.
async fn recv_all(
    socket: &UdpSocket,
    batch: &mut RecvBatch,
    want: usize,
    calls: usize,
) -> (Vec<(SocketAddr, Vec<u8>)>, usize) {
    let mut got = Vec::new();
    let mut used = 0;
    while got.len() < want && used < calls {
        tokio::time::timeout(LIMIT, socket.readable()).await.expect("readable in time").unwrap();
        match try_recv(socket, batch) {
            Ok(_) => {
                used += 1;
                got.extend(batch.iter().map(|(from, d)| (from, d.to_vec())));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    (got, used)
}

#[tokio::test]
async fn a_batch_of_datagrams_arrives_in_one_call_exact() {
    let (rx, tx1, tx2) = (on(230), on(231), on(232));
    let to = rx.local_addr().unwrap();
    let mut sent = Vec::new();
    for i in 0..20u8 {
        let tx = if i % 2 == 0 { &tx1 } else { &tx2 };
        let d: Vec<u8> = (0..(i as usize * 37 + 1)).map(|j| i ^ j as u8).collect();
        tx.send_to(&d, to).await.unwrap();
        sent.push((tx.local_addr().unwrap(), d));
    }
    // Loopback delivers synchronously: all 20 are queued before the first receive.
    let mut batch = RecvBatch::new(MAX_BATCH, 2048);
    let (got, calls) = recv_all(&rx, &mut batch, 20, 20).await;
    assert_eq!(got, sent, "contents, sources and order");
    if cfg!(target_os = "linux") {
        assert_eq!(calls, 1, "one recvmmsg takes the whole burst");
    }
}

#[tokio::test]
async fn a_datagram_bigger_than_its_slot_is_dropped_and_counted() {
    let (rx, tx) = (on(233), on(234));
    let to = rx.local_addr().unwrap();
    tx.send_to(b"small one", to).await.unwrap();
    tx.send_to(&[7u8; 300], to).await.unwrap();
    tx.send_to(b"after it", to).await.unwrap();
    let mut batch = RecvBatch::new(8, 100);
    let (got, _) = recv_all(&rx, &mut batch, 2, 5).await;
    let payloads: Vec<&[u8]> = got.iter().map(|(_, d)| d.as_slice()).collect();
    if cfg!(target_os = "linux") {
        assert_eq!(payloads, vec![&b"small one"[..], &b"after it"[..]]);
        assert_eq!(batch.truncated(), 1);
    }
}

#[tokio::test]
async fn a_send_batch_leaves_whole_and_in_order() {
    let (rx, tx) = (on(235), on(236));
    let to = rx.local_addr().unwrap();
    let mut out = SendBatch::new();
    for i in 0..MAX_BATCH as u32 {
        assert!(out.push(to, &i.to_be_bytes()));
    }
    assert!(out.is_full());
    assert!(!out.push(to, b"one too many"), "a full batch takes no more");
    // A fresh socket's readiness is learnt from the reactor first.
    tokio::time::timeout(LIMIT, tx.writable()).await.expect("writable in time").unwrap();
    let sent = try_send(&tx, &mut out).unwrap();
    assert_eq!((sent, out.pending()), (MAX_BATCH, 0));
    let mut batch = RecvBatch::new(MAX_BATCH, 64);
    let (got, _) = recv_all(&rx, &mut batch, MAX_BATCH, MAX_BATCH).await;
    let want: Vec<(SocketAddr, Vec<u8>)> =
        (0..MAX_BATCH as u32).map(|i| (tx.local_addr().unwrap(), i.to_be_bytes().to_vec())).collect();
    assert_eq!(got, want);
    // A sent batch is reused from its first slot.
    assert!(out.push(to, b"again"));
    assert_eq!(out.pending(), 1);
}

#[tokio::test]
async fn nothing_queued_is_would_block() {
    let rx = on(237);
    let mut batch = RecvBatch::new(4, 64);
    let e = try_recv(&rx, &mut batch).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert!(batch.is_empty());
}
