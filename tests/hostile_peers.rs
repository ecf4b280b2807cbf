//! Peers that lie or babble, next to an honest `kadswarm seed`: a peer that answers every
//! request with garbage (the download still completes byte-exact, and that peer is banned),
//! and a peer that sends an oversized frame (it is disconnected; nothing panics).
//!
//! The hostile peers are threads of this test speaking the peer wire through the crate's own
//! codec; everything runs on loopback addresses of its own (127.0.17N.1).

// These tests drive real processes in real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, ip, s, Proc, TempDir};
use kadswarm::torrent::Metainfo;
use kadswarm::wire::handshake::{Handshake, HANDSHAKE_LEN};
use kadswarm::wire::message::{decode_frame, Limits, Message};

const LIMIT: Duration = Duration::from_secs(90);
/// How long after the download a protocol-violating peer may still be connected.
const DROP_WAIT: Duration = Duration::from_secs(5);

fn addr(n: u8) -> SocketAddr {
    let ip: Ipv4Addr = ip(n);
    SocketAddr::from((ip, free_port(ip)))
}

fn write_payload(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("payload");
    std::fs::create_dir_all(&root).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = Vec::with_capacity(16 << 20);
    while data.len() < 16 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(root.join("a.bin"), &data[..10 << 20]).unwrap();
    std::fs::write(root.join("b.bin"), &data[10 << 20..]).unwrap();
    root
}

/// `kadswarm seed` without DHT; returns it, its magnet and the torrent it wrote.
fn honest_seed(payload: &Path, bind: SocketAddr, torrent_out: &Path) -> (Proc, String, Metainfo) {
    honest_seed_with(payload, bind, torrent_out, &[])
}

/// [`honest_seed`] with extra `seed` arguments.
fn honest_seed_with(
    payload: &Path,
    bind: SocketAddr,
    torrent_out: &Path,
    extra: &[String],
) -> (Proc, String, Metainfo) {
    let mut args = vec![
        s("seed"),
        payload.display().to_string(),
        s("--bind"),
        bind.to_string(),
        s("--no-dht"),
        s("--torrent-out"),
        torrent_out.display().to_string(),
        s("--piece-length"),
        s(64 * 1024),
    ];
    args.extend_from_slice(extra);
    let mut seed = Proc::kadswarm("honest seed", &args);
    let magnet = seed.wait_magnet();
    let meta = Metainfo::from_bytes(&std::fs::read(torrent_out).unwrap()).unwrap();
    // The magnet comes before the port is bound, and a getter dialling too early is refused
    // and backs off. Once the port accepts connections, a dial waits in its queue while the
    // seeder checks its files.
    seed.wait_tcp_listening(bind);
    (seed, magnet, meta)
}

/// What a hostile peer does once the handshake is done.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Claims every piece, unchokes, answers each request with bytes of the right length
    /// but the wrong content.
    Garbage,
    /// Sends a frame header announcing 4 GiB.
    Oversized,
}

struct Hostile {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Blocks of garbage sent.
    served: Arc<AtomicU64>,
    /// Connections the victim closed on us.
    dropped: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hostile(bind: SocketAddr, meta: &Metainfo, behaviour: Behaviour) -> Hostile {
    let listener = TcpListener::bind(bind).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let (info_hash, pieces) = (meta.info_hash, meta.info.piece_count());
    let (stop2, served2, dropped2) = (stop.clone(), served.clone(), dropped.clone());
    let thread = thread::spawn(move || {
        let deadline = Instant::now() + LIMIT;
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    serve(stream, info_hash, pieces, behaviour, &stop2, &served2);
                    dropped2.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Hostile { addr: bind, stop, served, dropped, thread: Some(thread) }
}

/// One connection of a hostile peer; returns when the other side hangs up (or on stop).
fn serve(
    mut stream: TcpStream,
    info_hash: kadswarm::id::InfoHash,
    pieces: usize,
    behaviour: Behaviour,
    stop: &AtomicBool,
    served: &AtomicU64,
) {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut hs = [0u8; HANDSHAKE_LEN];
    if stream.read_exact(&mut hs).is_err() {
        return;
    }
    let mut peer_id = [b'x'; 20];
    peer_id[..8].copy_from_slice(b"-XX0001-");
    let ours = Handshake { reserved: [0; 8], info_hash, peer_id };
    let mut out = ours.encode().to_vec();
    match behaviour {
        Behaviour::Oversized => out.extend_from_slice(&[0xff, 0xff, 0xff, 0xf0, 7, 0, 0, 0, 0]),
        Behaviour::Garbage => {
            let mut bits = vec![0u8; pieces.div_ceil(8)];
            for i in 0..pieces {
                bits[i / 8] |= 0x80 >> (i % 8);
            }
            Message::Bitfield(bits).encode(&mut out);
            Message::Unchoke.encode(&mut out);
        }
    }
    if stream.write_all(&out).is_err() {
        return;
    }
    answer_frames(&mut stream, stop, |msg| match (behaviour, msg) {
        (Behaviour::Garbage, Message::Request(b)) => {
            served.fetch_add(1, Ordering::Relaxed);
            let mut reply = Vec::new();
            Message::Piece { index: b.index, begin: b.begin, data: vec![0xa5; b.length as usize] }.encode(&mut reply);
            Some(reply)
        }
        _ => None,
    });
}

/// Reads the peer's messages until it hangs up, `stop` is set or `LIMIT` passes, writing
/// whatever `answer` returns for each (ending on a failed write).
fn answer_frames(stream: &mut TcpStream, stop: &AtomicBool, mut answer: impl FnMut(Message) -> Option<Vec<u8>>) {
    let limits = Limits::default();
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 65536]);
    let deadline = Instant::now() + LIMIT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        let mut used = 0;
        while let Ok(Some((msg, n))) = decode_frame(&buf[used..], &limits) {
            used += n;
            if let Some(reply) = answer(msg) {
                if stream.write_all(&reply).is_err() {
                    return;
                }
            }
        }
        buf.drain(..used);
    }
}

/// `kadswarm get` over TCP only: the hostile peers speak TCP, and with uTP tried first the
/// honest seeder could serve everything before they are reached.
fn get(magnet: &str, out: &Path, bind: SocketAddr, peers: &[SocketAddr], extra: &[String]) -> Proc {
    let mut args = common::swarm::get_args(magnet, out, bind);
    args.extend([s("--no-dht"), s("--transport"), s("tcp")]);
    args.extend_from_slice(extra);
    for p in peers {
        args.push(s("--peer"));
        args.push(p.to_string());
    }
    Proc::kadswarm("kadswarm get", &args)
}

fn assert_same_files(a: &Path, b: &Path) {
    for name in ["a.bin", "b.bin"] {
        let (x, y) = (std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap());
        assert!(x == y, "{name} differs");
    }
}

#[test]
fn a_peer_sending_corrupt_blocks_is_banned_and_the_download_completes() {
    let dir = TempDir::new("corrupt");
    let payload = write_payload(&dir.0);
    let seed_addr = addr(171);
    // The honest seeder is held to 4 MiB/s: unthrottled on loopback it once served all 16 MiB
    // in 40 ms, and the liar's few garbage blocks arrived after the honest copies of the same
    // blocks (dropped as duplicates), so no piece failed and nobody was banned.
    let limit = [s("--upload-limit"), s("4M")];
    let (_seed, magnet, meta) = honest_seed_with(&payload, seed_addr, &dir.0.join("t.torrent"), &limit);
    let liar = hostile(addr(172), &meta, Behaviour::Garbage);
    let out = dir.0.join("out");
    // From the .torrent, so that requests start the moment a peer unchokes: the liar unchokes
    // at once and is asked first (from the magnet the honest seeder may finish the whole
    // download while we still fetch the metadata).
    let torrent = dir.0.join("t.torrent").display().to_string();
    let _ = magnet;
    let mut getter = get(&torrent, &out, addr(173), &[liar.addr, seed_addr], &[]);
    let status = getter.wait_exit(LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", getter.dump());
    assert_same_files(&payload, &out.join("payload"));
    let banned: Vec<String> =
        getter.events().iter().filter(|e| e["event"] == "banned").map(|e| s(e["ip"].as_str().unwrap())).collect();
    assert!(liar.served.load(Ordering::Relaxed) > 0, "the liar was never asked for data\n{}", getter.dump());
    let failed = getter.events().iter().filter(|e| e["event"] == "hash_failed").count();
    assert_eq!(
        banned,
        vec![liar.addr.ip().to_string()],
        "exactly the liar is banned ({failed} failed)\n{}",
        getter.dump()
    );
    eprintln!(
        "{failed} pieces failed their hash and were fetched again; the liar served {} blocks",
        liar.served.load(Ordering::Relaxed)
    );
    assert!(!getter.stderr_lines().iter().any(|l| l.contains("panicked")));
}

/// The getter ends the connection on the protocol error itself: `--seed` keeps it running
/// after the download, so the babbler's socket is not closed by the getter exiting (which
/// would close it whatever the peer task made of the frame).
#[test]
fn a_peer_sending_an_oversized_frame_is_disconnected() {
    let dir = TempDir::new("oversized");
    let payload = write_payload(&dir.0);
    let seed_addr = addr(174);
    let (_seed, magnet, meta) = honest_seed(&payload, seed_addr, &dir.0.join("t.torrent"));
    let babbler = hostile(addr(175), &meta, Behaviour::Oversized);
    let out = dir.0.join("out");
    let mut getter = get(&magnet, &out, addr(176), &[babbler.addr, seed_addr], &[s("--seed")]);
    getter.wait_event_for("done", LIMIT, |e| (e["event"] == "done").then_some(()));
    assert_same_files(&payload, &out.join("payload"));
    // The frame arrives right after the handshake, long before the download ends; the
    // drop is counted once the babbler's read sees the close (within its 200 ms timeout).
    let deadline = Instant::now() + DROP_WAIT;
    while babbler.dropped.load(Ordering::Relaxed) == 0 {
        getter.assert_running();
        assert!(
            Instant::now() < deadline,
            "the babbler is still connected {DROP_WAIT:?} after the download ended\n{}",
            getter.dump()
        );
        thread::sleep(Duration::from_millis(20));
    }
    getter.assert_running();
    let status = getter.terminate();
    assert!(status.success(), "get --seed did not stop cleanly: {status}\n{}", getter.dump());
    assert!(!getter.stderr_lines().iter().any(|l| l.contains("panicked")));
}

// ---------------------------------------------------------------------------------------------
// Metadata liars (BEP 9): peers that lie about the info dictionary of a magnet.

/// What a metadata-lying peer does. Each speaks the extension protocol and never has a piece.
#[derive(Clone)]
enum MetaLie {
    /// Announces `metadata_size` = `size` (not the true one) and rejects every request.
    WrongSize { size: u64 },
    /// Announces the true size, but answers every request with a 100-byte piece. Replies to
    /// the handshake only after `delay`, so that the size liar is heard first.
    ShortPieces { size: u64, delay: Duration },
    /// Serves these bytes as the metadata, honestly.
    Serve(Arc<Vec<u8>>),
}

/// Our ut_metadata id in the lying peers' extension handshakes.
const LIAR_UT_METADATA: u8 = 3;

struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections on `bind` one after another and hands each to `conn`, until dropped
/// or [`LIMIT`] has passed.
fn background(bind: SocketAddr, conn: impl Fn(TcpStream, &AtomicBool) + Send + 'static) -> Background {
    let listener = TcpListener::bind(bind).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = thread::spawn(move || {
        let deadline = Instant::now() + LIMIT;
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    conn(stream, &stop2);
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Background { stop, thread: Some(thread) }
}

fn meta_liar(bind: SocketAddr, info_hash: kadswarm::id::InfoHash, lie: MetaLie) -> Background {
    background(bind, move |stream, stop| serve_metadata_lie(stream, info_hash, &lie, stop))
}

/// One connection of a metadata liar; returns when the other side hangs up (or on stop).
fn serve_metadata_lie(mut stream: TcpStream, info_hash: kadswarm::id::InfoHash, lie: &MetaLie, stop: &AtomicBool) {
    use kadswarm::wire::extended::ExtHandshake;
    use kadswarm::wire::metadata::{metadata_piece, MetadataMessage};

    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut hs = [0u8; HANDSHAKE_LEN];
    if stream.read_exact(&mut hs).is_err() {
        return;
    }
    if let MetaLie::ShortPieces { delay, .. } = lie {
        thread::sleep(*delay);
    }
    let mut peer_id = [b'x'; 20];
    peer_id[..8].copy_from_slice(b"-XX0001-");
    let mut ours = Handshake::new(info_hash, peer_id);
    ours.reserved[7] = 0; // no DHT
    let announced = match lie {
        MetaLie::WrongSize { size } | MetaLie::ShortPieces { size, .. } => *size,
        MetaLie::Serve(bytes) => bytes.len() as u64,
    };
    let ext =
        ExtHandshake { ut_metadata: Some(LIAR_UT_METADATA), metadata_size: Some(announced), ..Default::default() };
    let mut payload = Vec::new();
    ext.encode(&mut payload);
    let mut out = ours.encode().to_vec();
    Message::Extended { id: 0, payload }.encode(&mut out);
    if stream.write_all(&out).is_err() {
        return;
    }
    let mut their_id = None;
    answer_frames(&mut stream, stop, |msg| {
        let Message::Extended { id, payload } = msg else { return None };
        if id == 0 {
            their_id = ExtHandshake::decode(&payload).ok().and_then(|h| h.ut_metadata);
            return None;
        }
        let (Some(their_id), Ok(MetadataMessage::Request { piece })) = (their_id, MetadataMessage::decode(&payload))
        else {
            return None;
        };
        let reply = match lie {
            MetaLie::WrongSize { .. } => MetadataMessage::Reject { piece },
            MetaLie::ShortPieces { size, .. } => {
                MetadataMessage::Data { piece, total_size: *size, data: vec![0x5a; 100] }
            }
            MetaLie::Serve(bytes) => match metadata_piece(bytes, piece) {
                Some(d) => MetadataMessage::Data { piece, total_size: bytes.len() as u64, data: d.to_vec() },
                None => MetadataMessage::Reject { piece },
            },
        };
        let mut payload = Vec::new();
        reply.encode(&mut payload);
        let mut frame = Vec::new();
        Message::Extended { id: their_id, payload }.encode(&mut frame);
        Some(frame)
    });
}

/// Forwards each connection on `bind` to `upstream` only after `delay`: the honest seeder
/// behind it is heard after the liars, which is the order that wedged the fetch.
fn delaying_relay(bind: SocketAddr, upstream: SocketAddr, delay: Duration) -> Background {
    background(bind, move |down, stop| {
        thread::sleep(delay);
        let Ok(up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else { return };
        let (down2, up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
        thread::scope(|s| {
            s.spawn(|| pump(&down, &up, stop));
            pump(&up2, &down2, stop);
        });
    })
}

/// Copies `from` to `to` until either side closes, or stop, or [`LIMIT`]; then closes both.
fn pump(mut from: &TcpStream, mut to: &TcpStream, stop: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut chunk = [0u8; 65536];
    let deadline = Instant::now() + LIMIT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&chunk[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Issue 12, hole 2. One peer announces a wrong `metadata_size` (and is heard first), one
/// announces the right size but sends a wrong-sized piece; the honest seeder comes last.
/// Before the size vote, the first size heard was the plan: the short piece banned every
/// peer asked so far, the honest seeder's right-sized pieces then looked wrong and it was
/// banned too, and the magnet never got its metadata.
#[test]
fn metadata_liars_about_sizes_do_not_wedge_a_magnet() {
    let dir = TempDir::new("meta-liars");
    let payload = write_payload(&dir.0);
    let seed_addr = addr(230);
    let (_seed, magnet, meta) = honest_seed(&payload, seed_addr, &dir.0.join("t.torrent"));
    let size = meta.info_bytes.len() as u64;
    let relay = addr(231);
    let _relay = delaying_relay(relay, seed_addr, Duration::from_secs(3));
    let size_liar = addr(232);
    let _size_liar = meta_liar(size_liar, meta.info_hash, MetaLie::WrongSize { size: size + 20_000 });
    let piece_liar = addr(233);
    let _piece_liar =
        meta_liar(piece_liar, meta.info_hash, MetaLie::ShortPieces { size, delay: Duration::from_millis(300) });
    let out = dir.0.join("out");
    // No LSD: the seeder must be reached through the relay only, after the liars.
    let mut getter = get(&magnet, &out, addr(234), &[size_liar, piece_liar, relay], &[s("--no-lsd")]);
    let status = getter.wait_exit(LIMIT);
    assert!(status.success(), "get failed: {status}\n{}", getter.dump());
    assert_same_files(&payload, &out.join("payload"));
    let banned: Vec<String> =
        getter.events().iter().filter(|e| e["event"] == "banned").map(|e| s(e["ip"].as_str().unwrap())).collect();
    assert_eq!(banned, vec![piece_liar.ip().to_string()], "only the sender of a bad piece\n{}", getter.dump());
    assert!(!getter.stderr_lines().iter().any(|l| l.contains("panicked")));
}

/// Issue 12, hole 8: metadata naming two files `README` and `Readme` (one file on a
/// case-insensitive disk). It hashes right, so no peer can ever send better: `get` names the
/// clash and exits 2 instead of letting one file overwrite the other.
#[test]
fn metadata_with_case_clashing_paths_exits_2() {
    use sha1::{Digest, Sha1};
    let dir = TempDir::new("meta-caseclash");
    let bytes = b"d5:filesld6:lengthi1e4:pathl6:READMEeed6:lengthi1e4:pathl6:Readmeeee\
                  4:name1:d12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe"
        .to_vec();
    let hash: [u8; 20] = Sha1::digest(&bytes).into();
    let magnet = format!("magnet:?xt=urn:btih:{}", common::hex(&hash));
    let server = addr(237);
    let _server = meta_liar(server, kadswarm::id::Id(hash), MetaLie::Serve(Arc::new(bytes)));
    let out = dir.0.join("out");
    let mut getter = get(&magnet, &out, addr(238), &[server], &[s("--no-lsd")]);
    let status = getter.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", getter.dump());
    let errors: Vec<String> = getter.stderr_lines().into_iter().filter(|l| l.starts_with("kadswarm: error:")).collect();
    assert_eq!(errors.len(), 1, "one error line\n{}", getter.dump());
    assert!(errors[0].contains("differ only in case"), "the reason is named: {}", errors[0]);
    assert!(!out.join("d").exists(), "nothing written\n{}", getter.dump());
    assert!(!getter.stderr_lines().iter().any(|l| l.contains("panicked")));
}

/// Issue 12, hole 3: metadata whose SHA-1 is the magnet's info-hash but which is no torrent
/// (a `name` that is an integer, no `pieces`). No peer can ever send other bytes for this
/// magnet; `get` must say why and exit 2 instead of waiting forever.
#[test]
fn metadata_that_hashes_right_but_does_not_parse_exits_2() {
    use sha1::{Digest, Sha1};
    let dir = TempDir::new("meta-unparsable");
    let bytes = b"d6:lengthi1e4:namei5e12:piece lengthi16384ee".to_vec();
    let hash: [u8; 20] = Sha1::digest(&bytes).into();
    let info_hash = kadswarm::id::Id(hash);
    let magnet = format!("magnet:?xt=urn:btih:{}", common::hex(&hash));
    let server = addr(235);
    let _server = meta_liar(server, info_hash, MetaLie::Serve(Arc::new(bytes)));
    let out = dir.0.join("out");
    let mut getter = get(&magnet, &out, addr(236), &[server], &[s("--no-lsd")]);
    let status = getter.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", getter.dump());
    let errors: Vec<String> = getter.stderr_lines().into_iter().filter(|l| l.starts_with("kadswarm: error:")).collect();
    assert_eq!(errors.len(), 1, "one error line\n{}", getter.dump());
    assert!(errors[0].contains("not a usable torrent"), "the reason is named: {}", errors[0]);
    assert!(!getter.stderr_lines().iter().any(|l| l.contains("panicked")));
}
