//! The metadata fetch against scripted members on an in-memory pipe: an honest one, liars,
//! and members that stall or announce too much.

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::id::Id;
use crate::wire::metadata::metadata_piece;

/// An info dictionary of `pieces` 16 KiB pieces named `name`, and its info-hash.
fn info_dict(name: &str, length: u64) -> (Vec<u8>, InfoHash) {
    let pieces = length.div_ceil(16384) as usize;
    let mut d = format!("d6:lengthi{length}e4:name{}:{name}12:piece lengthi16384e6:pieces{}:", name.len(), pieces * 20)
        .into_bytes();
    d.extend(std::iter::repeat_n(7u8, pieces * 20));
    d.push(b'e');
    let hash = Id(Sha1::digest(&d).into());
    (d, hash)
}

#[derive(Clone, Copy, PartialEq)]
enum Member {
    Honest,
    /// Serves bytes of the right size that hash to something else.
    Corrupt,
    /// Announces this metadata size instead of the real one.
    Announces(u64),
    /// Rejects every piece.
    Rejects,
    /// Handshakes for another info-hash.
    OtherSwarm,
    /// Sends have messages forever and never its extension handshake.
    Chatters,
}

/// Plays `member` on its end of the pipe, serving `info`.
async fn serve(mut s: DuplexStream, info: Vec<u8>, hash: InfoHash, member: Member) {
    let mut reader = FrameReader::new(Limits::default());
    let mut buf = vec![0u8; 4096];
    let their_hash = if member == Member::OtherSwarm { Id([9; 20]) } else { hash };
    let mut out = Handshake::new(their_hash, [3; 20]).encode().to_vec();
    if member == Member::Chatters {
        for i in 0..10_000 {
            Message::Have(i).encode(&mut out);
        }
        let _ = s.write_all(&out).await;
        return;
    }
    let size = match member {
        Member::Announces(n) => n,
        _ => info.len() as u64,
    };
    let mut payload = Vec::new();
    ExtHandshake { ut_metadata: Some(5), metadata_size: Some(size), ..ExtHandshake::default() }.encode(&mut payload);
    Message::Extended { id: HANDSHAKE_ID, payload }.encode(&mut out);
    if s.write_all(&out).await.is_err() {
        return;
    }
    let mut got_handshake = false;
    loop {
        let Ok(n) = s.read(&mut buf).await else { return };
        if n == 0 || reader.push(&buf[..n]).is_err() {
            return;
        }
        if !got_handshake {
            match reader.next_handshake() {
                Ok(Some(_)) => got_handshake = true,
                Ok(None) => continue,
                Err(_) => return,
            }
        }
        while let Ok(Some(msg)) = reader.next_message() {
            let Message::Extended { id: 5, payload } = msg else { continue };
            let Ok(MetadataMessage::Request { piece }) = MetadataMessage::decode(&payload) else { continue };
            let reply = match member {
                Member::Rejects => MetadataMessage::Reject { piece },
                _ => {
                    let mut data = metadata_piece(&info, piece).unwrap_or_default().to_vec();
                    if member == Member::Corrupt {
                        data.iter_mut().for_each(|b| *b ^= 1);
                    }
                    MetadataMessage::Data { piece, total_size: info.len() as u64, data }
                }
            };
            let mut payload = Vec::new();
            reply.encode(&mut payload);
            let mut frame = Vec::new();
            Message::Extended { id: OUR_UT_METADATA, payload }.encode(&mut frame);
            if s.write_all(&frame).await.is_err() {
                return;
            }
        }
    }
}

async fn fetch_from(member: Member, info: Vec<u8>, hash: InfoHash) -> Result<InfoSummary, FetchError> {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve(theirs, info, hash, member));
    let work = exchange(ours, hash, [1; 20], 1024 * 1024);
    tokio::time::timeout(Duration::from_secs(10), work).await.expect("the exchange ends on its own")
}

#[tokio::test]
async fn an_honest_member_gives_name_and_size() {
    // Several metadata pieces, so the pipelined requests and reassembly are exercised.
    let (info, hash) = info_dict("ubuntu.iso", 3300 * 16384);
    assert!(info.len() > 3 * 16384, "test metadata spans several pieces: {}", info.len());
    let got = fetch_from(Member::Honest, info, hash).await.expect("fetched");
    assert_eq!(got, InfoSummary { name: "ubuntu.iso".into(), size: 3300 * 16384, files: 1 });
}

#[tokio::test]
async fn liars_and_refusers_end_the_attempt_with_the_reason() {
    let (info, hash) = info_dict("a", 100);
    let corrupt = fetch_from(Member::Corrupt, info.clone(), hash).await;
    assert!(matches!(corrupt, Err(FetchError::Metadata(ref m)) if m.contains("hash")), "{corrupt:?}");
    let rejects = fetch_from(Member::Rejects, info.clone(), hash).await;
    assert!(matches!(rejects, Err(FetchError::Metadata(ref m)) if m.contains("rejected")), "{rejects:?}");
    let other = fetch_from(Member::OtherSwarm, info.clone(), hash).await;
    assert!(matches!(other, Err(FetchError::OtherSwarm)), "{other:?}");
    // A wrong size: the pieces do not fit, so the assembler refuses them.
    let wrong = fetch_from(Member::Announces(info.len() as u64 + 1), info.clone(), hash).await;
    assert!(matches!(wrong, Err(FetchError::Metadata(_))), "{wrong:?}");
}

#[tokio::test]
async fn an_oversized_announcement_is_refused_before_any_request() {
    let (info, hash) = info_dict("a", 100);
    let big = fetch_from(Member::Announces(2 * 1024 * 1024), info, hash).await;
    assert!(matches!(big, Err(FetchError::TooLarge { size: 2097152, max: 1048576 })), "{big:?}");
}

#[tokio::test]
async fn a_member_that_only_chatters_is_dropped() {
    let (info, hash) = info_dict("a", 100);
    let chat = fetch_from(Member::Chatters, info, hash).await;
    assert!(matches!(chat, Err(FetchError::Stalled(_))), "{chat:?}");
}

#[tokio::test]
async fn a_silent_member_costs_no_more_than_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.77.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts and then says nothing, holding the connection open.
    let holder = tokio::spawn(async move {
        let (_conn, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let limits = FetchLimits { max_size: 1 << 20, timeout: Duration::from_millis(300) };
    let result = fetch_info(addr, Id([1; 20]), [1; 20], limits).await;
    assert!(matches!(result, Err(FetchError::TimedOut(_))), "{result:?}");
    holder.abort();
}
