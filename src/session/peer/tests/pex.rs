//! Peer exchange through a real peer task: a scripted remote peer on an in-memory stream sees
//! our extension handshake, our first PEX message, and what its own messages teach the
//! torrent; with `--no-pex` it sees no `ut_pex` offer and its messages are ignored.

// The task under test reads the clock itself; so does this script, to bound its waits.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::id::InfoHash;
use crate::swarm::peer_source::PeerSource;
use crate::swarm::session::OUR_UT_PEX;
use crate::wire::handshake::Handshake;
use crate::wire::message::{decode_frame, Limits};
use crate::wire::pex::{PexFlags, PexLimits, PexMessage};

const LIMIT: Duration = Duration::from_secs(10);

fn torrent(pex: bool) -> Arc<Torrent> {
    let mut config = TorrentConfig::new(
        InfoHash::from_slice(&[7; 20]).unwrap(),
        std::env::temp_dir().join("kadswarm-peer-pex-unused"),
        7000,
        false,
        50,
        false,
    );
    config.pex = pex;
    config.listen_ip = Some("127.0.0.9".parse().unwrap());
    let (events, _) = mpsc::unbounded_channel();
    Torrent::new(config, events, None)
}

/// The remote end: frames in and out through the crate's codec.
struct Remote {
    io: DuplexStream,
    buf: Vec<u8>,
}

impl Remote {
    async fn send(&mut self, msg: Message) {
        let mut out = Vec::new();
        msg.encode(&mut out);
        self.io.write_all(&out).await.unwrap();
    }

    async fn send_ext(&mut self, id: u8, payload: Vec<u8>) {
        self.send(Message::Extended { id, payload }).await;
    }

    /// The next extended message with id `want`, skipping others; `None` if none comes in time.
    async fn ext(&mut self, want: u8, within: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut chunk = [0u8; 4096];
        loop {
            while let Some((msg, used)) = decode_frame(&self.buf, &Limits::default()).unwrap() {
                self.buf.drain(..used);
                if let Message::Extended { id, payload } = msg {
                    if id == want {
                        return Some(payload);
                    }
                }
            }
            let n = tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await.ok()?.unwrap();
            assert!(n > 0, "the peer task closed the stream");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Starts a peer task for a remote at `addr` that connected to us (incoming, TCP).
fn start(t: &Arc<Torrent>, addr: SocketAddr) -> (Remote, tokio::task::JoinHandle<Result<(), PeerTaskError>>) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let hs = Handshake::new(t.config.info_hash, [9; 20]);
    let task = tokio::spawn(run(
        ours,
        addr,
        hs,
        Arc::clone(t),
        PeerOrigin { outgoing: false, utp: false, ..Default::default() },
    ));
    (Remote { io: theirs, buf: Vec::new() }, task)
}

fn their_handshake(ut_pex: Option<u8>, port: u16) -> Vec<u8> {
    let hs = ExtHandshake {
        ut_pex,
        listen_port: Some(port),
        your_ip: Some("203.0.113.77".parse().unwrap()),
        ..ExtHandshake::default()
    };
    let mut out = Vec::new();
    hs.encode(&mut out);
    out
}

fn pex_payload(added: &[&str]) -> Vec<u8> {
    let msg = PexMessage {
        added: added.iter().map(|a| (a.parse().unwrap(), PexFlags::default())).collect(),
        dropped: vec![],
    };
    let mut out = Vec::new();
    msg.encode(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pex_both_ways_through_a_peer_task() {
    let t = torrent(true);
    // Another peer we dialled: PEX may name it, reachable, over uTP.
    let other: SocketAddr = "10.5.5.5:6881".parse().unwrap();
    let hello = Hello {
        addr: other,
        origin: PeerOrigin { outgoing: true, utp: true, ..Default::default() },
        peer_id: [0; 20],
        supports_ext: false,
        supports_dht: false,
    };
    let _other = t.join(hello).await.unwrap();
    let remote_addr: SocketAddr = "10.6.6.6:40000".parse().unwrap();
    let (mut remote, task) = start(&t, remote_addr);

    let ours = ExtHandshake::decode(&remote.ext(0, LIMIT).await.expect("our extension handshake")).unwrap();
    assert_eq!(ours.ut_pex, Some(OUR_UT_PEX));
    remote.send_ext(0, their_handshake(Some(7), 51413)).await;

    // Our first message comes about a second after their handshake, naming the other peer.
    let payload = remote.ext(7, LIMIT).await.expect("a PEX message to the id they chose");
    let msg = PexMessage::decode(&payload, &PexLimits::default()).unwrap();
    assert_eq!(msg.added, vec![(other, PexFlags::UTP | PexFlags::REACHABLE)]);
    assert!(msg.dropped.is_empty());

    // Their message: our own addresses (the listen IP, and the IP they see us at), port 0 and
    // the unspecified address are dropped; the rest go to the runner as PEX peers.
    remote
        .send_ext(
            OUR_UT_PEX,
            pex_payload(&["1.2.3.4:5555", "127.0.0.9:7000", "203.0.113.77:7000", "4.3.2.1:0", "0.0.0.0:80"]),
        )
        .await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    let offered = loop {
        let offered = t.take_offered();
        if !offered.is_empty() {
            break offered;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing offered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(offered, vec![(PeerSource::Pex, "1.2.3.4:5555".parse().unwrap())]);

    // A second message at once is spam: ignored, and the peer stays connected. Wait until the
    // task has handled it (counted it as spam, or wrongly offered what it named) before
    // looking, or "nothing offered" would only say it was not read yet.
    remote.send_ext(OUR_UT_PEX, pex_payload(&["5.5.5.5:5555"])).await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut offered = Vec::new();
    loop {
        // The count first: whatever was offered before it was bumped is then taken too.
        let spam = t.counters().pex_spam;
        offered.extend(t.take_offered());
        if spam > 0 || !offered.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the second message was never handled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(offered, vec![], "spam was taken");
    assert_eq!(t.counters().pex_spam, 1);
    assert!(!task.is_finished());

    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pex_offers_nothing_and_ignores_their_messages() {
    let t = torrent(false);
    let origin = PeerOrigin { outgoing: true, utp: false, ..Default::default() };
    let hello = Hello {
        addr: "10.5.5.5:6881".parse().unwrap(),
        origin,
        peer_id: [0; 20],
        supports_ext: false,
        supports_dht: false,
    };
    let _other = t.join(hello).await.unwrap();
    let (mut remote, task) = start(&t, "10.6.6.6:40000".parse().unwrap());
    let ours = ExtHandshake::decode(&remote.ext(0, LIMIT).await.expect("our extension handshake")).unwrap();
    assert_eq!(ours.ut_pex, None);
    remote.send_ext(0, their_handshake(Some(7), 51413)).await;
    // Sent to the id a PEX-enabled kadswarm would have used: we never offered it.
    remote.send_ext(OUR_UT_PEX, pex_payload(&["1.2.3.4:5555"])).await;
    // Well past the first message's delay: nothing was sent to their ut_pex id.
    assert_eq!(remote.ext(7, Duration::from_secs(3)).await, None);
    assert!(t.take_offered().is_empty());
    assert!(!task.is_finished(), "an unannounced extension is ignored, not fatal");
    task.abort();
}
