//! The pool of a bootstrap node on disk: `FILE.pool` next to the `--state FILE`, so that a
//! restarted router answers from a full pool at once instead of a near-empty one.
//!
//! Format: the 8 bytes `KSPOOL\0\x01`, a 4-byte big-endian count of IPv4 nodes, that many
//! 26-byte compact nodes (BEP 5: id, address, port), a 4-byte count of IPv6 nodes, that many
//! 38-byte compact nodes (BEP 32). Written through [`durable::write_atomic`] (own temporary file, fsyncs, rename) on
//! shutdown and at most every [`SAVE_EVERY`] while the pool changes, the periodic writes on a
//! thread of their own, so that 26 MB and an fsync never stall the DHT socket.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dht::compact::{decode_nodes, encode_nodes, CompactNode, NODE_V4_LEN, NODE_V6_LEN};
use crate::dht::node::Node;
use crate::storage::durable;

const MAGIC: &[u8; 8] = b"KSPOOL\x00\x01";
/// Periodic saves of a changing pool at most this often (shutdown always saves).
pub const SAVE_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum PoolFileError {
    #[error("cannot read pool file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write pool file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("pool file {path} is not a kadswarm pool file: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Where the pool of `--state FILE` lives: `FILE.pool`.
pub fn path_for(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_os_string();
    name.push(".pool");
    PathBuf::from(name)
}

/// The bytes of a pool file holding `nodes`. IPv4 nodes are written straight into the
/// result (no copy of a million-node pool is made on the way); IPv6 ones go through a side
/// buffer, since their section comes second.
pub fn encode(nodes: impl Iterator<Item = CompactNode>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + nodes.size_hint().0 * NODE_V4_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 4]);
    let (mut v6, mut n4, mut n6) = (Vec::new(), 0u32, 0u32);
    for n in nodes {
        if n.addr.is_ipv4() {
            encode_nodes([&n], &mut out);
            n4 += 1;
        } else {
            encode_nodes([&n], &mut v6);
            n6 += 1;
        }
    }
    out[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&n4.to_be_bytes());
    out.extend_from_slice(&n6.to_be_bytes());
    out.extend_from_slice(&v6);
    out
}

fn decode(bytes: &[u8]) -> Result<Vec<CompactNode>, String> {
    let rest = bytes.strip_prefix(MAGIC).ok_or("no KSPOOL header")?;
    let section = |rest: &[u8], entry: usize, v6: bool| -> Result<(Vec<CompactNode>, usize), String> {
        let count: [u8; 4] = rest.get(..4).and_then(|c| c.try_into().ok()).ok_or("truncated count")?;
        // Checked: on a 32-bit target a damaged count times the entry size wraps around.
        let count = u32::from_be_bytes(count);
        let len = usize::try_from(count).ok().and_then(|c| c.checked_mul(entry)).filter(|l| *l <= rest.len() - 4);
        let len = len.ok_or_else(|| format!("truncated: {count} nodes announced in {} bytes", rest.len() - 4))?;
        let body = &rest[4..4 + len];
        Ok((decode_nodes(body, v6).map_err(|e| e.to_string())?, 4 + len))
    };
    let (mut nodes, used) = section(rest, NODE_V4_LEN, false)?;
    let (v6, used6) = section(&rest[used..], NODE_V6_LEN, true)?;
    if used + used6 != rest.len() {
        return Err(format!("{} bytes of trailing garbage", rest.len() - used - used6));
    }
    nodes.extend(v6);
    Ok(nodes)
}

/// Loads a pool file of at most `max_nodes` nodes; `Ok(None)` when there is none yet. A
/// larger file is refused after reading no more than a pool of that size takes, so a wrong
/// or damaged path cannot make us read gigabytes.
pub fn load(path: &Path, max_nodes: usize) -> Result<Option<Vec<CompactNode>>, PoolFileError> {
    use std::io::Read;
    let read_err = |source| PoolFileError::Read { path: path.to_owned(), source };
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(read_err(source)),
    };
    let limit = (MAGIC.len() + 8).saturating_add(max_nodes.saturating_mul(NODE_V6_LEN)) as u64;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > limit {
        let reason = format!("larger than a pool of {max_nodes} nodes can be");
        return Err(PoolFileError::Invalid { path: path.to_owned(), reason });
    }
    decode(&bytes).map(Some).map_err(|reason| PoolFileError::Invalid { path: path.to_owned(), reason })
}

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PoolFileError> {
    durable::write_atomic(path, bytes).map_err(|e| PoolFileError::Write { path: path.to_owned(), source: e.into() })
}

/// The driver's side of saving: when, and on which thread.
#[derive(Default)]
pub struct PoolSaver {
    writing: Option<JoinHandle<()>>,
    last: Option<Instant>,
}

impl PoolSaver {
    /// Saves the pool of a bootstrap `node` beside `state` if it changed (periodic saves at
    /// most every [`SAVE_EVERY`], in the background) or always when `shutting_down` (waiting
    /// for the write). An empty pool never overwrites a saved one.
    pub fn save(&mut self, state: &Path, node: &mut Node, now: Instant, shutting_down: bool) {
        let Some(pool) = node.pool_mut() else { return };
        if let Some(w) = self.writing.take() {
            if !w.is_finished() && !shutting_down {
                self.writing = Some(w);
                return;
            }
            let _ = w.join();
        }
        let due = pool.unsaved() && self.last.is_none_or(|t| now.saturating_duration_since(t) >= SAVE_EVERY);
        if !(shutting_down || due) {
            return;
        }
        let path = path_for(state);
        if pool.is_empty() && path.exists() {
            return;
        }
        let entries = pool.len();
        let bytes = encode(pool.iter());
        pool.mark_saved();
        self.last = Some(now);
        let write = move || match write_atomic(&path, &bytes) {
            Ok(()) => tracing::info!(path = %path.display(), entries, "saved bootstrap pool"),
            Err(e) => tracing::warn!(error = %e, "could not save bootstrap pool"),
        };
        if shutting_down {
            write();
        } else {
            self.writing = Some(std::thread::spawn(write));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("kadswarm-pool-file-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn nodes() -> Vec<CompactNode> {
        let mut v: Vec<CompactNode> = (0..50u8)
            .map(|i| CompactNode { id: Id([i; 20]), addr: format!("10.0.{i}.1:{}", 1000 + i as u16).parse().unwrap() })
            .collect();
        v.extend(
            (0..7u8).map(|i| CompactNode { id: Id([200 + i; 20]), addr: format!("[fd00::{i}]:6881").parse().unwrap() }),
        );
        v
    }

    #[test]
    fn round_trip_in_compact_form() {
        let path = dir().join("rt.state.pool");
        let _ = fs::remove_file(&path);
        assert!(load(&path, 100).unwrap().is_none());
        let bytes = encode(nodes().into_iter());
        assert_eq!(bytes.len(), 8 + 4 + 50 * 26 + 4 + 7 * 38, "26 bytes an IPv4 node, 38 an IPv6 one");
        write_atomic(&path, &bytes).unwrap();
        assert_eq!(load(&path, 100).unwrap(), Some(nodes()));
        assert!(!dir().join("rt.state.pool.tmp").exists());
        assert_eq!(path_for(Path::new("/var/lib/k/dht.json")), PathBuf::from("/var/lib/k/dht.json.pool"));
    }

    /// A directory left at the temporary name older versions used (`FILE.tmp`) does not stop
    /// the pool from being saved.
    #[test]
    fn a_directory_at_the_old_temporary_name_does_not_block_saving() {
        let d = dir().join("stale-tmp");
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("rt.state.pool.tmp")).unwrap();
        let path = d.join("rt.state.pool");
        write_atomic(&path, &encode(nodes().into_iter())).unwrap();
        assert_eq!(load(&path, 100).unwrap(), Some(nodes()));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn damaged_files_are_a_clear_error() {
        let good = encode(nodes().into_iter());
        let path = dir().join("bad.pool");
        let mut trailing = good.clone();
        trailing.push(0);
        for bad in [&b"not a pool"[..], &good[..good.len() - 1], &trailing, &good[..10], b""] {
            fs::write(&path, bad).unwrap();
            let err = load(&path, 100).unwrap_err().to_string();
            assert!(err.contains("bad.pool"), "{err}");
        }
    }

    /// The largest count a file can announce: refused with the count in the message. (On a
    /// 64-bit target the product fits and the bounds check catches it; on a 32-bit one it is
    /// the checked multiplication.)
    #[test]
    fn a_count_of_u32_max_is_refused_not_multiplied_out() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        bytes.extend_from_slice(&[0; 26]);
        let err = decode(&bytes).unwrap_err();
        assert!(err.contains("4294967295 nodes announced in 26 bytes"), "{err}");
    }

    #[test]
    fn a_file_larger_than_the_pool_is_refused_unread() {
        let path = dir().join("huge.pool");
        let bytes = encode(nodes().into_iter());
        fs::write(&path, &bytes).unwrap();
        assert!(load(&path, 57).unwrap().is_some(), "57 nodes fit a pool of 57");
        // 50 IPv4 + 7 IPv6 nodes are 1,582 bytes; a pool of 30 nodes is at most 1,156.
        let err = load(&path, 30).unwrap_err().to_string();
        assert!(err.contains("larger than a pool of 30"), "{err}");
    }
}
