//! The `--state` file: our node id and the good nodes of the routing table, so a restarted
//! node rejoins without any router. Written atomically (temporary file, fsync, rename), so a
//! crash mid-write never leaves a truncated file behind.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dht::compact::CompactNode;
use crate::id::{Id, NodeId};

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
        let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        {
            let mut f = fs::File::create(&tmp).map_err(write_err)?;
            f.write_all(&bytes).map_err(write_err)?;
            f.sync_all().map_err(write_err)?;
        }
        fs::rename(&tmp, path).map_err(write_err)
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
