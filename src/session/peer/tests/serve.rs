//! Serving blocks through a real peer task: a scripted remote on an in-memory stream asks a
//! seeding torrent for blocks, gets exactly those bytes, and the torrent counts exactly them
//! as uploaded.

// The task under test reads the clock itself; so does this script, to bound its waits.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::storage::testutil::{payload, TempDir};
use crate::torrent::create;
use crate::wire::handshake::Handshake;
use crate::wire::message::{decode_frame, Limits};

const LIMIT: Duration = Duration::from_secs(10);
const PIECE: u32 = 16_384;

/// The next message from the task, skipping keep-alives; panics if none comes in time.
async fn next(io: &mut DuplexStream, buf: &mut Vec<u8>, deadline: tokio::time::Instant) -> Message {
    let mut chunk = [0u8; 1 << 16];
    loop {
        while let Some((msg, used)) = decode_frame(buf, &Limits::default()).unwrap() {
            buf.drain(..used);
            if msg != Message::KeepAlive {
                return msg;
            }
        }
        let n = tokio::time::timeout_at(deadline, io.read(&mut chunk)).await.expect("the task went quiet").unwrap();
        assert!(n > 0, "the peer task closed the stream");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_blocks_are_counted_as_uploaded_exactly() {
    let dir = TempDir::new("serve");
    // Seven pieces, the last one short.
    let data = payload(6 * PIECE as usize + 1_696);
    let file = dir.path.join("payload.bin");
    std::fs::write(&file, &data).unwrap();
    let meta = create::create(&file, Some(u64::from(PIECE)), &mut |_, _| {}).unwrap();
    let config = TorrentConfig::new(meta.info_hash, dir.path.clone(), 7000, false, 50, false);
    let (events, _) = mpsc::unbounded_channel();
    let t = Torrent::new(config, events, None);
    t.install_metadata(meta).await.unwrap();
    assert!(t.is_complete());

    let (ours, mut io) = tokio::io::duplex(1 << 16);
    let hs = Handshake::new(t.config.info_hash, [9; 20]);
    let addr: SocketAddr = "10.7.7.7:40000".parse().unwrap();
    let task = tokio::spawn(run(ours, addr, hs, Arc::clone(&t), PeerOrigin::default()));
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut send = Vec::new();
    Message::Interested.encode(&mut send);
    io.write_all(&send).await.unwrap();
    while next(&mut io, &mut buf, deadline).await != Message::Unchoke {}

    // Every piece whole, and a piece of one again: what is served twice is uploaded twice.
    let mut asked: Vec<BlockRef> =
        (0..7).map(|i| BlockRef { index: i, begin: 0, length: PIECE.min(data.len() as u32 - i * PIECE) }).collect();
    asked.push(BlockRef { index: 3, begin: 5_000, length: 1_000 });
    let mut send = Vec::new();
    for b in &asked {
        Message::Request(*b).encode(&mut send);
    }
    io.write_all(&send).await.unwrap();
    let mut served = Vec::new();
    while served.len() < asked.len() {
        if let Message::Piece { index, begin, data: block } = next(&mut io, &mut buf, deadline).await {
            let at = (index * PIECE + begin) as usize;
            assert!(block[..] == data[at..at + block.len()], "piece {index} at {begin}: wrong bytes");
            served.push(BlockRef { index, begin, length: block.len() as u32 });
        }
    }
    assert_eq!(served, asked);
    let total: u64 = asked.iter().map(|b| u64::from(b.length)).sum();
    assert_eq!(total, data.len() as u64 + 1_000);
    assert_eq!(t.counters().uploaded, total);
    task.abort();
}
