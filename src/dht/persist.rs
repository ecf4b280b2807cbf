//! The `--state` file: our node id and the good nodes of the routing table, so a restarted
//! node rejoins without any router. Written through
//! [`write_atomic`] (a temporary file of its own, fsync, rename, fsync of the directory), so a
//! crash mid-write never leaves a truncated file behind and two nodes given the same
//! `--state` never write into each other's temporary file.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dht::compact::CompactNode;
use crate::id::{Id, NodeId};
use crate::storage::durable::write_atomic;

/// Nodes kept in a state file at most; a full table holds far fewer good ones.
pub const MAX_NODES: usize = 2000;
/// Larger files are not ours; refuse them before reading them into memory.
const MAX_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is not a kadswarm state file: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub id: NodeId,
    pub nodes: Vec<CompactNode>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    id: String,
    nodes: Vec<NodeEntry>,
}

#[derive(Serialize, Deserialize)]
struct NodeEntry {
    id: String,
    addr: SocketAddr,
}

impl State {
    /// Loads a state file; `Ok(None)` when it does not exist yet.
    pub fn load(path: &Path) -> Result<Option<State>, StateError> {
        let read_err = |source| StateError::Read { path: path.to_owned(), source };
        let invalid = |reason: String| StateError::Invalid { path: path.to_owned(), reason };
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(invalid(format!("{} bytes is more than a state file ever holds", meta.len())));
        }
        let text = fs::read(path).map_err(read_err)?;
        let file: StateFile = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        if file.version != 1 {
            return Err(invalid(format!("unknown version {}", file.version)));
        }
        let id = Id::parse_text(&file.id).map_err(|e| invalid(e.to_string()))?;
        let nodes = file
            .nodes
            .iter()
            .take(MAX_NODES)
            .map(|n| Ok(CompactNode { id: Id::parse_text(&n.id).map_err(|e| invalid(e.to_string()))?, addr: n.addr }))
            .collect::<Result<Vec<_>, StateError>>()?;
        Ok(Some(State { id, nodes }))
    }

    /// Writes the state atomically: readers see the old file or the new one, never a mix.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let write_err = |source| StateError::Write { path: path.to_owned(), source };
        let file = StateFile {
            version: 1,
            id: self.id.to_hex(),
            nodes: self.nodes.iter().take(MAX_NODES).map(|n| NodeEntry { id: n.id.to_hex(), addr: n.addr }).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| write_err(std::io::Error::other(e)))?;
        write_atomic(path, &bytes).map_err(|e| write_err(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("kadswarm-persist-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_missing_file() {
        let path = dir().join("rt.json");
        let _ = fs::remove_file(&path);
        assert_eq!(State::load(&path).unwrap(), None);
        let s = State {
            id: Id([3; 20]),
            nodes: vec![CompactNode { id: Id([4; 20]), addr: "127.0.0.1:6881".parse().unwrap() }],
        };
        s.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), Some(s));
        assert!(!path.with_file_name("rt.json.tmp").exists());
    }

    /// A directory left at the temporary name older versions used (`FILE.tmp`) does not stop
    /// the state from being saved.
    #[test]
    fn a_directory_at_the_old_temporary_name_does_not_block_saving() {
        let d = dir().join("stale-tmp");
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("rt.json.tmp")).unwrap();
        let path = d.join("rt.json");
        let s = State { id: Id([5; 20]), nodes: Vec::new() };
        s.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), Some(s));
        let _ = fs::remove_dir_all(&d);
    }

    /// Two nodes given the same `--state` save it at the same time, 50 times each: every save
    /// succeeds and the file always loads as one of the two states.
    #[test]
    fn concurrent_saves_never_tear_the_file() {
        let d = dir().join("concurrent");
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let path = d.join("rt.json");
        let state = |b: u8| State {
            id: Id([b; 20]),
            nodes: (0..MAX_NODES)
                .map(|i| CompactNode {
                    id: Id([b; 20]),
                    addr: SocketAddr::from(([10, b, (i >> 8) as u8, i as u8], 6881)),
                })
                .collect(),
        };
        let (a, b) = (state(1), state(2));
        a.save(&path).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let writers: Vec<_> = [&a, &b]
                .into_iter()
                .map(|s| {
                    let path = &path;
                    scope.spawn(move || {
                        for round in 0..50 {
                            s.save(path).unwrap_or_else(|e| panic!("save {round}: {e}"));
                        }
                    })
                })
                .collect();
            scope.spawn(|| {
                for read in 0..100_000 {
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let got = State::load(&path).unwrap_or_else(|e| panic!("load {read}: {e}"));
                    assert!(got.as_ref() == Some(&a) || got.as_ref() == Some(&b), "load {read}: a third state");
                }
            });
            for w in writers {
                w.join().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "no temporary file left behind");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let path = dir().join("bad.json");
        for content in [
            &b"not json"[..],
            b"{\"version\":1,\"id\":\"zz\",\"nodes\":[]}",
            b"{\"version\":9,\"id\":\"\",\"nodes\":[]}",
        ] {
            fs::write(&path, content).unwrap();
            let err = State::load(&path).unwrap_err().to_string();
            assert!(err.contains("bad.json"), "{err}");
        }
    }
}
