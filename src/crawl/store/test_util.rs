//! Builders shared by the store backends' unit tests.

use std::net::SocketAddr;

use crate::crawl::record::{Observation, RunInfo};
use crate::id::{Id, InfoHash};

pub fn hash(n: u8) -> InfoHash {
    Id([n; 20])
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// Swarm `n` seen in `round` at `at` ms by the given peers.
pub fn obs(n: u8, round: u32, at: i64, peers: &[&str]) -> Observation {
    Observation {
        info_hash: hash(n),
        round,
        observed_at_ms: at,
        peers: peers.iter().map(|p| addr(p)).collect(),
        seeds: Some(u32::from(n)),
        leechers: None,
    }
}

pub fn run_info() -> RunInfo {
    RunInfo { started_at_ms: 1_000, crawler: "test".into(), args: "crawl --out x".into() }
}

/// A fresh temporary directory, removed by the caller's `Drop` of the returned guard.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kadswarm-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
