//! A disk that refuses a block, through a real peer task, torrent task and disk thread: a
//! scripted seeder on an in-memory stream answers every request, the storage fails the write
//! (ENOSPC), and the torrent, not the peer, takes the blame.

// The task under test reads the clock itself; so does this script, to bound its waits.
#![allow(clippy::disallowed_methods)]

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::session::torrent::TorrentEvent;
use crate::storage::testutil::{payload, TempDir};
use crate::swarm::session::DiskFault;
use crate::torrent::create;
use crate::wire::handshake::Handshake;
use crate::wire::message::{decode_frame, Limits, Message};

const LIMIT: Duration = Duration::from_secs(10);
const PIECE: u32 = 16_384;
/// ENOSPC on Linux, the errno a full disk gives.
const ENOSPC: i32 = 28;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_stops_the_torrent_and_blames_no_peer() {
    let src = TempDir::new("fault-src");
    let out = TempDir::new("fault-out");
    let data = payload(4 * PIECE as usize);
    let file = src.path.join("payload.bin");
    std::fs::write(&file, &data).unwrap();
    let meta = create::create(&file, Some(u64::from(PIECE)), &mut |_, _| {}).unwrap();
    let config = TorrentConfig::new(meta.info_hash, out.path.clone(), 7000, false, 50, false);
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let t = Torrent::new(config, ev_tx, None);
    t.install_metadata(meta).await.unwrap();
    assert!(!t.is_complete());
    let storage = t.snapshot().storage.unwrap();
    storage.fail_writes.store(ENOSPC, Ordering::Relaxed);

    let (ours, mut io) = tokio::io::duplex(1 << 16);
    let hs = Handshake::new(t.config.info_hash, [9; 20]);
    let addr: SocketAddr = "10.7.7.7:40000".parse().unwrap();
    let task = tokio::spawn(run(ours, addr, hs, Arc::clone(&t), PeerOrigin::default()));
    let mut send = Vec::new();
    Message::Bitfield(vec![0xf0]).encode(&mut send);
    Message::Unchoke.encode(&mut send);
    io.write_all(&send).await.unwrap();

    // Answer every request until the task closes the stream.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    'serve: loop {
        while let Some((msg, used)) = decode_frame(&buf, &Limits::default()).unwrap() {
            buf.drain(..used);
            if let Message::Request(b) = msg {
                let at = (b.index * PIECE + b.begin) as usize;
                let block = data[at..at + b.length as usize].to_vec();
                let mut send = Vec::new();
                Message::Piece { index: b.index, begin: b.begin, data: block }.encode(&mut send);
                if io.write_all(&send).await.is_err() {
                    break 'serve;
                }
            }
        }
        let n = tokio::time::timeout_at(deadline, io.read(&mut chunk)).await.expect("the task never closed the stream");
        match n {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let result = tokio::time::timeout_at(deadline, task).await.expect("the task did not end").unwrap();
    assert!(matches!(result, Err(PeerTaskError::Closed)), "the peer was dropped as if at fault: {result:?}");

    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        seen.push(ev);
    }
    let faults: Vec<&DiskFault> =
        seen.iter().filter_map(|e| if let TorrentEvent::Failed(f) = e { Some(f) } else { None }).collect();
    assert_eq!(faults.len(), 1, "one fault event expected: {seen:?}");
    assert_eq!(faults[0].kind, Some(io::ErrorKind::StorageFull));
    assert!(faults[0].to_string().starts_with("writing "), "{}", faults[0]);
    assert!(faults[0].to_string().ends_with(": No space left on device"), "{}", faults[0]);
    assert_eq!(t.fault().as_ref(), Some(faults[0]));
    assert!(!t.is_banned(addr.ip()), "the peer was banned for our disk");
    // Stopped: no peer is taken any more.
    let other: SocketAddr = "10.7.7.8:40000".parse().unwrap();
    let hello =
        Hello { addr: other, origin: PeerOrigin::default(), peer_id: [0; 20], supports_ext: true, supports_dht: false };
    assert!(t.join(hello).await.is_err());
}
