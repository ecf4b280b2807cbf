//! The caps of `peer_limits` through a real peer task on an in-memory stream: a peer that
//! streams `ut_metadata` requests and never reads is refused then dropped with what it had
//! queued bounded, and a bitfield longer than the torrent allows (or, before the metadata,
//! than any torrent could need) is refused at its length prefix, not held while it arrives.

// The task under test reads the clock itself; so does this script, to bound its waits.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::storage::testutil::{payload, TempDir};
use crate::swarm::session::limits::{frame_limits, MAX_PIECES_BEFORE_METADATA, MAX_QUEUED};
use crate::swarm::session::OUR_UT_METADATA;
use crate::torrent::create;
use crate::torrent::Metainfo;
use crate::wire::handshake::Handshake;
use crate::wire::message::{decode_frame, Limits, ID_BITFIELD};

const LIMIT: Duration = Duration::from_secs(5);
const PIECE: usize = 16_384;

/// A torrent of `pieces` pieces whose data is on disk, with its metadata installed or not.
async fn torrent(dir: &TempDir, pieces: usize, installed: bool) -> (Arc<Torrent>, Metainfo) {
    let file = dir.path.join("payload.bin");
    std::fs::write(&file, payload(pieces * PIECE)).unwrap();
    let meta = create::create(&file, Some(PIECE as u64), &mut |_, _| {}).unwrap();
    let config = TorrentConfig::new(meta.info_hash, dir.path.clone(), 7000, false, 50, false);
    let (events, _) = mpsc::unbounded_channel();
    let t = Torrent::new(config, events, None);
    if installed {
        t.install_metadata(meta.clone()).await.unwrap();
    }
    (t, meta)
}

fn connect(t: &Arc<Torrent>) -> (tokio::task::JoinHandle<Result<(), PeerTaskError>>, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let hs = Handshake::new(t.config.info_hash, [9; 20]);
    let addr: SocketAddr = "10.7.7.8:40000".parse().unwrap();
    (tokio::spawn(run(ours, addr, hs, Arc::clone(t), PeerOrigin::default())), theirs)
}

/// The start of a `bitfield` frame of `len` bytes, the bytes themselves never sent.
fn bitfield_prefix(len: u32) -> Vec<u8> {
    let mut out = (len + 1).to_be_bytes().to_vec();
    out.push(ID_BITFIELD);
    out
}

/// How the task ended, which must be soon.
async fn ending(task: tokio::task::JoinHandle<Result<(), PeerTaskError>>) -> Result<(), PeerTaskError> {
    tokio::time::timeout(LIMIT, task).await.expect("the task kept the peer").unwrap()
}

fn assert_bitfield_refused(result: Result<(), PeerTaskError>) {
    match result {
        Err(PeerTaskError::Protocol(e)) if e.contains("bitfield") => {}
        other => panic!("expected the bitfield refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_requests_from_a_peer_that_never_reads_are_capped() {
    let dir = TempDir::new("meta-spam");
    let (t, meta) = torrent(&dir, 200, true).await;
    assert!(meta.info_bytes.len() > 4_000);
    let (task, io) = connect(&t);
    let (_their_rd, mut their_wr) = tokio::io::split(io);
    let mut out = Vec::new();
    let hs = ExtHandshake { ut_metadata: Some(3), ..ExtHandshake::default() };
    let mut payload = Vec::new();
    hs.encode(&mut payload);
    Message::Extended { id: 0, payload }.encode(&mut out);
    let mut payload = Vec::new();
    MetadataMessage::Request { piece: 0 }.encode(&mut payload);
    // 20,000 replies of 4 KiB would be 80 MB held for a peer that reads none of it.
    for _ in 0..20_000 {
        Message::Extended { id: OUR_UT_METADATA, payload: payload.clone() }.encode(&mut out);
    }
    // The task reads on while its writes are stuck, so this cannot block on it; the peer
    // stays connected (no end of stream), and it is the cap that must end it. The write fails
    // once the task has dropped the peer, before all of it is sent.
    let _ = their_wr.write_all(&out).await;
    match ending(task).await {
        Err(PeerTaskError::NotReading { queued, cap }) => {
            assert_eq!(cap, MAX_QUEUED);
            // Over the cap by the one `reject` that crossed it, no more.
            assert!(queued < MAX_QUEUED + 64, "{queued} bytes queued");
        }
        other => panic!("expected the peer dropped for not reading, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bitfield_longer_than_the_torrent_is_refused_at_its_prefix() {
    let dir = TempDir::new("bitfield-known");
    let (t, _) = torrent(&dir, 7, true).await;
    let (task, mut io) = connect(&t);
    // 7 pieces take one byte; 4 KiB would be buffered in full before the check in
    // `on_bitfield` if the frame limits were still the default megabyte.
    io.write_all(&bitfield_prefix(4096)).await.unwrap();
    assert_bitfield_refused(ending(task).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frame_limits_narrow_when_the_metadata_arrives() {
    let dir = TempDir::new("bitfield-later");
    let (t, meta) = torrent(&dir, 7, false).await;
    let (task, mut io) = connect(&t);
    t.install_metadata(meta).await.unwrap();
    // The task's own bitfield says it has taken the metadata in.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 1 << 16]);
    'wait: loop {
        while let Some((msg, used)) = decode_frame(&buf, &Limits::default()).unwrap() {
            buf.drain(..used);
            if matches!(msg, Message::Bitfield(_)) {
                break 'wait;
            }
        }
        let n = tokio::time::timeout_at(deadline, io.read(&mut chunk)).await.expect("no bitfield").unwrap();
        assert!(n > 0, "the peer task closed the stream");
        buf.extend_from_slice(&chunk[..n]);
    }
    io.write_all(&bitfield_prefix(4096)).await.unwrap();
    assert_bitfield_refused(ending(task).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bitfield_before_the_metadata_is_capped() {
    let dir = TempDir::new("bitfield-early");
    let (t, _) = torrent(&dir, 7, false).await;
    let (task, mut io) = connect(&t);
    // Under the 1 MiB default, over what any torrent of at most MAX_METADATA_SIZE can have.
    io.write_all(&bitfield_prefix(200_000)).await.unwrap();
    assert_bitfield_refused(ending(task).await);
}

#[test]
fn the_early_cap_still_takes_the_largest_torrent_we_could_learn() {
    let limits = frame_limits(None);
    let largest = MAX_PIECES_BEFORE_METADATA.div_ceil(8);
    assert_eq!(limits.max_bitfield_len, largest);
    assert!(decode_frame(&bitfield_prefix(largest), &limits).unwrap().is_none(), "waits for the payload");
    assert!(decode_frame(&bitfield_prefix(largest + 1), &limits).is_err());
    assert_eq!(frame_limits(Some(7)).max_bitfield_len, 1);
}

/// A peer that reads slowly but never catches up: each round we queue a 16 KiB block and its
/// socket takes a little less, so something always waits. The write buffer must stay near what
/// is unwritten, not grow by everything ever sent to it.
#[test]
fn write_buffer_stays_bounded_for_a_reader_that_never_catches_up() {
    let mut w = WriteBuf::default();
    let mut unwritten = 0usize;
    for round in 0..4096 {
        w.tail().extend_from_slice(&[round as u8; 16 * 1024]);
        let take = 16 * 1024 - 64;
        assert!(w.pending().len() >= take);
        w.advance(take);
        unwritten += 64;
        assert_eq!(w.pending().len(), unwritten);
        assert!(w.buf.len() <= 2 * unwritten + 16 * 1024, "round {round}: {} bytes held", w.buf.len());
    }
    // 64 MiB went through it; a quarter of a megabyte still waits.
    assert!(w.buf.len() < 1 << 20, "{} bytes held", w.buf.len());
}
