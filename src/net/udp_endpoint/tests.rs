//! The owner task on loopback sockets (127.0.24N.1): KRPC and uTP through one socket at once,
//! garbage counted, the DHT's queue capped, and the task gone when nobody uses the socket.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::net::socket::bind_udp;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

fn udp_on(n: u8) -> Arc<UdpSocket> {
    Arc::new(bind_udp(SocketAddr::from((Ipv4Addr::new(127, 0, n, 1), 0))).expect("bind loopback"))
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = now();
    while !done() {
        assert!(now().duration_since(started) < LIMIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

const PING: &[u8] = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn krpc_and_utp_share_the_socket_through_one_owner() {
    let socket = udp_on(240);
    let local = socket.local_addr().unwrap();
    let (utp, port) = UtpSocket::new(local, MuxConfig::default());
    let mut link = spawn(Arc::clone(&socket), Some(port), true).unwrap().expect("a KRPC link");
    let raw = udp_on(241);
    let raw_addr = raw.local_addr().unwrap();

    // KRPC in: the DHT gets it with its source; garbage does not reach it.
    raw.send_to(b"\xffnot a protocol", local).await.unwrap();
    raw.send_to(PING, local).await.unwrap();
    let batch = tokio::time::timeout(LIMIT, link.incoming.recv()).await.expect("in time").unwrap();
    assert_eq!(batch.iter().collect::<Vec<_>>(), vec![(raw_addr, PING)]);
    until("the garbage is counted", || link.counters.unknown.load(Ordering::Relaxed) == 1).await;

    // KRPC out: what the DHT hands over leaves from the socket.
    link.outgoing.send(vec![(raw_addr, b"d1:y1:re".to_vec())]).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(LIMIT, raw.recv_from(&mut buf)).await.expect("in time").unwrap();
    assert_eq!((&buf[..n], from), (&b"d1:y1:re"[..], local));

    // uTP at the same time, from a uTP-only socket.
    let other = spawn_utp(udp_on(242), MuxConfig::default()).unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = utp.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        got
    });
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
    let mut s = tokio::time::timeout(LIMIT, other.connect(local)).await.expect("in time").unwrap();
    s.write_all(&data).await.unwrap();
    s.shutdown().await.unwrap();
    let got = tokio::time::timeout(LIMIT, server).await.expect("in time").unwrap();
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
    // And the DHT saw none of it.
    assert!(link.incoming.try_recv().is_err());
    let c = &link.counters;
    assert!(c.received.load(Ordering::Relaxed) > c.recv_calls.load(Ordering::Relaxed), "datagrams came in batches");
}

#[tokio::test]
async fn a_dht_that_does_not_keep_up_loses_datagrams_counted_not_queued() {
    let socket = udp_on(243);
    let local = socket.local_addr().unwrap();
    let mut link = spawn_krpc(socket).unwrap();
    let raw = udp_on(244);
    let total = KRPC_QUEUE + 40;
    for i in 0..total {
        raw.send_to(PING, local).await.unwrap();
        // One datagram per batch: wait until the owner has read this one.
        until("the owner read it", || link.counters.received.load(Ordering::Relaxed) as usize > i).await;
    }
    let c = &link.counters;
    until("the overflow is counted", || c.krpc_dropped.load(Ordering::Relaxed) == 40).await;
    let mut queued = 0;
    while let Ok(b) = link.incoming.try_recv() {
        queued += b.len();
    }
    assert_eq!(queued, KRPC_QUEUE);
}

#[tokio::test]
async fn the_owner_lets_go_of_the_socket_when_nobody_uses_it() {
    let socket = udp_on(245);
    let link = spawn_krpc(Arc::clone(&socket)).unwrap();
    let (utp, port) = UtpSocket::new(socket.local_addr().unwrap(), MuxConfig::default());
    let other = udp_on(246);
    spawn(Arc::clone(&other), Some(port), false).unwrap();
    assert!(Arc::strong_count(&socket) > 1 && Arc::strong_count(&other) > 1);
    drop(link);
    drop(utp);
    until("both owners ended", || Arc::strong_count(&socket) == 1 && Arc::strong_count(&other) == 1).await;
}

#[test]
fn a_krpc_batch_gives_back_each_datagram_with_its_source() {
    let a = SocketAddr::from((Ipv4Addr::new(127, 0, 247, 1), 1));
    let b = SocketAddr::from((Ipv4Addr::new(127, 0, 247, 2), 2));
    let mut batch = KrpcBatch::with_capacity(1, 4);
    assert!(batch.is_empty());
    batch.push(a, PING);
    batch.push(b, b"");
    batch.push(b, b"d1:y1:re");
    assert_eq!(batch.len(), 3);
    assert_eq!(batch.iter().collect::<Vec<_>>(), vec![(a, PING), (b, &b""[..]), (b, &b"d1:y1:re"[..])]);
}
