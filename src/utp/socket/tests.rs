//! Two uTP sockets on their own loopback addresses (127.0.20N.1): connections through the
//! real owner task (`net::udp_endpoint`), byte-exact transfers both ways at once, refusals,
//! hostile datagrams.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::net::socket::bind_udp;
use crate::utp::header::{encode, Header, Packet, PacketType};

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(60);

fn socket_on(n: u8, config: MuxConfig) -> UtpSocket {
    let udp = bind_udp(SocketAddr::from((Ipv4Addr::new(127, 0, n, 1), 0))).expect("bind loopback");
    crate::net::udp_endpoint::spawn_utp(Arc::new(udp), config).expect("an owner task")
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_both_ways_arrive_byte_exact() {
    let a = socket_on(201, MuxConfig::default());
    let b = socket_on(202, MuxConfig::default());
    let (to_b, to_a) = (pattern(6 << 20, 1), pattern(5 << 20, 2));
    let b_addr = b.local_addr().unwrap();
    let started = crate::clock::now();
    let server = {
        let (b, to_a) = (b.clone(), to_a.clone());
        tokio::spawn(async move {
            let (stream, from) = b.accept().await.expect("accept");
            (exchange(stream, to_a).await.0, from)
        })
    };
    let client = a.connect(b_addr).await.expect("connect");
    let (got_at_a, _) = tokio::time::timeout(LIMIT, exchange(client, to_b.clone())).await.expect("in time");
    let (got_at_b, from) = tokio::time::timeout(LIMIT, server).await.expect("in time").unwrap();
    let secs = crate::clock::now().duration_since(started).as_secs_f64();
    assert_eq!(from, a.local_addr().unwrap());
    assert!(got_at_b == to_b, "a -> b differs ({} of {} bytes)", got_at_b.len(), to_b.len());
    assert!(got_at_a == to_a, "b -> a differs ({} of {} bytes)", got_at_a.len(), to_a.len());
    eprintln!("uTP loopback: 11 MiB both ways in {secs:.2}s ({:.0} MB/s)", 11.0 * 1.048576 / secs);
    assert!(a.stats().bytes_written >= 6 << 20 && b.stats().bytes_read >= 6 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_share_one_socket() {
    let a = socket_on(203, MuxConfig::default());
    let b = socket_on(204, MuxConfig::default());
    let b_addr = b.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (mut s, _) = b.accept().await.expect("accept");
            // An echo of whatever comes, until the client's FIN.
            tasks.push(tokio::spawn(async move {
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await.expect("read");
                s.write_all(&buf).await.expect("write");
                s.shutdown().await.expect("shutdown");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        b
    });
    let mut clients = Vec::new();
    for i in 0..8u64 {
        let a = a.clone();
        clients.push(tokio::spawn(async move {
            let mut s = a.connect(b_addr).await.expect("connect");
            let data = pattern(100_000 + i as usize * 7_777, i);
            s.write_all(&data).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.unwrap();
            assert!(back == data, "connection {i} echoed other bytes");
        }));
    }
    for c in clients {
        tokio::time::timeout(LIMIT, c).await.expect("in time").unwrap();
    }
    let b = tokio::time::timeout(LIMIT, server).await.expect("in time").unwrap();
    assert_eq!(b.stats().accepted, 8);
    assert_eq!(a.stats().connected, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_takes_no_connections_refuses() {
    let a = socket_on(205, MuxConfig::default());
    let b = socket_on(206, MuxConfig { accept_incoming: false, ..MuxConfig::default() });
    let err = tokio::time::timeout(LIMIT, a.connect(b.local_addr().unwrap())).await.expect("in time").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(b.stats().refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_do_not_hurt_and_unknown_ids_get_resets() {
    let a = socket_on(207, MuxConfig::default());
    let a_addr = a.local_addr().unwrap();
    let raw = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 208, 1), 0)).await.unwrap();
    // Garbage of every kind, including bencode (the reader drops what is not uTP).
    for d in [&b""[..], b"\x01", b"d1:ad2:id20:xxxxxxxxxxxxxxxxxxxxe1:q4:ping1:t2:aa1:y1:qe", &[0x41; 25], &[0x11; 19]]
    {
        raw.send_to(d, a_addr).await.unwrap();
    }
    let data = {
        let h = Header { kind: PacketType::Data, conn_id: 4242, ts_us: 0, ts_diff_us: 0, wnd: 0, seq: 9, ack: 0 };
        let mut out = Vec::new();
        encode(&h, None, b"hello", &mut out);
        out
    };
    raw.send_to(&data, a_addr).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(LIMIT, raw.recv_from(&mut buf)).await.expect("a reset").unwrap();
    let reset = Packet::parse(&buf[..n]).unwrap().header;
    assert_eq!((reset.kind, reset.conn_id, reset.ack), (PacketType::Reset, 4242, 9));
    let stats = a.stats();
    assert!(stats.unparseable >= 2, "{stats:?}");
    assert_eq!(stats.resets_sent, 1, "{stats:?}");
    // The socket still works after all that.
    let b = socket_on(209, MuxConfig::default());
    let server = tokio::spawn(async move {
        let (mut s, _) = a.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        (got, a)
    });
    let mut s = b.connect(a_addr).await.unwrap();
    s.write_all(b"still here").await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);
    let (got, _a) = tokio::time::timeout(LIMIT, server).await.expect("in time").unwrap();
    assert_eq!(got, b"still here");
}

/// A kadswarm SYN to a loopback peer says it reads big datagrams (`jumbo.rs`) and the answer
/// says the same, so both sides send big packets; libtorrent's SYN says nothing and gets
/// 1400-byte ones (the libtorrent tests in tests/utp_transfer.rs cover that side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_peers_that_ask_get_big_packets() {
    let a = socket_on(210, MuxConfig::default());
    let b = socket_on(211, MuxConfig::default());
    let b_addr = b.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = b.accept().await.unwrap();
        let got = exchange(s, pattern(1 << 20, 3)).await;
        (got, b)
    });
    let s = a.connect(b_addr).await.unwrap();
    let (got_a, stats_a) = tokio::time::timeout(LIMIT, exchange(s, pattern(1 << 20, 4))).await.expect("in time");
    let ((got_b, stats_b), _b) = tokio::time::timeout(LIMIT, server).await.expect("in time").unwrap();
    assert!(got_a == pattern(1 << 20, 3) && got_b == pattern(1 << 20, 4));
    for (side, stats) in [("initiator", stats_a), ("acceptor", stats_b)] {
        let per_packet = stats.bytes_sent / stats.packets_sent.max(1);
        assert!(per_packet > 8_000, "{side}: {} bytes in {} packets", stats.bytes_sent, stats.packets_sent);
    }
}

/// Writes `data` then shuts down, while reading everything the other side sends; returns
/// that and the connection's counters from before the stream is dropped.
async fn exchange(stream: UtpStream, data: Vec<u8>) -> (Vec<u8>, crate::utp::conn::ConnStats) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = async move {
        wr.write_all(&data).await.expect("write");
        wr.shutdown().await.expect("shutdown");
        wr
    };
    let reader = async move {
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.expect("read");
        (rd, got)
    };
    let (wr, (rd, got)) = tokio::join!(writer, reader);
    let stream = rd.unsplit(wr);
    let stats = stream.stats().expect("still in the table");
    (got, stats)
}
