//! A peer's BEP 5 `port` message through a real peer task: we ping its DHT node once per
//! connection, however many it sends (each used to cost a ping and a DHT transaction).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::dht::driver::Command as DhtCommand;
use crate::id::InfoHash;
use crate::wire::handshake::Handshake;

#[tokio::test]
async fn a_stream_of_port_messages_is_one_ping() {
    let mut config = TorrentConfig::new(
        InfoHash::from_slice(&[8; 20]).unwrap(),
        std::env::temp_dir().join("kadswarm-peer-port-unused"),
        7000,
        false,
        50,
        false,
    );
    config.listen_ip = Some("127.0.0.9".parse().unwrap());
    let (events, _) = mpsc::unbounded_channel();
    let (dht_tx, mut dht_rx) = mpsc::unbounded_channel();
    let t = Torrent::new(config, events, Some(dht_tx));
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (mut their_rd, mut their_wr) = tokio::io::split(theirs);
    // Our own handshake's bits: extensions and the DHT (BEP 5), as the remote's.
    let hs = Handshake::new(t.config.info_hash, [9; 20]);
    let addr: SocketAddr = "127.0.0.20:6881".parse().unwrap();
    let task = tokio::spawn(run(
        ours,
        addr,
        hs,
        Arc::clone(&t),
        PeerOrigin { outgoing: false, utp: false, ..Default::default() },
    ));
    let mut out = Vec::new();
    for i in 0..1000u16 {
        Message::Port(7000 + i).encode(&mut out);
    }
    their_wr.write_all(&out).await.unwrap();
    // Closing only our write side ends the task once it has read everything before the end
    // of the stream; its own writes keep succeeding (a reader drains them), so no write error
    // can end it before it has read all 1,000 messages.
    their_wr.shutdown().await.unwrap();
    let drain = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = their_rd.read_to_end(&mut sink).await;
    });
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await.expect("the peer task ended");
    drain.abort();
    let mut pings = Vec::new();
    while let Ok(cmd) = dht_rx.try_recv() {
        if let DhtCommand::Ping { addr } = cmd {
            pings.push(addr);
        }
    }
    assert_eq!(pings, vec!["127.0.0.20:7000".parse().unwrap()]);
}
